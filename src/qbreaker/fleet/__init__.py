"""Fleet-wide breakers: hosts share their trips through Redis, beside the calls.

``connect(url, namespace=...)`` once per process; then
``CircuitBreaker(..., shared="payments", fleet=True)`` is a host-wide
breaker whose host agent (one process per host, elected; see
``qbreaker.fleet.agent``) reports its trips and counts to the fleet and
applies the fleet's decisions to its cell. Calls touch only the host's cell,
so nothing here is on a protected call, and Redis trouble leaves every
breaker working as a host-wide one. ``status()`` reads this host's view from
the control segment, without a network call.

This package imports nothing heavy at import time: the protocol is plain
dataclasses, and redis-py is imported only by ``qbreaker.fleet.redis_backend``,
in the elected agent.
"""

from __future__ import annotations

import math
import os
import socket
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Union, cast

from .._impl import methods
from .._impl.methods import FleetOptions
from ._protocol import (
    MAX_GROUPS,
    MAX_NAME_BYTES,
    FleetBackend,
    PolicyConflict,
    check_groups,
    key_prefix,
)
from .connection import check_url, redacted_url
from .control import ControlSegment, monotonic_ms
from .control import exists as control_exists
from .counters import AgentCounters, AgentMetrics

__all__ = (
    "AgentMetrics",
    "FleetStatus",
    "FleetView",
    "connect",
    "disconnect",
    "joined",
    "metrics",
    "status",
)

ENV_URL = "QBREAKER_FLEET_URL"
ENV_NAMESPACE = "QBREAKER_FLEET_NAMESPACE"
ENV_AGENT = "QBREAKER_FLEET_AGENT"
ENV_HOST_ID = "QBREAKER_FLEET_HOST_ID"
ENV_GROUPS = "QBREAKER_FLEET_GROUPS"
AGENT_MODES = {
    "auto": "a daemon thread of an elected worker",
    "sidecar": "python -m qbreaker agent runs it; workers never do",
    "off": "this process never runs it",
}

Backend = Union[FleetBackend, Callable[[], FleetBackend]]


@dataclass(frozen=True)
class FleetView:
    """One fleet breaker as this host's agent last saw it (``metrics().fleet``).

    ``state`` is the fleet's ("closed", "open", "forced_open",
    "forced_closed"; None before the first sync), ``generation`` the fleet
    generation, ``origin`` "fleet" when the host's cell is open because the
    fleet opened it, "local" when it opened for this host's own reasons, None
    otherwise. ``sent_*`` count what this host has reported; ``fleet_*``
    are the whole fleet's counts over its window (``fleet_window``), as of
    the agent's last sync (0 before it).
    ``lease_holder``: the host that probes for the fleet once its open has
    expired ("" when none).
    """

    name: str
    state: str | None
    generation: int
    origin: str | None
    tripped_by: tuple[str, ...]
    reason: str
    sent_calls: int
    sent_failures: int
    sent_successes: int
    connected: bool
    lease_holder: str = ""
    fleet_calls: int = 0
    fleet_failures: int = 0
    fleet_successes: int = 0
    fleet_slow: int = 0


@dataclass(frozen=True)
class FleetStatus:
    """This host's fleet connection, from the control segment (no network).

    ``connected`` is False when no agent is alive or its last contact with
    the backend failed (then ``degraded_since``, a wall-clock time, and
    ``last_error`` say since when and why). Wall times are for people only:
    fleet decisions never use a host's wall clock.
    """

    connected: bool
    agent_alive: bool
    agent_pid: int | None
    mode: str | None
    host_id: str | None
    namespace: str | None
    url: str | None
    degraded_since: float | None
    last_error: str | None
    last_good_sync: float | None
    epoch: str | None
    breakers: dict[str, FleetView]
    #: Hosts sending a policy for one of this host's breakers that differs
    #: from the fleet's (the first stored); each is warned of once.
    policy_conflicts: tuple[PolicyConflict, ...] = ()


@dataclass(frozen=True)
class _Settings:
    url: str | None
    namespace: str
    agent: str
    host_id: str
    sync_interval: float
    timeout: float
    # Never in a repr: the settings may be printed while debugging.
    password: str | None = field(repr=False)
    backend: Backend | None
    credential_provider: Any = field(default=None, repr=False)
    fleet_groups: int = 1


_lock = threading.Lock()
_settings: _Settings | None = None
_control: ControlSegment | None = None
_runner: Any = None


