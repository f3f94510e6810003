"""The compat breaker on other storages: Redis, and one written by a user.

The Redis tests run against a real ``redis-server`` (the Debian package;
``scripts/ci_redis.sh`` installs it) that a session fixture (tests/conftest.py,
tests/redis_server.py) starts on 127.0.0.1, on a free port, without
persistence, and stops at the end. Only if it cannot start do they run on
fakeredis, and each of them then says so with a warning naming the test.
"""

from __future__ import annotations

import datetime
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import qbreaker.compat.pybreaker as pybreaker
from qbreaker.compat.pybreaker import base as pyb_base
from qbreaker.compat.pybreaker import core as pyb_core
from qbreaker.compat.pybreaker import engine as pyb_engine
from qbreaker.compat.pybreaker import memory as pyb_memory

from ..redis_server import Backend, free_port

UTC = datetime.timezone.utc


class DummyError(Exception):
    pass


def fail() -> None:
    raise DummyError


def succeed() -> bool:
    return True


class RedisFallbackWarning(UserWarning):
    """A Redis test ran on fakeredis: redis-server could not start."""


@pytest.fixture
def redis_connect(
    redis_backend: Backend, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Any]]:
    if redis_backend.fallback_reason is not None:
        warnings.warn(
            f"{request.node.nodeid}: {redis_backend.fallback_reason}; "
            f"this test ran on fakeredis instead",
            RedisFallbackWarning,
            stacklevel=1,
        )
    clients: list[Any] = []

    def connect(**settings: Any) -> Any:
        client = redis_backend.connect(**settings)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


class FakeWall:
    def __init__(self) -> None:
        self.wall = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
        self.mono = 1000.0

    def utcnow(self) -> datetime.datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += datetime.timedelta(seconds=seconds)
        self.mono += seconds


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> FakeWall:
    fake = FakeWall()
    monkeypatch.setattr(pyb_core, "_monotonic", fake.monotonic)
    for module in (pyb_memory, pyb_engine, pyb_base):
        monkeypatch.setattr(module, "utcnow", fake.utcnow)
    return fake


def redis_breaker(client: Any, namespace: str, **settings: Any) -> Any:
    storage_args = {
        key: settings.pop(key)
        for key in ("fallback_circuit_state", "cluster_mode")
        if key in settings
    }
    storage = pybreaker.CircuitRedisStorage(
        pybreaker.STATE_CLOSED, client, namespace=namespace, **storage_args
    )
    return pybreaker.CircuitBreaker(state_storage=storage, **settings)


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -- Redis -----------------------------------------------------------------------------


def test_redis_key_layout(redis_connect: Callable[..., Any], namespace: str) -> None:
    client = redis_connect()
    pybreaker.CircuitRedisStorage("closed", client, namespace=namespace)
    keys = {text(k) for k in client.keys(f"{namespace}:*")}
    assert keys == {
        f"{namespace}:pybreaker:state",
        f"{namespace}:pybreaker:fail_counter",
        f"{namespace}:pybreaker:success_counter",
    }
    assert text(client.get(f"{namespace}:pybreaker:state")) == "closed"
    storage = pybreaker.CircuitRedisStorage("open", client)
    assert storage._namespace("state") == "pybreaker:state"
    assert storage.name == "redis"


def test_redis_trip_and_recover(
    redis_connect: Callable[..., Any], namespace: str, now: FakeWall
) -> None:
    client = redis_connect()
    breaker = redis_breaker(client, namespace, fail_max=2, reset_timeout=10)
    with pytest.raises(DummyError):
        breaker.call(fail)
    assert text(client.get(f"{namespace}:pybreaker:fail_counter")) == "1"
    with pytest.raises(pybreaker.CircuitBreakerError) as info:
        breaker.call(fail)
    assert isinstance(info.value.__cause__, DummyError)
    assert text(client.get(f"{namespace}:pybreaker:state")) == "open"
    stamp = int(client.get(f"{namespace}:pybreaker:opened_at"))
    assert stamp == int(now.wall.timestamp())
    assert breaker._state_storage.opened_at == now.wall
    assert (breaker.fail_counter, breaker.current_state) == (2, "open")
    now.advance(9)
    with pytest.raises(pybreaker.CircuitBreakerError) as info:
        breaker.call(succeed)
    assert info.value.retry_after == pytest.approx(1)
    now.advance(1)
    assert breaker.call(succeed) is True
    assert text(client.get(f"{namespace}:pybreaker:state")) == "closed"
    assert breaker.fail_counter == 0


