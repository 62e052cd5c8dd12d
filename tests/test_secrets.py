"""Keys at rest: private files, key rotation, and a clear error for a malformed key."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet
from hub.cli import cli
from hub.crypto import Vault
from hub.errors import ConfigError, HubError
from hub.settings import Settings
from hub.store import migrate
from hub.store.engine import Store
from hub.store.schema import Connection
from sqlalchemy import select

from tests.flows import apply_demo_routes


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_hub_home_and_the_sqlite_store_are_private(tmp_path):
    old = os.umask(0o022)
    try:
        home = tmp_path / "deep" / "home"
        settings = Settings(home=home, database_url=None)
        store = Store.from_url(settings.resolved_database_url())
        try:
            migrate.upgrade(store)
            Vault(settings)
            with store.engine.connect():
                files = {p.name: mode(p) for p in home.iterdir()}
        finally:
            store.engine.dispose()
    finally:
        os.umask(old)
    assert mode(home) == 0o700, f"HUB_HOME should be 0700, is {oct(mode(home))}"
    assert {"hub.db", "hub.db-wal", "hub.db-shm", "secret.key"} <= set(files), files
    for name, bits in files.items():
        assert bits == 0o600, f"{name} should be 0600 (owner only), is {oct(bits)}"


def test_an_existing_home_keeps_its_mode(tmp_path):
    tmp_path.chmod(0o755)
    Settings(home=tmp_path, database_url=None).resolved_database_url()
    assert mode(tmp_path) == 0o755, "hub should only set the mode of a HUB_HOME it creates"


@pytest.fixture
def hub(rt, settings, tmp_path, monkeypatch) -> Iterator[Any]:
    from hub.settings import get_settings

    monkeypatch.setenv("HUB_DATABASE_URL", settings.resolved_database_url())
    monkeypatch.setenv("HUB_HOME", str(tmp_path))

    def run(*args: str, key: str) -> Result:
        monkeypatch.setenv("HUB_SECRET_KEY", key)
        get_settings.cache_clear()
        return CliRunner().invoke(cli, list(args))

    yield run
    get_settings.cache_clear()


def test_rotation_re_encrypts_every_connection_with_the_newest_key(rt, hub, tmp_path, lojinha_pair):
    (_erp, erp_url), (_shop, shop_url) = lojinha_pair
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    rt.vault = Vault(Settings(home=tmp_path, secret_key=old))
    apply_demo_routes(rt, tmp_path, erp_url, shop_url)
    with rt.store.sessions() as s:
        before = {c.name: (c.credentials, c.secret_options) for c in s.scalars(select(Connection))}
    assert all(creds and secret for creds, secret in before.values()), "both columns should hold ciphertext"
    with pytest.raises(HubError):
        Vault(Settings(home=tmp_path, secret_key=new)).decrypt(before["erp"][0] or b"")

    rotated = hub("secrets", "rotate", key=f"{new},{old}")
    assert rotated.exit_code == 0, rotated.output
    assert "2 connection" in rotated.output, f"rotate should say how many rows it re-encrypted: {rotated.output}"

    only_new = Vault(Settings(home=tmp_path, secret_key=new))
    with rt.store.sessions() as s:
        for conn in s.scalars(select(Connection)):
            assert only_new.decrypt(conn.credentials or b"")["client_secret"] == "demo-secret"
            assert only_new.decrypt(conn.secret_options or b"")["base_url"] in (erp_url, shop_url)
    status = hub("secrets", "rotate", key=new)
    assert status.exit_code == 0, "with the old key retired, everything should still decrypt"


@pytest.mark.parametrize("raw", ["not-a-key", "   ,  "])
def test_a_malformed_key_is_named_with_its_fix(tmp_path, raw):
    with pytest.raises(ConfigError) as caught:
        Vault(Settings(home=tmp_path, secret_key=raw))
    assert "HUB_SECRET_KEY" in caught.value.message, caught.value.message
    assert "hub secrets generate" in caught.value.fix, caught.value.fix


def test_a_malformed_key_file_is_named_with_its_fix(tmp_path):
    (tmp_path / "secret.key").write_text("garbage\n")
    with pytest.raises(ConfigError) as caught:
        Vault(Settings(home=tmp_path, secret_key=None))
    assert str(tmp_path / "secret.key") in caught.value.message, caught.value.message


def test_the_cli_reports_a_malformed_key_without_a_traceback(rt, hub):
    result = hub("secrets", "rotate", key="not-a-key")
    assert result.exit_code == 1 and "HUB_SECRET_KEY" in result.output and "fix:" in result.output, result.output
    assert "Traceback" not in result.output


def test_generate_prints_a_usable_key():
    result = CliRunner().invoke(cli, ["secrets", "generate"])
    assert result.exit_code == 0, result.output
    Fernet(result.output.strip().splitlines()[0].encode())
