"""Our fraud scenarios beyond the handbook (realistic profile).

* :func:`cnp_online`: the handbook's scenario 3 frauds (card not present) move to online
  merchants, high-risk MCCs with probability ``cnp_high_risk_share``; time and amount unchanged.
* :func:`impossible_travel` (code 4): a genuine card-present transaction is followed, within
  ``travel_gap_s``, by 1-3 card-present transactions of the same card at a terminal at least
  ``travel_min_km`` away (defaults: >= 500 km within <= 15 min, i.e. >= 2,000 km/h).
* :func:`card_testing` (code 5): a burst of small amounts (< 2) seconds apart on one card at
  one online merchant, then one large amount minutes later at a high-risk online merchant.

All functions return new rows (or relabelled rows) as :class:`~simulator.transactions.Txns`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from simulator.config import DAY_MS, ExtensionConfig, Scenario
from simulator.geo import haversine_km
from simulator.merchants import pick_online
from simulator.transactions import Txns, round_cents
from simulator.world import World


def _positions(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Event index and position within the event of each row of events of ``sizes`` rows.

    >>> [a.tolist() for a in _positions(np.array([2, 0, 3]))]
    [[0, 0, 2, 2, 2], [0, 1, 0, 1, 2]]
    """
    event = np.repeat(np.arange(sizes.shape[0]), sizes)
    starts = np.cumsum(sizes) - sizes
    return event, np.arange(event.shape[0]) - starts[event]


def cnp_online(rng: np.random.Generator, tx: Txns, world: World, cfg: ExtensionConfig) -> Txns:
    """Move scenario-3 frauds to online merchants."""
    assert world.merchants is not None
    rows = np.flatnonzero(tx.scenario == Scenario.COMPROMISED_CARD_CNP)
    terminal = tx.terminal.copy()
    terminal[rows] = pick_online(rng, world.merchants, rows.size, cfg.cnp_high_risk_share)
    return replace(tx, terminal=terminal)


def impossible_travel(rng: np.random.Generator, tx: Txns, world: World, cfg: ExtensionConfig,
                      n_days: int) -> Txns:
    """Code 4: card-present use far away minutes after a genuine card-present transaction."""
    assert world.merchants is not None and world.site is not None
    present = np.flatnonzero(~world.merchants.online)
    candidates = np.flatnonzero((tx.scenario == 0) & ~world.merchants.online[tx.terminal])
    n = min(int(round(cfg.travel_per_day * n_days)), candidates.size)
    if n == 0 or present.size == 0:
        return tx.take(np.zeros(0, dtype=np.int64))
    anchor = rng.choice(candidates, size=n, replace=False)
    home_t = tx.terminal[anchor]

    options = present[rng.integers(0, present.size, (n, 64))]
    site = world.site
    dist = haversine_km(site.lat[home_t][:, None], site.lon[home_t][:, None],
                        site.lat[options], site.lon[options])
    far_enough = dist >= cfg.travel_min_km
    choice = np.where(far_enough.any(axis=1), far_enough.argmax(axis=1), dist.argmax(axis=1))
    far = options[np.arange(n), choice]

    sizes = rng.integers(cfg.travel_burst[0], cfg.travel_burst[1] + 1, n)
    event, pos = _positions(sizes)
    first_gap_s = rng.uniform(*cfg.travel_gap_s, n)
    spacing_s = rng.uniform(60.0, 300.0, n)
    t_ms = tx.t_ms[anchor][event] + ((first_gap_s[event] + pos * spacing_s[event]) * 1000)
    card = tx.customer[anchor][event]
    amount = round_cents(world.customers.mean_amount[card] * rng.uniform(1.0, 3.0, event.size))
    keep = t_ms < n_days * DAY_MS
    return Txns.build(t_ms=t_ms.astype(np.int64)[keep], customer=card[keep],
                      terminal=far[event][keep], amount=amount[keep],
                      scenario=Scenario.IMPOSSIBLE_TRAVEL)


def card_testing(rng: np.random.Generator, world: World, cfg: ExtensionConfig,
                 n_days: int) -> Txns:
    """Code 5: a burst of small amounts on one card, then a large amount."""
    assert world.merchants is not None
    n = int(round(cfg.testing_per_day * n_days))
    start_ms = rng.integers(0, n_days * DAY_MS, n)
    card = rng.integers(0, world.customers.n, n)
    sizes = rng.integers(cfg.testing_small[0], cfg.testing_small[1] + 1, n)
    small_site = pick_online(rng, world.merchants, n, 0.3)
    large_site = pick_online(rng, world.merchants, n, 0.8)

    event, pos = _positions(sizes)
    gaps_s = rng.uniform(*cfg.testing_gap_s, event.size)
    gaps_s[pos == 0] = 0.0
    offsets_s = np.cumsum(gaps_s)
    offsets_s -= offsets_s[np.cumsum(sizes) - sizes][event]  # restart at 0 for each event
    small_amount = rng.uniform(*cfg.testing_small_amount, event.size)
    small_amount = np.minimum(round_cents(small_amount), cfg.testing_small_amount[1])

    last_s = offsets_s[np.cumsum(sizes) - 1]
    large_t = start_ms + ((last_s + rng.uniform(*cfg.testing_large_delay_s, n)) * 1000)
    large_amount = round_cents(rng.uniform(*cfg.testing_large_amount, n))

    t_ms = np.concatenate([start_ms[event] + offsets_s * 1000, large_t]).astype(np.int64)
    rows = Txns.build(
        t_ms=t_ms, customer=np.concatenate([card[event], card]),
        terminal=np.concatenate([small_site[event], large_site]),
        amount=np.concatenate([small_amount, large_amount]), scenario=Scenario.CARD_TESTING)
    return rows.take(rows.t_ms < n_days * DAY_MS)
