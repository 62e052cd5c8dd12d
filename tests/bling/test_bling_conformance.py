"""The core's conformance kit against the Bling sandbox, stream by stream: products, customers and sales are
pulled, customers, payment methods and sales pushed."""

from __future__ import annotations

from typing import Any

from hub.models import Customer, PaymentMethod, Sale
from hub.testing import ConnectorConformance

from tests.bling.conftest import customer as bling_customer
from tests.bling.conftest import sale as bling_sale

DOCUMENTS = ["52998224725", "11144477735", "39053344705", "86288366757", "71428793860", "12345678909",
             "15350946056", "24843803480"]


def customer(i: int) -> Customer:
    return bling_customer(DOCUMENTS[i % len(DOCUMENTS)]).model_copy(update={"name": f"Cliente {i}"})


def payment_method(i: int) -> PaymentMethod:
    return PaymentMethod(code=f"zy-{i}", name=f"Boleto Zydon {i}", tpag="15")


def sale(i: int) -> Sale:
    return bling_sale(f"CONF-{i}", [("CONF-SKU", "19.90")], status="Atendido", method="Dinheiro")


class TestBling(ConnectorConformance):
    platform = "bling"
    pull_streams = ("products", "customers", "sales")
    reads_retried = True
    push_streams = {"customers": customer, "payment_methods": payment_method, "sales": sale}
    sandbox_options = {"rate_per_second": 100}

    def prepare(self, sandbox: Any) -> None:
        """What the pushed sales refer to: payment methods and the product they sell."""
        sandbox.seed("payment_methods", 3)
        sandbox.create("products", {"nome": "Produto de conformidade", "codigo": "CONF-SKU", "tipo": "P",
                                    "situacao": "A", "formato": "S", "preco": 19.9})
