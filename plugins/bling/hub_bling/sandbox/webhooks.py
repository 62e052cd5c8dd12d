"""Outgoing webhooks in Bling's v1 envelope, signed like Bling signs them.

The signature is an HMAC-SHA256 of the exact bytes sent, keyed with the app's client secret: receivers must check
it over the raw body, which is why the body is serialized once here and posted as bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from .state import State

SIGNATURE_HEADER = "X-Bling-Signature-256"


def uuid7() -> str:
    """A time-ordered UUID (version 7), the kind Bling uses for ``eventId``."""
    ms = int(time.time() * 1000)
    rand = secrets.randbits(74)
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def envelope(st: State, event: str, data: dict[str, Any], event_id: str | None, date: str | None) -> bytes:
    stamp = date or datetime.fromtimestamp(st.clock.time(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    payload = {"eventId": event_id or uuid7(), "date": stamp, "version": "v1", "event": event,
               "companyId": st.company_id, "data": data}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def post(url: str, secret: str, body: bytes, timeout: float = 5.0) -> int:
    """POST ``body`` to ``url`` signed with ``secret``; the status code, or 0 if nobody answered."""
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature(secret, body),
               "User-Agent": "Bling-Webhooks/1.0"}
    try:
        return httpx.post(url, content=body, headers=headers, timeout=timeout).status_code
    except httpx.HTTPError:
        return 0


def product_data(st: State, pid: int) -> dict[str, Any]:
    p, meta = st.products[pid], st.pmeta[pid]
    return {"id": pid, "nome": p["nome"], "codigo": p["codigo"], "tipo": p["tipo"], "situacao": p["situacao"],
            "preco": p["preco"], "unidade": p["unidade"], "formato": p["formato"], "idProdutoPai": meta.parent or 0,
            "categoria": {"id": p["categoria"].get("id", 0)}, "descricaoCurta": p["descricaoCurta"],
            "descricaoComplementar": p["descricaoComplementar"]}


def stock_data(st: State, movement: dict[str, Any]) -> dict[str, Any]:
    pid, deposit = movement["produto"]["id"], movement["deposito"]["id"]
    balance = st.stock_total(pid, deposit)
    total = st.stock_total(pid)
    return {"produto": {"id": pid}, "deposito": {"id": deposit, "saldoFisico": balance, "saldoVirtual": balance},
            "operacao": movement["operacao"], "quantidade": movement["quantidade"], "saldoFisicoTotal": total,
            "saldoVirtualTotal": total}


def order_data(st: State, sid: int) -> dict[str, Any]:
    s = st.sales[sid]
    return {"id": sid, "data": s["data"], "numero": s["numero"], "numeroLoja": s["numeroLoja"], "total": s["total"],
            "contato": {"id": s["contato"]["id"]}, "vendedor": {"id": s["vendedor"]["id"]},
            "loja": {"id": s["loja"]["id"]}, "situacao": dict(s["situacao"])}
