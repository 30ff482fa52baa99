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

:meth:`TerminalState.features_at` gives the features of a transaction at ``ts`` without
recording it (the windows end ``d`` before ``ts``, so the transaction is in none of them), and
:meth:`~features.eventlog.EventLog.record` records one without computing features:

>>> view = TerminalState()
>>> for rec in ({"txn_id": "a", "terminal_id": "T1", "amount": 5.0, "ts": 0},
...             {"txn_id": "b", "terminal_id": "T1", "amount": 5.0, "ts": 7 * DAY}):
...     view.record(rec)
<Arrival.IN_ORDER: 'in_order'>
<Arrival.IN_ORDER: 'in_order'>
>>> view.add_label({"txn_id": "a", "is_fraud": 1, "ts": 0, "reported_at": 7 * DAY + 3_600_000})
True
>>> at = 7 * DAY + 3_600_000
>>> g = view.features_at(at)
>>> g == state.features_at(at) == f
True
>>> g["terminal_tx_count_1d_delay7d"], g["terminal_risk_1d_delay7d"]
(1.0, 1.0)
"""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from typing import Any

from features.eventlog import (
    _EMPTY,
    EventLog,
    Layout,
    generate,
    interleave,
    prefix,
    to_cents,
    txn_hash,
)
from features.lateness import LateEventError
from features.rows import LabelRow, TxnRow
from features.spec import DEFAULT_SPEC, FeatureSpec

_COUNT, _SUM, _MEAN, _FRAUDS, _RISK = range(5)
_CODES = {"count": _COUNT, "sum": _SUM, "mean": _MEAN, "fraud_count": _FRAUDS,
          "fraud_risk": _RISK}
# row layout in _d: id hash, cents, exclusive prefix sum of cents
_H, _C, _XC = range(3)


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
    STRIDE = 3
    RAW = 2

    __slots__ = ("f_ts", "f_rep", "f_ids", "_pending", "_orphans", "_label_ids",
                 "dropped_labels")

    def __init__(self, spec: FeatureSpec = DEFAULT_SPEC, **config: Any) -> None:
        super().__init__(spec, **config)
        # known frauds of recorded transactions, sorted by ts (an empty tuple until the first)
        self.f_ts: list[int] | tuple[()] = _EMPTY
        self.f_rep: list[int] | tuple[()] = _EMPTY
        self.f_ids: list[str] | tuple[()] = _EMPTY
        self._pending: list[tuple[int, str, int]] | tuple[()] = _EMPTY  # heap (rep, id, ts)
        self._orphans: dict[str, tuple[int, int]] | tuple[()] = _EMPTY  # transaction not seen
        self._label_ids: set[str] | tuple[()] = _EMPTY
        self.dropped_labels = 0

    @classmethod
    def _compile(cls, spec: FeatureSpec) -> tuple[list[tuple[int, int]], list[tuple[int, int]],
                                                  list[str]]:
        bounds: list[tuple[int, int]] = []
        plan = []
        for f in spec.for_entity("terminal"):
            key = (f.window_ms, f.delay_ms)
            if key not in bounds:
                bounds.append(key)
            plan.append((_CODES[f.aggregation], bounds.index(key)))
        return bounds, plan, []

    # -- labels ------------------------------------------------------------------------------
    def add_label(self, label: Any) -> bool:
        """Store a label (a dict or a :class:`~features.rows.LabelRow`); True if it was kept
        (a new fraud label still relevant)."""
        if type(label) is LabelRow:
            return self._add_label(label.txn_id, label.ts, label.reported_at, label.is_fraud)
        return self._add_label(str(label["txn_id"]), int(label["ts"]),
                               int(label["reported_at"]), bool(label["is_fraud"]))

    def _add_label(self, txn_id: str, ts: int, reported_at: int, is_fraud: bool) -> bool:
        if not is_fraud or txn_id in self._label_ids:
            return False
        wm = self.watermark
        if wm is not None and ts <= wm - self._lay.retention_ms:
            return False
        if len(self._pending) + len(self._orphans) >= self._lay.max_events:
            self.dropped_labels += 1
            return False
        if not self._label_ids:
            self._label_ids = set()
        self._label_ids.add(txn_id)  # type: ignore[union-attr]
        if wm is not None and reported_at <= wm:
            self._known(txn_id, ts, reported_at)
        else:
            if not self._pending:
                self._pending = []
            heapq.heappush(self._pending, (reported_at, txn_id, ts))  # type: ignore[arg-type]
        return True

    def _recorded_at(self, txn_id: str, ts: int) -> int | None:
        """Event time of the recorded transaction ``txn_id`` (label time ``ts``), or None."""
        h = txn_hash(txn_id)
        pos = self._find(ts, h)
        if pos < 0:  # a label whose ts differs from its transaction's: scan the hashes
            s = self.head * 3
            try:
                pos = self._d[s::3].index(h) + self.head
            except ValueError:
                return None
        return self._ts[pos]

    def _known(self, txn_id: str, ts: int, reported_at: int) -> None:
        recorded_ts = self._recorded_at(txn_id, ts)
        if recorded_ts is None:
            if not self._orphans:
                self._orphans = {}
            self._orphans[txn_id] = (ts, reported_at)  # type: ignore[index]
        else:
            self._add_fraud(txn_id, recorded_ts, reported_at)

    def _add_fraud(self, txn_id: str, ts: int, reported_at: int) -> None:
        if not self.f_ts:
            self.f_ts, self.f_rep, self.f_ids = [], [], []
        i = bisect_right(self.f_ts, ts)
        self.f_ts.insert(i, ts)  # type: ignore[union-attr]
        self.f_rep.insert(i, reported_at)  # type: ignore[union-attr]
        self.f_ids.insert(i, txn_id)  # type: ignore[union-attr]

    # -- hooks -------------------------------------------------------------------------------
    def _advance_time(self, now: int) -> None:
        pending = self._pending
        if pending and pending[0][0] <= now:
            while pending and pending[0][0] <= now:
                reported_at, txn_id, ts = heapq.heappop(pending)  # type: ignore[arg-type]
                self._known(txn_id, ts, reported_at)
            if not pending:
                self._pending = _EMPTY

    def _recorded(self, txn_id: str, pos: int) -> None:
        orphans = self._orphans
        if orphans and txn_id in orphans:
            reported_at = orphans.pop(txn_id)[1]  # type: ignore[union-attr]
            if not orphans:
                self._orphans = _EMPTY
            self._add_fraud(txn_id, self._ts[pos], reported_at)

    def _put(self, pos: int, row: tuple[Any, ...], h: int) -> None:
        cents = row[2]
        d = self._d
        n = len(d) // 3
        if pos == n:
            d.extend((h, cents, d[3 * n - 1] + d[3 * n - 2] if n else 0))
            return
        b = 3 * pos
        d[b:b] = array("q", (h, cents, d[b + _XC]))
        for j in range(b + 3 + _XC, len(d), 3):
            d[j] += cents

    def _drop(self, lo: int, hi: int, forced: bool) -> None:
        if not forced or not self.f_ts:  # keep frauds a subset of the recorded transactions
            return
        f_ts, f_ids = self.f_ts, self.f_ids
        for i in range(lo, hi):
            ts, h = self._ts[i], self._d[3 * i]
            j = bisect_left(f_ts, ts)
            while j < len(f_ts) and f_ts[j] == ts:
                if txn_hash(f_ids[j]) == h:
                    txn_id = f_ids[j]
                    del self.f_ts[j], self.f_rep[j], self.f_ids[j]  # type: ignore[union-attr]
                    self._label_ids.discard(txn_id)  # type: ignore[union-attr]
                    break
                j += 1
        self._tidy()

    def _prune_extras(self, cutoff: int) -> None:
        if self.f_ts and self.f_ts[0] <= cutoff:
            k = bisect_right(self.f_ts, cutoff)
            self._label_ids.difference_update(self.f_ids[:k])  # type: ignore[union-attr]
            del self.f_ts[:k], self.f_rep[:k], self.f_ids[:k]  # type: ignore[union-attr]
            self._tidy()
        if self._orphans:
            old = [i for i, (ts, _) in self._orphans.items() if ts <= cutoff]  # type: ignore[union-attr]
            for txn_id in old:
                del self._orphans[txn_id]  # type: ignore[union-attr]
                self._label_ids.discard(txn_id)  # type: ignore[union-attr]
            self._tidy()

    def _tidy(self) -> None:
        """Give back the containers that became empty."""
        if not self.f_ts:
            self.f_ts = self.f_rep = self.f_ids = _EMPTY
        if not self._orphans:
            self._orphans = _EMPTY
        if not self._label_ids:
            self._label_ids = _EMPTY

    # -- features ----------------------------------------------------------------------------
    def row(self, txn: Any) -> tuple[Any, ...]:
        """The internal row ``(ts, txn_id, cents)`` of a transaction (a dict or a
        :class:`~features.rows.TxnRow`)."""
        if type(txn) is TxnRow:
            return txn.ts, txn.txn_id, txn.cents
        return int(txn["ts"]), str(txn["txn_id"]), to_cents(float(txn["amount"]))

    def update(self, txn: Any) -> dict[str, float]:
        """Apply held labels that are due, record the transaction, return its features.

        Raises :class:`~features.lateness.LateEventError` for a LATE event (check
        :meth:`arrival` first); a DUPLICATE leaves the state unchanged.
        """
        return dict(zip(self._lay.names, self._ingest(self.row(txn)), strict=True))

    def features_at(self, ts: int) -> dict[str, float]:
        """The terminal features of a transaction at ``ts``, from the state as it is.

        Nothing is recorded or changed. The result equals what :meth:`update` would return
        for a (new) transaction at ``ts`` called at this point, for any ``ts`` that is not
        LATE, because every terminal window ends ``delay > 0`` before ``ts``: held labels
        with ``reported_at <= ts`` count, as :meth:`update` would apply them first.

        Raises
        ------
        LateEventError
            ``ts`` is LATE for this state (its windows may have lost rows to retention).
        ValueError
            The spec has a terminal window without delay.
        """
        lay = self._lay
        wm = self.watermark
        lateness = lay.policy.allowed_lateness_ms
        if wm is not None and ts < wm - lateness:
            raise LateEventError("(features_at)", ts, wm, lateness)
        if any(delay == 0 for _, delay in lay.bounds):
            raise ValueError("features_at needs every terminal window to have a delay")
        due: list[int] = []
        for rep, txn_id, lts in self._pending:
            if rep <= ts:
                recorded = self._recorded_at(txn_id, lts)
                if recorded is not None:
                    due.append(recorded)
        due.sort()
        out = self._compute(-1, ts, len(self._ts), False, due)
        return dict(zip(lay.names, out, strict=True))

    def _slow_frauds(self, a: int, b: int, at: int) -> int:
        return sum(1 for r in self.f_rep[a:b] if r <= at)

    def _compute(self, pos: int, at: int, end: int, fast: bool,
                 due: list[int] | None = None) -> list[float]:
        return self._lay.compute(self, pos, at, end, fast, due)

    @classmethod
    def _generate(cls, lay: Layout) -> tuple[Callable[..., list[float]], str]:
        """Straight-line code for ``lay.plan``: per window ``k``, bounds ``lo{k}, hi{k}``,
        count ``n{k}``, when used total cents ``t{k}`` and frauds known at ``at`` ``f{k}``
        (``fast``: every stored label was reported at or before the watermark == at;
        ``due``: sorted event times of held labels to count as well, see features_at)."""
        lines = ["def compute(self, pos, at, end, fast, due=None):",
                 "    ts = self._ts", "    d = self._d", "    head = self.head",
                 "    f_ts = self.f_ts"]
        totals = {slot for code, slot in lay.plan if code in (_SUM, _MEAN)}
        frauds = {slot for code, slot in lay.plan if code in (_FRAUDS, _RISK)}
        same: dict[int, int] = {}  # windows with one delay end at the same row
        for k, (w, delay) in enumerate(lay.bounds):
            if delay in same:
                lines.append(f"    hi{k} = hi{same[delay]}")
            else:
                same[delay] = k
                lines.append(f"    hi{k} = bisect_right(ts, at - {delay}, head, end)" if delay
                             else f"    hi{k} = end")
            lines.append(f"    lo{k} = bisect_right(ts, at - {delay + w}, head, hi{k})")
            lines.append(f"    n{k} = hi{k} - lo{k}")
            if k in totals:
                lines.append(f"    t{k} = d[3 * hi{k} - 1] + d[3 * hi{k} - 2] - d[3 * lo{k} + 2]"
                             f" if n{k} else 0")
            if k in frauds:
                lines += [
                    "    if f_ts:",
                    f"        a{k} = bisect_right(f_ts, at - {delay + w})",
                    f"        b{k} = bisect_right(f_ts, at - {delay}, a{k})",
                    f"        f{k} = b{k} - a{k} if fast else self._slow_frauds(a{k}, b{k}, at)",
                    "    else:",
                    f"        f{k} = 0",
                    "    if due:",
                    f"        f{k} += bisect_right(due, at - {delay}) - "
                    f"bisect_right(due, at - {delay + w})",
                ]
        out = []
        for code, k in lay.plan:
            if code == _COUNT:
                out.append(f"float(n{k})")
            elif code == _SUM:
                out.append(f"t{k} / 100")
            elif code == _MEAN:
                out.append(f"(t{k} / (n{k} * 100) if n{k} else 0.0)")
            elif code == _FRAUDS:
                out.append(f"float(f{k})")
            else:
                out.append(f"(f{k} / n{k} if n{k} else 0.0)")
        lines.append("    return [" + ", ".join(out) + "]")
        return generate(lines, {"bisect_right": bisect_right})

    # -- serialisation -----------------------------------------------------------------------
    def _set_columns(self, n: int, cols: dict[str, Any]) -> None:
        self._set_rows(array("q", cols["h"]), array("q", cols["c"]))

    def _set_rows(self, h: array, c: array) -> None:
        """Rebuild ``_d`` from its raw columns."""
        self._d = interleave([h, c, prefix(c)], len(h))

    def _extras_to_dict(self) -> dict[str, Any]:
        return {
            "f": [list(e) for e in zip(self.f_ids, self.f_ts, self.f_rep, strict=True)],
            "p": sorted(list(e) for e in self._pending),
            "o": [[i, ts, r] for i, (ts, r) in self._orphans.items()] if self._orphans else [],
            "dl": self.dropped_labels,
        }

    def _extras_from_dict(self, data: dict[str, Any]) -> None:
        self._set_labels([tuple(e) for e in data["f"]], [tuple(e) for e in data["p"]],
                         [tuple(e) for e in data["o"]])
        self.dropped_labels = data["dl"]

    def _set_labels(self, frauds: list[Any], pending: list[Any], orphans: list[Any]) -> None:
        """Restore ``(id, ts, rep)`` frauds (sorted by ts), ``(rep, id, ts)`` held labels
        (sorted) and ``(id, ts, rep)`` orphans."""
        if frauds:
            self.f_ids = [e[0] for e in frauds]
            self.f_ts = [e[1] for e in frauds]
            self.f_rep = [e[2] for e in frauds]
        if pending:
            self._pending = sorted(pending)  # sorted: a heap
        if orphans:
            self._orphans = {i: (ts, r) for i, ts, r in orphans}
        ids = set(self.f_ids) | {p[1] for p in self._pending} | set(self._orphans)
        if ids:
            self._label_ids = ids
