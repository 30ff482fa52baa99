"""Every drift signal of one model: detectors, txn_id dedup, cooldown, ``model-retrain`` records.

Signals are ``score`` (the champion's scores), ``error`` (|label - score| once a label has
arrived, see :mod:`app.drift.join`) and any feature of the spec by name (fed ``signed_log1p`` of
the value: see :func:`app.drift.detector.signed_log1p`). ``score`` and ``error`` describe one
model version: when the champion's version changes they start empty, and errors of another
version's predictions (labels arrive days late) are skipped, so a promotion does not look like
drift and start a retrain loop. Feature signals describe the traffic and are kept.

Cooldown: a detection within ``cooldown_s`` (event time) of the last emitted one, on any signal
of the model, is counted but emits nothing, so one drift that moves the score, two features
and later the error stream gives one retrain event.

Dedup: the last ``dedup_capacity`` txn ids fed per signal family (predictions, features,
errors) are remembered (FIFO; the state holds at most ``3 * dedup_capacity`` ids), so a
redelivered record within that distance is not fed twice. The agent adds the per-card txn_id
dedup of :mod:`app.drift.join` and an offset high-water mark in front of it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from app.drift.detector import Detection, SignalDetector
from config.monitoring import MODEL_SIGNALS
from contracts.records import RetrainEvent


class RecentIds:
    """A bounded FIFO set of ids.

    >>> r = RecentIds(2)
    >>> r.add("a"), r.add("b"), r.add("a"), r.add("c"), r.add("a")
    (True, True, False, True, True)
    >>> list(r.ids)
    ['c', 'a']
    """

    def __init__(self, capacity: int, ids: Iterable[str] = ()) -> None:
        self.capacity = capacity
        self.ids: OrderedDict[str, None] = OrderedDict((i, None) for i in ids)

    def add(self, key: str) -> bool:
        """Remember ``key``; ``False`` if it was already there."""
        if key in self.ids:
            return False
        self.ids[key] = None
        while len(self.ids) > self.capacity:
            self.ids.popitem(last=False)
        return True


@dataclass(frozen=True)
class Outcome:
    """One detection and whether it produced a retrain event (``record``)."""

    detection: Detection
    record: dict[str, Any] | None


def idempotency_key(model_name: str, model_version: str, d: Detection) -> str:
    """Stable across redelivery: the same events replayed on the restored state detect at the
    same txn with the same count.

    >>> d = Detection("score", 2048, 2048, 128, 0.1, 0.2, 0.3, 64, 5, "t9")
    >>> key = idempotency_key("m", "3", d)
    >>> key == idempotency_key("m", "3", d), len(key), key == idempotency_key("m", "4", d)
    (True, 32, False)
    """
    raw = f"{model_name}|{model_version}|{d.signal}|{d.txn_id}|{d.n_seen}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


class ModelMonitor:
    """Drift detectors of one model and the retrain events they trigger.

    >>> import random
    >>> rng = random.Random(1)
    >>> m = ModelMonitor("fraud-lgbm", ["score"], delta=0.002, clock=32, cooldown_s=3600)
    >>> out = []
    >>> for i in range(6000):
    ...     s = rng.betavariate(1, 30) if i < 3000 else rng.betavariate(1, 10)
    ...     out += m.prediction(f"t{i}", "7", i * 1000, s)
    >>> [(o.detection.txn_id, o.record is not None) for o in out]
    [('t3135', True)]
    >>> rec = out[0].record
    >>> rec["signal"], rec["model_version"], rec["evidence"]["n_seen"], rec["event_ts"]
    ('score', '7', 3136, 3135000)
    """

    def __init__(self, model_name: str, signals: Iterable[str], delta: float = 0.002,
                 clock: int = 32, cooldown_s: float = 86_400.0, dedup_capacity: int = 4096
                 ) -> None:
        self.model_name = model_name
        self.signals = list(signals)
        self.delta, self.clock, self.cooldown_s = delta, clock, cooldown_s
        self.dedup_capacity = dedup_capacity
        self.detectors = {s: SignalDetector(s, delta, clock, None if s in MODEL_SIGNALS
                                            else "log1p") for s in self.signals}
        self.seen = {kind: RecentIds(dedup_capacity) for kind in ("p", "f", "e")}
        self.model_version: str | None = None
        self.last_emitted_ts: int | None = None
        self.suppressed = 0
        self.skipped_errors = 0

    # -- inputs --------------------------------------------------------------------------------
    def prediction(self, txn_id: str, model_version: str, event_ts: int, score: float
                   ) -> list[Outcome]:
        """A champion prediction: feeds the score signal."""
        if not self.seen["p"].add(txn_id):
            return []
        self._set_version(model_version)
        return self._feed({"score": score}, event_ts, txn_id, skip=())

    def features(self, txn_id: str, event_ts: int, features: dict[str, float]) -> list[Outcome]:
        """The feature vector of a transaction (from the enriched topic)."""
        if not self.seen["f"].add(txn_id):
            return []
        return self._feed(features, event_ts, txn_id, skip=MODEL_SIGNALS)

    def error(self, txn_id: str, model_version: str, event_ts: int, error: float
              ) -> list[Outcome]:
        """The error of a labelled prediction; only the current champion version counts."""
        if self.model_version is not None and model_version != self.model_version:
            self.skipped_errors += 1
            return []
        if not self.seen["e"].add(txn_id):
            return []
        self._set_version(model_version)
        return self._feed({"error": error}, event_ts, txn_id, skip=())

    # -- internals -----------------------------------------------------------------------------
    def _set_version(self, version: str) -> None:
        if version == self.model_version:
            return
        if self.model_version is not None:
            for signal in MODEL_SIGNALS:
                if signal in self.detectors:
                    self.detectors[signal].reset()
        self.model_version = version

    def _feed(self, values: dict[str, float], event_ts: int, txn_id: str,
              skip: Iterable[str]) -> list[Outcome]:
        out = []
        for signal, det in self.detectors.items():
            if signal in skip or signal not in values or values[signal] is None:
                continue
            detection = det.update(float(values[signal]), event_ts, txn_id)
            if detection is not None:
                out.append(Outcome(detection, self._record(detection)))
        return out

    def _record(self, d: Detection) -> dict[str, Any] | None:
        if (self.last_emitted_ts is not None
                and d.event_ts < self.last_emitted_ts + self.cooldown_s * 1000):
            self.suppressed += 1
            return None
        self.last_emitted_ts = d.event_ts
        version = self.model_version or ""
        return RetrainEvent(
            model_name=self.model_name, model_version=version, detector="adwin",
            signal=d.signal, event_ts=d.event_ts, txn_id=d.txn_id,
            evidence={**d.evidence(), "delta": self.delta, "clock": self.clock,
                      "transform": self.detectors[d.signal].transform},
            idempotency_key=idempotency_key(self.model_name, version, d),
        ).to_dict()

    # -- state ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "model_version": self.model_version,
                "last_emitted_ts": self.last_emitted_ts, "suppressed": self.suppressed,
                "skipped_errors": self.skipped_errors,
                "detectors": {s: d.to_dict() for s, d in self.detectors.items()},
                "seen": {k: list(r.ids) for k, r in self.seen.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, model_name: str, signals: Iterable[str],
                  delta: float, clock: int, cooldown_s: float, dedup_capacity: int = 4096
                  ) -> ModelMonitor:
        """The stored monitor under the current configuration: detectors of signals no longer
        configured are dropped, new ones start empty, changed delta/clock start empty."""
        m = cls(model_name, signals, delta, clock, cooldown_s, dedup_capacity)
        if not data:
            return m
        m.model_version = data.get("model_version")
        m.last_emitted_ts = data.get("last_emitted_ts")
        m.suppressed = int(data.get("suppressed", 0))
        m.skipped_errors = int(data.get("skipped_errors", 0))
        for signal, stored in data.get("detectors", {}).items():
            if signal in m.detectors and (stored["delta"], stored["clock"]) == (delta, clock):
                m.detectors[signal] = SignalDetector.from_dict(stored)
        for kind, ids in data.get("seen", {}).items():
            m.seen[kind] = RecentIds(dedup_capacity, ids[-dedup_capacity:])
        return m
