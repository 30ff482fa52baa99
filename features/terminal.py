"""Per-terminal state and the terminal features, with delayed fraud labels.

Terminal aggregations (window ``(t - d - w, t - d]`` on event time, ``t`` = the current
transaction's time; the handbook uses ``d`` = 7 days):

``count``        transactions of the terminal in the window.
``sum``/``mean`` amounts in the window (mean 0.0 when the window is empty).
``fraud_count``  transactions in the window whose fraud label is *known at t*.
``fraud_risk``   ``fraud_count / count``; 0.0 when the window is empty.

A label is known at ``t`` when its ``reported_at <= t`` and the terminal has recorded the
labelled transaction. Rules for :meth:`TerminalState.add_label`:

* Only ``is_fraud`` labels change anything; genuine labels are acknowledged and dropped.
* A label whose ``reported_at`` is after the watermark (the largest transaction time seen) is
  held and applied when a transaction at or after ``reported_at`` arrives, *before* that
  transaction's features are computed. Batch and stream thus agree whenever each label
  arrives before the first transaction of its terminal with ``ts >= reported_at`` — the batch
  interleave applies a label with ``reported_at <= t`` before the transaction at ``t``.
* A label may come before its transaction: once known it waits until the transaction is
  recorded (or falls out of retention).
* The first fraud label of a ``txn_id`` wins; redelivered labels are ignored. A label whose
  transaction time is already out of every window is ignored.

Examples
--------
>>> DAY = 86_400_000
>>> state = TerminalState()
>>> f = state.update({"txn_id": "a", "terminal_id": "T1", "amount": 5.0, "ts": 0})
>>> f["terminal_tx_count_1d_delay7d"], f["terminal_risk_1d_delay7d"]
(0.0, 0.0)
>>> state.add_label({"txn_id": "a", "is_fraud": 1, "ts": 0, "reported_at": 7 * DAY + 3_600_000})
True
>>> f = state.update({"txn_id": "b", "terminal_id": "T1", "amount": 5.0, "ts": 7 * DAY})
>>> f["terminal_tx_count_1d_delay7d"], f["terminal_risk_1d_delay7d"]   # label not reported yet
(1.0, 0.0)
>>> f = state.update({"txn_id": "c", "terminal_id": "T1", "amount": 5.0, "ts": 7 * DAY + 3_600_000})
>>> f["terminal_tx_count_1d_delay7d"], f["terminal_risk_1d_delay7d"]
(1.0, 1.0)
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from typing import Any

from features.eventlog import EventLog, to_cents
from features.windows import CountSum, Window

_COUNT, _SUM, _MEAN, _FRAUDS, _RISK = range(5)
_CODES = {"count": _COUNT, "sum": _SUM, "mean": _MEAN, "fraud_count": _FRAUDS,
          "fraud_risk": _RISK}


class TerminalState(EventLog):
    """History of one terminal, its known fraud labels and its features.

    Parameters
    ----------
    spec : FeatureSpec
        Only the ``terminal`` features are computed here.
    allowed_lateness_ms : int
        See :mod:`features.lateness`.
    max_events : int
        Hard cap on transactions kept, and separately on held labels (see
        :mod:`features.eventlog`).

    Attributes
    ----------
    dropped_labels : int
        Fraud labels discarded because the held-label cap was reached.
    """

    ENTITY = "terminal"

    def _init_extras(self) -> None:
        self.f_ts: list[int] = []  # known frauds of recorded transactions, sorted by ts
        self.f_rep: list[int] = []
        self.f_ids: list[str] = []
        self._pending: list[tuple[int, str, int]] = []  # heap of (reported_at, txn_id, ts)
        self._orphans: dict[str, tuple[int, int]] = {}  # known, transaction not recorded yet
        self._label_ids: set[str] = set()
        self.dropped_labels = 0

    def _compile(self) -> None:
        index: dict[tuple[int, int], int] = {}
        plan = []
        for f in self.spec.for_entity("terminal"):
            key = (f.window_ms, f.delay_ms)
            if key not in index:
                index[key] = len(self.windows)
                self.windows.append(CountSum(*key))
            plan.append((_CODES[f.aggregation], index[key]))
        self._plan = plan

    # -- labels ------------------------------------------------------------------------------
    def add_label(self, label: dict[str, Any]) -> bool:
        """Store a label; True if it was kept (a new fraud label still relevant)."""
        return self._add_label(str(label["txn_id"]), int(label["ts"]),
                               int(label["reported_at"]), bool(label["is_fraud"]))

    def _add_label(self, txn_id: str, ts: int, reported_at: int, is_fraud: bool) -> bool:
        if not is_fraud or txn_id in self._label_ids:
            return False
        wm = self.watermark
        if wm is not None and ts <= wm - self.retention_ms:
            return False
        if len(self._pending) + len(self._orphans) >= self.max_events:
            self.dropped_labels += 1
            return False
        self._label_ids.add(txn_id)
        if wm is not None and reported_at <= wm:
            self._known(txn_id, ts, reported_at)
        else:
            heapq.heappush(self._pending, (reported_at, txn_id, ts))
        return True

    def _known(self, txn_id: str, ts: int, reported_at: int) -> None:
        recorded_ts = self._ids.get(txn_id)
        if recorded_ts is None:
            self._orphans[txn_id] = (ts, reported_at)
        else:
            self._add_fraud(txn_id, recorded_ts, reported_at)

    def _add_fraud(self, txn_id: str, ts: int, reported_at: int) -> None:
        i = bisect_right(self.f_ts, ts)
        self.f_ts.insert(i, ts)
        self.f_rep.insert(i, reported_at)
        self.f_ids.insert(i, txn_id)

    # -- hooks -------------------------------------------------------------------------------
    def _advance_time(self, now: int) -> None:
        pending = self._pending
        while pending and pending[0][0] <= now:
            reported_at, txn_id, ts = heapq.heappop(pending)
            self._known(txn_id, ts, reported_at)

    def _recorded(self, txn_id: str, pos: int) -> None:
        if self._orphans and txn_id in self._orphans:
            reported_at = self._orphans.pop(txn_id)[1]
            self._add_fraud(txn_id, self.ts[pos], reported_at)

    def _dropping(self, i: int, forced: bool) -> None:
        if forced and self.f_ts:  # keep frauds a subset of the recorded transactions
            ts, txn_id = self.ts[i], self.ids[i]
            j = bisect_left(self.f_ts, ts)
            while j < len(self.f_ts) and self.f_ts[j] == ts:
                if self.f_ids[j] == txn_id:
                    del self.f_ts[j], self.f_rep[j], self.f_ids[j]
                    self._label_ids.discard(txn_id)
                    break
                j += 1

    def _prune_extras(self, cutoff: int) -> None:
        k = bisect_right(self.f_ts, cutoff)
        if k:
            self._label_ids.difference_update(self.f_ids[:k])
            del self.f_ts[:k], self.f_rep[:k], self.f_ids[:k]
        if self._orphans:
            for txn_id in [i for i, (ts, _) in self._orphans.items() if ts <= cutoff]:
                del self._orphans[txn_id]
                self._label_ids.discard(txn_id)

    # -- features ----------------------------------------------------------------------------
    def row(self, txn: dict[str, Any]) -> tuple[Any, ...]:
        """The internal row ``(ts, txn_id, cents)`` of a transaction."""
        return int(txn["ts"]), str(txn["txn_id"]), to_cents(float(txn["amount"]))

    def update(self, txn: dict[str, Any]) -> dict[str, float]:
        """Apply held labels that are due, record the transaction, return its features.

        Raises :class:`~features.lateness.LateEventError` for a LATE event (check
        :meth:`arrival` first); a DUPLICATE leaves the state unchanged.
        """
        return dict(zip(self.names, self._ingest(self.row(txn)), strict=True))

    def _frauds(self, win: Window, at: int, fast: bool) -> int:
        hi_edge = at - win.delay
        a = bisect_right(self.f_ts, hi_edge - win.width)
        b = bisect_right(self.f_ts, hi_edge, a)
        if fast:  # every stored label was reported at or before the watermark == at
            return b - a
        return sum(1 for r in self.f_rep[a:b] if r <= at)

    def _compute(self, pos: int, at: int, windows: list[Window], fast: bool) -> list[float]:
        out: list[float] = []
        for code, slot in self._plan:
            win: Any = windows[slot]
            count = win.count
            if code == _COUNT:
                out.append(float(count))
            elif code == _SUM:
                out.append(win.total / 100)
            elif code == _MEAN:
                out.append(win.total / (count * 100) if count else 0.0)
            else:
                frauds = self._frauds(win, at, fast)
                if code == _FRAUDS:
                    out.append(float(frauds))
                else:
                    out.append(frauds / count if count else 0.0)
        return out

    # -- serialisation -----------------------------------------------------------------------
    def _extras_to_dict(self) -> dict[str, Any]:
        return {
            "f": [list(e) for e in zip(self.f_ids, self.f_ts, self.f_rep, strict=True)],
            "p": sorted(list(e) for e in self._pending),
            "o": [[i, ts, r] for i, (ts, r) in self._orphans.items()],
            "dl": self.dropped_labels,
        }

    def _extras_from_dict(self, data: dict[str, Any]) -> None:
        for txn_id, ts, rep in data["f"]:
            self.f_ids.append(txn_id)
            self.f_ts.append(ts)
            self.f_rep.append(rep)
        self._pending = [(r, i, ts) for r, i, ts in data["p"]]  # sorted: already a heap
        self._orphans = {i: (ts, r) for i, ts, r in data["o"]}
        self._label_ids = set(self.f_ids) | {p[1] for p in self._pending} | set(self._orphans)
        self.dropped_labels = data["dl"]
