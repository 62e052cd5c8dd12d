"""``hub run``'s log lines on stderr: one per operation (tenant, route, operation, outcome, duration), plain text
or JSON lines with ``HUB_LOG_FORMAT=json`` (for a log shipper)."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

FIELDS = ("tenant", "route", "operation", "entity", "record", "outcome", "duration_ms", "error")
"""The ``extra`` keys an operation's log record carries; JSON lines hold them as keys."""


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                                "level": record.levelname.lower(), "logger": record.name,
                                "message": record.getMessage()}
        for key in FIELDS:
            if key in record.__dict__:
                line[key] = record.__dict__[key]
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def setup_logging(fmt: str | None = None, stream: Any = None) -> logging.Handler:
    """Log INFO and above of the hub (WARNING for libraries) to stderr, as text or JSON lines."""
    fmt = (fmt or os.environ.get("HUB_LOG_FORMAT") or "text").lower()
    if fmt not in ("text", "json"):
        raise ValueError(f"HUB_LOG_FORMAT={fmt!r}: use text or json")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_hub", False)]:
        root.removeHandler(old)
    handler._hub = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("hub").setLevel(logging.INFO)
    return handler
