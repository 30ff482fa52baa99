"""Event-time modes and pacing: when each event is sent, and which event time it carries.

* ``live``: event time = the wall clock. The traffic pattern's schedule gives each event an
  offset from the run start; the event is sent once the clock reaches it and carries
  ``ts = run start + offset`` (so ``ts`` is never ahead of the clock at send time).
* ``historical``: event times come from the data (generated from ``--start``, or recorded);
  they are sent in event-time order, ``speed`` times faster than real time
  (``speed`` = None or 0: as fast as possible).

Sending happens in slices: consecutive events due within ``tick_s`` of each other (at most
``max_batch``) go out together, so a producer can batch while the rate follows the schedule.

>>> historical_offsets(np.array([1_000, 3_000, 11_000]), speed=2.0).tolist()
[0.0, 1.0, 5.0]
>>> live_event_times(np.array([0.0, 0.25]), start_ms=1_000).tolist()
[1000, 1250]
>>> list(send_slices(np.array([0.0, 0.001, 0.5, 0.5, 2.0]), max_batch=10, tick_s=0.01))
[(0, 2, 0.0), (2, 4, 0.5), (4, 5, 2.0)]
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Literal

import numpy as np

EventTimeMode = Literal["live", "historical"]
MODES: tuple[str, ...] = ("live", "historical")


def historical_offsets(ts_ms: np.ndarray, speed: float | None) -> np.ndarray:
    """Send offsets (s after the first event) replaying event time ``speed`` x faster."""
    ts = np.asarray(ts_ms, dtype=np.int64)
    if ts.size == 0 or not speed:
        return np.zeros(ts.size)
    if speed < 0:
        raise ValueError(f"speed must be >= 0, got {speed}")
    return (ts - ts[0]) / 1000.0 / float(speed)


def live_event_times(offsets_s: np.ndarray, start_ms: int) -> np.ndarray:
    """Event times (epoch ms) of events sent at ``offsets_s`` after ``start_ms``."""
    return start_ms + np.round(np.asarray(offsets_s) * 1000.0).astype(np.int64)


def send_slices(offsets_s: np.ndarray, max_batch: int = 5_000,
                tick_s: float = 0.005) -> Iterator[tuple[int, int, float]]:
    """``(lo, hi, due_s)``: events ``lo:hi`` are sent together once ``due_s`` is reached.

    ``offsets_s`` must be non-decreasing. A slice holds the events due before
    ``offsets_s[lo] + tick_s``, at most ``max_batch`` of them.
    """
    offsets = np.asarray(offsets_s, dtype=np.float64)
    n, lo = offsets.size, 0
    while lo < n:
        due = float(offsets[lo])
        hi = int(np.searchsorted(offsets, due + tick_s, side="left"))
        hi = min(max(hi, lo + 1), lo + max_batch, n)
        yield lo, hi, due
        lo = hi


class Pacer:
    """Waits until a schedule offset is reached; tracks how far behind the sender runs.

    ``clock`` and ``sleep`` are injectable for tests.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self.started = clock()
        self.max_lag_s = 0.0

    def elapsed(self) -> float:
        """Seconds since the pacer was created."""
        return self._clock() - self.started

    async def wait_until(self, offset_s: float) -> None:
        """Sleep until ``offset_s`` after the start (no sleep when already late)."""
        ahead = offset_s - self.elapsed()
        if ahead > 0:
            await self._sleep(ahead)
        else:
            self.max_lag_s = max(self.max_lag_s, -ahead)