def connect(
    url: str | None = None,
    *,
    namespace: str | None = None,
    sync_interval: float = 1.0,
    timeout: float = 0.25,
    agent: str | None = None,
    host_id: str | None = None,
    password_file: str | None = None,
    credential_provider: Any = None,
    backend: Backend | None = None,
    fleet_groups: int | None = None,
) -> None:
    """Join this process to its host's fleet agent; once per process.

    ``url`` (else $QBREAKER_FLEET_URL): ``redis://``, ``rediss://`` (TLS
    options in its query), ``unix://``, ``redis+sentinel://`` or
    ``redis+cluster://`` (see ``qbreaker.fleet.connection``). ``namespace`` (else
    $QBREAKER_FLEET_NAMESPACE): the fleet's key space, shared by every host
    of the fleet. ``agent`` (else $QBREAKER_FLEET_AGENT, else "auto"):
    "auto" elects one process per host to run the agent as a daemon thread;
    "sidecar" leaves it to ``python -m qbreaker agent``; "off" never runs it
    here. ``host_id`` (else $QBREAKER_FLEET_HOST_ID, else the hostname).
    ``password_file``: a file holding the Redis password, read now; it never
    appears in a log or a status. ``credential_provider``: a redis-py
    ``CredentialProvider``, asked for the user and password on every new
    connection. ``backend``: a FleetBackend (or a callable making one) in place
    of Redis. ``sync_interval`` is the quiet tick (250 ms while anything is
    failing or open), ``timeout`` every Redis call's. ``fleet_groups`` (else
    $QBREAKER_FLEET_GROUPS, else 1): split the namespace's breakers over this
    many Redis hash tags (1 to 256), to spread a hot namespace over a
    cluster's masters; every host of the namespace must use the same number
    (a host with another is refused, and stays host-wide).

    Never raises because Redis is unreachable: the agent starts degraded and
    keeps trying. Bad settings raise TypeError/ValueError here. Connecting
    again with the same settings does nothing; with others, ValueError (call
    ``disconnect()`` first).
    """
    global _settings, _control, _runner
    settings = _make_settings(
        url, namespace, sync_interval, timeout, agent, host_id, password_file, backend
    )
    settings = replace(settings, fleet_groups=_fleet_groups(fleet_groups))
    if credential_provider is not None:
        if password_file is not None:
            raise ValueError("give password_file or credential_provider, not both")
        settings = _replace_provider(settings, credential_provider)
    with _lock:
        if _settings is not None:
            if settings == _settings:
                return
            raise ValueError(
                "qbreaker.fleet is already connected in this process with other "
                "settings; call qbreaker.fleet.disconnect() first"
            )
        control = ControlSegment()
        _settings, _control = settings, control
        methods.provide_fleet_hooks(methods.FleetHooks(_register, _view))
        if settings.agent == "auto":
            _runner = _make_runner(settings, control)
            _runner.start()


def disconnect() -> None:
    """Stop this process's part in the fleet (its agent, if it is the one).

    Fleet breakers made before stay host-wide breakers; new ones need
    ``connect()`` again.
    """
    global _settings, _control, _runner
    with _lock:
        runner, _runner = _runner, None
        control, _control = _control, None
        _settings = None
        methods.provide_fleet_hooks(None)
    if runner is not None:
        runner.stop()
    if control is not None:
        control.close()


def status() -> FleetStatus:
    """This host's fleet status, read from the control segment (no network).

    Works in any process of the host, connected or not; makes nothing
    (a host without a control segment has no agent).
    """
    if _control is None and not control_exists():
        return _status_of(None)
    control = _control if _control is not None else ControlSegment()
    try:
        return _status_of(control)
    finally:
        if control is not _control:
            control.close()


def joined() -> bool:
    """Whether this process has called ``connect()`` (and not ``disconnect()``)."""
    return _settings is not None


def metrics() -> AgentMetrics:
    """The counters of this process's host agent (no network): syncs, errors
    by kind, round trips, decisions applied, elections, probe leases.

    ``agent`` is False where this process does not run its host's agent
    now: the counts stay as last seen while it is connected (another
    process won the election), and read zero once disconnected.
    """
    runner = _runner
    counters = getattr(runner, "counters", None)
    if not isinstance(counters, AgentCounters):
        return AgentCounters().read()
    return counters.read()


