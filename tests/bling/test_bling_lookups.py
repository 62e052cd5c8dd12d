"""Bling's account lookups (depósitos, formas de pagamento) are shared per connection, yet one created in Bling a
minute ago is found: a miss reads the list again once before refusing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hub.errors import Fatal
from hub.models import Payment
from hub.sync.loading import make_context
from hub_bling import sales

from tests.bling.conftest import World, sale


def requests_to(world: World, path: str) -> int:
    return sum(1 for r in world.box.request_log if r["path"].endswith(path))


def test_a_deposit_and_a_payment_method_created_in_bling_after_the_lookup_are_found(world: World) -> None:
    ctx = make_context(world.rt, world.connection(), None, None)
    assert sales.deposit_id(ctx, "Loja Centro") is not None
    again = make_context(world.rt, world.connection(), None, None)
    assert sales.deposit_id(again, "Loja Shopping") is not None
    assert requests_to(world, "/depositos") == 1, "the second operation reused the connection's depósitos"

    st = world.box.state
    with st.lock:  # a person adds a depósito in Bling
        did = st.new_id()
        st.deposits[did] = {"id": did, "descricao": "Loja Aeroporto", "situacao": 1, "padrao": False,
                            "desconsiderarSaldo": False}
    later = make_context(world.rt, world.connection(), None, None)
    assert sales.deposit_id(later, "Loja Aeroporto") == did, "a depósito created since the lookup must be found"
    assert requests_to(world, "/depositos") == 2, "the miss read the list again once"
    with pytest.raises(Fatal) as missing:
        sales.deposit_id(later, "Loja Lua")
    assert "has no depósito 'Loja Lua'" in missing.value.message and "Loja Aeroporto" in missing.value.message

    world.box.seed("payment_methods", 2)
    order = sale("7001", [("SKU-1", "10.00")])
    first = world.box.records("payment_methods")[0]
    assert sales.payment_method_id(later, Payment(method=str(first["descricao"]), amount=Decimal("10")), order, 0) \
        == int(first["id"])
    method = world.box.create("payment_methods", {"descricao": "Pix Maquininha Nova"})
    assert sales.payment_method_id(later, Payment(method="Pix Maquininha Nova", amount=Decimal("10")), order, 0) \
        == int(method), \
        "a forma de pagamento created since the lookup must be found"
