"""Standard-library modules loaded at their first use.

``import qbreaker`` should cost a service's start and a command-line call only
what they use. ``inspect`` and ``pickle`` pull in ``re``, ``ast``, ``dis`` and
more, and the package needs them only to decorate a function, to drive an
awaitable or to refuse pickling.
"""

from __future__ import annotations

import sys
from typing import Any


class LazyModule:
    """Stands in for the module ``name`` until an attribute is first read.

    That read imports the module (under the import lock, so concurrent first
    reads are safe) and keeps the attribute on this object, so later reads
    cost what reading a module's attribute costs: no import on any later call.
    """

    def __init__(self, name: str) -> None:
        self._module_name = name

    def __getattr__(self, attribute: str) -> Any:
        __import__(self._module_name)
        value = getattr(sys.modules[self._module_name], attribute)
        setattr(self, attribute, value)
        return value

    def __repr__(self) -> str:
        return f"<{self._module_name}, loaded on first use>"
