"""Fixed-width, zero-padded string identifiers built in one vectorised pass (no Python loop).

``txn_id`` is the zero-padded chronological index (optionally prefixed by a run id), so ids
sort like the events and the same seed always gives the same ids. Card and terminal ids are
``C`` / ``T`` plus the zero-padded profile index.

>>> index_ids(np.array([0, 7, 42]), 4, "run-").to_pylist()
['run-0000', 'run-0007', 'run-0042']
>>> entity_ids(np.array([3, 0]), 5_000, "C").to_pylist()
['C00003', 'C00000']
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def index_ids(index: np.ndarray, width: int, prefix: str = "") -> pa.Array:
    """``prefix`` + ``index`` zero-padded to ``width`` digits, as an Arrow string array."""
    index = np.asarray(index, dtype=np.int64)
    if index.size and (index.min() < 0 or index.max() >= 10**width):
        raise ValueError(f"indices must be in [0, 10**{width})")
    head = np.frombuffer(prefix.encode("utf-8"), dtype=np.uint8)
    row = head.size + width
    chars = np.empty((index.size, row), dtype=np.uint8)
    chars[:, :head.size] = head
    rest = index.copy()
    for col in range(row - 1, head.size - 1, -1):
        rest, digit = np.divmod(rest, 10)
        chars[:, col] = digit + 48
    offsets = np.arange(index.size + 1, dtype=np.int64) * row
    array = pa.Array.from_buffers(pa.large_string(), index.size,
                                  [None, pa.py_buffer(offsets), pa.py_buffer(chars.tobytes())])
    return array.cast(pa.string())


def id_width(n: int, minimum: int = 5) -> int:
    """Digits needed for indices ``0 .. n-1`` (at least ``minimum``).

    >>> id_width(5_000), id_width(1_000_000)
    (5, 6)
    """
    return max(minimum, len(str(max(n - 1, 0))))


def entity_ids(index: np.ndarray, n: int, prefix: str) -> pa.Array:
    """Ids of entities (cards, terminals) out of ``n``, one per row of ``index``."""
    dictionary = index_ids(np.arange(n), id_width(n), prefix)
    return dictionary.take(pa.array(np.asarray(index, dtype=np.int64)))
