"""Exact sliding windows over a per-key, time-ordered event log.

A window of width ``w`` and delay ``d`` covers the events with event time in
``(now - d - w, now - d]``. It does not copy events: it keeps two indices into the log's
columns, ``lo`` (first event in the window) and ``hi`` (one past the last), and running
aggregates that are updated only for the events that enter or leave as ``now`` moves. Every
aggregate is an integer (counts, cents, 1e-7 degrees) or a multiset, so it is exact whatever
the order of additions and removals, and :meth:`Window.rebuild` (after a restart) gives the
same values as the incremental path.

The log is any object with list columns ``ts`` (epoch ms, non-decreasing), ``cents``, ``lat``
and ``lon`` (int 1e-7 degrees, or None) and a dict ``cat`` of categorical columns; equal
timestamps are in arrival order, so a window ending "at" an event includes earlier-arrived
events with the same ``ts`` and excludes later ones.

Examples
--------
>>> from types import SimpleNamespace
>>> log = SimpleNamespace(ts=[0, 500, 1000, 1000], cents=[100, 200, 300, 400])
>>> win = CountSum(width_ms=1000, delay_ms=0)
>>> win.advance(log, now=1000)
>>> (win.count, win.total)   # (0, 1000]: the event at exactly now - w is out
(3, 900)
>>> win.advance(log, now=1500)
>>> (win.count, win.total)   # (500, 1500]
(2, 700)
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any


class Window:
    """Base class: pointer maintenance; subclasses hold the aggregates.

    Parameters
    ----------
    width_ms, delay_ms : int
        The window is ``(now - delay - width, now - delay]``.
    """

    __slots__ = ("width", "delay", "lo", "hi")

    def __init__(self, width_ms: int, delay_ms: int = 0) -> None:
        self.width = width_ms
        self.delay = delay_ms
        self.lo = 0
        self.hi = 0
        self.clear()

    # -- aggregates (subclasses) -------------------------------------------------------------
    def clear(self) -> None:
        """Reset the aggregates to an empty window."""

    def enter(self, log: Any, i: int) -> None:
        """Add event ``i`` to the aggregates."""

    def leave(self, log: Any, i: int) -> None:
        """Remove event ``i`` from the aggregates."""

    def load(self, log: Any, lo: int, hi: int) -> None:
        """Set the aggregates to those of events ``lo .. hi - 1`` (bulk, C-speed)."""

    def fresh(self) -> Window:
        """An empty window with the same definition."""
        return type(self)(self.width, self.delay)

    # -- pointers ----------------------------------------------------------------------------
    def advance(self, log: Any, now: int) -> None:
        """Move the window to end at ``now - delay`` (``now`` never decreases)."""
        ts = log.ts
        hi_edge = now - self.delay
        lo_edge = hi_edge - self.width
        lo = self.lo
        hi = self.hi
        while lo < hi and ts[lo] <= lo_edge:
            self.leave(log, lo)
            lo += 1
        n = len(ts)
        while hi < n and ts[hi] <= hi_edge:
            if ts[hi] > lo_edge:
                self.enter(log, hi)
            else:  # jumped over: the window was empty, the event never enters
                lo = hi + 1
            hi += 1
        self.lo = lo
        self.hi = hi

    def inserted(self, log: Any, pos: int, now: int) -> None:
        """Account for an event just inserted at index ``pos`` (out-of-order arrival)."""
        ts = log.ts[pos]
        hi_edge = now - self.delay
        if ts <= hi_edge - self.width:
            self.lo += 1
            self.hi += 1
        elif ts <= hi_edge:
            self.hi += 1
            self.enter(log, pos)

    def evict(self, log: Any, head: int) -> None:
        """Account for the forced removal of the oldest live event ``head`` (size cap)."""
        if self.lo <= head:
            if head < self.hi:
                self.leave(log, head)
            self.lo = head + 1
            if self.hi < self.lo:
                self.hi = self.lo

    def shift(self, k: int) -> None:
        """The log dropped its first ``k`` entries."""
        self.lo -= k
        self.hi -= k

    def rebuild(self, log: Any, now: int, head: int) -> None:
        """Recompute pointers and aggregates from scratch for a log restored at ``now``."""
        ts = log.ts
        hi_edge = now - self.delay
        self.lo = bisect_right(ts, hi_edge - self.width, head)
        self.hi = max(self.lo, bisect_right(ts, hi_edge, head))
        self.clear()
        self.load(log, self.lo, self.hi)

    def snapshot(self, log: Any, pos: int, at: int, head: int) -> Window:
        """A new window over the events at or before index ``pos`` as seen at time ``at``.

        Used for out-of-order and duplicate events: the window ends at ``at - delay`` and never
        includes an event positioned after ``pos``.
        """
        ts = log.ts
        hi_edge = at - self.delay
        end = pos + 1
        lo = bisect_right(ts, hi_edge - self.width, head, end)
        hi = end if self.delay == 0 else max(lo, bisect_right(ts, hi_edge, head, end))
        win = self.fresh()
        win.lo, win.hi = lo, hi
        win.load(log, lo, hi)
        return win


class CountSum(Window):
    """Count of events and exact sum of their amounts in integer cents.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> log = SimpleNamespace(ts=[0, 10, 20], cents=[1, 2, 4])
    >>> w = CountSum(15, 0)
    >>> w.rebuild(log, now=20, head=0); (w.count, w.total)
    (2, 6)
    >>> s = w.snapshot(log, pos=1, at=10, head=0); (s.count, s.total)
    (2, 3)
    """

    __slots__ = ("count", "total")

    def clear(self) -> None:
        self.count = 0
        self.total = 0

    def enter(self, log: Any, i: int) -> None:
        self.count += 1
        self.total += log.cents[i]

    def leave(self, log: Any, i: int) -> None:
        self.count -= 1
        self.total -= log.cents[i]

    def load(self, log: Any, lo: int, hi: int) -> None:
        self.count = hi - lo
        self.total = sum(log.cents[lo:hi])

    def advance(self, log: Any, now: int) -> None:
        # Window.advance with enter/leave inlined: the hot path of every update.
        ts = log.ts
        cents = log.cents
        hi_edge = now - self.delay
        lo_edge = hi_edge - self.width
        lo = self.lo
        hi = self.hi
        count = self.count
        total = self.total
        while lo < hi and ts[lo] <= lo_edge:
            count -= 1
            total -= cents[lo]
            lo += 1
        n = len(ts)
        while hi < n and ts[hi] <= hi_edge:
            if ts[hi] > lo_edge:
                count += 1
                total += cents[hi]
            else:
                lo = hi + 1
            hi += 1
        self.lo = lo
        self.hi = hi
        self.count = count
        self.total = total


class Distinct(Window):
    """Multiset of a categorical column (None ignored); ``len(counts)`` = distinct values.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> log = SimpleNamespace(ts=[0, 1, 2, 3], cat={"country": ["FR", None, "FR", "BE"]})
    >>> w = Distinct(10, 0, "country")
    >>> w.advance(log, now=3); sorted(w.counts.items())
    [('BE', 1), ('FR', 2)]
    """

    __slots__ = ("column", "counts")

    def __init__(self, width_ms: int, delay_ms: int, column: str) -> None:
        self.column = column
        super().__init__(width_ms, delay_ms)

    def clear(self) -> None:
        self.counts: dict[str, int] = {}

    def fresh(self) -> Distinct:
        return Distinct(self.width, self.delay, self.column)

    def enter(self, log: Any, i: int) -> None:
        value = log.cat[self.column][i]
        if value is not None:
            self.counts[value] = self.counts.get(value, 0) + 1

    def leave(self, log: Any, i: int) -> None:
        value = log.cat[self.column][i]
        if value is not None:
            left = self.counts[value] - 1
            if left:
                self.counts[value] = left
            else:
                del self.counts[value]

    def load(self, log: Any, lo: int, hi: int) -> None:
        counts = self.counts
        for value in log.cat[self.column][lo:hi]:
            if value is not None:
                counts[value] = counts.get(value, 0) + 1


class GeoSum(Window):
    """Number of events with coordinates and exact sums of their lat / lon (1e-7 degree units).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> log = SimpleNamespace(ts=[0, 1, 2], lat=[10**8, None, 12 * 10**7], lon=[10**7, None, 3])
    >>> w = GeoSum(10, 0)
    >>> w.advance(log, now=2); (w.n, w.lat_sum, w.lon_sum)
    (2, 220000000, 10000003)
    """

    __slots__ = ("n", "lat_sum", "lon_sum")

    def clear(self) -> None:
        self.n = 0
        self.lat_sum = 0
        self.lon_sum = 0

    def enter(self, log: Any, i: int) -> None:
        lat = log.lat[i]
        if lat is not None:
            self.n += 1
            self.lat_sum += lat
            self.lon_sum += log.lon[i]

    def leave(self, log: Any, i: int) -> None:
        lat = log.lat[i]
        if lat is not None:
            self.n -= 1
            self.lat_sum -= lat
            self.lon_sum -= log.lon[i]

    def load(self, log: Any, lo: int, hi: int) -> None:
        lats = [v for v in log.lat[lo:hi] if v is not None]
        self.n = len(lats)
        self.lat_sum = sum(lats)
        self.lon_sum = sum(v for v in log.lon[lo:hi] if v is not None)
