"""Everything one emulated Bling account holds, in plain dicts behind one lock.

Records are stored in the shape the API shows them (minus computed parts such as stock totals), and the
bookkeeping Bling keeps out of the DTOs (``dataInclusao``, ``dataAlteracao``, parent links, what an order has
already posted) sits beside them in small meta objects. Ids come from one counter whose base depends on the
account seed, so two sandboxes never share ids.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hub.sandbox import Counters
from hub.sandbox.oauth import TokenStore

from .common import Clock, money

SITUACOES: tuple[tuple[str, int, str], ...] = (
    ("Em aberto", 0, "#E9DC40"), ("Atendido", 1, "#3FB57A"), ("Cancelado", 2, "#EB5757"),
    ("Em andamento", 3, "#4F8FF7"), ("Venda Agenciada", 4, "#9B51E0"), ("Em digitação", 10, "#BDBDBD"),
    ("Verificado", 11, "#27AE60"),
)
"""Sales situações every account starts with: (nome, valor, cor). Ids are per account."""

ACOES: tuple[tuple[int, str, str], ...] = (
    (3, "lancarEstoque", "Lançar estoque"), (4, "lancarContas", "Lançar contas"),
    (6, "estornarEstoque", "Estornar estoque"), (7, "estornarContas", "Estornar contas"),
)
"""Actions a transition can carry: (id, nome, descricao), as ``GET /situacoes/modulos/{id}/acoes`` lists them."""


@dataclass
class Meta:
    created: str
    changed: str


@dataclass
class ProductMeta(Meta):
    parent: int | None = None
    variation: dict[str, Any] | None = None
    children: list[int] = field(default_factory=list)
    cost: float = 0.0


@dataclass
class SaleMeta(Meta):
    stock_deposit: int | None = None
    accounts_posted: bool = False
    notes: list[int] = field(default_factory=list)


@dataclass
class NoteMeta:
    order: int | None
    sent_at: float | None = None
    outcome: int = 5
    """SEFAZ's verdict once the note is processed: 5 Autorizada, 9 Denegada or 11 Bloqueada."""


