"""``python -m qbreaker demo --fleet``: a real run, its numbers, its clean-up.

The real runs start the demo as a person would (``python -m qbreaker demo
--fleet``), with its own redis-server, and watch its children by pid through
/proc while it runs: the redis-server and every worker must be gone
afterwards, after a normal end as after SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from qbreaker import IMPLEMENTATION
from qbreaker._cli import demo, main
from qbreaker._cli.demo import fleet
from qbreaker._cli.demo.backend import Backend

SECONDS = 10  # the real run: an outage of 4 s, reset_timeout 1 s
EVENT = re.compile(
    r"^\s*[\d.]+s  \*\*\* (fleet|host-wide)\s+(host\d+) (open|closed): (.*)$"
)
INTERVAL = re.compile(
    r"^\s*[\d.]+s  (\w+)\s+\|\s+(\d+)\s+(\d+|-)\s+(\d+|-)\s+(\d)/(\d)"
    r" \|\s+(\d+)\s+(\d+|-)\s+(\d+|-)\s+(\d)/(\d)$"
)

needs_redis_server = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="redis-server is not installed (scripts/ci_redis.sh installs it)",
)


def children_of(pid: int) -> dict[int, str]:
    """The processes whose parent is ``pid``: their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found[int(entry.name)] = (
                    (entry / "cmdline").read_bytes().decode(errors="replace")
                )
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return found


def alive(pid: int, cmdline: str) -> bool:
    """Whether ``pid`` still runs that command (not a zombie, not reused)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        now = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and now == cmdline


class Watched:
    """The demo in a subprocess; its children recorded while it runs."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qbreaker", "demo", "--fleet", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.children: dict[int, str] = {}
        self.lines: list[str] = []
        self.err: list[str] = []
        self._threads = [
            threading.Thread(target=self._watch),
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines)),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err)),
        ]
        for thread in self._threads:
            thread.start()

    def _watch(self) -> None:
        while self.proc.poll() is None:
            for pid, cmdline in children_of(self.proc.pid).items():
                if cmdline:  # not yet a zombie (whose command line is empty)
                    self.children[pid] = cmdline
            time.sleep(0.05)

    @staticmethod
    def _read(stream: IO[str] | None, lines: list[str]) -> None:
        assert stream is not None
        for line in stream:
            lines.append(line.rstrip("\n"))

    def wait_for_line(self, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(re.search(pattern, line) for line in list(self.lines)):
            assert self.proc.poll() is None, self.finish(0)
            assert time.monotonic() < deadline, f"no line matching {pattern!r}"
            time.sleep(0.05)

    def finish(self, timeout: float) -> tuple[int, str, str]:
        """(exit status, stdout, stderr) once it has exited."""
        try:
            self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for thread in self._threads:
                thread.join()
        return self.proc.returncode, "\n".join(self.lines), "\n".join(self.err)

    def leftovers(self) -> dict[int, str]:
        """Its children still running; a moment's grace for their exit."""
        deadline = time.monotonic() + 2.0
        while True:
            left = {p: c for p, c in self.children.items() if alive(p, c)}
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.05)


@pytest.fixture
def kill_leftovers() -> Iterator[list[Watched]]:
    """Whatever a failed test left running is killed (by pid)."""
    runs: list[Watched] = []
    yield runs
    for run in runs:
        for pid in run.leftovers():
            os.kill(pid, signal.SIGKILL)


def summary_row(text: str, label: str) -> tuple[str, str]:
    found = re.search(rf"^  {re.escape(label)}\s+(\S.*?)\s{{2,}}(\S.*?)$", text, re.M)
    assert found is not None, f"no summary row {label!r}:\n{text}"
    return found[1], found[2]


# -- the real run -------------------------------------------------------------


