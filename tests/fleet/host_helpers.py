"""Helpers of the host-side fleet tests: one simulated host per test."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

from qbreaker import fleet


@pytest.fixture
def host_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private segment directory: one simulated host."""
    where = tempfile.mkdtemp(prefix="qbreaker-fleet-host-", dir=_base())
    monkeypatch.setenv("QBREAKER_SHM_DIR", where)
    for name in ("URL", "NAMESPACE", "AGENT", "HOST_ID", "GROUPS"):
        monkeypatch.delenv(f"QBREAKER_FLEET_{name}", raising=False)
    try:
        yield where
    finally:
        fleet.disconnect()
        for entry in os.listdir(where):
            os.unlink(os.path.join(where, entry))
        os.rmdir(where)


def _base() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


class NoBackend:
    """A backend no test reaches: agent="off" never syncs."""

    def sync(self, request: object) -> object:
        raise AssertionError("no sync expected")

    def force(
        self, name: str, action: str, *, by: str, time_ms: int | None = None
    ) -> object:
        raise AssertionError("no force expected")

    def events(self, cursor: str, block_ms: int) -> object:
        raise AssertionError("no events expected")

    def view(self, *, time_ms: int | None = None) -> object:
        raise AssertionError("no view expected")
