"""Bling's OAuth: the authorization code, 6 h tokens, rotating refresh tokens, single-flight refresh, revocation
pausing the tenant without losing work, and idle tenants renewed before the 30 days run out."""

from __future__ import annotations

import threading
from datetime import timedelta

import httpx
from click.testing import CliRunner
from hub.auth import authorize
from hub.cli import with_plugins
from hub.runner.service import renew_idle_once
from hub.status import tenant_status
from hub.store.engine import utcnow
from hub.store.schema import Connection
from hub.sync.loading import credentials_of, ensure_auth
from hub_bling.cli import code_from
from sqlalchemy import update

from tests.bling.conftest import TENANT, World, customer


def _creds(world: World) -> dict[str, str]:
    return credentials_of(world.rt.vault, world.connection())


def test_refresh_tokens_rotate_and_the_new_pair_is_stored_encrypted(world: World):
    first = ensure_auth(world.rt, world.bling_id)
    old_refresh = first["refresh_token"]
    assert first["access_token"]
    stored = world.connection().credentials
    assert stored is not None and first["access_token"].encode() not in stored
    world.box.expire_access_tokens()
    second = ensure_auth(world.rt, world.bling_id, stale_token=first["access_token"])
    assert second["refresh_token"] != old_refresh and second["access_token"] != first["access_token"]
    assert _creds(world)["refresh_token"] == second["refresh_token"]
    # The old refresh token died with its use: Bling refuses it.
    answer = httpx.post(f"{world.connection().options['base_url']}/oauth/token",
                        data={"grant_type": "refresh_token", "refresh_token": old_refresh},
                        auth=(world.box.client_id, world.box.client_secret))
    assert answer.status_code == 400


def test_refresh_is_single_flight_across_workers(world: World):
    ensure_auth(world.rt, world.bling_id)
    stale = _creds(world)["access_token"]
    world.box.expire_access_tokens()
    calls_before = world.box.token_calls
    results: list[str] = []

    def worker() -> None:
        results.append(ensure_auth(world.rt, world.bling_id, stale_token=stale)["access_token"])

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert world.box.token_calls - calls_before == 1
    assert len(set(results)) == 1 and results[0] != stale


def test_a_revoked_authorization_pauses_the_tenant_and_resumes_after_hub_auth(world: World):
    world.route("customers", ["customers"])
    world.box.revoke_all()
    world.stage("customers", "customers", customer())
    world.drain()
    (op,) = world.ops(entity="customers")
    assert op.state == "pending" and op.attempts == 0, "nothing queued is lost or burnt"
    status = tenant_status(world.rt, TENANT)
    erp = next(c for c in status["connections"] if c["name"] == "erp")
    assert erp["paused"] and "hub auth bling acme" in erp["pause_reason"]

    url = f"{world.connection().options['base_url']}/oauth/authorize"
    redirect = httpx.get(url, params={"response_type": "code", "client_id": world.box.client_id, "state": "s1"})
    assert redirect.status_code == 302
    code = code_from(redirect.headers["location"], "s1")
    resumed = authorize(world.rt, world.bling_id, {"authorization_code": code})
    assert resumed == 1
    world.drain()
    assert world.ops(entity="customers")[0].state == "done"
    assert len([c for c in world.box.records("customers") if c.get("numeroDocumento") == "52998224725"]) == 1
    assert not world.connection().paused_until


def test_hub_auth_bling_prints_the_link_and_exchanges_the_code(world: World, settings, monkeypatch):
    monkeypatch.setenv("HUB_DATABASE_URL", settings.resolved_database_url())
    monkeypatch.setenv("HUB_HOME", str(settings.home))
    from hub.settings import get_settings

    get_settings.cache_clear()
    try:
        code = world.box.authorize(state="fixed")
        result = CliRunner().invoke(with_plugins(), ["auth", "bling", TENANT, "--state", "fixed"],
                                    input=f"http://localhost/callback?code={code}&state=fixed\n")
        assert result.exit_code == 0, result.output
        assert "oauth/authorize?response_type=code" in result.output and "state=fixed" in result.output
        assert f"authorized {TENANT}/erp" in result.output
        assert credentials_of(world.rt.vault, world.connection())["company_id"] == world.box.company_id
        reused = CliRunner().invoke(with_plugins(), ["auth", "bling", TENANT, "--code", code])
        assert reused.exit_code == 1 and "hub auth bling" in reused.output
    finally:
        get_settings.cache_clear()


def test_idle_tenants_are_renewed_before_the_refresh_token_dies(world: World):
    ensure_auth(world.rt, world.bling_id)
    before = _creds(world)["refresh_token"]
    assert world.connection().renew_by is not None
    assert renew_idle_once(world.rt) == 0, "a fresh grant is left alone"
    with world.rt.store.begin() as s:
        s.execute(update(Connection).where(Connection.id == world.bling_id)
                  .values(renew_by=utcnow() + timedelta(days=1)))
    assert renew_idle_once(world.rt) == 1
    assert _creds(world)["refresh_token"] != before
    assert world.connection().renew_by > utcnow() + timedelta(days=29)


def test_a_connection_bootstrapped_from_a_refresh_token_learns_its_company_id(world: World):
    """Webhooks check the event's companyId against it; without it every event would be refused."""
    assert "company_id" not in _creds(world), "the connection starts with a refresh token only"
    ensure_auth(world.rt, world.bling_id)
    assert _creds(world)["company_id"] == world.box.company_id, "the company id is fetched after the refresh"


def test_a_token_renewal_records_its_attempt_and_clears_it_with_the_new_pair(world: World):
    ensure_auth(world.rt, world.bling_id)
    conn = world.connection()
    assert conn.auth_attempt_at is None and conn.auth_attempt_token is None, "cleared with the new pair"
    assert conn.token_issued_at is not None and conn.token_expires_at is not None
    assert timedelta(hours=5) < conn.token_expires_at - conn.token_issued_at <= timedelta(hours=6)


def test_a_wrong_host_on_the_token_call_is_a_clear_error_not_a_missing_record(world: World):
    """A 404 from /oauth/token used to become NotFound ("the record is gone"): a push then dropped its binding and
    created the record again. It names the base_url instead; a 5xx there is retried."""
    from hub.errors import Fatal, Retriable
    from hub.sandbox import serve
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def point_at(url: str) -> None:
        with world.rt.store.begin() as s:
            s.execute(update(Connection).where(Connection.id == world.bling_id)
                      .values(options={**world.connection().options, "base_url": url}))

    elsewhere = serve(Starlette(routes=[]))  # a host with no token endpoint: 404
    down = serve(Starlette(routes=[Route("/oauth/token", lambda request: JSONResponse({}, status_code=503),
                                         methods=["POST"])]))
    try:
        point_at(elsewhere.base_url)
        try:
            ensure_auth(world.rt, world.bling_id, force=True)
            raise AssertionError("a token endpoint that is not there must not pass")
        except Fatal as exc:
            assert "base_url" in exc.fix and "token endpoint" in exc.message, (exc.message, exc.fix)
        assert world.connection().pause_kind is None, "a wrong address is not a revoked authorization"
        point_at(down.base_url)
        try:
            ensure_auth(world.rt, world.bling_id, force=True)
            raise AssertionError("a 503 from the token service must be retried")
        except Retriable as exc:
            assert "503" in exc.message, exc.message
        assert world.connection().pause_kind is None
    finally:
        elsewhere.stop()
        down.stop()
