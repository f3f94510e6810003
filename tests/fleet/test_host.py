"""The host side of fleet breakers, without a fleet backend: the control
segment (lease, registry, status), connect() and the constructor options.

Every test gets its own segment directory: the control segment is one per
directory, as it is one per host.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

import qbreaker
from qbreaker import fleet
from qbreaker._errors import SharedStateError
from qbreaker._impl.methods import FleetOptions
from qbreaker.fleet import control as control_mod
from qbreaker.fleet.control import ControlSegment

from .host_helpers import NoBackend, host_dir

__all__ = ("host_dir",)  # a fixture

needs_c = pytest.mark.c_extension


def connect_off(**settings: object) -> None:
    fleet.connect(namespace="tests", agent="off", backend=NoBackend(), **settings)  # type: ignore[arg-type]


# -- the control segment ----------------------------------------------------------


def test_control_segment_is_a_private_file_in_the_segment_directory(
    host_dir: str,
) -> None:
    control = ControlSegment()
    try:
        info = os.stat(control.path)
        assert os.path.dirname(control.path) == host_dir
        assert stat.S_IMODE(info.st_mode) == 0o600
        assert info.st_size == control_mod.SIZE
        # Its pages are reserved: a full tmpfs is an error now, never a SIGBUS.
        assert info.st_blocks * 512 >= control_mod.SIZE
    finally:
        control.close()
    # Opened again: the same file, its contents kept.
    again = ControlSegment()
    again.register("kept", FleetOptions(2, None, 10_000))
    again.close()
    assert [n for n, _ in ControlSegment().registered()] == ["kept"]


def test_control_segment_refuses_a_symlink_and_a_loose_mode(host_dir: str) -> None:
    path = control_mod.path()
    target = Path(host_dir) / "elsewhere"
    target.write_bytes(b"")
    os.symlink(target, path)
    with pytest.raises(SharedStateError, match="symbolic link"):
        ControlSegment()
    os.unlink(path)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    os.chmod(path, 0o644)
    with pytest.raises(SharedStateError, match="0600"):
        ControlSegment()
    os.chmod(path, 0o600)
    with open(path, "wb") as f:
        f.write(b"x" * 100)
    with pytest.raises(SharedStateError, match="not a fleet control segment"):
        ControlSegment()


def test_lease_is_held_by_one_process_and_renewed(host_dir: str) -> None:
    control = ControlSegment()
    assert control.try_lease(7)
    assert control.try_lease(7)  # renewed by its holder
    lease = control.lease()
    assert (lease.pid, lease.nonce) == (os.getpid(), 7)
    assert lease.namespace == control_mod.pid_namespace()
    assert lease.expiry_ms > control_mod.monotonic_ms()
    # Another process of the same pid (another nonce): the holder is alive.
    assert not control.try_lease(9)
    control.release_lease(7)
    assert control.lease().pid == 0
    assert control.try_lease(9)


def test_lease_of_a_dead_owner_is_taken_over_at_once(host_dir: str) -> None:
    control = ControlSegment()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        os._exit(0 if ControlSegment().try_lease(5) else 1)
    _, code = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(code) == 0
    lease = control.lease()
    assert lease.pid == child and lease.expiry_ms > control_mod.monotonic_ms()
    assert not control.agent_alive()
    assert control.try_lease(6)  # its owner is dead: no wait for the expiry


def test_lease_that_lapsed_is_taken_over_from_a_live_owner(host_dir: str) -> None:
    control = ControlSegment()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child: takes a lease that lapsed
        past = control_mod.monotonic_ms() - 2 * control_mod.LEASE_MS
        ControlSegment().try_lease(5, now_ms=past)
        os.write(write, b"x")
        time.sleep(30)
        os._exit(0)
    try:
        assert os.read(read, 1) == b"x"
        assert control.lease().pid == child
        assert not control.agent_alive()  # alive, but its lease lapsed
        assert control.try_lease(6)
    finally:
        os.kill(child, 9)
        os.waitpid(child, 0)


def test_forked_child_is_not_the_agent_until_elected(host_dir: str) -> None:
    control = ControlSegment()
    assert control.try_lease(11)
    child = os.fork()
    if child == 0:  # pragma: no cover - the child: its parent holds the lease
        mine = ControlSegment()
        # With the parent's nonce it is still another process: its pid differs.
        ok = not mine.try_lease(11) and not mine.try_lease(12)
        os._exit(0 if ok else 1)
    _, code = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(code) == 0
    assert control.lease().pid == os.getpid()


def test_registry_keeps_the_first_options_and_refuses_others(host_dir: str) -> None:
    control = ControlSegment()
    first = FleetOptions(2, None, 10_000)
    control.register("payments", first)
    control.register("payments", first)  # again: no change
    control.register("search", FleetOptions(1, 50, 5_000))
    assert control.registered() == [
        ("payments", first),
        ("search", FleetOptions(1, 50, 5_000)),
    ]
    with pytest.raises(ValueError, match="fleet_quorum=2.*fleet_quorum=3"):
        control.register("payments", FleetOptions(3, None, 10_000))


def test_status_round_trip_and_no_status(host_dir: str) -> None:
    control = ControlSegment()
    assert control.read_status() == {}
    control.write_status({"connected": True, "breakers": {"a": {"state": "open"}}})
    assert control.read_status()["breakers"]["a"]["state"] == "open"
    control.write_status({"connected": False})
    assert control.read_status() == {"connected": False}


# -- connect() ---------------------------------------------------------------------


@needs_c
@pytest.mark.parametrize(
    ("settings", "error", "match"),
    [
        ({"url": "http://x", "namespace": "n"}, ValueError, "redis://"),
        ({"url": None, "namespace": "n"}, ValueError, "QBREAKER_FLEET_URL"),
        ({"url": "redis://127.0.0.1:1"}, ValueError, "namespace is required"),
        ({"url": "redis://127.0.0.1:1", "namespace": "a b"}, ValueError, "namespace"),
        (
            {"url": "redis://127.0.0.1:1", "namespace": "n", "agent": "always"},
            ValueError,
            "agent must be 'auto'",
        ),
        (
            {"url": "redis://127.0.0.1:1", "namespace": "n", "host_id": "h" * 201},
            ValueError,
            "host_id must be 1 to 200 bytes",
        ),
        (
            {"url": "redis://127.0.0.1:1", "namespace": "n", "timeout": 0},
            ValueError,
            "timeout",
        ),
        (
            {"url": "redis://127.0.0.1:1", "namespace": "n", "sync_interval": "1"},
            TypeError,
            "sync_interval",
        ),
        (
            {
                "url": "redis://127.0.0.1:1",
                "namespace": "n",
                "password_file": "/nonexistent/pw",
            },
            ValueError,
            "password_file '/nonexistent/pw' cannot be read",
        ),
    ],
)
def test_connect_refuses_bad_settings(
    host_dir: str, settings: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        fleet.connect(**settings)  # type: ignore[arg-type]
    # Nothing was half-connected.
    with pytest.raises(ValueError, match="connect"):
        qbreaker.CircuitBreaker(shared="x", fleet=True)


def test_connect_never_shows_the_password(host_dir: str, tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret-pass\n")
    with pytest.raises(ValueError) as caught:
        fleet.connect("http://user:s3cret-pass@h", namespace="n")
    assert "s3cret-pass" not in str(caught.value)
    fleet.connect(
        "redis://127.0.0.1:1", namespace="n", agent="off", password_file=str(secret)
    )
    assert fleet._settings is not None and fleet._settings.password == "s3cret-pass"
    assert "s3cret-pass" not in repr(fleet.status())


def test_connect_reads_the_environment(
    host_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QBREAKER_FLEET_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("QBREAKER_FLEET_NAMESPACE", "env-ns")
    monkeypatch.setenv("QBREAKER_FLEET_AGENT", "off")
    monkeypatch.setenv("QBREAKER_FLEET_HOST_ID", "host-7")
    fleet.connect()
    settings = fleet._settings
    assert settings is not None
    assert (settings.url, settings.namespace, settings.agent, settings.host_id) == (
        "redis://127.0.0.1:1/0",
        "env-ns",
        "off",
        "host-7",
    )
    fleet.connect()  # the same settings again: nothing to do
    with pytest.raises(ValueError, match="disconnect"):
        fleet.connect(namespace="other")


@needs_c
def test_connect_with_redis_unreachable_does_not_raise_and_says_degraded(
    host_dir: str,
) -> None:
    pytest.importorskip("redis", reason="the Redis client (the fleet extra) is missing")
    # A port nothing listens on: the agent starts degraded and keeps trying.
    fleet.connect("redis://127.0.0.1:9/0", namespace="n", timeout=0.05)
    breaker = qbreaker.CircuitBreaker(2, 30.0, shared="unreachable", fleet=True)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        current = fleet.status()
        if current.last_error is not None and "unreachable" in current.breakers:
            break
        time.sleep(0.02)
    assert current.agent_alive and current.agent_pid == os.getpid()
    assert not current.connected
    assert current.degraded_since is not None
    assert current.last_error is not None and "Connection" in current.last_error
    # Calls are host-wide calls: they never wait for Redis nor raise for it.
    started = time.monotonic()
    for _ in range(1000):
        with breaker:
            pass
    assert time.monotonic() - started < 0.5
    view = breaker.metrics().fleet
    assert view is not None and view.state is None and not view.connected


# -- construction -------------------------------------------------------------------


@needs_c
def test_fleet_needs_shared_the_compiled_core_and_connect(host_dir: str) -> None:
    with pytest.raises(ValueError, match=r"fleet=True needs shared=NAME"):
        qbreaker.CircuitBreaker(fleet=True)
    with pytest.raises(ValueError, match=r"qbreaker\.fleet\.connect"):
        qbreaker.CircuitBreaker(shared="early", fleet=True)
    assert not os.path.exists(Path(host_dir) / "early")
    assert not [e for e in os.listdir(host_dir) if e.startswith("qbreaker-v")]


@needs_c
@pytest.mark.parametrize(
    ("settings", "error", "match"),
    [
        ({"fleet": 1}, TypeError, "fleet must be True or False"),
        ({"fleet_quorum": 0}, ValueError, r"fleet_quorum must be in \[1,"),
        ({"fleet_quorum": 1.5}, TypeError, "fleet_quorum must be an int"),
        ({"fleet_max_failures": 0}, ValueError, "fleet_max_failures"),
        ({"fleet_window": 0}, ValueError, "fleet_window"),
        ({"fleet_window": 1e9}, ValueError, r"fleet_window must be in \[0.01"),
        ({"fleet_window": float("nan")}, ValueError, "fleet_window"),
    ],
)
def test_fleet_options_are_validated(
    host_dir: str, settings: dict[str, object], error: type[Exception], match: str
) -> None:
    connect_off()
    with pytest.raises(error, match=match):
        qbreaker.CircuitBreaker(shared="bad", **{"fleet": True, **settings})


@needs_c
def test_fleet_breaker_is_registered_and_is_a_shared_breaker(host_dir: str) -> None:
    connect_off()
    breaker = qbreaker.CircuitBreaker(
        3, 10.0, shared="payments", fleet=True, fleet_quorum=1, fleet_max_failures=20,
        fleet_window=5.0,
    )  # fmt: skip
    assert ControlSegment().registered() == [("payments", FleetOptions(1, 20, 5000))]
    plain = qbreaker.CircuitBreaker(3, 10.0, shared="payments")
    breaker.record_failure()
    assert plain.consecutive_failures == 1  # the same cell
    with pytest.raises(ValueError, match="registered on this host"):
        qbreaker.CircuitBreaker(3, 10.0, shared="payments", fleet=True, fleet_quorum=2)
    view = breaker.metrics().fleet
    assert view is None  # no agent has published a status yet
    assert plain.metrics().fleet is None


@needs_c
def test_group_fleet_breakers(host_dir: str) -> None:
    with pytest.raises(ValueError, match="needs shared=True"):
        qbreaker.BreakerGroup(fleet=True)
    with pytest.raises(ValueError, match=r"qbreaker\.fleet\.connect"):
        qbreaker.BreakerGroup(shared=True, fleet=True)
    with pytest.raises(TypeError, match="fleet must be True or False"):
        qbreaker.BreakerGroup(shared=True, fleet="yes")  # type: ignore[arg-type]
    connect_off()
    group = qbreaker.BreakerGroup(
        max_failures=2, shared=True, fleet=True, fleet_quorum=3
    )
    group.get("a")
    group.get("b")
    assert ControlSegment().registered() == [
        ("a", FleetOptions(3, None, 10_000)),
        ("b", FleetOptions(3, None, 10_000)),
    ]
    plain = qbreaker.BreakerGroup(shared=True)
    plain.get("c")
    assert [n for n, _ in ControlSegment().registered()] == ["a", "b"]


def test_status_without_an_agent(host_dir: str) -> None:
    current = fleet.status()
    assert not current.connected and not current.agent_alive
    assert current.agent_pid is None and current.breakers == {}
    assert os.listdir(host_dir) == []  # reading made nothing
    ControlSegment().close()
    assert fleet.status() == current


def test_the_pure_python_core_refuses_fleet(host_dir: str) -> None:
    # Before and after connect(): the twin cannot share a cell at all.
    with pytest.raises(SharedStateError, match="pure-Python core cannot be a fleet"):
        qbreaker.PyCircuitBreaker(shared="twin", fleet=True)
    connect_off()
    with pytest.raises(SharedStateError, match="pure-Python core cannot be a fleet"):
        qbreaker.PyCircuitBreaker(shared="twin", fleet=True)
    with pytest.raises(ValueError, match=r"fleet=True needs shared=NAME"):
        qbreaker.PyCircuitBreaker(fleet=True)
    assert ControlSegment().registered() == []
