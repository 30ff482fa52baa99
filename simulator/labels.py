"""Late fraud labels: one label record per transaction, reported ``delay`` after its event time.

``reported_at = ts + delay_days`` (the handbook assumes 7 days), plus, optionally, a seeded
jitter uniform in ``[-jitter_hours, +jitter_hours]``; a label is never reported before its
transaction (``reported_at >= ts``).

>>> t = make_labels(["a", "b"], ["C1", "C2"], ["T1", "T1"], [0, 1], [1_000, 2_000],
...                 delay_days=1.0)
>>> t.column("reported_at").to_pylist()
[86401000, 86402000]
>>> t.column_names
['txn_id', 'card_id', 'terminal_id', 'is_fraud', 'ts', 'reported_at']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from simulator.config import DAY_MS
from simulator.rng import stream

LABEL_SCHEMA = pa.schema([
    ("txn_id", pa.string()),
    ("card_id", pa.string()),
    ("terminal_id", pa.string()),
    ("is_fraud", pa.int8()),
    ("ts", pa.int64()),
    ("reported_at", pa.int64()),
])


def reported_at(ts: np.ndarray, delay_days: float = 7.0, jitter_hours: float = 0.0,
                seed: int = 0) -> np.ndarray:
    """When each label becomes known (epoch ms).

    >>> r = reported_at(np.zeros(1_000, np.int64), 7.0, jitter_hours=12.0, seed=1)
    >>> bool(r.min() >= 7 * DAY_MS - 12 * 3_600_000 and r.max() <= 7 * DAY_MS + 12 * 3_600_000)
    True
    """
    if delay_days < 0 or jitter_hours < 0:
        raise ValueError("delay_days and jitter_hours must be >= 0")
    ts = np.asarray(ts, dtype=np.int64)
    out = ts + int(round(delay_days * DAY_MS))
    if jitter_hours > 0:
        jitter = stream(seed, "labels.jitter").uniform(-jitter_hours, jitter_hours, ts.size)
        out = np.maximum(out + (jitter * 3_600_000).astype(np.int64), ts)
    return out


def _strings(values: Any) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values.cast(pa.string())
    return pa.array(values, pa.string())


def make_labels(txn_id: Sequence[Any] | pa.Array, card_id: Sequence[Any] | pa.Array,
                terminal_id: Sequence[Any] | pa.Array, is_fraud: Sequence[int] | np.ndarray,
                ts: Sequence[int] | np.ndarray, *, delay_days: float = 7.0,
                jitter_hours: float = 0.0, seed: int = 0) -> pa.Table:
    """The label table (:data:`LABEL_SCHEMA`) for the given transactions."""
    ts_arr = np.asarray(ts, dtype=np.int64)
    return pa.table({
        "txn_id": _strings(txn_id),
        "card_id": _strings(card_id),
        "terminal_id": _strings(terminal_id),
        "is_fraud": pa.array(np.asarray(is_fraud, dtype=np.int8)),
        "ts": pa.array(ts_arr),
        "reported_at": pa.array(reported_at(ts_arr, delay_days, jitter_hours, seed)),
    }, schema=LABEL_SCHEMA)
