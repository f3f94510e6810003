"""A real ``grpc.server`` on 127.0.0.1 with scripted answers, for the gRPC
integration's tests. Generic handlers and raw bytes: no generated code.

``Backend.script`` says how every method answers: ``grpc.StatusCode.OK``, an
error code (with ``trailers``), or ``HANG``: wait until the client's deadline
or cancellation ends the call (at most 10 s). ``reached`` counts the calls
that arrived, whatever they were answered.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc

from qbreaker import BreakerGroup

from ..helpers import FakeClock, Impl

SERVICE = "qbreaker.test.Backend"
UNARY_UNARY = f"/{SERVICE}/Echo"
STREAM_UNARY = f"/{SERVICE}/Upload"
UNARY_STREAM = f"/{SERVICE}/Watch"
STREAM_STREAM = f"/{SERVICE}/Chat"
HANG = "hang"


class Backend:
    def __init__(self) -> None:
        self.script: Any = grpc.StatusCode.OK
        self.trailers: tuple[tuple[str, str], ...] = ()
        self.reached = 0
        self._lock = threading.Lock()
        self.port = 0

    def _answer(self, context: grpc.ServicerContext) -> None:
        """Count the call, then end it as scripted (returns only for OK)."""
        with self._lock:
            self.reached += 1
        script = self.script
        if script == HANG:
            deadline = time.monotonic() + 10.0
            while context.is_active() and time.monotonic() < deadline:
                time.sleep(0.005)
            context.abort(grpc.StatusCode.UNAVAILABLE, "hung up")
        if script is not grpc.StatusCode.OK:
            if self.trailers:
                context.set_trailing_metadata(self.trailers)
            context.abort(script, f"scripted {script.name}")

    def echo(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._answer(context)
        return b"echo:" + request

    def upload(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        received = b"".join(requests)
        self._answer(context)
        return b"got:" + received

    def watch(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield b"first"
        self._answer(context)
        yield b"last"

    def chat(
        self, requests: Iterator[bytes], context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        for request in requests:
            yield b"re:" + request
        self._answer(context)

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Echo": grpc.unary_unary_rpc_method_handler(self.echo),
                "Upload": grpc.stream_unary_rpc_method_handler(self.upload),
                "Watch": grpc.unary_stream_rpc_method_handler(self.watch),
                "Chat": grpc.stream_stream_rpc_method_handler(self.chat),
            },
        )

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextlib.contextmanager
def serving() -> Iterator[Backend]:
    """A started backend; stopped on exit."""
    backend = Backend()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((backend.handler(),))
    backend.port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield backend
    finally:
        server.stop(0).wait(10)


#: Options of every channel the tests open. grpc shares subchannels between
#: channels to the same address, process-wide; a test of a refused port
#: leaves one in backoff, and when the kernel hands that port to the next
#: test's server, a channel to it failed at once with the old "connection
#: refused" (seen in CI). A channel's own pool keeps each test to itself.
CHANNEL_OPTIONS = (("grpc.use_local_subchannel_pool", 1),)


def closed_port() -> int:
    """A loopback port that nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_group(
    impl: Impl, clock: FakeClock, max_failures: int = 3, **settings: Any
) -> BreakerGroup:
    """A group of the core under test: trips after ``max_failures``, stays
    open 30 s of ``clock``."""
    return BreakerGroup(
        max_failures=max_failures,
        reset_timeout=30.0,
        clock=clock,
        _breaker_class=impl.Breaker,
        **settings,
    )
