"""The package's exceptions.

A leaf: it imports nothing of qbreaker at run time.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._state import State

# State.HALF_OPEN's value (the word's state bits), compared without importing
# the enum: this module stays a leaf.
_HALF_OPEN = 2


class BreakerError(Exception):
    """Base class of every exception qbreaker raises on its own account."""


# BaseException's own args slot, read and written past the lazy property.
_base_args = BaseException.__dict__["args"]

# The one argument of an error made by ``_rejection()``, until something
# reads its args: compared by identity, so no value a caller passes is taken
# for it.
_PENDING = object()


class CircuitOpenError(BreakerError):
    """A call was rejected without running.

    ``retry_after`` is the number of seconds until the breaker can admit a
    probe: 0.0 when it is half-open with every probe slot busy, ``math.inf``
    when it is forced open (until ``reset()``).

    A fresh instance is raised each time: a shared, re-raised instance would
    grow its ``__traceback__`` on every rejection.
    """

    # No __slots__ here: a slotted layout cannot be combined with OSError's,
    # and the requests integration's rejection is both this and a
    # requests.RequestException (an OSError). The cores raise _Rejection
    # (below), which has them.
    #
    # _breaker: the breaker that raised it, so that a call protected by that
    # same breaker can tell its own rejection (a nested call) from a
    # backend's error. Not pickled: in another process no breaker is the
    # same one.

    name: str
    state: State
    retry_after: float
    _breaker: object

    def __init__(self, name: str, state: State, retry_after: float) -> None:
        self.name = name
        self.state = state
        self.retry_after = retry_after
        self._breaker = None
        super().__init__(_message(name, state, retry_after))

    @classmethod
    def _rejection(
        cls, name: str, state: State, retry_after: float, breaker: object
    ) -> CircuitOpenError:
        """The error a rejection raises: what ``__init__`` makes, with
        ``_breaker`` set, built without running ``__init__`` and with its
        message formatted only when read (``str()``, ``repr()``, ``args``).
        A ``_Rejection``; the compiled core builds the same object in C."""
        error = _Rejection.__new__(_Rejection, _PENDING)
        error.name = name
        error.state = state
        error.retry_after = retry_after
        error._breaker = breaker
        return error

    @property
    def args(self) -> tuple[object, ...]:
        args: tuple[object, ...] = _base_args.__get__(self)
        if len(args) == 1 and args[0] is _PENDING:
            args = (_message(self.name, self.state, self.retry_after),)
            _base_args.__set__(self, args)
        return args

    @args.setter
    def args(self, value: tuple[object, ...]) -> None:
        _base_args.__set__(self, value)

    def __str__(self) -> str:
        self.args  # noqa: B018 - formats a pending message
        return BaseException.__str__(self)

    def __repr__(self) -> str:
        self.args  # noqa: B018 - formats a pending message
        return BaseException.__repr__(self)

    def __reduce__(self) -> tuple[type[CircuitOpenError], tuple[str, State, float]]:
        return type(self), (self.name, self.state, self.retry_after)


class _Rejection(CircuitOpenError):
    """The CircuitOpenError that the cores raise on a rejection.

    The same error, with its fields in slots: setting them on a plain
    CircuitOpenError allocates an instance dict, which made a raising
    rejection cost 2.1x a bare raise from C instead of 1.8x (measured in one
    run, ``python -m qbreaker bench``'s open-raise rows). It is named, shown,
    caught and pickled as a CircuitOpenError (it unpickles as one); only
    ``type(error) is CircuitOpenError`` tells them apart.
    """

    __slots__ = ("name", "state", "retry_after", "_breaker")

    def __reduce__(self) -> tuple[type[CircuitOpenError], tuple[str, State, float]]:
        return CircuitOpenError, (self.name, self.state, self.retry_after)


# Tracebacks and reprs show the public name: this is an implementation detail
# of how the error is stored, not another kind of error.
_Rejection.__name__ = _Rejection.__qualname__ = "CircuitOpenError"


def _message(name: str, state: State, retry_after: float) -> str:
    if math.isinf(retry_after):
        return f"circuit breaker {name!r} is forced open until reset()"
    if state == _HALF_OPEN:
        return (
            f"circuit breaker {name!r} is half-open and every probe slot is "
            f"busy; retry when a probe reports"
        )
    return f"circuit breaker {name!r} is open; retry after {retry_after:.3f} s"


class SharedStateError(ValueError):
    """A segment that cannot be used: wrong owner, mode, layout or policy."""


class SharedSpaceError(SharedStateError):
    """No room for a new segment (or to back an existing one) in the directory."""
