"""``opened_at`` and the reset timeout of ``qbreaker.compat.pybreaker``, beside
pybreaker 1.4.1 itself.

The same operations run on both libraries under one fake clock (pybreaker's
``datetime.now`` and the compat layer's clocks move together), with naive,
aware UTC and aware non-UTC datetimes, on the memory storage (both cores), a
storage of the application's own and Redis. Where pybreaker fails (a naive
``opened_at`` makes its next call while open a TypeError; an ``opened_at``
near ``datetime.max`` an OverflowError), the drop-in is compared with what
pybreaker does for the same instant given as an aware UTC datetime.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any, Callable

import pybreaker as theirs
import pytest

import qbreaker.compat.pybreaker as ours
from qbreaker.compat.pybreaker import base as pyb_base
from qbreaker.compat.pybreaker import core as pyb_core
from qbreaker.compat.pybreaker import engine as pyb_engine
from qbreaker.compat.pybreaker import memory as pyb_memory

from . import test_compat_pybreaker_storage as storage_tests
from .test_compat_pybreaker_storage import DictStorage

# The Redis fixtures; the session's redis-server (redis_backend) is the one of
# tests/conftest.py.
redis_connect = storage_tests.redis_connect
namespace = storage_tests.namespace

UTC = datetime.timezone.utc
PLUS2 = datetime.timezone(datetime.timedelta(hours=2), "+02:00")
MINUS5 = datetime.timezone(datetime.timedelta(hours=-5), "-05:00")
# Whole seconds: the Redis storages keep whole seconds.
START = datetime.datetime(2026, 3, 29, 0, 30, 0, tzinfo=UTC)
TIMEOUT = 10


class Clocks:
    """One fake time for both libraries: pybreaker's ``datetime.now`` and
    the compat layer's wall and monotonic clocks."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Back to START, for the next library's run."""
        self.wall = START
        self.mono = 5000.0

    def advance(self, seconds: float) -> None:
        self.wall += datetime.timedelta(seconds=seconds)
        self.mono += seconds


@pytest.fixture
def clocks(monkeypatch: pytest.MonkeyPatch) -> Clocks:
    fake = Clocks()

    class FakeDatetime(datetime.datetime):
        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> Any:
            return fake.wall.astimezone(tz) if tz else fake.wall.replace(tzinfo=None)

    monkeypatch.setattr(theirs, "datetime", FakeDatetime)
    monkeypatch.setattr(pyb_core, "_monotonic", lambda: fake.mono)
    for module in (pyb_memory, pyb_engine, pyb_base):
        monkeypatch.setattr(module, "utcnow", lambda: fake.wall)
    return fake


class Boom(Exception):
    pass


def boom() -> None:
    raise Boom


def ok() -> str:
    return "ok"


def in_kind(moment: datetime.datetime, kind: str) -> datetime.datetime:
    """The aware UTC ``moment`` as a datetime of ``kind``."""
    if kind == "naive":
        return moment.replace(tzinfo=None)
    return moment.astimezone({"utc": UTC, "plus2": PLUS2, "minus5": MINUS5}[kind])


def tripped(lib: Any, storage: Any, **settings: Any) -> Any:
    """A breaker of ``lib`` on ``storage``, opened by a failure at START."""
    breaker = lib.CircuitBreaker(
        fail_max=1, reset_timeout=TIMEOUT, state_storage=storage, **settings
    )
    with pytest.raises((Boom, lib.CircuitBreakerError)):
        breaker.call(boom)
    assert breaker.current_state == "open"
    return breaker


def first_admitted(breaker: Any, lib: Any, clocks: Clocks, steps: int = 40) -> Any:
    """Seconds after now at which the breaker first lets a call through
    (probing every second), or None if it never does within ``steps``."""
    for step in range(steps):
        try:
            assert breaker.call(ok) == "ok"
        except lib.CircuitBreakerError:
            clocks.advance(1)
            continue
        assert breaker.current_state == "closed"
        return step
    return None


KINDS = ["naive", "utc", "plus2", "minus5"]
# Seconds from the trip to the opened_at that is set, and the first probe
# (whole seconds from then) that a call gets through with TIMEOUT = 10:
# half seconds, so that no probe lands on the boundary.
OFFSETS = {-4.5: 6, 3.5: 14, -100.5: 0}


@pytest.fixture
def memory(impl: Any) -> Callable[[Any], Any]:
    """A fresh closed memory storage of ``lib``; ours on the ``impl`` core."""

    def build(lib: Any) -> Any:
        if lib is ours:
            return ours.CircuitMemoryStorage("closed", core_class=impl.Breaker)
        return theirs.CircuitMemoryStorage("closed")

    return build


# -- the memory storage -------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("offset", OFFSETS)
def test_memory_opened_at_side_by_side(
    clocks: Clocks, memory: Callable[[Any], Any], kind: str, offset: float
) -> None:
    value = in_kind(START + datetime.timedelta(seconds=offset), kind)
    results = {}
    for lib in (ours, theirs):
        given = value
        if lib is theirs and kind == "naive":
            given = value.replace(tzinfo=UTC)  # pybreaker fails on the naive one
        clocks.reset()
        breaker = tripped(lib, memory(lib))
        assert breaker._state_storage.opened_at == START
        breaker._state_storage.opened_at = given
        assert breaker._state_storage.opened_at is given  # kept as given
        results[lib.__name__] = first_admitted(breaker, lib, clocks)
    assert results == {ours.__name__: OFFSETS[offset], theirs.__name__: OFFSETS[offset]}


def test_memory_naive_opened_at_is_a_type_error_in_pybreaker(clocks: Clocks) -> None:
    # The difference the comparison above works around: pybreaker accepts a
    # naive opened_at and fails on the next call while open.
    breaker = tripped(theirs, theirs.CircuitMemoryStorage("closed"))
    breaker._state_storage.opened_at = START.replace(tzinfo=None)
    with pytest.raises(TypeError, match="offset-naive and offset-aware"):
        breaker.call(ok)


def test_memory_utcnow_idiom_of_older_pybreaker(clocks: Clocks, impl: Any) -> None:
    # What code written for pybreaker < 1.x does to end the timeout at once.
    storage = ours.CircuitMemoryStorage("closed", core_class=impl.Breaker)
    breaker = tripped(ours, storage)
    storage.opened_at = clocks.wall.replace(tzinfo=None) - datetime.timedelta(
        seconds=TIMEOUT + 1
    )
    assert breaker.call(ok) == "ok"
    assert breaker.current_state == "closed"


@pytest.mark.parametrize("lib", [ours, theirs], ids=["ours", "theirs"])
def test_memory_opened_at_none_lets_the_next_call_through(
    clocks: Clocks, memory: Callable[[Any], Any], lib: Any
) -> None:
    breaker = tripped(lib, memory(lib))
    breaker._state_storage.opened_at = None
    assert breaker._state_storage.opened_at is None
    assert first_admitted(breaker, lib, clocks) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_memory_future_opened_at_survives_a_new_reset_timeout(
    clocks: Clocks, memory: Callable[[Any], Any], kind: str
) -> None:
    # A new reset_timeout rebuilds the core from its word: an opened time
    # after now must stay in the future, as pybreaker reads it at each call.
    results = {}
    for lib in (ours, theirs):
        clocks.reset()
        breaker = tripped(lib, memory(lib))
        value = in_kind(START + datetime.timedelta(seconds=30.5), kind)
        breaker._state_storage.opened_at = (
            value.replace(tzinfo=UTC) if lib is theirs and kind == "naive" else value
        )
        clocks.advance(3)
        breaker.reset_timeout = 20
        results[lib.__name__] = first_admitted(breaker, lib, clocks, steps=60)
    # 30.5 + 20 after START, probed from START + 3 on.
    assert results == {ours.__name__: 48, theirs.__name__: 48}


def test_memory_retry_after_counts_to_a_future_opened_at(
    clocks: Clocks, impl: Any
) -> None:
    storage = ours.CircuitMemoryStorage("closed", core_class=impl.Breaker)
    breaker = tripped(ours, storage)
    with pytest.raises(ours.CircuitBreakerError) as info:
        breaker.call(ok)
    assert info.value.retry_after == pytest.approx(TIMEOUT)
    storage.opened_at = START + datetime.timedelta(seconds=30.5)
    clocks.advance(2)
    with pytest.raises(ours.CircuitBreakerError) as info:
        breaker.call(ok)
    assert info.value.retry_after == pytest.approx(30.5 + TIMEOUT - 2)
    clocks.advance(30.5 + TIMEOUT - 2 - 0.5)
    with pytest.raises(ours.CircuitBreakerError) as info:
        breaker.call(ok)
    assert info.value.retry_after == pytest.approx(0.5)


def test_memory_distant_opened_at(clocks: Clocks, impl: Any) -> None:
    storage = ours.CircuitMemoryStorage("closed", core_class=impl.Breaker)
    breaker = tripped(ours, storage)
    # Centuries ago: the timeout elapsed long since, as in pybreaker (a time
    # this far back must not wrap round to a recent one in the core's word).
    storage.opened_at = datetime.datetime(1, 1, 1, tzinfo=UTC)
    assert first_admitted(breaker, ours, clocks) == 0

    breaker = tripped(
        ours, ours.CircuitMemoryStorage("closed", core_class=impl.Breaker)
    )
    # datetime.max: open for good (pybreaker raises OverflowError at the call).
    breaker._state_storage.opened_at = datetime.datetime.max
    assert first_admitted(breaker, ours, clocks, steps=5) is None
    clocks.advance(10**6)
    breaker.reset_timeout = 5
    assert first_admitted(breaker, ours, clocks, steps=5) is None


def test_pybreaker_overflows_on_datetime_max(clocks: Clocks) -> None:
    breaker = tripped(theirs, theirs.CircuitMemoryStorage("closed"))
    breaker._state_storage.opened_at = datetime.datetime.max.replace(tzinfo=UTC)
    with pytest.raises(OverflowError):
        breaker.call(ok)


@pytest.mark.parametrize("kind", KINDS)
def test_memory_opened_at_set_while_closed(
    clocks: Clocks, memory: Callable[[Any], Any], kind: str
) -> None:
    # Kept as given; the next trip replaces it with the time of the trip.
    for lib in (ours, theirs):
        clocks.reset()
        storage = memory(lib)
        value = in_kind(START - datetime.timedelta(hours=1), kind)
        storage.opened_at = value
        assert storage.opened_at is value
        breaker = lib.CircuitBreaker(
            fail_max=1, reset_timeout=TIMEOUT, state_storage=storage
        )
        assert breaker.current_state == "closed"
        clocks.advance(7)
        with pytest.raises((Boom, lib.CircuitBreakerError)):
            breaker.call(boom)
        assert storage.opened_at == START + datetime.timedelta(seconds=7)
        assert storage.opened_at.utcoffset() == datetime.timedelta(0)


class OpenedAtSeen(ours.CircuitBreakerListener):
    """Records what a state_change listener reads from the storage."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def state_change(self, cb: Any, old: Any, new: Any) -> None:
        self.seen.append((new.name, cb._state_storage.opened_at))