def test_redis_success_threshold_and_failed_trial(
    redis_connect: Callable[..., Any], namespace: str
) -> None:
    breaker = redis_breaker(redis_connect(), namespace, success_threshold=2)
    breaker.half_open()
    breaker.call(succeed)
    assert (breaker.current_state, breaker.success_counter) == ("half-open", 1)
    with pytest.raises(pybreaker.CircuitBreakerError) as info:
        breaker.call(fail)
    assert str(info.value) == "Trial call failed, circuit breaker opened"
    assert (breaker.current_state, breaker.success_counter) == ("open", 0)
    breaker.half_open()
    breaker.call(succeed)
    breaker.call(succeed)
    assert breaker.current_state == "closed"


def test_redis_state_is_shared_between_processes(
    redis_connect: Callable[..., Any], namespace: str
) -> None:
    # Two breakers with their own storage objects and clients: two processes.
    first = redis_breaker(redis_connect(), namespace, fail_max=1)
    events: list[tuple[str, str]] = []

    class Listener(pybreaker.CircuitBreakerListener):
        def state_change(self, cb: Any, old: Any, new: Any) -> None:
            events.append((old.name, new.name))

    second = redis_breaker(redis_connect(), namespace, fail_max=1)
    second.add_listener(Listener())
    with pytest.raises(pybreaker.CircuitBreakerError):
        first.call(fail)
    with pytest.raises(pybreaker.CircuitBreakerError):
        second.call(succeed)
    assert events == [("closed", "open")]  # it noticed, as pybreaker does
    second.close()
    assert first.current_state == "closed"
    assert first.state.name == "closed"


def test_redis_failure_of_an_earlier_state_is_not_counted(
    redis_connect: Callable[..., Any], namespace: str
) -> None:
    first = redis_breaker(redis_connect(), namespace, fail_max=3)
    other = redis_breaker(redis_connect(), namespace, fail_max=3)
    entered, go = threading.Event(), threading.Event()
    result: list[BaseException] = []

    def slow() -> None:
        entered.set()
        go.wait(10)
        raise DummyError

    def run() -> None:
        try:
            first.call(slow)
        except BaseException as exc:  # noqa: BLE001
            result.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert entered.wait(10)
    other.open()  # another process opens it while the call runs
    go.set()
    thread.join(10)
    assert isinstance(result[0], DummyError)
    assert other.fail_counter == 0
    assert other.current_state == "open"


def test_redis_counters_exact_across_processes(
    redis_connect: Callable[..., Any], namespace: str
) -> None:
    threads, calls = 8, 50
    breakers = [
        redis_breaker(redis_connect(), namespace, fail_max=10**6)
        for _ in range(threads)
    ]
    barrier = threading.Barrier(threads)

    def work(breaker: Any) -> None:
        barrier.wait(10)
        for _ in range(calls):
            with pytest.raises(DummyError):
                breaker.call(fail)

    workers = [threading.Thread(target=work, args=(b,)) for b in breakers]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert breakers[0].fail_counter == threads * calls


def test_redis_one_trip_across_processes(
    redis_connect: Callable[..., Any], namespace: str
) -> None:
    threads = 8
    breakers = [
        redis_breaker(redis_connect(), namespace, fail_max=20, reset_timeout=3600)
        for _ in range(threads)
    ]
    barrier = threading.Barrier(threads)
    trips: list[str] = []

    def work(breaker: Any) -> None:
        barrier.wait(10)
        while True:
            try:
                breaker.call(fail)
            except DummyError:
                continue
            except pybreaker.CircuitBreakerError as exc:
                if str(exc).startswith("Failures"):
                    trips.append(str(exc))
                    continue
                return

    workers = [threading.Thread(target=work, args=(b,)) for b in breakers]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert len(trips) == 1
    assert breakers[0].fail_counter == 20