def run_agent(
    *, stop: threading.Event | None = None, password_file: str | None = None
) -> None:
    """Run this host's agent in the calling thread (``python -m qbreaker agent``):
    it waits for the lease, then runs while it holds it, until ``stop``.
    Settings from the environment (see ``connect``)."""
    settings = _make_settings(
        None, None, 1.0, 0.25, "sidecar", None, password_file, None
    )
    settings = replace(settings, fleet_groups=_fleet_groups(None))
    runner = _make_runner(settings, ControlSegment(), mode="sidecar")
    if stop is not None:
        threading.Thread(
            target=lambda: (stop.wait(), runner.stop()), daemon=True
        ).start()
    try:
        runner.run()
    finally:
        runner.stop()


def redis_backend_for(
    url: str | None,
    namespace: str | None,
    *,
    password_file: str | None = None,
    fleet_groups: int | None = None,
) -> FleetBackend:
    """A Redis backend for ``url`` and ``namespace`` (else the environment's),
    split over ``fleet_groups`` (else the environment's, else 1), with the
    fleet's short timeouts; no connection is made here."""
    settings = _make_settings(
        url, namespace, 1.0, 0.25, "off", None, password_file, None
    )
    settings = replace(settings, fleet_groups=_fleet_groups(fleet_groups))
    return _backend_factory(settings)()


# -- internals -------------------------------------------------------------------


def _make_settings(
    url: str | None,
    namespace: str | None,
    sync_interval: float,
    timeout: float,
    agent: str | None,
    host_id: str | None,
    password_file: str | None,
    backend: Backend | None,
) -> _Settings:
    url = url if url is not None else os.environ.get(ENV_URL) or None
    namespace = namespace if namespace is not None else os.environ.get(ENV_NAMESPACE)
    agent = agent if agent is not None else os.environ.get(ENV_AGENT) or "auto"
    host_id = host_id if host_id is not None else os.environ.get(ENV_HOST_ID)
    if backend is None:
        if url is None:
            raise ValueError(
                f"url must be a redis://, rediss://, unix://, redis+sentinel:// "
                f"or redis+cluster:// URL (or set "
                f"${ENV_URL}), got None"
            )
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, got {type(url).__name__}")
        check_url(url)
    elif not callable(backend) and not hasattr(backend, "sync"):
        raise TypeError(
            f"backend must be a FleetBackend or a callable, got {backend!r}"
        )
    if namespace is None:
        raise ValueError(f"namespace is required (or set ${ENV_NAMESPACE}), got None")
    key_prefix(namespace)  # validates it
    if agent not in AGENT_MODES:
        accepted = " or ".join(f"{k!r} ({v})" for k, v in AGENT_MODES.items())
        raise ValueError(f"agent must be {accepted}, got {agent!r}")
    host_id = host_id or socket.gethostname()
    if (
        not isinstance(host_id, str)
        or not host_id.isprintable()
        or not 0 < len(host_id.encode("utf-8", "surrogatepass")) <= MAX_NAME_BYTES
    ):
        raise ValueError(
            f"host_id must be 1 to {MAX_NAME_BYTES} bytes of printable text, "
            f"got {host_id!r}"
        )
    sync_interval = _seconds("sync_interval", sync_interval, 0.05, 60.0)
    timeout = _seconds("timeout", timeout, 0.001, 10.0)
    password = None
    if password_file is not None:
        if not isinstance(password_file, (str, os.PathLike)):
            raise TypeError(f"password_file must be a path, got {password_file!r}")
        try:
            with open(password_file, encoding="utf-8") as f:
                password = f.read().rstrip("\r\n")
        except OSError as exc:
            raise ValueError(
                f"password_file {os.fspath(password_file)!r} cannot be read: "
                f"{exc.strerror}"
            ) from None
    return _Settings(
        url, namespace, agent, host_id, sync_interval, timeout, password, backend
    )


def _fleet_groups(value: object) -> int:
    """``fleet_groups``, else $QBREAKER_FLEET_GROUPS, else 1."""
    if value is None:
        text = os.environ.get(ENV_GROUPS) or ""
        try:
            value = int(text.strip() or "1")
        except ValueError:
            raise ValueError(
                f"fleet_groups (${ENV_GROUPS}) must be an int in "
                f"[1, {MAX_GROUPS}], got {text!r}"
            ) from None
    return check_groups(value)


