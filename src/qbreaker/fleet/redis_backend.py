"""The fleet rules in Redis: one Lua script per sync, a stream of transitions.

``RedisBackend(client, namespace)`` implements ``FleetBackend`` over a
redis-py client. Every sync is one ``EVALSHA`` (on ``NOSCRIPT``, after a
restart or a ``SCRIPT FLUSH``, the script is loaded once and the call sent
once more); every time is Redis ``TIME``, read inside the script; every fleet
transition is ``XADD``-ed to the namespace's stream (``MAXLEN ~``), which
``events()`` reads with ``XREAD BLOCK``. The scripts (``lua/*.lua``) hold the
same rules as ``qbreaker.fleet.spec``, and tests/fleet/test_scripts.py checks
that they agree.

``connect_redis()`` (from ``qbreaker.fleet.connection``: the URL forms,
TLS, Sentinel, credentials) builds clients the way the fleet needs them:
short explicit socket timeouts and no client-library retries (the agent has
its own backoff). A password never appears in a repr or a message.

Test mode: ``RedisBackend(..., test_clock=True)`` marks the namespace
(``meta.test_clock = 1``), and only then do the scripts accept a request's
``time_ms`` in place of Redis ``TIME``; elsewhere an injected time is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

import redis

from ._protocol import (
    ACTIVE_WITHIN_MS,
    EVENTS_KEPT,
    EVENTS_PER_READ,
    ActiveHost,
    FleetBackend,
    FleetOverview,
    FleetState,
    PolicyConflict,
    SyncReply,
    SyncRequest,
    check_active_within,
    check_block,
    check_force,
    check_groups,
    check_time,
    key_prefix,
)
from .connection import DEFAULT_TIMEOUT, connect_redis, describe_server, redacted_url
from .grouping import GroupedBackend

__all__ = (
    "ACL_COMMANDS",
    "KEY_NAMES",
    "RedisBackend",
    "acl_rules",
    "connect_redis",
    "grouped_backend",
    "redacted_url",
)

#: The keys of a namespace, after its prefix, in the order the scripts take them.
KEY_NAMES = ("meta", "pol", "st", "ring", "trip", "seq", "conf", "hosts", "ev")


class _Script:
    """One script: common.lua followed by the script's own file."""

    def __init__(self, name: str) -> None:
        lua = resources.files(__package__).joinpath("lua")
        common = lua.joinpath("common.lua").read_text(encoding="utf-8")
        own = lua.joinpath(f"{name}.lua").read_text(encoding="utf-8")
        self.name = name
        self.text = common + "\n" + own
        self.sha = hashlib.sha1(self.text.encode()).hexdigest()


_SCRIPTS: dict[str, _Script] = {}


def _script(name: str) -> _Script:
    script = _SCRIPTS.get(name)
    if script is None:
        script = _SCRIPTS[name] = _Script(name)
    return script


#: Every command the backend sends, and those its scripts call (Redis checks
#: those against the ACL as well); ``client|setname``: the agent names its
#: connections. (``HELLO`` and ``AUTH``, the handshake, need no rule.)
ACL_COMMANDS = (
    "evalsha", "script|load", "xread", "xrevrange", "hgetall", "hget",
    "time", "hset", "hsetnx", "hdel", "hincrby", "hkeys", "xadd",
    "zadd", "zremrangebyscore", "zrangebyscore", "client|setname",
)  # fmt: skip
#: What a client sends before any command, which every user may.
HANDSHAKE_COMMANDS = ("hello", "auth")


