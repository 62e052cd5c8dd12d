"""Token rotation that survives a lost answer: a token answer after the client's timeout, a connection dropped
after the platform rotated, a process killed mid-rotation, two processes renewing at once, CPlug's password grant,
and a renewal margin that scales with the token's lifetime. Real HTTP against the sandboxes, on both backends."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from hub.auth import authorize
from hub.cli import with_plugins
from hub.errors import AuthRevoked, Retriable
from hub.registry import RegisteredPlatform
from hub.sandbox import serve
from hub.settings import Settings
from hub.status import tenant_status
from hub.store.engine import utcnow
from hub.store.schema import Connection, Tenant
from hub.sync.loading import UNSENT_GRACE, Runtime, credentials_of, ensure_auth, grant_digest
from hub_bling.sandbox import BlingSandbox
from hub_cplug.sandbox import CPlugSandbox
from sqlalchemy import update

from tests.bling.conftest import FAST, TENANT, World, make_world, parents, sale

TOKEN_TIMEOUT = 0.5
"""The token calls' client timeout in these tests (60 s in production); the late faults answer after it."""
LATE = 1.0
MAPPINGS = {"payment_methods": {"dinheiro": "Dinheiro"}, "statuses": {"closed": "Atendido"}}
RENEW_ONCE = """
import sys
from hub.crypto import Vault
from hub.registry import get_registry
from hub.settings import Settings
from hub.store.engine import Store
from hub.sync.loading import Runtime, ensure_auth

home, url, conn_id, stale = sys.argv[1:5]
rt = Runtime(store=Store.from_url(url), vault=Vault(Settings(home=home, database_url=url)), registry=get_registry())
print(ensure_auth(rt, int(conn_id), stale_token=stale)["access_token"], flush=True)
"""
"""A separate process renewing a connection's token (a second `hub run`, or a worker about to be SIGKILLed)."""
DETACHED_WORKER = """
import sys
from hub.app import build_runtime
from hub.settings import Settings
from hub.sync.loading import ensure_auth

home, url, conn_id, stale = sys.argv[1:5]
rt = build_runtime(Settings(home=home, database_url=url))
assert rt.detached_renewal, "build_runtime renews strictly rotating tokens in a detached process"
print(ensure_auth(rt, int(conn_id), stale_token=stale)["access_token"], flush=True)
"""
"""A worker as `hub run` builds it (detached renewal), renewing a connection's token."""


@pytest.fixture
def bling(rt: Runtime) -> Iterator[World]:
    box = BlingSandbox(rate_per_second=FAST, nfe_delay_seconds=0.2, fault_delay=LATE)
    served = serve(box.app)
    yield make_world(rt, box, served)
    served.stop()


def tune(monkeypatch: pytest.MonkeyPatch, rt: Runtime, platform: str, **changes: Any) -> None:
    """Declare the platform as a plugin would with other token settings (e.g. a grace window)."""
    registered = rt.registry.get(platform)
    monkeypatch.setitem(rt.registry.platforms, platform,
                        RegisteredPlatform(replace(registered.platform, **changes), registered.plugin))


