"""``BlingSandbox``: the emulated account and the control methods tests drive it with.

Control methods run on the test's thread while uvicorn serves the app on another; both go through the state's one
lock. Webhooks are built under the lock and posted after it is released.
"""

from __future__ import annotations

import copy
import threading
from typing import Any, ClassVar

from hub.sandbox import FAULTS as COMMON_FAULTS
from hub.sandbox import SandboxBase, SandboxSettings
from hub.sandbox.documents import cnpj
from hub.sandbox.ratelimit import DailyQuota, Limits, Window

from . import catalog, nfe, oauth, orders, seed, webhooks
from .app import build_app
from .catalog import deep_merge
from .common import Clock, money
from .parties import insert_contact, seller_view
from .state import ACOES, SITUACOES, SaleMeta, State

FAULTS = (*COMMON_FAULTS, "429-day", *oauth.TOKEN_FAULTS)
"""The common faults, Bling's daily-quota 429, and the token call's faults (:data:`oauth.TOKEN_FAULTS`)."""
RANDOM_FAULTS = ("500", "timeout", "slow", "429", "429-day", "401", "repeat_page", "timeout-after-write")
SEEDERS = {"products": seed.products, "categories": seed.categories, "customers": seed.customers,
           "sellers": seed.sellers, "payment_methods": seed.payment_methods, "stock": seed.stock,
           "sales": seed.sales}
RECORD_STREAMS = (*SEEDERS, "nfe", "stock_movements", "accounts", "deposits", "situacoes")


class BlingSettings(SandboxSettings):
    """Bling's published limits: 3 requests a second and 120,000 a day per account; 6 h access tokens."""

    rate_per_second: float | None = 3
    daily_limit: int | None = 120000
    token_ttl_seconds: float = 21600
    refresh_ttl_seconds: float = 30 * 86400
    code_ttl_seconds: float = 60
    refresh_grace_seconds: float = 0.0
    """How long a spent refresh token still returns the pair it was exchanged for (0: never)."""
    nfe_delay_seconds: float = 0.5
    account_seed: int = 1
    """Ids, client credentials and company differ per seed: two sandboxes never share ids."""
    deposits: tuple[str, ...] = ("Geral", "Loja Centro", "Loja Shopping")
    """The account's depósitos, the first one the default (an account with Bling's default alone: ``("Geral",)``)."""

    limit_fields: ClassVar[tuple[str, ...]] = ("rate_per_second", "daily_limit")


