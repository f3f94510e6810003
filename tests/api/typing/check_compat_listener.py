"""Checked by ``mypy --strict`` in tests/test_compat_pybreaker_layers.py, never
executed.

A listener written against pybreaker's API, with its callbacks annotated with
the breaker class itself, overrides the drop-in's listener without a type
error, and may use all of the breaker. A ``# type: ignore[...]`` line marks a
call that must NOT type-check (under --strict an unneeded ignore is an error).
"""

from __future__ import annotations

from typing import Any, Callable, assert_type

import qbreaker.compat.pybreaker as pybreaker


class Audit(pybreaker.CircuitBreakerListener):
    def before_call(
        self,
        cb: pybreaker.CircuitBreaker,
        func: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        assert_type(cb.listeners, tuple[pybreaker.CircuitBreakerListener, ...])

    def failure(self, cb: pybreaker.CircuitBreaker, exc: BaseException) -> None:
        cb.add_excluded_exception(KeyError)

    def success(self, cb: pybreaker.CircuitBreaker) -> None:
        assert_type(cb.success_counter, int)

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        assert_type(cb.current_state, str)
        assert_type(new_state.name, str)


breaker = pybreaker.CircuitBreaker(listeners=[Audit()], name="typing")
breaker.add_listener(Audit())
assert_type(pybreaker.CircuitOpenState(breaker).name, str)
pybreaker.CircuitOpenState(object())  # type: ignore[arg-type]
