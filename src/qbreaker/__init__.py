"""qbreaker: a lock-free circuit breaker for Python services."""

from ._breaker import CircuitBreaker, PyCircuitBreaker
from ._core import IMPLEMENTATION
from ._state import State, Totals
from ._version import __version__

__all__ = (
    "IMPLEMENTATION",
    "CircuitBreaker",
    "PyCircuitBreaker",
    "State",
    "Totals",
    "__version__",
)
