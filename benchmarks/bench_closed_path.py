"""Closed state, success path, in every form: what every protected call pays.

Subjects (``qbreaker._cli.bench.scenarios``): ``bare f()``; the floor's pair,
ticket pair and trivial ``with``; for the compiled class and the twin the
``allow()``+``record_success()`` pair, ``acquire()``+``release()``, ``with``,
the decorator and ``call(f)``; pybreaker ``call(f)`` and decorator,
circuitbreaker ``@circuit``, purgatory ``with`` and decorator.
"""

from __future__ import annotations

from _common import scenario_test
from qbreaker._cli.bench.scenarios import CLOSED

test_closed = scenario_test(CLOSED)