def test_redis_fallback_state_when_redis_fails(
    redis_connect: Callable[..., Any], namespace: str, redis_backend: Backend
) -> None:
    redis = pytest.importorskip("redis")
    retry = pytest.importorskip("redis.retry")
    backoff = pytest.importorskip("redis.backoff")
    # Refused at once, and not retried (redis-py retries with back-off).
    dead = redis.Redis(
        host="127.0.0.1",
        port=free_port(),
        socket_connect_timeout=0.2,
        retry=retry.Retry(backoff.NoBackoff(), 0),
    )
    for fallback in ("open", "closed"):
        breaker = redis_breaker(
            redis_connect(), namespace, fallback_circuit_state=fallback, fail_max=1
        )
        breaker._state_storage._redis = dead  # Redis goes away
        assert breaker.current_state == fallback
        assert breaker.fail_counter == 0
        if fallback == "closed":
            assert breaker.call(succeed) is True
            with pytest.raises(DummyError):  # nothing can be written: no trip
                breaker.call(fail)
        else:
            with pytest.raises(pybreaker.CircuitBreakerError):
                breaker.call(succeed)
    dead.close()


def test_redis_missing_state_is_reinitialized(
    redis_connect: Callable[..., Any], namespace: str
) -> None:
    client = redis_connect()
    storage = pybreaker.CircuitRedisStorage(
        "closed", client, namespace=namespace, fallback_circuit_state="open"
    )
    client.delete(f"{namespace}:pybreaker:state")
    assert storage.state == "open"
    assert text(client.get(f"{namespace}:pybreaker:state")) == "open"


def test_redis_opened_at_only_moves_forward(
    redis_connect: Callable[..., Any], namespace: str
) -> None:
    for cluster_mode in (False, True):
        client = redis_connect()
        storage = pybreaker.CircuitRedisStorage(
            "closed", client, namespace=f"{namespace}-{cluster_mode}",
            cluster_mode=cluster_mode,
        )  # fmt: skip
        later = datetime.datetime(2026, 5, 1, tzinfo=UTC)
        storage.opened_at = later
        storage.opened_at = later - datetime.timedelta(hours=1)
        assert storage.opened_at == later


def test_redis_cluster_mode_uses_pybreakers_commands(
    redis_connect: Callable[..., Any], namespace: str, now: FakeWall
) -> None:
    breaker = redis_breaker(
        redis_connect(), namespace, cluster_mode=True, fail_max=2, reset_timeout=5
    )
    for _ in range(2):
        with pytest.raises((DummyError, pybreaker.CircuitBreakerError)):
            breaker.call(fail)
    assert breaker.current_state == "open"
    now.advance(5)
    breaker.call(succeed)
    assert (breaker.current_state, breaker.fail_counter) == ("closed", 0)


def test_redis_with_decoded_responses(
    redis_connect: Callable[..., Any], namespace: str
) -> None:
    breaker = redis_breaker(redis_connect(decode_responses=True), namespace, fail_max=1)
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(fail)
    assert breaker.current_state == "open"


def test_redis_shared_with_pybreaker_itself(
    redis_connect: Callable[..., Any], namespace: str
) -> None:
    real = pytest.importorskip("pybreaker")
    if real is pybreaker or not hasattr(real, "CircuitRedisStorage"):
        pytest.skip("pybreaker itself is not installed")
    theirs = real.CircuitBreaker(
        fail_max=2,
        state_storage=real.CircuitRedisStorage(
            "closed", redis_connect(), namespace=namespace
        ),
    )
    ours = redis_breaker(redis_connect(), namespace, fail_max=2)
    with pytest.raises(DummyError):
        theirs.call(fail)
    assert ours.fail_counter == 1
    with pytest.raises(pybreaker.CircuitBreakerError):
        ours.call(fail)
    assert theirs.current_state == "open"
    with pytest.raises(real.CircuitBreakerError):
        theirs.call(succeed)
    theirs.close()
    assert ours.current_state == "closed"
    assert ours.call(succeed) is True


