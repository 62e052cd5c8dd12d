"""One error taxonomy for every connector.

Plugins raise these; the core maps each to what the runner does with the operation:

==================  =====================================================================
``Retriable``       try again with exponential backoff; counts an attempt
``RateLimited``     wait ``retry_after`` seconds; never counts an attempt (the wait is
                    stored in the database, not in the broker's delay queue)
``QuotaExhausted``  a daily (or longer) quota is spent: the whole connection pauses until
                    ``until``, visibly in ``hub status``; nothing queued is lost
``AuthExpired``     re-run ``authenticate`` (single-flight), then retry; a second one in a
                    row pauses the connection until it is re-authorized
``NotFound``        the remote record is gone: the stale binding is dropped and the write
                    is retried as a create
``InvalidRecord``   bad input: the record is quarantined with field and fix; no retry
``Fatal``           anything else that retrying cannot fix; the operation fails visibly
==================  =====================================================================

Every error carries a ``fix``: the plain-words suggestion shown by ``hub logs``.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = [
    "AuthExpired", "AuthRevoked", "BadSignature", "ConfigError", "ConnectorError", "Fatal", "HubError",
    "InvalidRecord", "LeaseLost", "NotFound", "PaginationLoop", "QuotaExhausted", "RateLimited", "Retriable",
    "SchemaOutOfDate",
]


class HubError(Exception):
    """Base class. ``fix`` tells an operator what to check or change."""

    default_fix = "See the API log (hub logs TENANT) for the request that failed."

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix or self.default_fix

    def __str__(self) -> str:
        return self.message


class ConnectorError(HubError):
    """An error raised by a connector about a remote call."""


class Retriable(ConnectorError):
    """A transient failure (5xx, timeout, connection reset): retry with backoff."""

    default_fix = "Transient failure on the platform; the hub retries by itself."


class RateLimited(ConnectorError):
    """The platform asked us to slow down. Waiting does not burn an attempt."""

    default_fix = "The platform's rate limit was reached; the hub waits and resumes by itself."

    def __init__(self, message: str, *, retry_after: float, fix: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.retry_after = max(0.0, float(retry_after))


class QuotaExhausted(RateLimited):
    """The account's quota for the period is spent: every route of the connection waits until ``until``."""

    default_fix = "The platform's daily request quota is spent; the hub resumes by itself when it renews."

    def __init__(self, message: str, *, until: datetime, fix: str | None = None) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        super().__init__(message, retry_after=(until - now).total_seconds(), fix=fix)
        self.until = until


class AuthExpired(ConnectorError):
    """The access token is no longer accepted: refresh, then retry."""

    default_fix = "Re-authorize the connection (hub auth PLATFORM TENANT) if this repeats."


class AuthRevoked(AuthExpired):
    """The refresh token itself is dead: the connection is paused until re-authorized."""

    default_fix = "Re-authorize the connection: run `hub auth PLATFORM TENANT` and follow the link."


class NotFound(ConnectorError):
    """The remote record does not exist (anymore)."""

    default_fix = "The record was deleted on the platform; the hub recreates it on the next write."


class Fatal(ConnectorError):
    """Retrying cannot help: a configuration or programming error."""

    default_fix = "Check the connection options and the route configuration."


class InvalidRecord(HubError):
    """A record the hub refuses: it is quarantined with its reason and the rest goes on."""

    default_fix = "Correct the record on the source platform; the next sync picks it up."

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        fix: str | None = None,
        record: str | None = None,
    ) -> None:
        super().__init__(message, fix=fix)
        self.field = field
        self.record = record


class LeaseLost(HubError):
    """Raised by the core before a write, never by a plugin: this worker held the operation past its lease and
    another worker took it over, so it must send nothing more (two workers creating one sale would be two orders).
    A plugin lets it through; catching it would send the write the fence stopped."""

    default_fix = "Nothing to do: another worker runs the operation. Frequent ones mean overloaded workers."


class PaginationLoop(Fatal):
    """A server returned the same page twice in a row; stop instead of looping forever."""

    default_fix = "The platform repeated a page; report it to the platform and retry the sync later."


class BadSignature(HubError):
    """A webhook whose signature does not verify: refused, never processed."""

    default_fix = "Check that the webhook is configured with this connection's client secret."


class ConfigError(HubError):
    """A route config problem, named by file, key and fix."""

    default_fix = "Correct the route config file and run `hub routes validate FILE`."


class SchemaOutOfDate(HubError):
    default_fix = "Run `hub db upgrade` before starting workers."
