"""Property-based: any JSON value in any one field of an otherwise valid raw record never breaks a page's mapping.
Each record comes out as an Incoming or a Rejected (the core quarantines the latter); nothing escapes."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from hub.platform import Incoming, Rejected
from hub.sandbox import serve
from hub.sync.context import ConnectorContext
from hub_bling import catalog as bling_catalog
from hub_bling import mappers as bling_mappers
from hub_bling.sandbox import BlingSandbox
from hub_cplug import plugin as cplug
from hub_cplug.sandbox import CPlugSandbox
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cplug_pos.test_cplug_connector import connect

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6)
"""Any value a JSON API could put in a field."""


def _paths(raw: dict[str, Any], nested: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The record's own fields, and those of the first element/object of the ``nested`` ones."""
    paths = [(key,) for key in raw if key != "exchange_of_sale_id"]  # a reference, read through its own lookup
    for name in nested:
        inner = raw.get(name)
        if isinstance(inner, list) and inner and isinstance(inner[0], dict):
            paths += [(name, "0", key) for key in inner[0]]
        elif isinstance(inner, dict):
            paths += [(name, key) for key in inner]
    return sorted(paths)


def _with(raw: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    node: Any = out
    for part in path[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[path[-1]] = value
    return out


@pytest.fixture(scope="module")
def cplug_box() -> Iterator[tuple[CPlugSandbox, ConnectorContext]]:
    box = CPlugSandbox(rate_per_second=None)
    box.seed("products", 2)
    box.seed("sales", 2)
    served = serve(box.app)
    ctx = connect(box, served.base_url)
    yield box, ctx
    ctx.close()
    served.stop()


def _cplug_case(stream: str, nested: tuple[str, ...]) -> Any:
    @FUZZ
    @given(data=st.data())
    def check(cplug_box: tuple[CPlugSandbox, ConnectorContext], data: st.DataObject) -> None:
        box, ctx = cplug_box
        raw = next(r for r in box.records(stream) if stream != "sales" or r.get("customer_id"))
        path = data.draw(st.sampled_from(_paths(raw, nested)), label="field")
        bad = _with(raw, path, data.draw(JSON, label="value"))
        out = cplug._map_page(ctx, stream, [bad, raw])
        assert len(out) == 2 and all(isinstance(r, Incoming | Rejected) for r in out), \
            f"each CPlug {stream} record should map to an Incoming or a Rejected, got {out}"
        assert isinstance(out[1], Incoming), f"the untouched {stream} record next to it should map: {out[1]}"

    return check


test_cplug_sale_mapping_never_raises = _cplug_case("sales", ("items", "payments", "total"))
test_cplug_customer_mapping_never_raises = _cplug_case("customers", ("documents", "contacts", "addresses"))
test_cplug_product_mapping_never_raises = _cplug_case("products", ("unitary_value", "fiscal", "option_type"))


@pytest.fixture(scope="module")
def bling_raw() -> dict[str, dict[str, Any]]:
    box = BlingSandbox()
    box.seed("products", 1)
    box.seed("customers", 1)
    return {"products": box.records("products")[0], "customers": box.records("customers")[0]}


@FUZZ
@given(data=st.data())
def test_bling_product_and_contact_mapping_never_raises(bling_raw: dict[str, dict[str, Any]],
                                                         data: st.DataObject) -> None:
    stream = data.draw(st.sampled_from(["products", "customers"]), label="stream")
    raw = bling_raw[stream]
    nested = ("tributacao", "categoria", "midia") if stream == "products" else ("endereco",)
    path = data.draw(st.sampled_from(_paths(raw, nested)), label="field")
    bad = _with(raw, path, data.draw(JSON, label="value"))
    build = (partial(bling_mappers.product, category_paths={int(raw["categoria"]["id"]): ["Roupas"]})
             if stream == "products" else bling_mappers.customer)
    out = bling_catalog._map(stream, str(raw["id"]), bad, build)
    assert isinstance(out, Incoming | Rejected), f"a Bling {stream} record should map or be rejected, got {out}"
