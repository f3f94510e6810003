"""What a breaker keeps, and where: its size, its name, and the settings
most breakers leave at their defaults (kept aside, in the compiled core's
extras, which the collector must still see)."""

from __future__ import annotations

import gc
import sys
import sysconfig
import time
import weakref
from typing import Any

import pytest

from qbreaker import State

from ..helpers import FakeClock, Impl


class Owner:
    """Keeps a breaker whose settings refer back to the owner: a cycle."""

    def __init__(self, impl: Impl, via: str) -> None:
        self.changes: list[Any] = []
        if via == "listener":
            self.breaker = impl.Breaker(1, 60, 1, on_state_change=self.changed)
        elif via == "added listener":
            self.breaker = impl.Breaker(1, 60, 1)
            self.breaker.add_listener(self.changed)
        else:
            self.breaker = impl.Breaker(1, 60, 1, clock=self.now)

    def changed(self, breaker: Any, old: Any, new: Any) -> None:
        self.changes.append(new)

    def now(self) -> float:
        return time.monotonic()


@pytest.mark.parametrize("via", ["listener", "added listener", "clock"])
def test_cycles_through_kept_settings_are_collected(impl: Impl, via: str) -> None:
    owner = Owner(impl, via)
    owner.breaker.record_failure()
    assert owner.breaker.state is State.OPEN
    ref = weakref.ref(owner.breaker)
    del owner
    gc.collect()
    assert ref() is None, "a breaker in a cycle through its own settings leaked"


def test_kept_settings_read_back(impl: Impl, clock: FakeClock) -> None:
    def listener(*args: Any) -> None:
        pass

    b = impl.Breaker(exclude=(KeyError,), clock=clock, on_state_change=listener)
    assert b._options.exclude == (KeyError,)
    assert b._listeners == (listener,)
    plain = impl.Breaker()
    assert plain._options.exclude == ()
    assert plain._listeners == ()
    b.remove_listener(listener)
    assert b._listeners == ()


def test_name_is_kept_and_checked(impl: Impl) -> None:
    b = impl.Breaker(name="payments")
    assert b.name == "payments"
    other = impl.Breaker()
    assert other.name.startswith("breaker-")
    assert other.name is other.name  # generated once
    b._name = "renamed"
    assert b.name == "renamed"
    del b
    gc.collect()


@pytest.mark.c_extension
@pytest.mark.skipif(
    bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    reason="the free-threaded object header is larger",
)
def test_compiled_breaker_takes_208_bytes() -> None:
    """The layout's budget: 208 bytes with the collector's header, so a
    breaker in a group of 100,000 (whose dict adds about 38 bytes a name)
    stays within 256."""
    from qbreaker._core_c import CircuitBreaker

    for b in (
        CircuitBreaker(),
        CircuitBreaker(name="svc-000001"),
        CircuitBreaker(5, 1.0),
    ):
        assert sys.getsizeof(b) == 208
        assert gc.is_tracked(b)
    with pytest.raises(TypeError, match="name must be a str or None"):
        CircuitBreaker()._name = 5
