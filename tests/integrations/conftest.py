"""Fixtures of the integration tests: real backends on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .servers import Backend, backend


@pytest.fixture
def server() -> Iterator[Backend]:
    with backend() as running:
        yield running


@pytest.fixture
def other_server() -> Iterator[Backend]:
    with backend() as running:
        yield running
