"""`hub auth` as a script runs it: with --json, stdout is one JSON document (the connection's state, token expiry
and waiting operations, or the error with its fix) and the exit code says which; never a credential."""

from __future__ import annotations

import json

from hub.cli import with_plugins

from tests.flows import apply_demo_routes


def moved_host(rt, tmp_path, erp_url: str, shop_url: str) -> None:
    """The ERP's address written another way (localhost for 127.0.0.1): a host change, so the hub drops the stored
    tokens and pauses the connection until `hub auth`."""
    apply_demo_routes(rt, tmp_path, erp_url, shop_url)
    apply_demo_routes(rt, tmp_path, erp_url.replace("127.0.0.1", "localhost"), shop_url)


def test_auth_json_reports_the_connection_active_with_its_token_expiry(rt, tmp_path, lojinha_pair, hub):
    (erp, erp_url), (_shop, shop_url) = lojinha_pair
    erp.seed("products", 3)
    moved_host(rt, tmp_path, erp_url, shop_url)

    listed = hub("auth", "status", "demo", "--json")
    assert listed.exit_code == 0, listed.output
    rows = {r["connection"]: r for r in json.loads(listed.stdout)}
    assert set(rows) == {"erp", "shop"}
    assert rows["erp"]["state"] == "needs_authorization" and rows["erp"]["pause_kind"] == "auth"
    assert rows["erp"]["fix"] == "hub auth lojinha demo --connection erp"
    assert rows["shop"]["state"] == "active" and rows["shop"]["fix"] is None
    text = hub("auth", "status", "demo")
    assert text.exit_code == 0 and "erp (lojinha): needs authorization" in text.output
    assert "fix: `hub auth lojinha demo --connection erp`" in text.output

    done = hub("auth", "lojinha", "demo", "--connection", "erp", "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)  # the whole of stdout
    assert report["ok"] is True and report["connection"] == "erp" and report["platform"] == "lojinha"
    assert report["state"] == "active" and report["pause_reason"] is None
    assert report["token_expires_at"] and report["token_issued_at"], "the new token's lifetime is reported"
    assert report["queued_operations"] == 0
    assert "authorized demo/erp" in done.stderr, "the human line still goes to stderr"
    stored = rt.vault.decrypt(_erp_credentials(rt))
    assert not any(str(v) in done.stdout for k, v in stored.items() if "secret" in k or "token" in k), \
        "no credential in the report"
    after = {r["connection"]: r for r in json.loads(hub("auth", "status", "demo", "--json").stdout)}
    assert after["erp"]["state"] == "active"


def test_auth_json_errors_are_a_json_object_and_exit_1(rt, tmp_path, lojinha_pair, hub):
    (_erp, erp_url), (_shop, shop_url) = lojinha_pair
    apply_demo_routes(rt, tmp_path, erp_url, shop_url)
    unknown = hub("auth", "lojinha", "nobody", "--json")
    assert unknown.exit_code == 1, unknown.output
    error = json.loads(unknown.stdout)
    assert error["ok"] is False and "tenant 'nobody' has 0 lojinha connections" in error["error"]
    assert "--connection" in error["fix"] and unknown.stderr == ""
    several = hub("auth", "lojinha", "demo", "--json")
    assert several.exit_code == 1 and "(erp, shop)" in json.loads(several.stdout)["error"], several.output
    no_tenant = hub("auth", "status", "nobody", "--json")
    assert no_tenant.exit_code == 1 and json.loads(no_tenant.stdout)["fix"].startswith("Apply a route file")
    plain = hub("auth", "lojinha", "nobody")
    assert plain.exit_code == 1 and plain.stdout == "" and "error: tenant 'nobody'" in plain.stderr


def test_every_auth_command_takes_json(rt, hub):
    group = with_plugins().commands["auth"]
    ctx = group.make_context("auth", [], resilient_parsing=True)
    names = group.list_commands(ctx)
    assert {"bling", "zydon", "lojinha", "status"} <= set(names), "plugin commands and the generic one alike"
    for name in names:
        command = group.get_command(ctx, name)
        assert command is not None and any(p.name == "as_json" for p in command.params), name
        assert "--json" in hub("auth", name, "--help").output, name


def _erp_credentials(rt) -> bytes:
    from hub.store.schema import Connection
    from sqlalchemy import select

    with rt.store.sessions() as s:
        value = s.scalar(select(Connection.credentials).where(Connection.name == "erp"))
    assert value is not None
    return value
