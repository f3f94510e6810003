"""The fleet rules one by one, on both backends: the in-memory spec and the Lua scripts.

Every test takes ``backend`` and runs twice: on ``MemoryBackend`` (the
specification) and on ``RedisBackend`` against the session's redis-server
(marked ``fleet``; skipped with the reason where no redis-server can run).
Time is injected (``time_ms``): nothing here sleeps.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import pytest

from qbreaker.fleet._protocol import (
    EVENTS_PER_READ,
    BreakerDelta,
    FleetState,
    PolicyConflict,
    SyncRequest,
    Verdict,
    key_prefix,
)
from qbreaker.fleet.spec import MemoryBackend

from .helpers import T0, Host, delta, policy


def hosts(backend: Any, count: int = 3) -> list[Host]:
    return [Host(backend, f"h{i}") for i in range(1, count + 1)]


# -- quorum --------------------------------------------------------------------


def test_quorum_of_two_hosts_opens(backend: Any) -> None:
    pol = policy(quorum=2)
    h1, h2, _ = hosts(backend)
    first = h1.sync(T0, delta("db", pol, tripped=True))
    assert first.states == (FleetState("db", "closed", 0, 0, (), ""),)
    assert first.version == 0 and not first.duplicate
    second = h2.sync(T0 + 100, delta("db", pol, tripped=True))
    assert second.states == (
        FleetState("db", "open", 1, pol.reset_timeout_ms, ("h1", "h2"), "quorum"),
    )
    assert second.version == 1
    assert second.epoch == first.epoch


def test_quorum_of_one_means_any_host(backend: Any) -> None:
    pol = policy(quorum=1)
    (h1,) = hosts(backend, 1)
    state = h1.sync(T0, delta("db", pol, tripped=True)).states[0]
    assert (state.state, state.reason, state.tripped_by) == ("open", "quorum", ("h1",))


def test_quorum_counts_trips_within_reset_timeout_only(backend: Any) -> None:
    pol = policy(quorum=2, reset_timeout_ms=1_000)
    h1, h2, h3 = hosts(backend)
    h1.sync(T0, delta("db", pol, tripped=True))
    # Exactly reset_timeout later, h1's report has lapsed.
    assert h2.sync(T0 + 1_000, delta("db", pol, tripped=True)).states[0].state == (
        "closed"
    )
    state = h3.sync(T0 + 1_999, delta("db", pol, tripped=True)).states[0]
    assert (state.state, state.tripped_by) == ("open", ("h2", "h3"))


def test_one_bad_host_never_opens_the_fleet(backend: Any) -> None:
    # Quorum 2 and a failure rate: h1 fails all its calls and trips again and
    # again, the other hosts succeed; the fleet stays closed.
    pol = policy(quorum=2, failure_rate=0.5, minimum_calls=10)
    h1, h2, h3 = hosts(backend)
    for step in range(20):
        now = T0 + step * 200
        bad = h1.sync(now, delta("db", pol, calls=5, failures=5, tripped=True))
        h2.sync(now, delta("db", pol, calls=20, successes=20))
        h3.sync(now, delta("db", pol, calls=20, successes=20))
        assert bad.states[0].state == "closed", step
    assert backend.view(time_ms=T0 + 4_000)[0].generation == 0


def test_a_report_of_the_same_host_twice_is_one_host(backend: Any) -> None:
    pol = policy(quorum=2)
    (h1,) = hosts(backend, 1)
    h1.sync(T0, delta("db", pol, tripped=True))
    assert h1.sync(T0 + 1, delta("db", pol, tripped=True)).states[0].state == "closed"


# -- burst -------------------------------------------------------------------------


def test_burst_opens_on_failures_without_success_fleet_wide(backend: Any) -> None:
    pol = policy(max_failures=5, quorum=10)
    h1, h2, _ = hosts(backend)
    assert h1.sync(T0, delta("db", pol, calls=3, failures=3)).states[0].state == (
        "closed"
    )
    state = h2.sync(T0 + 10, delta("db", pol, calls=2, failures=2)).states[0]
    assert (state.state, state.reason, state.tripped_by) == ("open", "burst", ("h2",))


def test_burst_needs_no_success_in_the_window(backend: Any) -> None:
    pol = policy(max_failures=5, quorum=10)
    h1, h2, _ = hosts(backend)
    h1.sync(T0, delta("db", pol, calls=4, failures=3, successes=1))
    assert h2.sync(T0 + 10, delta("db", pol, calls=9, failures=9)).states[0].state == (
        "closed"
    )
    # The success leaves the ring window_ms later (10 buckets of 1 s), and
    # with it the failures of that bucket: 9 + 5 failures in the window now.
    later = T0 + 10_000 + 10
    state = h1.sync(later, delta("db", pol, calls=5, failures=5)).states[0]
    assert (state.state, state.reason) == ("open", "burst")


def test_failures_out_of_the_window_do_not_count(backend: Any) -> None:
    pol = policy(max_failures=5, quorum=10, window_ms=1_000)
    (h1,) = hosts(backend, 1)
    h1.sync(T0, delta("db", pol, calls=4, failures=4))
    assert h1.sync(T0 + 1_000, delta("db", pol, calls=4, failures=4)).states[
        0
    ].state == ("closed")
    # Within the window: 4 + 1 = 5.
    assert h1.sync(T0 + 1_900, delta("db", pol, calls=1, failures=1)).states[
        0
    ].state == ("open")


def test_buckets_are_whole_milliseconds(backend: Any) -> None:
    # window_ms // 10 = 100 ms a bucket (not 100.5): 999 ms later is 9
    # buckets on, still in the ring.
    pol = policy(max_failures=5, quorum=10, window_ms=1_005)
    (h1,) = hosts(backend, 1)
    h1.sync(T0, delta("db", pol, calls=4, failures=4))
    state = h1.sync(T0 + 999, delta("db", pol, calls=1, failures=1)).states[0]
    assert state.state == "open"


def test_time_going_back_counts_into_the_newest_bucket(backend: Any) -> None:
    pol = policy(max_failures=5, quorum=10, window_ms=1_000)
    (h1,) = hosts(backend, 1)
    h1.sync(T0 + 5_000, delta("db", pol, calls=2, failures=2))
    # A failover to a clock 4 s behind: counted with the newest bucket...
    assert h1.sync(T0 + 1_000, delta("db", pol, calls=2, failures=2)).states[
        0
    ].state == ("closed")
    # ... so they leave the ring with it, not 4 s before it: 2 + 2 + 1.
    state = h1.sync(T0 + 5_950, delta("db", pol, calls=1, failures=1)).states[0]
    assert (state.state, state.reason) == ("open", "burst")


# -- rates ---------------------------------------------------------------------------


def test_failure_rate_waits_for_minimum_calls(backend: Any) -> None:
    pol = policy(failure_rate=0.5, minimum_calls=10, quorum=10)
    h1, h2, _ = hosts(backend)
    assert h1.sync(T0, delta("db", pol, calls=5, failures=5)).states[0].state == (
        "closed"
    )
    state = h2.sync(T0 + 1, delta("db", pol, calls=5, successes=5)).states[0]
    # 5 of 10 is the threshold itself: it opens, as the local rate rule does.
    assert (state.state, state.reason) == ("open", "failure_rate")


def test_failure_rate_below_threshold_stays_closed(backend: Any) -> None:
    pol = policy(failure_rate=0.5, minimum_calls=10, quorum=10)
    (h1,) = hosts(backend, 1)
    state = h1.sync(T0, delta("db", pol, calls=11, failures=5, successes=6)).states[0]
    assert state.state == "closed"


def test_slow_rate_opens(backend: Any) -> None:
    pol = policy(slow_rate=0.3, minimum_calls=10, quorum=10)
    (h1,) = hosts(backend, 1)
    assert h1.sync(T0, delta("db", pol, calls=10, slow=2, successes=10)).states[
        0
    ].state == ("closed")
    state = h1.sync(T0 + 1, delta("db", pol, calls=10, slow=4, successes=10)).states[0]
    assert (state.state, state.reason) == ("open", "slow_rate")


# -- expiry and verdicts ------------------------------------------------------------


def test_open_counts_down_and_expires(backend: Any) -> None:
    pol = policy(quorum=1, reset_timeout_ms=5_000)
    h1, h2, _ = hosts(backend)
    h1.sync(T0, delta("db", pol, tripped=True))
    assert h2.state(T0 + 4_999, "db", pol).remaining_ms == 1
    assert h2.state(T0 + 5_000, "db", pol).remaining_ms == 0
    expired = h2.state(T0 + 6_000, "db", pol)
    assert (expired.state, expired.remaining_ms) == ("open", -1_000)
    assert backend.view(time_ms=T0 + 7_000) == (
        FleetState("db", "open", 1, -2_000, ("h1",), "quorum"),
    )


def test_verdict_before_expiry_is_ignored(backend: Any) -> None:
    pol = policy(quorum=1)
    h1, h2, _ = hosts(backend)
    h1.sync(T0, delta("db", pol, tripped=True))
    reply = h2.sync(T0 + 4_999, delta("db", pol, verdict=(1, True)))
    assert (reply.states[0].state, reply.version) == ("open", 1)


def test_successful_verdict_closes(backend: Any) -> None:
    pol = policy(quorum=1)
    h1, h2, _ = hosts(backend)
    h1.sync(T0, delta("db", pol, tripped=True))
    reply = h2.sync(T0 + 5_000, delta("db", pol, verdict=(1, True)))
    assert reply.states == (FleetState("db", "closed", 2, 0, ("h2",), "probe"),)
    assert reply.version == 2


def test_failed_verdict_opens_again_for_reset_timeout(backend: Any) -> None:
    pol = policy(quorum=1, reset_timeout_ms=5_000)
    h1, h2, h3 = hosts(backend)
    h1.sync(T0, delta("db", pol, tripped=True))
    reply = h2.sync(T0 + 7_000, delta("db", pol, verdict=(1, False)))
    assert reply.states == (FleetState("db", "open", 2, 5_000, ("h2",), "probe"),)
    # A late verdict of generation 1, even a success, is fenced off.
    late = h3.sync(T0 + 12_000, delta("db", pol, verdict=(1, True)))
    assert late.states[0].generation == 2 and late.states[0].state == "open"
    assert late.version == 2
    closed = h3.sync(T0 + 12_001, delta("db", pol, verdict=(2, True)))
    assert closed.states[0].state == "closed"


def test_verdict_of_another_generation_or_state_is_ignored(backend: Any) -> None:
    pol = policy(quorum=1)
    h1, h2, _ = hosts(backend)
    # Closed: a verdict changes nothing.
    assert h1.sync(T0, delta("db", pol, verdict=(0, False))).version == 0
    h1.sync(T0, delta("db", pol, tripped=True))
    for generation in (0, 2, 7):
        reply = h2.sync(T0 + 9_000, delta("db", pol, verdict=(generation, False)))
        assert (reply.version, reply.states[0].generation) == (1, 1)


def test_a_closed_fleet_forgets_its_window(backend: Any) -> None:
    # Every transition empties the window and the trip reports: failures
    # counted before a probe's close do not re-open at once.
    pol = policy(quorum=2, max_failures=5)
    h1, h2, h3 = hosts(backend)
    h1.sync(T0, delta("db", pol, calls=4, failures=4, tripped=True))
    h2.sync(T0 + 1, delta("db", pol, tripped=True))
    h3.sync(T0 + 6_000, delta("db", pol, verdict=(1, True)))
    state = h1.sync(T0 + 6_001, delta("db", pol, calls=4, failures=4, tripped=True))
    assert (state.states[0].state, state.states[0].generation) == ("closed", 2)


# -- forces --------------------------------------------------------------------------


def test_force_open_holds_against_verdicts(backend: Any) -> None:
    pol = policy(quorum=1)
    (h1,) = hosts(backend, 1)
    h1.sync(T0, delta("db", pol))
    forced = backend.force("db", "open", by="ops", time_ms=T0 + 1)
    assert forced == FleetState("db", "forced_open", 1, 0, ("ops",), "manual")
    reply = h1.sync(T0 + 60_000, delta("db", pol, verdict=(1, True), tripped=True))
    assert reply.states[0] == forced


def test_force_close_holds_against_trips(backend: Any) -> None:
    pol = policy(quorum=1, max_failures=1)
    (h1,) = hosts(backend, 1)
    assert backend.force("db", "close", by="ops", time_ms=T0).state == "forced_closed"
    reply = h1.sync(T0 + 1, delta("db", pol, calls=9, failures=9, tripped=True))
    assert reply.states[0].state == "forced_closed" and reply.version == 1


def test_force_reset_closes_and_clears_counts(backend: Any) -> None:
    pol = policy(quorum=2, max_failures=5)
    h1, h2, _ = hosts(backend)
    h1.sync(T0, delta("db", pol, calls=4, failures=4, tripped=True))
    reset = backend.force("db", "reset", by="ops", time_ms=T0 + 1)
    assert reset == FleetState("db", "closed", 1, 0, ("ops",), "manual")
    # Neither the 4 failures nor h1's trip survived the reset.
    reply = h2.sync(T0 + 2, delta("db", pol, calls=4, failures=4, tripped=True))
    assert reply.states[0].state == "closed"


def test_force_of_an_unknown_breaker_and_bad_arguments(backend: Any) -> None:
    assert backend.force("new", "open", by="cli", time_ms=T0).state == "forced_open"
    assert [s.name for s in backend.view(time_ms=T0)] == ["new"]
    with pytest.raises(ValueError, match="action must be one of"):
        backend.force("new", "half", by="cli")
    with pytest.raises(TypeError, match="by must be a str"):
        backend.force("new", "open", by=None)
    with pytest.raises(ValueError, match="name must be 1 to 200 bytes"):
        backend.force("", "open", by="cli")


# -- duplicates ----------------------------------------------------------------------


def test_resent_sync_is_counted_once(backend: Any) -> None:
    pol = policy(max_failures=5, quorum=10)
    h1, h2, _ = hosts(backend)
    h1.sync(T0, delta("db", pol, calls=3, failures=3))
    again = h1.resend(T0 + 1)
    assert again.duplicate and again.states[0].state == "closed"
    assert again.last_seq == 1
    # Other hosts' seqs are their own.
    assert not h2.sync(T0 + 2, delta("db", pol, calls=1, failures=1)).duplicate
    state = h1.sync(T0 + 3, delta("db", pol, calls=1, failures=1)).states[0]
    assert (state.state, state.reason) == ("open", "burst")


def test_an_older_seq_is_a_duplicate(backend: Any) -> None:
    pol = policy(quorum=1)
    older = SyncRequest("h1", 4, (delta("db", pol, tripped=True),), time_ms=T0)
    newer = SyncRequest("h1", 5, (delta("db", pol),), time_ms=T0)
    assert backend.sync(newer).last_seq == 5
    reply = backend.sync(older)
    assert reply.duplicate and reply.last_seq == 5
    # Nothing of it was applied, and a duplicate still reports the state.
    assert reply.states == (FleetState("db", "closed", 0, 0, (), ""),)


# -- policy conflicts -------------------------------------------------------------


def test_first_policy_wins_and_a_conflict_is_recorded(backend: Any) -> None:
    first, other = policy(quorum=2), policy(quorum=1)
    h1, h2, _ = hosts(backend)
    h1.sync(T0, delta("db", first))
    # h2 believes in quorum 1, but the stored quorum of 2 decides.
    assert h2.sync(T0 + 1, delta("db", other, tripped=True)).states[0].state == "closed"
    assert backend.conflicts() == (
        PolicyConflict("db", "h2", other.digest(), first.digest()),
    )
    assert h1.sync(T0 + 2, delta("db", first, tripped=True)).states[0].state == "open"


# -- epoch ---------------------------------------------------------------------------


def lose_data(backend: Any) -> None:
    if isinstance(backend, MemoryBackend):
        backend.lose_data()
    else:
        backend._client.flushall()
        backend.enable_test_clock()


def test_lost_data_is_a_new_epoch_and_reseeds(backend: Any) -> None:
    pol = policy(quorum=1, reset_timeout_ms=5_000)
    h1, h2, _ = hosts(backend)
    before = h1.sync(T0, delta("db", pol, tripped=True))
    lose_data(backend)
    after = h2.sync(T0 + 1_000, delta("db", pol))
    assert after.epoch != before.epoch
    assert after.states == (FleetState("db", "closed", 0, 0, (), ""),)
    assert after.version == 0
    # The hosts re-seed: the fleet opens for the longest time they have left.
    seeded = h1.sync(T0 + 1_000, delta("db", pol, reseed_ms=4_000))
    assert seeded.states == (FleetState("db", "open", 1, 4_000, ("h1",), "reseed"),)
    longer = h2.sync(T0 + 1_000, delta("db", pol, reseed_ms=4_500))
    assert longer.states[0].remaining_ms == 4_500 and longer.version == 1
    shorter = h2.sync(T0 + 1_000, delta("db", pol, reseed_ms=10))
    assert shorter.states[0].remaining_ms == 4_500


# -- events --------------------------------------------------------------------------


def test_events_from_the_start_and_from_now(backend: Any) -> None:
    pol = policy(quorum=1)
    h1, _, _ = hosts(backend)
    h1.sync(T0, delta("a", pol, tripped=True))
    cursor, states = backend.events("$", 0)
    assert states == ()
    backend.force("b", "close", by="ops", time_ms=T0 + 1)
    cursor, states = backend.events(cursor, 0)
    assert states == (FleetState("b", "forced_closed", 1, 0, ("ops",), "manual"),)
    assert backend.events(cursor, 0) == (cursor, ())
    _, everything = backend.events("0-0", 0)
    assert [(s.name, s.state) for s in everything] == [
        ("a", "open"),
        ("b", "forced_closed"),
    ]
    assert everything[0].remaining_ms == pol.reset_timeout_ms


def test_events_come_in_pages(backend: Any) -> None:
    for i in range(EVENTS_PER_READ + 5):
        backend.force("db", ("open", "close")[i % 2], by="ops", time_ms=T0 + i)
    cursor, first = backend.events("0-0", 0)
    cursor, rest = backend.events(cursor, 0)
    assert (len(first), len(rest)) == (EVENTS_PER_READ, 5)
    assert [s.generation for s in first + rest] == list(range(1, EVENTS_PER_READ + 6))
    assert backend.events(cursor, 0) == (cursor, ())


def test_events_block_until_a_transition(backend: Any) -> None:
    cursor, _ = backend.events("$", 0)
    timer = threading.Timer(0.2, backend.force, ("db", "open"), {"by": "ops"})
    timer.start()
    try:
        _, states = backend.events(cursor, 5_000)
    finally:
        timer.join(10)
    assert [s.state for s in states] == ["forced_open"]


# -- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("namespace", "error", "match"),
    [
        (None, TypeError, "namespace must be a str"),
        ("", ValueError, "namespace must be 1 to 64 bytes"),
        ("a" * 65, ValueError, "namespace must be 1 to 64 bytes"),
        ("a{b}", ValueError, "without braces"),
        ("a b", ValueError, "without braces or spaces"),
        ("caf\u00e9", ValueError, "printable ASCII"),
    ],
)
def test_key_prefix_refuses_bad_namespaces(
    namespace: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        key_prefix(namespace)


def test_key_prefix() -> None:
    assert key_prefix("checkout-prod") == "{qb1:checkout-prod}:"


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"quorum": 0}, ValueError, r"quorum must be in \[1, 10000\], got 0"),
        ({"quorum": True}, TypeError, "quorum must be an int"),
        ({"max_failures": 0}, ValueError, "max_failures must be in"),
        ({"window_ms": 9}, ValueError, r"window_ms must be in \[10, "),
        ({"reset_timeout_ms": 0}, ValueError, "reset_timeout_ms must be in"),
        ({"failure_rate": 0.0}, ValueError, r"failure_rate must be in \(0, 1\]"),
        ({"slow_rate": float("nan")}, ValueError, r"slow_rate must be in \(0, 1\]"),
        ({"failure_rate": "0.5"}, TypeError, "failure_rate must be a float"),
        ({"minimum_calls": 0}, ValueError, "minimum_calls must be in"),
    ],
)
def test_policy_refuses_bad_values(
    changes: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        policy(**changes)


def test_policy_digest_is_stable_and_distinguishes() -> None:
    assert policy().digest() == policy().digest()
    assert policy(failure_rate=0.5).digest() != policy(failure_rate=0.25).digest()
    assert policy(max_failures=None).digest() != policy(max_failures=1).digest()
    assert len(policy().digest()) == 16


def test_requests_refuse_bad_values() -> None:
    pol = policy()
    with pytest.raises(ValueError, match="calls must be in"):
        delta("db", pol, calls=-1)
    with pytest.raises(TypeError, match="tripped must be a bool"):
        BreakerDelta("db", pol, 0, 0, 0, 0, 1, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="policy must be a FleetPolicy"):
        BreakerDelta("db", None, 0, 0, 0, 0, False, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name must be 1 to 200 bytes of printable"):
        delta("a\nb", pol)
    with pytest.raises(ValueError, match="generation must be in"):
        Verdict(-1, True)
    with pytest.raises(ValueError, match="seq must be in"):
        SyncRequest("h1", -1, ())
    with pytest.raises(TypeError, match="deltas must be a tuple of BreakerDelta"):
        SyncRequest("h1", 1, [delta("db", pol)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="deltas must name each breaker once"):
        SyncRequest("h1", 1, (delta("db", pol), delta("db", pol)))
    with pytest.raises(ValueError, match="reseed_ms must be in"):
        delta("db", pol, reseed_ms=0)


def test_names_are_any_printable_text(backend: Any) -> None:
    pol = policy(quorum=2)
    names = ("caf\u00e9/\u2615|\U0001f600", 'a "quoted" \\ name', "x" * 200)
    hosts_ = ("h\u00f4te-\U0001f600", "h|2")
    for host in hosts_:
        reply = backend.sync(
            SyncRequest(host, 1, tuple(delta(n, pol, tripped=True) for n in names), T0)
        )
    assert [s.name for s in reply.states] == list(names)
    assert {s.tripped_by for s in reply.states} == {hosts_}
    assert [s.name for s in backend.view(time_ms=T0)] == sorted(names)
    backend.sync(SyncRequest(hosts_[1], 2, (delta(names[0], policy(quorum=1)),), T0))
    assert [(c.name, c.host_id) for c in backend.conflicts()] == [(names[0], hosts_[1])]


class Index:
    """An integer type of another library (as NumPy's): it has __index__."""

    def __index__(self) -> int:
        return 3


def test_integers_with_index_are_stored_as_ints(backend: Any) -> None:
    d = delta("db", policy(quorum=Index()), calls=Index(), failures=Index())  # type: ignore[arg-type]
    assert type(d.calls) is int and type(d.policy.quorum) is int
    assert d.policy == policy(quorum=3)
    reply = backend.sync(SyncRequest("h1", Index(), (d,), time_ms=T0))  # type: ignore[arg-type]
    assert reply.states[0].state == "closed"


def test_backends_refuse_what_is_not_a_request(backend: Any) -> None:
    with pytest.raises(TypeError, match="request must be a SyncRequest"):
        backend.sync(("h1", 1, ()))
    with pytest.raises(ValueError, match="block_ms must be an int >= 0"):
        backend.events("$", -1)


def test_the_spec_and_protocol_import_no_redis() -> None:
    code = (
        "import sys, qbreaker; qbreaker.fleet; import qbreaker.fleet.spec; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'redis'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr
