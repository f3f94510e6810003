"""fleet_groups=G without Redis: key layout, stable grouping, bad input, and
one namespace split over G in-memory backends (the spec) behaving as one.

The Redis side (the scripts per group, ACLs, a cluster) is in
test_groups_redis.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import zlib
from collections import Counter
from typing import Any

import pytest

import qbreaker
from qbreaker import fleet
from qbreaker.fleet._protocol import (
    MAX_GROUPS,
    SyncReply,
    SyncRequest,
    check_groups,
    data_lost,
    group_of,
    key_prefix,
)
from qbreaker.fleet.agent import Agent
from qbreaker.fleet.control import ControlSegment
from qbreaker.fleet.grouping import FleetGroupsError, GroupedBackend
from qbreaker.fleet.spec import MemoryBackend, MemoryKeyspace

from .helpers import T0, Host, delta, policy
from .host_helpers import host_dir

__all__ = ("host_dir",)  # a fixture

G = 4


def names_per_group(groups: int, per_group: int = 1) -> list[str]:
    """Breaker names covering every group ``per_group`` times, in group order."""
    found: dict[int, list[str]] = {g: [] for g in range(groups)}
    for i in range(10_000):
        name = f"svc-{i}"
        bucket = found[group_of(name, groups)]
        if len(bucket) < per_group:
            bucket.append(name)
        if all(len(b) == per_group for b in found.values()):
            return [n for g in range(groups) for n in found[g]]
    raise AssertionError("names do not cover the groups")


# -- key layout ----------------------------------------------------------------------


def test_one_group_keeps_todays_keys_exactly() -> None:
    assert key_prefix("pay") == "{qb1:pay}:"
    assert key_prefix("pay", 0, 1) == "{qb1:pay}:"


def test_each_group_has_its_own_hash_tag_in_its_slice_of_the_slots() -> None:
    from redis.crc import key_slot  # the cluster's slot of a key

    for groups in (2, 3, 4, 16, 256):
        prefixes = [key_prefix("pay", g, groups) for g in range(groups)]
        for g, prefix in enumerate(prefixes):
            assert re.fullmatch(rf"\{{qb1-g{g}of{groups}\.\d+:pay\}}:", prefix)
            # Evenly spread: group g's slot in the g-th of G equal slices.
            assert g * 16384 // groups <= key_slot(prefix.encode())
            assert key_slot(prefix.encode()) < (g + 1) * 16384 // groups
    # Every key of a group in its one slot.
    prefix = key_prefix("pay", 3, 4)
    assert len({key_slot((prefix + k).encode()) for k in ("meta", "st", "ev")}) == 1


def test_no_group_tag_is_another_namespaces_tag() -> None:
    # Namespaces may hold ':', '.' and digits: a group tag must still never
    # be the tag of another namespace (the ACL fence relies on it).
    namespaces = ("pay", "pay:g1", "g1:pay", "qb1-g1of2.0:pay", "0:pay", "1.2:pay")
    tags = {
        key_prefix(ns, g, groups)
        for ns in namespaces
        for groups in (1, 2, 4, 12)
        for g in range(groups)
    }
    assert len(tags) == len(namespaces) * (1 + 2 + 4 + 12)


@pytest.mark.parametrize(
    ("group", "groups", "error"),
    [(4, 4, ValueError), (-1, 4, ValueError), (1, 1, ValueError), ("0", 4, TypeError)],
)
def test_a_group_outside_the_groups_is_refused(
    group: Any, groups: int, error: type[Exception]
) -> None:
    with pytest.raises(error, match="group must be"):
        key_prefix("pay", group, groups)


# -- stable grouping -----------------------------------------------------------------


def test_a_breakers_group_is_crc32_of_its_name_modulo_g() -> None:
    for name in ("pay", "db", "svc-17", "ünïcode"):
        assert group_of(name, 16) == zlib.crc32(name.encode()) % 16
        assert group_of(name, 1) == 0
    # Known values: a change here moves every fleet's breakers.
    assert [group_of(n, 4) for n in ("a", "b", "c", "pay")] == [3, 1, 3, 0]


def test_the_grouping_is_the_same_in_every_process() -> None:
    names = [f"svc-{i}" for i in range(50)]
    mine = [group_of(n, 7) for n in names]
    code = (
        "from qbreaker.fleet._protocol import group_of; "
        f"print([group_of(n, 7) for n in {names!r}])"
    )
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True,
            text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        assert out.strip() == repr(mine)


def test_breakers_spread_evenly_over_the_groups() -> None:
    counts = Counter(group_of(f"breaker-{i}", 8) for i in range(8_000))
    assert sorted(counts) == list(range(8))
    assert all(800 <= n <= 1_200 for n in counts.values()), counts


# -- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, MAX_GROUPS + 1, 10**9])
def test_fleet_groups_out_of_range_is_a_value_error(bad: int, host_dir: str) -> None:
    with pytest.raises(
        ValueError, match=rf"fleet_groups must be an int in \[1, 256\], got {bad}"
    ):
        check_groups(bad)
    with pytest.raises(ValueError, match="fleet_groups"):
        fleet.connect(
            namespace="t", agent="off", backend=MemoryBackend(), fleet_groups=bad
        )
    assert not fleet.joined()


@pytest.mark.parametrize("bad", ["4", 4.0, True, None.__class__])
def test_fleet_groups_not_an_int_is_a_type_error(bad: Any) -> None:
    with pytest.raises(TypeError, match="fleet_groups must be an int"):
        check_groups(bad)


@pytest.mark.parametrize("text", ["four", "", " ", "0", "257", "2.5"])
def test_a_bad_groups_variable_names_it(
    text: str, host_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QBREAKER_FLEET_GROUPS", text)
    if not text.strip():
        # Empty: unset, the default.
        fleet.connect(namespace="t", agent="off", backend=MemoryBackend())
        return
    with pytest.raises(ValueError, match="fleet_groups"):
        fleet.connect(namespace="t", agent="off", backend=MemoryBackend())


def test_the_setting_comes_from_the_keyword_else_the_variable(
    host_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QBREAKER_FLEET_GROUPS", "8")
    fleet.connect(namespace="t", agent="off", backend=MemoryBackend())
    assert fleet._settings is not None and fleet._settings.fleet_groups == 8
    fleet.disconnect()
    fleet.connect(namespace="t", agent="off", backend=MemoryBackend(), fleet_groups=3)
    assert fleet._settings is not None and fleet._settings.fleet_groups == 3
    fleet.disconnect()
    monkeypatch.delenv("QBREAKER_FLEET_GROUPS")
    fleet.connect(namespace="t", agent="off", backend=MemoryBackend())
    assert fleet._settings is not None and fleet._settings.fleet_groups == 1


# -- one namespace over G backends -------------------------------------------------


def test_each_group_holds_only_its_breakers_and_view_covers_all() -> None:
    space = MemoryKeyspace()
    backend = space.backend(G)
    names = names_per_group(G, 2)
    pol = policy(quorum=1)
    reply = Host(backend, "h1").sync(T0, *(delta(n, pol, calls=1) for n in names))
    assert [s.name for s in reply.states] == names  # the request's order
    for g in range(G):
        held = {s.name for s in space.tag(g, G).view(time_ms=T0)}
        assert held == {n for n in names if group_of(n, G) == g}
    assert [s.name for s in backend.view(time_ms=T0)] == sorted(names)
    assert [s.calls for s in backend.view(time_ms=T0)] == [1] * len(names)
    # A force goes to the breaker's group.
    name = names[-1]
    assert backend.force(name, "open", by="ops", time_ms=T0).state == "forced_open"
    assert [
        s.name for s in space.tag(G - 1, G).view(time_ms=T0) if s.state != "closed"
    ] == [name]


def test_a_sync_calls_only_the_groups_that_have_breakers() -> None:
    space = MemoryKeyspace()
    calls: list[int] = []

    class Counting:
        def __init__(self, group: int) -> None:
            self.inner = space.tag(group, G)
            self.group = group

        def sync(self, request: SyncRequest) -> SyncReply:
            calls.append(self.group)
            return self.inner.sync(request)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    backend = GroupedBackend([Counting(g) for g in range(G)], space.tag(0, 1))
    one = names_per_group(G)[2]
    h1 = Host(backend, "h1")
    h1.sync(T0, delta(one, policy()))
    assert calls == [2]
    calls.clear()
    h1.sync(T0)  # its breaker quiet: the group it uses is asked all the same
    assert calls == [2]
    calls.clear()
    Host(backend, "h2").sync(T0)  # no breakers at all: group 0 answers the seq
    assert calls == [0]


def test_a_trip_by_quorum_in_every_group() -> None:
    backend = MemoryKeyspace().backend(G)
    names = names_per_group(G)
    pol = policy(quorum=2)
    h1, h2 = Host(backend, "h1"), Host(backend, "h2")
    h1.sync(T0, *(delta(n, pol, tripped=True) for n in names))
    reply = h2.sync(T0 + 1, *(delta(n, pol, tripped=True) for n in names))
    assert {(s.state, s.reason, s.tripped_by) for s in reply.states} == {
        ("open", "quorum", ("h1", "h2"))
    }
    # One event per breaker, from every group's stream.
    cursor, events = backend.events("0-0", 0)
    assert sorted(s.name for s in events) == sorted(names)
    assert cursor.count(",") == G - 1
    assert backend.events(cursor, 0) == (cursor, ())
    # A probe's verdict for the current generation closes each one.
    verdicts = [
        delta(n, pol, verdict=(s.generation, True)) for n, s in zip(names, reply.states)
    ]
    closed = h1.sync(T0 + 6_000, *verdicts)
    assert {(s.state, s.reason) for s in closed.states} == {("closed", "probe")}
    _, later = backend.events(cursor, 0)
    assert sorted(s.name for s in later) == sorted(names)


def test_a_resend_after_a_partial_failure_counts_nothing_twice() -> None:
    space = MemoryKeyspace()
    names = names_per_group(G)

    class FailsOnce:
        def __init__(self, inner: MemoryBackend) -> None:
            self.inner = inner
            self.fail = True

        def sync(self, request: SyncRequest) -> SyncReply:
            if self.fail:
                self.fail = False
                raise ConnectionError("the group's master went away")
            return self.inner.sync(request)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    parts: list[Any] = [space.tag(g, G) for g in range(G)]
    parts[2] = FailsOnce(space.tag(2, G))
    backend = GroupedBackend(parts, space.tag(0, 1))
    host = Host(backend, "h1")
    deltas = [delta(n, policy(), calls=5, failures=1) for n in names]
    with pytest.raises(ConnectionError):
        host.sync(T0, *deltas)  # groups 0 and 1 applied, 2 failed, 3 never sent
    reply = host.resend(T0)
    assert not reply.duplicate and reply.last_seq == 1
    assert [(s.calls, s.failures) for s in backend.view(time_ms=T0)] == [(5, 1)] * G
    again = host.resend(T0)  # the reply was lost too: all duplicates now
    assert again.duplicate
    assert [s.calls for s in backend.view(time_ms=T0)] == [5] * G


def test_a_host_behind_in_some_groups_loses_and_doubles_nothing() -> None:
    """A wiped control segment restarts the agent's seq; a breaker new to
    this host lands in a group that never saw it: that group applies the
    first request, the others are sent again past the highest seq."""
    backend = MemoryKeyspace().backend(G)
    names = names_per_group(G)
    old = Host(backend, "h1")
    for _ in range(5):
        old.sync(T0, *(delta(n, policy(), calls=1) for n in names[:3]))
    fresh = Host(backend, "h1")  # seq from 1 again
    reply = fresh.sync(T0, *(delta(n, policy(), calls=10) for n in names))
    assert not reply.duplicate and reply.last_seq == 6
    assert [s.calls for s in backend.view(time_ms=T0)] == [15, 15, 15, 10]
    # Every group behind: the agent's own path (duplicate, resend past it).
    other = Host(backend, "h1")
    behind = other.sync(T0, *(delta(n, policy(), calls=100) for n in names))
    assert behind.duplicate and behind.last_seq == 6
    assert [s.calls for s in backend.view(time_ms=T0)] == [15, 15, 15, 10]


def test_data_lost_compares_group_by_group() -> None:
    def reply(epoch: str, version: int) -> SyncReply:
        return SyncReply(epoch, version, False, ())

    # One group: today's rule exactly.
    assert not data_lost(None, 5, reply("e1", 5))
    assert data_lost(None, 5, reply("e1", 4))
    assert data_lost("e1", 0, reply("e2", 0))
    assert not data_lost("e1", 3, reply("e1", 3))
    # Groups: a new group, or one no longer synced, is no loss.
    before = "g0=a/3;g2=b/7"
    assert not data_lost(before, 10, reply("g0=a/3;g1=c/0;g2=b/7", 10))
    assert not data_lost(before, 10, reply("g0=a/4", 4))
    assert data_lost(before, 10, reply("g0=a/3;g2=x/7", 10))  # a new epoch
    assert data_lost(before, 10, reply("g0=a/3;g2=b/6", 9))  # a version went back
    assert data_lost("e1", 10, reply("g0=a/3", 3))  # G changed


# -- hosts that disagree on G ---------------------------------------------------------


def test_hosts_that_disagree_on_g_are_refused() -> None:
    space = MemoryKeyspace()
    first = space.backend(G)
    Host(first, "h1").sync(T0, delta("pay", policy()))
    for groups in (1, 2, 8):
        other = space.backend(groups)
        with pytest.raises(
            FleetGroupsError,
            match=rf"fleet_groups={groups} on this host.*fleet_groups={G}",
        ):
            Host(other, "h2").sync(T0, delta("pay", policy()))
        with pytest.raises(FleetGroupsError):
            other.view()
        with pytest.raises(FleetGroupsError):
            other.force("pay", "open", by="ops")
    # Nothing of theirs landed: the fleet's one breaker, as h1 left it.
    assert [(s.name, s.generation) for s in first.view(time_ms=T0)] == [("pay", 0)]
    # The same G joins.
    Host(space.backend(G), "h3").sync(T0, delta("pay", policy()))


def test_a_one_group_fleet_refuses_a_host_with_groups() -> None:
    space = MemoryKeyspace()
    Host(space.backend(1), "h1").sync(T0, delta("pay", policy()))
    with pytest.raises(FleetGroupsError, match="fleet_groups=1 \\(stored"):
        Host(space.backend(G), "h2").sync(T0, delta("pay", policy()))


def test_bad_cursors_are_refused() -> None:
    backend = MemoryKeyspace().backend(G)
    for bad in ("1-0", "1-0,2-0", 7):
        with pytest.raises(ValueError, match="cursor must be"):
            backend.events(bad, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="block_ms"):
        backend.events("$", -1)


def test_an_event_in_any_group_is_seen_within_a_slice_of_the_block() -> None:
    import threading

    space = MemoryKeyspace()
    backend = space.backend(G)
    names = names_per_group(G)
    cursor, _ = backend.events("$", 0)
    timer = threading.Timer(
        0.05, lambda: space.backend(G).force(names[3], "open", by="ops")
    )
    timer.start()
    started = time.monotonic()
    states: tuple[Any, ...] = ()
    while not states and time.monotonic() - started < 5:
        cursor, states = backend.events(cursor, 400)
    waited = time.monotonic() - started
    timer.join()
    assert [s.name for s in states] == [names[3]]
    # Each read waits at most block_ms / G on one group, then reads them all.
    print(
        f"event seen after {waited * 1000:.0f} ms (bound: 50 ms + 400 / {G} ms + slack)"
    )
    assert waited < 0.05 + 0.1 + 1.0


# -- the agent over G groups ----------------------------------------------------------


@pytest.mark.c_extension  # fleet breakers are shared cells
def test_the_agent_syncs_trips_and_recovers_over_groups(host_dir: str) -> None:
    space = MemoryKeyspace()
    backend = space.backend(G)
    fleet.connect(namespace="tests", agent="off", backend=backend, fleet_groups=G)
    names = names_per_group(G)
    breakers = [
        qbreaker.CircuitBreaker(2, 0.2, 1, shared=n, fleet=True, fleet_quorum=2)
        for n in names
    ]
    control = ControlSegment()
    assert control.try_lease(1)
    warnings: list[str] = []
    agent = Agent(
        control, backend, "here",
        info={"url": "memory://", "namespace": "tests", "mode": "thread"},
        log=lambda message, *args: warnings.append(message % args),
    )  # fmt: skip
    agent.probe_lease = False  # every host probes (the lease: its own tests)
    agent.step()
    assert sorted(s.name for s in backend.view()) == sorted(names)
    pols = {n: agent.tracks[n].policy for n in names}
    for n in names:
        Host(backend, "h2").sync(
            int(time.time() * 1000), delta(n, pols[n], tripped=True)
        )
    for breaker in breakers:
        breaker.record_failure()
        breaker.record_failure()
    agent.step()
    assert {(s.state, s.reason) for s in backend.view()} == {("open", "quorum")}
    time.sleep(0.25)
    agent.sync()  # the fleet's opens expired: the cells may probe
    for breaker in breakers:
        ticket = breaker.acquire()
        assert ticket
        breaker.release(ticket, True)
    agent.step()
    assert {(s.state, s.reason) for s in backend.view()} == {("closed", "probe")}
    assert all(b.state == qbreaker.State.CLOSED for b in breakers)
    assert agent.epoch is not None and agent.epoch.count(";") == G - 1
    assert not warnings, warnings


@pytest.mark.c_extension  # fleet breakers are shared cells
def test_the_agent_reseeds_when_one_group_lost_its_data_and_not_for_a_new_group(
    host_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    space = MemoryKeyspace()
    backend = space.backend(G)
    fleet.connect(namespace="tests", agent="off", backend=backend, fleet_groups=G)
    names = names_per_group(G)
    kept = [qbreaker.CircuitBreaker(2, 5.0, 1, shared=n, fleet=True) for n in names[:3]]
    control = ControlSegment()
    assert control.try_lease(1)
    agent = Agent(control, backend, "here", info={}, log=lambda *_: None)
    reseeds: list[str | None] = []
    reseed = agent._reseed
    monkeypatch.setattr(
        agent, "_reseed", lambda: (reseeds.append(agent.epoch), reseed())
    )
    agent.step()
    assert agent.sync() and reseeds == []
    # A breaker in a group this host never synced: news, not a loss.
    kept.append(qbreaker.CircuitBreaker(2, 5.0, 1, shared=names[3], fleet=True))
    agent.refresh_registry()
    assert agent.sync() and agent.sync()
    assert agent.epoch is not None and agent.epoch.count(";") == G - 1
    assert reseeds == []
    # One group (a cluster master) restarted empty: re-seeded once, at the
    # next sync, though that group's breaker is closed and quiet (the sync
    # asks every group the host uses, with an empty part if need be).
    space.tag(2, G).lose_data()
    agent.sync()
    assert len(reseeds) == 1
    assert agent.sync() and len(reseeds) == 1
    assert all(b.state == qbreaker.State.CLOSED for b in kept)


@pytest.mark.c_extension  # fleet breakers are shared cells
def test_a_fresh_agent_behind_in_some_groups_goes_on_past_them(host_dir: str) -> None:
    """An earlier life of this host (before a reboot wiped its control
    segment) got to seq 50 in the groups of its first three breakers; the
    fourth breaker's group never saw the host."""
    backend = MemoryKeyspace().backend(G)
    fleet.connect(namespace="tests", agent="off", backend=backend, fleet_groups=G)
    names = names_per_group(G)
    breakers = [qbreaker.CircuitBreaker(2, 5.0, 1, shared=n, fleet=True) for n in names]
    control = ControlSegment()
    assert control.try_lease(1)
    agent = Agent(control, backend, "here", info={}, log=lambda *_: None)
    agent.refresh_registry()
    earlier = Host(backend, "here")
    earlier.seq = 49
    earlier.sync(
        int(time.time() * 1000), *(delta(n, agent.tracks[n].policy) for n in names[:3])
    )
    for breaker in breakers:
        breaker.record_success()
    assert agent.sync()
    assert agent.seq == 51  # past the parts sent again as seq 51
    assert [s.calls for s in backend.view()] == [1, 1, 1, 1]
    for breaker in breakers:
        breaker.record_success()
    assert agent.sync()
    assert agent.seq == 52
    assert [s.calls for s in backend.view()] == [2, 2, 2, 2]


