"""FastAPI: fail a route fast when a dependency it cannot do without is open.

``Depends(require(breaker))`` (or ``require("name", group=group)``) checks the
breaker before the route runs and raises ``CircuitOpenError`` when it is open
or forced open; ``qbreaker.integrations.starlette.install(app)`` turns that
into a 503 with ``Retry-After``. The check only reads the breaker: it takes no
ticket, counts nothing and never moves an open breaker to half-open, so the
route's own protected call still decides which request becomes the probe.

FastAPI itself is not imported here: a dependency is a plain callable.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from .._errors import CircuitOpenError

if TYPE_CHECKING:
    from .._impl.group import BreakerGroup
    from .._impl.select import CircuitBreaker

__all__ = ("check", "require")


def check(breaker: CircuitBreaker) -> None:
    """Raise ``CircuitOpenError`` if ``breaker`` would reject a call now.

    Open with time left, or forced open: rejected. Closed, half-open (a
    probe slot may be free) or open past its timeout (the next call is the
    probe): admitted. Reads only.
    """
    retry_after = breaker.retry_after
    if retry_after > 0.0:
        raise CircuitOpenError(breaker.name, breaker.state, retry_after)


def require(
    breaker_or_name: CircuitBreaker | str,
    *,
    group: BreakerGroup | None = None,
) -> Callable[[], Coroutine[Any, Any, CircuitBreaker]]:
    """A FastAPI dependency that rejects the request while the breaker is open.

    Give a breaker, or a name and the ``group`` it lives in: a name is looked
    up on every request, so a bounded group may evict and recreate it freely.
    The dependency's value is the breaker, for the route to use.
    """
    if isinstance(breaker_or_name, str):
        if group is None:
            raise TypeError(
                f"require({breaker_or_name!r}) needs group=, the BreakerGroup "
                f"the name belongs to (or pass the breaker itself)"
            )
        if not callable(getattr(group, "get", None)):
            raise TypeError(f"group must be a BreakerGroup, got {group!r}")
        name, named_group = breaker_or_name, group

        async def require_named() -> CircuitBreaker:
            breaker = named_group[name]
            check(breaker)
            return breaker

        return require_named
    if group is not None:
        raise TypeError("group= is for a breaker given by name; a breaker was given")
    if not callable(getattr(breaker_or_name, "acquire", None)):
        raise TypeError(
            f"breaker_or_name must be a CircuitBreaker or a breaker's name (a "
            f"str, with group=), got {breaker_or_name!r}"
        )
    breaker = breaker_or_name

    async def require_breaker() -> CircuitBreaker:
        check(breaker)
        return breaker

    return require_breaker