def _listener_run(lib: Any, storage: Any, clocks: Clocks) -> list[tuple[str, Any]]:
    seen = OpenedAtSeen()
    breaker = lib.CircuitBreaker(
        fail_max=1, reset_timeout=TIMEOUT, state_storage=storage, listeners=[seen]
    )
    clocks.advance(1)
    with pytest.raises((Boom, lib.CircuitBreakerError)):
        breaker.call(boom)  # closed -> open
    clocks.advance(TIMEOUT)
    with pytest.raises((Boom, lib.CircuitBreakerError)):
        breaker.call(boom)  # open -> half-open -> open
    clocks.advance(2)
    breaker.open()  # open -> open
    clocks.advance(3)
    breaker.close()
    return seen.seen


def test_listeners_see_the_same_opened_at(
    clocks: Clocks, memory: Callable[[Any], Any]
) -> None:
    runs = {}
    for lib in (ours, theirs):
        clocks.reset()
        runs[lib.__name__] = _listener_run(lib, memory(lib), clocks)
    opened = [START + datetime.timedelta(seconds=s) for s in (1, 11, 13)]
    expected = [
        ("open", opened[0]),
        ("half-open", opened[0]),
        ("open", opened[1]),
        ("open", opened[2]),
        ("closed", opened[2]),
    ]
    assert runs == {ours.__name__: expected, theirs.__name__: expected}
    for _, moment in runs[ours.__name__]:
        assert moment.utcoffset() == datetime.timedelta(0)