def grace(world: World, monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Bling with (seconds > 0) or without a grace window, declared the same way to the hub."""
    world.box.refresh_grace_seconds = seconds
    tune(monkeypatch, world.rt, "bling", token_timeout_seconds=TOKEN_TIMEOUT, refresh_reuse_seconds=seconds)
    with world.rt.store.begin() as s:  # the token timeout is the connection's when that is longer (30 s default)
        conn = s.get_one(Connection, world.bling_id)
        conn.options = {**conn.options, "timeout_seconds": TOKEN_TIMEOUT}


def setup_sales(world: World) -> list[tuple[str, str]]:
    world.box.seed("products", 3)
    world.box.seed("payment_methods", 5)
    world.route("sales", ["sales"], mappings=MAPPINGS)
    ensure_auth(world.rt, world.bling_id)
    return [(p["codigo"], "10.00") for p in parents(world.box) if not p.get("variacoes")]


def ring_up(world: World, skus: list[tuple[str, str]], first: int, n: int = 3) -> list[str]:
    numbers = [str(first + i) for i in range(n)]
    world.stage("sales", "sales", *(sale(number, skus[:1], status="closed") for number in numbers))
    return numbers


def orders(world: World, numbers: list[str]) -> dict[str, int]:
    found = {n: 0 for n in numbers}
    for order in world.box.records("sales"):
        if order.get("numeroLoja") in found:
            found[order["numeroLoja"]] += 1
    return found


def erp(world: World) -> dict[str, Any]:
    return next(c for c in tenant_status(world.rt, TENANT)["connections"] if c["name"] == "erp")


def status_output(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HUB_DATABASE_URL", settings.resolved_database_url())
    monkeypatch.setenv("HUB_HOME", str(settings.home))
    from hub.settings import get_settings

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(with_plugins(), ["status", TENANT])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    return result.output


def reauthorize_and_drain(world: World, numbers: list[str]) -> None:
    """The exact fix the pause names, then the queued sales land, each once."""
    authorize(world.rt, world.bling_id, {"authorization_code": world.box.authorize()})
    world.drain()
    assert orders(world, numbers) == dict.fromkeys(numbers, 1), "after `hub auth` every queued sale lands once"
    assert not erp(world)["paused"]


def assert_paused_for_lost_rotation(world: World, settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                    numbers: list[str], token_calls: int) -> None:
    assert world.box.token_calls == token_calls, (
        f"one token call and no silent retry loop with a spent token (got {world.box.token_calls - token_calls + 1})")
    conn = world.connection()
    assert conn.pause_kind == "auth", f"the connection waits for re-authorization, not {conn.pause_kind!r}"
    assert orders(world, numbers) == dict.fromkeys(numbers, 0)
    assert {op.state for op in world.ops(entity="sales")} == {"pending"}, "no sale is failed or dropped"
    out = status_output(settings, monkeypatch)
    assert "re-authorization needed" in out and "got no answer" in out, out
    assert "hub auth bling acme" in out, f"`hub status` names the exact fix:\n{out}"


# --- (1) and (2): the platform rotated, then its answer was lost -------------------------------------------------


LOST_ANSWERS = pytest.mark.parametrize(("fault", "first"), [("token-timeout", 7001), ("token-drop", 7301)],
                                       ids=["answer-after-timeout", "dropped-after-rotation"])
"""The answer came after the client's timeout, or the connection dropped after the platform rotated (as when the
process is killed)."""


@LOST_ANSWERS
def test_a_lost_token_answer_pauses_with_the_exact_fix_under_strict_rotation(
        bling: World, settings: Settings, monkeypatch: pytest.MonkeyPatch, fault: str, first: int):
    grace(bling, monkeypatch, 0)
    skus = setup_sales(bling)
    bling.box.expire_access_tokens()
    bling.box.inject_fault(fault)
    before = bling.box.token_calls
    numbers = ring_up(bling, skus, first)
    bling.drain()
    assert_paused_for_lost_rotation(bling, settings, monkeypatch, numbers, before + 1)
    reauthorize_and_drain(bling, numbers)


@LOST_ANSWERS
def test_a_lost_token_answer_is_recovered_within_a_grace_window(bling: World, monkeypatch: pytest.MonkeyPatch,
                                                               fault: str, first: int):
    grace(bling, monkeypatch, 60)
    skus = setup_sales(bling)
    bling.box.expire_access_tokens()
    bling.box.inject_fault(fault)
    before = bling.box.token_calls
    numbers = ring_up(bling, skus, first + 100)
    bling.drain()
    assert orders(bling, numbers) == dict.fromkeys(numbers, 1), "every sale lands once, none is lost"
    assert not erp(bling)["paused"] and bling.connection().auth_attempt_at is None
    assert bling.box.token_calls == before + 2, "the lost rotation is asked again once, with the token it sent"


def test_a_token_answer_within_the_token_timeout_is_not_lost_to_the_ordinary_timeout(
        bling: World, monkeypatch: pytest.MonkeyPatch):
    tune(monkeypatch, bling.rt, "bling", token_timeout_seconds=LATE * 4)
    with bling.rt.store.begin() as s:
        conn = s.get_one(Connection, bling.bling_id)
        conn.options = {**conn.options, "timeout_seconds": LATE / 2}
    skus = setup_sales(bling)
    bling.box.expire_access_tokens()
    bling.box.inject_fault("token-timeout")
    numbers = ring_up(bling, skus, 7201)
    bling.drain()
    assert orders(bling, numbers) == dict.fromkeys(numbers, 1)
    assert not erp(bling)["paused"], "a token answer slower than ordinary calls but within the token timeout"


def _renewer(settings: Settings, world: World, stale: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    return subprocess.Popen([sys.executable, "-c", RENEW_ONCE, str(settings.home), settings.resolved_database_url(),
                             str(world.bling_id), stale], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=Path(__file__).resolve().parents[1])


def _wait_for_token_call(world: World, before: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while world.box.token_calls == before:
        assert proc.poll() is None, f"the renewing process ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, "the renewing process never called Bling's token endpoint"
        time.sleep(0.02)


@pytest.mark.parametrize("window", [0, 60], ids=["strict", "grace"])
def test_a_process_killed_mid_rotation_then_a_restart(bling: World, settings: Settings,
                                                      monkeypatch: pytest.MonkeyPatch, window: float):
    grace(bling, monkeypatch, window)
    skus = setup_sales(bling)
    stale = credentials_of(bling.rt.vault, bling.connection())["access_token"]
    bling.box.expire_access_tokens()
    bling.box.fault_delay = 3.0
    bling.box.inject_fault("token-timeout")
    before = bling.box.token_calls
    proc = _renewer(settings, bling, stale)
    _wait_for_token_call(bling, before, proc)
    proc.send_signal(signal.SIGKILL)  # Bling rotated; its answer is still on the way
    proc.wait(10)
    assert bling.connection().auth_attempt_token is not None, "the attempt was recorded before the call"
    numbers = ring_up(bling, skus, 7501 + int(window))
    bling.drain()
    if window:
        assert orders(bling, numbers) == dict.fromkeys(numbers, 1), "the restart recovers the lost pair"
        assert not erp(bling)["paused"]
    else:
        assert_paused_for_lost_rotation(bling, settings, monkeypatch, numbers, before + 1)
        reauthorize_and_drain(bling, numbers)


# --- (3) two processes renewing at once -----------------------------------------------------------------------


def test_two_processes_renewing_at_once_never_both_spend_the_refresh_token(bling: World, settings: Settings):
    ensure_auth(bling.rt, bling.bling_id)
    stale = credentials_of(bling.rt.vault, bling.connection())["access_token"]
    bling.box.expire_access_tokens()
    bling.box.fault_delay = 1.5  # a slow token answer, well within the 60 s token timeout
    bling.box.inject_fault("token-timeout")
    before = bling.box.token_calls
    proc = _renewer(settings, bling, stale)
    _wait_for_token_call(bling, before, proc)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(
        ensure_auth(bling.rt, bling.bling_id, stale_token=stale)["access_token"])) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert bling.box.token_calls == before + 1, "one process renews; the others wait and re-read its pair"
    assert set(results) == {out.strip()} and len(results) == 3
    answer = httpx.get(f"{bling.connection().options['base_url']}/produtos",
                       headers={"Authorization": f"Bearer {out.strip()}", "enable-jwt": "1"})
    assert answer.status_code == 200, "the pair both processes use is the live one"
    assert not bling.connection().paused_until and bling.connection().auth_attempt_at is None


# --- (4) CPlug: the password grant recovers a lost rotation -----------------------------------------------------


@pytest.fixture
def cplug(rt: Runtime) -> Iterator[tuple[CPlugSandbox, str, int]]:
    """A CPlug sandbox with 2 s tokens and a tenant connected to it: (sandbox, base URL, connection id)."""
    box = CPlugSandbox(rate_per_second=None, token_ttl_seconds=2)
    served = serve(box.app)
    info = box.connection(served.base_url)
    with rt.store.begin() as s:
        s.add(Tenant(id="loja", name="Loja", created_at=utcnow()))
        s.flush()
        conn = Connection(tenant_id="loja", name="pdv", platform="cplug", options=info["options"],
                          credentials=rt.vault.encrypt(info["credentials"]), credentials_env={},
                          token_expires_at=None, paused_until=None, pause_reason=None, updated_at=utcnow())
        s.add(conn)
        s.flush()
        conn_id = conn.id
    yield box, served.base_url, conn_id
    served.stop()


def cplug_get(box: CPlugSandbox, url: str, token: str) -> int:
    return httpx.get(f"{url}/api/v3/stores", headers={"Authorization": f"Bearer {token}",
                                                      "CPlug-Company-Id": str(box.company_id)}).status_code


def test_cplug_recovers_a_lost_rotation_through_the_password_grant(rt: Runtime,
                                                                   cplug: tuple[CPlugSandbox, str, int]):
    box, url, conn_id = cplug
    first = ensure_auth(rt, conn_id)
    assert first.get("refresh_token"), "the sandbox hands out refresh tokens"
    # A worker sent the refresh token, CPlug rotated it, and the worker was killed before storing the answer.
    lost = httpx.post(f"{url}/oauth/token", json={
        "grant_type": "refresh_token", "refresh_token": first["refresh_token"], "client_id": box.client_id,
        "client_secret": box.client_secret, "scope": "*"})
    assert lost.status_code == 200
    with rt.store.begin() as s:
        s.execute(update(Connection).where(Connection.id == conn_id).values(
            auth_attempt_at=utcnow() - timedelta(minutes=10), auth_attempt_token=grant_digest(first),
            token_expires_at=utcnow() - timedelta(seconds=1)))
    renewed = ensure_auth(rt, conn_id)
    assert renewed["access_token"] != first["access_token"]
    grants = [e["grant_type"] for e in box.request_log if e.get("path") == "/oauth/token"]
    assert grants[-2:] == ["refresh_token", "password"], f"the spent refresh token, then the password: {grants}"
    with rt.store.sessions() as s:
        row = s.get_one(Connection, conn_id)
        assert row.pause_kind is None and row.auth_attempt_at is None, "recovered with no person involved"
    assert cplug_get(box, url, renewed["access_token"]) == 200


# --- (5) the renewal margin scales with the token's lifetime ------------------------------------------------------


def test_a_short_lived_token_is_renewed_a_few_times_not_on_every_call(rt: Runtime,
                                                                      cplug: tuple[CPlugSandbox, str, int]):
    """A 2 s token used for 4 s of calls (a 30 s token for 60 s, scaled down): renewing a fixed minute ahead
    renewed it on every call, which on Bling ends in an IP block at 20 token calls a minute."""
    box, url, conn_id = cplug
    statuses: list[int] = []
    end = time.monotonic() + 4
    while time.monotonic() < end:
        statuses.append(cplug_get(box, url, ensure_auth(rt, conn_id)["access_token"]))
        time.sleep(0.04)
    assert len(statuses) >= 5 and set(statuses) == {200}, "every call had a live token"
    assert 2 <= box.token_calls <= 4, f"{box.token_calls} token calls for {len(statuses)} API calls"
    with rt.store.sessions() as s:
        conn = s.get_one(Connection, conn_id)
    assert conn.token_issued_at is not None and conn.token_expires_at is not None
    assert conn.token_expires_at - conn.token_issued_at <= timedelta(seconds=2.1), "the lifetime is stored"


def test_a_paused_connection_is_not_renewed_behind_the_operators_back(bling: World, monkeypatch: pytest.MonkeyPatch):
    grace(bling, monkeypatch, 0)
    ensure_auth(bling.rt, bling.bling_id)
    bling.box.expire_access_tokens()
    bling.box.inject_fault("token-drop")
    stale = credentials_of(bling.rt.vault, bling.connection())["access_token"]
    with pytest.raises(AuthRevoked, match="got no answer") as lost:
        ensure_auth(bling.rt, bling.bling_id, stale_token=stale)
    assert "hub auth bling acme" in lost.value.fix
    calls = bling.box.token_calls
    with pytest.raises(AuthRevoked, match=r"is paused: .*got no answer") as again:
        ensure_auth(bling.rt, bling.bling_id, stale_token=stale)
    assert "hub auth bling acme" in again.value.fix
    assert bling.box.token_calls == calls, "a connection paused for re-authorization sends no more token calls"


def point_at_a_closed_port(bling: World) -> dict:
    """Point the Bling connection at a port nothing listens on (connection refused); return its real options."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{closed.getsockname()[1]}/Api/v3"
    real = bling.connection().options
    with bling.rt.store.begin() as s:
        s.get_one(Connection, bling.bling_id).options = {**real, "base_url": nowhere}
    return real


