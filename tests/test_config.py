"""Route files: errors name the file, the key and the fix; applying stores secrets encrypted."""

from __future__ import annotations

import pytest
import yaml
from hub.config import apply as applying
from hub.config import routes as config
from hub.errors import ConfigError
from hub.store.schema import Connection, Route
from sqlalchemy import select

from tests.flows import DEMO_ROUTES, apply_demo_routes


def write(tmp_path, data) -> str:
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def demo_data():
    return yaml.safe_load(DEMO_ROUTES.read_text())


def test_structure_errors_name_file_key_and_fix(tmp_path):
    data = demo_data()
    data["tenants"]["demo"]["routes"]["catalog"]["streams"] = ["produtos"]
    data["tenants"]["demo"]["routes"]["catalog"]["schedul"] = "5m"
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    text = caught.value.message
    assert "tenants.demo.routes.catalog.schedul" in text and "remove this key" in text
    assert "produtos" not in text, "a plugin may declare streams: check(), not load(), refuses unknown ones"


def test_clear_text_secrets_are_refused(tmp_path):
    data = demo_data()
    data["tenants"]["demo"]["connections"]["erp"]["credentials"]["client_secret"] = "hunter2"
    with pytest.raises(ConfigError, match="written in clear"):
        config.load(write(tmp_path, data))


def test_plugin_checks_name_the_fix(rt, tmp_path, monkeypatch):
    for var in ("LOJINHA_ERP_URL", "LOJINHA_SHOP_URL"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    data = demo_data()
    data["tenants"]["demo"]["connections"]["shop"]["platform"] = "nope"
    data["tenants"]["demo"]["routes"]["sales"]["transitions"][0]["actions"] = ["launch-rockets"]
    data["tenants"]["demo"]["routes"]["catalog"]["sink"] = "missing"
    path = write(tmp_path, data)
    errors, _ = applying.check(config.load(path), rt.registry, path)
    joined = "\n".join(errors)
    assert "connections.shop.platform: no installed plugin provides 'nope'" in joined
    assert "routes.catalog.sink: no connection named 'missing'" in joined
    assert all("fix:" in e for e in errors)


def test_missing_environment_variable_is_named(rt, tmp_path, monkeypatch):
    monkeypatch.delenv("LOJINHA_ERP_URL", raising=False)
    monkeypatch.setenv("LOJINHA_SHOP_URL", "http://127.0.0.1:9")
    path = str(DEMO_ROUTES)
    errors, _ = applying.check(config.load(path), rt.registry, path)
    assert any("LOJINHA_ERP_URL is not set" in e for e in errors)


def test_apply_stores_credentials_encrypted_and_is_repeatable(rt, tmp_path):
    apply_demo_routes(rt, tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    apply_demo_routes(rt, tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    with rt.store.sessions() as s:
        conns = list(s.scalars(select(Connection)))
        routes = list(s.scalars(select(Route)))
    assert len(conns) == 2 and len(routes) == 2
    for conn in conns:
        assert conn.credentials and b"demo-secret" not in conn.credentials
        assert rt.vault.decrypt(conn.credentials)["client_secret"] == "demo-secret"