# -- bad values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["2026-01-01T00:00:00", 1767225600, datetime.date(2026, 1, 1)]
)
def test_memory_opened_at_must_be_a_datetime(
    clocks: Clocks, impl: Any, value: object
) -> None:
    storage = ours.CircuitMemoryStorage("closed", core_class=impl.Breaker)
    breaker = tripped(ours, storage)
    with pytest.raises(TypeError, match=r"opened_at must be a datetime\.datetime") as e:
        storage.opened_at = value
    assert repr(value) in str(e.value) and "or None" in str(e.value)
    # Nothing changed.
    assert storage.opened_at == START and breaker.current_state == "open"
    assert first_admitted(breaker, ours, clocks) == TIMEOUT


# -- a storage of the application's own ----------------------------------------------


class NaiveStorage(DictStorage):
    """A user storage written for older pybreaker: it keeps naive UTC times."""

    @property
    def opened_at(self) -> datetime.datetime | None:
        value = self.data["opened_at"]
        if value is None:
            return None
        assert isinstance(value, datetime.datetime)
        return value.astimezone(UTC).replace(tzinfo=None)

    @opened_at.setter
    def opened_at(self, value: datetime.datetime) -> None:
        self.data["opened_at"] = value


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("offset", OFFSETS)
def test_user_storage_opened_at_side_by_side(
    clocks: Clocks, kind: str, offset: float
) -> None:
    value = in_kind(START + datetime.timedelta(seconds=offset), kind)
    results = {}
    for lib in (ours, theirs):
        clocks.reset()
        storage = DictStorage("closed")
        breaker = tripped(lib, storage)
        assert storage.opened_at == START
        storage.opened_at = (
            value.replace(tzinfo=UTC) if lib is theirs and kind == "naive" else value
        )
        results[lib.__name__] = first_admitted(breaker, lib, clocks)
    assert results == {ours.__name__: OFFSETS[offset], theirs.__name__: OFFSETS[offset]}