def test_an_overview_of_every_group_lists_each_host_once() -> None:
    """Parts that offer ``overview()`` (the view with the hosts that synced
    lately): the groups' overviews as one."""
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Seen:
        host_id: str
        ms_ago: int

    @dataclass(frozen=True)
    class Overview:
        states: tuple[Any, ...]
        active_hosts: tuple[Seen, ...]
        active_within_ms: int

    space = MemoryKeyspace()
    names = names_per_group(2)
    seen = ({"h1": 30, "h2": 900}, {"h1": 10, "h3": 5})

    class WithOverview:
        def __init__(self, group: int) -> None:
            self.inner = space.tag(group, 2)
            self.group = group

        def overview(self, within: int = 3_000) -> Overview:
            hosts = tuple(Seen(h, ago) for h, ago in seen[self.group].items())
            return Overview(self.inner.view(), hosts, within)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    backend = GroupedBackend([WithOverview(g) for g in range(2)], space.tag(0, 1))
    Host(backend, "h1").sync(T0, *(delta(n, policy()) for n in names))
    merged = backend.overview(5_000)
    assert [s.name for s in merged.states] == sorted(names)
    assert merged.active_hosts == (Seen("h1", 10), Seen("h2", 900), Seen("h3", 5))
    assert merged.active_within_ms == 5_000


