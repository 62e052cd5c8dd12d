"""The authorized NF-e a sandbox issues: an ``nfeProc`` (the signed ``NFe`` with SEFAZ's ``protNFe``) that is valid
against the official NF-e 4.00 schema (``procNFe_v4.00.xsd``, "Manual de Orientação do Contribuinte" layout).

Every ERP sandbox that issues notes (Bling's, Plugg.to's) and Amazon's test notes come from here, so a connector
that validates notes against the schema before sending them on (Amazon FBA Onsite's ``submitInvoice``) sees what a
real issuer produces. The ``ide`` fields the access key encodes (cUF, AAMM, CNPJ, mod, serie, nNF, tpEmis, cNF, cDV)
are taken from the key itself, so they always agree with it. The signature is a real XML-DSig enveloped signature
(C14N, RSA-SHA1, SHA-1 digest, as the schema fixes them) made with a throwaway self-signed certificate generated
once per process: structurally what SEFAZ receives, verifiable, but of no fiscal value (the notes say
``tpAmb`` 2, homologação).
"""

from __future__ import annotations

import base64
import hashlib
import threading
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from hub.models import access_key_check_digit
from hub.sandbox import xmltree

__all__ = ["BRT", "DSIG_NS", "NFE_NS", "UF_CODES", "Card", "Item", "Party", "access_key", "authorized_nfe",
           "key_fields"]

NFE_NS = "http://www.portalfiscal.inf.br/nfe"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
BRT = timezone(timedelta(hours=-3), "BRT")
UF_CODES = {"RO": "11", "AC": "12", "AM": "13", "RR": "14", "PA": "15", "AP": "16", "TO": "17", "MA": "21",
            "PI": "22", "CE": "23", "RN": "24", "PB": "25", "PE": "26", "AL": "27", "SE": "28", "BA": "29",
            "MG": "31", "ES": "32", "RJ": "33", "SP": "35", "PR": "41", "SC": "42", "RS": "43", "MS": "50",
            "MT": "51", "GO": "52", "DF": "53"}
CITY_CODES = {"são paulo": "3550308", "rio de janeiro": "3304557", "curitiba": "4106902",
              "belo horizonte": "3106200", "porto alegre": "4314902", "campinas": "3509502", "salvador": "2927408",
              "brasília": "5300108", "recife": "2611606", "fortaleza": "2304400", "florianópolis": "4205407",
              "goiânia": "5208707", "manaus": "1302603", "belém": "1501402", "vitória": "3205309"}
"""IBGE municipality codes of the cities the sandboxes use; another city gets its state's code + 00000 (the
schema checks seven digits; SEFAZ would check the table)."""
CARD_BRANDS = {"visa": "01", "mastercard": "02", "amex": "03", "american express": "03", "sorocred": "04",
               "diners": "05", "elo": "06", "hipercard": "07", "aura": "08", "cabal": "09"}
NO_GTIN = "SEM GTIN"


@dataclass(frozen=True)
class Party:
    """The issuer (emit) or the recipient (dest): CPF (11 digits) or CNPJ (14) and the address the note prints."""

    document: str
    name: str
    street: str = "Rua Exemplo"
    number: str = "S/N"
    district: str = "Centro"
    city: str = "São Paulo"
    uf: str = "SP"
    zip: str = "01001000"
    complement: str | None = None
    phone: str | None = None
    email: str | None = None
    ie: str | None = None
    """Inscrição estadual: required of the issuer; a recipient without one is a non-contributor (indIEDest 9)."""


@dataclass(frozen=True)
class Item:
    sku: str
    name: str
    ncm: str
    quantity: Decimal
    unit_price: Decimal
    cfop: str | None = None
    """None: 5102 within the issuer's state, 6102 to another."""
    origin: int = 0
    gtin: str | None = None
    cest: str | None = None
    unit: str = "UN"
    total: Decimal | None = None
    """The line total (quantity x unit price when None)."""


@dataclass(frozen=True)
class Card:
    """A card payment's acquirer (its CNPJ), brand and authorization code (NF-e ``pag/detPag/card``)."""

    acquirer_cnpj: str | None = None
    brand: str | None = None
    authorization: str | None = None


def _digits(value: Any) -> str:
    return "".join(ch for ch in str(value or "") if ch.isdigit())


def _text(value: Any, limit: int, minimum: int = 1) -> str:
    """Schema text (``TString``: Latin-1, no leading/trailing or doubled-up spaces), cut to ``limit``, padded to the
    field's ``minimum`` (names and address parts take at least two characters)."""
    raw = " ".join(str(value or "").split())
    out = "".join(ch if ord(ch) <= 0xFF else unicodedata.normalize("NFKD", ch).encode("latin-1", "ignore")
                  .decode("latin-1") or "-" for ch in raw)
    return (out[:limit].strip() or "-").ljust(minimum, "-")


def _money(value: Decimal | float | int) -> str:
    return str(Decimal(str(value)).quantize(Decimal("0.01"), ROUND_HALF_UP))


def _quantity(value: Decimal | float | int) -> str:
    return str(Decimal(str(value)).quantize(Decimal("0.0001"), ROUND_HALF_UP))


def _unit(value: Decimal | float | int) -> str:
    """A unit price: two decimals, or up to ten when it has more (``TDec_1110v``)."""
    exact = Decimal(str(value)).quantize(Decimal("0.0000000001"), ROUND_HALF_UP)
    cents = exact.quantize(Decimal("0.01"))
    return str(cents) if cents == exact else format(exact.normalize(), "f")


def _local(moment: datetime) -> datetime:
    """A moment in Brasília time (a naive one is taken as already there)."""
    return moment.replace(tzinfo=BRT) if moment.tzinfo is None else moment.astimezone(BRT)


def _stamp(moment: datetime) -> str:
    return _local(moment).replace(microsecond=0).isoformat()


def access_key(uf: str, issued: datetime, cnpj: str, series: int | str, number: int | str, code: int,
               *, model: int = 55, tp_emis: int = 1) -> str:
    """The 44-digit access key: cUF, AAMM (of the emission, Brasília time), CNPJ, mod, serie, nNF, tpEmis, cNF
    (eight digits) and the mod-11 check digit."""
    first43 = (f"{UF_CODES.get(uf, uf)}{_local(issued):%y%m}{_digits(cnpj):0>14}{model:02d}{int(series):03d}"
               f"{int(number):09d}{tp_emis}{code % 10**8:08d}")
    return first43 + str(access_key_check_digit(first43))


def key_fields(key: str) -> dict[str, str]:
    """What the access key encodes, by the NF-e field each part must equal."""
    return {"cUF": key[0:2], "AAMM": key[2:6], "CNPJ": key[6:20], "mod": key[20:22], "serie": key[22:25],
            "nNF": key[25:34], "tpEmis": key[34], "cNF": key[35:43], "cDV": key[43]}


def _address(party: Party, tag: str) -> dict[str, Any]:
    uf = party.uf if party.uf in UF_CODES else "SP"
    city = _text(party.city, 60, 2)
    return {tag: {"xLgr": _text(party.street, 60, 2), "nro": _text(party.number, 60),
                  "xCpl": _text(party.complement, 60) if party.complement else None,
                  "xBairro": _text(party.district, 60, 2),
                  "cMun": CITY_CODES.get(city.lower(), f"{UF_CODES[uf]}00000"), "xMun": city, "UF": uf,
                  "CEP": _digits(party.zip).rjust(8, "0")[:8], "cPais": "1058", "xPais": "Brasil",
                  "fone": _digits(party.phone)[-14:] if len(_digits(party.phone)) >= 6 else None}}


def _document(value: str) -> dict[str, str]:
    digits = _digits(value)
    return {"CNPJ": digits} if len(digits) == 14 else {"CPF": digits}


def _det(n: int, item: Item, cfop: str, freight: Decimal, discount: Decimal) -> dict[str, Any]:
    total = item.total if item.total is not None else item.quantity * item.unit_price
    gtin = _digits(item.gtin) if item.gtin and len(_digits(item.gtin)) in (8, 12, 13, 14) else NO_GTIN
    return {"@nItem": n, "prod": {
        "cProd": _text(item.sku, 60), "cEAN": gtin, "xProd": _text(item.name, 120), "NCM": _digits(item.ncm) or "00",
        "CEST": _digits(item.cest) if item.cest and len(_digits(item.cest)) == 7 else None,
        "CFOP": item.cfop or cfop, "uCom": _text(item.unit, 6), "qCom": _quantity(item.quantity),
        "vUnCom": _unit(item.unit_price), "vProd": _money(total), "cEANTrib": gtin, "uTrib": _text(item.unit, 6),
        "qTrib": _quantity(item.quantity), "vUnTrib": _unit(item.unit_price),
        "vFrete": _money(freight) if freight else None, "vDesc": _money(discount) if discount else None,
        "indTot": 1},
        "imposto": {"vTotTrib": _money(Decimal(str(total)) * Decimal("0.3145")),
                    "ICMS": {"ICMSSN102": {"orig": item.origin, "CSOSN": "102"}},
                    "PIS": {"PISNT": {"CST": "07"}}, "COFINS": {"COFINSNT": {"CST": "07"}}}}


