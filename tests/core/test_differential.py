"""Hypothesis: random operation sequences give identical results on both twins.

After every operation the return value (tickets included), the raw state
word and the totals must be equal. Policies, clock origins (near every wrap
point) and time steps are random too.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qbreaker._impl import twin as _core_py

from ..helpers import FakeClock

pytestmark = [pytest.mark.c_extension, pytest.mark.hypothesis]

_COMMON = [
    st.tuples(st.just("allow")),
    st.tuples(st.just("acquire")),
    st.tuples(st.just("record_success")),
    # Failures twice as often: trips, and so every later state, stay common.
    st.tuples(st.just("record_failure")),
    st.tuples(st.just("record_failure")),
    st.tuples(
        st.just("release"), st.integers(0, 30), st.sampled_from([True, False, None])
    ),
    # A measured duration: slow (>= slow_call_duration) or not, or none.
    st.tuples(
        st.just("release_timed"),
        st.integers(0, 30),
        st.sampled_from([True, False]),
        st.integers(0, 12),
    ),
    st.tuples(st.just("advance"), st.integers(0, 9)),
    st.tuples(st.just("advance"), st.integers(0, 9)),
]
# reset and force_* end whatever the sequence was building towards, so they
# come rarely: as often as all the rest they would keep the breaker forced
# most of the time and hide the open and half-open paths.
_RARE = [
    st.tuples(st.just("renormalize")),
    st.tuples(st.just("reset")),
    st.tuples(st.just("force_open")),
    st.tuples(st.just("force_closed")),
]
# Explicit opens and the fleet agent's operations, on a generation that one
# of the last three open_for calls returned (by index) or, with none yet, the
# current one.
_EXPLICIT = [
    st.tuples(st.just("open_for"), st.integers(1, 12)),
    st.tuples(st.just("_extend_open"), st.integers(0, 30), st.integers(1, 12)),
    st.tuples(st.just("_expire_open"), st.integers(0, 30)),
    st.tuples(st.just("_close_if"), st.integers(0, 30)),
    st.tuples(st.just("_word_view")),
]
OPS = st.one_of(*(_COMMON * 6), *_RARE, *_EXPLICIT)

# Windows small enough that rotation, minimum_calls and every threshold are
# reached within a sequence: count windows of a few outcomes, time windows of
# a few ms (each bucket >= 1 ms).
WINDOWS = st.one_of(
    st.just({}),
    st.fixed_dictionaries(
        {
            "window_size": st.integers(1, 40),
            "failure_rate_threshold": st.sampled_from([0.1, 0.25, 0.5, 1.0]),
        }
    ),
    st.fixed_dictionaries(
        {
            "window_seconds": st.integers(2, 40).map(lambda ms: ms / 1000),
            "failure_rate_threshold": st.sampled_from([0.2, 0.5, 0.75]),
            "slow_call_rate_threshold": st.sampled_from([0.3, 1.0]),
            "slow_call_duration": st.integers(1, 8).map(lambda ms: ms / 1000),
            "minimum_calls": st.integers(1, 5),
        }
    ),
)

POLICIES = st.fixed_dictionaries(
    {
        "max_failures": st.integers(1, 3),
        "reset_timeout": st.integers(1, 6).map(lambda ms: ms / 1000),
        "half_open_max": st.integers(1, 3),
        "success_threshold": st.one_of(st.none(), st.integers(1, 4)),
        "half_open_timeout": st.one_of(
            st.none(), st.integers(1, 6).map(lambda ms: ms / 1000)
        ),
    }
)

# Durations and steps of a few ms make every boundary (elapsed == timeout)
# likely. Clock origins in ms: plain, negative, and just below each field's wrap.
ORIGINS = st.sampled_from(
    [0, 1_000_000, -7_000, (1 << 28) - 50, (1 << 44) - 50, (1 << 64) - 50]
)


def _compiled_class() -> type:
    from qbreaker import _core_c

    return _core_c.CircuitBreaker  # type: ignore[no-any-return]


def _apply(
    b: Any,
    op: tuple[Any, ...],
    tickets: list[int],
    clock: FakeClock,
    generations: list[int] | None = None,
) -> Any:
    name = op[0]
    if name == "open_for":
        generation = b.open_for(op[1] / 1000)
        if generation and generations is not None:
            generations.append(generation)
        return generation
    if name in ("_extend_open", "_expire_open", "_close_if"):
        if generations:  # mostly the latest, which may still be current
            generation = generations[-1 - op[1] % min(3, len(generations))]
        else:
            generation = b._word_view()[1] or 1
        return getattr(b, name)(generation, *(o / 1000 for o in op[2:]))
    if name == "advance":
        clock.advance(op[1] / 1000)
        return None
    if name == "release":
        if not tickets:
            return "no ticket"
        b.release(tickets[op[1] % len(tickets)], op[2])
        return None
    if name == "release_timed":
        if not tickets:
            return "no ticket"
        b.release(tickets[op[1] % len(tickets)], op[2], duration=op[3] / 1000)
        return None
    result = getattr(b, name)()
    if name == "acquire" and result:
        tickets.append(result)
    return result


@settings(
    max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    policy=POLICIES,
    window=WINDOWS,
    origin=ORIGINS,
    ops=st.lists(OPS, min_size=20, max_size=100),
)
def test_twins_agree(
    policy: dict[str, Any],
    window: dict[str, Any],
    origin: int,
    ops: list[tuple[Any, ...]],
) -> None:
    policy = {**policy, **window}
    clock_c, clock_py = FakeClock(origin / 1000), FakeClock(origin / 1000)
    c = _compiled_class()(clock=clock_c, **policy)
    py = _core_py.CircuitBreaker(clock=clock_py, **policy)
    tickets_c: list[int] = []
    tickets_py: list[int] = []
    generations_c: list[int] = []
    generations_py: list[int] = []
    for step, op in enumerate(ops):
        got_c = _apply(c, op, tickets_c, clock_c, generations_c)
        got_py = _apply(py, op, tickets_py, clock_py, generations_py)
        where = f"step {step}: {op}"
        assert got_c == got_py, where
        assert c._word == py._word, where
        assert c.totals() == py.totals(), where
        assert c._word_view() == py._word_view(), where
        assert c.retry_after == py.retry_after, where
        assert c._window_sums() == py._window_sums(), where
        assert (c.state, c.forced, c.generation, c.consecutive_failures) == (
            py.state,
            py.forced,
            py.generation,
            py.consecutive_failures,
        ), where


@settings(max_examples=100, deadline=None)
@given(policy=POLICIES, ops=st.lists(OPS, min_size=20, max_size=80))
def test_invariants(policy: dict[str, Any], ops: list[tuple[Any, ...]]) -> None:
    """Properties of the specification itself, on the twin."""
    clock = FakeClock()
    b = _core_py.CircuitBreaker(clock=clock, **policy)
    tickets: list[int] = []
    generations: list[int] = []
    last_gen, transitions = 0, 0
    for op in ops:
        before, previous = b._word, b.totals()
        _apply(b, op, tickets, clock, generations)
        t = b.totals()
        # Opens are some of the transitions; one that ends open (a new head,
        # state open) counted one. An open_for that extends makes none.
        new_opens = t.opens - previous.opens
        assert 0 <= new_opens <= t.transitions - previous.transitions, op
        if b._word & 3 == 1 and (b._word ^ before) & 0xFFFFF:
            assert new_opens >= 1, op
        gen_step = (b.generation - last_gen) % (1 << 18)
        transitions += gen_step
        last_gen = b.generation
        assert t.transitions == transitions
        w = b._word
        if w & 3 == 2:  # half-open: never more probes in flight than allowed
            assert (w >> 20) & 0xFF <= b.half_open_max
            assert (w >> 28) & 0xFF < b.success_threshold
        if w & 3 == 0 and b.max_failures:
            assert b.consecutive_failures < b.max_failures


@pytest.mark.parametrize("seed", range(40))
def test_long_random_walks_agree(seed: int) -> None:
    """Seeded walks of 3,000 steps: deterministic depth next to hypothesis' breadth."""
    import random

    rng = random.Random(seed)
    policy = {
        "max_failures": rng.randint(1, 3),
        "reset_timeout": rng.randint(1, 6) / 1000,
        "half_open_max": rng.randint(1, 3),
        "success_threshold": rng.choice([None, 1, 2, 3, 4]),
        "half_open_timeout": rng.choice([None, rng.randint(1, 6) / 1000]),
    }
    if seed % 3 == 1:
        policy.update(window_size=rng.randint(1, 40), failure_rate_threshold=0.5)
    elif seed % 3 == 2:
        policy.update(
            window_seconds=rng.randint(2, 40) / 1000,
            failure_rate_threshold=rng.choice([0.3, 0.6]),
            slow_call_rate_threshold=0.5,
            slow_call_duration=rng.randint(1, 6) / 1000,
            minimum_calls=rng.randint(1, 6),
        )
        if seed % 2:
            policy["max_failures"] = None
    origin = rng.choice([0, -7_000, (1 << 28) - 500, (1 << 44) - 500])
    clock_c, clock_py = FakeClock(origin / 1000), FakeClock(origin / 1000)
    c = _compiled_class()(clock=clock_c, **policy)
    py = _core_py.CircuitBreaker(clock=clock_py, **policy)
    tickets_c: list[int] = []
    tickets_py: list[int] = []
    generations_c: list[int] = []
    generations_py: list[int] = []
    weights = {
        "allow": 3,
        "acquire": 3,
        "record_success": 3,
        "record_failure": 4,
        "release": 5,
        "release_timed": 3,
        "advance": 5,
        "renormalize": 1,
        "reset": 0.2,
        "force_open": 0.1,
        "force_closed": 0.1,
        "open_for": 0.5,
        "_extend_open": 0.3,
        "_expire_open": 0.3,
        "_close_if": 0.3,
        "_word_view": 0.2,
    }
    names, w = list(weights), list(weights.values())
    for step in range(3000):
        name = rng.choices(names, w)[0]
        if name == "advance":
            op: tuple[Any, ...] = (name, rng.randint(0, 8))
        elif name == "release":
            op = (name, rng.randint(0, 1 << 30), rng.choice([True, False, None]))
        elif name == "release_timed":
            op = (name, rng.randint(0, 1 << 30), rng.random() < 0.5, rng.randint(0, 9))
        elif name == "open_for":
            op = (name, rng.randint(1, 12))
        elif name == "_extend_open":
            op = (name, rng.randint(0, 1 << 30), rng.randint(1, 12))
        elif name in ("_expire_open", "_close_if"):
            op = (name, rng.randint(0, 1 << 30))
        else:
            op = (name,)
        got = (
            _apply(c, op, tickets_c, clock_c, generations_c),
            _apply(py, op, tickets_py, clock_py, generations_py),
        )
        assert got[0] == got[1], (step, op)
        assert c._word == py._word, (step, op)
        assert c.totals() == py.totals(), (step, op)
        assert c._word_view() == py._word_view(), (step, op)
        assert c._window_sums() == py._window_sums(), (step, op)
        if len(tickets_c) > 64:  # keep old tickets around, but not all of them
            del tickets_c[:32], tickets_py[:32]
