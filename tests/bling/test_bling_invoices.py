"""NF-e through Bling: Bling's fiscal rules checked before any note is attempted, the note followed until SEFAZ
authorizes it (number, series, checked access key and XML stored), a rejection turned into a fixable error, and
never two notes for one sale."""

from __future__ import annotations

import time

import pytest
from hub.models import Invoice
from hub.models.types import access_key_check_digit
from hub.store.schema import Binding, Connection, Operation, Record
from hub.sync.drain import drain
from hub_bling.sandbox import nfe
from sqlalchemy import select, update

from tests.bling.conftest import TENANT, World, customer, sale
from tests.bling.test_bling_sales import MAPPINGS


def _setup(world: World, *, ncm: bool = True) -> list[tuple[str, str]]:
    world.box.seed("payment_methods", 5)
    code = "NFE-1"
    product = {"nome": "Camiseta Básica Algodão", "codigo": code, "tipo": "P", "situacao": "A", "formato": "S",
               "preco": 49.9}
    if ncm:
        product["tributacao"] = {"ncm": "61091000", "origem": 0}
    world.box.create("products", product)
    world.route("catalog", ["products"], pull=True)
    assert world.pull("catalog").ok
    world.drain()  # the catalog route's peer is no platform: its writes fail, which is not what is tested here
    world.route("sales", ["sales"], mappings=MAPPINGS, emit_invoices=True)
    return [(code, "49.90")]


def _invoices(world: World) -> list[Invoice]:
    with world.rt.store.sessions() as s:
        return [Invoice.model_validate(r.payload) for r in s.scalars(select(Record).where(Record.entity == "invoices"))]


def _notes(world: World, number: str) -> list[dict]:
    order = next(o for o in world.box.records("sales") if o["numeroLoja"] == number)
    return [n for n in world.box.records("nfe") if str(n.get("numeroPedidoLoja") or "") == number
            or str((order.get("notaFiscal") or {}).get("id")) == str(n["id"])]


def test_an_authorized_nfe_is_stored_with_its_checked_access_key(world: World):
    items = _setup(world)
    world.stage("sales", "sales", sale("N-1", items, status="closed", buyer=customer()))
    world.drain()
    assert [o.state for o in world.ops(route_id=2)] == ["done", "done"], [o.last_error for o in world.ops()]
    (invoice,) = _invoices(world)
    assert invoice.status == "authorized" and invoice.number and invoice.series and invoice.xml
    key = invoice.access_key or ""
    assert len(key) == 44 and access_key_check_digit(key[:43]) == int(key[43])
    (note,) = _notes(world, "N-1")
    with world.rt.store.sessions() as s:
        bound = s.scalars(select(Binding.external_id).where(Binding.entity == "invoices")).all()
    assert bound == [str(note["id"])], "the invoice record is bound to Bling's note, not to its order"


def test_a_note_sefaz_still_holds_is_read_2_s_after_it_was_sent_not_a_poll_period_later(world: World):
    items = _setup(world)
    world.box.update_settings(nfe_delay_seconds=1.0)
    world.stage("sales", "sales", sale("N-5", items, status="closed", buyer=customer()))
    started = time.monotonic()
    world.drain()
    elapsed = time.monotonic() - started
    (emit,) = world.ops(kind="emit_invoice")
    assert emit.state == "done", emit.last_error
    (note,) = _notes(world, "N-5")
    reads = [r for r in world.box.request_log if r["method"] == "GET" and r["path"].endswith(f"/nfe/{note['id']}")]
    assert len(reads) == 1, "once, 2 s after sending, when SEFAZ had answered (not before sending a note generated " \
                            "just now, nor right after sending it)"
    assert elapsed < 4.5, f"the authorized note was stored {elapsed:.1f} s after the sale arrived"


