"""The public breaker class, built on whichever core ``_core`` selected."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from . import _core_py
from ._core import CoreBreaker
from ._settings import TICKS_PER_SECOND, Seconds, make_policy

if TYPE_CHECKING:
    _Base = _core_py.CoreBreaker
else:
    _Base = object

Clock = Callable[[], float]


class _BreakerAPI(_Base):
    """The Python layer: construction and settings. No hot method lives here."""

    __slots__ = ()

    def __init__(
        self,
        max_failures: int | None = 5,
        reset_timeout: Seconds = 60.0,
        half_open_max: int = 3,
        *,
        success_threshold: int | None = None,
        half_open_timeout: Seconds | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__()
        if clock is not None and not callable(clock):
            raise TypeError(
                f"clock must be a callable returning seconds, like "
                f"time.monotonic, got {clock!r}"
            )
        policy = make_policy(
            max_failures,
            reset_timeout,
            half_open_max,
            success_threshold,
            half_open_timeout,
        )
        self._configure(policy, clock)

    @property
    def max_failures(self) -> int:
        return self.policy.max_failures

    @property
    def reset_timeout(self) -> float:
        """Seconds, as validated and rounded to the millisecond."""
        return self.policy.reset_ticks / TICKS_PER_SECOND

    @property
    def half_open_max(self) -> int:
        return self.policy.half_open_max

    @property
    def success_threshold(self) -> int:
        return self.policy.success_threshold

    @property
    def half_open_timeout(self) -> float:
        """Seconds, as validated and rounded to the millisecond."""
        return self.policy.half_open_timeout_ticks / TICKS_PER_SECOND

    def __repr__(self) -> str:
        p = self.policy
        return (
            f"<{type(self).__name__} {self.state} max_failures={p.max_failures} "
            f"reset_timeout={self.reset_timeout} "
            f"half_open_max={p.half_open_max} generation={self.generation}>"
        )


class CircuitBreaker(_BreakerAPI, CoreBreaker):
    """A circuit breaker: closed, open and half-open, lock-free.

    ``CircuitBreaker(max_failures=5, reset_timeout=60.0, half_open_max=3)``;
    see the README for every setting.
    """

    __slots__ = ()


class PyCircuitBreaker(_BreakerAPI, _core_py.CoreBreaker):
    """The same breaker on the pure-Python twin, whatever core is loaded."""

    __slots__ = ()
