"""Benchmark input: valid transactions as the producers of the field would send them."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator

BASE_TS = 1_522_540_800_000  # 2018-04-01T00:00:00Z


def stream(cards: int = 5_000, terminals: int = 10_000, seed: int = 7,
           invalid_share: float = 0.0) -> Iterator[tuple[bytes, bytes]]:
    """Endless (key, value) records in event-time order (see :func:`transactions`)."""
    rng = random.Random(seed)
    ts = BASE_TS
    i = 0
    while True:
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
        yield f"c{card}".encode(), value
        i += 1


def transactions(n: int, cards: int = 5_000, terminals: int = 10_000, seed: int = 7,
                 invalid_share: float = 0.0) -> list[tuple[bytes, bytes]]:
    """``n`` (key, value) records in event-time order; ``invalid_share`` of them malformed.

    >>> recs = transactions(3, seed=1)
    >>> [json.loads(v)["txn_id"] for _, v in recs]
    ['b-00000000', 'b-00000001', 'b-00000002']
    >>> recs == list(itertools.islice(stream(seed=1), 3))
    True
    """
    return list(itertools.islice(stream(cards, terminals, seed, invalid_share), n))