def authorized_nfe(*, key: str, issued: datetime, issuer: Party, recipient: Party, items: Sequence[Item],
                   payments: Sequence[tuple[str, Decimal, Card | None]] = (), freight: Decimal = Decimal("0"),
                   discount: Decimal = Decimal("0"), intermediary: str | None = None,
                   intermediary_id: str | None = None, nat_op: str = "Venda de mercadoria", tp_amb: int = 2,
                   received: datetime | None = None, extra_info: str | None = None) -> str:
    """The authorized ``nfeProc`` of key ``key`` (see :func:`access_key`): Simples Nacional issuer (CSOSN 102, PIS
    and COFINS not taxed), consumer sale over the internet, freight and discount on the first item, ``payments``
    as (tPag, amount, card), ``intermediary`` the marketplace's CNPJ (``infIntermed``, ``indIntermed`` 1)."""
    if len(key) != 44 or not key.isdigit():
        raise ValueError(f"access key {key!r} is not 44 digits")
    fields = key_fields(key)
    if fields["AAMM"] != f"{_local(issued):%y%m}" or fields["CNPJ"] != _digits(issuer.document).rjust(14, "0"):
        raise ValueError(f"access key {key} does not encode the emission month {_local(issued):%y%m} and issuer "
                         f"CNPJ {issuer.document}")
    same_state = recipient.uf == issuer.uf
    cfop = "5102" if same_state else "6102"
    total = sum((i.total if i.total is not None else i.quantity * i.unit_price for i in items), Decimal("0"))
    amount = total + freight - discount
    dets = [_det(n, item, cfop, freight if n == 1 else Decimal("0"), discount if n == 1 else Decimal("0"))
            for n, item in enumerate(items, start=1)]
    taxes = sum((Decimal(d["imposto"]["vTotTrib"]) for d in dets), Decimal("0"))
    pays = [{"indPag": 0, "tPag": tpag, "xPag": "Outros" if tpag == "99" else None, "vPag": _money(value),
             "card": None if card is None else {
                 "tpIntegra": 2,
                 "CNPJ": _digits(card.acquirer_cnpj) if len(_digits(card.acquirer_cnpj)) == 14 else None,
                 "tBand": CARD_BRANDS.get((card.brand or "").lower(), "99") if card.brand else None,
                 "cAut": _text(card.authorization, 128) if card.authorization else None}}
            for tpag, value, card in payments] or [{"indPag": 0, "tPag": "99", "xPag": "Outros",
                                                    "vPag": _money(amount)}]
    zero = "0.00"
    dest: dict[str, Any] = {**_document(recipient.document), "xNome": _text(recipient.name, 60, 2),
                            **_address(recipient, "enderDest"), "indIEDest": 1 if recipient.ie else 9,
                            "IE": _digits(recipient.ie) or None,
                            "email": _text(recipient.email, 60) if recipient.email else None}
    inf_nfe: dict[str, Any] = {
        "@xmlns": NFE_NS, "@Id": f"NFe{key}", "@versao": "4.00",
        "ide": {"cUF": fields["cUF"], "cNF": fields["cNF"], "natOp": _text(nat_op, 60), "mod": fields["mod"],
                "serie": int(fields["serie"]), "nNF": int(fields["nNF"]), "dhEmi": _stamp(issued), "tpNF": 1,
                "idDest": 1 if same_state else 2,
                "cMunFG": _address(issuer, "x")["x"]["cMun"], "tpImp": 1, "tpEmis": fields["tpEmis"],
                "cDV": fields["cDV"], "tpAmb": tp_amb, "finNFe": 1, "indFinal": 1, "indPres": 2,
                "indIntermed": 1 if intermediary else 0, "procEmi": 0, "verProc": "hub-sandbox 1.0"},
        "emit": {"CNPJ": _digits(issuer.document), "xNome": _text(issuer.name, 60, 2), **_address(issuer, "enderEmit"),
                 "IE": _digits(issuer.ie) or "ISENTO", "CRT": 1},
        "dest": dest,
        "det": dets,
        "total": {"ICMSTot": {
            "vBC": zero, "vICMS": zero, "vICMSDeson": zero, "vFCP": zero, "vBCST": zero, "vST": zero,
            "vFCPST": zero, "vFCPSTRet": zero, "vProd": _money(total), "vFrete": _money(freight), "vSeg": zero,
            "vDesc": _money(discount), "vII": zero, "vIPI": zero, "vIPIDevol": zero, "vPIS": zero,
            "vCOFINS": zero, "vOutro": zero, "vNF": _money(amount), "vTotTrib": _money(taxes)}},
        "transp": {"modFrete": 0 if freight else 9},
        "pag": {"detPag": pays},
        "infIntermed": {"CNPJ": _digits(intermediary), "idCadIntTran": _text(intermediary_id or "amazon", 60)}
        if intermediary else None,
        "infAdic": {"infCpl": _text(extra_info, 5000)} if extra_info else None,
    }
    signed_xml = xmltree.build("infNFe", inf_nfe, declaration=False)
    digest = base64.b64encode(hashlib.sha1(ET.canonicalize(signed_xml).encode()).digest()).decode()
    signature = _signature(f"#NFe{key}", digest)
    nfe = ET.Element("NFe", {"xmlns": NFE_NS})
    nfe.append(ET.fromstring(signed_xml.replace(f' xmlns="{NFE_NS}"', "", 1)))
    nfe.append(signature)
    moment = received or datetime.now(UTC)
    protocol = f"1{fields['cUF']}{_local(moment):%y}{int(key[25:34]) % 10**9:09d}"[:15].ljust(15, "0")
    prot = xmltree.element("protNFe", {"@versao": "4.00", "infProt": {
        "@Id": f"ID{protocol}", "tpAmb": tp_amb, "verAplic": "SP_NFE_PL009_V4", "chNFe": key,
        "dhRecbto": _stamp(moment), "nProt": protocol, "digVal": digest, "cStat": 100,
        "xMotivo": "Autorizado o uso da NF-e"}})
    root = ET.Element("nfeProc", {"xmlns": NFE_NS, "versao": "4.00"})
    root.append(nfe)
    root.append(prot)
    return '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="unicode")


