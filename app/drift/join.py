"""The label/prediction join of one card, and txn_id dedup, in event time with a horizon.

Predictions (``ml-predictions``) and labels (``transaction-labels``) are both keyed by card id,
so one card's state sees both. A label can come before or after its prediction (a replay, a
lagging topic); whichever comes second produces the error record. The state also remembers
which txn ids it already forwarded (predictions, feature vectors, joins), so a redelivered
record is not fed to the detectors twice.

Bounds: the card's watermark is the newest event time it saw (a prediction's ``event_ts``, a
label's ``reported_at``, a feature vector's ``ts``); entries older than ``watermark - horizon``
are dropped, and each of the three maps (pending predictions, pending labels, forwarded ids)
holds at most ``max_entries`` (oldest first out). A prediction whose label has not come within
the horizon is dropped unjoined (counted); a redelivery older than the horizon is fed again
(the detector's own bounded dedup, :class:`app.drift.monitor.RecentIds`, is the second net).
The horizon must exceed the label delay (the simulator's default is 7 days).
"""

from __future__ import annotations

import math
from typing import Any, Literal

ErrorKind = Literal["absolute", "log_loss"]


def error_value(label: int, score: float, kind: ErrorKind = "absolute") -> float:
    """|label - score|, or the log loss with the score clipped to [1e-6, 1 - 1e-6].

    >>> error_value(1, 0.8), error_value(0, 0.8)
    (0.19999999999999996, 0.8)
    >>> round(error_value(1, 0.5, "log_loss"), 4)
    0.6931
    """
    if kind == "absolute":
        return abs(label - score)
    p = min(max(score, 1e-6), 1 - 1e-6)
    return -math.log(p) if label else -math.log(1 - p)


class CardJoin:
    """Pending predictions and labels of one card, and the ids already forwarded.

    >>> j = CardJoin(horizon_ms=10_000)
    >>> j.prediction("t1", 1_000, 0.9, "m", "3")
    (True, None)
    >>> j.prediction("t1", 1_000, 0.9, "m", "3")          # redelivered: not fed again
    (False, None)
    >>> j.label("t1", 0, 1_000, 5_000)["error"]
    0.9
    >>> j.label("t1", 0, 1_000, 5_000) is None             # joined once only
    True
    >>> j.label("t2", 1, 2_000, 6_000) is None             # label first, waits
    True
    >>> j.prediction("t2", 2_000, 0.25, "m", "3")[1]["error"]
    0.75
    >>> j.prediction("t3", 3_000, 0.1, "m", "3"); j.features("t4", 30_000)
    (True, None)
    True
    >>> j.pending, j.expired                               # t3 fell out of the horizon
    (0, 1)
    """

    def __init__(self, horizon_ms: int, max_entries: int = 1000,
                 error_kind: ErrorKind = "absolute") -> None:
        self.horizon_ms = horizon_ms
        self.max_entries = max_entries
        self.error_kind = error_kind
        self.preds: dict[str, list[Any]] = {}   # txn -> [score, event_ts, model, version]
        self.labels: dict[str, list[int]] = {}  # txn -> [is_fraud, ts]
        self.done: dict[str, int] = {}          # "p:txn" / "f:txn" / "j:txn" -> event ts
        self.watermark = 0
        self.expired = 0

    @property
    def pending(self) -> int:
        """Predictions waiting for their label."""
        return len(self.preds)

    def prediction(self, txn_id: str, event_ts: int, score: float, model_name: str,
                   model_version: str) -> tuple[bool, dict[str, Any] | None]:
        """``(forward the score, the error record if the label was already here)``."""
        if f"p:{txn_id}" in self.done:
            return False, None
        self.done[f"p:{txn_id}"] = event_ts
        self._advance(event_ts)
        error = None
        if f"j:{txn_id}" not in self.done:
            label = self.labels.pop(txn_id, None)
            if label is None:
                self.preds[txn_id] = [score, event_ts, model_name, model_version]
            else:
                error = self._join(txn_id, label[0], [score, event_ts, model_name, model_version])
        self._prune()
        return True, error

    def label(self, txn_id: str, is_fraud: int, ts: int, reported_at: int
              ) -> dict[str, Any] | None:
        """The error record if the prediction was here, else ``None`` (the label waits)."""
        if f"j:{txn_id}" in self.done or txn_id in self.labels:
            return None
        self._advance(reported_at)
        pred = self.preds.pop(txn_id, None)
        error = None
        if pred is None:
            self.labels[txn_id] = [int(is_fraud), ts]
        else:
            error = self._join(txn_id, int(is_fraud), pred)
        self._prune()
        return error

    def features(self, txn_id: str, ts: int) -> bool:
        """Whether this transaction's feature vector is new (to be fed)."""
        if f"f:{txn_id}" in self.done:
            return False
        self.done[f"f:{txn_id}"] = ts
        self._advance(ts)
        self._prune()
        return True

    def _join(self, txn_id: str, label: int, pred: list[Any]) -> dict[str, Any]:
        score, event_ts, model_name, model_version = pred
        self.done[f"j:{txn_id}"] = event_ts
        return {"txn_id": txn_id, "model_name": model_name, "model_version": model_version,
                "event_ts": event_ts, "label": label, "score": score,
                "error": error_value(label, score, self.error_kind)}

    def _advance(self, ts: int) -> None:
        self.watermark = max(self.watermark, int(ts))

    def _prune(self) -> None:
        cutoff = self.watermark - self.horizon_ms
        for mapping, ts_of in ((self.preds, lambda v: v[1]), (self.labels, lambda v: v[1]),
                               (self.done, lambda v: v)):
            old = [k for k, v in mapping.items() if ts_of(v) < cutoff]
            extra = len(mapping) - len(old) - self.max_entries
            if extra > 0:
                gone = set(old)
                old += [k for k in mapping if k not in gone][:extra]
            if mapping is self.preds:
                self.expired += len(old)
            for k in old:
                del mapping[k]

    # -- state ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"p": self.preds, "l": self.labels, "d": self.done, "w": self.watermark,
                "x": self.expired}

    @classmethod
    def from_dict(cls, data: dict[str, Any], horizon_ms: int, max_entries: int = 1000,
                  error_kind: ErrorKind = "absolute") -> CardJoin:
        """Round trip of :meth:`to_dict`.

        >>> j = CardJoin(100); _ = j.prediction("t", 5, 0.5, "m", "1")
        >>> k = CardJoin.from_dict(j.to_dict(), 100); k.prediction("t", 5, 0.5, "m", "1")
        (False, None)
        """
        j = cls(horizon_ms, max_entries, error_kind)
        j.preds, j.labels, j.done = dict(data["p"]), dict(data["l"]), dict(data["d"])
        j.watermark, j.expired = int(data["w"]), int(data.get("x", 0))
        return j
