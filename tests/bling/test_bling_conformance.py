"""The core's conformance kit against the Bling sandbox: products pulled, customers and sales pushed."""

from __future__ import annotations

from hub.models import Customer, Sale
from hub.testing import ConnectorConformance

from tests.bling.conftest import customer


class TestBlingCatalog(ConnectorConformance):
    platform = "bling"
    pull_stream = "products"
    push_stream = "customers"
    sandbox_options = {"rate_per_second": 100}

    def make_record(self, i: int) -> Customer:
        documents = ["52998224725", "11144477735", "39053344705", "86288366757", "71428793860", "12345678909"]
        return customer(documents[i % len(documents)]).model_copy(update={"name": f"Cliente {i}"})


class TestBlingSales(ConnectorConformance):
    platform = "bling"
    pull_stream = "customers"
    push_stream = "sales"
    sandbox_options = {"rate_per_second": 100}

    def prepare(self, sandbox) -> None:
        sandbox.seed("payment_methods", 3)
        sandbox.create("products", {"nome": "Produto de conformidade", "codigo": "CONF-SKU", "tipo": "P",
                                    "situacao": "A", "formato": "S", "preco": 19.9})

    def make_record(self, i: int) -> Sale:
        from tests.bling.conftest import sale

        return sale(f"CONF-{i}", [("CONF-SKU", "19.90")], status="Atendido", method="Dinheiro")
