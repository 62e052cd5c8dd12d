"""The hub's own checks of an NF-e before and after ``submitInvoice``.

Before the note goes to Amazon: the XML is validated against the official NF-e 4.00 schema (``procNFe_v4.00.xsd``
as nfelib ships it, the layout of SEFAZ's "Manual de Orientação do Contribuinte"), its 44-digit access key is
checked (mod-11 check digit, and each part against the field it encodes: cUF, AAMM of dhEmi, the issuer's CNPJ,
mod 55, serie, nNF, tpEmis, cNF, cDV) and the MD5 sent is checked against the content sent. A note failing any of
these is never submitted.

After Amazon answers ``Errored`` (the status carries no reason: the shipment-invoicing model has no such field),
the same checks run again with the shipment Amazon described (``getShipmentDetails``) to name the likely causes:
the recipient is not the buyer, items or quantities are not the shipment's, totals that do not add up, the
marketplace's CNPJ missing as intermediary (``infIntermed``), a delivery CEP/UF not the order's, items without NCM
or origem, a note changed after it was signed. These are the rejections the sellers' manuals for Bling and Plugg.to
("Manual de integração", Enviado pela Amazon) list (missing fiscal attributes, incomplete address, duplicate NF-e
with another access key, wrong tax data) and those the research notes on the SP-API add (the address and CEP must
match the order, the NF-e 4.00 intermediary group required of marketplace sales).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from hub.models import access_key_check_digit

NFE = "{http://www.portalfiscal.inf.br/nfe}"
DSIG = "{http://www.w3.org/2000/09/xmldsig#}"
SCHEMA = "procNFe_v4.00.xsd"
MAX_SCHEMA_ERRORS = 5
CENT = Decimal("0.01")

_schema: Any = None
_schema_lock = threading.Lock()


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a note: ``field`` is an element path (``nfeProc/NFe/infNFe/ide/cNF``) or the request
    field (``ContentMD5Value``), ``problem`` what is wrong, ``fix`` what the seller does about it."""

    field: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}"


def schema_path() -> Path:
    """The NF-e 4.00 ``nfeProc`` schema nfelib ships (its includes sit beside it)."""
    import nfelib

    return Path(nfelib.__file__).resolve().parent / "nfe" / "schemas" / "v4_0" / SCHEMA


def _validator() -> Any:
    """The compiled schema, once per process (lxml's validator keeps its error log: used under the lock)."""
    global _schema
    if _schema is None:
        from lxml import etree

        _schema = etree.XMLSchema(etree.parse(str(schema_path()), parser=etree.XMLParser(no_network=True)))
    return _schema


