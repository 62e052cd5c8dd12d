"""Route files cannot reach past what the operator means: other tenants, foreign hosts, arbitrary environment."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from hub.cli import cli
from hub.config import apply as applying
from hub.config import routes as config
from hub.config.secrets import secret_fields, split_options
from hub.errors import ConfigError, HubError
from hub.sandbox import serve
from hub.store.schema import Connection, Tenant
from hub.sync.loading import make_context
from hub.sync.pull import sync_route
from pydantic import BaseModel, Field, SecretStr
from sqlalchemy import select, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as HttpRoute

from tests.flows import DEMO_ROUTES, apply_demo_routes

LOJINHA_ENV = {"LOJINHA_ERP_CLIENT_ID": "demo", "LOJINHA_ERP_CLIENT_SECRET": "demo-secret",
               "LOJINHA_SHOP_CLIENT_ID": "demo", "LOJINHA_SHOP_CLIENT_SECRET": "demo-secret"}


@pytest.fixture
def hub(rt, settings, tmp_path, monkeypatch) -> Iterator[Any]:
    """Run ``hub ...`` on the test's database, as an operator would."""
    from hub.settings import get_settings

    monkeypatch.setenv("HUB_DATABASE_URL", settings.resolved_database_url())
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    monkeypatch.delenv("HUB_SECRET_KEY", raising=False)
    get_settings.cache_clear()
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(cli, list(args))

    yield run
    get_settings.cache_clear()


def demo_file(tmp_path: Path, monkeypatch, erp_url: str, shop_url: str, *, other: dict[str, Any] | None = None,
              name: str = "routes.yaml") -> Path:
    """The demo route file for the given sandboxes; ``other`` adds a second tenant's block."""
    for var, value in {**LOJINHA_ENV, "LOJINHA_ERP_URL": erp_url, "LOJINHA_SHOP_URL": shop_url}.items():
        monkeypatch.setenv(var, value)
    data = yaml.safe_load(DEMO_ROUTES.read_text())
    if other is not None:
        data["tenants"]["other"] = other
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def other_tenant(name: str, erp_url: str) -> dict[str, Any]:
    block = copy.deepcopy(yaml.safe_load(DEMO_ROUTES.read_text())["tenants"]["demo"])
    block["name"] = name
    block["connections"]["erp"]["options"] = {"base_url": erp_url}
    return block


def tenants_in_store(rt) -> dict[str, str]:
    with rt.store.sessions() as s:
        return {t.id: t.name for t in s.scalars(select(Tenant))}


def connection(rt, tenant: str, name: str) -> Connection:
    with rt.store.sessions() as s:
        conn = s.scalar(select(Connection).where(Connection.tenant_id == tenant, Connection.name == name))
        assert conn is not None, f"connection {tenant}/{name} should exist"
        return conn


# --- scope: a file changes only the tenants the operator names ------------------------------------------------