class State:
    """The account's data plus the gate's bookkeeping (tokens, IP blocks, token faults, counters)."""

    def __init__(self, seed: int, clock: Clock, lock: threading.Lock | None = None,
                 counters: Counters | None = None) -> None:
        self.lock = lock or threading.Lock()
        self.clock = clock
        self.counters = counters or Counters()
        self.seed = seed
        self.rng = random.Random(seed)
        self._next_id = 10_000_000_000 + seed * 100_000_000 + self.rng.randrange(1, 10_000) * 1000
        self.version = 0
        self.list_cache: dict[tuple[Any, ...], list[int]] = {}
        self.index_cache: dict[str, Any] = {}
        """Indexes over the records (e.g. products by change date), rebuilt after the next change."""
        self.last_page: dict[tuple[Any, ...], bytes] = {}
        digest = hashlib.sha256(f"bling-sandbox-{seed}".encode()).hexdigest()
        self.company_id = digest[:32]
        self.client_id = digest[32:72]
        self.client_secret = hashlib.sha256(f"secret-{seed}".encode()).hexdigest()[:60]
        self.company_cnpj = ""
        self.editar_numero_pedido = False
        self.redirect_uri = "http://127.0.0.1/bling/callback"
        self.nfe_delay_seconds = 0.5
        self.nfe_queue_seconds = 0.0
        self.on_note_sent: Callable[[int], None] | None = None
        """Called (lock held) when a note goes to SEFAZ: the box fires ``invoice.updated`` once SEFAZ answers."""
        """How long a sent note stays at situação 1 (Pendente) in Bling's queue before SEFAZ takes it."""
        self.nfe_outcomes: list[int] = []
        """Verdicts for the next notes sent (9 Denegada, 11 Bloqueada...); empty means Autorizada."""
        # catalog
        self.products: dict[int, dict[str, Any]] = {}
        self.pmeta: dict[int, ProductMeta] = {}
        self.by_code: dict[str, list[int]] = {}
        self.categories: dict[int, dict[str, Any]] = {}
        self.deposits: dict[int, dict[str, Any]] = {}
        self.default_deposit = 0
        self.balances: dict[int, dict[int, float]] = {}
        # parties
        self.contacts: dict[int, dict[str, Any]] = {}
        self.cmeta: dict[int, Meta] = {}
        self.final_consumer = 0
        self.sellers: dict[int, dict[str, Any]] = {}
        self.smeta: dict[int, Meta] = {}
        self.payment_methods: dict[int, dict[str, Any]] = {}
        # sales and invoices
        self.sales: dict[int, dict[str, Any]] = {}
        self.ometa: dict[int, SaleMeta] = {}
        self.next_numero = 1
        self.module_id = 0
        self.situacoes: dict[int, dict[str, Any]] = {}
        self.transitions: dict[int, dict[str, Any]] = {}
        self.nfes: dict[int, dict[str, Any]] = {}
        self.nmeta: dict[int, NoteMeta] = {}
        self.nfe_numero = 0
        self.stock_movements: list[dict[str, Any]] = []
        self.accounts: list[dict[str, Any]] = []
        # auth: Bling's token lifetimes; no grace window unless the box's settings give one
        self.tokens = TokenStore(clock, access_ttl=21600.0, refresh_ttl=30 * 86400.0, code_ttl=60.0)
        # gate
        self.errors: deque[float] = deque()
        self.token_window: deque[float] = deque()
        self.blocked_until = 0.0
        self.token_faults: deque[str] = deque()
        self.serial = 0

    # --- ids and change tracking ------------------------------------------------------------------------

    def new_id(self) -> int:
        self._next_id += self.rng.randrange(1, 40)
        return self._next_id

    def changed(self) -> None:
        """Something listable changed: cached filter results are stale."""
        self.version += 1
        if self.list_cache:
            self.list_cache.clear()
        if self.index_cache:
            self.index_cache.clear()

    # --- stock -----------------------------------------------------------------------------------------

    def stock_total(self, product_id: int, deposit: int | None = None) -> float:
        """Physical balance (Bling's virtual balance equals it here: no reservations); a parent with variations
        holds the sum of its variations."""
        meta = self.pmeta[product_id]
        if meta.children:
            return money(sum(self.stock_total(c, deposit) for c in meta.children))
        balances = self.balances.get(product_id)
        if not balances:
            return 0.0
        if deposit is not None:
            return balances.get(deposit, 0.0)
        return money(sum(balances.values()))

    def move_stock(self, product_id: int, deposit: int, operacao: str, quantidade: float,
                   order: int | None = None, origin: str = "api", **extra: Any) -> dict[str, Any]:
        """Post one movement to the ledger and the balance: ``E`` adds, ``S`` takes, ``B`` sets."""
        balances = self.balances.setdefault(product_id, {})
        current = balances.get(deposit, 0.0)
        if operacao == "B":
            balances[deposit] = money(quantidade)
        elif operacao == "E":
            balances[deposit] = money(current + quantidade)
        else:
            balances[deposit] = money(current - quantidade)
        movement = {"id": self.new_id(), "produto": {"id": product_id}, "deposito": {"id": deposit},
                    "operacao": operacao, "quantidade": quantidade, "pedido": {"id": order} if order else None,
                    "origem": origin, "data": self.clock.stamp(), **extra}
        self.stock_movements.append(movement)
        self.changed()
        return movement

    # --- situações -------------------------------------------------------------------------------------

    def situacao_by_name(self, name: str) -> dict[str, Any]:
        for situacao in self.situacoes.values():
            if situacao["nome"].casefold() == name.casefold():
                return situacao
        raise KeyError(f"no situação named {name!r} (have: {', '.join(s['nome'] for s in self.situacoes.values())})")

    def situacao_valor(self, situacao_id: int) -> int:
        """The base state of a situação: its own ``valor``, or the inherited one for custom situações."""
        situacao = self.situacoes[situacao_id]
        return int(situacao["valor"])
