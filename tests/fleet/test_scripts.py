"""The Lua scripts against the spec, and what only the Redis backend does.

The differential tests run random sequences of syncs (some resent, some sent
out of order), trip reports, probe verdicts, forces, re-seeds and time steps
(injected: the namespace is in test mode) against ``MemoryBackend`` and
``RedisBackend`` side by side: every reply, the events and the final view
must agree. The rest checks the Redis side alone: one hash slot per
namespace, ``NOSCRIPT`` recovery, the test-mode fence on injected time, the
bounded stream, timeouts without retries, and passwords kept out of reprs.
"""

from __future__ import annotations

import random
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qbreaker.fleet._protocol import (
    ACTIVE_HOSTS_KEPT_MS,
    BreakerDelta,
    FleetPolicy,
    LeaseRequest,
    SyncRequest,
    Verdict,
    group_of,
    key_prefix,
)
from qbreaker.fleet.spec import MemoryBackend, MemoryKeyspace

from .conftest import RedisBackend, connect_redis
from .helpers import T0, Host, delta, policy

redis = pytest.importorskip("redis")
redis_backend_module = pytest.importorskip("qbreaker.fleet.redis_backend")

NAMES = ("a", "b", "c")
HOSTS = ("h1", "h2", "h3")
POLICIES = (
    FleetPolicy(2, 4, 2_005, 3_000, 0.3, None, 5),
    FleetPolicy(1, 3, 5_000, 1_000, None, 0.2, 3),
    FleetPolicy(3, 6, 1_000, 2_000, 0.1, 0.7, 1),
)
# Steps of the injected clock in ms: within a bucket, across one, past a
# reset timeout or a window, and backwards (a failover to a slower clock).
TIME_STEPS = (0, 1, 50, 999, 1_000, 2_500, 5_000, 12_000, -1_500)


class Pair:
    """The spec and the scripts fed the same operations, compared at each."""

    def __init__(self, client: Any, groups: int = 1) -> None:
        self.client = client
        namespace = f"d-{uuid.uuid4().hex[:12]}"
        self.groups = groups
        self.spec: Any = MemoryBackend()
        self.redis: Any = RedisBackend(client, namespace, test_clock=True)
        if groups > 1:  # fleet_groups: both backends split the same way
            self.spec = MemoryKeyspace().backend(groups)
            self.redis = redis_backend_module.grouped_backend(
                client, namespace, groups, test_clock=True
            )
            self.home = key_prefix(namespace) + "meta"
        self.now = T0
        self.seq = dict.fromkeys(HOSTS, 0)
        self.pending: list[SyncRequest] = []
        self.sent: list[SyncRequest] = []
        self.epochs: tuple[set[str], set[str]] = (set(), set())
        self.replies = 0

    def close(self) -> None:
        self.client.delete(*self.redis.keys)
        if self.groups > 1:
            self.client.delete(self.home)

    def generation(self, name: str) -> int:
        for state in self.spec.view(time_ms=self.now):
            if state.name == name:
                return state.generation
        return 0

    def build(self, host: str, deltas: tuple[BreakerDelta, ...]) -> SyncRequest:
        self.seq[host] += 1
        request = SyncRequest(host, self.seq[host], deltas, time_ms=self.now)
        self.pending.append(request)
        return request

    def send(self, request: SyncRequest, now: bool = True) -> None:
        if request in self.pending:
            self.pending.remove(request)
        self.sent.append(request)
        if now:
            # A resend or a late send goes out at the present time.
            request = SyncRequest(
                request.host_id, request.seq, request.deltas, time_ms=self.now
            )
        expected, got = self.spec.sync(request), self.redis.sync(request)
        assert (got.version, got.duplicate, got.states, got.last_seq) == (
            expected.version,
            expected.duplicate,
            expected.states,
            expected.last_seq,
        ), request
        # Split over groups: each group's epoch, apart (see data_lost).
        self.epochs[0].update(e.split("/")[0] for e in expected.epoch.split(";"))
        self.epochs[1].update(e.split("/")[0] for e in got.epoch.split(";"))
        self.replies += 1

    def force(self, name: str, action: str) -> None:
        expected = self.spec.force(name, action, by="ops", time_ms=self.now)
        assert self.redis.force(name, action, by="ops", time_ms=self.now) == expected

    def step(self, ms: int) -> None:
        self.now = max(0, self.now + ms)

    def check_end(self) -> None:
        assert self.redis.view(time_ms=self.now) == self.spec.view(time_ms=self.now)
        for within in (1, 1_000, ACTIVE_HOSTS_KEPT_MS):
            assert self.redis.overview(within, time_ms=self.now) == (
                self.spec.overview(within, time_ms=self.now)
            )
        assert self.redis.events("0-0", 0)[1] == self.spec.events("0-0", 0)[1]
        assert self.redis.conflicts() == self.spec.conflicts()
        groups = len(set(group_of(name, self.groups) for name in NAMES))
        assert len(self.epochs[0]) <= groups and len(self.epochs[1]) <= groups