def test_a_file_with_another_tenants_block_needs_the_tenant_named(rt, hub, tmp_path, monkeypatch):
    path = demo_file(tmp_path, monkeypatch, "http://127.0.0.1:9", "http://127.0.0.1:9",
                     other=other_tenant("Outra Loja", "http://127.0.0.1:9"))
    parsed = config.load(path)
    with pytest.raises(ConfigError) as caught:
        applying.apply(parsed, rt.store, rt.vault, rt.registry)
    assert "demo" in caught.value.message and "other" in caught.value.message, caught.value.message
    assert "--tenant" in caught.value.fix, "the fix should say how to name the tenants"
    assert tenants_in_store(rt) == {}, "a refused file must change nothing"

    refused = hub("routes", "apply", str(path))
    assert refused.exit_code == 1, refused.output
    assert "--tenant" in refused.output and "--all-tenants" in refused.output, refused.output
    assert tenants_in_store(rt) == {}, "a refused file must change nothing"

    validated = hub("routes", "validate", str(path))
    assert validated.exit_code == 0, validated.output
    assert "tenants: demo, other" in validated.output, "validate should report the tenants the file touches"

    applied = hub("routes", "apply", str(path), "--tenant", "demo")
    assert applied.exit_code == 0, applied.output
    assert "skipped" in applied.output and "other" in applied.output, "the output should say other was skipped"
    assert tenants_in_store(rt) == {"demo": "Loja Demo Ltda"}, "only the named tenant should be written"

    hub("routes", "apply", str(path), "--all-tenants")
    assert tenants_in_store(rt) == {"demo": "Loja Demo Ltda", "other": "Outra Loja"}
    before = connection(rt, "other", "erp")

    # A later file for demo that also carries a rewritten block for other: only demo changes.
    hostile = demo_file(tmp_path, monkeypatch, "http://127.0.0.1:9", "http://127.0.0.1:9",
                        other=other_tenant("Hijacked", "http://203.0.113.7"), name="hostile.yaml")
    applied = hub("routes", "apply", str(hostile), "--tenant", "demo")
    assert applied.exit_code == 0, applied.output
    after = connection(rt, "other", "erp")
    assert tenants_in_store(rt)["other"] == "Outra Loja", "other's name must not change"
    assert (after.options, after.secret_options, after.updated_at) == (
        before.options, before.secret_options, before.updated_at), "other's connection must not change"

    with pytest.raises(ConfigError, match="nope"):
        applying.apply(config.load(hostile), rt.store, rt.vault, rt.registry, tenants=["nope"])


def test_a_single_tenant_file_applies_to_it_without_naming_it(rt, tmp_path, monkeypatch):
    path = demo_file(tmp_path, monkeypatch, "http://127.0.0.1:9", "http://127.0.0.1:9")
    counts = applying.apply(config.load(path), rt.store, rt.vault, rt.registry)
    assert counts["tenants"] == 1 and tenants_in_store(rt) == {"demo": "Loja Demo Ltda"}


# --- a connection's host changes: its stored secrets never go there ---------------------------------------------


def capture_app(seen: list[dict[str, Any]]) -> Starlette:
    async def record(request: Request) -> JSONResponse:
        seen.append({"path": request.url.path, "headers": dict(request.headers),
                     "body": (await request.body()).decode(errors="replace")})
        return JSONResponse({"access_token": "stolen", "expires_in": 3600})

    return Starlette(routes=[HttpRoute("/{path:path}", record, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])])