# --- the signature ---------------------------------------------------------------------------------------------------

_signer: tuple[Any, str] | None = None
_signer_lock = threading.Lock()


def _key_and_certificate() -> tuple[Any, str]:
    """A throwaway RSA key and its self-signed certificate (base64 DER), made once per process."""
    global _signer
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    with _signer_lock:
        if _signer is not None:
            return _signer
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "BR"),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hub sandbox (sem valor fiscal)"),
                          x509.NameAttribute(NameOID.COMMON_NAME, "LOJA MODELO SANDBOX:11222333000181")])
        now = datetime.now(UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
                .not_valid_after(now + timedelta(days=365)).sign(key, hashes.SHA256()))
        made = (key, base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode())
        _signer = made
        return made


def _signature(uri: str, digest: str) -> ET.Element:
    """``ds:Signature`` over the element ``uri`` names: enveloped, C14N 1.0 (the document has no comments and
    one default namespace per subtree, where C14N 1.0 and 2.0 agree), RSA-SHA1."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    key, certificate = _key_and_certificate()
    c14n = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
    signed_info = {
        "@xmlns": DSIG_NS,
        "CanonicalizationMethod": {"@Algorithm": c14n},
        "SignatureMethod": {"@Algorithm": f"{DSIG_NS}rsa-sha1"},
        "Reference": {"@URI": uri, "Transforms": {"Transform": [
            {"@Algorithm": f"{DSIG_NS}enveloped-signature"}, {"@Algorithm": c14n}]},
            "DigestMethod": {"@Algorithm": f"{DSIG_NS}sha1"}, "DigestValue": digest}}
    canonical = ET.canonicalize(xmltree.build("SignedInfo", signed_info, declaration=False))
    value = base64.b64encode(key.sign(canonical.encode(), padding.PKCS1v15(), hashes.SHA1())).decode()
    signature = ET.Element("Signature", {"xmlns": DSIG_NS})
    info = xmltree.element("SignedInfo", {k: v for k, v in signed_info.items() if k != "@xmlns"})
    signature.append(info)
    ET.SubElement(signature, "SignatureValue").text = value
    x509_data = ET.SubElement(ET.SubElement(signature, "KeyInfo"), "X509Data")
    ET.SubElement(x509_data, "X509Certificate").text = certificate
    return signature
