"""Locks that a fork must renew.

Only the forking thread survives a fork: a lock that another thread held at
that moment (between two bytecodes of its critical section) would stay held
forever in the child. ``LockRenewal(attribute)`` keeps a weak set of objects
and, in a forked child, gives each a new ``threading.Lock`` under that
attribute.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Callable


class LockRenewal:
    def __init__(
        self, attribute: str, factory: Callable[[], Any] = threading.Lock
    ) -> None:
        self._attribute = attribute
        self._factory = factory
        self._objects: weakref.WeakSet[Any] = weakref.WeakSet()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._renew)

    def add(self, obj: Any) -> None:
        self._objects.add(obj)

    def _renew(self) -> None:
        for obj in list(self._objects):
            setattr(obj, self._attribute, self._factory())
