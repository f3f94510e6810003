"""The public breaker class, built on whichever core ``_core`` selected.

Hot methods (allow/record/acquire/release, ``with``, ``call``) belong to the
core class; this layer adds construction, names, listeners, metrics and the
async and generator forms, none of which sit on the closed-state path.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Callable

from . import _core_py, _forms
from ._core import CoreBreaker
from ._errors import CircuitOpenError
from ._metrics import BreakerSnapshot, Metrics
from ._options import Hook, make_options, run_hook
from ._settings import TICKS_PER_SECOND, Seconds, make_policy

if TYPE_CHECKING:
    from collections.abc import Awaitable, Coroutine
    from typing import ParamSpec, TypeVar

    P = ParamSpec("P")
    R = TypeVar("R")
    F = TypeVar("F", bound=Callable[..., Any])
    _Base = _core_py.CoreBreaker
else:
    _Base = object

Clock = Callable[[], float]
Listener = Callable[[Any, Any, Any], object]

_anonymous = itertools.count(1)
# Guards listener-tuple replacement only: never held around user code.
_listeners_lock = threading.Lock()


class _BreakerAPI(_Base):
    __slots__ = ()

    def __init__(
        self,
        max_failures: int | None = 5,
        reset_timeout: Seconds = 60.0,
        half_open_max: int = 3,
        *,
        success_threshold: int | None = None,
        half_open_timeout: Seconds | None = None,
        name: str | None = None,
        exclude: Iterable[type[BaseException]] = (),
        is_failure: Callable[[BaseException], object] | None = None,
        is_failure_result: Callable[[Any], object] | None = None,
        fallback: Callable[..., Any] | None = None,
        on_state_change: Listener | None = None,
        on_success: Hook | None = None,
        on_failure: Hook | None = None,
        on_reject: Hook | None = None,
        error_rate_threshold: float | None = None,
        latency_threshold: Seconds | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__()
        if clock is not None and not callable(clock):
            raise TypeError(
                f"clock must be a callable returning seconds, like "
                f"time.monotonic, got {clock!r}"
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {name!r}")
        if on_state_change is not None and not callable(on_state_change):
            raise TypeError(
                f"on_state_change must be callable or None, got {on_state_change!r}"
            )
        policy = make_policy(
            max_failures,
            reset_timeout,
            half_open_max,
            success_threshold,
            half_open_timeout,
        )
        options = make_options(
            exclude,
            is_failure,
            is_failure_result,
            fallback,
            on_success,
            on_failure,
            on_reject,
            error_rate_threshold,
            latency_threshold,
        )
        self._configure(policy, clock, options, name)
        if on_state_change is not None:
            self._listeners = (on_state_change,)

    # -- settings -----------------------------------------------------------

    @property
    def name(self) -> str:
        """Given at construction, else the first decorated function's
        qualified name, else a generated ``breaker-N``."""
        if self._name is None:
            self._adopt_name(f"breaker-{next(_anonymous)}")
        return self._name  # type: ignore[return-value]

    def _adopt_name(self, name: str) -> None:
        with _listeners_lock:
            if self._name is None:
                self._name = name

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

    # -- listeners ----------------------------------------------------------

    @property
    def listeners(self) -> tuple[Listener, ...]:
        return self._listeners

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(breaker, old_state, new_state)`` on each transition."""
        if not callable(listener):
            raise TypeError(f"listener must be callable, got {listener!r}")
        with _listeners_lock:
            self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Listener) -> None:
        with _listeners_lock:
            current = list(self._listeners)
            if listener not in current:
                raise ValueError(f"{listener!r} is not a listener of {self!r}")
            current.remove(listener)
            self._listeners = tuple(current)

    # -- rejection ------------------------------------------------------------

    def _open_error(self) -> CircuitOpenError:
        return CircuitOpenError(self.name, self.state, self.retry_after)

    def _raise_open(self) -> None:
        if self._options.on_reject is not None:
            run_hook(self._options.on_reject, self)
        raise self._open_error()

    def _rejected(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """A rejected call's result: the fallback's, or CircuitOpenError."""
        options = self._options
        if options.on_reject is not None:
            run_hook(options.on_reject, self)
        if options.fallback is None:
            raise self._open_error()
        return options.fallback(*args, **kwargs)

    # -- forms that need Python -----------------------------------------------

    def __call__(self, fn: F) -> F:
        """Use the breaker as a decorator, on any kind of function."""
        return _forms.decorate(self, fn)

    def call_async(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, R]:
        """Await ``fn(*args, **kwargs)`` under the breaker."""
        return _forms.call_async(self, fn, *args, **kwargs)

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- adaptive hook and metrics ---------------------------------------------

    def observe(self, metrics: Metrics) -> bool:
        """Record an observation; trip a closed breaker if it crosses a threshold.

        From the closed state (not forced), it opens the breaker when
        ``error_rate >= error_rate_threshold`` or ``latency >=
        latency_threshold`` (thresholds that are None never trip). In any
        other state it only records. Returns True if this call opened it.
        """
        if not isinstance(metrics, Metrics):
            raise TypeError(f"observe() takes a qbreaker.Metrics, got {metrics!r}")
        self._last_observation = metrics
        options = self._options
        rate_limit, latency_limit = (
            options.error_rate_threshold,
            options.latency_threshold,
        )
        crossed = (
            rate_limit is not None
            and metrics.error_rate is not None
            and metrics.error_rate >= rate_limit
        ) or (
            latency_limit is not None
            and metrics.latency is not None
            and metrics.latency >= latency_limit  # type: ignore[operator]
        )
        return bool(crossed) and self._trip()

    def metrics(self) -> BreakerSnapshot:
        totals = self.totals()
        return BreakerSnapshot(
            name=self.name,
            state=self.state,
            forced=self.forced,
            generation=self.generation,
            consecutive_failures=self.consecutive_failures,
            allowed=totals.allowed,
            rejected=totals.rejected,
            successes=totals.successes,
            failures=totals.failures,
            neutral=totals.neutral,
            transitions=totals.transitions,
            retry_after=self.retry_after,
            time_in_state=self.time_in_state,
            last_observation=self._last_observation,
        )

    def __repr__(self) -> str:
        p = self.policy
        return (
            f"<{type(self).__name__} {self._name or '(unnamed)'!r} {self.state} "
            f"max_failures={p.max_failures} reset_timeout={self.reset_timeout} "
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
