"""A command's stop signal never hangs it (qbreaker._cli.signals).

The child spins on ``event.wait(0)``, which holds the event's lock nearly
all the time: a handler calling ``event.set()`` itself deadlocks there about
every other time (measured: 11 of 20), so ten children in a row that all
stop show the handler does not.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

CHILD = """
import signal, threading
from qbreaker._cli.signals import set_on_signals
stop = threading.Event()
set_on_signals(stop)
print("ready", flush=True)
while not stop.wait(0):
    pass
print("stopped", flush=True)
"""


def test_sigterm_and_sigint_stop_a_main_thread_waiting_on_the_event() -> None:
    for attempt in range(10):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n"
            time.sleep(0.02)
            child.send_signal(signal.SIGINT if attempt % 2 else signal.SIGTERM)
            out, _ = child.communicate(timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert (child.returncode, out) == (0, "stopped\n"), attempt