def parse(xml: bytes) -> Any:
    """The document as an lxml tree; no entities, no network (the XML comes from outside)."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    return etree.fromstring(xml, parser=parser)


def _path(element: Any) -> str:
    names = []
    while element is not None:
        names.append(str(element.tag).split("}")[-1])
        element = element.getparent()
    return "/".join(reversed(names))


def schema_problems(xml: bytes) -> list[Problem]:
    """Where the XML breaks the NF-e 4.00 schema: each error's element path and the schema's own words."""
    from lxml import etree

    try:
        root = parse(xml)
    except etree.XMLSyntaxError as exc:
        return [Problem("xml", f"the XML does not parse ({exc})", "Send the XML file SEFAZ authorized, unchanged.")]
    with _schema_lock:
        schema = _validator()
        if schema.validate(root):
            return []
        errors = list(schema.error_log)
    found = []
    for error in errors[:MAX_SCHEMA_ERRORS]:
        try:
            nodes = root.xpath(error.path) if error.path else []
        except etree.XPathError:
            nodes = []
        where = _path(nodes[0]) if nodes and isinstance(nodes[0], etree._Element) else (error.path or "xml")
        message = str(error.message).replace(NFE, "").replace(DSIG, "ds:")
        found.append(Problem(where, f"{message} ({SCHEMA}, NF-e 4.00 layout)",
                             f"Correct {where.split('/')[-1]} in the ERP (the product, customer or tax "
                             "setting it comes from) and issue the note again"))
    if len(errors) > MAX_SCHEMA_ERRORS:
        found.append(Problem("xml", f"and {len(errors) - MAX_SCHEMA_ERRORS} more schema error(s)",
                             "Validate the XML against the NF-e 4.00 schema in the ERP"))
    return found


def _find(root: Any, path: str) -> str:
    """Text of ``a/b/c`` under the root, every step in the NF-e namespace (``ds:`` steps in XML-DSig's)."""
    steps = [f"{DSIG}{s[3:]}" if s.startswith("ds:") else f"{NFE}{s}" for s in path.split("/")]
    return (root.findtext("/".join(steps)) or "").strip()


def key_problems(root: Any, access_key: str | None) -> list[Problem]:
    """The access key: 44 digits, its check digit, the same in the invoice, ``infNFe/@Id`` and the protocol, and
    each part equal to the field it encodes."""
    inf = root.find(f"{NFE}NFe/{NFE}infNFe")
    key_id = str(inf.get("Id") or "") if inf is not None else ""
    in_xml = key_id[3:] if key_id.startswith("NFe") else ""
    protocol = _find(root, "protNFe/infProt/chNFe")
    key = access_key or in_xml or protocol
    fix = "Send the XML SEFAZ authorized for this note, unchanged (its access key is computed by the ERP from the " \
          "note's own fields); if the ERP built a wrong key, cancel the note and issue it again"
    if len(key) != 44 or not key.isdigit():
        return [Problem("access_key", f"access key {key!r} is not 44 digits", fix)]
    found: list[Problem] = []
    if str(access_key_check_digit(key[:43])) != key[43]:
        found.append(Problem("access_key", f"access key {key}: check digit {key[43]} does not match (mod 11 gives "
                                           f"{access_key_check_digit(key[:43])})", fix))
    if in_xml != key:
        found.append(Problem("nfeProc/NFe/infNFe/@Id", f"infNFe Id {key_id!r} is not NFe{key}", fix))
    if protocol and protocol != key:
        found.append(Problem("nfeProc/protNFe/infProt/chNFe", f"SEFAZ's protocol is for key {protocol}, not {key}",
                             fix))
    issued = _find(root, "NFe/infNFe/ide/dhEmi")
    issuer = _find(root, "NFe/infNFe/emit/CNPJ") or _find(root, "NFe/infNFe/emit/CPF")
    expected = {
        "ide/cUF": (key[0:2], _find(root, "NFe/infNFe/ide/cUF")),
        "ide/dhEmi": (key[2:6], issued[2:4] + issued[5:7] if len(issued) >= 7 else issued),
        "emit/CNPJ": (key[6:20], issuer.rjust(14, "0") if issuer else ""),
        "ide/mod": (key[20:22], _find(root, "NFe/infNFe/ide/mod")),
        "ide/serie": (key[22:25], _find(root, "NFe/infNFe/ide/serie").rjust(3, "0")),
        "ide/nNF": (key[25:34], _find(root, "NFe/infNFe/ide/nNF").rjust(9, "0")),
        "ide/tpEmis": (key[34], _find(root, "NFe/infNFe/ide/tpEmis")),
        "ide/cNF": (key[35:43], _find(root, "NFe/infNFe/ide/cNF")),
        "ide/cDV": (key[43], _find(root, "NFe/infNFe/ide/cDV")),
    }
    for name, (in_key, in_note) in expected.items():
        if in_key != in_note:
            what = "AAMM" if name == "ide/dhEmi" else name.split("/")[-1]
            found.append(Problem(f"nfeProc/NFe/infNFe/{name}", f"the access key {key} says {what} {in_key}, the "
                                 f"note says {in_note or '(none)'}", fix))
    return found


def md5_base64(xml: bytes) -> str:
    """Content-MD5 as the shipment-invoicing tutorial computes it: the base64 of the MD5 digest of the file."""
    return base64.b64encode(hashlib.md5(xml).digest()).decode()


def payload(xml: bytes) -> dict[str, str]:
    """``InvoiceContent`` and ``ContentMD5Value`` of the body (check them with :func:`md5_problems`)."""
    return {"InvoiceContent": base64.b64encode(xml).decode(), "ContentMD5Value": md5_base64(xml)}


def md5_problems(content: str, md5: str) -> list[Problem]:
    """The MD5 sent must be the MD5 of the bytes ``InvoiceContent`` decodes to (base64 of the digest, as the
    tutorial says; the hex form the model's example shows is accepted too)."""
    fix = "Send the XML file's bytes and the MD5 of exactly those bytes (base64 of the digest)"
    try:
        raw = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        return [Problem("InvoiceContent", "InvoiceContent is not base64", fix)]
    if md5 not in (md5_base64(raw), hashlib.md5(raw).hexdigest()):
        return [Problem("ContentMD5Value", f"ContentMD5Value {md5!r} is not the MD5 of the content sent "
                                           f"({md5_base64(raw)})", fix)]
    return []


def before_submit(xml: str | bytes | None, access_key: str | None) -> list[Problem]:
    """Everything that keeps a note from ``submitInvoice``: the schema first, then the access key."""
    raw = xml.encode() if isinstance(xml, str) else (xml or b"")
    if not raw.strip():
        return [Problem("xml", "the invoice carries no XML", "Send the authorized XML (nfeProc) from the ERP")]
    found = schema_problems(raw)
    if found and found[0].field == "xml" and "does not parse" in found[0].problem:
        return found
    return found + key_problems(parse(raw), access_key)


# --- after Errored ----------------------------------------------------------------------------------------------------


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value or "0"))
    except InvalidOperation:
        return Decimal("0")


