"""BreakerGroup lookup among 100,000 names, and memory per breaker.

``group-lookup``: ``group[name]`` for names spread over a group of
``GROUP_NAMES`` breakers created beforehand, against a plain dict's lookup on
the same names and the loop alone. ``memory``: bytes per breaker over
``MEMORY_INSTANCES`` instances (tracemalloc; names excluded), bare and in a
BreakerGroup for qbreaker, bare for each peer; the timing is the creation
under tracemalloc, of no interest, and the bytes are in ``extra_info``.

With ``--benchmark-disable`` (the smoke run) both use 1,000 names, so the
smoke run stays quick.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from _common import measure
from qbreaker._cli.bench.measure import (
    GROUP_NAMES,
    MEMORY_INSTANCES,
    bytes_per_breaker,
    bytes_per_group_entry,
    group_lookup_loops,
    peer_factory,
)
from qbreaker._cli.bench.subjects import PEERS, PY, C, Unavailable, breaker_class

SMOKE_N = 1_000
LOOKUPS = 1_000


def _size(benchmark: BenchmarkFixture, full: int) -> int:
    return SMOKE_N if benchmark.disabled else full


@pytest.fixture(scope="module")
def groups() -> Iterator[dict[tuple[str, int], Any]]:
    """Groups by (family, size), built once: 100,000 twins take seconds."""
    cache: dict[tuple[str, int], Any] = {}
    yield cache
    cache.clear()


LOOKUP_SUBJECTS = [
    (C, "empty loop"),
    (C, "dict d[name]"),
    (C, "group[name]"),
    (PY, "group[name]"),
]


@pytest.mark.parametrize(
    ("family", "what"),
    LOOKUP_SUBJECTS,
    ids=[w if w != "group[name]" else f"{f} {w}" for f, w in LOOKUP_SUBJECTS],
)
def test_group_lookup(
    benchmark: BenchmarkFixture,
    groups: dict[tuple[str, int], Any],
    family: str,
    what: str,
) -> None:
    n = _size(benchmark, GROUP_NAMES)
    try:
        cls = breaker_class(family)
    except Unavailable as exc:
        pytest.skip(str(exc))
    key = (family, n)
    if key not in groups:
        _, group, names = bytes_per_group_entry(cls, n)
        groups[key] = (group, names)
    group, names = groups[key]
    picked, loops = group_lookup_loops(group, names, LOOKUPS)
    subject = f"{family} {what}" if what == "group[name]" else what
    measure(benchmark, "group-lookup", subject, loops[what], loops=len(picked))
    benchmark.extra_info["names"] = n


@pytest.mark.parametrize("family", [C, PY, *PEERS])
def test_memory(benchmark: BenchmarkFixture, family: str) -> None:
    n = _size(benchmark, MEMORY_INSTANCES)
    try:
        if family in (C, PY):
            cls = breaker_class(family)

            def make(name: str) -> Any:
                return cls(name=name)

        else:
            make = peer_factory(family)
    except Unavailable as exc:
        pytest.skip(str(exc))
    found: dict[str, float] = {}

    def run() -> None:
        found["bytes_per_breaker"] = bytes_per_breaker(make, n)
        if family in (C, PY):
            found["bytes_per_breaker_in_group"] = bytes_per_group_entry(cls, n)[0]

    benchmark.group = "memory"
    benchmark.extra_info.update(subject=family, loops=n, instances=n)
    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(found)
    assert 0 < found["bytes_per_breaker"] < 100_000
