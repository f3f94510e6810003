"""``bench --http``: what ``BreakerTransport`` adds to an httpx request.

Two pairs, each timed interleaved like every other section:

- **over loopback**: ``httpx.Client`` GETs from an HTTP/1.1 server on
  127.0.0.1 (a thread of this process, keep-alive), through a bare
  ``httpx.HTTPTransport`` and through ``BreakerTransport`` around one. This
  is the overhead a service sees, to be read against the request's own cost.
- **in process**: the same two clients over ``httpx.MockTransport``, whose
  handler answers at once: no socket noise around the wrapper.
- **handle_request alone**: ``handle_request`` called directly on a
  transport that returns one prepared response, bare and wrapped: the
  wrapper's own cost (key, group lookup, ticket, classification), without
  the client's.

Optional (it needs httpx, ``pip install "qbreaker[httpx]"``), so it runs only
when asked for.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, TextIO

from .results import Results
from .tables import _table
from .timing import Timer, interleave

if TYPE_CHECKING:
    import httpx

    from .sections import Progress, Sizes

__all__ = ("print_http", "run_http")

# Requests per timed round, and the least time a sample takes (a request
# costs tens of microseconds at best, so the loop's own samples are too short).
_ROUND = 10
_SAMPLE_S = 0.02


class _Ok(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave at once, not 40 ms apart (Nagle and delayed ACK).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _round(client: httpx.Client, url: str) -> Callable[[], None]:
    def run() -> None:
        for _ in range(_ROUND):
            if client.get(url).status_code != 200:
                raise AssertionError("the benchmark's backend did not answer 200")

    return run


def _calls(
    transport: httpx.BaseTransport, request: httpx.Request
) -> Callable[[], None]:
    handle = transport.handle_request

    def run() -> None:
        for _ in range(_ROUND):
            handle(request)

    return run


def run_http(sizes: Sizes, results: Results, progress: Progress) -> None:
    import httpx

    from qbreaker.integrations.httpx import BreakerTransport

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"ok")

    class Prepared(httpx.BaseTransport):
        response = httpx.Response(200, content=b"ok")

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            return self.response

    pairs: dict[str, dict[str, Any]] = {}
    with _server() as url:
        clients = {
            "over loopback": {
                "bare HTTPTransport": httpx.Client(transport=httpx.HTTPTransport()),
                "BreakerTransport": httpx.Client(
                    transport=BreakerTransport(httpx.HTTPTransport())
                ),
            },
            "in process": {
                "bare MockTransport": httpx.Client(
                    transport=httpx.MockTransport(answer)
                ),
                "BreakerTransport": httpx.Client(
                    transport=BreakerTransport(httpx.MockTransport(answer))
                ),
            },
        }
        request = httpx.Request("GET", url)
        alone = {
            "bare transport": _calls(Prepared(), request),
            "BreakerTransport": _calls(BreakerTransport(Prepared()), request),
        }
        rounds = {
            **{
                pair: {name: _round(client, url) for name, client in subjects.items()}
                for pair, subjects in clients.items()
            },
            "handle_request alone": alone,
        }
        try:
            for pair, subjects in rounds.items():
                timers = [Timer(name, run, _ROUND) for name, run in subjects.items()]
                sampled = interleave(
                    timers,
                    sizes.repeats,
                    0.0 if sizes.smoke else _SAMPLE_S,
                    warmup=sizes.warmup,
                    tick=progress.tick,
                )
                bare, wrapped = (sampled[name] for name in subjects)
                pairs[pair] = {
                    "bare_ns": bare.best,
                    "breaker_ns": wrapped.best,
                    "overhead_ns": wrapped.best - bare.best,
                    "bare_median_ns": bare.median,
                    "breaker_median_ns": wrapped.median,
                    "repeats": sizes.repeats,
                    "requests_per_round": _ROUND,
                }
        finally:
            for opened in clients.values():
                for client in opened.values():
                    client.close()
    results.http = pairs


def print_http(results: Results, out: TextIO) -> None:
    if not results.http:
        return
    print(
        "\n### httpx: BreakerTransport over a bare transport, per request\n", file=out
    )
    rows = []
    for pair, figures in results.http.items():
        bare, wrapped = figures["bare_ns"], figures["breaker_ns"]
        rows.append(
            [
                pair,
                f"{bare / 1000:,.2f}",
                f"{wrapped / 1000:,.2f}",
                f"{figures['overhead_ns'] / 1000:,.2f}",
                f"{(wrapped - bare) / bare * 100:+.1f} %",
            ]
        )
    header = ["transport", "bare µs", "with breaker µs", "overhead µs", "overhead"]
    _table(header, rows, out)
    print(
        "\nover loopback: an HTTP/1.1 server in a thread of this process, "
        "keep-alive; in process: httpx.MockTransport answering at once; "
        "handle_request alone: no client, a prepared response.",
        file=out,
    )