# -- a storage of the application's own ------------------------------------------------


class DictStorage(pybreaker.CircuitBreakerStorage):
    """A user storage: pybreaker's interface over a dict."""

    def __init__(self, state: str) -> None:
        super().__init__("dict")
        self.data: dict[str, Any] = {
            "state": state, "fail": 0, "success": 0, "opened_at": None
        }  # fmt: skip

    @property
    def state(self) -> str:
        return str(self.data["state"])

    @state.setter
    def state(self, state: str) -> None:
        self.data["state"] = state

    def increment_counter(self) -> None:
        self.data["fail"] += 1

    def reset_counter(self) -> None:
        self.data["fail"] = 0

    def increment_success_counter(self) -> None:
        self.data["success"] += 1

    def reset_success_counter(self) -> None:
        self.data["success"] = 0

    @property
    def counter(self) -> int:
        return int(self.data["fail"])

    @property
    def success_counter(self) -> int:
        return int(self.data["success"])

    @property
    def opened_at(self) -> datetime.datetime | None:
        value = self.data["opened_at"]
        return value if isinstance(value, datetime.datetime) else None

    @opened_at.setter
    def opened_at(self, value: datetime.datetime) -> None:
        self.data["opened_at"] = value


def test_user_storage_full_cycle(now: FakeWall) -> None:
    storage = DictStorage("closed")
    events: list[str] = []

    class Listener(pybreaker.CircuitBreakerListener):
        def state_change(self, cb: Any, old: Any, new: Any) -> None:
            events.append(f"{old.name}->{new.name}")

    breaker = pybreaker.CircuitBreaker(
        fail_max=2, reset_timeout=5, state_storage=storage, listeners=[Listener()]
    )
    assert breaker._state_storage is storage
    with pytest.raises(DummyError):
        breaker.call(fail)
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(fail)
    assert storage.data["state"] == "open" and storage.opened_at == now.wall
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(succeed)
    now.advance(5)
    assert breaker.call(succeed) is True
    assert events == ["closed->open", "open->half-open", "half-open->closed"]
    assert storage.counter == 0


def test_user_storage_one_trial_and_stale_outcomes() -> None:
    storage = DictStorage("half-open")
    breaker = pybreaker.CircuitBreaker(state_storage=storage)
    entered, go = threading.Event(), threading.Event()
    result: list[Any] = []

    def trial() -> bool:
        entered.set()
        go.wait(10)
        return True

    thread = threading.Thread(target=lambda: result.append(breaker.call(trial)))
    thread.start()
    assert entered.wait(10)
    with pytest.raises(pybreaker.CircuitBreakerError) as info:
        breaker.call(succeed)
    assert info.value.retry_after == 0.0
    go.set()
    thread.join(10)
    assert result == [True] and breaker.current_state == "closed"

    entered.clear()
    go.clear()
    thread = threading.Thread(target=lambda: _swallow(breaker, entered, go))
    thread.start()
    assert entered.wait(10)
    breaker.open()
    breaker.close()
    go.set()
    thread.join(10)
    assert storage.counter == 0  # admitted before open(): not counted after


def _swallow(breaker: Any, entered: threading.Event, go: threading.Event) -> None:
    def slow() -> None:
        entered.set()
        go.wait(10)
        raise DummyError

    try:
        breaker.call(slow)
    except DummyError:
        pass


def test_unknown_state_in_a_user_storage() -> None:
    with pytest.raises(ValueError, match="Unknown state"):
        pybreaker.CircuitBreaker(state_storage=DictStorage("ajar"))


def test_user_storage_counts_exactly_under_threads() -> None:
    storage = DictStorage("closed")
    breaker = pybreaker.CircuitBreaker(fail_max=10**6, state_storage=storage)
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait(10)
        for _ in range(500):
            with pytest.raises(DummyError):
                breaker.call(fail)

    workers = [threading.Thread(target=work) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert storage.counter == 8 * 500
