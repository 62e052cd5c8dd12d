"""Signing in, the session cookie, CSRF on every form, and tenant isolation: a user of one tenant gets 404 for
any page or id of another, exactly as for one that does not exist."""

from __future__ import annotations

import re

from hub.store.engine import utcnow
from hub.store.schema import Operation, Quarantine, Route
from sqlalchemy import select
from starlette.testclient import TestClient

from tests.console.conftest import INTEGRATOR, OTHER_USER, PASSWORD, SECRET, SHOP_USER, csrf_of, form_token, login


def test_pages_need_a_login_and_a_wrong_password_opens_nothing(rt, tenants, client):
    answer = client.get("/t/loja/routes")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    assert client.post("/t/loja/failed/retry", data={}).status_code == 401
    refused = login(client, SHOP_USER, "wrong password!")
    assert refused.status_code == 401 and "incorretos" in refused.text
    assert login(client, "nobody@loja.example").status_code == 401
    assert client.get("/t/loja/routes").status_code == 303, "still signed out"
    assert login(client, SHOP_USER).headers["location"] == "/"
    home = client.get("/")
    assert home.headers["location"] == "/t/loja/routes", "a shop with one tenant lands on it"
    page = client.get("/t/loja/routes")
    assert page.status_code == 200 and "sales" in page.text and "customers" in page.text


def test_the_session_cookie_is_signed_httponly_lax_and_secure_over_https(rt, tenants):
    from hub.console.app import make_app

    with TestClient(make_app(rt, SECRET), base_url="https://console.example", follow_redirects=False) as c:
        answer = login(c, SHOP_USER)
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax") and "Secure" in cookie
        value = c.cookies["hub_session"]
        c.cookies.set("hub_session", value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB"),
                      domain="console.example")
        assert c.get("/t/loja/routes").status_code == 303, "a tampered cookie is no session"
    with TestClient(make_app(rt, SECRET), follow_redirects=False) as plain:
        assert "Secure" not in login(plain, SHOP_USER).headers["set-cookie"]
    with TestClient(make_app(rt, b"another deployment"), follow_redirects=False) as other:
        other.cookies.set("hub_session", value)
        assert other.get("/t/loja/routes").status_code == 303, "signed with another key: refused"


def test_every_form_carries_a_csrf_token_and_a_post_without_it_is_refused(rt, tenants, client):
    login(client, SHOP_USER)
    for page in ("/t/loja/routes", "/t/loja/connections", "/t/loja/failed", "/t/loja/quarantine",
                 "/t/loja/routes/sales/mappings"):
        html = client.get(page).text
        forms = re.findall(r"<form[^>]*method=\"post\"[^>]*>(.*?)</form>", html, flags=re.S)
        assert forms, page
        assert all('name="csrf"' in f for f in forms), f"a form of {page} has no CSRF token"
    pending_before = _next_run(rt)
    assert client.post("/t/loja/routes/sales/run", data={}).status_code == 403
    assert client.post("/t/loja/routes/sales/run", data={"csrf": "forged"}).status_code == 403
    assert _next_run(rt) == pending_before, "nothing was done"
    assert client.post("/logout", data={}).status_code == 403
    token = form_token(client, "/t/loja/routes")
    done = client.post("/t/loja/routes/sales/run", data={"csrf": token})
    assert done.status_code == 303 and _next_run(rt) <= utcnow()
    with TestClient(client.app, follow_redirects=False) as stranger:
        login(stranger, OTHER_USER)
        assert stranger.post("/t/loja/routes/sales/run", data={"csrf": token}).status_code == 404


def _next_run(rt):
    with rt.store.sessions() as s:
        return s.scalar(select(Route.next_run_at).where(Route.tenant_id == "loja", Route.name == "sales"))


def _plant(rt, tenant: str) -> tuple[int, int]:
    """A failed operation and a quarantined record of ``tenant``; their ids."""
    now = utcnow()
    with rt.store.begin() as s:
        route = s.scalar(select(Route).where(Route.tenant_id == tenant, Route.name == "sales"))
        op = Operation(tenant_id=tenant, route_id=route.id, connection_id=route.sink_id, kind="push_sale",
                       entity="sales", canonical_id=f"{tenant}-sale-1", content_hash="h", params={},
                       idempotency_key=f"{tenant}-key-1", state="failed", attempts=8, waits=0, available_at=now,
                       created_at=now, updated_at=now, last_error="refused", fix="fix it")
        q = Quarantine(tenant_id=tenant, route_id=route.id, connection_id=route.source_id, entity="sales",
                       record=f"{tenant} sale 1", field="payments.0.method", reason="refused", fix="fix it",
                       payload={}, created_at=now, resolved_at=None)
        s.add_all([op, q])
        s.flush()
        return op.id, q.id