@pytest.fixture
def pair(redis_client: Any) -> Iterator[Any]:
    made: list[Pair] = []

    def make(groups: int = 1) -> Pair:
        made.append(Pair(redis_client, groups))
        return made[-1]

    yield make
    for one in made:
        one.close()


# A delta: breaker, policy choice (mostly the breaker's own: conflicts are
# rare), counts, trip, verdict (generation relative to the breaker's current
# one: -1, 0 or +1; None = no verdict), re-seed and probe lease request
# (generation relative as the verdict's, take or release).
deltas = st.tuples(
    st.integers(0, len(NAMES) - 1),
    st.sampled_from((0, 0, 0, 0, 0, 1, 2)),
    st.integers(0, 6),
    st.integers(0, 6),
    st.integers(0, 3),
    st.integers(0, 6),
    st.booleans(),
    st.one_of(st.none(), st.tuples(st.sampled_from((-1, 0, 0, 0, 1)), st.booleans())),
    st.one_of(st.none(), st.none(), st.none(), st.integers(1, 6_000)),
    st.one_of(st.none(), st.tuples(st.sampled_from((-1, 0, 0, 0, 1)), st.booleans())),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("sync"), st.integers(0, 2), st.lists(deltas, max_size=3)),
        st.tuples(st.just("build"), st.integers(0, 2), st.lists(deltas, max_size=3)),
        st.tuples(st.just("send"), st.integers(0, 50)),
        st.tuples(st.just("resend"), st.integers(0, 50)),
        st.tuples(
            st.just("force"),
            st.sampled_from(NAMES),
            st.sampled_from(("open", "close", "reset")),
        ),
        st.tuples(st.just("time"), st.sampled_from(TIME_STEPS)),
        st.tuples(st.just("time"), st.sampled_from(TIME_STEPS)),
    ),
    max_size=40,
)


def make_deltas(pair: Pair, chosen: list[Any]) -> tuple[BreakerDelta, ...]:
    made: dict[str, BreakerDelta] = {}
    for name_i, pol_i, extra, fails, slow, oks, trip, verdict, reseed, lease in chosen:
        name = NAMES[name_i]
        if verdict is not None:
            verdict = Verdict(max(0, pair.generation(name) + verdict[0]), verdict[1])
        if lease is not None:
            lease = LeaseRequest(max(0, pair.generation(name) + lease[0]), lease[1])
        made.setdefault(
            name,
            BreakerDelta(
                name,
                POLICIES[(name_i + pol_i) % len(POLICIES)],
                fails + oks + extra,
                fails,
                slow,
                oks,
                trip,
                verdict,
                reseed,
                lease,
            ),
        )
    return tuple(made.values())


def run(pair: Pair, ops: list[Any]) -> None:
    for op in ops:
        kind = op[0]
        if kind in ("sync", "build"):
            request = pair.build(HOSTS[op[1]], make_deltas(pair, op[2]))
            if kind == "sync":
                pair.send(request, now=False)
        elif kind == "send" and pair.pending:
            pair.send(pair.pending[op[1] % len(pair.pending)])
        elif kind == "resend" and pair.sent:
            pair.send(pair.sent[op[1] % len(pair.sent)])
        elif kind == "force":
            pair.force(op[1], op[2])
        elif kind == "time":
            pair.step(op[1])
    for request in list(pair.pending):
        pair.send(request)
    pair.check_end()


@pytest.mark.fleet
@pytest.mark.hypothesis
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=operations)
def test_scripts_agree_with_the_spec(pair: Any, ops: list[Any]) -> None:
    run(pair(), ops)


