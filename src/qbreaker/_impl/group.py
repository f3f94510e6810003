"""``BreakerGroup``: named breakers created lazily from shared defaults."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable

from .._errors import SharedSpaceError
from .._forksafe import LockRenewal
from .._metrics import BreakerSnapshot
from .._state import State
from .select import IMPLEMENTATION, CircuitBreaker

__all__ = ("BreakerGroup",)


class _Entry:
    """A breaker's place in the eviction ring (bounded groups only)."""

    __slots__ = ("name", "breaker", "seen")

    def __init__(self, name: str, breaker: CircuitBreaker) -> None:
        self.name = name
        self.breaker = breaker
        # sum(breaker.totals()) when the eviction hand last passed: a change
        # since then means the breaker was used, by any route.
        self.seen = 0


class _PyGroupHits:
    """The hit path of ``BreakerGroup``: the spec of the compiled core's.

    A lookup of an existing name is one dict lookup; a miss, or a name that
    is not exactly a str, goes through ``get()``. Each method inlines that
    hit path rather than calling a shared helper, saving a frame per call.
    """

    __slots__ = ("_breakers",)

    _breakers: dict[str, CircuitBreaker]

    def get(self, name: str) -> CircuitBreaker:  # pragma: no cover - overridden
        raise NotImplementedError

    def __getitem__(self, name: str) -> CircuitBreaker:
        breaker = self._breakers.get(name) if type(name) is str else None
        return self.get(name) if breaker is None else breaker

    def allow(self, name: str) -> bool:
        breaker = self._breakers.get(name) if type(name) is str else None
        return (self.get(name) if breaker is None else breaker).allow()

    def record_success(self, name: str) -> None:
        breaker = self._breakers.get(name) if type(name) is str else None
        (self.get(name) if breaker is None else breaker).record_success()

    def record_failure(self, name: str) -> None:
        breaker = self._breakers.get(name) if type(name) is str else None
        (self.get(name) if breaker is None else breaker).record_failure()


# The compiled core has the same hit path in C (qbreaker/_native/group.pxi):
# no Python frame per hit, and a compiled breaker's fast paths called inline.
# isort: off
if TYPE_CHECKING:
    _GroupHits = _PyGroupHits
elif IMPLEMENTATION == "cython":
    from .._core_c import GroupHits as _GroupHits
else:
    _GroupHits = _PyGroupHits
# isort: on


