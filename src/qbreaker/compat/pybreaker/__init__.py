"""pybreaker 1.4.1's API on qbreaker's lock-free core: a one-line migration.

    import qbreaker.compat.pybreaker as pybreaker

Code written against pybreaker's documented API runs unchanged: the same
names, arguments, defaults, attributes, messages and listener callbacks,
the memory and Redis storages (the Redis keys are pybreaker's, so both
libraries can share one Redis while a fleet migrates), and the Tornado
``call_async``.

What is better:

- No lock is held across the protected call. pybreaker holds an RLock
  around every call, so the threads that share a breaker run its calls one
  at a time; here they run at once. What pybreaker's lock guaranteed still
  holds: counters are exact, exactly one trial call runs at a time in
  half-open, the failure of a call admitted before the breaker opened (or
  was opened, half-opened or closed by hand) is not counted after it, and
  listener callbacks never run concurrently with each other.
- With the memory storage, the state is a ``qbreaker.CircuitBreaker`` (the
  compiled core when it is built): ``call()`` and decorated functions run
  the core's compiled path, about ten times faster than pybreaker's.
- ``await breaker.call_async(fn, ...)`` works with asyncio, and the
  decorator works on ``async def`` functions, counting each call when it
  completes (pybreaker returns the coroutine uncounted).
- ``CircuitBreakerError.retry_after``: seconds until a trial call can be
  admitted.

What is different:

- A call that arrives while a trial call runs in half-open is rejected at
  once with ``CircuitBreakerError`` (``retry_after`` 0.0); pybreaker makes
  it wait for the lock, then runs it in whatever state the trial left.
- ``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit`` (a protected
  generator closed before its end) and ``asyncio.CancelledError`` do not
  count: neither failure nor success, and a trial call that ends with one
  gives its slot back. pybreaker counts them as failures.
- ``call()`` takes the function positionally, as pybreaker documents it
  (``call(func=f)`` is a TypeError on the compiled path).
- Setting ``breaker.state = "open"`` (or another state) makes that
  transition, like ``open()``; pybreaker only replaced a cached object.
- ``reset_timeout`` is kept to the millisecond, at most about 18.6 hours;
  ``success_threshold`` at most 255. ``reset_timeout`` 0 still lets the very
  next call through.
- A storage's ``opened_at`` may be naive: it is read as UTC (pybreaker's
  memory storage makes the next call while open a TypeError). Anything but
  a datetime (or None, memory storage only) is a TypeError when set. The
  Redis storage stores an aware ``opened_at`` of another zone as its
  instant; pybreaker stores its wall-clock time as if it were UTC.
- Transitions are logged on the ``qbreaker`` logger, as for any qbreaker
  breaker.
"""

from __future__ import annotations

import importlib.util

from .base import (
    STATE_CLOSED,
    STATE_HALF_OPEN,
    STATE_OPEN,
    CircuitBreakerError,
    CircuitBreakerState,
    CircuitBreakerStorage,
    CircuitClosedState,
    CircuitHalfOpenState,
    CircuitOpenState,
)
from .breaker import CircuitBreaker, CircuitBreakerListener
from .memory import CircuitMemoryStorage
from .redis_storage import CircuitRedisStorage

#: As in pybreaker: whether the optional dependencies are importable.
HAS_TORNADO_SUPPORT = importlib.util.find_spec("tornado") is not None
HAS_REDIS_SUPPORT = importlib.util.find_spec("redis") is not None

__all__ = (
    "CircuitBreaker",
    "CircuitBreakerListener",
    "CircuitBreakerError",
    "CircuitMemoryStorage",
    "CircuitRedisStorage",
    "STATE_OPEN",
    "STATE_CLOSED",
    "STATE_HALF_OPEN",
    "CircuitBreakerState",
    "CircuitBreakerStorage",
    "CircuitClosedState",
    "CircuitHalfOpenState",
    "CircuitOpenState",
    "HAS_REDIS_SUPPORT",
    "HAS_TORNADO_SUPPORT",
)
