"""`hub mappings TENANT ROUTE --write FILE`: the starter DE-PARA entries go into the operator's own route file, its
comments and layout kept, nothing already there changed, and the file still valid."""

from __future__ import annotations

import difflib
import json
import re

import pytest

from tests.flows import DEMO_ROUTES, apply_demo_routes


@pytest.fixture
def route_file(rt, tmp_path, lojinha_pair, hub):
    """The demo route file as an operator keeps it (comments, flow tables), with `credito` missing from the payment
    methods, applied with `hub routes apply`."""
    (erp, erp_url), (shop, shop_url) = lojinha_pair
    shop.seed("payment_methods", 3)  # dinheiro, pix, credito
    erp.create("payment_methods", {"codigo": "dinheiro", "nome": "Dinheiro", "tpag": "01"})
    erp.create("payment_methods", {"codigo": "pix", "nome": "PIX", "tpag": "17"})
    apply_demo_routes(rt, tmp_path, erp_url, shop_url)  # sets the LOJINHA_* variables the file reads
    text = DEMO_ROUTES.read_text().replace("{dinheiro: dinheiro, pix: pix, credito: credito}",
                                           "{dinheiro: dinheiro, pix: pix}  # agreed with the ERP team")
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    assert hub("routes", "apply", str(path)).exit_code == 0
    return path


def test_write_inserts_only_missing_entries_and_keeps_the_files_comments_and_layout(route_file, hub):
    before = route_file.read_text()
    result = hub("mappings", "demo", "sales", "--write", str(route_file))
    assert result.exit_code == 0, result.output
    assert "payment_methods: added credito -> TODO" in result.output
    assert "replace the 1 TODO values, then `hub routes apply" in result.output
    after = route_file.read_text()
    removed = [line for line in difflib.ndiff(before.splitlines(), after.splitlines()) if line.startswith("- ")]
    changed = [line for line in removed if "payment_methods" not in line]
    assert not changed, f"only the payment methods line may change: {changed}"
    assert re.search(r"\n {10}payment_methods: \{dinheiro: dinheiro, pix: pix, credito: TODO\} +# agreed with the "
                     r"ERP team\n", after), "the entry joins the table where it is, in its style, comment kept"
    assert after.startswith("# The demo's route file"), "the header comment stays"
    assert '"${LOJINHA_ERP_URL}"' in after, "quoting and variables stay as written"
    assert hub("routes", "validate", str(route_file)).exit_code == 0

    again = hub("mappings", "demo", "sales", "--write", str(route_file), "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["added"] == {}, "nothing added twice"
    assert route_file.read_text() == after


def test_write_into_a_file_without_the_route_changes_nothing_and_says_which(route_file, tmp_path, hub):
    other = tmp_path / "other.yaml"
    other.write_text("# someone else's file\nversion: 1\ntenants: {}\n")
    result = hub("mappings", "demo", "sales", "--write", str(other))
    assert result.exit_code == 1
    assert f"{other} does not declare route sales of tenant demo" in result.stderr
    assert other.read_text() == "# someone else's file\nversion: 1\ntenants: {}\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".other.yaml")], "no temporary file left"


def test_write_adds_a_mappings_block_to_a_route_that_has_none(route_file, hub):
    text = route_file.read_text()
    start = text.index("        mappings:\n")
    end = text.index("        transitions:\n")
    route_file.write_text(text[:start] + text[end:])
    result = hub("mappings", "demo", "sales", "--write", str(route_file), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["added"]["payment_methods"] == {"credito": "TODO", "dinheiro": "dinheiro", "pix": "pix"}
    after = route_file.read_text()
    block = after[after.index("        schedule: 1m\n"):after.index("        transitions:\n")]
    assert block.startswith("        schedule: 1m\n        mappings:\n          payment_methods:\n"
                            "            credito: TODO\n            dinheiro: dinheiro\n            pix: pix\n"), block
    assert hub("routes", "validate", str(route_file)).exit_code == 0