class BreakerGroup(_GroupHits):
    """Breakers by name, each created on first use from the group's defaults.

    ``BreakerGroup(**defaults)`` takes any ``CircuitBreaker`` keyword except
    ``name``, which is each breaker's key. ``get(name, **overrides)`` creates
    a breaker with ``{**defaults, **overrides}``; asking again for an existing
    name with overrides that give different settings is a ValueError, while
    ``get(name)`` and ``group[name]`` return whatever exists.

    Lookups take no lock. Creation takes one, so concurrent first use of a
    name builds exactly one breaker.

    ``max_breakers=N`` bounds the group for high-cardinality keys. Creating a
    breaker in a full group first evicts one that is closed, not forced, and
    idle: its totals are unchanged since the eviction hand last passed it, or
    since its creation. Any admitted, rejected or reported call is a use,
    whether made through the group or on a breaker you hold (a decorator);
    a bare lookup is not. The hand walks the breakers in a ring, in creation
    order, and moves a used one to the back, marked idle (a second chance:
    the CLOCK approximation of least recently used, which costs lookups and
    calls nothing). Open, half-open and forced breakers are never evicted,
    since their protection would be lost: when nothing can be evicted the
    group grows past N, and later creations shrink it back as breakers close
    and go idle. An evicted name starts afresh, its consecutive failures
    forgotten; a reference you still hold keeps working but is no longer the
    group's, so with a bound, look breakers up rather than keeping them.

    ``shared=True`` shares each breaker host-wide by its name. A name that
    finds no room for its segment gets a process-local breaker with the same
    settings instead, so no call fails for lack of shared memory; the group
    logs one warning per such episode, and names created once there is room
    again are shared again.

    ``fleet=True`` (with ``shared=True``, after ``qbreaker.fleet.connect()``)
    makes each shared breaker a fleet breaker; ``fleet_quorum``,
    ``fleet_max_failures`` and ``fleet_window`` are breaker defaults. A
    process-local stand-in (no room) is not one.
    """

    __slots__ = (
        "_defaults",
        "_max",
        "_shared",
        "_fleet",
        "_factory",
        "_overrides",
        "_ring",
        "_lock",
        "_out_of_space",
        "__weakref__",
    )

    def __init__(
        self,
        *,
        max_breakers: int | None = None,
        shared: bool = False,
        fleet: bool = False,
        _breaker_class: Callable[..., CircuitBreaker] | None = None,
        **defaults: Any,
    ) -> None:
        if not isinstance(shared, bool):
            raise TypeError(f"shared must be True or False, got {shared!r}")
        if "shared" in defaults or "shared_policy" in defaults:
            raise TypeError(
                "a BreakerGroup shares its breakers with shared=True (each by "
                "its name); shared=/shared_policy= are not breaker defaults here"
            )
        if not isinstance(fleet, bool):
            raise TypeError(f"fleet must be True or False, got {fleet!r}")
        if fleet and not shared:
            raise ValueError(
                "BreakerGroup(fleet=True) needs shared=True: fleet breakers are "
                "host-wide ones"
            )
        if fleet:
            from .methods import fleet_hooks

            fleet_hooks()  # before connect(): a clear error now, not at get()
        if max_breakers is not None:
            if isinstance(max_breakers, bool) or not isinstance(max_breakers, int):
                raise TypeError(
                    f"max_breakers must be None or an int in [1, inf), "
                    f"got {max_breakers!r} ({type(max_breakers).__name__})"
                )
            if max_breakers < 1:
                raise ValueError(
                    f"max_breakers must be None or an int in [1, inf), "
                    f"got {max_breakers!r}"
                )
        self._defaults = _settings("defaults", defaults)
        self._max = max_breakers
        self._shared = shared
        self._fleet = fleet
        self._factory = CircuitBreaker if _breaker_class is None else _breaker_class
        # Bad defaults fail here, with the breaker's own message, rather than
        # at some first lookup far from this line.
        self._factory(name="BreakerGroup defaults", **self._defaults)
        # Name to breaker, nothing else: a group of 100,000 costs little more
        # than its breakers. Overrides are kept only for names that had some.
        self._breakers: dict[str, CircuitBreaker] = {}
        self._overrides: dict[str, dict[str, Any]] = {}
        self._ring: deque[_Entry] = deque()  # the eviction order; bounded only
        self._lock = threading.Lock()
        self._out_of_space = False  # since the last warning, no segment fitted
        _groups.add(self)

    @property
    def max_breakers(self) -> int | None:
        return self._max

    def get(self, name: str, **overrides: Any) -> CircuitBreaker:
        """The breaker called ``name``, created now if it does not exist."""
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        if overrides:
            overrides = _settings("overrides", overrides)
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = self._create(name, overrides)
        if overrides and overrides != self._overrides.get(name):
            self._check_same(name, overrides)
        return breaker

    # group[name], allow(), record_success() and record_failure() are the
    # hit path, inherited from _GroupHits.

    def metrics(self) -> dict[str, BreakerSnapshot]:
        """A snapshot per breaker, each read at its own moment."""
        return {name: b.metrics() for name, b in list(self._breakers.items())}

    def __len__(self) -> int:
        return len(self._breakers)

    def __iter__(self) -> Iterator[str]:
        # A snapshot: names created while the caller iterates never break it.
        return iter(list(self._breakers))

    def __contains__(self, name: object) -> bool:
        return name in self._breakers

    def __repr__(self) -> str:
        bound = "" if self._max is None else f" max_breakers={self._max}"
        return (
            f"<BreakerGroup {len(self._breakers)} breakers{bound} {self._defaults!r}>"
        )

    def _create(self, name: str, overrides: dict[str, Any]) -> CircuitBreaker:
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is not None:  # another thread created it first
                return breaker
            # Built before evicting, so bad overrides evict nothing.
            settings = {**self._defaults, **overrides}
            if self._shared:
                breaker = self._shared_or_local(name, settings)
            else:
                breaker = self._factory(name=name, **settings)
            if self._max is not None:
                while len(self._breakers) >= self._max and self._evict_one():
                    pass
                self._ring.append(_Entry(name, breaker))
            if overrides:
                self._overrides[name] = overrides
            # Published last: a fork that cut this short leaves at worst a ring
            # entry that _evict_one discards (or a breaker the ring misses).
            self._breakers[name] = breaker
            return breaker

    def _shared_or_local(self, name: str, settings: dict[str, Any]) -> CircuitBreaker:
        # Under the creation lock.
        try:
            if self._fleet:
                breaker = self._factory(name=name, shared=name, fleet=True, **settings)
            else:
                breaker = self._factory(name=name, shared=name, **settings)
        except SharedSpaceError as exc:
            if not self._out_of_space:
                self._out_of_space = True
                from .._log import logger  # rare: logging loads only now

                logger.warning(
                    "BreakerGroup: no room for shared breaker %r, so it and "
                    "any other new name without room are process-local until "
                    "there is: %s",
                    name,
                    exc,
                )
            return self._factory(name=name, **settings)
        self._out_of_space = False
        return breaker

    def _evict_one(self) -> bool:
        """Evict the first idle, closed, unforced breaker; False if none.

        Two sweeps at most: the first may only clear the marks of used ones.
        """
        ring = self._ring
        for _ in range(2 * len(ring)):
            entry = ring.popleft()
            if self._breakers.get(entry.name) is not entry.breaker:
                continue
            breaker = entry.breaker
            activity = sum(breaker.totals())
            if activity != entry.seen:
                entry.seen = activity
            elif breaker.state == State.CLOSED and breaker.forced is None:
                del self._breakers[entry.name]
                self._overrides.pop(entry.name, None)
                return True
            ring.append(entry)
        return False

    def _check_same(self, name: str, overrides: dict[str, Any]) -> None:
        # Compare the effective settings, so restating a group default is fine.
        had = self._overrides.get(name, {})
        want = {**self._defaults, **overrides}
        have = {**self._defaults, **had}
        differ = sorted(
            key
            for key in want.keys() | have.keys()
            if key not in want or key not in have or not _same(want[key], have[key])
        )
        if differ:
            raise ValueError(
                f"breaker {name!r} already exists with different "
                f"{', '.join(differ)}: created with overrides {had!r}, "
                f"asked for {overrides!r}"
            )


def _same(a: object, b: object) -> bool:
    return a is b or bool(a == b)


def _settings(what: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    if "name" in kwargs:
        raise TypeError(
            f"name cannot be given in a BreakerGroup's {what}: "
            f"each breaker is named by its key, got name={kwargs['name']!r}"
        )
    exclude = kwargs.get("exclude")
    if isinstance(exclude, Iterator):
        # A generator would be used up by the first breaker built from it.
        kwargs = {**kwargs, "exclude": tuple(exclude)}
    return kwargs


# A creation lock held by another thread when this process forks is renewed
# in the child (see _forksafe).
_groups = LockRenewal("_lock")