@pytest.mark.c_extension  # fleet breakers are shared cells
def test_an_agent_with_another_g_says_why_and_stays_host_wide(host_dir: str) -> None:
    space = MemoryKeyspace()
    Host(space.backend(G), "h1").sync(T0, delta("pay", policy()))
    backend = space.backend(2)
    fleet.connect(namespace="tests", agent="off", backend=backend, fleet_groups=2)
    breaker = qbreaker.CircuitBreaker(2, 5.0, 1, shared="pay", fleet=True)
    control = ControlSegment()
    assert control.try_lease(1)
    warnings: list[str] = []
    agent = Agent(
        control, backend, "here", info={},
        log=lambda message, *args: warnings.append(message % args),
    )  # fmt: skip
    agent.step()
    assert not agent.sync()
    assert len(warnings) == 1, warnings
    assert "fleet_groups=2 on this host" in warnings[0]
    assert "fleet_groups=4" in warnings[0]
    status = fleet._status_of(control)
    assert not status.connected
    assert status.last_error is not None and "fleet_groups=4" in status.last_error
    # Nothing of this host reached the fleet; its breaker works host-wide.
    assert [s.calls for s in space.backend(G).view()] == [0]
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == qbreaker.State.OPEN


@pytest.mark.parametrize("bad", [7, "", None])
def test_a_bad_force_names_the_bad_value(bad: Any) -> None:
    backend = MemoryKeyspace().backend(G)
    with pytest.raises((TypeError, ValueError), match="name must be"):
        backend.force(bad, "open", by="ops")
    with pytest.raises(ValueError, match="action must be one of"):
        backend.force("pay", "shut", by="ops")


def test_an_idle_reader_in_turn_sends_g_plus_one_reads_per_wait() -> None:
    from qbreaker.fleet.grouping import MIN_WAIT_MS

    groups = 16
    space = MemoryKeyspace()
    reads: list[int] = []

    class Counting:
        def __init__(self, group: int) -> None:
            self.inner = space.tag(group, groups)

        def events(self, cursor: str, block_ms: int) -> Any:
            reads.append(block_ms)
            return self.inner.events(cursor, block_ms)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    backend = GroupedBackend([Counting(g) for g in range(groups)], space.tag(0, 1))
    cursor, _ = backend.events("$", 0)
    reads.clear()
    started = time.monotonic()
    for _ in range(3):
        cursor, states = backend.events(cursor, 500)
        assert states == ()
    elapsed = time.monotonic() - started
    # 500 ms / 16 is under the floor: each wait is MIN_WAIT_MS.
    assert reads.count(MIN_WAIT_MS) == 3
    assert len(reads) == 3 * (groups + 1)
    print(f"3 idle reads: {len(reads)} stream reads in {elapsed * 1000:.0f} ms")
    assert elapsed >= 3 * MIN_WAIT_MS / 1000
