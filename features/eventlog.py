"""Per-key event history shared by :class:`~features.card.CardState` and
:class:`~features.terminal.TerminalState`: ordering, lateness, retention, serialisation.

The history is a set of parallel list columns (``ts``, ``ids``, ``cents`` plus the subclass's
``_extra`` columns) sorted by event time, ties in arrival order. Entries before ``head`` are
dead and are compacted away in bulk. Windows (:mod:`features.windows`) index into the columns.

Memory bound
------------
After every update a key holds at most ``max_events`` transactions (default 10,000), all
with ``ts > watermark - retention_ms`` where ``retention_ms`` = widest ``window + delay`` in
the spec + the allowed lateness (37 days for :data:`~features.spec.DEFAULT_SPEC`), plus
fewer than ``max(256, live)`` dead entries awaiting compaction; a new transaction's windows
thus see at most ``max_events`` earlier ones plus itself. If the cap bites, the oldest
transactions are dropped even though still inside a window (counted in ``evicted``): the
windows then under-count, identically in streaming and batch, because both run this code.

Serialisation
-------------
``to_dict()`` holds only the raw history (ts delta-encoded) and the subclass's extras; window
pointers and aggregates are rebuilt by ``from_dict`` from that history. Aggregates are
integers, so the rebuilt state is identical to the one that was saved.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from itertools import accumulate
from typing import Any, ClassVar, Self

from features.lateness import Arrival, LateEventError, LatenessPolicy
from features.spec import DEFAULT_SPEC, FeatureSpec
from features.windows import Window

DEFAULT_MAX_EVENTS = 10_000
_COMPILED: dict[tuple[type, str], tuple[list[str], list[Window], Any]] = {}
FORMAT = 1
_COMPACT_MIN = 256


def to_cents(amount: float) -> int:
    """Amount as integer cents (rounded half to even).

    Examples
    --------
    >>> to_cents(12.34), to_cents(0.1 + 0.2), to_cents(220.0)
    (1234, 30, 22000)
    """
    return round(amount * 100)


class EventLog:
    """Base class. Subclasses set ``ENTITY``, fill ``_extra`` and implement the hooks."""

    ENTITY: ClassVar[str] = ""

    def __init__(
        self,
        spec: FeatureSpec = DEFAULT_SPEC,
        *,
        allowed_lateness_ms: int = 0,
        max_events: int = DEFAULT_MAX_EVENTS,
    ) -> None:
        if max_events < 1:
            raise ValueError("max_events must be >= 1")
        self.spec = spec
        self.policy = LatenessPolicy(allowed_lateness_ms)
        self.max_events = max_events
        self.watermark: int | None = None
        self.evicted = 0
        self.head = 0
        self.ts: list[int] = []
        self.ids: list[str] = []
        self.cents: list[int] = []
        self._ids: dict[str, int] = {}
        self._extra: dict[str, list[Any]] = {}
        self.windows: list[Window] = []
        self._plan: Any = None
        self._init_extras()
        key = (type(self), spec.version)
        compiled = _COMPILED.get(key)
        if compiled is None:
            self._compile()
            compiled = _COMPILED[key] = (
                spec.names_for(self.ENTITY), [w.fresh() for w in self.windows], self._plan
            )
        self.names, templates, self._plan = compiled
        self.windows = [w.fresh() for w in templates]
        self._cols: list[list[Any]] = [self.ts, self.ids, self.cents, *self._extra.values()]
        span = max((w.width + w.delay for w in self.windows), default=0)
        self.retention_ms = span + self.policy.allowed_lateness_ms

    # -- hooks -------------------------------------------------------------------------------
    def _init_extras(self) -> None:
        """Create the subclass's extra columns (in ``_extra``, row order) and other state."""

    def _compile(self) -> None:
        """Fill ``self.windows`` and ``self._plan`` from ``self.spec`` (cached per spec)."""

    def _compute(self, pos: int, at: int, windows: list[Window], fast: bool) -> list[float]:
        """Features of the event at ``pos`` at time ``at``, in ``self.names`` order."""
        raise NotImplementedError

    def _advance_time(self, now: int) -> None:
        """The watermark is about to move to ``now``."""

    def _recorded(self, txn_id: str, pos: int) -> None:
        """A transaction was added at ``pos``."""

    def _dropping(self, i: int, forced: bool) -> None:
        """Entry ``i`` leaves the history (retention, or the size cap when ``forced``)."""

    def _prune_extras(self, cutoff: int) -> None:
        """Drop subclass state about events at or before ``cutoff``."""

    # -- public ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ts) - self.head

    def __contains__(self, txn_id: object) -> bool:
        return txn_id in self._ids

    def classify(self, txn_id: str, ts: int) -> Arrival:
        """IN_ORDER, OUT_OF_ORDER, DUPLICATE or LATE (see :mod:`features.lateness`)."""
        arrival = self.policy.classify(ts, self.watermark)
        if arrival is not Arrival.LATE and txn_id in self._ids:
            return Arrival.DUPLICATE
        return arrival

    def arrival(self, txn: dict[str, Any]) -> Arrival:
        """:meth:`classify` for a transaction dict; LATE events must go to the late topic."""
        return self.classify(str(txn["txn_id"]), int(txn["ts"]))

    # -- the one ingestion path, used by update() and by the batch recomputation -----------
    def _ingest(self, row: tuple[Any, ...]) -> list[float]:
        """Apply one transaction given as ``(ts, txn_id, cents, *extras)``; return features."""
        ts, txn_id = row[0], row[1]
        wm = self.watermark
        if (wm is None or ts >= wm) and txn_id not in self._ids:
            arrival = Arrival.IN_ORDER
        else:
            arrival = self.classify(txn_id, ts)
        if arrival is Arrival.IN_ORDER:
            self._advance_time(ts)
            self.watermark = ts
            for col, value in zip(self._cols, row, strict=True):
                col.append(value)
            pos = len(self.ts) - 1
            self._ids[txn_id] = ts
            self._recorded(txn_id, pos)
            for win in self.windows:
                win.advance(self, ts)
            out = self._compute(pos, ts, self.windows, True)
            self._prune()
            return out
        if arrival is Arrival.LATE:
            assert self.watermark is not None
            raise LateEventError(txn_id, ts, self.watermark, self.policy.allowed_lateness_ms)
        if arrival is Arrival.DUPLICATE:
            pos = self._position(txn_id)
            return self._compute_at(pos, self.ts[pos])
        # OUT_OF_ORDER: insert at its event-time position, after equal timestamps
        pos = bisect_right(self.ts, ts, self.head)
        for col, value in zip(self._cols, row, strict=True):
            col.insert(pos, value)
        self._ids[txn_id] = ts
        self._recorded(txn_id, pos)
        assert self.watermark is not None
        for win in self.windows:
            win.inserted(self, pos, self.watermark)
        out = self._compute_at(pos, ts)
        self._prune()
        return out

    def _compute_at(self, pos: int, at: int) -> list[float]:
        snaps = [win.snapshot(self, pos, at, self.head) for win in self.windows]
        return self._compute(pos, at, snaps, False)

    def _position(self, txn_id: str) -> int:
        ts = self._ids[txn_id]
        i = bisect_left(self.ts, ts, self.head)
        while self.ids[i] != txn_id:
            i += 1
        return i

    def _prune(self) -> None:
        assert self.watermark is not None
        cutoff = self.watermark - self.retention_ms
        ts = self.ts
        n = len(ts)
        head = self.head
        while head < n and ts[head] <= cutoff:
            self._dropping(head, False)
            del self._ids[self.ids[head]]
            head += 1
        while n - head > self.max_events:
            for win in self.windows:
                win.evict(self, head)
            self._dropping(head, True)
            del self._ids[self.ids[head]]
            self.evicted += 1
            head += 1
        self.head = head
        self._prune_extras(cutoff)
        if head >= _COMPACT_MIN and 2 * head >= n:
            for col in self._cols:
                del col[:head]
            for win in self.windows:
                win.shift(head)
            self.head = 0

    # -- serialisation -----------------------------------------------------------------------
    def _extras_to_dict(self) -> dict[str, Any]:
        return {}

    def _extras_from_dict(self, data: dict[str, Any]) -> None:
        """Restore the subclass's non-column state."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able snapshot of the live history (see the module docstring)."""
        h = self.head
        ts = self.ts[h:]
        deltas = [b - a for a, b in zip(ts, ts[1:], strict=False)]
        data: dict[str, Any] = {
            "fmt": FORMAT,
            "wm": self.watermark,
            "ev": self.evicted,
            "ts": ts[:1] + deltas,
            "id": self.ids[h:],
            "c": self.cents[h:],
        }
        data["x"] = {name: col[h:] for name, col in self._extra.items()}
        data.update(self._extras_to_dict())
        return data

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], spec: FeatureSpec = DEFAULT_SPEC, **config: Any
    ) -> Self:
        """Rebuild a state saved by :meth:`to_dict`; ``config`` as for the constructor."""
        if data.get("fmt") != FORMAT:
            raise ValueError(f"unsupported state format {data.get('fmt')!r}")
        state = cls(spec, **config)
        state.watermark = data["wm"]
        state.evicted = data["ev"]
        state.ts[:] = accumulate(data["ts"])
        state.ids[:] = data["id"]
        state.cents[:] = data["c"]
        n = len(state.ts)
        for name, col in state._extra.items():  # a column the saved spec lacked: all None
            col[:] = data["x"].get(name) or [None] * n
        state._ids = dict(zip(state.ids, state.ts, strict=True))
        state._extras_from_dict(data)
        if state.watermark is not None:
            for win in state.windows:
                win.rebuild(state, state.watermark, 0)
        return state

    def dumps(self) -> bytes:
        """:meth:`to_dict` as compact JSON bytes (a Faust changelog value)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def loads(cls, blob: bytes, spec: FeatureSpec = DEFAULT_SPEC, **config: Any) -> Self:
        """Inverse of :meth:`dumps`."""
        return cls.from_dict(json.loads(blob), spec, **config)