def test_a_token_call_that_never_left_is_retried_later_without_a_pause(bling: World, monkeypatch: pytest.MonkeyPatch):
    """Bling unreachable (connection refused): the refresh token was not spent, so strict rotation does not pause."""
    grace(bling, monkeypatch, 0)
    ensure_auth(bling.rt, bling.bling_id)
    stale = credentials_of(bling.rt.vault, bling.connection())["access_token"]
    bling.box.expire_access_tokens()
    real = point_at_a_closed_port(bling)
    with pytest.raises(Retriable, match="ConnectError"):
        ensure_auth(bling.rt, bling.bling_id, stale_token=stale)
    conn = bling.connection()
    assert conn.pause_kind is None and conn.auth_attempt_at is None, "an unsent token call leaves no doubt behind"
    with bling.rt.store.begin() as s:
        s.get_one(Connection, bling.bling_id).options = real
    assert ensure_auth(bling.rt, bling.bling_id, stale_token=stale)["access_token"] != stale


# --- (6) a detached renewal process outlives the worker that started it (strict rotation) ----------------------


def renewal_processes(home: Path) -> list[int]:
    """The renewal processes (``python -m hub.sync.renewal``) serving the runtime whose home is ``home``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"hub.sync.renewal" in cmdline and f"HUB_HOME={home}".encode() in environ:
            found.append(int(entry.name))
    return found


@pytest.fixture
def no_renewal_left(settings: Settings) -> Iterator[None]:
    """A failed test leaves no renewal process behind."""
    yield
    for pid in renewal_processes(settings.home):
        os.kill(pid, signal.SIGKILL)


def detached(rt: Runtime, settings: Settings) -> Runtime:
    """The test's runtime in the mode ``build_runtime`` gives `hub run`: strict rotations renew detached."""
    return replace(rt, detached_renewal=True, settings=settings)