def test_blings_invoice_webhook_ends_the_wait_for_sefaz_at_once(world: World):
    from hub import webhooks
    from hub.sandbox import serve
    from hub.sync.loading import ensure_auth

    from tests.bling.test_bling_webhooks import know_company

    items = _setup(world)
    ensure_auth(world.rt, world.bling_id)
    know_company(world)
    world.box.update_settings(nfe_delay_seconds=6.5)  # read 2, 4 and 6 s after sending: still with SEFAZ
    with serve(webhooks.app(world.rt)) as receiver:
        world.box.subscribe(f"{receiver.base_url}/webhooks/{TENANT}/erp")
        world.stage("sales", "sales", sale("N-6", items, status="closed", buyer=customer()))
        started = time.monotonic()
        world.drain()
        elapsed = time.monotonic() - started
    (emit,) = world.ops(kind="emit_invoice")
    assert emit.state == "done", emit.last_error
    assert [(w["event"], w["status"]) for w in world.box.webhook_log] == [("invoice.updated", 200)]
    assert elapsed < 8.0, f"stored {elapsed:.1f} s after the sale arrived: at the read 9 s after sending, not at once"


def _webhooks_on(world: World) -> None:
    from hub.sync.loading import ensure_auth

    from tests.bling.test_bling_webhooks import know_company

    ensure_auth(world.rt, world.bling_id)
    know_company(world)


def test_while_blings_invoice_webhooks_arrive_a_note_is_read_when_its_webhook_comes_not_on_a_timer(world: World):
    from hub import webhooks
    from hub.sandbox import serve

    items = _setup(world)
    _webhooks_on(world)
    world.box.update_settings(nfe_delay_seconds=3.0)
    with serve(webhooks.app(world.rt)) as receiver:
        world.box.subscribe(f"{receiver.base_url}/webhooks/{TENANT}/erp")
        world.stage("sales", "sales", sale("N-7", items, status="closed", buyer=customer()))
        world.drain()  # the account's first invoice webhook: until then the note is read on the timer too
        world.stage("sales", "sales", sale("N-8", items, status="closed", buyer=customer()), prefix="pos2")
        started = time.monotonic()
        drain(world.rt, max_wait=20)  # as `hub run` would: it waits for the webhook, past the drain's usual 5 s
        elapsed = time.monotonic() - started
    assert [o.state for o in world.ops(kind="emit_invoice")] == ["done", "done"]
    (note,) = _notes(world, "N-8")
    reads = [r for r in world.box.request_log if r["method"] == "GET" and r["path"].endswith(f"/nfe/{note['id']}")]
    assert len(reads) == 1, "read once, when its webhook said SEFAZ answered: no timed read 2 s after sending"
    assert elapsed < 9.0, f"stored {elapsed:.1f} s after the sale arrived: on the 15 s backstop, not the webhook"


def test_an_invoice_webhook_that_comes_while_its_note_is_being_read_ends_the_next_wait_at_once(world: World):
    import threading

    from hub import webhooks
    from hub.sandbox import serve
    from hub.store.engine import utcnow
    from hub.sync.operations import execute

    items = _setup(world)
    _webhooks_on(world)
    world.box.update_settings(nfe_delay_seconds=60.0)
    world.stage("sales", "sales", sale("N-9", items, status="closed", buyer=customer()))
    (push,) = world.ops(kind="push_sale")
    assert execute(world.rt, push.id) == "done"
    (emit,) = world.ops(kind="emit_invoice")
    assert execute(world.rt, emit.id) == "pending"  # sent; SEFAZ holds it, the note is read again in 2 s
    (note,) = _notes(world, "N-9")
    time.sleep(2.1)
    with serve(webhooks.app(world.rt)) as receiver:
        world.box.subscribe(f"{receiver.base_url}/webhooks/{TENANT}/erp")
        world.box.inject_fault("slow", method="GET")  # the read takes a moment: the event lands during it
        worker = threading.Thread(target=execute, args=(world.rt, emit.id))
        worker.start()
        deadline = time.monotonic() + 5
        while world.ops(kind="emit_invoice")[0].state != "running" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert world.box.send_webhook("invoice.updated", {"id": note["id"], "situacao": 3}) == 200
        worker.join(timeout=10)
    (emit,) = world.ops(kind="emit_invoice")
    assert emit.state == "pending" and emit.remote_id == str(note["id"])
    assert emit.available_at <= utcnow(), "the webhook came during the read, so the next read is due at once, " \
                                          f"not at the timed one ({emit.available_at})"


def test_bling_rules_are_checked_before_any_note_is_attempted(world: World):
    items = _setup(world, ncm=False)
    world.stage("sales", "sales", sale("N-2", items, status="closed", buyer=customer(complete=False)))
    world.drain()
    (emit,) = world.ops(kind="emit_invoice")
    assert emit.state == "failed"
    assert "fiscal.ncm" in (emit.last_error or "") and "address incomplete" in (emit.last_error or "")
    assert not any("gerar-nfe" in r["path"] for r in world.box.request_log)
    (q,) = world.quarantined()
    assert q.record == "number N-2" and q.fix


