"""qbreaker: a lock-free circuit breaker for Python services."""

import logging as _logging

from ._errors import BreakerError, CircuitOpenError
from ._impl.group import BreakerGroup
from ._impl.select import IMPLEMENTATION, CircuitBreaker
from ._impl.twin import CircuitBreaker as PyCircuitBreaker
from ._metrics import BreakerSnapshot, Metrics
from ._state import State, Totals
from ._version import __version__

# A library logs, the application decides where it goes: without this, every
# transition would reach stderr through logging's last-resort handler.
_logging.getLogger("qbreaker").addHandler(_logging.NullHandler())


def __getattr__(name: str) -> object:
    # qbreaker.shared on first use: most processes never map a segment.
    if name == "shared":
        import importlib

        return importlib.import_module(".shared", __name__)
    raise AttributeError(f"module 'qbreaker' has no attribute {name!r}")


def get_include() -> str:
    """The directory of ``_core_c.pxd`` and its C headers, for Cython users."""
    import os

    return os.path.dirname(__file__)


__all__ = (
    "IMPLEMENTATION",
    "BreakerError",
    "BreakerGroup",
    "BreakerSnapshot",
    "CircuitBreaker",
    "CircuitOpenError",
    "Metrics",
    "PyCircuitBreaker",
    "State",
    "Totals",
    "__version__",
    "get_include",
)
