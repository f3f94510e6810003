"""Fleet fixtures: a Redis client of the session's redis-server, and both backends.

The fleet tests need a real redis-server (the scripts' Lua): where the session
fixture could only offer fakeredis, they skip with its reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from qbreaker.fleet.spec import MemoryBackend

from ..redis_server import Backend

redis_backend_module = pytest.importorskip("qbreaker.fleet.redis_backend")
RedisBackend = redis_backend_module.RedisBackend
connect_redis = redis_backend_module.connect_redis

#: Loopback, but the machine may be loaded: the default 0.25 s is for agents.
TEST_TIMEOUT = 5.0


@pytest.fixture
def redis_client(redis_backend: Backend) -> Iterator[Any]:
    if redis_backend.fallback_reason is not None or redis_backend.port is None:
        pytest.skip(f"the fleet scripts need a real redis-server: "
                    f"{redis_backend.fallback_reason}")  # fmt: skip
    client = connect_redis(
        f"redis://127.0.0.1:{redis_backend.port}/0", timeout=TEST_TIMEOUT
    )
    yield client
    client.close()


@pytest.fixture
def namespace() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_redis_backend(redis_client: Any, namespace: str) -> Callable[..., Any]:
    def make(**options: Any) -> Any:
        options.setdefault("test_clock", True)
        return RedisBackend(
            redis_client, options.pop("namespace", namespace), **options
        )

    return make


@pytest.fixture(
    params=[
        pytest.param("memory"),
        pytest.param("redis", marks=pytest.mark.fleet),
    ]
)
def backend(request: pytest.FixtureRequest) -> Any:
    """Each backend in turn: the spec, then the Lua scripts in Redis."""
    if request.param == "memory":
        return MemoryBackend()
    return request.getfixturevalue("make_redis_backend")()
