"""What the console does beyond showing: `hub auth` in the browser (the Bling sandbox's consent page and back to the
console's callback), "run now" per route and per stream, the DE-PARA diff against the route file and writing it
back, and the routes page's bounded counts. Every new endpoint answers 404 to another tenant's user."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from hub import status, webhooks
from hub.config import apply as applying
from hub.config import routes as config
from hub.console import oauth, overview
from hub.store.engine import utcnow
from hub.store.schema import Binding, Connection, Route
from hub.sync.loading import credentials_of
from sqlalchemy import select, update
from starlette.testclient import TestClient

from tests.console.conftest import INTEGRATOR, OTHER_USER, SHOP_USER, form_token, login

CALLBACK = "http://testserver/auth/callback"


def _bling(rt: Any) -> Any:
    with rt.store.sessions() as s:
        conn = s.scalar(select(Connection).where(Connection.tenant_id == "loja", Connection.name == "bling"))
        s.expunge(conn)
        return conn


def _start(client: TestClient) -> str:
    """Press "authorize" for loja's Bling: the consent page's address."""
    token = form_token(client, "/t/loja/connections")
    started = client.post("/t/loja/connections/bling/authorize", data={"csrf": token})
    assert started.status_code == 303, started.text
    return str(started.headers["location"])


def _state(consent: str) -> str:
    return str(parse_qs(urlsplit(consent).query)["state"][0])


def test_authorizing_in_the_browser_goes_through_the_consent_page_and_stores_the_grant_encrypted(rt, tenants, client):
    shop = tenants["loja"]
    shop.bling.redirect_uri = CALLBACK  # the redirect link registered on the Bling app: the console's callback
    before = credentials_of(rt.vault, _bling(rt))
    with rt.store.begin() as s:
        s.execute(update(Connection).where(Connection.tenant_id == "loja", Connection.name == "bling").values(
            paused_until=utcnow() + timedelta(days=1), pause_kind="auth", pause_reason="refresh token refused"))
    login(client, SHOP_USER)
    page = client.get("/t/loja/connections").text
    assert 'id="authorize-bling"' in page and "Autorizar no bling" in page
    assert 'id="auth-help-cplug"' in page and "hub auth cplug loja --connection cplug" in page, \
        "CPlug (password grant) says what to do instead"
    assert CALLBACK in page, "the callback to register on the app is shown"

    consent = _start(client)
    assert consent.startswith(shop.servers[0].base_url + "/Api/v3/oauth/authorize?")
    assert parse_qs(urlsplit(consent).query)["client_id"] == [before["client_id"]]
    back = httpx.get(consent, follow_redirects=False)  # the sandbox's consent page, already agreed to
    assert back.status_code == 302 and back.headers["location"].startswith(CALLBACK + "?")
    code = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]

    done = client.get(back.headers["location"])
    assert done.status_code == 303 and done.headers["location"].startswith("/t/loja/connections?msg=auth_done")
    conn = _bling(rt)
    after = credentials_of(rt.vault, conn)
    assert "authorization_code" not in after, "the code was exchanged, not kept"
    assert after["access_token"] and after["refresh_token"] != before["refresh_token"], "a new grant is stored"
    assert conn.paused_until is None and conn.pause_kind is None, "the connection works again"
    assert conn.token_expires_at is not None and conn.renew_by is not None
    raw = bytes(conn.credentials or b"")
    assert after["refresh_token"].encode() not in raw and code.encode() not in raw, "stored encrypted"
    shown = client.get(done.headers["location"]).text
    assert "Conexão bling autorizada" in shown and 'id="authorize-bling"' in shown

    replayed = client.get(back.headers["location"])
    assert replayed.status_code == 400 and "já foi usado" in replayed.text, "a state works once"
    assert credentials_of(rt.vault, _bling(rt))["refresh_token"] == after["refresh_token"]


def test_a_callback_is_refused_for_another_tenant_session_or_an_expired_or_altered_state(rt, tenants, client,
                                                                                           monkeypatch):
    shop = tenants["loja"]
    shop.bling.redirect_uri = CALLBACK
    before = credentials_of(rt.vault, _bling(rt))
    login(client, SHOP_USER)
    state = _state(_start(client))
    callback = f"/auth/callback?code=not-used&state={state}"
    with TestClient(client.app, follow_redirects=False) as stranger:
        login(stranger, OTHER_USER)
        token = form_token(stranger, "/t/demo/connections")
        assert stranger.post("/t/loja/connections/bling/authorize", data={"csrf": token}).status_code == 404
        assert stranger.get(callback).status_code == 404, "another tenant's callback: as if it did not exist"
    with TestClient(client.app, follow_redirects=False) as integrator:
        login(integrator, INTEGRATOR)
        other = integrator.get(callback)
        assert other.status_code == 400 and "outra sessão" in other.text, "bound to the session that started it"
    with TestClient(client.app, follow_redirects=False) as nobody:
        assert nobody.get(callback).status_code == 401
    assert client.get(callback.replace("state=", "state=x")).status_code == 400, "an altered state"
    own = form_token(client, "/t/loja/connections")
    assert client.post("/t/loja/connections/nope/authorize", data={"csrf": own}).status_code == 404
    assert client.post("/t/loja/connections/bling/authorize", data={}).status_code == 403, "CSRF"
    no_consent = client.post("/t/loja/connections/cplug/authorize", data={"csrf": own})
    assert no_consent.status_code == 400 and "hub auth cplug loja" in html.unescape(no_consent.text)
    refused = client.get(f"/auth/callback?error=access_denied&state={_state(_start(client))}")
    assert refused.status_code == 400 and "recusou" in refused.text and "access_denied" in refused.text
    monkeypatch.setattr(oauth, "STATE_TTL", -1)
    expired = client.get(f"/auth/callback?code=not-used&state={_state(_start(client))}")
    assert expired.status_code == 400 and "expirado" in expired.text
    assert credentials_of(rt.vault, _bling(rt)) == before, "nothing was stored by a refused callback"


def _next_run(rt: Any) -> Any:
    with rt.store.sessions() as s:
        return s.scalar(select(Route.next_run_at).where(Route.tenant_id == "loja", Route.name == "sales"))


def test_run_now_per_route_and_per_stream_marks_the_route_due_and_wakes_the_schedulers(rt, tenants, client):
    with rt.store.begin() as s:
        s.execute(update(Route).values(next_run_at=utcnow() + timedelta(days=1)))
    woken: list[int] = []
    webhooks.DUE_LISTENERS.append(lambda: woken.append(1))
    try:
        login(client, SHOP_USER)
        page = client.get("/t/loja/routes").text
        assert 'id="run-sales-sales"' in page and 'id="run-sales-customers"' in page
        token = form_token(client, "/t/loja/routes")
        done = client.post("/t/loja/routes/sales/streams/sales/run", data={"csrf": token})
        assert done.status_code == 303 and "msg=stream_queued" in done.headers["location"]
        assert _next_run(rt) <= utcnow() and woken, "due in the store, and this process's schedulers woken"
        assert client.post("/t/loja/routes/sales/streams/products/run", data={"csrf": token}).status_code == 404
        assert client.post("/t/loja/routes/sales/streams/sales/run", data={}).status_code == 403
        assert client.post("/t/demo/routes/sales/streams/sales/run", data={"csrf": token}).status_code == 404
        with TestClient(client.app, follow_redirects=False) as stranger:
            login(stranger, OTHER_USER)
            theirs = form_token(stranger, "/t/demo/routes")
            with rt.store.begin() as s:
                s.execute(update(Route).values(next_run_at=utcnow() + timedelta(days=1)))
            for action in ("/t/loja/routes/sales/streams/sales/run", "/t/loja/routes/sales/run"):
                assert stranger.post(action, data={"csrf": theirs}).status_code == 404, action
            assert _next_run(rt) > utcnow(), "another tenant's user changed nothing"
    finally:
        webhooks.DUE_LISTENERS.pop()


def _file_tables(path: Path) -> dict[str, str]:
    return dict(config.load(path).tenants["loja"].routes["sales"].mappings.payment_methods or {})


def test_the_de_para_editor_diffs_against_the_route_file_and_writes_the_hub_values_back(rt, tenants, client):
    shop = tenants["loja"]
    path = shop.path
    text = path.read_text()
    # The operator's comments, an entry added to the file after the last apply, one the file lost.
    text = "# loja: edited by hand, keep this comment\n" + text
    text = re.sub(r"^(\s+)'108': Outros$", r"\1'108': Outros  # Vale Presente", text, flags=re.M)
    text = re.sub(r"^(\s+)'109': Cheque\n", r"\1'110': Outros\n", text, flags=re.M)
    path.write_text(text)
    with rt.store.begin() as s:  # what a console save leaves in the store
        route = s.scalar(select(Route).where(Route.tenant_id == "loja", Route.name == "sales"))
        cfg = dict(route.config)
        assert cfg["applied_from"] == str(path.resolve()), "apply recorded the file"
        cfg["mappings"] = {**cfg["mappings"], "payment_methods": {**cfg["mappings"]["payment_methods"],
                                                                  "107": "Dinheiro"}}
        route.config = cfg
    login(client, SHOP_USER)
    editor = client.get("/t/loja/routes/sales/mappings").text
    assert 'id="file-diff"' in editor and 'id="write-file"' in editor and 'id="file-note"' in editor
    assert re.search(r'id="diff-payment_methods-107">.*?Dinheiro.*?Outros.*?diferente', editor)
    assert re.search(r'id="diff-payment_methods-109">.*?Cheque.*?só no hub', editor)
    assert re.search(r'id="diff-payment_methods-110">.*?Outros.*?só no arquivo', editor)
    assert 'id="diff-payment_methods-101"' not in editor, "equal entries are not listed"

    token = form_token(client, "/t/loja/routes/sales/mappings")
    with TestClient(client.app, follow_redirects=False) as stranger:
        login(stranger, OTHER_USER)
        theirs = form_token(stranger, "/t/demo/routes")
        assert stranger.post("/t/loja/routes/sales/mappings/file", data={"csrf": theirs}).status_code == 404
        assert stranger.get("/t/loja/routes/sales/mappings").status_code == 404
    assert path.read_text() == text, "another tenant's user wrote nothing"
    written = client.post("/t/loja/routes/sales/mappings/file", data={"csrf": token})
    assert written.status_code == 303 and "msg=file_written" in written.headers["location"]
    assert "n=2" in written.headers["location"]
    after = path.read_text()
    assert after.startswith("# loja: edited by hand, keep this comment\n") and "# Vale Presente" in after
    tables = _file_tables(path)
    assert tables["107"] == "Dinheiro" and tables["109"] == "Cheque", "the hub's values are in the file"
    assert tables["110"] == "Outros", "an entry only in the file stays"
    shown = client.get(written.headers["location"]).text
    assert "2 entradas gravadas" in shown and 'id="write-file"' not in shown
    assert 'id="diff-payment_methods-110"' in shown and 'id="diff-payment_methods-107"' not in shown

    applying.apply(config.load(path), rt.store, rt.vault, rt.registry)  # the next `hub routes apply`
    with rt.store.sessions() as s:
        table = s.scalar(select(Route.config).where(Route.tenant_id == "loja", Route.name == "sales"))
    assert table["mappings"]["payment_methods"]["107"] == "Dinheiro", "the console's save survives an apply"


@pytest.mark.parametrize("applied_from", [None, "gone.yaml"])
def test_without_a_writable_route_file_the_editor_keeps_the_warning(rt, tenants, client, tmp_path, applied_from):
    with rt.store.begin() as s:
        route = s.scalar(select(Route).where(Route.tenant_id == "loja", Route.name == "sales"))
        cfg = {k: v for k, v in route.config.items() if k != "applied_from"}
        if applied_from is not None:
            cfg["applied_from"] = str(tmp_path / applied_from)
        route.config = cfg
    login(client, SHOP_USER)
    editor = client.get("/t/loja/routes/sales/mappings?lang=en").text
    assert 'id="mapping-warning"' in editor and "replaces these values" in editor
    assert 'id="write-file"' not in editor and 'id="file-diff"' not in editor
    assert ("does not know which file" if applied_from is None else "no such file on this host") in editor
    token = form_token(client, "/t/loja/routes/sales/mappings")
    refused = client.post("/t/loja/routes/sales/mappings/file", data={"csrf": token})
    assert refused.status_code == 400 and "cannot be written from the console" in html.unescape(refused.text)


def test_the_routes_page_counts_up_to_a_cap_and_exactly_on_demand(rt, tenants, client, monkeypatch):
    with rt.store.begin() as s:
        cplug = s.scalar(select(Connection.id).where(Connection.tenant_id == "loja", Connection.name == "cplug"))
        s.add_all([Binding(tenant_id="loja", connection_id=cplug, entity="customers", external_id=f"c{i}",
                           canonical_id=f"canon-{i}", content_hash="h", origin="source", synced_at=utcnow())
                   for i in range(5)])
    exact = overview.routes_overview(rt, "loja", exact=True)
    full = status.tenant_status(rt, "loja")
    for mine, theirs in zip(exact["routes"], full["routes"], strict=True):
        for a, b in zip(mine["streams"], theirs["streams"], strict=True):
            assert {k: int(a[k]) for k in ("records", "on_sink", "pending", "failed")} == \
                {k: b[k] for k in ("records", "on_sink", "pending", "failed")}, "the same figures as hub status"
    monkeypatch.setattr(overview, "CAP", 2)
    login(client, SHOP_USER)
    page = client.get("/t/loja/routes").text
    assert re.search(r'id="stream-sales-customers">.*?class="n records">2\+<', page, re.S)
    assert 'id="exact-counts"' in page
    counted = client.get("/t/loja/routes?exact=1").text
    assert re.search(r'id="stream-sales-customers">.*?class="n records">5<', counted, re.S)
    assert 'id="exact-counts"' not in counted and 'id="exact"' in counted
