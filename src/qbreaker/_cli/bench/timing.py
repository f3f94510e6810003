"""timeit-style timing with interleaved repeats, for ``python -m qbreaker bench``.

Each subject is calibrated once (timeit's autorange: the number of rounds
that takes at least ``sample_s``); then every repeat times each subject once,
in an order that rotates from repeat to repeat, so slow drift of the machine
(another process, frequency changes) hits every subject alike instead of
whichever ran last. The statistic reported is the minimum over the repeats:
noise on a shared machine only ever adds time. The median is kept as well.
Garbage collection is off while timing, as in timeit.
"""

from __future__ import annotations

import gc
import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Callable

__all__ = ("Sampled", "Timer", "interleave")


@dataclass
class Timer:
    """One subject's round: ``run()`` does ``ops`` operations.

    With ``setup``, every sample is one round after its own untimed setup.
    """

    name: str
    run: Callable[[], None]
    ops: int
    setup: Callable[[], object] | None = None
    number: int = 1

    def calibrate(self, sample_s: float) -> None:
        if self.setup is not None:
            self.number = 1
            return
        number = 1
        while True:
            if self._time(number) >= sample_s or number >= 1 << 24:
                break
            number *= 2
        self.number = number

    def _time(self, number: int) -> float:
        run = self.run
        it = itertools.repeat(None, number)
        start = perf_counter()
        for _ in it:
            run()
        return perf_counter() - start

    def sample(self) -> float:
        """Nanoseconds per operation, one sample."""
        if self.setup is not None:
            self.setup()
        return self._time(self.number) / (self.number * self.ops) * 1e9


@dataclass
class Sampled:
    name: str
    samples: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def interleave(
    timers: Sequence[Timer],
    repeats: int,
    sample_s: float,
    warmup: int = 3,
    tick: Callable[[], None] | None = None,
) -> dict[str, Sampled]:
    """Sample every timer ``repeats`` times, interleaved; ns per operation.

    ``warmup`` rounds first let CPython specialise each loop's call sites.
    ``tick`` is called after every repeat (progress).
    """
    results = {t.name: Sampled(t.name) for t in timers}
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for t in timers:
            for _ in range(warmup):
                if t.setup is not None:
                    t.setup()
                t.run()
            t.calibrate(sample_s)
        n = len(timers)
        for r in range(repeats):
            for i in range(n):
                t = timers[(r + i) % n]
                results[t.name].samples.append(t.sample())
            if tick is not None:
                tick()
    finally:
        if was_enabled:
            gc.enable()
    return results
