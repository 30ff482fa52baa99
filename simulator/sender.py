"""Send transactions and their late labels to Kafka in event-time order, paced or not.

A :class:`Plan` is the pure part: the merged order of transactions (keyed at ``ts``) and labels
(keyed at ``reported_at``, see :mod:`simulator.interleave`) and the send offset of each event.

* :func:`plan_historical`: offsets from event time, compressed ``speed`` times (or all 0).
* :func:`plan_live`: event times replaced by ``start + schedule offset`` (the traffic pattern);
  labels are due ``label_delay`` after their transaction.

:func:`send_plan` then sends slice by slice (:func:`simulator.timing.send_slices`), waiting for
each slice's due time when paced. Delivery guarantee: that of
:class:`~simulator.producer.BatchProducer` (at-least-once, acks=all).

>>> p = plan_historical(np.array([0, 1_000, 2_000]), np.array([1_500, 2_500, 3_500]), speed=1.0)
>>> p.kinds.tolist(), p.due_s.tolist()
([0, 0, 1, 0, 1, 1], [0.0, 1.0, 1.5, 2.0, 2.5, 3.5])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from simulator.interleave import LABEL, TRANSACTION, merge_order, merged_times
from simulator.labels import reported_at
from simulator.producer import BatchProducer
from simulator.serialize import keys, label_values, transaction_values
from simulator.timing import Pacer, historical_offsets, send_slices


@dataclass(frozen=True)
class Plan:
    """Merged events: kind (0 transaction, 1 label), row index in its table, send offset (s)."""

    kinds: np.ndarray
    index: np.ndarray
    due_s: np.ndarray

    def __len__(self) -> int:
        return int(self.kinds.shape[0])


def plan_historical(tx_ts: np.ndarray, label_reported: np.ndarray | None,
                    speed: float | None) -> Plan:
    """Events in (time, kind) order, due ``(time - first time) / speed`` seconds after start."""
    labels = np.zeros(0, np.int64) if label_reported is None else label_reported
    kinds, index = merge_order(tx_ts, labels)
    times = merged_times(tx_ts, labels, kinds, index)
    return Plan(kinds=kinds, index=index, due_s=historical_offsets(times, speed))


def plan_live(offsets_s: np.ndarray, start_ms: int, label_delay_ms: int | None,
              jitter_hours: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray, Plan]:
    """``(ts, reported_at, plan)`` for transactions sent at ``offsets_s`` after ``start_ms``.

    ``label_delay_ms`` None: no labels.
    """
    ts = start_ms + np.round(np.asarray(offsets_s) * 1000.0).astype(np.int64)
    if label_delay_ms is None:
        rep = np.zeros(0, np.int64)
    else:
        rep = reported_at(ts, label_delay_ms / 86_400_000, jitter_hours, seed)
    kinds, index = merge_order(ts, rep)
    due = (merged_times(ts, rep, kinds, index) - start_ms) / 1000.0
    return ts, rep, Plan(kinds=kinds, index=index, due_s=due)


def auto_tick(plan: Plan, switch_rate: float = 8_000.0, base_s: float = 0.005,
              wide_s: float = 0.05) -> float:
    """Slice width for pacing: ``base_s`` (5 ms) up to ``switch_rate`` events/s, else ``wide_s``.

    Narrow slices go one record at a time into the producer's open batches (batched by
    ``linger_ms``; about 25 us per record); above ``switch_rate`` that costs too much CPU, so
    slices of ``wide_s`` are sent as whole closed batches. Events of a slice are sent at its
    start, so at most ``wide_s`` early.

    >>> auto_tick(Plan(np.zeros(1_000), np.zeros(1_000), np.linspace(0, 10, 1_000)))
    0.005
    >>> auto_tick(Plan(np.zeros(1_000), np.zeros(1_000), np.linspace(0, 0.01, 1_000)))
    0.05
    """
    if len(plan) < 2:
        return base_s
    span = float(plan.due_s[-1] - plan.due_s[0])
    rate = len(plan) / span if span > 0 else float("inf")
    return base_s if rate <= switch_rate else wide_s


class Encoded:
    """Kafka keys and JSON values of a table, encoded lazily in chunks and cached.

    Encoding row by row costs a few microseconds per call of Arrow overhead; encoding whole
    chunks once keeps a paced sender (many small slices) as cheap per event as a bulk one.

    >>> t = pa.table({"card_id": ["a", "b", "c"], "v": [1, 2, 3]})
    >>> e = Encoded(t, lambda c: [str(x).encode() for x in c.column("v").to_pylist()], chunk=2)
    >>> e.get(np.array([2, 0]))
    ([b'c', b'a'], [b'3', b'1'])
    """

    def __init__(self, table: pa.Table, encode: Callable[[pa.Table], list[bytes]],
                 chunk: int = 50_000, keep: int = 4) -> None:
        self.table = table
        self.encode = encode
        self.chunk = chunk
        self.keep = keep
        self._cache: dict[int, tuple[list[bytes], list[bytes]]] = {}

    def _chunk(self, number: int) -> tuple[list[bytes], list[bytes]]:
        got = self._cache.get(number)
        if got is None:
            part = self.table.slice(number * self.chunk, self.chunk)
            got = (keys(part), self.encode(part))
            if len(self._cache) >= self.keep:
                self._cache.pop(next(iter(self._cache)))
            self._cache[number] = got
        return got

    def get(self, rows: np.ndarray) -> tuple[list[bytes], list[bytes]]:
        """Keys and values of ``rows`` (row numbers of the table), in that order."""
        out_keys: list[bytes] = []
        out_values: list[bytes] = []
        numbers = rows // self.chunk
        cuts = np.flatnonzero(np.diff(numbers)) + 1
        for part in np.split(rows, cuts):
            number = int(part[0]) // self.chunk
            chunk_keys, chunk_values = self._chunk(number)
            local = (part - number * self.chunk).tolist()
            out_keys.extend([chunk_keys[i] for i in local])
            out_values.extend([chunk_values[i] for i in local])
        return out_keys, out_values


async def send_plan(producer: BatchProducer, plan: Plan, transactions: pa.Table,
                    labels: pa.Table | None, *, tx_topic: str, label_topic: str,
                    paced: bool, max_batch: int = 20_000, tick_s: float | None = None,
                    progress: Callable[[int, int], None] | None = None) -> Pacer:
    """Send every event of ``plan``; ``progress(n_transactions, n_labels)`` after each slice.

    ``tick_s`` None: :func:`auto_tick`. Returns the pacer (its ``max_lag_s`` says how far
    behind schedule the sender fell).
    """
    if tick_s is None:
        tick_s = auto_tick(plan)
    bulk = not paced or tick_s > 0.005
    tx_encoded = Encoded(transactions, transaction_values)
    label_encoded = None if labels is None else Encoded(labels, label_values)
    pacer = Pacer()
    for lo, hi, due in send_slices(plan.due_s, max_batch=max_batch, tick_s=tick_s):
        if paced:
            await pacer.wait_until(due)
        kinds, index = plan.kinds[lo:hi], plan.index[lo:hi]
        tx_rows = index[kinds == TRANSACTION]
        n_labels = 0
        if tx_rows.size:
            await producer.send(tx_topic, *tx_encoded.get(tx_rows), bulk=bulk)
        if label_encoded is not None:
            label_rows = index[kinds == LABEL]
            n_labels = int(label_rows.size)
            if n_labels:
                await producer.send(label_topic, *label_encoded.get(label_rows),
                                    bulk=bulk)
        if progress is not None:
            progress(int(tx_rows.size), n_labels)
    await producer.flush()
    return pacer