@pytest.mark.fleet
@pytest.mark.fleet_matrix
@pytest.mark.c_extension
@needs_redis_server
def test_a_real_run_shows_the_fleet_sparing_the_dead_backend(
    kill_leftovers: list[Watched],
) -> None:
    pytest.importorskip("redis", reason="the fleet extra (redis-py) is missing")
    began = time.monotonic()
    run = Watched("--seconds", str(SECONDS))
    kill_leftovers.append(run)
    status, out, err = run.finish(timeout=60)
    took = time.monotonic() - began
    print(out, err, f"\n(took {took:.1f} s, load {os.getloadavg()})", sep="\n")
    assert status == 0, err
    assert took < 30, f"{took:.1f} s for a {SECONDS} s run"

    # Every child (the redis-server, 2 modes x 4 hosts x 2 workers) is gone.
    commands = list(run.children.values())
    assert sum("redis-server" in c for c in commands) == 1, commands
    assert sum("fleet_worker" in c for c in commands) == 16, commands
    assert run.leftovers() == {}

    # The structure: the introduction, a line per interval, the summary.
    assert "redis-server started for the demo, redis://127.0.0.1:" in out
    intervals = [m for m in map(INTERVAL.match, out.splitlines()) if m]
    assert 25 <= len(intervals) <= 31, out
    assert {m[1] for m in intervals} == {"healthy", "503s", "hanging", "recovering"}
    assert re.search(r"\nsummary .*\n\s+fleet\s+host-wide\n", out), out

    # The trip reaches every host of both modes; in the fleet, some hosts
    # are opened by the fleet (the quorum's hosts named), before their own trip.
    opened: dict[str, dict[str, str]] = {"fleet": {}, "host-wide": {}}
    for m in filter(None, map(EVENT.match, out.splitlines())):
        if m[3] == "open":
            opened[m[1]].setdefault(m[2], m[4])
    hosts = {f"host{i}" for i in range(1, 5)}
    assert set(opened["fleet"]) == set(opened["host-wide"]) == hosts, out
    assert set(opened["host-wide"].values()) == {"local trip"}
    by_fleet = [w for w in opened["fleet"].values() if w != "local trip"]
    assert by_fleet, out
    assert all(re.fullmatch(r"the fleet opened it \(quorum: host\d+, host\d+.*\)", w)
               for w in by_fleet), by_fleet  # fmt: skip
    in_fleet, host_wide = summary_row(out, "hosts opened: by a local trip / the fleet")
    assert host_wide == "4 / 0"
    assert in_fleet == f"{4 - len(by_fleet)} / {len(by_fleet)}"

    # The numbers: fewer calls reach the dead backend in the fleet, and its
    # probes never exceed one host's half_open_max at once.
    fleet_calls, host_calls = map(int, summary_row(out, "calls to the dead backend"))
    assert 0 < fleet_calls < host_calls, out
    fleet_probes, host_probes = map(int, summary_row(out, "  probes while it was down"))
    assert fleet_probes < host_probes, out
    fleet_most = int(summary_row(out, "most probes in flight at once, whole run")[0])
    assert fleet_most <= demo.HALF_OPEN_MAX, out
    assert all(int(m[5]) <= 4 and int(m[10]) <= 4 for m in intervals)
    spared = re.search(r"the fleet spared the dead backend (\d+) calls", out)
    assert spared is not None and int(spared[1]) == host_calls - fleet_calls