def test_changing_a_connections_host_drops_its_stored_secrets_and_pauses_it(rt, hub, tmp_path, monkeypatch,
                                                                            lojinha_pair):
    (erp, erp_url), (_shop, shop_url) = lojinha_pair
    erp.seed("products", 3)
    apply_demo_routes(rt, tmp_path, erp_url, shop_url, **{"catalog.streams": ["products"]})
    assert sync_route(rt, "demo", "catalog").ok
    stored = rt.vault.decrypt(connection(rt, "demo", "erp").credentials or b"")
    assert stored.get("access_token"), "the first sync should have stored an access token"

    # Re-applying the same hosts keeps everything.
    path = demo_file(tmp_path, monkeypatch, erp_url, shop_url, name="same.yaml")
    assert hub("routes", "apply", str(path)).exit_code == 0
    same = connection(rt, "demo", "erp")
    assert same.pause_kind is None and rt.vault.decrypt(same.credentials or b"").get("access_token")

    seen: list[dict[str, Any]] = []
    with serve(capture_app(seen)) as foreign:
        data = yaml.safe_load(path.read_text())
        data["tenants"]["demo"]["connections"]["erp"]["options"] = {"base_url": foreign.base_url}
        data["tenants"]["demo"]["connections"]["erp"]["credentials"] = "stored"
        moved = tmp_path / "moved.yaml"
        moved.write_text(yaml.safe_dump(data))
        applied = hub("routes", "apply", str(moved))
        assert applied.exit_code == 0, applied.output
        assert f"host changed from {erp_url} to {foreign.base_url}" in applied.output, applied.output
        assert "hub auth lojinha demo" in applied.output, applied.output

        conn = connection(rt, "demo", "erp")
        assert conn.credentials is None, "stored credentials must be dropped when the host changes"
        assert conn.pause_kind == "auth" and conn.paused_until is not None, "the connection should be paused"
        assert f"host changed from {erp_url} to {foreign.base_url}" in (conn.pause_reason or "")
        assert "hub auth lojinha demo" in (conn.pause_reason or ""), conn.pause_reason

        report = sync_route(rt, "demo", "catalog")
        assert not report.ok, "a sync of a paused connection should fail"
        with pytest.raises(HubError):
            make_context(rt, conn, None, "products")
    assert not any("authorization" in r["headers"] for r in seen), f"the new host got an Authorization: {seen}"
    assert not any("demo-secret" in r["body"] or stored["access_token"] in json.dumps(r) for r in seen), seen

    # Back on the real host with credentials from the environment: paused until the operator re-authorizes.
    assert hub("routes", "apply", str(path)).exit_code == 0
    assert connection(rt, "demo", "erp").pause_kind == "auth"
    authorized = hub("auth", "lojinha", "demo", "--connection", "erp")
    assert authorized.exit_code == 0, authorized.output
    assert connection(rt, "demo", "erp").pause_kind is None, "re-authorizing should resume the connection"
    assert sync_route(rt, "demo", "catalog").ok


def test_a_token_url_moved_to_another_host_counts_as_a_host_change(rt, tmp_path, monkeypatch):
    path = demo_file(tmp_path, monkeypatch, "http://127.0.0.1:9", "http://127.0.0.1:9")
    applying.apply(config.load(path), rt.store, rt.vault, rt.registry)
    assert connection(rt, "demo", "erp").pause_kind is None
    monkeypatch.setenv("LOJINHA_ERP_URL", "http://127.0.0.1:10")
    result = applying.apply(config.load(path), rt.store, rt.vault, rt.registry)
    assert any("host changed from http://127.0.0.1:9 to http://127.0.0.1:10" in n for n in result.notices), \
        "a port change is a host change"
    conn = connection(rt, "demo", "erp")
    assert conn.pause_kind == "auth"
    fresh = rt.vault.decrypt(conn.credentials or b"")
    assert fresh == {"client_id": "demo", "client_secret": "demo-secret"}, \
        "credentials freshly given from the environment by this apply are kept, nothing else"


# --- environment: only variables meant for the hub's route files ------------------------------------------------


@pytest.mark.parametrize(("where", "variable"), [("credentials", "HUB_SECRET_KEY"), ("options", "HUB_DATABASE_URL"),
                                                 ("options", "HOME")])
def test_route_files_cannot_read_any_environment_variable(rt, hub, tmp_path, monkeypatch, where, variable):
    path = demo_file(tmp_path, monkeypatch, "http://127.0.0.1:9", "http://127.0.0.1:9")
    monkeypatch.setenv(variable, "http://127.0.0.1:9")
    monkeypatch.setenv("HUB_ENV_ALLOW", "HUB_SECRET_KEY,HUB_DATABASE_URL")
    data = yaml.safe_load(path.read_text())
    erp = data["tenants"]["demo"]["connections"]["erp"]
    if where == "credentials":
        erp["credentials"]["client_secret"] = {"env": variable}
        key = "tenants.demo.connections.erp.credentials.client_secret"
    else:
        erp["options"]["base_url"] = "${" + variable + "}"
        key = "tenants.demo.connections.erp.options.base_url"
    path.write_text(yaml.safe_dump(data))
    parsed = config.load(path)
    errors, _ = applying.check(parsed, rt.registry, str(path))
    assert any(str(path) in e and key in e and variable in e and "fix:" in e for e in errors), errors
    with pytest.raises(ConfigError) as caught:
        applying.apply(parsed, rt.store, rt.vault, rt.registry)
    assert str(path) in caught.value.message and key in caught.value.message and variable in caught.value.message
    assert "HUB_ENV_" in caught.value.fix and "LOJINHA_" in caught.value.fix, caught.value.fix
    refused = hub("routes", "apply", str(path))
    assert refused.exit_code == 1 and variable in refused.output, refused.output
    assert tenants_in_store(rt) == {}, "a refused file must change nothing"


