"""The NF-e before and after ``submitInvoice``: the notes the ERP sandboxes issue (Bling's, Plugg.to's) are valid
against the official NF-e 4.00 schema (nfelib's ``procNFe_v4.00.xsd``) and signed; a note breaking the schema, its
access key or its MD5 never reaches Amazon, with the field named; an ``Errored`` note (Amazon gives no reason) is
quarantined with the hub's own likely causes. Real HTTP to the sandboxes, the real store and outbox."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from hub.models import Invoice, Ref
from hub.sandbox import nfe, serve
from hub.testing import Harness
from hub.testing.conformance import TENANT
from hub_amazon_fba import nfe_check
from hub_pluggto.sandbox import PluggtoSandbox
from lxml import etree

from tests.integration.amazon_pair import AmazonPair, apair_fixture  # noqa: F401 (the fixture "apair")

FAST = {"plan_scale": None, "page_size": 20}
NS = {"n": nfe.NFE_NS, "ds": nfe.DSIG_NS}


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    started: list[Harness] = []

    def make() -> Harness:
        home = tmp_path / f"h{len(started)}"
        home.mkdir()
        harness = Harness.start(home, "amazon_fba", "sales", "invoices", sandbox_options=FAST)
        started.append(harness)
        return harness

    yield make
    for harness in started:
        harness.stop()


def _c14n(element: Any) -> bytes:
    """Inclusive C14N 1.0 of an element, through a copy (the copy carries its inherited default namespace)."""
    return bytes(etree.tostring(etree.fromstring(etree.tostring(element)), method="c14n"))


def assert_signed(xml: str) -> None:
    """The enveloped signature verifies: infNFe's SHA-1 digest, RSA-SHA1 over SignedInfo with the certificate in
    KeyInfo, and SEFAZ's digVal is the signed digest."""
    root = etree.fromstring(xml.encode())
    inf = root.find("n:NFe/n:infNFe", NS)
    signature = root.find("n:NFe/ds:Signature", NS)
    digest = signature.findtext("ds:SignedInfo/ds:Reference/ds:DigestValue", namespaces=NS)
    assert base64.b64encode(hashlib.sha1(_c14n(inf)).digest()).decode() == digest
    assert signature.find("ds:SignedInfo/ds:Reference", NS).get("URI") == f"#{inf.get('Id')}"
    certificate = x509.load_der_x509_certificate(base64.b64decode(
        signature.findtext("ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=NS)))
    certificate.public_key().verify(base64.b64decode(signature.findtext("ds:SignatureValue", namespaces=NS)),
                                    _c14n(signature.find("ds:SignedInfo", NS)), padding.PKCS1v15(), hashes.SHA1())
    assert root.findtext("n:protNFe/n:infProt/n:digVal", namespaces=NS) == digest


def invoice(h: Harness, shipment: str, number: int = 1, key: str | None = None, xml: str | None = None) -> Invoice:
    made_key, made_xml = h.sandbox.authorized_nfe(shipment, number=number)
    return Invoice(number=str(number), series="1", access_key=key or made_key, status="authorized",
                   xml=xml or made_xml, sale=Ref(external_id=shipment))


def submitted(h: Harness) -> list[dict[str, Any]]:
    return [r for r in h.sandbox.request_log if r.get("operation") == "submitInvoice"]


# --- the notes the ERP sandboxes issue ----------------------------------------------------------------------------


def test_a_bling_issued_note_is_valid_against_the_nfe_400_schema_signed_and_accepted(apair: AmazonPair) -> None:
    a = apair
    a.activate(4)
    sku = a.simple_products()[0]["codigo"]
    _order_id, shipment = a.order(sku)
    assert a.sync("orders").ok
    (note,) = [n for n in a.bling.records("nfe") if n.get("chaveAcesso")]
    key, xml = note["chaveAcesso"], note["xml"]
    assert nfe_check.before_submit(xml, key) == [], "valid against procNFe_v4.00.xsd, its key matching its fields"
    assert_signed(xml)
    assert a.amazon.invoice_status(shipment) == "Accepted"
    (entry,) = a.amazon.submissions
    assert entry["xml"] == xml and entry["problems"] == []
    detail = a.amazon._detail(a.amazon.shipments[shipment])
    found = [p.field for p in nfe_check.errored_causes(xml, key, detail)]
    assert set(found) <= {"nfeProc/NFe/infNFe/infIntermed/CNPJ"}, found


def test_a_pluggto_issued_note_is_valid_against_the_nfe_400_schema_and_signed() -> None:
    pluggto = PluggtoSandbox(rate_per_second=None, nfe_delay_seconds=0)
    served = serve(pluggto.app)
    try:
        pluggto.connection(served.base_url)  # its notes' XML links point at the served sandbox
        pluggto.create_sku("FBA-XSD", name="Tênis & Meia – kit", ncm="64041100", nbm="64041100", cest="2806500",
                           origin=0)
        order_id = pluggto.place_order(["FBA-XSD"], channel="amazon")
        pluggto.issue(order_id)
        (note,) = [n for n in pluggto.records("issued") if n["nfe_status"] == "authorized"]
        (link,) = [f["url"] for f in note["files"] if f["type"] == "xml_authorization"]
        answer = httpx.get(link)
        assert answer.status_code == 200, answer.text
        xml = answer.text
    finally:
        served.stop()
    assert nfe_check.before_submit(xml, note["nfe_key"]) == []
    assert_signed(xml)
    root = etree.fromstring(xml.encode())
    assert root.findtext("n:NFe/n:infNFe/n:det/n:prod/n:NCM", namespaces=NS) == "64041100"
    assert root.findtext("n:NFe/n:infNFe/n:det/n:prod/n:cProd", namespaces=NS) == "FBA-XSD"


# --- refused before submitInvoice ---------------------------------------------------------------------------------


def test_a_note_breaking_the_schema_is_refused_before_submit_invoice_with_the_field_named(start: Any) -> None:
    h = start()
    (shipment,) = h.sandbox.seed("sales", 1)
    note = invoice(h, shipment)
    broken = re.sub(r"(<enderDest>.*?<CEP>)(\d{8})(</CEP>)", r"\g<1>1234567\3", note.xml or "")
    assert broken != note.xml
    (op,) = h.stage(note.model_copy(update={"xml": broken}))
    assert h.run(op) == "failed"
    (q,) = h.quarantined()
    assert q.field == "nfeProc/NFe/infNFe/dest/enderDest/CEP"
    for named in ("procNFe_v4.00.xsd", "1234567", f"tenant {TENANT}", f"shipment {shipment}", "not submitted"):
        assert named in q.reason, (named, q.reason)
    assert "Correct CEP in the ERP" in (q.fix or "") and "hub retry" in (q.fix or "")
    assert submitted(h) == [] and h.sandbox.records("invoices") == []


def _rekeyed(xml: str, old: str, new: str) -> str:
    return xml.replace(old, new)


def test_a_wrong_check_digit_or_a_key_that_is_not_the_notes_is_caught_before_submission(start: Any) -> None:
    h = start()
    first, second = h.sandbox.seed("sales", 2)
    key, xml = h.sandbox.authorized_nfe(first, number=5)
    wrong_digit = key[:43] + str((int(key[43]) + 1) % 10)
    # the invoice record cannot hold it (the canonical model refuses the key): the XML the ERP sent carries it
    (op,) = h.stage(invoice(h, first, number=5, key=key, xml=_rekeyed(xml, key, wrong_digit)))
    assert h.run(op) == "failed"
    (q,) = h.quarantined()
    assert q.field == "access_key" and "check digit" in q.reason and wrong_digit in q.reason

    key, xml = h.sandbox.authorized_nfe(second, number=6)
    issued = datetime.now(nfe.BRT)
    other = nfe.access_key("SP", issued, key[6:20], 1, 99, int(key[35:43]))  # a valid key of note 99, not 6
    (op,) = h.stage(invoice(h, second, number=6, key=other, xml=_rekeyed(xml, key, other)))
    assert h.run(op) == "failed"
    q = next(q for q in h.quarantined() if shipment_of(q) == second)
    assert q.field == "nfeProc/NFe/infNFe/ide/nNF", q.reason
    assert "says nNF 000000099, the note says 000000006" in q.reason
    assert submitted(h) == [] and h.sandbox.records("invoices") == []


def shipment_of(q: Any) -> str | None:
    found = re.search(r"shipment (\w+)", q.reason)
    return found.group(1) if found else None


def test_an_md5_that_is_not_the_contents_is_caught(start: Any) -> None:
    h = start()
    (shipment,) = h.sandbox.seed("sales", 1)
    key, xml = h.sandbox.authorized_nfe(shipment, number=8)
    body = nfe_check.payload(xml.encode())
    assert nfe_check.md5_problems(body["InvoiceContent"], body["ContentMD5Value"]) == []
    stale = nfe_check.md5_base64(xml.replace("<cStat>100</cStat>", "<cStat>150</cStat>").encode())
    (problem,) = nfe_check.md5_problems(body["InvoiceContent"], stale)
    assert problem.field == "ContentMD5Value" and stale in problem.problem
    assert nfe_check.md5_problems(body["InvoiceContent"], hashlib.md5(xml.encode()).hexdigest()) == [], \
        "the model example's hex form is the same digest"
    # Amazon (the sandbox, over HTTP) refuses it the same way: InvalidInput, nothing recorded
    conn = h.sandbox.connection(h.served.base_url)["credentials"]
    token = httpx.post(f"{h.served.base_url}/auth/o2/token", data={
        "grant_type": "refresh_token", "refresh_token": conn["refresh_token"], "client_id": conn["client_id"],
        "client_secret": conn["client_secret"]}).json()["access_token"]
    answer = httpx.post(f"{h.served.base_url}/fba/outbound/brazil/v0/shipments/{shipment}/invoice",
                        headers={"x-amz-access-token": token},
                        json={**body, "ContentMD5Value": stale, "MarketplaceId": "A2Q3Y263D00KWC"})
    assert answer.status_code == 400 and "ContentMD5Value" in answer.text
    assert h.sandbox.records("invoices") == []
    (op,) = h.stage(invoice(h, shipment, number=8, key=key, xml=xml))  # the hub's own body: MD5 of what it sends
    assert h.run(op) == "done", h.operation(op).last_error
    refused, sent = submitted(h)  # ours, refused above, then the hub's
    assert refused["body"]["ContentMD5Value"] == stale
    content = sent["body"]["InvoiceContent"]
    assert nfe_check.md5_problems(content, sent["body"]["ContentMD5Value"]) == []


# --- Errored: the hub's own checks -------------------------------------------------------------------------------


def test_an_errored_note_is_quarantined_with_the_hubs_likely_causes(start: Any) -> None:
    h = start()
    (shipment,) = h.sandbox.seed("sales", 1)
    order = h.sandbox.orders[h.sandbox.shipments[shipment]["order_id"]]
    buyer = order["tax"]["taxRegistrations"][0]["taxRegistrationNumber"]
    quantity = order["orderItems"][0]["quantityOrdered"]
    note = invoice(h, shipment)
    wrong = (note.xml or "").replace(f"<CPF>{buyer}</CPF>", "<CPF>52998224725</CPF>") \
        .replace(f"<qCom>{quantity}.0000</qCom>", f"<qCom>{quantity + 1}.0000</qCom>", 1)
    wrong = re.sub(r"<infIntermed>.*?</infIntermed>", "", wrong)
    (op,) = h.stage(note.model_copy(update={"xml": wrong}))
    assert h.run(op) == "failed"
    assert h.sandbox.invoice_status(shipment) == "Errored"
    (q,) = h.quarantined()
    assert "Errored" in q.reason and "Likely" in q.reason
    assert q.field == "nfeProc/NFe/infNFe/dest"
    # (the stored reason masks the CPF/CNPJ: the hub's privacy rule for what it records)
    for cause in ("recipient's CPF/CNPJ", "is not the buyer's", f"has {quantity + 1} unit(s), the shipment {quantity}",
                  "the note has no infIntermed", "MarketplaceTaxInfo", "changed after it was signed"):
        assert cause in q.reason, (cause, q.reason)
    assert "corrected" in (q.fix or "") and h.operation(op).last_error and "Likely" in (h.operation(op).last_error
                                                                                          or "")
    (fixed,) = h.stage(invoice(h, shipment, number=2))
    assert h.run(fixed) == "done", h.operation(fixed).last_error
    assert [i["status"] for i in h.sandbox.records("invoices")] == ["Errored", "Accepted"]


def test_the_amazon_sandbox_errors_a_note_that_fails_the_schema() -> None:
    from hub_amazon_fba.sandbox import AmazonSandbox

    sandbox = AmazonSandbox(plan_scale=None)
    (shipment,) = sandbox.seed("sales", 1)
    key, xml = sandbox.authorized_nfe(shipment, number=3)
    assert sandbox._check_nfe(sandbox.shipments[shipment], xml.encode()) == (key, [])
    bad = xml.replace("<indFinal>1</indFinal>", "<indFinal>7</indFinal>")
    _key, problems = sandbox._check_nfe(sandbox.shipments[shipment], bad.encode())
    assert problems and "NF-e 4.00 schema" in problems[0] and "indFinal" in problems[0]