@pytest.mark.fleet
def test_scripts_agree_with_the_spec_on_long_walks(pair: Any) -> None:
    """Seeded walks of 1,500 steps: depth next to hypothesis' breadth."""
    reasons: set[str] = set()
    for seed in (1, 2, 3):
        reasons |= walk(pair(), random.Random(seed))
    # The walks went through every rule, not around them.
    assert reasons == {
        "quorum",
        "burst",
        "failure_rate",
        "slow_rate",
        "probe",
        "manual",
        "reseed",
        "lease_expired",
    }, reasons


@pytest.mark.fleet
@pytest.mark.hypothesis
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=operations)
def test_scripts_agree_with_the_spec_split_over_groups(
    pair: Any, ops: list[Any]
) -> None:
    """fleet_groups=3: the breakers in two groups, one group unused."""
    run(pair(3), ops)


@pytest.mark.fleet
def test_scripts_agree_with_the_spec_on_long_walks_split_over_groups(
    pair: Any,
) -> None:
    reasons: set[str] = set()
    for seed, groups in ((4, 3), (5, 4)):
        one = pair(groups)
        reasons |= walk(one, random.Random(seed))
        used = {group_of(name, groups) for name in NAMES}
        assert len(used) == 2 and len(one.redis.parts) == groups
    assert {"quorum", "probe", "manual"} <= reasons, reasons


def walk(one: Pair, rng: random.Random) -> set[str]:
    for _ in range(1_500):
        roll = rng.random()
        if roll < 0.55:
            chosen = [
                (
                    rng.randrange(3),
                    rng.choice((0, 0, 0, 0, 1, 2)),
                    rng.randrange(3),
                    rng.choice((0, 0, 1, 3)),
                    rng.choice((0, 0, 1, 2)),
                    rng.choice((0, 0, 1, 4)),
                    rng.random() < 0.2,
                    None
                    if rng.random() < 0.8
                    else (rng.choice((-1, 0, 0, 1)), rng.random() < 0.5),
                    None if rng.random() < 0.97 else rng.randrange(1, 4_000),
                    None
                    if rng.random() < 0.7
                    else (rng.choice((-1, 0, 0, 0, 1)), rng.random() < 0.8),
                )
                for _ in range(rng.randrange(1, 4))
            ]
            request = one.build(rng.choice(HOSTS), make_deltas(one, chosen))
            if rng.random() < 0.9:
                one.send(request, now=False)
        elif roll < 0.62 and one.pending:
            one.send(rng.choice(one.pending))
        elif roll < 0.67 and one.sent:
            one.send(rng.choice(one.sent))
        elif roll < 0.69:
            one.force(rng.choice(NAMES), rng.choice(("open", "close", "reset")))
        else:
            one.step(rng.choice(TIME_STEPS))
    for request in list(one.pending):
        one.send(request)
    one.check_end()
    return {state.reason for state in one.spec.events("0-0", 0)[1]}


# -- Redis alone ---------------------------------------------------------------------


@pytest.mark.fleet
def test_every_key_of_a_namespace_is_in_one_hash_slot(
    redis_client: Any, namespace: str
) -> None:
    backend = RedisBackend(redis_client, namespace, test_clock=True)
    pol = policy(quorum=2, max_failures=100)
    h1, h2 = Host(backend, "h1"), Host(backend, "h2")
    # Counts and one trip report stay (no transition empties them), a
    # conflict is recorded, a force writes a state and an event.
    h1.sync(T0, delta("db", pol, calls=3, failures=1, successes=2, tripped=True))
    h2.sync(T0, delta("db", policy(quorum=1)))
    backend.force("other", "open", by="ops", time_ms=T0)
    prefix = key_prefix(namespace)
    keys = [k.decode() for k in redis_client.keys("*") if namespace.encode() in k]
    assert all(key.startswith(prefix) for key in keys), keys
    assert sorted(key[len(prefix) :] for key in keys) == sorted(
        redis_backend_module.KEY_NAMES
    )
    from redis.crc import key_slot

    assert len({key_slot(key.encode()) for key in keys}) == 1
    assert backend.keys == tuple(prefix + n for n in redis_backend_module.KEY_NAMES)


def script_loads(client: Any) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_script|load", {}).get("calls", 0))