def wait_until(what: str, predicate: Any, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"expected {what} within {seconds:g} s"
        time.sleep(0.05)


def test_a_worker_killed_mid_rotation_loses_nothing_when_the_renewal_runs_detached(
        bling: World, settings: Settings, tmp_path: Path, no_renewal_left: None):
    """The chaos bench's case: Bling rotated, its answer is late, and the worker (its whole process group) is
    SIGKILLed. The renewal process stores the new pair anyway: no pause, and the next sale lands."""
    skus = setup_sales(bling)
    old = credentials_of(bling.rt.vault, bling.connection())
    bling.box.expire_access_tokens()
    bling.box.fault_delay = 3.0
    bling.box.inject_fault("token-timeout")
    before = bling.box.token_calls
    log = tmp_path / "worker.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", DETACHED_WORKER, str(settings.home),
                                 settings.resolved_database_url(), str(bling.bling_id), old["access_token"]],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                cwd=Path(__file__).resolve().parents[1])
    _wait_for_token_call(bling, before, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # Bling rotated; its answer is still on the way
    proc.wait(10)
    wait_until("the renewal process to store Bling's late answer", lambda: bling.connection().auth_attempt_at is None)
    conn = bling.connection()
    assert conn.pause_kind is None and conn.paused_until is None, f"not paused: {conn.pause_reason}"
    stored = credentials_of(bling.rt.vault, conn)
    tokens = bling.box.state.tokens
    with bling.box.state.lock:
        live = tokens.refresh.get(stored["refresh_token"])
        assert tokens.refresh[old["refresh_token"]].used, "Bling spent the refresh token the worker sent"
        assert live is not None and not live.used, "the stored refresh token is the new one Bling issued"
    numbers = ring_up(bling, skus, 7601)
    bling.drain()
    assert orders(bling, numbers) == dict.fromkeys(numbers, 1), "a sale pushed after the kill lands once"
    assert bling.box.token_calls == before + 1, "the pair the renewal process stored is used as is"
    worker_log = log.read_text()
    assert "hub renewal[" in worker_log and "new token pair stored" in worker_log, (
        f"the renewal process's lines are in the worker's log:\n{worker_log}")


def test_a_renewal_process_killed_mid_call_leaves_the_attempt_to_decide_as_for_a_lost_answer(
        bling: World, settings: Settings, monkeypatch: pytest.MonkeyPatch, no_renewal_left: None):
    """The renewal process itself dies after sending (nothing stores Bling's answer): the recorded attempt stays,
    and the worker decides as for any lost answer under strict rotation: a pause with the exact fix, no resend."""
    tune(monkeypatch, bling.rt, "bling", refresh_reuse_seconds=0)
    skus = setup_sales(bling)
    creds = credentials_of(bling.rt.vault, bling.connection())
    rt = detached(bling.rt, settings)
    bling.box.expire_access_tokens()
    bling.box.fault_delay = 5.0
    bling.box.inject_fault("token-timeout")
    before = bling.box.token_calls
    raised: list[BaseException] = []

    def renew() -> None:
        try:
            ensure_auth(rt, bling.bling_id, stale_token=creds["access_token"])
        except BaseException as exc:
            raised.append(exc)

    worker = threading.Thread(target=renew)
    worker.start()
    wait_until("the renewal process's token call", lambda: bling.box.token_calls > before)
    [child] = renewal_processes(settings.home)
    assert os.getsid(child) == child, "the renewal process runs in a session of its own"
    cmdline = Path(f"/proc/{child}/cmdline").read_text()
    for name in ("refresh_token", "access_token", "client_secret"):
        assert creds[name] not in cmdline, f"no {name} on the renewal process's command line"
    os.kill(child, signal.SIGKILL)
    worker.join(30)
    assert not worker.is_alive(), "the worker does not hang on a dead renewal process"
    assert len(raised) == 1 and isinstance(raised[0], AuthRevoked), f"expected a pause, got {raised}"
    assert "got no answer" in raised[0].message and "renewal process ended" in raised[0].message, raised[0].message
    assert "hub auth bling acme" in raised[0].fix
    conn = bling.connection()
    assert conn.pause_kind == "auth" and conn.auth_attempt_token == grant_digest(creds), (
        "the attempt stays recorded with the pause")
    assert bling.box.token_calls == before + 1, "the spent refresh token is not sent again"
    numbers = ring_up(bling, skus, 7701)
    reauthorize_and_drain(bling, numbers)


def test_a_detached_renewal_that_never_reached_the_token_host_is_retried_without_a_pause(
        bling: World, settings: Settings, no_renewal_left: None):
    """The renewal process cannot connect to Bling: nothing was spent, so no pause; the error reaches the worker
    as it would in process, and the next renewal (host back) gets a new pair."""
    ensure_auth(bling.rt, bling.bling_id)
    rt = detached(bling.rt, settings)
    stale = credentials_of(bling.rt.vault, bling.connection())["access_token"]
    bling.box.expire_access_tokens()
    real = point_at_a_closed_port(bling)
    with pytest.raises(Retriable, match="ConnectError") as failed:
        ensure_auth(rt, bling.bling_id, stale_token=stale)
    assert "reachable" in failed.value.fix, failed.value.fix
    conn = bling.connection()
    assert conn.pause_kind is None and conn.auth_attempt_at is None, "an unsent token call leaves no doubt behind"
    with bling.rt.store.begin() as s:
        s.get_one(Connection, bling.bling_id).options = real
    renewed = ensure_auth(rt, bling.bling_id, stale_token=stale)["access_token"]
    assert renewed != stale
    assert renewed == credentials_of(bling.rt.vault, bling.connection())["access_token"], "the new pair is stored"
    assert not renewal_processes(settings.home), "each renewal process exits after its one call"


def test_a_renewal_recorded_but_never_sent_is_taken_over_not_paused(
        bling: World, settings: Settings, monkeypatch: pytest.MonkeyPatch, no_renewal_left: None):
    """The 10,000-sale chaos audit's case: a worker recorded its token attempt and was SIGKILLed before its
    renewal process started (or that process failed before sending). Bling spent nothing, so after a short grace
    (not the whole lease) the next worker renews: no pause, and the sales queued meanwhile land once."""
    tune(monkeypatch, bling.rt, "bling", refresh_reuse_seconds=0)
    skus = setup_sales(bling)
    creds = credentials_of(bling.rt.vault, bling.connection())
    bling.box.expire_access_tokens()
    recorded = utcnow() - timedelta(seconds=UNSENT_GRACE + 1)
    with bling.rt.store.begin() as s:  # the row as the killed worker committed it, before any send
        s.execute(update(Connection).where(Connection.id == bling.bling_id).values(
            auth_attempt_at=recorded, auth_attempt_token=grant_digest(creds), auth_attempt_sent_at=None))
    assert "not sent yet" in status_output(settings, monkeypatch)
    before = bling.box.token_calls
    renewed = ensure_auth(detached(bling.rt, settings), bling.bling_id, stale_token=creds["access_token"])
    assert renewed["access_token"] != creds["access_token"]
    conn = bling.connection()
    assert conn.pause_kind is None and conn.auth_attempt_at is None, f"not paused: {conn.pause_reason}"
    assert bling.box.token_calls == before + 1, "one token call, with the refresh token nobody had spent"
    numbers = ring_up(bling, skus, 7801)
    bling.drain()
    assert orders(bling, numbers) == dict.fromkeys(numbers, 1)


def test_a_renewal_marked_sent_by_its_process_is_still_decided_as_a_lost_answer(
        bling: World, settings: Settings, monkeypatch: pytest.MonkeyPatch):
    """The same row, but the renewal process marked the call sent: Bling may have rotated, so once the lease is
    over the connection pauses with the exact fix, as before (no second send of a maybe-spent token)."""
    grace(bling, monkeypatch, 0)
    skus = setup_sales(bling)
    creds = credentials_of(bling.rt.vault, bling.connection())
    bling.box.expire_access_tokens()
    long_ago = utcnow() - timedelta(hours=1)
    with bling.rt.store.begin() as s:
        s.execute(update(Connection).where(Connection.id == bling.bling_id).values(
            auth_attempt_at=long_ago, auth_attempt_token=grant_digest(creds), auth_attempt_sent_at=long_ago))
    before = bling.box.token_calls
    numbers = ring_up(bling, skus, 7901)
    bling.drain()
    assert_paused_for_lost_rotation(bling, settings, monkeypatch, numbers, before)  # nothing sent again
