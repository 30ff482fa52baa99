"""Benchmark input: valid transactions as the producers of the field would send them."""

from __future__ import annotations

import json
import random

BASE_TS = 1_522_540_800_000  # 2018-04-01T00:00:00Z


def transactions(n: int, cards: int = 5_000, terminals: int = 10_000, seed: int = 7,
                 invalid_share: float = 0.0) -> list[tuple[bytes, bytes]]:
    """``n`` (key, value) records in event-time order; ``invalid_share`` of them malformed.

    >>> recs = transactions(3, seed=1)
    >>> [json.loads(v)["txn_id"] for _, v in recs]
    ['b-00000000', 'b-00000001', 'b-00000002']
    """
    rng = random.Random(seed)
    out = []
    ts = BASE_TS
    for i in range(n):
        ts += rng.randint(0, 20_000)
        card = rng.randrange(cards)
        record = {
            "txn_id": f"b-{i:08d}", "card_id": f"c{card}",
            "terminal_id": f"t{rng.randrange(terminals)}",
            "amount": round(rng.uniform(1, 200), 2), "currency": "EUR", "ts": ts,
            "lat": round(45 + rng.random() * 5, 5), "lon": round(rng.random() * 8, 5),
            "country": "FR", "mcc": "5411", "channel": "card_present",
        }
        value = json.dumps(record).encode()
        if invalid_share and rng.random() < invalid_share:
            value = value.replace(b'"amount": ', b'"amount": -', 1)
        out.append((f"c{card}".encode(), value))
    return out
