"""The breaker's Python-level API, written once for both cores.

None of this is on the closed-state hot path. The compiled class must *be*
the public class (CPython 3.11 specialises a C method call only when the
instance's type is exactly the method's class, so a Python subclass doubles
the cost of ``allow()``), so it cannot inherit a Python mixin: it defines
one-line methods that call the functions here. The twin inherits
``BreakerAPI``, whose methods are the same one-liners.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, NoReturn

from .._errors import CircuitOpenError
from .._outcomes import Hook, Options, make_options, run_hook
from .._policy import Policy, Seconds, make_policy
from .._validate import check_callable, check_choice, check_count, check_seconds
from . import segment, wrappers

if TYPE_CHECKING:
    from collections.abc import Awaitable, Coroutine
    from typing import ParamSpec, TypeVar

    from .._metrics import BreakerSnapshot, Metrics
    from .twin import CoreBreaker as _Base

    P = ParamSpec("P")
    R = TypeVar("R")
    F = TypeVar("F", bound=Callable[..., Any])
else:
    _Base = object

Clock = Callable[[], float]
Listener = Callable[[Any, Any, Any], object]

_anonymous = itertools.count(1)
# Guards name adoption and listener-tuple replacement: never held around
# user code, never taken on a protected call.
_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # Only the forking thread survives a fork: a lock another thread held at
    # that moment would stay held forever in the child.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Config(NamedTuple):
    """A breaker's settings, validated: what the constructor's keywords mean."""

    policy: Policy
    options: Options
    clock: Clock | None
    name: str | None
    on_state_change: Listener | None
    shared: str | None
    adopt: bool  # shared_policy="adopt"
    fleet: FleetOptions | None  # fleet=True


class FleetOptions(NamedTuple):
    """A fleet breaker's fleet rules (see qbreaker.fleet), validated."""

    quorum: int
    max_failures: int | None
    window_ms: int


class FleetHooks(NamedTuple):
    """What ``qbreaker.fleet.connect()`` provides to the layers below it:
    this module sits under the fleet package and cannot import it."""

    # A new fleet breaker's cell; True if this process created its segment.
    register: Callable[[str, FleetOptions, bool], None]
    view: Callable[[str], Any]  # its fleet view for metrics(), or None


_fleet_hooks: FleetHooks | None = None


def provide_fleet_hooks(hooks: FleetHooks | None) -> None:
    """Called by qbreaker.fleet.connect() (and with None by disconnect())."""
    global _fleet_hooks
    _fleet_hooks = hooks


def fleet_hooks() -> FleetHooks:
    """The fleet's hooks; a clear error before qbreaker.fleet.connect()."""
    if _fleet_hooks is None:
        raise ValueError(
            "fleet=True needs qbreaker.fleet.connect(url, namespace=...) "
            "first, in this process, before the breaker is constructed"
        )
    return _fleet_hooks


# Longest fleet window: a window is a ring of 10 buckets in Redis.
FLEET_WINDOW_LIMIT = 3600.0
FLEET_COUNT_LIMIT = 1_000_000