def _seconds(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not (math.isfinite(seconds) and low <= seconds <= high):
        raise ValueError(
            f"{name} must be in [{low:g}, {high:g}] seconds, got {value!r}"
        )
    return seconds


def _replace_provider(settings: _Settings, provider: Any) -> _Settings:
    if not callable(getattr(provider, "get_credentials", None)):
        raise TypeError(
            f"credential_provider must be a redis-py CredentialProvider (with "
            f"get_credentials()), got {type(provider).__name__}"
        )
    return replace(settings, credential_provider=provider)


def _make_runner(
    settings: _Settings, control: ControlSegment, mode: str = "thread"
) -> Any:
    from .agent import Runner

    info = {
        "mode": mode,
        "namespace": settings.namespace,
        "url": None if settings.url is None else redacted_url(settings.url),
        "sync_interval": settings.sync_interval,
        "fleet_groups": settings.fleet_groups,
        "password": settings.password,  # for redacting errors; never published
    }
    return Runner(
        _backend_factory(settings, agent=True),
        settings.host_id,
        info=info,
        sync_interval=settings.sync_interval,
        control=control,
    )


def _backend_factory(
    settings: _Settings, *, agent: bool = False
) -> Callable[[], FleetBackend]:
    """What makes the backend; ``agent``: for the host's agent, whose
    connections carry its name (made in the elected process, at election)."""
    given = settings.backend
    if given is not None:
        if not hasattr(given, "sync"):
            return given
        backend = cast("FleetBackend", given)
        return lambda: backend

    def make() -> FleetBackend:
        from .agent import EVENTS_BLOCK_MS
        from .connection import agent_client_name
        from .redis_backend import connect_redis, grouped_backend

        assert settings.url is not None
        options: dict[str, Any] = {
            "password": settings.password,
            "credential_provider": settings.credential_provider,
        }
        if agent:
            options["client_name"] = agent_client_name(
                settings.namespace, settings.host_id, os.getpid()
            )
        client = connect_redis(settings.url, timeout=settings.timeout, **options)
        events = connect_redis(
            settings.url,
            timeout=settings.timeout + EVENTS_BLOCK_MS / 1000,
            **options,
        )
        return grouped_backend(
            client, settings.namespace, settings.fleet_groups, events_client=events
        )

    return make


def _register(name: str, options: FleetOptions, created: bool) -> None:
    control = _control
    if control is None:
        raise ValueError("fleet=True needs qbreaker.fleet.connect() first")
    control.register(name, options, fresh=created)


def _view(name: str) -> FleetView | None:
    control = _control
    if control is None:
        return None
    return _status_of(control).breakers.get(name)


def _status_of(control: ControlSegment | None) -> FleetStatus:
    raw = {} if control is None else control.read_status()
    alive = control is not None and control.agent_alive()
    # A status older than a few ticks is a dead or frozen agent's.
    fresh = monotonic_ms() - int(raw.get("updated_ms", 0)) < 3 * 10_000
    connected = bool(raw.get("connected")) and alive and fresh
    breakers = {}
    for name, entry in raw.get("breakers", {}).items():
        sent = entry.get("sent") or [0, 0, 0]
        window = entry.get("window") or [0, 0, 0, 0]
        breakers[name] = FleetView(
            name=name,
            state=entry.get("state"),
            generation=int(entry.get("generation", 0)),
            origin=_origin(entry),
            tripped_by=tuple(entry.get("tripped_by", ())),
            reason=str(entry.get("reason", "")),
            sent_calls=int(sent[0]),
            sent_failures=int(sent[1]),
            sent_successes=int(sent[2]),
            connected=connected,
            lease_holder=str(entry.get("lease_holder", "")),
            fleet_calls=int(window[0]),
            fleet_failures=int(window[1]),
            fleet_successes=int(window[2]),
            fleet_slow=int(window[3]),
        )
    return FleetStatus(
        connected=connected,
        agent_alive=alive,
        agent_pid=raw.get("pid") if alive else None,
        mode=raw.get("mode"),
        host_id=raw.get("host_id"),
        namespace=raw.get("namespace"),
        url=raw.get("url"),
        degraded_since=raw.get("degraded_since"),
        last_error=raw.get("last_error"),
        last_good_sync=raw.get("last_good_sync"),
        epoch=raw.get("epoch"),
        breakers=breakers,
        policy_conflicts=tuple(
            PolicyConflict(*map(str, c)) for c in raw.get("conflicts", ())
        ),
    )


def _origin(entry: dict[str, Any]) -> str | None:
    if entry.get("owned") is not None:
        return "fleet"
    if entry.get("local_open"):
        return "local"
    return None


def _after_fork_in_child() -> None:
    # A forked child is never the agent until elected: the parent's threads
    # do not exist here, and the child runs its own election.
    global _runner
    runner = _runner
    if runner is None or _settings is None or _control is None:
        return
    runner.abandon()
    _runner = _make_runner(_settings, _control)
    _runner.start()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
