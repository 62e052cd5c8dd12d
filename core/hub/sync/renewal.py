"""A token renewal that outlives the worker process that started it.

Bling rotates refresh tokens on every use and accepts no spent one again: a worker killed while its token call is
in flight loses the new pair, and only a person re-authorizing brings the connection back. So, for platforms with
strict rotation, :func:`hub.sync.loading.ensure_auth` records the attempt and then hands the call to
``python -m hub.sync.renewal`` in a session of its own (a SIGKILL of the worker, or of its process group, does not
reach it). This process rebuilds the runtime from the settings in its environment (``HUB_DATABASE_URL``,
``HUB_HOME``, ``HUB_SECRET_KEY``, ``HUB_REDIS_URL``: never a secret on the command line), checks the recorded
attempt is still the one it was started for, makes the call and stores what it tells exactly as the in-process
path does (the new pair, or the refusal and the pause), reports on stdout and exits. Its log lines go to the
worker's stderr, the worker's log.

It is bounded: it sends nothing once too little of the attempt's lease is left for a token timeout, and exits
at the lease's end plus :data:`STORE_GRACE` whatever it is doing. When it fails, the attempt stays recorded
and the next renewal decides as for any lost answer.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hub import errors
from hub.errors import AuthRevoked, HubError, QuotaExhausted, RateLimited, Retriable
from hub.store.engine import utcnow
from hub.store.schema import Connection
from hub.sync.loading import Runtime, _Attempt, _call, auth_context, credentials_of, grant_digest

log = logging.getLogger("hub.renewal")

STORE_GRACE = 10.0
"""Seconds past the lease a renewal process may still spend storing an answer before it exits regardless."""
WAIT_GRACE = 5.0
"""Seconds past that the worker waits for it (interpreter start included) before killing it."""
EXIT_DEADLINE = 3
"""The exit code of a renewal process stopped by its own deadline."""


@dataclass
class Ended:
    """What the worker learnt from a renewal process."""

    returncode: int | None
    sent: bool
    """It said it was about to send the token call: the grant may be spent."""
    report: dict[str, Any] | None
    """Its last word (``outcome``: stored, revoked, error, lost, unsent, superseded), None if it died first."""


def child_env(rt: Runtime) -> dict[str, str]:
    """The environment of a renewal process: this one's, with the store, home, key and broker of ``rt``."""
    settings = rt.settings
    assert settings is not None, "a detached renewal needs the runtime's settings"
    env = dict(os.environ, HUB_DATABASE_URL=rt.store.engine.url.render_as_string(hide_password=False),
               HUB_HOME=str(settings.home))
    for name, value in (("HUB_SECRET_KEY", settings.secret_key), ("HUB_REDIS_URL", settings.redis_url)):
        if value:
            env[name] = value
        else:
            env.pop(name, None)
    return env


def run_detached(rt: Runtime, connection_id: int, attempt: _Attempt) -> Ended:
    """Start the renewal process for ``attempt`` and wait for it, bounded by the attempt's lease."""
    elapsed = 0.0 if attempt.resend else (utcnow() - attempt.at).total_seconds()
    lease_end = time.time() + attempt.lease_seconds - elapsed
    timeout = float(attempt.ctx.options.get("timeout_seconds") or 0)
    command = [sys.executable, "-m", "hub.sync.renewal", str(connection_id), "--attempt-at", attempt.at.isoformat(),
               "--grant-digest", attempt.digest or "", "--timeout", repr(timeout), "--lease-end", repr(lease_end)]
    if attempt.resend:
        command.append("--resend")
    try:
        proc = subprocess.Popen(command, env=child_env(rt), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                start_new_session=True)
    except OSError as exc:
        return Ended(None, False, {"outcome": "unsent", "message": f"the renewal process could not start: {exc}"})
    wait = max(0.0, lease_end - time.time()) + STORE_GRACE + WAIT_GRACE
    try:
        out, _ = proc.communicate(timeout=wait)
    except subprocess.TimeoutExpired:
        log.warning("renewal process %s for connection %s outlived its deadline: stopped", proc.pid, connection_id)
        proc.kill()
        out, _ = proc.communicate()
    sent, report = False, None
    for line in out.decode(errors="replace").splitlines():
        try:
            said = json.loads(line)
        except ValueError:
            continue
        if isinstance(said, dict):
            sent = sent or said.get("event") == "sending"
            report = said if "outcome" in said else report
    return Ended(proc.returncode, sent, report)


def error_fields(exc: HubError) -> dict[str, Any]:
    fields: dict[str, Any] = {"kind": type(exc).__name__, "message": exc.message, "fix": exc.fix}
    if isinstance(exc, QuotaExhausted):
        fields["until"] = exc.until.isoformat()
    elif isinstance(exc, RateLimited):
        fields["retry_after"] = exc.retry_after
    return fields