@pytest.mark.fleet
def test_noscript_loads_the_script_once_and_retries_once(
    redis_client: Any, namespace: str
) -> None:
    backend = RedisBackend(redis_client, namespace)
    pol = policy(quorum=1)
    backend.sync(SyncRequest("h1", 1, (delta("db", pol),)))
    redis_client.script_flush()
    before = script_loads(redis_client)
    reply = backend.sync(SyncRequest("h1", 2, (delta("db", pol, tripped=True),)))
    assert reply.states[0].state == "open" and not reply.duplicate
    assert script_loads(redis_client) == before + 1
    backend.sync(SyncRequest("h1", 3, (delta("db", pol),)))
    assert script_loads(redis_client) == before + 1


@pytest.mark.fleet
def test_redis_time_is_the_clock(redis_client: Any, namespace: str) -> None:
    backend = RedisBackend(redis_client, namespace)
    pol = policy(quorum=1, reset_timeout_ms=60_000)
    state = backend.sync(SyncRequest("h1", 1, (delta("db", pol, tripped=True),)))
    assert 59_000 <= state.states[0].remaining_ms <= 60_000
    seconds, micros = redis_client.time()
    now = seconds * 1000 + micros // 1000
    view = backend.view()[0]
    assert 0 < view.remaining_ms <= 60_000
    # The stored open-until is Redis time + reset: at most a second ago.
    assert abs((now + view.remaining_ms) - (now + 60_000)) < 2_000


@pytest.mark.fleet
def test_injected_time_needs_test_mode(redis_client: Any, namespace: str) -> None:
    backend = RedisBackend(redis_client, namespace)
    request = SyncRequest("h1", 1, (delta("db", policy()),), time_ms=T0)
    with pytest.raises(ValueError, match="test_clock=True"):
        backend.sync(request)
    with pytest.raises(ValueError, match="test_clock=True"):
        backend.force("db", "open", by="ops", time_ms=T0)
    # The script itself refuses, whoever calls it.
    backend.sync(SyncRequest("h1", 1, (delta("db", policy()),)))
    script = redis_backend_module._script("force")
    redis_client.script_load(script.text)
    with pytest.raises(redis.exceptions.ResponseError, match="needs the namespace in"):
        redis_client.evalsha(
            script.sha, len(backend.keys), *backend.keys,
            "e" * 16, str(T0), "100", "db", "open", "ops",
        )  # fmt: skip
    assert backend.view()[0].state == "closed"


@pytest.mark.fleet
def test_the_stream_is_bounded(redis_client: Any, namespace: str) -> None:
    backend = RedisBackend(redis_client, namespace, stream_maxlen=10)
    for i in range(400):
        backend.force("db", ("open", "close")[i % 2], by="ops")
    # MAXLEN ~ trims whole stream nodes (100 entries by default).
    assert redis_client.xlen(backend.keys[-1]) <= 10 + 100
    cursor, states = backend.events("0-0", 0)
    assert states[-1].generation == 400


@pytest.mark.fleet
def test_events_resume_across_a_new_epoch(redis_client: Any, namespace: str) -> None:
    backend = RedisBackend(redis_client, namespace)
    backend.force("db", "open", by="ops")
    cursor, states = backend.events("0-0", 0)
    assert len(states) == 1
    redis_client.delete(*backend.keys)
    # A new stream's ids start from Redis time again (data is lost well
    # after the last event, not within its millisecond).
    time.sleep(0.01)
    backend.force("db", "close", by="ops")
    # Stream ids are Redis times: the old cursor still finds the new event.
    _, states = backend.events(cursor, 0)
    assert [(s.state, s.generation) for s in states] == [("forced_closed", 1)]


def test_connect_redis_sets_short_timeouts_and_no_retries() -> None:
    client = connect_redis("redis://127.0.0.1:1/0")
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 0.25
    assert kwargs["socket_connect_timeout"] == 0.25
    retry = kwargs["retry"] if "retry" in kwargs else client.get_retry()
    assert retry._retries == 0
    with pytest.raises(ValueError, match="timeout must be in"):
        connect_redis("redis://127.0.0.1:1/0", timeout=0)


