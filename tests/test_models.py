"""The canonical model refuses what would corrupt an invoice: float money, bad documents, bad keys."""

from decimal import Decimal

import pytest
from hub.models import Customer, Invoice, PaymentMethod, Product, Sale
from hub.models.types import access_key_check_digit
from pydantic import ValidationError


def test_money_is_exact_and_floats_are_refused():
    product = Product(sku="A1", name="Camiseta", price="19.90")
    assert product.price == Decimal("19.90")
    assert product.model_dump(mode="json")["price"] == "19.90"
    with pytest.raises(ValidationError, match="never float"):
        Product(sku="A1", name="Camiseta", price=19.9)


@pytest.mark.parametrize("document", ["529.982.247-25", "11.222.333/0001-81", "12.ABC.345/01DE-35"])
def test_cpf_cnpj_and_alphanumeric_cnpj_are_accepted(document):
    customer = Customer(name="Fulano", document=document)
    assert customer.document == "".join(ch for ch in document.upper() if ch.isalnum())


def test_a_wrong_check_digit_names_the_fix():
    with pytest.raises(ValidationError, match="wrong check digit"):
        Customer(name="Fulano", document="529.982.247-26")


def test_access_key_check_digit():
    first43 = "3524011122233300018155001000000123" + "100000001"
    key = first43 + str(access_key_check_digit(first43))
    assert Invoice(access_key=key).access_key == key
    wrong = first43 + str((int(key[-1]) + 1) % 10)
    with pytest.raises(ValidationError, match="check digit"):
        Invoice(access_key=wrong)


def test_sale_totals_and_underpayment():
    sale = Sale(number="1", issued_at="2026-01-01T10:00:00", items=[
        {"sku": "A", "quantity": "2", "unit_price": "10.00", "discount": "1.00"}],
        payments=[{"method": "dinheiro", "amount": "19.00"}])
    assert sale.total == Decimal("19.00")
    with pytest.raises(ValidationError, match="payments add up"):
        Sale(number="1", issued_at="2026-01-01T10:00:00", items=[{"sku": "A", "quantity": "1", "unit_price": "10"}],
             payments=[{"method": "dinheiro", "amount": "5"}])


def test_tpag_codes_are_checked():
    assert PaymentMethod(code="1", name="PIX", tpag="17").tpag == "17"
    with pytest.raises(ValidationError, match="tPag"):
        PaymentMethod(code="1", name="?", tpag="42")
