"""Signals that stop a command: safely, from a thread of their own.

A Python signal handler runs in the main thread between two bytecodes, also
inside ``event.wait()`` while it holds the event's condition lock. Calling
``event.set()`` there takes that (non-reentrant) lock again: the process
hangs on SIGTERM, and only SIGKILL ends it. The handler here starts a short
thread that sets the event once the main thread lets the lock go.
"""

from __future__ import annotations

import signal
import threading

__all__ = ("set_on_signals",)


def set_on_signals(event: threading.Event, *signums: int) -> None:
    """Make each of ``signums`` (default SIGTERM and SIGINT) set ``event``."""

    def handler(signum: int, frame: object) -> None:
        threading.Thread(target=event.set, name="qbreaker-signal", daemon=True).start()

    for signum in signums or (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)