def test_a_frozen_server_costs_one_timeout_and_one_connection(namespace: str) -> None:
    # A listener that accepts and never answers, as a SIGSTOPped Redis.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        client = connect_redis(f"redis://127.0.0.1:{port}/0")
        backend = RedisBackend(client, namespace)
        started = time.monotonic()
        with pytest.raises(redis.exceptions.TimeoutError):
            backend.sync(SyncRequest("h1", 1, (delta("db", policy()),)))
        took = time.monotonic() - started
        listener.setblocking(False)
        accepted = []
        while True:
            try:
                accepted.append(listener.accept()[0])
            except BlockingIOError:
                break
        for conn in accepted:
            conn.close()
        client.close()
    assert len(accepted) == 1
    assert 0.2 <= took < 1.5, took


def test_no_password_in_reprs_or_messages(namespace: str) -> None:
    url = "redis://fleet:hunter2@127.0.0.1:1/0"
    backend = RedisBackend(connect_redis(url), namespace)
    assert "hunter2" not in repr(backend)
    assert (
        repr(backend) == f"RedisBackend(namespace={namespace!r}, server='127.0.0.1:1')"
    )
    assert redis_backend_module.redacted_url(url) == "redis://fleet:***@127.0.0.1:1/0"
    assert redis_backend_module.redacted_url("redis://h:2/0") == "redis://h:2/0"
    assert (
        redis_backend_module.redacted_url("unix:///run/r.sock?db=1&password=hunter2")
        == "unix:///run/r.sock?db=1&password=***"
    )
    assert redis_backend_module.redacted_url("redis://:hunter2@[::1]:6379") == (
        "redis://:***@[::1]:6379"
    )
    with pytest.raises(ValueError) as failed:
        connect_redis("redis://fleet:hunter2@127.0.0.1:notaport/0")
    assert "hunter2" not in str(failed.value)
    with pytest.raises(redis.exceptions.ConnectionError) as refused:
        backend.view()
    assert "hunter2" not in str(refused.value)


@pytest.mark.fleet
def test_from_url_blocks_for_events_within_its_timeout(
    redis_backend: Any, namespace: str
) -> None:
    if redis_backend.port is None:
        pytest.skip(f"needs a real redis-server: {redis_backend.fallback_reason}")
    backend = RedisBackend.from_url(
        f"redis://127.0.0.1:{redis_backend.port}/0", namespace, max_block_ms=300
    )
    try:
        cursor, _ = backend.events("$", 0)
        started = time.monotonic()
        # The block outlasts the 0.25 s script timeout, not the events client's.
        assert backend.events(cursor, 300) == (cursor, ())
        assert time.monotonic() - started >= 0.25
        with pytest.raises(ValueError, match="block_ms must be at most max_block_ms"):
            backend.events(cursor, 301)
    finally:
        backend._client.delete(*backend.keys)
        backend.close()


@pytest.mark.fleet
def test_the_documented_acl_suffices_and_fences_other_namespaces(
    redis_backend: Any, redis_client: Any, namespace: str
) -> None:
    user = f"fleet-{namespace}"
    rules = redis_backend_module.acl_rules(namespace)
    assert rules[1] == "~" + key_prefix(namespace) + "*"
    redis_client.execute_command("ACL", "SETUSER", user, "on", ">s3cret", *rules)
    url = f"redis://{user}:s3cret@127.0.0.1:{redis_backend.port}/0"
    backend = RedisBackend.from_url(url, namespace, timeout=5.0)
    try:
        pol = policy(quorum=1)
        host = Host(backend, "h1")
        cursor, _ = backend.events("$", 0)
        backend.enable_test_clock()
        assert host.sync(T0, delta("db", pol, tripped=True)).states[0].state == "open"
        assert host.sync(T0 + 1, delta("db", policy(quorum=3))).version == 1
        backend.force("db", "reset", by="ops")
        assert [s.reason for s in backend.events(cursor, 100)[1]] == [
            "quorum",
            "manual",
        ]
        assert backend.view()[0].state == "closed"
        assert len(backend.conflicts()) == 1
        redis_client.script_flush()
        assert not host.sync(T0 + 2, delta("db", pol)).duplicate
        # Another namespace's keys are out of reach, for scripts and reads.
        other = RedisBackend(backend._client, namespace + "x")
        with pytest.raises(redis.exceptions.NoPermissionError):
            other.sync(SyncRequest("h1", 1, (delta("db", pol),)))
        with pytest.raises(redis.exceptions.NoPermissionError):
            other.events("0-0", 0)
    finally:
        backend.close()
        redis_client.execute_command("ACL", "DELUSER", user)
        redis_client.delete(*backend.keys)