def test_user_storage_returning_naive_datetimes(clocks: Clocks) -> None:
    storage = NaiveStorage("closed")
    breaker = tripped(ours, storage)
    clocks.advance(4)
    with pytest.raises(ours.CircuitBreakerError) as info:
        breaker.call(ok)
    assert info.value.retry_after == pytest.approx(TIMEOUT - 4)
    assert first_admitted(breaker, ours, clocks) == TIMEOUT - 4

    theirs_breaker = tripped(theirs, NaiveStorage("closed"))
    with pytest.raises(TypeError, match="offset-naive and offset-aware"):
        theirs_breaker.call(ok)


def test_user_storage_opened_at_near_datetime_max(clocks: Clocks) -> None:
    storage = DictStorage("closed")
    breaker = tripped(ours, storage)
    storage.opened_at = datetime.datetime.max.replace(tzinfo=UTC)
    with pytest.raises(ours.CircuitBreakerError) as info:
        breaker.call(ok)  # pybreaker: OverflowError
    assert info.value.retry_after is not None and info.value.retry_after > 1e11


# -- Redis ----------------------------------------------------------------------------


@pytest.fixture
def redis_pair(
    redis_connect: Callable[..., Any], namespace: str
) -> Iterator[dict[str, Any]]:
    """A Redis storage of each library, each in a namespace of its own."""
    client = redis_connect()
    yield {
        lib.__name__: lib.CircuitRedisStorage(
            "closed", client, namespace=f"{namespace}-{lib.__name__}"
        )
        for lib in (ours, theirs)
    }


