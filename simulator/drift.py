"""Drift injection: from a chosen time on, a new fraud pattern appears (code 6).

The pattern (see :class:`~simulator.config.DriftConfig`): each day from the first midnight at
or after ``start_ms``, on average ``cards_per_day`` cards are taken over; each makes a burst of
``burst`` online purchases of ordinary amounts during ``night_hours`` at merchants of another
country than the card's home country. None of the handbook scenarios produce that shape, so a
model trained before the start misses it, and its error rate (once labels arrive) and the
``night`` / ``foreign country`` feature distributions shift.
"""

from __future__ import annotations

import numpy as np

from simulator.config import DAY_MS, DriftConfig, Scenario
from simulator.transactions import Txns, round_cents
from simulator.world import World


def first_drift_day(drift_start_ms: int, sim_start_ms: int) -> int:
    """Index of the first simulated day (midnight at or after the drift start).

    >>> first_drift_day(1_522_540_800_000 + DAY_MS // 2, 1_522_540_800_000)
    1
    """
    return max(0, -(-(drift_start_ms - sim_start_ms) // DAY_MS))


def drift_pattern(rng: np.random.Generator, world: World, cfg: DriftConfig, sim_start_ms: int,
                  n_days: int) -> Txns:
    """Rows of the drift pattern (empty when the start is after the simulated period)."""
    assert world.merchants is not None and world.site is not None and world.home is not None
    first = first_drift_day(cfg.start_ms, sim_start_ms)
    n = int(round(cfg.cards_per_day * max(n_days - first, 0)))
    if n == 0:
        return Txns.build(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32),
                          np.zeros(0), scenario=Scenario.DRIFT_NIGHT_TAKEOVER)
    day = rng.integers(first, n_days, n)
    card = rng.integers(0, world.customers.n, n)
    sizes = rng.integers(cfg.burst[0], cfg.burst[1] + 1, n)
    event = np.repeat(np.arange(n), sizes)
    rows = event.size

    lo_h, hi_h = cfg.night_hours
    t_ms = day[event] * DAY_MS + (rng.uniform(lo_h, hi_h, rows) * 3_600_000).astype(np.int64)
    online = np.flatnonzero(world.merchants.online)
    if online.size == 0:
        online = np.arange(world.terminals.n)
    options = online[rng.integers(0, online.size, (rows, 16))]
    home = world.home.country[card[event]]
    foreign = world.site.country[options] != home[:, None]
    pick = np.where(foreign.any(axis=1), foreign.argmax(axis=1), 0)
    terminal = options[np.arange(rows), pick]
    amount = round_cents(rng.uniform(*cfg.amount, rows))
    return Txns.build(t_ms=t_ms, customer=card[event], terminal=terminal, amount=amount,
                      scenario=Scenario.DRIFT_NIGHT_TAKEOVER)
