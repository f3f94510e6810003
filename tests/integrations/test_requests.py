"""qbreaker.integrations.requests against real servers on 127.0.0.1."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from qbreaker import BreakerGroup, CircuitOpenError, State

from ..helpers import Impl
from .servers import Backend, closed_port

requests = pytest.importorskip("requests", reason="the requests extra is not installed")

from urllib3.util.retry import Retry  # noqa: E402

from qbreaker.integrations.requests import BreakerAdapter, CircuitOpen  # noqa: E402

MAX_FAILURES = 3


def _group(impl: Impl, **settings: Any) -> BreakerGroup:
    settings.setdefault("max_failures", MAX_FAILURES)
    settings.setdefault("reset_timeout", 30)
    return BreakerGroup(_breaker_class=impl.Breaker, **settings)


def _session(impl: Impl, **kwargs: Any) -> tuple[requests.Session, BreakerAdapter]:
    group = kwargs.pop("group", None)
    adapter = BreakerAdapter(group=_group(impl) if group is None else group, **kwargs)
    session = requests.Session()
    session.mount("http://", adapter)
    return session, adapter


def _breaker(adapter: BreakerAdapter, backend: Backend) -> Any:
    return adapter.group[f"http://127.0.0.1:{backend.port}"]


def test_a_failing_backend_is_reached_max_failures_times_then_rejected(
    impl: Impl, server: Backend
) -> None:
    server.status = 503
    session, _ = _session(impl)
    with session:
        for _ in range(MAX_FAILURES):
            assert session.get(server.url + "/x", timeout=5).status_code == 503
        with pytest.raises(CircuitOpen) as info:
            session.get(server.url + "/x", timeout=5)
    assert server.hits == MAX_FAILURES
    error = info.value
    assert isinstance(error, CircuitOpenError)
    assert isinstance(error, requests.RequestException)
    assert not isinstance(error, requests.ConnectionError)
    assert error.request.url == server.url + "/x"
    assert error.state is State.OPEN and 29 < error.retry_after <= 30
    copied = pickle.loads(pickle.dumps(error))
    assert type(copied) is CircuitOpen and copied.request is None
    assert (copied.name, copied.retry_after) == (error.name, error.retry_after)


def test_a_healthy_backend_on_another_port_keeps_working(
    impl: Impl, server: Backend, other_server: Backend
) -> None:
    server.status = 500
    session, adapter = _session(impl)
    with session:
        for _ in range(MAX_FAILURES):
            session.get(server.url, timeout=5)
        with pytest.raises(CircuitOpen):
            session.get(server.url, timeout=5)
        for _ in range(3):
            assert session.get(other_server.url, timeout=5).ok
    assert _breaker(adapter, other_server).state is State.CLOSED


def test_404_never_trips(impl: Impl, server: Backend) -> None:
    server.status = 404
    session, adapter = _session(impl)
    with session:
        for _ in range(3 * MAX_FAILURES):
            assert session.get(server.url, timeout=5).status_code == 404
    assert _breaker(adapter, server).state is State.CLOSED


def test_refused_and_timeout_are_failures(impl: Impl, server: Backend) -> None:
    server.hang = 5
    refused = f"http://127.0.0.1:{closed_port()}/"
    session, _ = _session(impl)
    with session:
        for _ in range(MAX_FAILURES):
            with pytest.raises(requests.ConnectionError):
                session.get(refused, timeout=5)
            with pytest.raises(requests.ReadTimeout):
                session.get(server.url, timeout=0.2)
        for url in (refused, server.url):
            with pytest.raises(CircuitOpen):
                session.get(url, timeout=0.2)


def test_local_usage_errors_are_neutral(impl: Impl) -> None:
    session, adapter = _session(impl)
    with session:
        for _ in range(2 * MAX_FAILURES):
            # Raised inside the adapter's send: a proxy URL with no host.
            with pytest.raises(requests.exceptions.InvalidURL):
                session.get("http://127.0.0.1:1/", proxies={"http": "http:///"})
    breaker = adapter.group["http://127.0.0.1:1"]
    assert breaker.state is State.CLOSED
    assert breaker.totals().neutral == 2 * MAX_FAILURES


def test_urllib3_retries_run_inside_one_outcome(impl: Impl, server: Backend) -> None:
    # Three attempts reach the backend per request; the breaker sees one
    # outcome per request: the last attempt's response.
    server.status = 503
    retry = Retry(
        total=2, status_forcelist=[503], backoff_factor=0, raise_on_status=False
    )
    session, adapter = _session(impl, max_retries=retry)
    with session:
        assert session.get(server.url, timeout=5).status_code == 503
        assert server.hits == 3
        breaker = _breaker(adapter, server)
        assert breaker.totals().failures == 1
        assert breaker.consecutive_failures == 1


def test_retries_exhausted_is_a_failure(impl: Impl, server: Backend) -> None:
    server.status = 503
    retry = Retry(total=1, status_forcelist=[503], backoff_factor=0)
    session, adapter = _session(impl, max_retries=retry)
    with session:
        for _ in range(MAX_FAILURES):
            with pytest.raises(requests.exceptions.RetryError):
                session.get(server.url, timeout=5)
        with pytest.raises(CircuitOpen):
            session.get(server.url, timeout=5)
    assert server.hits == 2 * MAX_FAILURES


def test_a_stream_is_classified_on_its_status(impl: Impl, server: Backend) -> None:
    server.truncate = True
    session, adapter = _session(impl)
    with session:
        for _ in range(MAX_FAILURES + 1):
            with pytest.raises(requests.exceptions.ChunkedEncodingError):
                session.get(server.url, timeout=5)
    assert _breaker(adapter, server).totals().successes == MAX_FAILURES + 1


@pytest.mark.parametrize("stream", [False, True])
def test_body_errors_count_with_count_body_errors(
    impl: Impl, server: Backend, stream: bool
) -> None:
    server.truncate = True
    session, _ = _session(impl, count_body_errors=True)
    with session:
        for _ in range(MAX_FAILURES):
            with pytest.raises(requests.exceptions.ChunkedEncodingError):
                session.get(server.url, timeout=5, stream=stream)
        with pytest.raises(CircuitOpen):
            session.get(server.url, timeout=5, stream=stream)


def test_retry_after_opens_when_enabled(impl: Impl, server: Backend) -> None:
    server.status = 503
    server.headers = {"Retry-After": "20"}
    session, _ = _session(impl, open_on_retry_after=True)
    with session:
        assert session.get(server.url, timeout=5).status_code == 503
        with pytest.raises(CircuitOpen) as info:
            session.get(server.url, timeout=5)
    assert 19 < info.value.retry_after <= 20
    assert server.hits == 1


def test_adapter_arguments_pass_through() -> None:
    adapter = BreakerAdapter(pool_maxsize=7, max_retries=4)
    assert adapter._pool_maxsize == 7  # type: ignore[attr-defined]
    assert adapter.max_retries.total == 4
    assert BreakerAdapter().group is not BreakerAdapter().group


def test_bad_arguments_and_copies() -> None:
    with pytest.raises(ValueError, match="failure_statuses"):
        BreakerAdapter(failure_statuses=[42])
    with pytest.raises(TypeError, match="pool_sizes"):
        BreakerAdapter(pool_sizes=3)
    with pytest.raises(TypeError, match="cannot be pickled or copied"):
        pickle.dumps(BreakerAdapter())
    with pytest.raises(TypeError, match="cannot be pickled or copied"):
        copy.copy(BreakerAdapter())


def test_the_adapter_type_checks_against_the_installed_requests() -> None:
    # requests ships annotations of its own that types-requests' stubs
    # contradict (send()'s timeout, cert, proxies): the adapter must check
    # against whichever is installed. Without the stubs, as the test extra
    # installs it, mypy reads requests' own; the lint job reads the stubs.
    pytest.importorskip("mypy", reason="mypy is in the test extra")
    if not _requests_is_typed():
        # requests 2.32, the newest for Python 3.9, has no annotations: mypy
        # would only say so. The lint job checks against the stubs.
        pytest.skip(
            f"requests {requests.__version__} ships no types (no py.typed) and "
            "types-requests is not installed: nothing to check the adapter against"
        )
    root = Path(__file__).parents[2]
    module = root / "src/qbreaker/integrations/requests.py"
    result = subprocess.run(
        # This module's errors only: the modules it imports are the lint
        # job's, against the library versions it installs; an older,
        # untyped redis-py here must not fail the adapter's check.
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--follow-imports=silent",
            str(module),
        ],
        cwd=root,  # pyproject.toml's settings
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _requests_is_typed() -> bool:
    """Whether mypy finds types for requests here: its own (PEP 561's
    py.typed) or types-requests' stub package."""
    if (Path(requests.__file__).parent / "py.typed").is_file():
        return True
    return any((Path(p) / "requests-stubs").is_dir() for p in sys.path if p)
