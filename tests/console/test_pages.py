"""The tenant pages: the DE-PARA editor fixes the refused sales, the API log pages by keyset with its filters,
dates in the tenant's zone, Portuguese and English."""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta

from hub.store.engine import utcnow
from hub.store.schema import ApiCall, Connection, Operation, Route, Tenant
from hub.sync.drain import drain
from sqlalchemy import func, select, update

from tests.console.conftest import BROKEN_PAYMENTS, SHOP_USER, form_token, login, refused_sales


def _failed(rt) -> int:
    with rt.store.sessions() as s:
        return s.scalar(select(func.count()).select_from(Operation).where(
            Operation.tenant_id == "loja", Operation.state == "failed", Operation.kind == "push_sale")) or 0


def test_a_de_para_fixed_in_the_editor_and_retried_sends_the_refused_sales(rt, tenants, client):
    shop = tenants["loja"]
    refused_sales(shop, 3)
    assert _failed(rt) == 3 and shop.bling_orders() == {}
    login(client, SHOP_USER)
    routes = client.get("/t/loja/routes").text
    shown = re.search(r'id="stream-sales-sales".*?class="n failed"><a class="bad"[^>]*>(\d+)<', routes, re.S)
    assert shown and int(shown.group(1)) >= 3, "the sales stream shows its failed operations"
    quarantine = client.get("/t/loja/quarantine").text
    assert "payments.0.method" in quarantine and "Dinheiro Vivo" in quarantine
    editor = client.get("/t/loja/routes/sales/mappings")
    assert editor.status_code == 200
    assert "não existe no destino" in editor.text, "the entry Bling lacks is flagged beside Bling's values"
    token = form_token(client, "/t/loja/routes/sales/mappings")
    fields = {f"map:payment_methods:{k}": v for k, v in BROKEN_PAYMENTS.items()}
    wrong = client.post("/t/loja/routes/sales/mappings", data={**fields, "map:payment_methods:101": "Dinheiro Vivo",
                                                                "csrf": token})
    assert wrong.status_code == 400 and "'Dinheiro Vivo' is not offered by the sink" in html.unescape(wrong.text)
    with rt.store.sessions() as s:
        table = s.scalar(select(Route.config).where(Route.name == "sales", Route.tenant_id == "loja"))
    assert table["mappings"]["payment_methods"]["101"] == "Dinheiro Vivo", "an invalid table is not saved"
    saved = client.post("/t/loja/routes/sales/mappings", data={**fields, "map:payment_methods:101": "Dinheiro",
                                                                "csrf": token})
    assert saved.status_code == 303
    with rt.store.sessions() as s:
        table = s.scalar(select(Route.config).where(Route.name == "sales", Route.tenant_id == "loja"))
    assert table["mappings"]["payment_methods"]["101"] == "Dinheiro"
    assert table["mappings"]["statuses"] == {"closed": "Atendido", "canceled": "Cancelado"}, "others untouched"
    fixed = client.get("/t/loja/routes/sales/mappings").text
    assert "não existe no destino" not in fixed and 'value="Dinheiro Vivo"' not in fixed, "the fixed entry is accepted"
    assert re.search(r'id="diff-payment_methods-101">.*?Dinheiro<.*?Dinheiro Vivo<', fixed), \
        "the route file still has the old value, and the page says so"
    retried = client.post("/t/loja/failed/retry", data={"csrf": form_token(client, "/t/loja/failed")})
    assert retried.status_code == 303 and "msg=retried" in retried.headers["location"]
    drain(rt, max_wait=10)
    assert len(shop.bling_orders()) == 3, "the refused sales arrived in Bling"
    assert _failed(rt) == 0
    assert "id=\"no-failed\"" in client.get("/t/loja/failed").text


def _calls(rt, n: int, start: datetime, **values) -> None:
    with rt.store.begin() as s:
        conn = s.scalar(select(Connection.id).where(Connection.tenant_id == "loja", Connection.name == "bling"))
        s.add_all([ApiCall(tenant_id="loja", connection_id=conn, at=start + timedelta(seconds=i),
                           action=values.get("action", f"GET /pedidos/{i}"), model="sales",
                           status=values.get("status", 200), duration_ms=20, error=values.get("error"),
                           fix=values.get("fix")) for i in range(n)])


def test_the_api_log_pages_by_keyset_and_filters_by_connection_status_action_and_date(rt, tenants, client):
    day = datetime(2026, 11, 20, 15, 0)  # 12:00 in São Paulo
    _calls(rt, 120, day)
    _calls(rt, 3, day + timedelta(hours=1), status=429, action="POST /pedidos/vendas", error="too many",
           fix="Wait for the quota to renew.")
    _calls(rt, 2, day - timedelta(days=3))
    login(client, SHOP_USER)
    first = client.get("/t/loja/logs?date=2026-11-20").text
    shown = re.findall(r"<td>(\d\d/\d\d/\d{4} \d\d:\d\d:\d\d)</td>", first)
    assert len(shown) == 50 and shown[0] == "20/11/2026 13:00:02", "newest first, in the tenant's zone"
    more = re.search(r'href="\?([^"]+)" id="next-page"', first).group(1).replace("&amp;", "&")
    second = client.get(f"/t/loja/logs?{more}").text
    second_shown = re.findall(r"<td>(\d\d/\d\d/\d{4} \d\d:\d\d:\d\d)</td>", second)
    assert len(second_shown) == 50 and not set(second_shown) & set(shown), "no row twice"
    assert "date=2026-11-20" in more, "the next page keeps the filters"
    rest = re.search(r'href="\?([^"]+)" id="next-page"', second).group(1).replace("&amp;", "&")
    third = re.findall(r"<td>(\d\d/\d\d/\d{4} \d\d:\d\d:\d\d)</td>", client.get(f"/t/loja/logs?{rest}").text)
    assert len(third) == 23, "123 calls that day, the 2 of another day left out"
    limited = client.get("/t/loja/logs?status=429&connection=bling&action=pedidos/vendas").text
    assert limited.count("too many") == 3 and "Wait for the quota to renew." in limited
    assert "too many" not in client.get("/t/loja/logs?connection=cplug").text
    bad = client.get("/t/loja/logs?date=20-11-2026")
    assert bad.status_code == 400 and "YYYY-MM-DD" in bad.text


