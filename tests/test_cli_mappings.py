"""`hub routes check` and `hub mappings`: the DE-PARA tables against what both platforms really offer, read online
through the plugins before a sale is refused at push time."""

from __future__ import annotations

import json

from tests.flows import apply_demo_routes


def test_check_reports_sink_values_that_do_not_exist_and_source_values_with_no_entry(rt, tmp_path, lojinha_pair,
                                                                                      hub):
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    shop.seed("payment_methods", 3)  # dinheiro, pix, credito
    erp.create("payment_methods", {"codigo": "dinheiro", "nome": "Dinheiro", "tpag": "01"})
    erp.create("payment_methods", {"codigo": "pix", "nome": "PIX", "tpag": "17"})
    apply_demo_routes(rt, tmp_path, erp_url, shop_url,
                      **{"sales.mappings.payment_methods": {"dinheiro": "dinheiro", "pix": "pix-erp"}})
    result = hub("routes", "check", "demo")
    assert result.exit_code == 1, result.output
    out = result.output
    assert "routes.sales.mappings.payment_methods.pix: 'pix-erp' is not offered by erp (fix: use one of: " \
           "dinheiro, pix)" in out
    assert "routes.sales.mappings.payment_methods: the source uses 'credito' (Cartão de crédito) and the table has " \
           "no entry for it" in out
    data = json.loads(hub("mappings", "demo", "sales", "--json").stdout)
    (methods,) = [t for t in data if t["table"] == "payment_methods"]
    rows = {r["source"]: r for r in methods["rows"]}
    assert rows["dinheiro"]["sink_has_it"] is True and rows["pix"]["sink_has_it"] is False
    assert rows["credito"]["sink"] is None and methods["sink_offers"] == ["dinheiro", "pix"]
    text = hub("mappings", "demo", "sales", "--starter")
    assert text.exit_code == 0
    assert "credito     Cartão de crédito" not in text.output  # columns, not a raw dump
    assert "credito: TODO" in text.output and "pix: pix-erp" in text.output

    apply_demo_routes(rt, tmp_path, erp_url, shop_url,
                      **{"sales.mappings.payment_methods": {"dinheiro": "dinheiro", "pix": "pix",
                                                            "credito": "dinheiro"}})
    fixed = hub("routes", "check", "demo", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert json.loads(fixed.stdout)["ok"] is True
