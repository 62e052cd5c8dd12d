"""Connector options: the platform's model fills in its defaults, so a shipped route file reaches the real hosts.

Before, ``ctx.http`` read the raw options dict: a Bling connection with no ``base_url`` got an empty base URL and a
real account failed with ``UnsupportedProtocol``; the shipped CPlug <-> Bling file did not validate without the
demo's options.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hub.config import apply as applying
from hub.config import routes as config
from hub.errors import Fatal
from hub.store.engine import utcnow
from hub.store.schema import Connection, Tenant
from hub.sync.loading import connection_context
from hub_bling.options import API_BASE
from hub_cplug.client import API_HOST
from hub_cplug.plugin import ROUTES

SHIPPED = sorted(p for p in ROUTES.glob("*.yaml") if "demo" not in p.name)


def _connection(rt, platform: str, options: dict) -> Connection:
    with rt.store.begin() as s:
        if s.get(Tenant, "acme") is None:
            s.add(Tenant(id="acme", name="Acme", created_at=utcnow()))
            s.flush()
        conn = Connection(tenant_id="acme", name=f"{platform}-{len(options)}", platform=platform, options=options,
                          credentials=rt.vault.encrypt({"client_id": "id", "client_secret": "secret"}),
                          credentials_env={}, updated_at=utcnow())
        s.add(conn)
        s.flush()
        s.expunge(conn)
    return conn


def test_a_connection_without_base_url_talks_to_the_real_host(rt):
    ctx = connection_context(rt, _connection(rt, "bling", {}))
    try:
        assert str(ctx.http.base_url).rstrip("/") == API_BASE, "Bling's published host when base_url is left out"
        assert ctx.options["page_size"] == 100, "the options model's defaults are applied"
    finally:
        ctx.close()
    cplug = connection_context(rt, _connection(rt, "cplug", {"company_id": 7}))
    try:
        assert str(cplug.http.base_url).rstrip("/") == API_HOST
        assert cplug.options["company_id"] == 7, "what the file gives is kept"
    finally:
        cplug.close()


def test_an_option_the_platform_refuses_names_connection_option_and_fix(rt):
    conn = _connection(rt, "bling", {"page_size": 1000})
    with pytest.raises(Fatal) as caught:
        connection_context(rt, conn)
    assert "acme/" in caught.value.message and "page_size" in caught.value.message
    assert "hub routes validate" in caught.value.fix


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_route_files_validate_with_only_their_variables_set(rt, path: Path, monkeypatch):
    assert SHIPPED, "the CPlug plugin ships its Bling route file"
    text = path.read_text()
    for name in set(re.findall(r"\{env: *([A-Z0-9_]+)\}", text)) | set(re.findall(r"\$\{([A-Z0-9_]+)\}", text)):
        monkeypatch.setenv(name, "12345")
    errors, _ = applying.check(config.load(path), rt.registry, str(path))
    assert not errors, f"{path.name} must validate with only the variables it names: {errors}"
