"""The twins mirror each other: same layout, same API, same docstrings."""

from __future__ import annotations

import inspect
import re

import pytest

from qbreaker import _word
from qbreaker._impl import twin as _core_py

pytestmark = pytest.mark.c_extension


def test_layout_constants_match(core_c) -> None:  # type: ignore[no-untyped-def]
    assert core_c.LAYOUT == _word.LAYOUT


def test_docstring_documents_the_layout() -> None:
    doc = _word.__doc__ or ""
    line = re.search(r"Constants \(shift, width\):(.*?)\n\n", doc, re.S)
    assert line, "the layout's constants line is missing from _word's docstring"
    documented = dict(
        (name, (int(shift), int(bits)))
        for name, shift, bits in re.findall(
            r"([A-Z_]+) \((\d+), (\d+)\)", line.group(1)
        )
    )
    fields = {k[: -len("_SHIFT")] for k in _word.LAYOUT if k.endswith("_SHIFT")}
    assert set(documented) == fields
    for name, (shift, bits) in documented.items():
        assert _word.LAYOUT[f"{name}_SHIFT"] == shift, name
        assert _word.LAYOUT[f"{name}_BITS"] == bits, name
    # The table's rows agree with the constants too.
    for name, shift, bits in [
        ("state", "STATE_SHIFT", "STATE_BITS"),
        ("generation", "GEN_SHIFT", "GEN_BITS"),
        ("failures", "FAIL_SHIFT", "FAIL_BITS"),
        ("opened_at", "OPENED_SHIFT", "OPENED_BITS"),
        ("in_flight", "INFLIGHT_SHIFT", "INFLIGHT_BITS"),
        ("successes", "HSUCC_SHIFT", "HSUCC_BITS"),
        ("entered_at", "ENTERED_SHIFT", "ENTERED_BITS"),
    ]:
        lo = _word.LAYOUT[shift]
        hi = lo + _word.LAYOUT[bits] - 1
        assert re.search(rf"\n    {lo}-{hi}\s+{name}\s", doc), name


def test_fields_tile_the_word() -> None:
    L = _word.LAYOUT
    assert L["STATE_SHIFT"] + L["STATE_BITS"] == L["GEN_SHIFT"]
    head = L["GEN_SHIFT"] + L["GEN_BITS"]
    for field in ("FAIL", "OPENED", "INFLIGHT"):
        assert L[f"{field}_SHIFT"] == head
    assert L["OPENED_SHIFT"] + L["OPENED_BITS"] == 64
    assert L["INFLIGHT_SHIFT"] + L["INFLIGHT_BITS"] == L["HSUCC_SHIFT"]
    assert L["HSUCC_SHIFT"] + L["HSUCC_BITS"] == L["ENTERED_SHIFT"]
    assert L["ENTERED_SHIFT"] + L["ENTERED_BITS"] == 64
    assert L["FAIL_SHIFT"] + L["FAIL_BITS"] < L["FORCED_KIND_SHIFT"]


# The twin's stand-ins for the C struct's fields, and helpers that are cdef
# functions (invisible from Python) in the compiled core.
_TWIN_ONLY = (
    "_cell",
    "_policy",
    "_clock",
    "_configured",
    "_now",
    "_deliver",
    "_settle",
    "_slow",
    "_events",  # a plain pointer in the compiled core, made on first need
    "_probes",  # likewise
)

# Shared-memory plumbing: the twin refuses shared=, so it has no slot.
_COMPILED_ONLY = ("_slot", "_forked")


def _api(cls: type) -> dict[str, str]:
    names = [n for n in dir(cls) if not n.startswith("__")]
    return {n: inspect.getdoc(getattr(cls, n)) or "" for n in names}


def test_same_methods_and_docstrings(core_c) -> None:  # type: ignore[no-untyped-def]
    c_api, py_api = _api(core_c.CircuitBreaker), _api(_core_py.CircuitBreaker)
    # Private storage of the twin's stand-in for the C struct.
    py_api = {k: v for k, v in py_api.items() if k not in _TWIN_ONLY}
    c_api = {k: v for k, v in c_api.items() if k not in _COMPILED_ONLY}
    assert sorted(c_api) == sorted(py_api)
    for name in c_api:
        # embedsignature=True puts "Class.method(args)" on the first line.
        c_doc = re.sub(r"^CircuitBreaker\.\w+\(.*?\)\n*", "", c_api[name])
        # A ``cdef public`` attribute's doc is its declaration, "name: type".
        c_doc = re.sub(r"^\w+: \w+$", "", c_doc)
        assert c_doc == py_api[name], name


def test_the_compiled_core_is_compiled(core_c) -> None:  # type: ignore[no-untyped-def]
    assert core_c.__file__.endswith((".so", ".pyd"))
    assert type(core_c.CircuitBreaker.allow).__name__ == "method_descriptor"


def test_probe_bookkeeping_sits_above_the_ticket_base() -> None:
    L = _word.LAYOUT
    assert _word.PROBE_SHIFT == L["TICKET_GEN_BITS"] + L["STATE_BITS"] + 1
    assert _word.TICKET_BASE == _word.BASE_FIELD
    # The tracked bit and the probe number fit below bit 63, which the
    # compiled core's with-blocks use to mark a timed ticket.
    assert _word.PROBE_SHIFT + _word.PROBE_BITS == 62
    assert _word.TRACKED == 1 << 62 and _word.TICKET_MAX == (1 << 63) - 1


# What the integrations, exporters and the fleet agent code against: on both
# cores, by these names (test_same_methods_and_docstrings checks the rest).
COORDINATION_API = ("open_for", "_extend_open", "_expire_open", "_close_if",
                    "_word_view")  # fmt: skip


@pytest.mark.parametrize("name", COORDINATION_API)
def test_coordination_api_on_both_cores(core_c, name: str) -> None:  # type: ignore[no-untyped-def]
    assert callable(getattr(core_c.CircuitBreaker, name))
    assert callable(getattr(_core_py.CircuitBreaker, name))


def test_opens_is_a_total_and_a_metric() -> None:
    from qbreaker import Totals
    from qbreaker._impl.shared_scan import SharedBreakerInfo
    from qbreaker._metrics import BreakerSnapshot

    assert Totals._fields[-1] == "opens"
    assert "opens" in BreakerSnapshot.__dataclass_fields__
    assert "opens" in SharedBreakerInfo.__dataclass_fields__


def test_the_opens_word_is_free_header_space() -> None:
    from qbreaker._impl import segment_format as fmt

    # After the longest name, before the cell, on its own aligned word.
    assert fmt.NAME_OFFSET + 4 + fmt.NAME_LIMIT <= fmt.OPENS_OFFSET
    assert fmt.OPENS_OFFSET + 8 == fmt.HEADER_SIZE and fmt.OPENS_OFFSET % 8 == 0


def test_full_generation_is_the_tickets() -> None:
    w = _word.open_word(5, 1234)
    for t in (0, 4, 5, 7, 1 << 18, (1 << 18) + 5, (1 << 30) + 3):
        assert _word.full_generation(t, w) == _word.ticket_of(t, w) >> 3
    assert _word.full_generation((1 << 18) + 5, w) == (1 << 18) + 5
