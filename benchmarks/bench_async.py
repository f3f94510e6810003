"""Closed state, success path, around an ``await``.

The pair around ``await f()``, the async decorator, ``call_async`` and
``async with``, against aiobreaker, circuitbreaker's async ``@circuit`` and
purgatory's ``async with``. No event loop: every coroutine here completes
without suspending, so a round is one ``send(None)`` (``subjects.drive``),
and a loop's scheduling cost does not drown the breaker's.
"""

from __future__ import annotations

from _common import scenario_test
from qbreaker._cli.bench.scenarios import CLOSED_ASYNC

test_closed_async = scenario_test(CLOSED_ASYNC)
