"""One event-time ordered stream of transactions and their late labels.

Transactions are keyed at their event time ``ts``, labels at their ``reported_at``; the
stream is sorted by ``(time, kind)`` with transactions (kind 0) before labels (kind 1) at
equal times and ties otherwise kept in input order (stable). Hence a label never comes before
any transaction whose ``ts`` is at or before the label's ``reported_at``, and in particular
never before its own transaction (``reported_at >= ts``).

>>> kinds, index = merge_order(np.array([0, 10, 20]), np.array([10, 15, 30]))
>>> list(zip(kinds.tolist(), index.tolist()))
[(0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (1, 2)]
>>> list(interleave(["t0", "t1"], ["l0", "l1"], [0, 5], [7, 12]))
[('transaction', 't0'), ('transaction', 't1'), ('label', 'l0'), ('label', 'l1')]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

import numpy as np

TRANSACTION, LABEL = 0, 1
KIND_NAMES = ("transaction", "label")

T = TypeVar("T")
L = TypeVar("L")


def merge_order(tx_times: np.ndarray, label_times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(kinds, index)``: the merged order; ``index`` points into the transactions (kind 0)
    or the labels (kind 1)."""
    tx = np.asarray(tx_times, dtype=np.int64)
    lab = np.asarray(label_times, dtype=np.int64)
    times = np.concatenate([tx, lab])
    kinds = np.concatenate([np.zeros(tx.size, np.int8), np.ones(lab.size, np.int8)])
    index = np.concatenate([np.arange(tx.size), np.arange(lab.size)])
    order = np.lexsort((kinds, times))  # last key primary; lexsort is stable
    return kinds[order], index[order]


def merged_times(tx_times: np.ndarray, label_times: np.ndarray, kinds: np.ndarray,
                 index: np.ndarray) -> np.ndarray:
    """The key time of each merged event (non-decreasing).

    >>> k, i = merge_order(np.array([0, 10]), np.array([5]))
    >>> merged_times(np.array([0, 10]), np.array([5]), k, i).tolist()
    [0, 5, 10]
    """
    tx = np.asarray(tx_times, dtype=np.int64)
    times = np.concatenate([tx, np.asarray(label_times, dtype=np.int64)])
    return times[np.where(kinds == TRANSACTION, index, index + tx.size)]


def interleave(transactions: Sequence[T], labels: Sequence[L], tx_times: Sequence[int],
               label_times: Sequence[int]) -> Iterator[tuple[str, T | L]]:
    """``("transaction", record)`` / ``("label", record)`` pairs in merged order."""
    if len(transactions) != len(tx_times) or len(labels) != len(label_times):
        raise ValueError("each record needs exactly one time")
    kinds, index = merge_order(np.asarray(tx_times), np.asarray(label_times))
    for kind, i in zip(kinds.tolist(), index.tolist(), strict=True):
        if kind == TRANSACTION:
            yield KIND_NAMES[0], transactions[i]
        else:
            yield KIND_NAMES[1], labels[i]