def _signed_digest(root: Any) -> Problem | None:
    """The note's SHA-1 digest (C14N of infNFe) against its signature's and SEFAZ's ``digVal``: a difference means
    the XML was changed after it was signed or authorized."""
    from lxml import etree

    inf = root.find(f"{NFE}NFe/{NFE}infNFe")
    signed = _find(root, "NFe/ds:Signature/ds:SignedInfo/ds:Reference/ds:DigestValue")
    if inf is None or not signed:
        return None
    # C14N of a copy: the copy carries the inherited default namespace, as inclusive C14N renders it.
    canonical = etree.tostring(etree.fromstring(etree.tostring(inf)), method="c14n")
    digest = base64.b64encode(hashlib.sha1(canonical).digest()).decode()
    authorized = _find(root, "protNFe/infProt/digVal")
    fix = "Send the XML exactly as SEFAZ authorized it (download it again from the ERP)"
    if digest != signed:
        return Problem("nfeProc/NFe/infNFe", "the note was changed after it was signed (its digest is not the "
                                             "signature's DigestValue)", fix)
    if authorized and authorized != signed:
        return Problem("nfeProc/protNFe/infProt/digVal", "SEFAZ authorized another version of this note (digVal "
                                                         "differs from the signature's digest)", fix)
    return None


def _classification(node: Any) -> str:
    for entry in (node or {}).get("TaxClassifications") or []:
        if isinstance(entry, dict) and str(entry.get("Name", "")).upper() in ("CPF", "CNPJ"):
            return "".join(ch for ch in str(entry.get("Value") or "") if ch.isdigit())
    return ""