@pytest.mark.fleet
@pytest.mark.fleet_matrix
@pytest.mark.c_extension
@needs_redis_server
@pytest.mark.parametrize(
    ("sig", "status"),
    [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
    ids=["SIGTERM", "Ctrl-C"],
)
def test_a_signal_stops_every_host_and_the_redis_server(
    sig: signal.Signals, status: int, kill_leftovers: list[Watched]
) -> None:
    pytest.importorskip("redis", reason="the fleet extra (redis-py) is missing")
    run = Watched("--seconds", "60", "--hosts", "2")
    kill_leftovers.append(run)
    run.wait_for_line(r"^\s*[\d.]+s  healthy", timeout=30)  # running
    commands = list(run.children.values())
    assert sum("redis-server" in c for c in commands) == 1, commands
    assert sum("fleet_worker" in c for c in commands) == 8, commands
    run.proc.send_signal(sig)
    code, out, err = run.finish(timeout=30)
    assert code == status, err
    assert "interrupted: stopping the hosts, the backends and Redis" in out
    assert run.leftovers() == {}


# -- what it needs, and bad options --------------------------------------------


def test_without_a_redis_server_it_says_how_to_get_one(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # no redis-server there
    began = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "qbreaker", "demo", "--fleet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 2
    assert time.monotonic() - began < 20
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    if IMPLEMENTATION == "cython":
        assert "apt install redis-server" in lines[0]
        assert "--redis URL" in lines[0]
    else:
        assert "compiled core" in lines[0]


def test_the_message_names_every_missing_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fleet, "IMPLEMENTATION", "cython")
    monkeypatch.setattr(fleet.shutil, "which", lambda name: None)
    monkeypatch.setattr(fleet.importlib.util, "find_spec", lambda name: None)
    message = fleet._missing(None)
    assert message is not None
    assert 'pip install "qbreaker[fleet]"' in message
    assert "apt install redis-server" in message and "--redis URL" in message
    # A --redis URL needs no redis-server, only redis-py.
    message = fleet._missing("redis://127.0.0.1:6379/0")
    assert message is not None and "redis-server" not in message
    monkeypatch.setattr(fleet.importlib.util, "find_spec", lambda name: object())
    assert fleet._missing("redis://127.0.0.1:6379/0") is None


def test_the_pure_python_core_is_refused_with_the_reason() -> None:
    env = {**os.environ, "QBREAKER_NO_EXTENSIONS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "qbreaker", "demo", "--fleet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 2
    assert "compiled core" in out.stderr and "QBREAKER_NO_EXTENSIONS" in out.stderr


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379", "redis://127.0.0.1:port/0", "nonsense", ""]
)
def test_a_bad_redis_url_is_refused_naming_the_option(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--fleet", "--redis", url])
    assert exc.value.code == 2
    assert "argument --redis" in capsys.readouterr().err


@pytest.mark.c_extension
def test_a_redis_that_does_not_answer_is_refused_naming_the_option(
    kill_leftovers: list[Watched],
) -> None:
    pytest.importorskip("redis", reason="the fleet extra (redis-py) is missing")
    run = Watched("--redis", "redis://127.0.0.1:1/0")  # nothing listens on port 1
    kill_leftovers.append(run)
    code, out, err = run.finish(timeout=60)
    assert code == 2
    assert "--redis: redis://127.0.0.1:1/0 does not answer" in err
    assert "fleet_worker" not in " ".join(run.children.values())
    assert run.leftovers() == {}


@pytest.mark.parametrize("value", ["0", "1", "9", "-4", "2.5", "four", ""])
def test_hosts_must_be_a_whole_number_in_range(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--fleet", "--hosts", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --hosts" in err and "from 2 to 8" in err and repr(value) in err


@pytest.mark.parametrize("option", [["--hosts", "3"], ["--redis", "redis://h/0"]])
def test_fleet_options_need_fleet(
    option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", *option]) == 2
    assert "--redis and --hosts need --fleet" in capsys.readouterr().err


def test_importing_the_command_does_not_import_the_fleet_demo() -> None:
    code = (
        "import sys, qbreaker._cli.demo\n"
        "heavy = {'qbreaker._cli.demo.fleet', 'qbreaker._cli.demo.local_redis',\n"
        "         'qbreaker.fleet', 'redis'}\n"
        "assert not heavy & set(sys.modules), heavy & set(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- the backend's probe count ----------------------------------------------------


def test_the_backend_counts_probes_by_phase_and_host_and_at_once() -> None:
    start = time.monotonic()
    with Backend(start, 100.0, hang=0.0, latency=0.2) as backend:
        port = int(backend.url.split(":")[2].split("/")[0])

        def get(query: str) -> None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                connection.request("GET", f"/price?{query}")
                connection.getresponse().read()
            finally:
                connection.close()

        queries = ["host=h1&probe=1", "host=h2&probe=1", "host=h1&probe=0", ""]
        threads = [threading.Thread(target=get, args=(q,)) for q in queries]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert backend.calls == {"healthy": 4}
        assert backend.probes == {"healthy": 2}
        assert backend.by_host == {"h1": 2, "h2": 1, "": 1}
        assert backend.probes_by_host == {"h1": 1, "h2": 1}
        # Both probes were answered together (each takes 0.2 s).
        assert backend.peak_probes["healthy"] == 2
        assert backend.take_peak_probes() == 2
        # A caller has its reply a moment before the handler marks the probe
        # finished: wait (bounded) until both handlers have.
        deadline = time.monotonic() + 5.0
        while backend.probing and time.monotonic() < deadline:
            time.sleep(0.01)
        assert backend.probing == 0
        assert backend.take_peak_probes() == 0  # none since
        get("host=h3&probe=1")
        assert backend.take_peak_probes() == 1


def test_the_host_wide_demo_is_unchanged_by_the_fleet_options() -> None:
    args = argparse.Namespace(seconds=1.0, fleet=False, redis=None, hosts=None)
    out = io.StringIO()
    assert demo.run(args, out) == 0
    assert "the breaker spared the failing backend" in out.getvalue()


@pytest.mark.fleet
@pytest.mark.fleet_matrix
@pytest.mark.c_extension
def test_a_given_redis_is_used_and_left_without_the_demos_keys(
    redis_backend: Any, kill_leftovers: list[Watched]
) -> None:
    redis = pytest.importorskip("redis", reason="the fleet extra (redis-py) is missing")
    if redis_backend.port is None:
        pytest.skip(f"needs a real redis-server: {redis_backend.fallback_reason}")
    url = f"redis://127.0.0.1:{redis_backend.port}/0"
    client = redis.Redis(host="127.0.0.1", port=redis_backend.port, socket_timeout=5)
    before = set(client.scan_iter(match="{qb1:demo-*"))
    seen: set[bytes] = set()
    run = Watched("--redis", url, "--hosts", "2", "--seconds", "4")
    kill_leftovers.append(run)
    while run.proc.poll() is None and not seen:  # the demo's keys, while it runs
        seen = set(client.scan_iter(match="{qb1:demo-*")) - before
        time.sleep(0.1)
    code, out, err = run.finish(timeout=60)
    assert code == 0, err
    assert f"Redis: {url}" in out
    assert seen, "the demo wrote no keys to the given Redis"
    assert set(client.scan_iter(match="{qb1:demo-*")) == before
    commands = list(run.children.values())
    assert not any("redis-server" in c for c in commands), commands
    assert run.leftovers() == {}
    client.close()


@pytest.mark.fleet
@needs_redis_server
def test_the_local_redis_server_is_stopped_and_its_directory_removed() -> None:
    from qbreaker._cli.demo.local_redis import LocalRedis

    exe = shutil.which("redis-server")
    assert exe is not None
    with LocalRedis(exe) as server:
        assert server.pid is not None
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().decode()
        assert alive(server.pid, cmdline)
        assert re.fullmatch(r"redis://127\.0\.0\.1:\d+/0", server.url)
        directory = server._dir
        assert directory is not None and directory.is_dir()
    # Stopped by the block's end (this process lives on: no parent-death signal).
    assert not alive(server.pid, cmdline)
    assert not directory.exists()
