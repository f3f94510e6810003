"""tenacity: wait out a breaker's rejection, within the retry's budget.

Put the breaker inside the retry, so that each attempt is one call the
breaker counts. A rejection then reaches the retry as a ``CircuitOpenError``;
either do not retry it (leave it out of ``retry=``: every integration's
rejection is outside the library errors a retry usually names), or retry it
after its ``retry_after`` with ``wait_retry_after``, and bound the whole
retry with ``tenacity.stop_before_delay(budget)``, which stops *before* a
wait that would end past the budget. A forced-open breaker's
``retry_after`` is infinite, so that stop always ends the retry there. Never
use ``wait_retry_after`` without such a stop: nothing else stops a wait that
is longer than the caller can afford.

``import qbreaker`` does not import this module, and this module imports
without tenacity (``pip install "qbreaker[tenacity]"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Union

from .._errors import CircuitOpenError
from ._common import library_class, require

# The module imports without tenacity (the package's import checks import
# every module); wait_retry_after() then raises an ImportError naming the
# extra.
if TYPE_CHECKING:
    import tenacity
    from tenacity import RetryCallState

    _WaitBase = tenacity.wait.wait_base
    Wait = Union[tenacity.wait.wait_base, Callable[[RetryCallState], float]]
else:
    _WaitBase = library_class("tenacity.wait", "wait_base", extra="tenacity")

__all__ = ("wait_retry_after",)


class wait_retry_after(_WaitBase):  # noqa: N801 - tenacity's style
    """Wait a rejection's ``retry_after``; after any other failure, wait as
    ``fallback`` says (by default not at all).

    ``wait=wait_retry_after(tenacity.wait_exponential_jitter(0.1, 2))``
    keeps the usual backoff for the backend's errors and, after a
    rejection, waits until the breaker admits a probe.
    """

    def __init__(self, fallback: Wait | None = None) -> None:
        tenacity = require("tenacity", extra="tenacity")
        if fallback is not None and not callable(fallback):
            raise TypeError(
                f"fallback must be a tenacity wait (a callable of the retry "
                f"state returning seconds) or None, got {fallback!r}"
            )
        self.fallback = tenacity.wait_none() if fallback is None else fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        if outcome is not None and outcome.failed:
            error = outcome.exception()
            if isinstance(error, CircuitOpenError):
                return error.retry_after
        return float(self.fallback(retry_state))