def _stored(storage: Any) -> int:
    return int(storage._redis.get(storage._namespace("opened_at")))


@pytest.mark.parametrize("kind", ["naive", "utc"])
@pytest.mark.parametrize("offset", OFFSETS)
def test_redis_opened_at_side_by_side(
    clocks: Clocks, redis_pair: dict[str, Any], kind: str, offset: float
) -> None:
    value = in_kind(START + datetime.timedelta(seconds=offset), kind)
    results = {}
    for lib in (ours, theirs):
        clocks.reset()
        storage = redis_pair[lib.__name__]
        breaker = tripped(lib, storage)
        assert storage.opened_at == START
        storage._redis.delete(storage._namespace("opened_at"))  # set, not "if later"
        storage.opened_at = value
        # Whole seconds, floored, in both.
        assert _stored(storage) == int(START.timestamp() + offset // 1)
        assert storage.opened_at.utcoffset() == datetime.timedelta(0)
        results[lib.__name__] = first_admitted(breaker, lib, clocks)
    # Stored as whole seconds: floor(offset) + TIMEOUT after START.
    expected = max(0, int(offset // 1) + TIMEOUT)
    assert results == {ours.__name__: expected, theirs.__name__: expected}


@pytest.mark.parametrize("kind", ["plus2", "minus5"])
def test_redis_aware_non_utc_is_stored_as_its_instant(
    clocks: Clocks, redis_pair: dict[str, Any], kind: str
) -> None:
    value = in_kind(START, kind)
    for storage in redis_pair.values():
        storage.opened_at = value
    # Ours stores the instant; pybreaker stores the wall-clock time of the
    # zone as if it were UTC (off by the zone's offset): the README says so.
    assert _stored(redis_pair[ours.__name__]) == int(START.timestamp())
    offset = value.utcoffset()
    assert offset is not None
    assert _stored(redis_pair[theirs.__name__]) == int(
        START.timestamp() + offset.total_seconds()
    )
    assert redis_pair[ours.__name__].opened_at == START


def test_redis_opened_at_written_by_pybreaker_is_read_alike(
    clocks: Clocks, redis_connect: Callable[..., Any], namespace: str
) -> None:
    client = redis_connect()
    mine = tripped(
        ours, ours.CircuitRedisStorage("closed", client, namespace=namespace)
    )
    other = theirs.CircuitBreaker(
        fail_max=1,
        reset_timeout=TIMEOUT,
        state_storage=theirs.CircuitRedisStorage("closed", client, namespace=namespace),
    )
    clocks.advance(3)
    other.open()  # pybreaker writes the later opened_at
    assert mine._state_storage.opened_at == other._state_storage.opened_at
    assert mine._state_storage.opened_at == START + datetime.timedelta(seconds=3)
    assert first_admitted(mine, ours, clocks) == TIMEOUT


@pytest.mark.parametrize("value", [None, "now", 0])
def test_redis_opened_at_must_be_a_datetime(
    redis_pair: dict[str, Any], value: object
) -> None:
    storage = redis_pair[ours.__name__]
    with pytest.raises(TypeError, match=r"opened_at must be a datetime\.datetime") as e:
        storage.opened_at = value
    assert repr(value) in str(e.value) and "or None" not in str(e.value)
    assert storage.opened_at is None  # nothing written


def test_redis_distant_opened_at(clocks: Clocks, redis_pair: dict[str, Any]) -> None:
    storage = redis_pair[ours.__name__]
    breaker = tripped(ours, storage)
    storage._redis.delete(storage._namespace("opened_at"))
    storage.opened_at = datetime.datetime(1, 1, 1)  # naive: UTC
    assert storage.opened_at == datetime.datetime(1, 1, 1, tzinfo=UTC)
    assert first_admitted(breaker, ours, clocks) == 0

    breaker = tripped(ours, storage)
    storage.opened_at = datetime.datetime.max  # pybreaker: OverflowError at the call
    with pytest.raises(ours.CircuitBreakerError) as info:
        breaker.call(ok)
    assert info.value.retry_after is not None and info.value.retry_after > 1e11
