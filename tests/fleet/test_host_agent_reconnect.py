"""A backend that cannot be reached is tried once a tick, one connection
attempt in flight per host; one that answers with errors gets backoff with
full jitter. The return of an unreachable one is noticed within a tick."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

import qbreaker
from qbreaker import fleet
from qbreaker.fleet._protocol import SyncReply, SyncRequest
from qbreaker.fleet.agent import HOT_INTERVAL, SCAN_INTERVAL, unreachable
from qbreaker.fleet.spec import MemoryBackend

from .host_helpers import host_dir
from .test_host_agent import Fleet

__all__ = ("host_dir",)  # a fixture

pytestmark = pytest.mark.c_extension


class Failing:
    """A backend whose every call fails with ``error`` after ``pause``
    seconds, or, once ``up``, is ``inner``; it counts the calls in flight."""

    def __init__(self, error: BaseException, pause: float = 0.0) -> None:
        self.error = error
        self.pause = pause
        self.inner = MemoryBackend()
        self.up = False
        self.calls = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()

    def _call(self) -> None:
        with self._lock:
            self.calls += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.pause)
            if not self.up:
                raise self.error
        finally:
            with self._lock:
                self.in_flight -= 1

    def sync(self, request: SyncRequest) -> SyncReply:
        self._call()
        return self.inner.sync(request)

    def events(self, cursor: str, block_ms: int) -> object:
        self._call()
        return self.inner.events(cursor, block_ms)

    def force(
        self, name: str, action: str, *, by: str, time_ms: object = None
    ) -> object:
        return self.inner.force(name, action, by=by)

    def view(self, *, time_ms: int | None = None) -> object:
        return self.inner.view()


def test_what_counts_as_unreachable() -> None:
    assert unreachable(ConnectionRefusedError(111, "refused"))
    assert unreachable(TimeoutError("timed out"))
    assert not unreachable(RuntimeError("OOM command not allowed"))
    redis = pytest.importorskip("redis")
    assert unreachable(redis.exceptions.ConnectionError("Error 111"))
    assert unreachable(redis.exceptions.TimeoutError("Timeout reading"))
    # The server is there and answered.
    assert not unreachable(redis.exceptions.AuthenticationError("invalid"))
    assert not unreachable(redis.exceptions.BusyLoadingError("loading"))
    assert not unreachable(redis.exceptions.ResponseError("OOM"))


@pytest.fixture
def here(host_dir: str) -> Iterator[Fleet]:
    yield Fleet(MemoryBackend())


def test_an_unreachable_backend_is_tried_every_tick(here: Fleet) -> None:
    down = Failing(ConnectionRefusedError(111, "Connection refused"))
    agent = here.agent = here.new_agent(down)
    agent.refresh_registry()
    now = 1000.0
    for _ in range(30):
        assert not agent.sync(now)
        # Never a backoff: the next try is one tick away.
        assert agent.next_sync == pytest.approx(now + agent.hot_interval)
        now = agent.next_sync
    assert not fleet._status_of(here.control).connected
    down.up = True
    agent.guard.reset()  # its open lasts half a tick of real time
    assert agent.sync(now)
    assert fleet._status_of(here.control).connected


def test_a_backend_that_lost_its_data_is_reseeded_at_once(here: Fleet) -> None:
    here.trip_elsewhere("h2", "h3")
    here.agent.step()
    assert str(here.breaker.state) == "open"
    here.backend.lose_data()
    now = 1000.0
    assert here.agent.sync(now)  # a new epoch
    assert here.agent.next_sync == now  # the re-seed goes at once, not a tick later
    assert here.agent.sync(now)
    state = here.fleet_state()
    assert (state.state, state.reason) == ("open", "reseed")
    assert here.agent.next_sync > now


def test_a_backend_answering_with_errors_gets_backoff_with_jitter(
    here: Fleet,
) -> None:
    agent = here.agent = here.new_agent(Failing(RuntimeError("OOM")))
    agent.refresh_registry()
    waits = []
    now = 1000.0
    for _ in range(30):
        assert not agent.sync(now)
        waits.append(agent.next_sync - now)
        now = agent.next_sync
    late = waits[10:]
    # Doubling from a hot tick up to the quiet tick, jittered over its upper
    # half: spread out, never more than a tick (a fixed backend is seen
    # within one), never more than two tries a second.
    assert waits[0] <= agent.hot_interval * 2
    assert max(waits) <= agent.sync_interval
    assert min(late) >= agent.sync_interval / 2
    assert len(set(late)) > 10


def test_one_connection_attempt_in_flight_and_a_return_noticed_in_a_tick(
    host_dir: str,
) -> None:
    down = Failing(ConnectionRefusedError(111, "Connection refused"), pause=0.05)
    fleet.connect(namespace="tests", backend=down, sync_interval=1.0)  # type: ignore[arg-type]
    qbreaker.CircuitBreaker(2, 30.0, shared="pay", fleet=True)
    time.sleep(1.5)
    tries = down.calls
    # The sync loop tries once a tick; the events thread waits for it.
    assert down.most_in_flight == 1
    assert 1.5 / HOT_INTERVAL / 2 <= tries <= 1.5 / HOT_INTERVAL + 2
    assert not fleet.status().connected
    down.up = True
    back = time.monotonic()
    while not fleet.status().connected and time.monotonic() - back < 5:
        time.sleep(0.002)
    noticed = time.monotonic() - back
    assert fleet.status().connected
    # Within a tick (plus a scan, and a try in flight), not a backoff.
    assert noticed < HOT_INTERVAL + SCAN_INTERVAL + down.pause + 0.15, noticed
