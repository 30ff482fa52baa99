"""One River ADWIN per signal, with the evidence of a detection and a serialisable state.

River's :class:`river.drift.ADWIN` keeps its window in a Rust object
(``river._river_rust.drift.AdaptiveWindowing``). ``pickle`` of the whole detector works, but
unpickling a changelog record would run whatever code a record names, so the state is not
stored as a pickle: :meth:`SignalDetector.to_dict` keeps the Rust object's own serialised bytes
(``__getstate__``: its buckets, totals and variances; ~1-2 kB) in base64 next to the
parameters, and :meth:`SignalDetector.from_dict` builds a fresh object with the same parameters
and ``__setstate__``-s those bytes. A restored detector takes exactly the decisions the
original would have taken (``tests/unit/test_drift_detector.py``). The bytes are River's
internal format: the state records the River version, and a state written by another version is
not loaded (the detector starts empty and logs why) rather than misread.

River 0.26's wrapper empties the whole window on the update that follows a detection; the
evidence is therefore read at the detection itself: the window before the update (``width``
items, mean ``mean``) and the window ADWIN kept (the recent sub-window). The part it dropped is
the "before" population, the part it kept the "after" one. ADWIN cuts at bucket boundaries
(exponentially growing buckets), so the kept window can hold many old values and understate the
change; the evidence therefore also gives ``recent_mean``, the mean of the last ``recent``
values (64 by default), the size of the change as it stands at detection.
"""

from __future__ import annotations

import base64
import logging
import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import river
from river._river_rust.drift import AdaptiveWindowing
from river.drift import ADWIN

log = logging.getLogger(__name__)


def signed_log1p(x: float) -> float:
    """``sign(x) * log(1 + |x|)``: heavy-tailed feature values (amounts, counts) squeezed so
    that ADWIN's bound, which assumes a bounded spread, does not fire on single outliers.

    >>> signed_log1p(0.0), round(signed_log1p(99.0), 4), round(signed_log1p(-99.0), 4)
    (0.0, 4.6052, -4.6052)
    """
    return math.copysign(math.log1p(abs(x)), x)


@dataclass(frozen=True)
class Detection:
    """What ADWIN saw when it signalled a change on one signal."""

    signal: str
    n_seen: int
    width_before: int
    width_after: int
    mean_before: float
    mean_after: float
    recent_mean: float
    recent_n: int
    event_ts: int
    txn_id: str

    def evidence(self) -> dict[str, Any]:
        out = asdict(self)
        del out["signal"], out["event_ts"], out["txn_id"]
        return out


class SignalDetector:
    """ADWIN on one signal: counts what it saw, reports a :class:`Detection` on change.

    ``delta`` and ``clock`` are ADWIN's (smaller delta: fewer false alarms, later detection;
    ``clock``: check for a change every that many items).

    >>> import random
    >>> rng = random.Random(12345)
    >>> det = SignalDetector("score", delta=0.002, clock=32)
    >>> stream = [rng.random() * 0.2 for _ in range(2000)] + [
    ...     0.3 + rng.random() * 0.2 for _ in range(2000)]
    >>> hits = [d for i, x in enumerate(stream) if (d := det.update(x, i, f"t{i}"))]
    >>> [(h.txn_id, h.width_before, h.width_after) for h in hits]
    [('t2047', 2048, 128)]
    >>> h = hits[0]
    >>> round(h.mean_before, 3), round(h.mean_after, 3), round(h.recent_mean, 3)
    (0.098, 0.209, 0.333)

    The change was at index 2000: detected 47 items later (the first check, ``clock=32``, after
    enough new items); ADWIN kept the last 128 (its bucket granularity: 80 old, 48 new).
    """

    def __init__(self, signal: str, delta: float = 0.002, clock: int = 32,
                 transform: str | None = None, recent: int = 64) -> None:
        self.signal = signal
        self.recent: deque[float] = deque(maxlen=recent)
        self.transform = transform
        self.adwin = ADWIN(delta=delta, clock=clock)
        self.n_seen = 0
        self.n_detections = 0

    @property
    def width(self) -> int:
        """Items in ADWIN's current window (0 right after a detection is consumed)."""
        return 0 if self.adwin.drift_detected else int(self.adwin.width)

    @property
    def mean(self) -> float:
        """Mean of the current window (of the transformed values)."""
        return float(self.adwin.estimation)

    def update(self, value: float, event_ts: int, txn_id: str) -> Detection | None:
        """Feed one value; a :class:`Detection` when ADWIN signals a change, else ``None``."""
        if not math.isfinite(value):
            return None
        x = signed_log1p(value) if self.transform == "log1p" else float(value)
        reset = self.adwin.drift_detected  # River empties the window on this update
        width = 0 if reset else int(self.adwin.width)
        total = 0.0 if reset else float(self.adwin.total)
        self.adwin.update(x)
        self.recent.append(x)
        self.n_seen += 1
        if not self.adwin.drift_detected:
            return None
        self.n_detections += 1
        kept = int(self.adwin.width)
        kept_total = float(self.adwin.total)
        dropped = width + 1 - kept
        before = (total + x - kept_total) / dropped if dropped else float("nan")
        return Detection(self.signal, self.n_seen, width + 1, kept, before,
                         kept_total / kept if kept else float("nan"),
                         sum(self.recent) / len(self.recent), len(self.recent), int(event_ts),
                         txn_id)

    def reset(self) -> None:
        """Forget the window (e.g. a new model version: its scores are another population)."""
        self.adwin = ADWIN(delta=self.adwin.delta, clock=self.adwin.clock)
        self.recent.clear()
        self.n_seen = 0

    # -- state ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able state (see the module docstring for why not a pickle)."""
        raw = self.adwin._helper.__getstate__()
        return {"signal": self.signal, "delta": self.adwin.delta, "clock": self.adwin.clock,
                "transform": self.transform, "n_seen": self.n_seen,
                "n_detections": self.n_detections, "detected": self.adwin.drift_detected,
                "recent": list(self.recent), "recent_max": self.recent.maxlen,
                "river": river.__version__, "adwin": base64.b64encode(raw).decode()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SignalDetector:
        """The detector :meth:`to_dict` described (empty if River's format changed).

        >>> d = SignalDetector("score", clock=1)
        >>> for i in range(50):
        ...     _ = d.update(0.1 * (i % 3), i, f"t{i}")
        >>> e = SignalDetector.from_dict(d.to_dict())
        >>> (e.width, e.n_seen, round(e.mean, 6)) == (d.width, d.n_seen, round(d.mean, 6))
        True
        """
        det = cls(data["signal"], data["delta"], data["clock"], data.get("transform"),
                  int(data.get("recent_max", 64)))
        det.n_detections = int(data.get("n_detections", 0))
        if data.get("river") != river.__version__:
            log.warning("drift state of %s was written by River %s, this is %s: starting empty",
                        det.signal, data.get("river"), river.__version__)
            return det
        helper = AdaptiveWindowing(*det.adwin._helper.__getnewargs__())
        helper.__setstate__(base64.b64decode(data["adwin"]))
        det.adwin._helper = helper
        det.adwin._drift_detected = bool(data.get("detected", False))
        det.n_seen = int(data["n_seen"])
        det.recent.extend(data.get("recent", []))
        return det