def make_config(
    *,
    max_failures: int | None = 5,
    reset_timeout: Seconds = 60.0,
    half_open_max: int = 3,
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
    failure_rate_threshold: float | None = None,
    slow_call_rate_threshold: float | None = None,
    slow_call_duration: Seconds | None = None,
    window_size: int | None = None,
    window_seconds: Seconds | None = None,
    minimum_calls: int | None = None,
    shared: str | None = None,
    shared_policy: str = "match",
    fleet: bool = False,
    fleet_quorum: int = 2,
    fleet_max_failures: int | None = None,
    fleet_window: Seconds = 10.0,
) -> Config:
    """The constructor's keywords (its parameters, in order), validated once."""
    if clock is not None and not callable(clock):
        raise TypeError(
            f"clock must be a callable returning seconds, like time.monotonic, "
            f"got {clock!r}"
        )
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str or None, got {name!r}")
    check_callable("on_state_change", on_state_change)
    check_choice("shared_policy", shared_policy, _SHARED_POLICIES)
    policy = make_policy(
        max_failures,
        reset_timeout,
        half_open_max,
        success_threshold,
        half_open_timeout,
        failure_rate_threshold,
        slow_call_rate_threshold,
        slow_call_duration,
        window_size,
        window_seconds,
        minimum_calls,
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
    fleet_options = make_fleet_options(
        fleet, shared, fleet_quorum, fleet_max_failures, fleet_window
    )
    return Config(
        policy,
        options,
        clock,
        name,
        on_state_change,
        shared,
        shared_policy == "adopt",
        fleet_options,
    )


def make_fleet_options(
    fleet: object,
    shared: str | None,
    quorum: object,
    max_failures: object,
    window: object,
) -> FleetOptions | None:
    """The fleet keywords, validated; None without ``fleet=True``."""
    if not isinstance(fleet, bool):
        raise TypeError(f"fleet must be True or False, got {fleet!r}")
    checked_quorum = check_count("fleet_quorum", quorum, FLEET_COUNT_LIMIT)
    checked_burst = None
    if max_failures is not None:
        checked_burst = check_count(
            "fleet_max_failures", max_failures, FLEET_COUNT_LIMIT
        )
    seconds = check_seconds("fleet_window", window, zero_ok=False)
    if not 0.01 <= seconds <= FLEET_WINDOW_LIMIT:
        raise ValueError(
            f"fleet_window must be in [0.01, {FLEET_WINDOW_LIMIT:g}] seconds, "
            f"got {window!r}"
        )
    if not fleet:
        return None
    if shared is None:
        raise ValueError(
            "fleet=True needs shared=NAME: a fleet breaker is a host-wide "
            "breaker whose host agent talks to the fleet (fleet=True, "
            "shared=None given)"
        )
    return FleetOptions(checked_quorum, checked_burst, round(seconds * 1000))


_SHARED_POLICIES = {
    "match": "refuse a segment with another policy",
    "adopt": "use the segment's",
}
#: The constructor's parameters in order: the compiled ``__init__`` passes
#: its arguments to ``init`` by position.
#: (Read from the code object: inspect.signature would import inspect and re
#: at startup; make_config takes keyword-only parameters and no ``**``.)
PARAMETERS = make_config.__code__.co_varnames[: make_config.__code__.co_kwonlyargcount]


def init(b: Any, *arguments: Any) -> None:
    """The compiled ``__init__``: its arguments, in the order of PARAMETERS."""
    configure(b, make_config(**dict(zip(PARAMETERS, arguments))))


def configure(b: Any, config: Config) -> None:
    """Give a new breaker its settings; a shared one its segment's cell.

    A core that cannot share memory refuses ``shared`` before calling this.
    """
    # Before the segment is made: fleet=True before connect() changes nothing.
    hooks = None if config.fleet is None else fleet_hooks()
    if config.shared is None:
        b._configure(config.policy, config.clock, config.options, config.name)
    else:
        opened = segment.attach(b, config.shared, config.policy, config.adopt)
        b._configure(
            opened.policy,
            config.clock,
            config.options,
            config.name or config.shared,
            shared=opened.buffer,
        )
        if hooks is not None and config.fleet is not None:
            hooks.register(config.shared, config.fleet, opened.created)
    if config.on_state_change is not None:
        b._listeners = (config.on_state_change,)


def name(b: Any) -> str:
    if b._name is None:
        with _lock:  # itertools.count is not atomic without the GIL
            if b._name is None:
                b._name = f"breaker-{next(_anonymous)}"
    return b._name  # type: ignore[no-any-return]


def adopt_name(b: Any, qualname: str) -> None:
    with _lock:
        if b._name is None:
            b._name = qualname


def add_listener(b: Any, listener: Listener) -> None:
    if not callable(listener):
        raise TypeError(f"listener must be callable, got {listener!r}")
    with _lock:
        b._listeners = (*b._listeners, listener)


def remove_listener(b: Any, listener: Listener) -> None:
    with _lock:
        current = list(b._listeners)
        if listener not in current:
            raise ValueError(f"{listener!r} is not a listener of {b!r}")
        current.remove(listener)
        b._listeners = tuple(current)


def open_error(b: Any) -> CircuitOpenError:
    return CircuitOpenError._rejection(name(b), b.state, b.retry_after, b)


def raise_open(b: Any) -> None:
    if b._options.on_reject is not None:
        run_hook(b._options.on_reject, b)
    raise open_error(b)


def rejected(b: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A rejected call's result: the fallback's, or CircuitOpenError."""
    options = b._options
    if options.on_reject is not None:
        run_hook(options.on_reject, b)
    if options.fallback is None:
        raise open_error(b)
    return options.fallback(*args, **kwargs)


def observe(b: Any, metrics: Metrics) -> bool:
    # Metrics loads on first use: its dataclasses import inspect and re.
    from .._metrics import Metrics

    if not isinstance(metrics, Metrics):
        raise TypeError(f"metrics must be a qbreaker.Metrics, got {metrics!r}")
    b._last_observation = metrics
    options = b._options
    policy = b.policy
    # Without thresholds of its own, observe() judges by the window policy's:
    # one meaning of "too many errors" and "too slow" per breaker.
    rate_limit = options.error_rate_threshold
    if rate_limit is None and policy.failure_rate_threshold:
        rate_limit = policy.failure_rate_threshold
    latency_limit = options.latency_threshold
    if latency_limit is None and policy.slow_ticks:
        latency_limit = policy.slow_ticks / 1000
    crossed = (
        rate_limit is not None
        and metrics.error_rate is not None
        and metrics.error_rate >= rate_limit
    ) or (
        latency_limit is not None
        and metrics.latency is not None
        and metrics.latency >= latency_limit
    )
    return bool(crossed) and bool(b._trip())


def metrics(b: Any) -> BreakerSnapshot:
    from .._metrics import BreakerSnapshot

    totals = b.totals()
    calls, failures, slow = b._window_sums()
    shared_name = segment.name_of(b)
    hooks = _fleet_hooks
    return BreakerSnapshot(
        name=name(b),
        state=b.state,
        forced=b.forced,
        generation=b.generation,
        consecutive_failures=b.consecutive_failures,
        allowed=totals.allowed,
        rejected=totals.rejected,
        successes=totals.successes,
        failures=totals.failures,
        neutral=totals.neutral,
        transitions=totals.transitions,
        retry_after=b.retry_after,
        time_in_state=b.time_in_state,
        last_observation=b._last_observation,
        failure_rate=failures / calls if calls else 0.0,
        slow_call_rate=slow / calls if calls else 0.0,
        calls_in_window=calls,
        shared=shared_name,
        opens=totals.opens,
        fleet=None if hooks is None or shared_name is None else hooks.view(shared_name),
    )


def describe(b: Any) -> str:
    p = b.policy
    return (
        f"<{type(b).__name__} {b._name or '(unnamed)'!r} {b.state} "
        f"max_failures={p.max_failures} reset_timeout={p.reset_ticks / 1000} "
        f"half_open_max={p.half_open_max} generation={b.generation}>"
    )


def refuse_copy(b: Any) -> NoReturn:
    raise TypeError(
        f"a {type(b).__name__} cannot be copied: a copy would either share "
        f"the breaker's state or silently start a new closed one; construct "
        f"another breaker with the same settings, or share this one"
    )


class BreakerAPI(_Base):
    """The twin's copy of the one-liners the compiled class defines."""

    __slots__ = ()

    @property
    def name(self) -> str:
        """Given at construction, else the first decorated function's
        qualified name, else a generated ``breaker-N``."""
        return name(self)

    def _adopt_name(self, qualname: str) -> None:
        adopt_name(self, qualname)

    @property
    def listeners(self) -> tuple[Listener, ...]:
        return self._listeners

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(breaker, old_state, new_state)`` on each transition."""
        add_listener(self, listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``; ValueError if it was not added."""
        remove_listener(self, listener)

    def _raise_open(self) -> None:
        raise_open(self)

    def _rejected(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return rejected(self, args, kwargs)

    def __call__(self, fn: F) -> F:
        """Use the breaker as a decorator, on any kind of function."""
        return wrappers.decorate(self, fn)

    def call_async(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, R]:
        """Await ``fn(*args, **kwargs)`` under the breaker."""
        return wrappers.call_async(self, fn, *args, **kwargs)

    def _guard_async(self, fn: Any) -> Any:
        """``fn``, a coroutine function, wrapped so that each call returns an
        awaitable that runs it under the breaker."""
        return wrappers.guard_async(self, fn)

    def observe(self, metrics: Metrics) -> bool:
        """Record an observation; trip a closed breaker if it crosses a threshold.

        From the closed state (not forced), it opens the breaker when
        ``error_rate >= error_rate_threshold`` or ``latency >=
        latency_threshold`` (thresholds that are None never trip). In any
        other state it only records. Returns True if this call opened it.
        """
        return observe(self, metrics)

    def metrics(self) -> BreakerSnapshot:
        """A snapshot of the state and totals (read field by field)."""
        return metrics(self)

    def __repr__(self) -> str:
        return describe(self)

    def __copy__(self) -> NoReturn:
        refuse_copy(self)

    def __deepcopy__(self, memo: object) -> NoReturn:
        refuse_copy(self)