def shipment_problems(root: Any, detail: dict[str, Any]) -> list[Problem]:
    """The note against the shipment Amazon described: buyer, delivery CEP/UF, SKUs and quantities, values,
    the note's totals, the marketplace as intermediary."""
    found: list[Problem] = []
    inf = "nfeProc/NFe/infNFe"
    buyer = _classification(detail.get("BuyerTaxInfo"))
    recipient = _find(root, "NFe/infNFe/dest/CPF") or _find(root, "NFe/infNFe/dest/CNPJ")
    if buyer and recipient != buyer:
        found.append(Problem(f"{inf}/dest", f"the recipient's CPF/CNPJ {recipient or '(none)'} is not the buyer's "
                                            f"{buyer} (getShipmentDetails BuyerTaxInfo)",
                             "Issue the note to the buyer of the Amazon order (the customer's CPF/CNPJ as Amazon "
                             "gives it)"))
    address = detail.get("ShippingAddress") or {}
    zip_code = "".join(ch for ch in str(address.get("PostalCode") or "") if ch.isdigit())
    dest_zip = _find(root, "NFe/infNFe/dest/enderDest/CEP")
    if zip_code and dest_zip and dest_zip != zip_code:
        found.append(Problem(f"{inf}/dest/enderDest/CEP", f"CEP {dest_zip} is not the order's delivery CEP "
                                                          f"{zip_code}",
                             "Copy the delivery address exactly from the Amazon order (Amazon wants it 100% equal)"))
    uf = str(address.get("StateOrRegion") or "")
    dest_uf = _find(root, "NFe/infNFe/dest/enderDest/UF")
    if len(uf) == 2 and dest_uf and dest_uf != uf:
        found.append(Problem(f"{inf}/dest/enderDest/UF", f"UF {dest_uf} is not the order's {uf}",
                             "Copy the delivery address exactly from the Amazon order"))
    if not dest_zip or not _find(root, "NFe/infNFe/dest/enderDest/nro") or \
            not _find(root, "NFe/infNFe/dest/enderDest/xBairro"):
        found.append(Problem(f"{inf}/dest/enderDest", "the recipient's address is incomplete (CEP, number or "
                                                      "neighbourhood missing)",
                             "Complete the customer's address in the ERP from the Amazon order"))
    quantities: dict[str, Decimal] = {}
    values: dict[str, Decimal] = {}
    for det in root.iter(f"{NFE}det"):
        prod = det.find(f"{NFE}prod")
        if prod is None:
            continue
        sku = (prod.findtext(f"{NFE}cProd") or "").strip()
        quantities[sku] = quantities.get(sku, Decimal("0")) + _decimal(prod.findtext(f"{NFE}qCom"))
        values[sku] = values.get(sku, Decimal("0")) + _decimal(prod.findtext(f"{NFE}vProd"))
        ncm = (prod.findtext(f"{NFE}NCM") or "").strip()
        where = f"{inf}/det[@nItem={det.get('nItem')}]"
        if len(ncm) != 8 or not ncm.isdigit():
            found.append(Problem(f"{where}/prod/NCM", f"item {sku}: NCM {ncm or '(none)'} is not 8 digits",
                                 f"Fill the NCM of product {sku} in the ERP (the fiscal attributes the manuals "
                                 "require)"))
        if not any(node.text for node in det.iter(f"{NFE}orig")):
            found.append(Problem(f"{where}/imposto/ICMS", f"item {sku}: no origem (orig)",
                                 f"Fill the origem (0-8) of product {sku} in the ERP"))
    wanted: dict[str, Decimal] = {}
    priced: dict[str, Decimal] = {}
    for item in detail.get("ShipmentItems") or []:
        if not isinstance(item, dict):
            continue
        sku = str(item.get("SellerSKU") or "")
        wanted[sku] = wanted.get(sku, Decimal("0")) + _decimal(item.get("QuantityOrdered"))
        priced[sku] = priced.get(sku, Decimal("0")) + _decimal((item.get("ItemPrice") or {}).get("Amount"))
    if wanted:
        if set(wanted) != set(quantities):
            found.append(Problem(f"{inf}/det/prod/cProd", f"the note's products {sorted(quantities)} are not the "
                                                          f"shipment's SKUs {sorted(wanted)}",
                                 "Issue the note for exactly the shipment's items (Amazon's SKUs)"))
        for sku in sorted(set(wanted) & set(quantities)):
            if quantities[sku] != wanted[sku]:
                found.append(Problem(f"{inf}/det/prod/qCom", f"{sku}: the note has {quantities[sku].normalize()} "
                                                             f"unit(s), the shipment {wanted[sku].normalize()}",
                                     "Issue the note for the shipment's quantities"))
            elif priced.get(sku) and abs(values[sku] - priced[sku]) > CENT:
                found.append(Problem(f"{inf}/det/prod/vProd", f"{sku}: the note's value {values[sku]} is not the "
                                                              f"shipment's item price {priced[sku]}",
                                     "Use the order's prices (Amazon's ItemPrice: unit price x quantity)"))
    found += _totals(root)
    marketplace = _classification(detail.get("MarketplaceTaxInfo"))
    intermediary = _find(root, "NFe/infNFe/infIntermed/CNPJ")
    if marketplace and intermediary != marketplace:
        said = f"infIntermed CNPJ is {intermediary}" if intermediary else "the note has no infIntermed"
        found.append(Problem(f"{inf}/infIntermed/CNPJ", f"{said}; the marketplace (intermediary) is CNPJ "
                                                        f"{marketplace} (getShipmentDetails MarketplaceTaxInfo)",
                             f"Set the sale's intermediary in the ERP to CNPJ {marketplace} (Amazon) with "
                             "indIntermed 1, and issue the note again"))
    elif marketplace and _find(root, "NFe/infNFe/ide/indIntermed") != "1":
        found.append(Problem(f"{inf}/ide/indIntermed", "indIntermed is not 1 (sale through an intermediary)",
                             "Mark the sale as made through an intermediary (Amazon) in the ERP"))
    return found