class BlingSandbox(SandboxBase):
    """One Bling account behind ``/Api/v3``: OAuth with rotating refresh tokens, Bling's rate limits and IP
    blocks, the spec's list defaults, sales orders with stock/accounts actions, NF-e and signed webhooks."""

    Settings = BlingSettings
    streams = (*SEEDERS,)
    fault_kinds = FAULTS
    random_fault_kinds = RANDOM_FAULTS
    settings: BlingSettings

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        s = self.settings
        self.clock = Clock()
        self.state = st = State(s.account_seed, self.clock, self.lock, self.counters)
        st.tokens.access_ttl, st.tokens.refresh_ttl = s.token_ttl_seconds, s.refresh_ttl_seconds
        st.tokens.code_ttl, st.tokens.grace = s.code_ttl_seconds, s.refresh_grace_seconds
        st.nfe_delay_seconds = s.nfe_delay_seconds
        self._second = Window(s.rate_per_second, name="second")
        self._day = DailyQuota(s.daily_limit, lambda: self.clock.today().isoformat(), name="day")
        self.limits = Limits(lambda _key: (self._second, self._day))
        self.webhook_url: str | None = None
        self.webhook_log: list[dict[str, Any]] = []
        st.on_note_sent = self._note_sent
        self._bootstrap()
        self.app = build_app(self)

    def _bootstrap(self) -> None:
        """What every account has from day one: depósitos, Consumidor Final, the sales situações."""
        st = self.state
        st.module_id = 98_000 + st.seed * 17
        st.company_cnpj = seed.format_cnpj(cnpj(f"{10_000_000 + st.seed * 7919 % 89_999_999:08d}0001"))
        for name, default in ((n, i == 0) for i, n in enumerate(self.settings.deposits)):
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
            refresh = st.tokens.refresh_token()
        rate = self.rate_per_second if self.rate_per_second is not None else 1000
        return {"options": {"base_url": base_url.rstrip("/") + "/Api/v3", "rate_per_second": rate},
                "credentials": {"client_id": st.client_id, "client_secret": st.client_secret,
                                "refresh_token": refresh}}

    def seed(self, stream: str, count: int) -> list[str]:
        if stream not in SEEDERS:
            raise ValueError(f"bling sandbox cannot seed {stream!r} (streams: {', '.join(SEEDERS)})")
        with self.state.lock:
            return SEEDERS[stream](self.state, count)

    def seed_invalid(self, stream: str) -> str:
        """A product with a wrong GTIN check digit, a contato with a wrong CPF check digit, or an order with an item
        typed without a product (no código): Bling accepts all three."""
        with self.state.lock:
            if stream == "products":
                return seed.products(self.state, 1, invalid_gtin=True)[0]
            if stream == "customers":
                return seed.customers(self.state, 1, invalid_document=True)[0]
            if stream == "sales":
                (sid,) = seed.sales(self.state, 1)
                sale = self.state.sales[int(sid)]
                sale["itens"][0].update({"codigo": "", "produto": {"id": 0}, "descricao": "Item avulso"})
                self.state.changed()
                return sid
        raise ValueError(f"seed_invalid does not support {stream!r} (products, customers, sales)")

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

    def age(self, stream: str, seconds: float) -> None:
        """Move the ``dataAlteracao`` of every record of ``stream`` ``seconds`` into the past (the conformance kit's
        cursor check)."""
        from datetime import datetime, timedelta

        from .common import STAMP

        st = self.state
        metas: dict[str, dict[int, Any]] = {"products": st.pmeta, "customers": st.cmeta, "sellers": st.smeta,
                                            "sales": st.ometa}
        if stream not in metas:
            raise ValueError(f"bling sandbox cannot age {stream!r} (streams: {', '.join(metas)})")
        with st.lock:
            for meta in metas[stream].values():
                meta.changed = (datetime.strptime(meta.changed, STAMP) - timedelta(seconds=seconds)).strftime(STAMP)
            st.changed()

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
        """What a full pull brings: for products, the active ones, each grid once (its variations inside); for
        customers, the active ones."""
        rows = self.records(stream)
        if stream == "products":
            return [p for p in rows if p["situacao"] == "A" and not p.get("variacao")]
        if stream == "customers":
            return [c for c in rows if c["situacao"] == "A"]
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

    def inject_fault(self, kind: str, times: int = 1, *, method: str | None = None) -> None:
        """Queue ``kind`` for the next requests; ``timeout-after-write`` waits for the next POST, the token faults
        for the next ``/oauth/token`` calls."""
        with self.lock:
            self.faults.check(kind)
            if kind in oauth.TOKEN_FAULTS:
                self.state.token_faults.extend([kind] * times)
            else:
                write = "POST" if kind == "timeout-after-write" else None
                self.faults.inject(kind, times, method=method or write)

    def limits_changed(self) -> None:
        s = self.settings
        self._second.limit, self._day.limit = s.rate_per_second, s.daily_limit
        self._second.reset()
        self.state.tokens.grace = s.refresh_grace_seconds
        self.state.nfe_delay_seconds = s.nfe_delay_seconds  # every setting, not only the limits (update_settings)

    # --- OAuth and limits -------------------------------------------------------------------------------

    def authorize(self, state: str = "") -> str:
        """A fresh single-use authorization code, as the merchant's consent would produce (``state`` is only
        echoed by the HTTP flow)."""
        with self.state.lock:
            return oauth.new_code(self.state)

    def revoke_all(self) -> None:
        """Every access and refresh token dies (the merchant uninstalled the app): only a new authorization helps."""
        with self.state.lock:
            self.state.tokens.revoke_all()

    def expire_access_tokens(self) -> None:
        with self.state.lock:
            self.state.tokens.expire_access()

    def set_rate(self, per_second: float | None) -> None:
        self.update_settings(rate_per_second=per_second)

    def set_daily_limit(self, limit: int | None) -> None:
        self.update_settings(daily_limit=limit)

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock (token and code expiry, IP blocks, the daily count, NF-e authorization)."""
        with self.state.lock:
            self.clock.advance(seconds)
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

    def set_order_status(self, order_id: str | int, name: str) -> None:
        """Move an order to the situação ``name`` as a person would in Bling (the account's transition manager runs
        its actions; ``dataAlteracao`` moves), and fire ``order.updated`` when ``webhook_url`` is set."""
        st = self.state
        with st.lock:
            sid = int(order_id)
            orders.change_situacao(st, sid, int(st.situacao_by_name(name)["id"]))
            data = webhooks.order_data(st, sid)
        if self.webhook_url:
            self.send_webhook("order.updated", data)

    def demo_stock(self, count: int = 3) -> str:
        """Goods arrive: one unit of each of the first ``count`` active stock-holding products enters the default
        depósito (as :meth:`touch` does); returns their códigos."""
        st = self.state
        with st.lock:
            chosen = [pid for pid, meta in sorted(st.pmeta.items())
                      if not meta.children and st.products[pid]["situacao"] == "A"][:count]
            codes = [str(st.products[pid]["codigo"]) for pid in chosen]
        for pid in chosen:
            self.touch("stock", str(pid))
        return ", ".join(codes)

    def demo_status(self, name: str) -> str:
        """A person moves the oldest order that came from a store (``numeroLoja``) and is not yet in ``name`` to the
        situação ``name`` (what ``hub demo`` can ask for without knowing ids); returns which order moved."""
        st = self.state
        with st.lock:
            target = int(st.situacao_by_name(name)["id"])
            order = next((o for o in sorted(st.sales.values(), key=lambda o: o["id"])
                          if o.get("numeroLoja") and o["situacao"]["id"] != target), None)
        if order is None:
            raise ValueError(f"no order from a store that is not already {name!r}: sync the orders first")
        self.set_order_status(order["id"], name)
        return f"order {order['numero']} (store order {order['numeroLoja']})"

    def demo_clear_ncm(self) -> str:
        """A person erases the NCM of the newest active simple product (what ``hub demo`` can ask for without
        knowing ids: the "atributos fiscais" error of the marketplaces' manuals); returns its código."""
        st = self.state
        with st.lock:
            pid = next(pid for pid, meta in sorted(st.pmeta.items(), reverse=True)
                       if not meta.children and st.products[pid]["situacao"] == "A"
                       and not st.products[pid].get("variacao"))
            code = str(st.products[pid]["codigo"])
        self.edit("products", pid, {"tributacao": {"ncm": ""}})
        return code

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

    def subscribe(self, url: str | None) -> None:
        """Deliver the account's webhooks to ``url`` from now on (None: stop), as the app's settings in Bling's
        developer portal do."""
        self.webhook_url = url

    def _note_sent(self, nid: int) -> None:
        """A note went to SEFAZ: once SEFAZ answers, Bling tells its webhook (``invoice.updated``)."""
        if not self.webhook_url:
            return
        st = self.state
        timer = threading.Timer(st.nfe_queue_seconds + st.nfe_delay_seconds + 0.05, self._note_settled, (nid,))
        timer.daemon = True
        timer.start()

    def _note_settled(self, nid: int) -> None:
        with self.state.lock:
            data = nfe.event_data(nfe.settle(self.state, nid))
        if self.webhook_url:
            self.send_webhook("invoice.updated", data)

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
    def refresh_grace_seconds(self) -> float:
        """How long a spent refresh token still returns the pair it was exchanged for (0, the default: never)."""
        return self.settings.refresh_grace_seconds

    @refresh_grace_seconds.setter
    def refresh_grace_seconds(self, value: float) -> None:
        self.update_settings(refresh_grace_seconds=value)

    @property
    def rate_per_second(self) -> float | None:
        return self.settings.rate_per_second

    @property
    def daily_limit(self) -> int | None:
        return self.settings.daily_limit
