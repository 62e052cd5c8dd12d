"""``/health`` (the process answers) and ``/health/ready`` (it can do its job: the store answers, the schema is at
the latest migration, and the broker answers when one is configured)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from hub.store.engine import Store
from hub.store.migrate import current_and_heads


def readiness(store: Store, redis_url: str | None) -> tuple[bool, dict[str, Any]]:
    checks: dict[str, Any] = {}
    try:
        with store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["store"] = "ok"
    except Exception as exc:  # any driver error means not ready; the reason is shown, never a traceback
        checks["store"] = f"unreachable: {type(exc).__name__}"
    if checks["store"] == "ok":
        try:
            current, heads = current_and_heads(store)
            checks["schema"] = "ok" if current == heads else (
                f"at {', '.join(sorted(current)) or 'nothing'}, expected {', '.join(sorted(heads))} (run `hub db "
                "upgrade`)")
        except Exception as exc:
            checks["schema"] = f"unknown: {type(exc).__name__}"
    else:
        checks["schema"] = "not checked"
    if redis_url:
        try:
            import redis

            client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
            try:
                client.ping()
            finally:
                client.close()
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"unreachable: {type(exc).__name__}"
    else:
        checks["broker"] = "in-process"
    ok = checks["store"] == "ok" and checks["schema"] == "ok" and checks["broker"] in ("ok", "in-process")
    return ok, checks
