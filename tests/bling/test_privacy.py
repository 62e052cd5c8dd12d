"""LGPD: what an operator reads (``hub logs``, ``hub status``, quarantine, operations, the API log, database errors)
shows a customer's CPF masked; only the canonical record keeps the full value, for the syncs that need it."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from hub.cli import cli
from hub.models import Address, Customer
from hub.store.engine import utcnow
from hub.store.schema import ApiCall, Operation, Quarantine, Record, Tenant
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from tests.bling.conftest import CPF_OK, TENANT, World, sale
from tests.bling.test_bling_invoices import _setup

PRINTED = "529.982.247-25"
MASKED = "***.982.247-**"


def _every_text(world: World) -> str:
    with world.rt.store.sessions() as s:
        ops = [f"{o.last_error} {o.fix}" for o in s.scalars(select(Operation))]
        refused = [f"{q.record} {q.reason} {q.fix}" for q in s.scalars(select(Quarantine))]
        calls = [f"{c.action} {c.error} {c.fix}" for c in s.scalars(select(ApiCall))]
    return "\n".join(ops + refused + calls)


def test_a_cpf_in_an_error_is_masked_everywhere_an_operator_reads(world: World, settings, monkeypatch):
    items = _setup(world, ncm=False)
    # A POS with "CPF na nota" and no name files the buyer under the CPF itself, without an address.
    buyer = Customer(name=f"Consumidor CPF {PRINTED}", document=CPF_OK,
                     addresses=[Address(street="Rua Augusta", city="São Paulo")])
    world.stage("sales", "sales", sale("P-1", items, status="closed", buyer=buyer))
    world.drain()
    (emit,) = world.ops(kind="emit_invoice")
    assert emit.state == "failed", "the note was expected to be refused (no NCM, incomplete address)"

    stored = _every_text(world)
    assert MASKED in stored, f"the refusal should name the buyer with the CPF masked:\n{stored}"
    for full in (CPF_OK, PRINTED):
        assert full not in stored, f"a full CPF is stored where operators read it:\n{stored}"
    with world.rt.store.sessions() as s:
        payload = s.scalar(select(Record.payload).where(Record.entity == "sales"))
    assert payload is not None and payload["customer"]["document"] == CPF_OK, \
        "the canonical record must keep the full CPF (the NF-e needs it)"

    monkeypatch.setenv("HUB_DATABASE_URL", settings.resolved_database_url())
    monkeypatch.setenv("HUB_HOME", str(settings.home))
    from hub.settings import get_settings

    get_settings.cache_clear()
    try:
        runner = CliRunner()
        outputs = {args[0]: runner.invoke(cli, args).output
                   for args in (["logs", TENANT], ["logs", TENANT, "--json"], ["status", TENANT, "--json"])}
    finally:
        get_settings.cache_clear()
    assert MASKED in outputs["logs"], f"hub logs should list the refusal with the CPF masked:\n{outputs['logs']}"
    json.loads(outputs["status"])
    for command, out in outputs.items():
        for full in (CPF_OK, PRINTED):
            assert full not in out, f"`hub {command}` printed a full CPF:\n{out}"


def test_database_errors_never_print_row_values(world: World):
    with pytest.raises(IntegrityError) as refused, world.rt.store.begin() as s:
        s.add(Tenant(id=TENANT, name=f"Consumidor CPF {PRINTED}", created_at=utcnow()))
    assert PRINTED not in str(refused.value), f"a database error printed the row's values: {refused.value}"
