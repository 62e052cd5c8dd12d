"""``BlingSandbox``: the emulated account and the control methods tests drive it with.

Control methods run on the test's thread while uvicorn serves the app on another; both go through the state's one
lock. Webhooks are built under the lock and posted after it is released.
"""

from __future__ import annotations

import copy
import random
import secrets
from typing import Any

from . import catalog, nfe, oauth, orders, seed, webhooks
from .app import build_app
from .catalog import deep_merge
from .common import Clock, money
from .parties import insert_contact, seller_view
from .state import ACOES, SITUACOES, SaleMeta, State, Token

FAULTS = ("500", "timeout", "slow", "429", "429-day", "401", "repeat_page", "timeout-after-write")
RANDOM_FAULTS = ("500", "timeout", "slow", "429", "401")
SEEDERS = {"products": seed.products, "categories": seed.categories, "customers": seed.customers,
           "sellers": seed.sellers, "payment_methods": seed.payment_methods, "stock": seed.stock,
           "sales": seed.sales}
RECORD_STREAMS = (*SEEDERS, "nfe", "stock_movements", "accounts", "deposits", "situacoes")


class BlingSandbox:
    """One Bling account behind ``/Api/v3``: OAuth with rotating refresh tokens, Bling's rate limits and IP
    blocks, the spec's list defaults, sales orders with stock/accounts actions, NF-e and signed webhooks."""

    def __init__(self, *, token_ttl_seconds: float = 21600, refresh_ttl_seconds: float = 30 * 86400,
                 code_ttl_seconds: float = 60, rate_per_second: float | None = 3, daily_limit: int | None = 120000,
                 nfe_delay_seconds: float = 0.5, fault_delay: float = 2.0, account_seed: int = 1) -> None:
        self.clock = Clock()
        self.state = st = State(account_seed, self.clock)
        st.token_ttl, st.refresh_ttl, st.code_ttl = token_ttl_seconds, refresh_ttl_seconds, code_ttl_seconds
        st.rate_per_second, st.daily_limit = rate_per_second, daily_limit
        st.nfe_delay_seconds = nfe_delay_seconds
        self.fault_delay = fault_delay
        self.fault_rate = 0.0
        self.fault_kinds: tuple[str, ...] = ()
        self._fault_rng = random.Random(0)
        self.webhook_url: str | None = None
        self.webhook_log: list[dict[str, Any]] = []
        self._bootstrap()
        self.app = build_app(self)

    def _bootstrap(self) -> None:
        """What every account has from day one: depósitos, Consumidor Final, the sales situações."""
        st = self.state
        st.module_id = 98_000 + st.seed * 17
        st.company_cnpj = seed.format_cnpj(seed.cnpj_digits(f"{10_000_000 + st.seed * 7919 % 89_999_999:08d}0001"))
        for name, default in (("Geral", True), ("Loja Centro", False), ("Loja Shopping", False)):
            did = st.new_id()
            st.deposits[did] = {"id": did, "descricao": name, "situacao": 1, "padrao": default,
                                "desconsiderarSaldo": False}
            if default:
                st.default_deposit = did
        st.final_consumer = insert_contact(st, {"nome": "Consumidor Final", "tipo": "F", "indicadorIe": 9,
                                                "pais": {"nome": "Brasil"}},
                                           created="2021-03-15 09:00:00", changed="2021-03-15 09:00:00")
        base = 200_000 + st.seed * 1000 + st.rng.randrange(0, 900)
        for k, (name, valor, cor) in enumerate(SITUACOES):
            sid = base + 3 * k
            st.situacoes[sid] = {"id": sid, "nome": name, "idHerdado": 0, "cor": cor, "valor": valor}

    # --- the hub.sandbox.Sandbox protocol ---------------------------------------------------------------

    def connection(self, base_url: str) -> dict[str, Any]:
        """Options and credentials as if the merchant had already authorized the app (a fresh grant)."""
        st = self.state
        with st.lock:
            refresh = secrets.token_hex(20)
            st.refresh[refresh] = Token(oauth.new_grant(st), st.clock.time() + st.refresh_ttl)
        rate = st.rate_per_second if st.rate_per_second is not None else 1000
        return {"options": {"base_url": base_url.rstrip("/") + "/Api/v3", "rate_per_second": rate},
                "credentials": {"client_id": st.client_id, "client_secret": st.client_secret,
                                "refresh_token": refresh}}

    def seed(self, stream: str, count: int) -> list[str]:
        if stream not in SEEDERS:
            raise ValueError(f"bling sandbox cannot seed {stream!r} (streams: {', '.join(SEEDERS)})")
        with self.state.lock:
            return SEEDERS[stream](self.state, count)

    def seed_invalid(self, stream: str) -> str:
        """A product with a wrong GTIN check digit, or a contato with a wrong CPF check digit: Bling accepts both."""
        with self.state.lock:
            if stream == "products":
                return seed.products(self.state, 1, invalid_gtin=True)[0]
            if stream == "customers":
                return seed.customers(self.state, 1, invalid_document=True)[0]
        raise ValueError(f"seed_invalid does not support {stream!r} (products, customers)")

    def touch(self, stream: str, external_id: str) -> None:
        """Change a record as a user would (bumping ``dataAlteracao``); products, stock and sales also fire their
        webhook when ``webhook_url`` is set. For ``stock`` the id is a product's: one unit enters the default
        depósito."""
        st = self.state
        rid = int(external_id)
        event: tuple[str, dict[str, Any]] | None = None
        with st.lock:
            st.serial += 1
            now = st.clock.stamp()
            if stream == "products":
                st.products[rid]["preco"] = money(st.products[rid]["preco"] + 0.1)
                st.pmeta[rid].changed = now
                event = ("product.updated", webhooks.product_data(st, rid))
            elif stream == "stock":
                movement = st.move_stock(rid, st.default_deposit, "E", 1.0, origin="usuario")
                event = ("stock.updated", webhooks.stock_data(st, movement))
            elif stream == "sales":
                st.sales[rid]["observacoes"] = f"Revisado pelo usuário ({st.serial})"
                st.ometa[rid].changed = now
                event = ("order.updated", webhooks.order_data(st, rid))
            elif stream == "customers":
                name = st.contacts[rid]["nome"].split(" (rev")[0]
                st.contacts[rid]["nome"] = f"{name} (rev {st.serial})"
                st.contacts[rid]["telefone"] = f"(11) 3{st.serial % 1000:03d}-{st.serial % 10000:04d}"
                st.cmeta[rid].changed = now
            elif stream == "categories":
                name = st.categories[rid]["descricao"].split(" (rev")[0]
                st.categories[rid]["descricao"] = f"{name} (rev {st.serial})"
            elif stream == "sellers":
                st.sellers[rid]["descontoLimite"] = float(st.sellers[rid]["descontoLimite"]) + 1
                st.smeta[rid].changed = now
            elif stream == "payment_methods":
                st.payment_methods[rid]["juros"] = money(float(st.payment_methods[rid]["juros"]) + 0.5)
            else:
                raise ValueError(f"bling sandbox cannot touch {stream!r}")
            st.changed()
        if event is not None and self.webhook_url:
            self.send_webhook(*event)

    def records(self, stream: str) -> list[dict[str, Any]]:
        """What the API would show, as independent copies: ``products`` (one per product, as ``GET /produtos/{id}``
        shows it: a parent carries its ``variacoes``), ``customers`` (every contato but the built-in Consumidor
        Final), ``sales`` (full detail), ``nfe``, ``stock`` (balances), ``stock_movements`` and ``accounts``
        (the ledgers)..."""
        st = self.state
        with st.lock:
            rows: list[dict[str, Any]]
            if stream == "products":
                rows = [catalog.detail(st, pid) for pid, meta in st.pmeta.items() if meta.parent is None]
            elif stream == "categories":
                rows = list(st.categories.values())
            elif stream == "customers":
                rows = [c for cid, c in st.contacts.items() if c["situacao"] != "E" and cid != st.final_consumer]
            elif stream == "sellers":
                rows = [seller_view(st, sid, full=True) for sid in st.sellers]
            elif stream == "payment_methods":
                rows = list(st.payment_methods.values())
            elif stream == "stock":
                rows = [catalog.balance_row(st, pid) for pid, meta in st.pmeta.items() if not meta.children]
            elif stream == "sales":
                rows = list(st.sales.values())
            elif stream == "nfe":
                rows = [nfe.settle(st, nid) for nid in list(st.nfes)]
            elif stream == "stock_movements":
                rows = st.stock_movements
            elif stream == "accounts":
                rows = st.accounts
            elif stream == "deposits":
                rows = list(st.deposits.values())
            elif stream == "situacoes":
                rows = [orders.situacao_view(s) for s in st.situacoes.values()]
            else:
                raise ValueError(f"bling sandbox has no stream {stream!r} (streams: {', '.join(RECORD_STREAMS)})")
            return copy.deepcopy(rows)

    def create(self, stream: str, data: dict[str, Any]) -> str:
        """Insert ``data`` (API-shaped) as a user typing it into Bling would: no schema or business validation,
        empty fields filled in, included and changed now. Products may carry ``variacoes``."""
        st = self.state
        body = copy.deepcopy(data)
        with st.lock:
            now = st.clock.stamp()
            if stream == "products":
                variations = body.pop("variacoes", None) or []
                pid = catalog.insert_product(st, body, created=now, changed=now)
                if variations:
                    catalog.save_variations(st, pid, variations, now, [])
                return str(pid)
            if stream == "customers":
                return str(insert_contact(st, body, created=now, changed=now))
            if stream == "categories":
                cid = int(body.get("id") or st.new_id())
                st.categories[cid] = {"id": cid, "descricao": body.get("descricao", ""),
                                      "categoriaPai": {"id": (body.get("categoriaPai") or {}).get("id", 0)}}
                st.changed()
                return str(cid)
            if stream == "payment_methods":
                mid = st.new_id()
                template = st.payment_methods[next(iter(st.payment_methods))] if st.payment_methods else {}
                st.payment_methods[mid] = {**copy.deepcopy(template), **body, "id": mid}
                st.changed()
                return str(mid)
            if stream == "sales":
                situacao = (body.get("situacao") or {}).get("id") or st.situacao_by_name("Em aberto")["id"]
                sale = orders.build_sale(st, body, st.new_id(), int(body.get("numero") or st.next_numero),
                                         int(situacao))
                return str(orders.insert_sale(st, sale, SaleMeta(now, now)))
        raise ValueError(f"bling sandbox cannot create {stream!r} (products, customers, categories, "
                         "payment_methods, sales)")

    def expected_pull(self, stream: str) -> list[dict[str, Any]]:
        """What a full pull brings: for products, the active ones, each grid once (its variations inside)."""
        rows = self.records(stream)
        if stream == "products":
            return [p for p in rows if p["situacao"] == "A" and not p.get("variacao")]
        return rows

    def summary(self) -> dict[str, Any]:
        """What the demo prints before and after: orders, contacts, stock on hand per depósito, the ledgers."""
        deposits = {d["id"]: d["descricao"] for d in self.records("deposits")}
        on_hand = dict.fromkeys(deposits.values(), 0.0)
        for row in self.records("stock"):
            for dep in row.get("depositos") or []:
                name = deposits.get(dep["id"], str(dep["id"]))
                on_hand[name] = on_hand.get(name, 0.0) + float(dep["saldoFisico"])
        return {"orders": len(self.records("sales")), "contacts": len(self.records("customers")),
                **{f"stock {name}": round(q, 2) for name, q in on_hand.items()},
                "stock movements": len(self.records("stock_movements")), "receivables": len(self.records("accounts"))}

    def inject_fault(self, kind: str, times: int = 1) -> None:
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r} (known: {', '.join(FAULTS)})")
        st = self.state
        with st.lock:
            if kind == "repeat_page":
                st.repeat_armed += times
            elif kind == "timeout-after-write":
                st.write_timeouts += times
            else:
                st.faults.extend([kind] * times)

    def set_fault_rate(self, rate: float, kinds: tuple[str, ...] = ("500", "timeout", "429"), seed: int = 0) -> None:
        """Fail a random ``rate`` of the API requests (0 stops it) with one of ``kinds``, drawn from a generator
        seeded with ``seed``; faults queued by :meth:`inject_fault` go first. The OAuth endpoints are spared."""
        unknown = [k for k in kinds if k not in RANDOM_FAULTS]
        if not 0 <= rate <= 1 or unknown or (rate and not kinds):
            raise ValueError(f"fault rate {rate} with kinds {kinds}: the rate goes from 0 to 1 and the kinds are "
                             f"{', '.join(RANDOM_FAULTS)}")
        with self.state.lock:
            self.fault_rate, self.fault_kinds, self._fault_rng = rate, tuple(kinds), random.Random(seed)

    def random_fault(self) -> str | None:
        """The fault of the request being gated, if the random rate picks one (call with the lock held)."""
        if self.fault_rate and self._fault_rng.random() < self.fault_rate:
            return self._fault_rng.choice(self.fault_kinds)
        return None

    # --- OAuth and limits -------------------------------------------------------------------------------

    def authorize(self, state: str = "") -> str:
        """A fresh single-use authorization code, as the merchant's consent would produce (``state`` is only
        echoed by the HTTP flow)."""
        with self.state.lock:
            return oauth.new_code(self.state)

    def revoke_all(self) -> None:
        """Every access and refresh token dies (the merchant uninstalled the app): only a new authorization helps."""
        with self.state.lock:
            for grant in self.state.grants:
                grant.alive = False
            self.state.access.clear()

    def expire_access_tokens(self) -> None:
        with self.state.lock:
            now = self.clock.time()
            for token in self.state.access.values():
                token.expires_at = min(token.expires_at, now)

    def set_rate(self, per_second: float | None) -> None:
        with self.state.lock:
            self.state.rate_per_second = per_second
            self.state.window.clear()

    def set_daily_limit(self, limit: int | None) -> None:
        with self.state.lock:
            self.state.daily_limit = limit

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock (token and code expiry, IP blocks, the daily count, NF-e authorization)."""
        with self.state.lock:
            self.clock.offset += seconds
            self.state.changed()

    # --- account configuration --------------------------------------------------------------------------

    def situacao_id(self, name: str) -> int:
        with self.state.lock:
            return int(self.state.situacao_by_name(name)["id"])

    def add_situacao(self, name: str, inherits: str = "Em aberto", cor: str = "#607D8B") -> int:
        """A custom sales situação (large account-specific id) inheriting ``inherits``'s base state."""
        st = self.state
        with st.lock:
            parent = st.situacao_by_name(inherits)
            sid = st.new_id() % 1_000_000 + 400_000
            st.situacoes[sid] = {"id": sid, "nome": name, "idHerdado": parent["id"], "cor": cor,
                                 "valor": parent["valor"]}
            return sid

    def set_transition(self, from_name: str, to_name: str, actions: list[str]) -> int:
        """Configure the account's transition manager: moving an order ``from_name`` -> ``to_name`` runs
        ``actions`` (lancarEstoque, lancarContas, estornarEstoque, estornarContas). Returns the transition id."""
        ids = {name: aid for aid, name, _ in ACOES}
        unknown = [a for a in actions if a not in ids]
        if unknown:
            raise ValueError(f"unknown actions {unknown} (known: {', '.join(ids)})")
        st = self.state
        with st.lock:
            origin, target = st.situacao_by_name(from_name), st.situacao_by_name(to_name)
            existing = next((t for t in st.transitions.values() if t["situacaoOrigem"]["id"] == origin["id"]
                             and t["situacaoDestino"]["id"] == target["id"]), None)
            tid = int(existing["id"]) if existing else st.new_id()
            st.transitions[tid] = {"id": tid, "ativo": True, "acoes": [ids[a] for a in actions],
                                   "modulo": {"id": st.module_id},
                                   "situacaoOrigem": {"id": origin["id"], "nome": origin["nome"]},
                                   "situacaoDestino": {"id": target["id"], "nome": target["nome"]}}
            return tid

    def cancel_nfe(self, note_id: str | int) -> None:
        """Cancel a note in the UI (the v3 API has no cancel endpoint): ``GET /nfe`` hides it from then on."""
        with self.state.lock:
            self.state.nfes[int(note_id)]["situacao"] = nfe.CANCELADA
            self.state.changed()

    def edit(self, stream: str, external_id: str | int, changes: dict[str, Any]) -> None:
        """Merge ``changes`` into a product, contato or order as a user editing it in Bling would (no validation;
        ``dataAlteracao`` moves). Handy for breaking an NCM or an address before sending an NF-e."""
        st = self.state
        rid = int(external_id)
        with st.lock:
            now = st.clock.stamp()
            if stream == "products":
                deep_merge(st.products[rid], changes)
                st.pmeta[rid].changed = now
            elif stream == "customers":
                deep_merge(st.contacts[rid], changes)
                st.cmeta[rid].changed = now
            elif stream == "sales":
                deep_merge(st.sales[rid], changes)
                st.ometa[rid].changed = now
            else:
                raise ValueError(f"bling sandbox cannot edit {stream!r} (products, customers, sales)")
            st.changed()

    # --- webhooks ---------------------------------------------------------------------------------------

    def send_webhook(self, event: str, data: dict[str, Any], *, event_id: str | None = None,
                     date: str | None = None) -> int:
        """POST one v1 event to ``webhook_url``, signed with the client secret; the status code (0: no answer)."""
        if not self.webhook_url:
            raise RuntimeError("set webhook_url first")
        with self.state.lock:
            body = webhooks.envelope(self.state, event, data, event_id, date)
        status = webhooks.post(self.webhook_url, self.state.client_secret, body)
        self.webhook_log.append({"event": event, "body": body, "status": status})
        return status

    # --- attributes the contract names ------------------------------------------------------------------

    @property
    def client_id(self) -> str:
        return self.state.client_id

    @property
    def client_secret(self) -> str:
        return self.state.client_secret

    @property
    def company_id(self) -> str:
        return self.state.company_id

    @property
    def redirect_uri(self) -> str:
        return self.state.redirect_uri

    @redirect_uri.setter
    def redirect_uri(self, value: str) -> None:
        self.state.redirect_uri = value

    @property
    def editar_numero_pedido(self) -> bool:
        """The account setting that makes ``numero`` mandatory on new orders (it stops POS sales syncing)."""
        return self.state.editar_numero_pedido

    @editar_numero_pedido.setter
    def editar_numero_pedido(self, value: bool) -> None:
        self.state.editar_numero_pedido = value

    @property
    def nfe_delay_seconds(self) -> float:
        return self.state.nfe_delay_seconds

    @nfe_delay_seconds.setter
    def nfe_delay_seconds(self, value: float) -> None:
        self.state.nfe_delay_seconds = value

    @property
    def rate_per_second(self) -> float | None:
        return self.state.rate_per_second

    @property
    def daily_limit(self) -> int | None:
        return self.state.daily_limit

    @property
    def token_calls(self) -> int:
        return self.state.token_calls

    @property
    def requests(self) -> int:
        return self.state.requests

    @property
    def throttled(self) -> int:
        return self.state.throttled

    @property
    def request_log(self) -> list[dict[str, Any]]:
        return self.state.request_log
