"""What the modules under ``breaker`` use of the compat ``CircuitBreaker``.

The engines, the forms of protection and the states hold the breaker and
call back into it; they annotate it with ``Breaker`` instead of importing
``breaker``, which imports them. The breaker satisfies it structurally: mypy
checks that wherever it passes itself to them.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, TypeVar

T = TypeVar("T")


class Pump(Protocol):
    """The breaker's listener delivery, as the memory storage uses it."""

    def pump(self) -> None: ...


class TicketEngine(Protocol):
    """The breaker's engine, as the forms use it: give a ticket back."""

    def neutral(self, ticket: Any) -> None: ...


class Bindable(Protocol):
    """A decorated function that the breaker points at a path (``_rebind``)."""

    def bind(self, core: Any) -> None: ...


class Breaker(Protocol):
    """The compat ``CircuitBreaker`` as the modules under it see it."""

    @property
    def name(self) -> str | None: ...

    @property
    def fail_max(self) -> int: ...

    @property
    def reset_timeout(self) -> float: ...

    @property
    def success_threshold(self) -> int: ...

    @property
    def _throw_new_error_on_trip(self) -> bool: ...

    @property
    def _delivery(self) -> Pump: ...

    @property
    def _engine(self) -> TicketEngine: ...

    def is_system_error(self, exception: BaseException) -> bool: ...

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...

    # -- from the engines: a transition, and a change of path ---------------------

    def _state_event(self, old: str, new: str) -> None: ...

    def _rebind(self) -> None: ...

    # -- the Python path's protocol (see ``forms``) ---------------------------------

    def _register(self, protected: Bindable) -> None: ...

    def _start(self, func: Callable[..., Any], args: Any, kwargs: Any) -> Any: ...

    def _succeeded(self, ticket: Any) -> None: ...

    def _failed(self, ticket: Any, exc: BaseException) -> Exception | None: ...