def test_a_user_of_one_tenant_gets_404_for_every_page_and_id_of_another(rt, tenants, client):
    demo_op, demo_q = _plant(rt, "demo")
    loja_op, _ = _plant(rt, "loja")
    login(client, SHOP_USER)
    token = form_token(client, "/t/loja/routes")
    for page in ("/t/demo/", "/t/demo/routes", "/t/demo/connections", "/t/demo/logs", "/t/demo/quarantine",
                 "/t/demo/failed", "/t/demo/routes/sales/runs", "/t/demo/routes/sales/mappings", "/t/nowhere/routes"):
        answer = client.get(page)
        assert answer.status_code == 404, page
        assert "demo" not in answer.text.replace("/t/demo", ""), "nothing of the other tenant is shown"
    for action in ("/t/demo/routes/sales/run", "/t/demo/failed/retry", f"/t/demo/failed/{demo_op}/retry",
                   f"/t/demo/quarantine/{demo_q}/retry", "/t/demo/connections/erp/pause",
                   "/t/demo/routes/sales/mappings"):
        assert client.post(action, data={"csrf": token}).status_code == 404, action
    # Another tenant's ids through one's own tenant: the same 404 as an id that does not exist.
    for action in (f"/t/loja/failed/{demo_op}/retry", f"/t/loja/quarantine/{demo_q}/retry",
                   "/t/loja/failed/999999/retry", "/t/loja/connections/erp/pause", "/t/loja/routes/catalogo/run"):
        assert client.post(action, data={"csrf": token}).status_code == 404, action
    assert client.get("/t/loja/routes/nope/runs").status_code == 404
    with rt.store.sessions() as s:
        assert s.get(Operation, demo_op).state == "failed", "the other tenant's operation was not touched"
        assert s.get(Quarantine, demo_q).resolved_at is None
    # ... while one's own id works.
    assert client.post(f"/t/loja/failed/{loja_op}/retry", data={"csrf": token}).status_code == 303
    with rt.store.sessions() as s:
        assert s.get(Operation, loja_op).state == "pending"


def test_an_integrator_sees_each_of_its_tenants_and_a_shop_only_its_own(rt, tenants, client):
    login(client, INTEGRATOR)
    home = client.get("/")
    assert home.status_code == 200 and "/t/loja/routes" in home.text and "/t/demo/routes" in home.text
    assert client.get("/t/demo/routes").status_code == 200
    assert client.get("/t/loja/routes").status_code == 200
    with TestClient(client.app, follow_redirects=False) as shop_only:
        login(shop_only, OTHER_USER)
        assert shop_only.get("/t/demo/routes").status_code == 200
        assert shop_only.get("/t/loja/routes").status_code == 404


def test_signing_in_returns_to_the_page_asked_for_and_never_elsewhere(rt, tenants, client):
    asked = client.get("/t/loja/logs").headers["location"]
    token = csrf_of(client.get(asked).text)
    back = client.post("/login", data={"email": SHOP_USER, "password": PASSWORD, "csrf": token,
                                       "next": "/t/loja/logs"})
    assert back.headers["location"] == "/t/loja/logs"
    with TestClient(client.app, follow_redirects=False) as other:
        token = csrf_of(other.get("/login").text)
        away = other.post("/login", data={"email": SHOP_USER, "password": PASSWORD, "csrf": token,
                                          "next": "//evil.example/t/"})
        assert away.headers["location"] == "/"


def test_logout_ends_the_session(rt, tenants, client):
    login(client, SHOP_USER)
    token = csrf_of(client.get("/t/loja/routes").text)
    assert client.post("/logout", data={"csrf": token}).headers["location"] == "/login"
    assert client.get("/t/loja/routes").status_code == 303


def test_hub_users_add_binds_a_login_to_tenants_and_refuses_an_unknown_tenant(rt, tenants, settings, monkeypatch):
    from click.testing import CliRunner
    from hub.cli import cli
    from hub.settings import get_settings

    monkeypatch.setenv("HUB_DATABASE_URL", settings.resolved_database_url())
    monkeypatch.setenv("HUB_HOME", str(settings.home))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        ok = runner.invoke(cli, ["users", "add", "dora@loja.example", "--tenant", "loja", "--password", PASSWORD])
        assert ok.exit_code == 0 and "loja" in ok.output
        bad = runner.invoke(cli, ["users", "add", "eva@x.example", "--tenant", "nope", "--password", PASSWORD])
        assert bad.exit_code == 1 and "no tenant nope" in bad.output
        short = runner.invoke(cli, ["users", "add", "eva@x.example", "--tenant", "loja", "--password", "abc"])
        assert short.exit_code == 1 and "too short" in short.output
    finally:
        get_settings.cache_clear()
    from hub.console.users import authenticate

    user = authenticate(rt.store, "dora@loja.example", PASSWORD)
    assert user is not None and user.tenants == ("loja",)
    from hub.store.schema import User

    with rt.store.sessions() as s:
        stored = s.scalar(select(User.password_hash).where(User.email == "dora@loja.example"))
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
