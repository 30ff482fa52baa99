"""The handbook's three fraud scenarios, applied in its order (a later scenario relabels).

1. **Large amount**: every transaction with amount > ``large_amount`` is fraud.
2. **Compromised terminals**: each day ``terminals_per_day`` terminals are drawn; all their
   transactions from that day through the next ``terminal_window_days`` days are fraud.
3. **Compromised cards (CNP)**: each day ``cards_per_day`` customers are drawn; among their
   transactions in the ``card_window_days`` days from that day, ``floor(n x share)`` drawn at
   random get their amount multiplied by ``card_amount_factor`` and are fraud. A transaction
   drawn by two overlapping compromises is multiplied twice, as in the handbook.

Draws are made for every day of the period (the handbook's loop stops one day short; the
difference is one day of draws out of 183). The draws are returned for analysis and tests.

>>> from simulator.transactions import Txns
>>> tx = Txns.build(np.array([0, 1, 2]) * 86_400_000 + 5, np.array([0, 0, 1]),
...                 np.array([0, 1, 1]), np.array([10.0, 250.0, 20.0]))
>>> large_amount(tx, 220.0).scenario.tolist()
[0, 1, 0]
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from simulator.config import HandbookParams, Scenario
from simulator.rng import sample_per_day, stream
from simulator.transactions import Txns, round_cents


@dataclass(frozen=True)
class FraudDraws:
    """Which terminals (scenario 2) and customers (scenario 3) were compromised each day."""

    terminals: np.ndarray  # (n_days, terminals_per_day)
    customers: np.ndarray  # (n_days, cards_per_day)


def _relabel(tx: Txns, mask: np.ndarray, code: Scenario, amount: np.ndarray | None = None) -> Txns:
    return replace(
        tx,
        amount=tx.amount if amount is None else amount,
        is_fraud=np.where(mask, np.int8(1), tx.is_fraud).astype(np.int8),
        scenario=np.where(mask, np.int8(code), tx.scenario).astype(np.int8),
    )


def large_amount(tx: Txns, threshold: float) -> Txns:
    """Scenario 1: amount strictly above ``threshold``."""
    return _relabel(tx, tx.amount > threshold, Scenario.LARGE_AMOUNT)


def window_mask(draws: np.ndarray, n_entities: int, n_days: int, window: int) -> np.ndarray:
    """``(n_entities, n_days)`` booleans: entity compromised on day d by a draw in (d-window, d].

    >>> window_mask(np.array([[1], [0], [1]]), 2, 5, 2).astype(int).tolist()
    [[0, 1, 1, 0, 0], [1, 1, 1, 1, 0]]
    """
    delta = np.zeros((n_entities, n_days + 1), dtype=np.int32)
    days = np.repeat(np.arange(draws.shape[0]), draws.shape[1])
    ents = draws.ravel()
    np.add.at(delta, (ents, days), 1)
    np.add.at(delta, (ents, np.minimum(days + window, n_days)), -1)
    return np.cumsum(delta, axis=1)[:, :n_days] > 0


def compromised_terminals(tx: Txns, draws: np.ndarray, n_terminals: int, n_days: int,
                          window: int) -> Txns:
    """Scenario 2: every transaction on a terminal while it is compromised."""
    active = window_mask(draws, n_terminals, n_days, window)
    return _relabel(tx, active[tx.terminal, tx.day], Scenario.COMPROMISED_TERMINAL)


def compromised_cards(rng: np.random.Generator, tx: Txns, draws: np.ndarray, n_days: int,
                      params: HandbookParams) -> Txns:
    """Scenario 3: a random share of each compromised card's transactions in its window."""
    order = np.lexsort((tx.t_ms, tx.customer))  # by customer, then time
    key = tx.customer[order].astype(np.int64) * (n_days + 1) + tx.day[order]
    hits = np.zeros(len(tx), dtype=np.int64)
    for day in range(draws.shape[0]):
        for cust in draws[day]:
            base = int(cust) * (n_days + 1)
            lo = np.searchsorted(key, base + day, side="left")
            hi = np.searchsorted(key, base + min(day + params.card_window_days, n_days),
                                 side="left")
            k = int((hi - lo) * params.card_fraud_share)
            if k:
                hits[order[lo + rng.choice(hi - lo, size=k, replace=False)]] += 1
    picked = hits > 0
    amount = tx.amount.copy()
    amount[picked] = round_cents(amount[picked] * params.card_amount_factor ** hits[picked])
    return _relabel(tx, picked, Scenario.COMPROMISED_CARD_CNP, amount=amount)


def apply_handbook_frauds(
    seed: int, tx: Txns, n_customers: int, n_terminals: int, params: HandbookParams
) -> tuple[Txns, FraudDraws]:
    """Scenarios 1, 2 and 3 in the handbook's order, each from its own random stream."""
    n_days = params.n_days
    draws = FraudDraws(
        terminals=sample_per_day(stream(seed, "fraud.terminals"), n_days, n_terminals,
                                 params.terminals_per_day),
        customers=sample_per_day(stream(seed, "fraud.customers"), n_days, n_customers,
                                 params.cards_per_day),
    )
    tx = large_amount(tx, params.large_amount)
    tx = compromised_terminals(tx, draws.terminals, n_terminals, n_days,
                               params.terminal_window_days)
    tx = compromised_cards(stream(seed, "fraud.card_picks"), tx, draws.customers, n_days, params)
    return tx, draws
