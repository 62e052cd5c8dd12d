"""Plumbing every resource module shares: the error envelope, the parsed request, query parsing, local time.

Handlers run with the state lock held and render their JSON before it is released, so they may hand out the
stored dicts without copying them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING, Any, TypeVar

from hub.sandbox.oauth import WallClock
from starlette.responses import JSONResponse, Response

if TYPE_CHECKING:
    from .state import State

try:
    from zoneinfo import ZoneInfo

    LOCAL: tzinfo = ZoneInfo("America/Sao_Paulo")
except Exception:  # no tz database: Brazil has had no DST since 2019, so a fixed offset is exact today
    LOCAL = timezone(timedelta(hours=-3), "America/Sao_Paulo")

STAMP = "%Y-%m-%d %H:%M:%S"
MAX_LIMIT = 100
MAX_RANGE_DAYS = 366

Handler = Callable[["State", "Call"], Response]


class ApiError(Exception):
    """An answer in Bling's error envelope, raised anywhere below a handler."""

    def __init__(self, status: int, kind: str, message: str, description: str = "",
                 fields: list[dict[str, Any]] | None = None, **extra: Any) -> None:
        super().__init__(f"{status} {kind}: {message}")
        self.status = status
        self.body: dict[str, Any] = {"type": kind, "message": message, "description": description or message}
        if fields:
            self.body["fields"] = fields
        self.body.update(extra)

    def response(self) -> Response:
        return JSONResponse({"error": self.body}, status_code=self.status)


def not_found(what: str = "recurso") -> ApiError:
    return ApiError(404, "RESOURCE_NOT_FOUND", "Recurso não encontrado", f"O {what} informado não foi encontrado.")


def invalid(message: str, description: str, fields: list[dict[str, Any]]) -> ApiError:
    return ApiError(400, "VALIDATION_ERROR", message, description, fields)


def field(code: int, msg: str, element: str, namespace: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "msg": msg, "element": element, "namespace": namespace, **extra}


def ok(data: Any, status: int = 200) -> Response:
    return JSONResponse({"data": data}, status_code=status)


def no_content() -> Response:
    return Response(status_code=204)


@dataclass
class Call:
    """One API request, parsed once by the gate (and logged as is)."""

    method: str
    path: str
    params: dict[str, str]
    query: Query
    body: Any
    template: str = ""

    def int_param(self, name: str) -> int:
        value = self.params.get(name, "")
        if not value.lstrip("-").isdigit():
            raise not_found()
        return int(value)


class Query:
    """The query string as Bling reads it: repeated ``name[]`` for arrays, strict types, Portuguese errors."""

    def __init__(self, pairs: Sequence[tuple[str, str]], namespace: str = "") -> None:
        self.pairs = list(pairs)
        self.namespace = namespace
        self.values: dict[str, list[str]] = {}
        for name, value in self.pairs:
            self.values.setdefault(name, []).append(value)

    def key(self, *skip: str) -> tuple[tuple[str, str], ...]:
        """A hashable form of the filters (for list caches), without ``skip`` (paging)."""
        return tuple(sorted((k, v) for k, v in self.pairs if k not in skip))

    def error(self, name: str, msg: str) -> ApiError:
        return invalid("Parâmetros inválidos", "Um ou mais parâmetros da requisição são inválidos.",
                       [field(2, msg, name, self.namespace)])

    def first(self, name: str) -> str | None:
        values = self.values.get(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return self.values.get(name, [])

    def integer(self, name: str, default: int | None = None, *, minimum: int | None = None,
            maximum: int | None = None, choices: Iterable[int] | None = None) -> int | None:
        raw = self.first(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise self.error(name, f"O parâmetro {name} deve ser um número inteiro") from None
        if minimum is not None and value < minimum:
            raise self.error(name, f"O parâmetro {name} deve ser maior ou igual a {minimum}")
        if maximum is not None and value > maximum:
            raise self.error(name, f"O parâmetro {name} deve ser menor ou igual a {maximum}")
        if choices is not None and value not in set(choices):
            raise self.error(name, f"O valor do parâmetro {name} é inválido")
        return value

    def ints(self, name: str) -> list[int]:
        try:
            return [int(v) for v in self.all(name) if v != ""]
        except ValueError:
            raise self.error(name, f"O parâmetro {name} deve conter números inteiros") from None

    def choice(self, name: str, default: str, choices: Iterable[str]) -> str:
        value = self.first(name)
        if value is None or value == "":
            return default
        if value not in set(choices):
            raise self.error(name, f"O valor do parâmetro {name} é inválido")
        return value

    def page(self) -> tuple[int, int]:
        pagina = self.integer("pagina", 1, minimum=1) or 1
        limite = self.integer("limite", MAX_LIMIT, minimum=1, maximum=MAX_LIMIT) or MAX_LIMIT
        return pagina, limite

    def stamp(self, name: str, *, end: bool = False) -> str | None:
        """A ``YYYY-MM-DD HH:MM:SS`` local-time filter as text (a bare date means the day's start or end)."""
        raw = self.first(name)
        if not raw:
            return None
        for fmt in (STAMP, "%Y-%m-%d %H:%M", "%Y-%m-%d"):
            try:
                parsed = datetime.strptime(raw.strip(), fmt)
            except ValueError:
                continue
            if fmt == "%Y-%m-%d" and end:
                parsed = parsed.replace(hour=23, minute=59, second=59)
            return parsed.strftime(STAMP)
        raise self.error(name, f"O parâmetro {name} deve estar no formato AAAA-MM-DD HH:MM:SS")

    def stamp_range(self, prefix: str) -> tuple[str | None, str | None]:
        """``{prefix}Inicial``/``{prefix}Final``; a span over one year is refused, as Bling does since v306."""
        start, end = self.stamp(f"{prefix}Inicial"), self.stamp(f"{prefix}Final", end=True)
        if start and end:
            first, last = datetime.strptime(start, STAMP), datetime.strptime(end, STAMP)
            if last - first > timedelta(days=MAX_RANGE_DAYS) or _over_a_year(first, last):
                raise invalid("Intervalo de datas inválido",
                              "O intervalo entre as datas não pode ser superior a um ano.",
                              [field(3, "O período informado não pode ser superior a 1 ano", f"{prefix}Final",
                                     self.namespace)])
        return start, end


def _over_a_year(first: datetime, last: datetime) -> bool:
    try:
        return last > first.replace(year=first.year + 1)
    except ValueError:  # 29 February
        return last > first.replace(year=first.year + 1, day=28)


def in_minutes(stamp: str, start: str | None, end: str | None) -> bool:
    """Bling compares datetime filters at minute granularity: seconds are ignored on both sides."""
    minute = stamp[:16]
    return (start is None or minute >= start[:16]) and (end is None or minute <= end[:16])


T = TypeVar("T")


def page_of(rows: Sequence[T], pagina: int, limite: int) -> Sequence[T]:
    start = (pagina - 1) * limite
    return rows[start:start + limite]


@dataclass
class Clock(WallClock):
    """The sandbox's notion of now: real time plus an offset that ``advance()`` moves (token expiry, blocks, days),
    read as Bling's local time."""

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), LOCAL)

    def stamp(self) -> str:
        return self.now().strftime(STAMP)

    def today(self) -> date:
        return self.now().date()


def money(value: float) -> float:
    return round(value + 0.0, 2)
