"""``status --watch`` under a real pseudo-terminal: what a person would see."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
import uuid

import pytest

import qbreaker
from qbreaker._impl import segment_format

pytestmark = [
    pytest.mark.c_extension,
    pytest.mark.skipif(
        not segment_format.supported(), reason="POSIX shared memory in /dev/shm"
    ),
]

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TIMEOUT = 30.0


class Terminal:
    """A child process on the slave side of a pty, 24 x 100."""

    def __init__(self, *argv: str, env: dict[str, str]) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        self.process = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env,
            start_new_session=True, close_fds=True,
        )  # fmt: skip
        os.close(slave)
        self.master = master
        self.output = b""

    def read_until(self, done: object, seconds: float = TIMEOUT) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            text = self.output.decode(errors="replace")
            if callable(done) and done(text):
                return text
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                self.output += chunk
        return self.output.decode(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(TIMEOUT)
        os.close(self.master)


def frames(text: str) -> list[list[str]]:
    """Each redraw (it starts at the home position), as the plain lines shown."""
    plain = [
        [ANSI.sub("", line).strip("\r") for line in part.split("\n")]
        for part in text.split("\x1b[H")[1:]
    ]
    return [[line for line in frame if line.strip()] for frame in plain]


def row(frame: list[str], name: str) -> list[str]:
    for line in frame:
        cells = line.split()
        if cells and cells[0] == name:
            return cells
    raise AssertionError(f"{name} not on screen: {frame}")


def test_live_view_shows_breakers_states_and_refreshed_numbers() -> None:
    tag = uuid.uuid4().hex[:8]
    busy, down = f"busy-{tag}", f"down-{tag}"
    a = qbreaker.CircuitBreaker(3, 600, 1, shared=busy)
    b = qbreaker.CircuitBreaker(3, 600, 1, shared=down)
    for _ in range(3):
        b.record_failure()  # tripped: open for 600 s
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    terminal = Terminal(sys.executable, "-m", "qbreaker", "status", "--watch", "0.2",
                        env=env)  # fmt: skip
    try:
        # Traffic between refreshes: the rates must show it.
        def busy_rate_shown(text: str) -> bool:
            for _ in range(200):
                a.call(lambda: None)
            b.allow()
            shown = frames(text)
            if len(shown) < 3:
                return False
            cells = row(shown[-2], busy)
            return cells[3] not in ("-", "0.0")

        text = terminal.read_until(busy_rate_shown)
        shown = frames(text)
        assert len(shown) >= 3, text[-2000:]
        last = shown[-2]  # the last complete frame
        assert last[0].startswith("qbreaker: ") and "shared breakers" in last[0]
        header = last[1].split()
        assert header[:2] == ["breaker", "state"]
        busy_row, down_row = row(last, busy), row(last, down)
        assert busy_row[1] == "closed" and down_row[1] == "open"
        assert float(busy_row[3]) > 0  # calls per second, since the last frame
        assert float(down_row[5]) > 0  # rejections per second
        assert down_row[-1].endswith("s") and 0 < float(down_row[-1][:-1]) <= 600
        # Refreshed: the time in state moved on between frames.
        first_seen = row(shown[0], down)[2]
        assert first_seen != down_row[2]
        # Coloured state cells: red for open, green for closed.
        assert "\x1b[31;1mopen\x1b[0m" in text and "\x1b[32mclosed\x1b[0m" in text
        # Ctrl-C: a clean exit, the cursor shown again.
        os.killpg(terminal.process.pid, signal.SIGINT)
        assert terminal.process.wait(TIMEOUT) == 0
        rest = terminal.read_until(None, 1.0)
        assert rest.rstrip().endswith("\x1b[?25h") or "\x1b[?25h" in rest[-20:]
        assert "Traceback" not in rest
    finally:
        terminal.close()


def test_no_colour_without_a_capable_terminal() -> None:
    name = f"plain-{uuid.uuid4().hex[:8]}"
    qbreaker.CircuitBreaker(3, 600, 1, shared=name).force_open()
    env = {**os.environ, "TERM": "dumb"}
    terminal = Terminal(sys.executable, "-m", "qbreaker", "status", "--watch", "0.2",
                        env=env)  # fmt: skip
    try:
        text = terminal.read_until(lambda t: len(frames(t)) >= 2)
        assert row(frames(text)[0], name)[1] == "forced_open"
        assert "\x1b[3" not in text  # no colour codes, only cursor movement
        os.killpg(terminal.process.pid, signal.SIGINT)
        assert terminal.process.wait(TIMEOUT) == 0
    finally:
        terminal.close()


def test_not_a_terminal_prints_each_refresh_below_the_last() -> None:
    name = f"piped-{uuid.uuid4().hex[:8]}"
    qbreaker.CircuitBreaker(3, 600, 1, shared=name)
    process = subprocess.Popen(
        [sys.executable, "-m", "qbreaker", "status", "--watch", "0.1"],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        time.sleep(1.0)
        os.killpg(process.pid, signal.SIGINT)
        out, _ = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)
    assert process.returncode == 0
    assert "\x1b" not in out
    assert out.count("qbreaker: ") >= 2 and name in out


def test_watch_takes_no_json() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "qbreaker", "status", "--json", "--watch"],
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--watch draws a table; it takes no --json" in result.stderr


@pytest.mark.parametrize("seconds", ["0", "nan", "soon", "7200"])
def test_bad_interval(seconds: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "qbreaker", "status", "--watch", seconds],
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 2
    assert "SECONDS is a number in [0.1, 3600]" in result.stderr


if not hasattr(pty, "openpty"):  # pragma: no cover
    pytestmark.append(pytest.mark.skip(reason="no pseudo-terminals here"))