def acl_rules(namespace: str, groups: int = 1) -> tuple[str, ...]:
    """The least an ACL user of one namespace needs, for ``ACL SETUSER``:
    its keys only, no channels, only the commands of ``ACL_COMMANDS``.
    Split over ``groups`` (``fleet_groups``): one key pattern per group,
    and the one-group prefix, whose meta holds the namespace's G."""
    patterns = [f"~{key_prefix(namespace)}*"]
    if check_groups(groups) > 1:
        patterns += [f"~{key_prefix(namespace, g, groups)}*" for g in range(groups)]
    return (
        "resetkeys",
        *patterns,
        "resetchannels",
        "-@all",
        *(f"+{command}" for command in ACL_COMMANDS),
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _state(raw: Any) -> FleetState:
    """A state from a script's reply, or from an event (without the counts
    and the lease: a transition empties both)."""
    name, state, generation, remaining, reason, by, *rest = raw
    by_text = _text(by)
    calls, failures, slow, successes = (int(c) for c in (*rest[:4], 0, 0, 0, 0)[:4])
    holder = _text(rest[4]) if len(rest) > 4 else ""
    return FleetState(
        _text(name),
        _text(state),
        int(generation),
        int(remaining),
        tuple(by_text.split("\n")) if by_text else (),
        _text(reason),
        calls,
        failures,
        slow,
        successes,
        holder,
        int(rest[5]) if holder else 0,
    )


def _json_states(raw: Any) -> tuple[FleetState, ...]:
    # Lua's cjson writes an empty array as {}.
    return tuple(_state(item) for item in json.loads(raw) or ())


class RedisBackend:
    """The fleet rules of one namespace in Redis.

    ``client`` runs the scripts; ``events_client`` (default: ``client``)
    serves ``events()``, whose ``XREAD BLOCK`` needs a socket timeout longer
    than the block. Both are used as given: build them with
    ``connect_redis()`` for the fleet's timeouts and no retries.
    """

    def __init__(
        self,
        client: Any,
        namespace: str,
        *,
        events_client: Any = None,
        stream_maxlen: int = EVENTS_KEPT,
        test_clock: bool = False,
        group: int = 0,
        groups: int = 1,
    ) -> None:
        self.namespace = namespace
        # A part of a namespace split over groups serves one group's keys.
        self.prefix = key_prefix(namespace, group, groups)
        self.keys = tuple(self.prefix + name for name in KEY_NAMES)
        self._client = client
        self._events_client = client if events_client is None else events_client
        if isinstance(stream_maxlen, bool) or not isinstance(stream_maxlen, int):
            raise TypeError(f"stream_maxlen must be an int, got {stream_maxlen!r}")
        if stream_maxlen < 1:
            raise ValueError(f"stream_maxlen must be >= 1, got {stream_maxlen!r}")
        self._maxlen = str(stream_maxlen)
        # Set by from_url: the events client's timeout allows this long a block.
        self._max_block_ms: int | None = None
        self._test_clock = bool(test_clock)
        if self._test_clock:
            self.enable_test_clock()

    @classmethod
    def from_url(
        cls,
        url: str,
        namespace: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_block_ms: int = 1000,
        **options: Any,
    ) -> RedisBackend:
        """A backend with its two clients made by ``connect_redis``: scripts
        with ``timeout``, events with ``timeout`` plus ``max_block_ms`` (the
        longest ``events()`` block then accepted). Connects lazily."""
        if isinstance(max_block_ms, bool) or not isinstance(max_block_ms, int):
            raise TypeError(f"max_block_ms must be an int, got {max_block_ms!r}")
        if not 1 <= max_block_ms <= 60_000:
            raise ValueError(
                f"max_block_ms must be in [1, 60000], got {max_block_ms!r}"
            )
        key_prefix(namespace)
        client = connect_redis(url, timeout=timeout, **options)
        events_client = connect_redis(
            url, timeout=timeout + max_block_ms / 1000, **options
        )
        backend = cls(client, namespace, events_client=events_client)
        backend._max_block_ms = max_block_ms
        return backend

    def close(self) -> None:
        """Close both clients' connections."""
        self._client.close()
        if self._events_client is not self._client:
            self._events_client.close()

    def __repr__(self) -> str:
        where = describe_server(self._client)
        return f"RedisBackend(namespace={self.namespace!r}, server={where!r})"

    # -- the protocol ---------------------------------------------------------

    def sync(self, request: SyncRequest) -> SyncReply:
        if not isinstance(request, SyncRequest):
            raise TypeError(
                f"request must be a SyncRequest, got {type(request).__name__}"
            )
        payload = {
            "h": request.host_id,
            "q": str(request.seq),
            "d": [
                [
                    d.name,
                    d.policy.digest() + "|" + d.policy.encode(),
                    d.calls,
                    d.failures,
                    d.slow,
                    d.successes,
                    int(d.tripped),
                    -1 if d.verdict is None else d.verdict.generation,
                    int(d.verdict is not None and d.verdict.ok),
                    -1 if d.reseed_ms is None else d.reseed_ms,
                    -1 if d.lease is None else d.lease.generation,
                    int(d.lease is not None and d.lease.take),
                ]
                for d in request.deltas
            ],
        }
        epoch, version, duplicate, states, last_seq = self._run(
            "sync", request.time_ms, json.dumps(payload, separators=(",", ":"))
        )
        return SyncReply(
            _text(epoch),
            int(version),
            bool(duplicate),
            _json_states(states),
            int(last_seq),
        )

    def force(
        self, name: str, action: str, *, by: str, time_ms: int | None = None
    ) -> FleetState:
        check_force(name, action, by)
        return _state(self._run("force", check_time(time_ms), name, action, by))

    def events(self, cursor: str, block_ms: int) -> tuple[str, tuple[FleetState, ...]]:
        """Transitions after ``cursor`` (a stream id; ``"$"``: from now on;
        ``"0-0"``: all kept), waiting up to ``block_ms`` for one (0: not at
        all). Returns the cursor to pass next time and the states."""
        block_ms = check_block(block_ms)
        if self._max_block_ms is not None and block_ms > self._max_block_ms:
            raise ValueError(
                f"block_ms must be at most max_block_ms={self._max_block_ms} "
                f"(the events client's socket timeout), got {block_ms!r}"
            )
        if not isinstance(cursor, str):
            raise TypeError(f"cursor must be a str, got {cursor!r}")
        stream = self.keys[-1]
        if cursor == "$":
            # XREAD's own "$" names no id to resume from: start at the last one.
            last = self._events_client.xrevrange(stream, count=1)
            cursor = _text(last[0][0]) if last else "0-0"
        reply = self._events_client.xread(
            {stream: cursor}, count=EVENTS_PER_READ, block=block_ms or None
        )
        states: list[FleetState] = []
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                cursor = _text(entry_id)
                states.append(_event(fields))
        return cursor, tuple(states)

    def view(self, *, time_ms: int | None = None) -> tuple[FleetState, ...]:
        return self._view(0, check_time(time_ms)).states

    def overview(
        self, active_within_ms: int = ACTIVE_WITHIN_MS, *, time_ms: int | None = None
    ) -> FleetOverview:
        """``view()`` and the hosts that synced within ``active_within_ms``
        (at most ACTIVE_HOSTS_KEPT_MS), from one script."""
        within = check_active_within(active_within_ms)
        return self._view(within, check_time(time_ms))

    def _view(self, within_ms: int, time_ms: int | None) -> FleetOverview:
        raw_states, raw_hosts = self._run("view", time_ms, str(within_ms))
        states = sorted(_json_states(raw_states), key=lambda state: state.name)
        # Lua's cjson writes an empty array as {}.
        hosts = [ActiveHost(str(h), int(ago)) for h, ago in json.loads(raw_hosts) or ()]
        return FleetOverview(
            tuple(states),
            tuple(sorted(hosts, key=lambda host: host.host_id)),
            within_ms,
        )

    # -- beyond the protocol ----------------------------------------------------

    def conflicts(self) -> tuple[PolicyConflict, ...]:
        """Hosts whose policy for a breaker differs from the stored one."""
        pol, conf = self.keys[1], self.keys[6]
        found = []
        for field, digest in self._client.hgetall(conf).items():
            name, host = _text(field).split("\n", 1)
            stored = self._client.hget(pol, name)
            stored_digest = _text(stored).split("|", 1)[0] if stored else ""
            found.append(PolicyConflict(name, host, _text(digest), stored_digest))
        return tuple(sorted(found, key=lambda c: (c.name, c.host_id)))

    def claim_groups(self, groups: int) -> int:
        """Store the namespace's ``fleet_groups`` unless one is stored (in the
        one-group namespace's meta, which hosts of every G find); return the
        stored value (a record from before groups existed: 1)."""
        meta = key_prefix(self.namespace) + "meta"
        if self._client.hsetnx(meta, "groups", str(check_groups(groups))):
            return groups
        stored = self._client.hget(meta, "groups")
        return int(_text(stored)) if stored is not None else groups

    def enable_test_clock(self) -> None:
        """Let the scripts take injected times in this namespace (tests only)."""
        self._client.hset(self.keys[0], "test_clock", "1")
        self._test_clock = True

    # -- the scripts ------------------------------------------------------------

    def _run(self, name: str, time_ms: int | None, *args: str) -> Any:
        if time_ms is not None and not self._test_clock:
            raise ValueError(
                "time_ms is accepted only by a RedisBackend made with test_clock=True"
            )
        script = _script(name)
        argv = (
            os.urandom(8).hex(),
            "" if time_ms is None else str(time_ms),
            self._maxlen,
            *args,
        )
        try:
            return self._client.evalsha(script.sha, len(self.keys), *self.keys, *argv)
        except redis.exceptions.NoScriptError:
            # Redis restarted or the scripts were flushed: load once, send once.
            self._client.script_load(script.text)
            return self._client.evalsha(script.sha, len(self.keys), *self.keys, *argv)


def grouped_backend(
    client: Any,
    namespace: str,
    groups: int = 1,
    *,
    events_client: Any = None,
    stream_maxlen: int = EVENTS_KEPT,
    test_clock: bool = False,
) -> GroupedBackend:
    """One namespace split over ``groups`` hash tags (``fleet_groups``): a
    ``RedisBackend`` per group, as one backend (see ``grouping``). With one
    group, its keys are exactly those of ``RedisBackend(client, namespace)``."""
    groups = check_groups(groups)
    parts = [
        RedisBackend(
            client,
            namespace,
            events_client=events_client,
            stream_maxlen=stream_maxlen,
            test_clock=test_clock,
            group=group,
            groups=groups,
        )
        for group in range(groups)
    ]
    reader = parts[0]._events_client
    # A single server reads every stream in one XREAD; a cluster cannot
    # (the streams are in different slots).
    read_all = None if _is_cluster(reader) else _StreamsReader(reader, parts)
    return GroupedBackend(parts, parts[0], namespace=namespace, read_all=read_all)


def _is_cluster(client: Any) -> bool:
    cluster = getattr(redis, "cluster", None)
    return cluster is not None and isinstance(client, cluster.RedisCluster)


class _StreamsReader:
    """Every group's stream in one ``XREAD`` (one server only)."""

    def __init__(self, client: Any, parts: list[RedisBackend]) -> None:
        self._client = client
        self._parts = parts
        self._streams = [part.keys[-1] for part in parts]

    def __call__(
        self, cursors: Sequence[str], block_ms: int
    ) -> tuple[list[str], tuple[FleetState, ...]]:
        # "$" names no id to resume from: each part resolves it (no wait).
        read = [
            part.events("$", 0)[0] if cursor == "$" else cursor
            for part, cursor in zip(self._parts, cursors)
        ]
        index = {stream: i for i, stream in enumerate(self._streams)}
        reply = self._client.xread(
            dict(zip(self._streams, read)),
            count=EVENTS_PER_READ,
            block=block_ms or None,
        )
        states: list[FleetState] = []
        for stream, entries in reply or ():
            i = index[_text(stream)]
            for entry_id, fields in entries:
                read[i] = _text(entry_id)
                states.append(_event(fields))
        return read, tuple(states)


def _event(fields: Any) -> FleetState:
    f = {_text(k): v for k, v in fields.items()}
    return _state([f[k] for k in ("n", "s", "g", "r", "w", "b")])


if TYPE_CHECKING:  # mypy checks that the backend implements the protocol

    def _implements(backend: RedisBackend) -> FleetBackend:
        return backend