def error_from(report: dict[str, Any]) -> HubError:
    """The error a renewal process reported, as the in-process path would have raised it."""
    kind = getattr(errors, str(report.get("kind")), None)
    message, fix = str(report.get("message", "the renewal failed")), report.get("fix")
    if not (isinstance(kind, type) and issubclass(kind, HubError)):
        return Retriable(message, fix=fix)
    if issubclass(kind, QuotaExhausted):
        return kind(message, until=datetime.fromisoformat(report["until"]), fix=fix)
    if issubclass(kind, RateLimited):
        return kind(message, retry_after=float(report.get("retry_after", 0)), fix=fix)
    return kind(message, fix=fix)


# --- the renewal process -----------------------------------------------------------------------------------


def _say(event: dict[str, Any]) -> None:
    """One line to the worker; a worker that is gone (a broken pipe) changes nothing here."""
    try:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass


def renew(rt: Runtime, connection_id: int, at: datetime, digest: str | None, timeout: float, lease_end: float,
          resend: bool) -> dict[str, Any]:
    """Make the token call of the recorded attempt (``at``, ``digest``) and store what it tells; the report."""
    with rt.store.begin() as s:
        conn = s.get_one(Connection, connection_id, with_for_update=True)
        where = f"{conn.platform} connection {conn.tenant_id}/{conn.name}"
        creds = credentials_of(rt.vault, conn)
        if conn.auth_attempt_at != at or conn.auth_attempt_token != digest or grant_digest(creds) != digest:
            log.info("%s: the attempt of %s UTC is no longer the recorded one; nothing sent", where, f"{at:%H:%M:%S}")
            return {"outcome": "superseded"}
        if time.time() + timeout > lease_end:
            conn.auth_attempt_at = conn.auth_attempt_token = conn.auth_attempt_sent_at = None
            message = (f"{where}: the renewal process started too late to send the token call within the "
                       f"attempt's lease (the machine may be overloaded)")
            log.warning("%s", message)
            return {"outcome": "unsent", "message": message}
        ctx = auth_context(rt, conn, creds, timeout)
        conn.auth_attempt_sent_at = utcnow()  # committed before the call: from here on the grant may be spent
    log.info("%s: renewing the token (attempt of %s UTC)", where, f"{at:%H:%M:%S}")
    _say({"event": "sending"})
    try:
        result = _call(rt, connection_id, _Attempt(at, digest, resend, ctx))
    except AuthRevoked as exc:
        log.warning("%s: %s (fix: %s)", where, exc.message, exc.fix)
        return {"outcome": "revoked", **error_fields(exc)}
    except HubError as exc:
        log.warning("%s: %s (fix: %s)", where, exc.message, exc.fix)
        return {"outcome": "error", **error_fields(exc)}
    if isinstance(result, dict):
        log.info("%s: new token pair stored", where)
        return {"outcome": "stored"}
    log.warning("%s: the answer was lost: %s", where, result.message)
    return {"outcome": "lost", **error_fields(result)}


def _stop_at(deadline: float) -> None:
    def stop() -> None:
        log.error("renewal process %s stopped by its deadline", os.getpid())
        logging.shutdown()
        os._exit(EXIT_DEADLINE)

    timer = threading.Timer(max(0.0, deadline - time.time()), stop)
    timer.daemon = True
    timer.start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub.sync.renewal", description=__doc__.splitlines()[0])
    parser.add_argument("connection_id", type=int)
    parser.add_argument("--attempt-at", required=True, type=datetime.fromisoformat)
    parser.add_argument("--grant-digest", default="")
    parser.add_argument("--timeout", required=True, type=float, help="the token calls' client timeout (s)")
    parser.add_argument("--lease-end", required=True, type=float, help="when the attempt's lease ends (epoch s)")
    parser.add_argument("--resend", action="store_true")
    args = parser.parse_args(argv)
    _stop_at(args.lease_end + STORE_GRACE)
    logging.raiseExceptions = False  # the worker's log may be gone (a closed pipe): log what can be logged
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format=f"hub renewal[{os.getpid()}] %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the API log has each request; the worker's log, why
    from hub.app import build_runtime

    try:
        rt = build_runtime()
        report = renew(rt, args.connection_id, args.attempt_at, args.grant_digest or None, args.timeout,
                       args.lease_end, args.resend)
    except Exception:
        log.exception("renewal of connection %s failed", args.connection_id)
        return 1
    _say(report)
    return 0


if __name__ == "__main__":
    code = main()
    logging.shutdown()
    os._exit(code)  # no flush of a stdout whose reader (the worker) may be gone