def _totals(root: Any) -> list[Problem]:
    """The note's own sums (SEFAZ rejects a note whose totals are not its items'; the payments are compared with
    the note, not with Amazon's order: a shipment may carry only part of it)."""
    inf = "nfeProc/NFe/infNFe"
    tot = root.find(f"{NFE}NFe/{NFE}infNFe/{NFE}total/{NFE}ICMSTot")
    if tot is None:
        return []

    def value(name: str) -> Decimal:
        return _decimal(tot.findtext(f"{NFE}{name}"))

    found: list[Problem] = []
    items = sum((_decimal(p.findtext(f"{NFE}vProd")) for p in root.iter(f"{NFE}prod")), Decimal("0"))
    fix = "Let the ERP compute the note's totals from its items (a hand-edited total is rejected)"
    if abs(items - value("vProd")) > CENT:
        found.append(Problem(f"{inf}/total/ICMSTot/vProd", f"vProd {value('vProd')} is not the sum of the items "
                                                          f"{items}", fix))
    expected = (value("vProd") - value("vDesc") - value("vICMSDeson") + value("vST") + value("vFCPST")
                + value("vFrete") + value("vSeg") + value("vOutro") + value("vII") + value("vIPI")
                + value("vIPIDevol"))
    if abs(expected - value("vNF")) > CENT:
        found.append(Problem(f"{inf}/total/ICMSTot/vNF", f"vNF {value('vNF')} is not vProd - vDesc + vFrete + ... "
                                                        f"= {expected}", fix))
    paid = sum((_decimal(p.findtext(f"{NFE}vPag")) for p in root.iter(f"{NFE}detPag")), Decimal("0"))
    change = _decimal(root.findtext(f"{NFE}NFe/{NFE}infNFe/{NFE}pag/{NFE}vTroco"))
    if paid and abs(paid - change - value("vNF")) > CENT:
        found.append(Problem(f"{inf}/pag/detPag/vPag", f"the payments ({paid}) are not the note's total "
                                                       f"{value('vNF')}", fix))
    return found


def errored_causes(xml: str | bytes | None, access_key: str | None, detail: dict[str, Any] | None
                   ) -> list[Problem]:
    """The likely reasons Amazon answered ``Errored``: the checks before submission, the signature's digest, and
    the note against the shipment (when ``detail``, getShipmentDetails' payload, is known)."""
    raw = xml.encode() if isinstance(xml, str) else (xml or b"")
    found = before_submit(raw, access_key)
    if found and found[0].field == "xml":
        return found
    root = parse(raw)
    if _find(root, "protNFe/infProt/cStat") not in ("100", "150"):
        found.append(Problem("nfeProc/protNFe/infProt/cStat", "SEFAZ has not authorized the note",
                             "Wait for SEFAZ's authorization in the ERP"))
    if detail:
        found += shipment_problems(root, detail)
    digest = _signed_digest(root)
    if digest is not None:
        found.append(digest)
    return found


__all__ = ["SCHEMA", "Problem", "before_submit", "errored_causes", "key_problems", "md5_base64", "md5_problems",
           "payload", "schema_path", "schema_problems", "shipment_problems"]
