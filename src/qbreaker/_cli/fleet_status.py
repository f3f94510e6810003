"""The fleet part of ``python -m qbreaker status``: one line for this host's
agent and three columns per fleet breaker, read from the host's control
segment (no network call; nothing is made if there is none)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any


def load() -> Any:
    """This host's FleetStatus, or None when it has no control segment."""
    from qbreaker import fleet
    from qbreaker.fleet import control

    if not control.exists():
        return None
    return fleet.status()


def lines(status: Any) -> list[str]:
    if status is None:
        return []
    where = f"{status.namespace or '?'}  {status.url or ''}".rstrip()
    conflicts = [
        f"       policy conflict: {c.name!r} from host {c.host_id} "
        f"(digest {c.digest}; the fleet keeps {c.stored_digest})"
        for c in status.policy_conflicts
    ]
    if status.agent_alive and status.connected:
        ago = _ago(status.last_good_sync)
        return [
            f"fleet  {where}  connected  agent pid {status.agent_pid} "
            f"({status.mode}, host {status.host_id})  last sync {ago}",
            *conflicts,
        ]
    if not status.agent_alive:
        return [f"fleet  {where}  DEGRADED: host-local (no agent running)"]
    since = _ago(status.degraded_since)
    return [
        f"fleet  {where}  DEGRADED: host-local since {since}  "
        f"agent pid {status.agent_pid}",
        f"       last error {status.last_error or '-'}  "
        f"last good sync {_ago(status.last_good_sync)}",
    ]


def columns(status: Any, name: str) -> tuple[str, str, str]:
    """(fleet state, fleet generation, origin) of a breaker; dashes if none."""
    view = None if status is None else status.breakers.get(name)
    if view is None or view.state is None:
        return ("-", "-", "-")
    return (view.state, str(view.generation), view.origin or "-")


def as_json(status: Any) -> dict[str, Any] | None:
    if status is None:
        return None
    raw = dataclasses.asdict(status)
    raw["breakers"] = {
        name: dataclasses.asdict(view) for name, view in status.breakers.items()
    }
    return raw


def _ago(when: float | None) -> str:
    if when is None:
        return "never"
    return f"{max(0.0, time.time() - when):.1f} s ago"
