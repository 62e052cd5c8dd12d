"""`hub routes validate` on the mistakes a route file is written with: each named with its line and a fix."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from hub.cli import cli

from tests.flows import DEMO_ROUTES

ENV = {"LOJINHA_ERP_URL": "http://127.0.0.1:9", "LOJINHA_SHOP_URL": "http://127.0.0.1:9",
       "LOJINHA_ERP_CLIENT_ID": "x", "LOJINHA_ERP_CLIENT_SECRET": "x", "LOJINHA_SHOP_CLIENT_ID": "x",
       "LOJINHA_SHOP_CLIENT_SECRET": "x"}


@pytest.fixture
def validate(tmp_path, monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()

    def run(text: str, *extra: str):
        path = tmp_path / "routes.yaml"
        path.write_text(text)
        return runner.invoke(cli, ["routes", "validate", str(path), *extra])

    return run


def demo(**replace: str) -> str:
    text = DEMO_ROUTES.read_text()
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def line_of(text: str, needle: str, nth: int = 1) -> int:
    lines = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    return lines[nth - 1]


def test_the_shipped_file_is_valid_and_says_so_as_json(validate):
    result = validate(DEMO_ROUTES.read_text(), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"file": json.loads(result.stdout)["file"], "valid": True,
                                         "tenants": ["demo"], "warnings": []}


def test_a_duplicate_route_is_refused_with_both_lines(validate):
    text = demo(**{"      sales:\n": "      sales:\n        source: erp\n        sink: shop\n        streams: [sales]\n"
                                     "      sales:\n"})
    result = validate(text)
    assert result.exit_code == 1
    assert (f"line {line_of(text, '      sales:', 2)}: key 'sales' appears twice in the same block (first at line "
            f"{line_of(text, '      sales:')})") in result.stderr
    assert "Traceback" not in result.output


def test_unset_credential_variables_are_reported_at_validate_time(validate, monkeypatch):
    monkeypatch.delenv("LOJINHA_SHOP_CLIENT_SECRET")
    result = validate(DEMO_ROUTES.read_text(), "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    (error,) = data["errors"]
    assert "connections.shop.credentials.client_secret: environment variable LOJINHA_SHOP_CLIENT_SECRET is not " \
           "set" in error
    assert f"line {line_of(DEMO_ROUTES.read_text(), 'client_secret: {env: LOJINHA_SHOP')}:" in error


def test_typos_pydantic_internals_and_numeric_keys_get_plain_fixes(validate):
    text = demo(**{"        source: erp\n": "        sorce: erp\n", "schedule: 5m": "schedule: 5 minutes",
                   "{dinheiro: dinheiro,": "{dinheiro: dinheiro, 17: dinheiro,"})
    result = validate(text)
    assert result.exit_code == 1
    err = result.stderr
    assert f"line {line_of(text, 'sorce: erp')}: tenants.demo.routes.catalog.sorce: unknown key (did you mean " \
           "`source`?)" in err
    assert "tenants.demo.routes.catalog.schedule: '5 minutes' is not a duration" in err
    assert "schedule.str" not in err and "schedule.int" not in err and "Value error" not in err
    assert "payment_methods.17" in err and "quote the key: write '17'" in err
    assert err.strip().endswith("fix: Correct the keys listed above, then run `hub routes validate FILE` again.")


def test_plugin_level_errors_carry_their_line(validate):
    text = demo(**{"streams: [categories, products, customers]": "streams: [categories, produtos]"})
    result = validate(text)
    assert result.exit_code == 1
    assert f"line {line_of(text, 'streams: [categories, produtos]')}: tenants.demo.routes.catalog.streams: " \
           "unknown stream 'produtos'" in result.stderr


def test_a_route_reading_cplug_sales_without_the_payment_method_de_para_is_refused(validate, monkeypatch):
    """CPlug's "Integração Bling": the payment-method DE-PARA is mandatory (its ids mean nothing in the ERP)."""
    from hub_cplug.plugin import ROUTES

    for name in ("BLING_CLIENT_ID", "BLING_CLIENT_SECRET", "CPLUG_CLIENT_ID", "CPLUG_CLIENT_SECRET", "CPLUG_USERNAME",
                 "CPLUG_PASSWORD", "CPLUG_COMPANY_ID"):
        monkeypatch.setenv(name, "1")
    text = (ROUTES / "bling.yaml").read_text()
    assert validate(text).exit_code == 0
    start = text.index("          payment_methods:")
    end = text.index("          statuses:")
    result = validate(text[:start] + text[end:])
    assert result.exit_code == 1, result.output
    assert "routes.sales.mappings.payment_methods: cplug sales need this DE-PARA table" in result.output, result.output
    assert "hub mappings TENANT sales" in result.output