def test_dates_follow_the_tenant_zone_and_pages_speak_portuguese_or_english(rt, tenants, client):
    _calls(rt, 1, datetime(2026, 11, 20, 15, 0))
    login(client, SHOP_USER)
    pt = client.get("/t/loja/logs")
    assert "Ação" in pt.text and "Verificar" in pt.text and "America/Sao_Paulo" in pt.text
    assert "20/11/2026 12:00:00" in pt.text
    en = client.get("/t/loja/logs", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert "Action" in en.text and "Check" in en.text and "Ação" not in en.text
    chosen = client.get("/t/loja/logs?lang=en", headers={"Accept-Language": "pt-BR"})
    assert "Action" in chosen.text
    assert "Action" in client.get("/t/loja/logs").text, "?lang= is remembered"
    with rt.store.begin() as s:
        s.execute(update(Tenant).where(Tenant.id == "loja").values(time_zone="America/Manaus"))
    assert "20/11/2026 11:00:00" in client.get("/t/loja/logs").text


def test_connections_show_authorization_expiry_warnings_and_pause_resume(rt, tenants, client):
    with rt.store.begin() as s:
        s.execute(update(Connection).where(Connection.tenant_id == "loja", Connection.name == "bling")
                  .values(renew_by=utcnow() + timedelta(days=2)))
    login(client, SHOP_USER)
    page = client.get("/t/loja/connections", headers={"Accept-Language": "en"}).text
    row = re.search(r'<tr id="conn-bling">(.*?)</tr>', page, re.S).group(1)
    assert "expires soon" in row and "bling" in row
    token = form_token(client, "/t/loja/connections")
    assert client.post("/t/loja/connections/cplug/pause", data={"csrf": token}).status_code == 303
    with rt.store.sessions() as s:
        assert s.scalar(select(Connection.pause_kind).where(Connection.name == "cplug",
                                                            Connection.tenant_id == "loja")) == "operator"
    held = client.post("/t/loja/routes/sales/run", data={"csrf": token})
    assert held.status_code == 400 and "paused" in held.text
    assert client.post("/t/loja/connections/cplug/resume", data={"csrf": token}).status_code == 303
    with rt.store.sessions() as s:
        assert s.scalar(select(Connection.pause_kind).where(Connection.name == "cplug",
                                                            Connection.tenant_id == "loja")) is None


def test_run_history_lists_each_run_newest_first(rt, tenants, client):
    shop = tenants["loja"]
    shop.catalog(3)
    shop.sync("catalog")
    shop.sync("catalog")
    login(client, SHOP_USER)
    page = client.get("/t/loja/routes/catalog/runs").text
    ids = [int(i) for i in re.findall(r"<tr><td>(\d+)</td>", page)]
    assert len(ids) == 2 and ids == sorted(ids, reverse=True)
    assert page.count("<rect ") == 4, "a chart of records read and API calls, one pair of bars per run"
    assert client.get(f"/t/loja/routes/catalog/runs?before={ids[0]}").text.count("<tr><td>") == 1


def test_a_quarantined_record_shows_its_field_and_fix_and_retry_sends_its_route_again(rt, tenants, client):
    shop = tenants["loja"]
    refused_sales(shop, 2)
    login(client, SHOP_USER)
    page = client.get("/t/loja/quarantine", headers={"Accept-Language": "en"}).text
    ids = re.findall(r'<tr id="q-(\d+)">', page)
    assert len(ids) == 2 and "payments.0.method" in page and "Point the DE-PARA entry" in page
    with rt.store.begin() as s:
        s.execute(update(Route).where(Route.tenant_id == "loja").values(next_run_at=None))
    token = form_token(client, "/t/loja/quarantine")
    assert client.post(f"/t/loja/quarantine/{ids[0]}/retry", data={"csrf": token}).status_code == 303
    with rt.store.sessions() as s:
        due = s.scalar(select(Route.next_run_at).where(Route.tenant_id == "loja", Route.name == "sales"))
        waiting = s.scalar(select(func.count()).select_from(Operation).where(
            Operation.tenant_id == "loja", Operation.kind == "push_sale", Operation.state == "pending"))
    assert due is not None and due <= utcnow(), "the route runs again now"
    assert waiting == 2, "its failed operations are due again"
    assert f'id="q-{ids[0]}"' not in client.get("/t/loja/quarantine").text
