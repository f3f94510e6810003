"""Subprocesses start while this process holds a live gRPC channel and
server: the suite spawns hundreds after the gRPC tests (see conftest.py:
grpc's fork support is off)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip(
    "grpc", reason="grpcio is in the grpc extra (no wheel for free-threaded 3.13t)"
)

import grpc  # noqa: E402

from .grpc_backend import CHANNEL_OPTIONS, UNARY_UNARY, serving  # noqa: E402

#: One spawn in twenty aborted with fork support on (grpcio 1.80, Python
#: 3.9): a hundred all fail to see it one time in two hundred.
SPAWNS = 100


def test_subprocesses_start_beside_a_live_grpc_channel() -> None:
    with serving() as backend, grpc.insecure_channel(
        backend.target, options=CHANNEL_OPTIONS
    ) as channel:
        echo = channel.unary_unary(UNARY_UNARY)
        assert echo(b"x", timeout=10) == b"echo:x"
        died = []
        for _ in range(SPAWNS):
            child = subprocess.run(
                [sys.executable, "-I", "-S", "-c", "pass"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            if child.returncode:
                died.append((child.returncode, child.stderr[-300:]))
        assert echo(b"y", timeout=10) == b"echo:y"
    assert not died, f"{len(died)} of {SPAWNS} subprocesses died: {died[:3]}"