def test_allowed_environment_variables(rt, tmp_path, monkeypatch):
    path = demo_file(tmp_path, monkeypatch, "http://127.0.0.1:9", "http://127.0.0.1:9")
    data = yaml.safe_load(path.read_text())
    conns = data["tenants"]["demo"]["connections"]
    conns["erp"]["options"]["base_url"] = "${HUB_ENV_ERP_URL}"
    conns["shop"]["options"]["base_url"] = "${SHOP_URL}"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("HUB_ENV_ERP_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("SHOP_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("HUB_ENV_ALLOW", raising=False)
    errors, _ = applying.check(config.load(path), rt.registry, str(path))
    assert any("SHOP_URL" in e for e in errors), "a variable outside the allowlist should be refused"
    monkeypatch.setenv("HUB_ENV_ALLOW", "OTHER, SHOP_URL")
    errors, _ = applying.check(config.load(path), rt.registry, str(path))
    assert not errors, f"HUB_ENV_ vars and those listed in HUB_ENV_ALLOW should be readable: {errors}"
    applying.apply(config.load(path), rt.store, rt.vault, rt.registry)


# --- secrets among the options are stored encrypted --------------------------------------------------------------


def test_expanded_options_are_encrypted_in_the_store_and_given_to_the_connector(rt, tmp_path, lojinha_pair):
    (_erp, erp_url), (_shop, shop_url) = lojinha_pair
    apply_demo_routes(rt, tmp_path, erp_url, shop_url)
    with rt.store.engine.connect() as db:
        options, secret = db.execute(text(
            "SELECT options, secret_options FROM connections WHERE tenant_id = 'demo' AND name = 'erp'")).one()
    raw = options if isinstance(options, str) else json.dumps(options)
    assert erp_url not in raw, f"an option from ${{VAR}} is stored in clear: {raw}"
    assert "${LOJINHA_ERP_URL}" in raw, "the options column should keep the template"
    assert secret and erp_url.encode() not in bytes(secret), "secret_options should be encrypted"
    ctx = make_context(rt, connection(rt, "demo", "erp"), None, "products")
    try:
        assert ctx.options["base_url"] == erp_url, "the connector should see the decrypted option"
    finally:
        ctx.close()


class SecretOptions(BaseModel):
    base_url: str
    api_key: SecretStr
    webhook_secret: str | None = Field(default=None, json_schema_extra={"secret": True})
    signing: SecretStr | None = Field(default=None, alias="signingKey")
    page_size: int = 100


def test_options_marked_secret_by_the_platform_are_split_out():
    assert secret_fields(SecretOptions) == {"api_key", "webhook_secret", "signing", "signingKey"}
    clear, secret = split_options(
        {"base_url": "${HUB_ENV_URL}", "api_key": "k1", "webhook_secret": "${HUB_ENV_HOOK}", "signingKey": "s",
         "page_size": 5},
        {"base_url": "https://x.example", "api_key": "k1", "webhook_secret": "w", "signingKey": "s", "page_size": 5},
        SecretOptions)
    assert clear == {"base_url": "${HUB_ENV_URL}", "webhook_secret": "${HUB_ENV_HOOK}", "page_size": 5}
    assert secret == {"base_url": "https://x.example", "api_key": "k1", "webhook_secret": "w", "signingKey": "s"}
