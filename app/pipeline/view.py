"""The terminal view: every terminal's state, on every worker, and the gate that keeps it exact.

Terminal features of a transaction at ``t`` need every transaction of the terminal with
``ts <= t - d`` (``d``: the smallest delay of the spec's terminal features, 7 days) and every
fraud label with ``reported_at <= t``, whichever card partition (so whichever worker) they came
from. Each worker keeps a :class:`features.terminal.TerminalState` for *all* terminals, fed in
process by the partitions it owns (in merge order) and by the state log for the others
(:mod:`app.pipeline.feeder`). :meth:`TerminalView.features_at` answers from it, read-only.

Progress of the other partitions comes from the segment headers the feeder applied
(:class:`Progress`). :meth:`TerminalView.blocking` is the gate: a transaction at ``t`` of an
owned partition may be processed when every *foreign* partition ``q`` has
``complete_q >= t - gate_lag`` and ``labels_q >= t``, or is caught up (its writer had nothing
left, and the feeder has read everything of ``q``). ``gate_lag`` is at most ``d`` (exactness)
and below the view's allowed lateness (no row of a slower worker can then arrive later than
the view accepts): a row later than that allowed lateness is dropped and counted
(:attr:`TerminalView.late`); the gate is what keeps that count at zero.

>>> view = TerminalView(lateness_ms=86_400_000, gate_lag_ms=43_200_000, partitions=2)
>>> from features.rows import txn_row
>>> view.record(txn_row({"txn_id": "a", "card_id": "c", "terminal_id": "T", "amount": 5.0,
...                      "ts": 0}))
<Arrival.IN_ORDER: 'in_order'>
>>> view.features_at("T", 7 * 86_400_000)["terminal_tx_count_1d_delay7d"]
1.0
>>> view.blocking(1_000, foreign=[1])     # nothing known of partition 1 yet
1
>>> view.progress[1].advance(Header(b"w" * 16, 1, 0, 0, 0, 0, 500, 2_000, False), True)
>>> view.blocking(1_000, foreign=[1]) is None
True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from app.pipeline.segments import NONE, Header
from features.lateness import Arrival
from features.rows import LabelRow, TxnRow
from features.spec import DEFAULT_SPEC, FeatureSpec
from features.terminal import TerminalState

DAY_MS = 86_400_000


def smallest_terminal_delay_ms(spec: FeatureSpec = DEFAULT_SPEC) -> int:
    """``d``: the smallest delay of the spec's terminal features (7 days in the handbook).

    >>> smallest_terminal_delay_ms() // DAY_MS
    7
    """
    delays = [f.delay_ms for f in spec.for_entity("terminal")]
    return min(delays) if delays else 0


class Progress:
    """What the log says of one source partition (monotone: the log only grows)."""

    __slots__ = ("complete", "labels", "caught_up", "read_all", "writer")

    def __init__(self) -> None:
        self.complete = NONE
        self.labels = NONE
        self.caught_up = False
        self.read_all = False
        self.writer = b""

    def advance(self, header: Header, read_all: bool) -> None:
        """Apply a segment header (after its rows); ``read_all``: nothing newer is on the log."""
        if header.complete > self.complete:
            self.complete = header.complete
        if header.labels > self.labels:
            self.labels = header.labels
        self.caught_up = header.caught_up
        self.writer = header.writer
        self.read_all = read_all

    def allows(self, t: int, lag_ms: int) -> bool:
        return (self.caught_up and self.read_all) or (
            self.complete >= t - lag_ms and self.labels >= t)

    def __repr__(self) -> str:
        return (f"Progress(complete={self.complete}, labels={self.labels}, "
                f"caught_up={self.caught_up}, read_all={self.read_all})")


class TerminalView:
    """All terminals' states (see the module docstring)."""

    def __init__(self, spec: FeatureSpec = DEFAULT_SPEC, *, lateness_ms: int,
                 gate_lag_ms: int | None = None, max_events: int = 10_000,
                 partitions: int = 1) -> None:
        d = smallest_terminal_delay_ms(spec)
        if d and lateness_ms >= d:
            raise ValueError(f"the view's allowed lateness ({lateness_ms} ms) must stay below "
                             f"the smallest terminal delay ({d} ms)")
        self.spec = spec
        self.config = {"allowed_lateness_ms": lateness_ms, "max_events": max_events}
        self.gate_lag_ms = lateness_ms // 2 if gate_lag_ms is None else gate_lag_ms
        if self.gate_lag_ms >= lateness_ms > 0:
            raise ValueError("the gate lag must stay below the view's allowed lateness")
        self.states: dict[str, TerminalState] = {}
        self._empty = TerminalState(spec, **self.config)
        self.progress: dict[int, Progress] = {p: Progress() for p in range(partitions)}
        self.late = 0
        self.recorded = 0
        self.labels = 0

    def resize(self, partitions: int) -> None:
        for p in range(partitions):
            self.progress.setdefault(p, Progress())

    def _state(self, terminal: str) -> TerminalState:
        state = self.states.get(terminal)
        if state is None:
            state = self.states[terminal] = TerminalState(self.spec, **self.config)
        return state

    def features_at(self, terminal: str, ts: int) -> dict[str, float]:
        """The terminal features of a transaction at ``ts`` (raises
        :class:`~features.lateness.LateEventError` if the view cannot answer exactly)."""
        state = self.states.get(terminal)
        return (self._empty if state is None else state).features_at(ts)

    def record(self, row: TxnRow) -> Arrival:
        """Record a transaction row (idempotent: a duplicate changes nothing; a LATE one is
        dropped and counted)."""
        arrival = self._state(row.terminal_id).record(row)
        if arrival is Arrival.LATE:
            self.late += 1
        else:
            self.recorded += 1
        return arrival

    def add_label(self, label: LabelRow) -> bool:
        """Store a fraud label (idempotent)."""
        if not label.is_fraud:
            return False
        self.labels += 1
        return self._state(label.terminal_id).add_label(label)

    def blocking(self, t: int, foreign: Iterable[int]) -> int | None:
        """The first foreign partition that does not allow a transaction at ``t`` yet."""
        lag = self.gate_lag_ms
        progress = self.progress
        for q in foreign:
            prog = progress.get(q)
            if prog is None or not prog.allows(t, lag):
                return q
        return None

    def held_events(self) -> int:
        return sum(len(s) for s in self.states.values())

    def stats(self) -> dict[str, Any]:
        return {"terminals": len(self.states), "late": self.late, "recorded": self.recorded,
                "labels": self.labels}
