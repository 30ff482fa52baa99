"""Traffic patterns: a target rate (events/s) over time, and a schedule that follows it.

Patterns, for a base rate ``tps``:

* ``constant``: ``tps``.
* ``wave``: ``tps x (1 + amplitude x sin(2 pi t / period_s))``.
* ``spike``: ``tps``, except in the last ``spike_duration_s`` of every ``spike_every_s``
  seconds, where it is ``spike_factor x tps``.
* ``random``: ``tps x m(t)``, ``m`` a seeded random walk on the log scale, mean-reverting
  towards 1 (AR(1), one step per ``walk_step_s``) and clipped to ``walk_bounds``.

:func:`schedule` places N events so that the count in any interval equals the integral of the
rate over it (to within one event): event ``i`` is at ``Lambda^-1(i)``, where ``Lambda`` is the
cumulative rate. Deterministic pacing, not Poisson arrivals: the produced shape is the
pattern's, with no sampling noise.

>>> schedule(TrafficPattern("constant", tps=4.0), count=5).tolist()
[0.0, 0.25, 0.5, 0.75, 1.0]
>>> p = TrafficPattern("spike", tps=10.0, spike_every_s=10.0, spike_duration_s=1.0)
>>> p.rate(np.array([0.5, 9.5])).tolist()
[10.0, 50.0]
>>> len(schedule(p, duration_s=10.0))  # 9 s x 10/s + 1 s x 50/s
140
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from simulator.rng import stream

PatternKind = Literal["constant", "wave", "spike", "random"]
PATTERNS: tuple[str, ...] = ("constant", "wave", "spike", "random")
_WALK_BLOCK = 4096


@dataclass(frozen=True)
class TrafficPattern:
    """A rate over time (events/s); see the module docstring for each kind."""

    kind: PatternKind = "constant"
    tps: float = 100.0
    period_s: float = 60.0
    amplitude: float = 0.5
    spike_every_s: float = 30.0
    spike_duration_s: float = 3.0
    spike_factor: float = 5.0
    walk_step_s: float = 1.0
    walk_sigma: float = 0.1
    walk_revert: float = 0.05
    walk_bounds: tuple[float, float] = (0.2, 5.0)
    seed: int = 0
    _walk: list[np.ndarray] = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in PATTERNS:
            raise ValueError(f"unknown pattern {self.kind!r}; expected one of {PATTERNS}")
        if not self.tps > 0:
            raise ValueError(f"tps must be > 0, got {self.tps}")
        if not 0 <= self.amplitude < 1:
            raise ValueError("amplitude must be in [0, 1) so that the rate stays positive")
        if not (0 < self.spike_duration_s <= self.spike_every_s and self.spike_factor > 0):
            raise ValueError("need 0 < spike_duration_s <= spike_every_s and spike_factor > 0")
        if not (self.period_s > 0 and self.walk_step_s > 0 and 0 < self.walk_bounds[0]
                <= 1 <= self.walk_bounds[1]):
            raise ValueError("need period_s > 0, walk_step_s > 0, walk_bounds around 1")

    def rate(self, t: np.ndarray | float) -> np.ndarray:
        """Target events per second at times ``t`` (seconds since the start)."""
        t = np.asarray(t, dtype=np.float64)
        if self.kind == "constant":
            return np.full(t.shape, self.tps)
        if self.kind == "wave":
            return self.tps * (1 + self.amplitude * np.sin(2 * np.pi * t / self.period_s))
        if self.kind == "spike":
            phase = np.mod(t, self.spike_every_s)
            burst = phase >= self.spike_every_s - self.spike_duration_s
            return np.where(burst, self.tps * self.spike_factor, self.tps)
        step = np.floor(np.maximum(t, 0) / self.walk_step_s).astype(np.int64)
        return self.tps * self._multipliers(int(step.max(initial=0)) + 1)[step]

    def _multipliers(self, n: int) -> np.ndarray:
        """The random walk's first ``n`` multipliers (extended block by block, cached)."""
        while len(self._walk) * _WALK_BLOCK < n:
            block = len(self._walk)
            eps = stream(self.seed, f"pattern.walk.{block}").standard_normal(_WALK_BLOCK)
            x = float(np.log(self._walk[-1][-1])) if self._walk else 0.0
            lo, hi = np.log(self.walk_bounds[0]), np.log(self.walk_bounds[1])
            out = np.empty(_WALK_BLOCK)
            keep = 1.0 - self.walk_revert
            for i, e in enumerate(eps.tolist()):
                x = min(max(keep * x + self.walk_sigma * e, lo), hi)
                out[i] = x
            self._walk.append(np.exp(out))
        return np.concatenate(self._walk)[:n]

    def resolution(self) -> float:
        """Grid step (s) fine enough to resolve the pattern's features."""
        if self.kind == "wave":
            return min(self.period_s / 400, 0.05)
        if self.kind == "spike":
            return min(self.spike_duration_s / 40, 0.05)
        if self.kind == "random":
            return min(self.walk_step_s / 20, 0.05)
        return 0.05


def cumulative(pattern: TrafficPattern, horizon_s: float,
               resolution_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Grid times and the cumulative expected count ``Lambda`` at each (midpoint rule)."""
    step = resolution_s or pattern.resolution()
    step = max(step, horizon_s / 5_000_000)
    n = max(1, int(np.ceil(horizon_s / step)))
    t = np.linspace(0.0, n * step, n + 1)
    lam = np.concatenate([[0.0], np.cumsum(pattern.rate(t[:-1] + step / 2) * step)])
    return t, lam


def schedule(pattern: TrafficPattern, *, count: int | None = None,
             duration_s: float | None = None, resolution_s: float | None = None) -> np.ndarray:
    """Offsets (s from the start) of ``count`` events, or of all events in ``duration_s``.

    Exactly one of ``count`` and ``duration_s``. Offsets (rounded to microseconds) are
    non-decreasing and start at 0.
    """
    if (count is None) == (duration_s is None):
        raise ValueError("give exactly one of count and duration_s")
    if duration_s is not None:
        if duration_s <= 0:
            return np.zeros(0)
        t, lam = cumulative(pattern, duration_s, resolution_s)
        count = int(np.ceil(lam[-1] - 1e-9))  # events i = 0, 1, ... with Lambda^-1(i) < D
        offsets = np.interp(np.arange(count), lam, t)
        return np.minimum(np.round(offsets, 6), np.nextafter(duration_s, 0))
    assert count is not None
    if count <= 0:
        return np.zeros(0)
    horizon = max(count / pattern.tps, pattern.resolution()) * 1.25
    t, lam = cumulative(pattern, horizon, resolution_s)
    while lam[-1] < count - 1:
        horizon *= 2
        t, lam = cumulative(pattern, horizon, resolution_s)
    return np.round(np.interp(np.arange(count), lam, t), 6)  # microseconds