def _set_ncm(world: World, code: str, ncm: str) -> None:
    """A person edits the product's NCM in Bling (after the hub last read it)."""
    st = world.box.state
    with st.lock:
        product = next(p for p in st.products.values() if p["codigo"] == code)
        product["tributacao"]["ncm"] = ncm


def test_a_rejected_note_is_a_clear_error_and_a_retry_resends_the_same_note(world: World):
    items = _setup(world)
    _set_ncm(world, items[0][0], "")  # gone in Bling after the last sync: only SEFAZ's check can see it
    world.stage("sales", "sales", sale("N-3", items, status="closed", buyer=customer()))
    world.drain()
    (emit,) = world.ops(kind="emit_invoice")
    assert emit.state == "failed" and "rejected" in (emit.last_error or "") and "NCM" in (emit.last_error or "")
    assert "hub retry" in (emit.fix or "")
    from hub.sync.operations import retry_failed

    _set_ncm(world, items[0][0], "61091000")
    assert retry_failed(world.rt, "acme", "sales") == 1
    world.drain()
    assert world.ops(kind="emit_invoice")[0].state == "done"
    assert len(_notes(world, "N-3")) == 1, "the same note was sent again, not a second one"
    assert _invoices(world)[0].status == "authorized"


def test_never_two_notes_for_one_sale_after_a_crash(world: World):
    items = _setup(world)
    world.stage("sales", "sales", sale("N-4", items, status="closed", buyer=customer()))
    world.drain()
    (emit,) = world.ops(kind="emit_invoice")
    # The worker died right after gerar-nfe, before the note's id was recorded.
    with world.rt.store.begin() as s:
        s.execute(update(Operation).where(Operation.id == emit.id).values(state="pending", remote_id=None))
        s.execute(Binding.__table__.delete().where(Binding.entity == "invoices"))
    world.drain()
    assert len(_notes(world, "N-4")) == 1
    assert len(_invoices(world)) == 1


def _poll_fast(world: World) -> None:
    with world.rt.store.begin() as s:
        conn = s.get_one(Connection, world.bling_id)
        conn.options = {**conn.options, "nfe_poll_seconds": 0.1}


def _sends(world: World) -> list[dict]:
    return [r for r in world.box.request_log if r["method"] == "POST" and r["path"].endswith("/enviar")]


def test_a_note_still_pendente_after_sending_is_followed_not_sent_again(world: World):
    items = _setup(world)
    _poll_fast(world)
    with world.box.state.lock:
        world.box.state.nfe_queue_seconds = 0.8  # Bling holds the sent note at situação 1 before SEFAZ takes it
    world.stage("sales", "sales", sale("N-5", items, status="closed", buyer=customer()))
    world.drain()
    (emit,) = world.ops(kind="emit_invoice")
    assert emit.state == "done", f"the note should be authorized after waiting, got {emit.state}: {emit.last_error}"
    assert len(_sends(world)) == 1, f"the note is sent once and then only read, got {len(_sends(world))} sends"
    assert len(_notes(world, "N-5")) == 1 and _invoices(world)[0].status == "authorized"


@pytest.mark.parametrize(("situacao", "name"), [(nfe.BLOQUEADA, "Bloqueada"), (nfe.DENEGADA, "Denegada")])
def test_a_blocked_or_denied_note_stops_with_its_state_and_fix_instead_of_polling_forever(world: World,
                                                                                         situacao: int, name: str):
    items = _setup(world)
    _poll_fast(world)
    with world.box.state.lock:
        world.box.state.nfe_outcomes.append(situacao)
    world.stage("sales", "sales", sale("N-6", items, status="closed", buyer=customer()))
    world.drain()
    (emit,) = world.ops(kind="emit_invoice")
    assert emit.state == "failed", f"a {name} note is final: the operation should fail, not stay {emit.state}"
    assert name in (emit.last_error or "") and f"situação {situacao}" in (emit.last_error or ""), emit.last_error
    assert emit.fix and "Bling" in emit.fix, emit.fix
    assert len(_sends(world)) == 1, "the note was sent once and never again"
    assert _invoices(world) == []
