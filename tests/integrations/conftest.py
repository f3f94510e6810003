"""Fixtures of the integration tests: real backends on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .servers import Backend, backend

# Before any test imports grpc: its fork support off (the suite never uses
# gRPC in a forked child). With it on, grpcio 1.80 to 1.83 (1.80 is the
# newest for Python 3.9) restarts its poller in the child of a fork while a
# channel or server is alive; subprocess then closes the poller's epoll
# descriptor before exec, and the child aborts ("epoll_wait error: Bad file
# descriptor"). Python 3.9's subprocess always forks: one spawn in twenty
# died after the gRPC tests. 3.10+ spawns with vfork, which runs no fork
# handlers. tests/integrations/test_grpc_subprocess.py holds it.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")


@pytest.fixture
def server() -> Iterator[Backend]:
    with backend() as running:
        yield running


@pytest.fixture
def other_server() -> Iterator[Backend]:
    with backend() as running:
        yield running
