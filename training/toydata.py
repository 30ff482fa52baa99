"""A tiny seeded transaction frame with fraud signal, for tests, doctests and demos.

It is *not* the project simulator (``simulator/``): it only has the columns the
training code needs (``txn_id, card_id, ts, is_fraud`` plus a few feature
columns) and a crude compromised-card process, so that training, export and
registry code can be exercised in seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

DAY_MS = 86_400_000
TOY_FEATURES = ["amount", "night", "amount_ratio", "noise"]


def make_toy_transactions(
    n_cards: int = 300,
    n_days: int = 28,
    *,
    start: str = "2018-07-01",
    txns_per_card_day: float = 0.6,
    compromised_per_day: int = 2,
    seed: int = 7,
) -> pd.DataFrame:
    """Transactions sorted by time, ``txn_id`` in chronological order.

    Each card spends around its own mean amount; every day ``compromised_per_day``
    cards become compromised for 5 days, during which half their transactions
    are frauds with a larger amount, more often at night.

    >>> df = make_toy_transactions(n_cards=50, n_days=3, seed=1)
    >>> list(df.columns)
    ['txn_id', 'card_id', 'ts', 'is_fraud', 'amount', 'night', 'amount_ratio', 'noise']
    >>> bool(df["ts"].is_monotonic_increasing), df["txn_id"].tolist()[:3]
    (True, [0, 1, 2])
    >>> make_toy_transactions(n_cards=50, n_days=3, seed=1).equals(df)
    True
    """
    rng = np.random.default_rng(seed)
    start_ms = int(datetime.fromisoformat(start).replace(tzinfo=UTC).timestamp() * 1000)
    mean_amount = rng.uniform(5, 100, n_cards)
    counts = rng.poisson(txns_per_card_day, size=(n_days, n_cards))
    day = np.repeat(np.repeat(np.arange(n_days), n_cards), counts.ravel())
    card = np.repeat(np.tile(np.arange(n_cards), n_days), counts.ravel())
    n = len(day)
    second = np.clip(rng.normal(43_200, 20_000, n), 0, 86_399).astype(np.int64)
    ts = start_ms + day * DAY_MS + second * 1000 + rng.integers(0, 1000, n)

    compromised = np.zeros((n_days, n_cards), dtype=bool)
    for d in range(n_days):
        for c in rng.choice(n_cards, compromised_per_day, replace=False):
            compromised[d:d + 5, c] = True
    fraud = compromised[day, card] & (rng.random(n) < 0.5)

    amount = np.abs(rng.normal(mean_amount[card], mean_amount[card] / 2))
    amount[fraud] *= rng.uniform(2.0, 6.0, int(fraud.sum()))
    night_draw = rng.random(n)
    night = np.where(fraud, night_draw < 0.5, night_draw < 0.15)
    frame = pd.DataFrame(
        {
            "card_id": card.astype(np.int64),
            "ts": ts.astype(np.int64),
            "is_fraud": fraud.astype(np.int8),
            "amount": np.round(amount, 2),
            "night": night.astype(np.float32),
            "amount_ratio": np.round(amount / mean_amount[card], 4),
            "noise": rng.normal(size=n),
        }
    )
    frame = frame.sort_values("ts", kind="mergesort").reset_index(drop=True)
    frame.insert(0, "txn_id", np.arange(len(frame), dtype=np.int64))
    return frame
