"""The fleet's internal protocol: what a host's agent and a fleet backend exchange.

A leaf of the fleet package: plain frozen dataclasses, the key prefix and
the ``FleetBackend`` protocol, importing nothing heavy. Two backends
implement it: ``qbreaker.fleet.spec.MemoryBackend`` (the executable
specification of the fleet rules) and ``qbreaker.fleet.redis_backend``
(the same rules in Lua, one script per sync). docs/fleet.md states the rules.

Every value is checked where it is built, so a malformed request fails in
the agent with a message naming the field, never halfway through a script.

The probe lease (one probe host per fleet half-open generation) is a
``LeaseRequest`` in a delta and the ``lease_*`` fields of a ``FleetState``:
an expired fleet open with a lease holder is the fleet's half-open.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import itertools
import math
import zlib
from dataclasses import dataclass
from typing import Protocol

from .._validate import integer

__all__ = (
    "ACTIONS",
    "ACTIVE_HOSTS_KEPT_MS",
    "ACTIVE_WITHIN_MS",
    "EVENTS_KEPT",
    "EVENTS_PER_READ",
    "MAX_GROUPS",
    "PROBE_LEASE_MS",
    "REASONS",
    "SCHEMA",
    "STATES",
    "ActiveHost",
    "BreakerDelta",
    "FleetBackend",
    "FleetOverview",
    "FleetPolicy",
    "FleetState",
    "LeaseRequest",
    "PolicyConflict",
    "SyncReply",
    "SyncRequest",
    "Verdict",
    "check_block",
    "check_active_within",
    "check_force",
    "check_groups",
    "check_time",
    "data_lost",
    "group_of",
    "key_prefix",
)

SCHEMA = "qb1"
#: A namespace, a host id or a breaker name: at most this many UTF-8 bytes.
MAX_NAME_BYTES = 200
MAX_NAMESPACE_BYTES = 64
STATES = ("closed", "open", "forced_open", "forced_closed")
REASONS = (
    "quorum",
    "burst",
    "failure_rate",
    "slow_rate",
    "manual",
    "probe",
    "reseed",
    "lease_expired",
    "",
)
ACTIONS = ("open", "close", "reset")
#: The ring has this many buckets, each window_ms // RING_BUCKETS long.
RING_BUCKETS = 10
#: The events a backend keeps (Redis: the stream's approximate MAXLEN).
EVENTS_KEPT = 10_000
#: The most events one ``events()`` call returns.
EVENTS_PER_READ = 1000
#: How long a probe lease lasts (backend ms) unless its holder renews it:
#: a few of the agent's hot ticks, so one missed sync does not lose it.
PROBE_LEASE_MS = 2_000
#: How long a backend remembers a host's last sync (backend ms): every sync
#: records it, and trims the hosts silent for longer.
ACTIVE_HOSTS_KEPT_MS = 300_000
#: A view's active hosts by default: those that synced within 3 quiet ticks
#: (the agent's default sync interval is 1 s).
ACTIVE_WITHIN_MS = 3_000
#: The most hash tags one namespace's breakers may be split over
#: (``fleet_groups``): far more than a cluster has masters, and few enough
#: that an ACL user's key patterns (one per group) stay a short list.
MAX_GROUPS = 256
#: Redis Cluster's hash slots: CRC16 (XMODEM) of a key's hash tag, modulo this.
SLOTS = 16384
# Whole milliseconds fit a double exactly below 2**53, and Lua numbers are doubles.
_MAX_INT = 2**53 - 1


def _name(field: str, value: object, limit: int = MAX_NAME_BYTES) -> str:
    if not isinstance(value, str):
        raise TypeError(
            f"{field} must be a str, got {value!r} ({type(value).__name__})"
        )
    if not value or len(value.encode()) > limit or not value.isprintable():
        raise ValueError(
            f"{field} must be 1 to {limit} bytes of printable text, got {value!r}"
        )
    return value


def _int(field: str, value: object, low: int, high: int = _MAX_INT) -> int:
    number = integer(value)
    if number is None:
        raise TypeError(
            f"{field} must be an int in [{low}, {high}], got {value!r} "
            f"({type(value).__name__})"
        )
    if not low <= number <= high:
        raise ValueError(f"{field} must be in [{low}, {high}], got {value!r}")
    return number


def _set_int(obj: object, field: str, low: int, high: int = _MAX_INT) -> None:
    """Check ``obj.field`` and store it as a plain int (a NumPy integer is
    accepted, but JSON and Lua take only ints)."""
    object.__setattr__(obj, field, _int(field, getattr(obj, field), low, high))


def _rate(field: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{field} must be a float in (0, 1] or None, got {value!r} "
            f"({type(value).__name__})"
        )
    rate = float(value)
    if not (math.isfinite(rate) and 0.0 < rate <= 1.0):
        raise ValueError(f"{field} must be in (0, 1] or None, got {value!r}")
    return rate


def _bool(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(
            f"{field} must be a bool, got {value!r} ({type(value).__name__})"
        )
    return value


def key_prefix(namespace: str, group: int = 0, groups: int = 1) -> str:
    """The prefix of a namespace's keys: every key of one group in one hash slot.

    One group (the default): ``{qb1:<namespace>}:``. ``groups`` > 1 (the
    ``fleet_groups`` setting): group ``g`` is ``{qb1-g<g>of<G>.<n>:<namespace>}:``,
    a tag no one-group namespace can have (theirs all start ``{qb1:``), so
    two namespaces never share a key and an ACL key pattern per group fences
    exactly one namespace. ``n`` is the first number that puts the tag's
    cluster slot in the g-th of G equal slices of the slot space: the groups
    spread evenly over the slots (and so over a cluster's masters), where
    tags that differ in one character often share a master (CRC16 is linear).

    The namespace is 1 to 64 bytes of printable text without braces (a brace
    would move the hash tag) or whitespace (ACL key patterns are split on it).
    """
    _name("namespace", namespace, MAX_NAMESPACE_BYTES)
    if any(c in namespace for c in "{} \t") or not namespace.isascii():
        raise ValueError(
            f"namespace must be printable ASCII without braces or spaces, "
            f"got {namespace!r}"
        )
    groups = check_groups(groups)
    group = _int("group", group, 0, groups - 1)
    if groups == 1:
        return "{" + SCHEMA + ":" + namespace + "}:"
    return "{" + _group_tag(namespace, group, groups) + "}:"


@functools.lru_cache(maxsize=4096)
def _group_tag(namespace: str, group: int, groups: int) -> str:
    low, high = group * SLOTS // groups, (group + 1) * SLOTS // groups
    base = f"{SCHEMA}-g{group}of{groups}."
    # About G tries: a slice is a G-th of the slots, and CRC16 spreads n.
    for n in itertools.count():
        tag = f"{base}{n}:{namespace}"
        if low <= binascii.crc_hqx(tag.encode(), 0) % SLOTS < high:
            return tag
    raise AssertionError("unreachable")  # pragma: no cover


def check_groups(groups: object) -> int:
    """``fleet_groups``: an int in [1, MAX_GROUPS]."""
    number = integer(groups)
    if number is None or not 1 <= number <= MAX_GROUPS:
        error = TypeError if number is None else ValueError
        raise error(
            f"fleet_groups must be an int in [1, {MAX_GROUPS}], got {groups!r}"
            + ("" if number is not None else f" ({type(groups).__name__})")
        )
    return number


def group_of(name: str, groups: int) -> int:
    """The group of breaker ``name`` among ``groups``: a stable hash (CRC-32
    of its UTF-8 bytes, the same in every process and on every host, unlike
    Python's salted ``hash``) modulo ``groups``."""
    if groups == 1:
        return 0
    return zlib.crc32(name.encode("utf-8", "surrogatepass")) % groups


def data_lost(epoch: str | None, version: int, reply: SyncReply) -> bool:
    """Whether ``reply`` says the backend lost data since the reply that
    gave ``epoch`` and ``version``: a new epoch, or a version that went back.

    A namespace split over groups answers with each group's epoch and
    version in its epoch text (``g<g>=<epoch>/<version>;...``, see
    ``qbreaker.fleet.grouping``); then only the groups both replies name are
    compared, since a host's breakers, and so the groups it syncs, change.
    """
    if epoch is None or "=" not in epoch or "=" not in reply.epoch:
        return (epoch is not None and reply.epoch != epoch) or reply.version < version
    before = _group_marks(epoch)
    for group, (now_epoch, now_version) in _group_marks(reply.epoch).items():
        then = before.get(group)
        if then is not None and (now_epoch != then[0] or now_version < then[1]):
            return True
    return False


def _group_marks(epoch: str) -> dict[str, tuple[str, int]]:
    marks = {}
    for part in epoch.split(";"):
        group, _, mark = part.partition("=")
        part_epoch, _, part_version = mark.rpartition("/")
        marks[group] = (part_epoch, int(part_version or 0))
    return marks


@dataclass(frozen=True)
class FleetPolicy:
    """What the fleet decides with; every host sends it with each breaker."""

    quorum: int
    max_failures: int | None
    window_ms: int
    reset_timeout_ms: int
    failure_rate: float | None
    slow_rate: float | None
    minimum_calls: int
    # The hosts' own consecutive-failure threshold: not a fleet rule (the
    # scripts ignore it), but hosts that disagree on it trip at different
    # points, so it is in the digest (a rolling change is a conflict).
    local_max_failures: int | None = None

    def __post_init__(self) -> None:
        _set_int(self, "quorum", 1, 10_000)
        if self.max_failures is not None:
            _set_int(self, "max_failures", 1, 1 << 31)
        # At least one millisecond per bucket.
        _set_int(self, "window_ms", RING_BUCKETS, 86_400_000)
        _set_int(self, "reset_timeout_ms", 1, 86_400_000)
        object.__setattr__(
            self, "failure_rate", _rate("failure_rate", self.failure_rate)
        )
        object.__setattr__(self, "slow_rate", _rate("slow_rate", self.slow_rate))
        _set_int(self, "minimum_calls", 1, 1 << 31)
        if self.local_max_failures is not None:
            _set_int(self, "local_max_failures", 1, 1 << 31)
        # Computed once: an agent sends the same policy object every sync.
        encoded = self._encode()
        object.__setattr__(self, "_encoded", encoded)
        object.__setattr__(
            self, "_digest", hashlib.sha256(encoded.encode()).hexdigest()[:16]
        )

    def encode(self) -> str:
        """The canonical text both backends store and parse (floats by repr)."""
        return self._encoded  # type: ignore[no-any-return, attr-defined]

    def digest(self) -> str:
        """A stable short hash of the policy, to detect hosts that disagree."""
        return self._digest  # type: ignore[no-any-return, attr-defined]

    def _encode(self) -> str:
        def opt(value: object) -> str:
            return "" if value is None else repr(value)

        return "|".join(
            (
                str(self.quorum),
                opt(self.max_failures),
                str(self.window_ms),
                str(self.reset_timeout_ms),
                opt(self.failure_rate),
                opt(self.slow_rate),
                str(self.minimum_calls),
                opt(self.local_max_failures),
            )
        )


@dataclass(frozen=True)
class Verdict:
    """A half-open probe result from a host, fenced by the fleet generation."""

    generation: int
    ok: bool

    def __post_init__(self) -> None:
        _set_int(self, "generation", 0)
        _bool("ok", self.ok)


@dataclass(frozen=True)
class LeaseRequest:
    """A host's request about the probe lease of a breaker whose fleet open
    has expired, fenced by the fleet generation: ``take`` takes a free lease
    or renews the host's own (for PROBE_LEASE_MS more); not ``take``
    releases the host's own (it has no traffic to probe with)."""

    generation: int
    take: bool

    def __post_init__(self) -> None:
        _set_int(self, "generation", 0)
        _bool("take", self.take)


@dataclass(frozen=True)
class BreakerDelta:
    """One breaker's news from one host since its last acknowledged sync.

    ``reseed_ms``: sent only after the backend's epoch changed (its data was
    lost), by a host whose cell is open because of the fleet, with the time
    that cell has left; the fleet re-opens for the longest such time.
    ``lease``: a probe lease request (see ``LeaseRequest``).
    """

    name: str
    policy: FleetPolicy
    calls: int
    failures: int
    slow: int
    successes: int
    tripped: bool
    verdict: Verdict | None
    reseed_ms: int | None = None
    lease: LeaseRequest | None = None

    def __post_init__(self) -> None:
        _name("name", self.name)
        if not isinstance(self.policy, FleetPolicy):
            raise TypeError(
                f"policy must be a FleetPolicy, got {type(self.policy).__name__}"
            )
        for field in ("calls", "failures", "slow", "successes"):
            _set_int(self, field, 0, 1 << 40)
        _bool("tripped", self.tripped)
        if self.verdict is not None and not isinstance(self.verdict, Verdict):
            raise TypeError(
                f"verdict must be a Verdict or None, got {type(self.verdict).__name__}"
            )
        if self.reseed_ms is not None:
            _set_int(self, "reseed_ms", 1, 86_400_000)
        if self.lease is not None and not isinstance(self.lease, LeaseRequest):
            raise TypeError(
                f"lease must be a LeaseRequest or None, got {type(self.lease).__name__}"
            )


@dataclass(frozen=True)
class SyncRequest:
    """One host's sync: idempotent by ``(host_id, seq)``; names are unique."""

    host_id: str
    seq: int
    deltas: tuple[BreakerDelta, ...]
    time_ms: int | None = None  # test mode only: injected backend time

    def __post_init__(self) -> None:
        _name("host_id", self.host_id)
        _set_int(self, "seq", 0)
        if not isinstance(self.deltas, tuple) or not all(
            isinstance(delta, BreakerDelta) for delta in self.deltas
        ):
            raise TypeError("deltas must be a tuple of BreakerDelta")
        names = [delta.name for delta in self.deltas]
        if len(set(names)) != len(names):
            raise ValueError(f"deltas must name each breaker once, got {names!r}")
        if self.time_ms is not None:
            _set_int(self, "time_ms", 0)


@dataclass(frozen=True)
class FleetState:
    """A breaker's fleet state, as a backend reports it.

    ``calls``, ``failures``, ``slow``, ``successes``: the fleet's counts over
    its window (the ring) when the state was read; 0 in events, since every
    transition empties the ring.
    ``lease_holder``: the host holding the probe lease ("" when none), and
    ``lease_remaining_ms`` until it expires (<= 0: expired, not yet acted on;
    0 when none). Only an expired ``open`` has a holder.
    """

    name: str
    state: str
    generation: int
    remaining_ms: int
    tripped_by: tuple[str, ...]
    reason: str
    calls: int = 0
    failures: int = 0
    slow: int = 0
    successes: int = 0
    lease_holder: str = ""
    lease_remaining_ms: int = 0


@dataclass(frozen=True)
class SyncReply:
    """The backend's answer to a sync.

    ``last_seq``: the host's last applied seq after this request (-1: none).
    An agent that starts afresh (a takeover, a restart) and finds its first
    request a duplicate continues from ``last_seq + 1``.
    """

    epoch: str
    version: int
    duplicate: bool
    states: tuple[FleetState, ...]
    last_seq: int = -1


@dataclass(frozen=True)
class PolicyConflict:
    """A host sent a breaker's policy that differs from the stored (first) one."""

    name: str
    host_id: str
    digest: str
    stored_digest: str


@dataclass(frozen=True)
class ActiveHost:
    """A host whose agent synced within a view's window, ``ms_ago`` backend
    ms before the view (0 if the backend's clock went back since)."""

    host_id: str
    ms_ago: int


@dataclass(frozen=True)
class FleetOverview:
    """The fleet-wide view: every breaker's state (as ``view()``), and the
    hosts active within ``active_within_ms``, by host id."""

    states: tuple[FleetState, ...]
    active_hosts: tuple[ActiveHost, ...]
    active_within_ms: int


class FleetBackend(Protocol):
    """Where the fleet rules run; both backends implement exactly the same rules."""

    def sync(self, request: SyncRequest) -> SyncReply: ...

    def force(
        self, name: str, action: str, *, by: str, time_ms: int | None = None
    ) -> FleetState: ...

    def events(
        self, cursor: str, block_ms: int
    ) -> tuple[str, tuple[FleetState, ...]]: ...

    def view(self, *, time_ms: int | None = None) -> tuple[FleetState, ...]: ...


def check_force(name: object, action: object, by: object) -> None:
    """The arguments of ``FleetBackend.force``, checked the same for every backend."""
    _name("name", name)
    _name("by", by)
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS!r}, got {action!r}")


def check_block(block_ms: object) -> int:
    """The ``block_ms`` of ``FleetBackend.events``: ms to wait, 0 not at all."""
    return _int("block_ms", block_ms, 0, 3_600_000)


def check_time(time_ms: object) -> int | None:
    return None if time_ms is None else _int("time_ms", time_ms, 0)


def check_active_within(active_within_ms: object) -> int:
    """The window of a view's active hosts, in backend ms."""
    return _int("active_within_ms", active_within_ms, 1, ACTIVE_HOSTS_KEPT_MS)
