"""qbreaker: a lock-free circuit breaker for Python services."""

from typing import TYPE_CHECKING

from ._errors import BreakerError, CircuitOpenError
from ._impl.select import IMPLEMENTATION, CircuitBreaker
from ._state import State, Totals
from ._version import __version__

if TYPE_CHECKING:
    from . import fleet as fleet
    from . import shared as shared
    from ._impl.group import BreakerGroup
    from ._impl.twin import CircuitBreaker as PyCircuitBreaker
    from ._metrics import BreakerSnapshot, Metrics

# Loaded on first use: most processes never map a segment, build a group,
# use the twin beside the compiled core or read metrics (whose dataclasses
# import inspect and re). The qbreaker logger gets its NullHandler when
# something first logs (qbreaker._log).
_LAZY = {
    "BreakerSnapshot": ("._metrics", "BreakerSnapshot"),
    "Metrics": ("._metrics", "Metrics"),
    "shared": (".shared", None),
    "fleet": (".fleet", None),
    "BreakerGroup": ("._impl.group", "BreakerGroup"),
    "PyCircuitBreaker": ("._impl.twin", "CircuitBreaker"),
}


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'qbreaker' has no attribute {name!r}")
    import importlib

    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name, __name__)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
