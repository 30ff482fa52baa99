"""The state log: writing segments, rebuilding card state from them, feeding the terminal view.

One topic, ``<app_id>-state-log``, with the partitions of the input topics: partition ``p``
holds the segments (:mod:`app.pipeline.segments`) of whoever owned source partition ``p``. It
does three jobs:

1. **Card-state changelog and record of what was done** (:func:`replay`): on assignment, every
   transaction row of the owned partitions is recorded (once) into fresh
   :class:`features.card.CardState`\\ s (``record``: state only), up to the log's exact end.
   A row is written only after its event's outputs were delivered
   (:meth:`app.pipeline.agent.Pipeline.flush`), so the log says what was done: the new owner
   starts after the last offset it holds (or at the committed offset if later) and
   acknowledges a redelivery below that without processing it again, even when the group's
   commit was lost at a crash or a rebalance.
2. **Feed of the terminal view** on every worker (:class:`Feeder`): every partition, merged
   by event time (so that the view sees rows in about event-time order whatever the
   partitions' backlogs), this worker's own segments skipped.
3. **Progress** of every source partition, for the gate (:class:`app.pipeline.view.Progress`).

Segments are written (:class:`Writer`) once per flush, not per event: the rows of every
event processed since the last flush, per source partition, in one record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.pipeline import segments
from app.pipeline.aligner import Aligner
from app.pipeline.segments import NONE, Header
from app.pipeline.view import TerminalView
from features.card import CardState
from features.rows import LabelRow, TxnRow
from features.spec import FeatureSpec

log = logging.getLogger(__name__)

#: ``send(partition, value) -> future`` (the producer's delivery future).
SendFn = Callable[[int, bytes], Awaitable[Any]]


@dataclass
class _Buffer:
    txns: list[TxnRow] = field(default_factory=list)
    labels: list[LabelRow] = field(default_factory=list)
    t_first: int = NONE
    t_last: int = NONE
    txn_end: int = -1
    label_end: int = -1


class Writer:
    """Buffers the rows applied per source partition; :meth:`flush` writes one segment each.

    >>> import asyncio
    >>> from features.rows import txn_row
    >>> sent = []
    >>> async def send(p, value):
    ...     sent.append((p, value)); return None
    >>> w = Writer(b"w" * 16, send)
    >>> w.txn(1, txn_row({"txn_id": "a", "card_id": "c", "terminal_id": "T", "amount": 1.0,
    ...                   "ts": 5}, offset=9))
    >>> w.rows
    1
    >>> futs = asyncio.run(w.flush(lambda p: (4, 5, False)))
    >>> [(p, segments.decode(v)[0].complete, len(segments.decode(v)[1])) for p, v in sent]
    [(1, 4, 1)]
    >>> asyncio.run(w.flush(lambda p: (4, 5, False))) == [] # nothing new to say
    True
    """

    def __init__(self, writer_id: bytes, send: SendFn) -> None:
        self.writer_id = writer_id
        self._send = send
        self._buffers: dict[int, _Buffer] = {}
        self._written: dict[int, tuple[int, int, bool]] = {}
        self._ends: dict[int, tuple[int, int]] = {}
        self.rows = 0
        self.segments = 0
        self.bytes = 0
        self.since = 0.0

    def _buffer(self, partition: int) -> _Buffer:
        buf = self._buffers.get(partition)
        if buf is None:
            txn_end, label_end = self._ends.get(partition, (-1, -1))
            buf = self._buffers[partition] = _Buffer(txn_end=txn_end, label_end=label_end)
        if not self.rows:
            self.since = time.monotonic()
        return buf

    def txn(self, partition: int, row: TxnRow) -> None:
        buf = self._buffer(partition)
        buf.txns.append(row)
        if buf.t_first == NONE:
            buf.t_first = row.ts
        buf.t_last = row.ts
        if row.offset >= buf.txn_end:
            buf.txn_end = row.offset + 1
        self.rows += 1

    def label(self, partition: int, row: LabelRow) -> None:
        buf = self._buffer(partition)
        buf.labels.append(row)
        if buf.t_first == NONE:
            buf.t_first = row.reported_at
        buf.t_last = row.reported_at
        if row.offset >= buf.label_end:
            buf.label_end = row.offset + 1
        self.rows += 1

    async def flush(self, progress: Callable[[int], tuple[int, int, bool]],
                    partitions: Iterable[int] = ()) -> list[Any]:
        """Write a segment for every partition with rows, and for each of ``partitions`` whose
        progress changed since it was last written; returns the delivery futures."""
        todo = set(self._buffers) | set(partitions)
        futures = []
        for p in sorted(todo):
            buf = self._buffers.pop(p, None)
            complete, labels, caught_up = progress(p)
            said = (complete, labels, caught_up)
            if buf is None:
                if self._written.get(p) == said:
                    continue
                txn_end, label_end = self._ends.get(p, (-1, -1))
                buf = _Buffer(txn_end=txn_end, label_end=label_end)
            head = Header(self.writer_id, p, buf.t_first, buf.t_last, buf.txn_end,
                          buf.label_end, complete, labels, caught_up)
            value = segments.encode(head, buf.txns, buf.labels)
            futures.append(await self._send(p, value))
            self._written[p] = said
            self._ends[p] = (buf.txn_end, buf.label_end)
            self.segments += 1
            self.bytes += len(value)
        self.rows = 0
        return [f for f in futures if f is not None]

    def drop(self) -> None:
        """Forget unwritten rows (a rebalance started: their events are redelivered)."""
        self._buffers.clear()
        self._written.clear()
        self._ends.clear()
        self.rows = 0


# -- reading the log ---------------------------------------------------------------------------

ConsumerFactory = Callable[[], Any]
"""Makes a started-able aiokafka-like consumer (``start``, ``assign``, ``seek_to_beginning``,
``getmany``, ``highwater``, ``end_offsets``, ``stop``)."""

EndsFn = Callable[[Any, dict[Any, int]], Awaitable[dict[Any, int]]]


async def _exact_ends(consumer: Any, tps: list[Any], exact: EndsFn | None) -> dict[Any, int]:
    reported = await consumer.end_offsets(tps)
    if exact is not None:
        return await exact(consumer, dict(reported))
    return {tp: int(end) for tp, end in reported.items()}


async def replay(consumer: Any, topic: str, commits: Mapping[int, int], spec: FeatureSpec,
                 config: Mapping[str, Any], exact: EndsFn | None = None,
                 timeout_s: float = 600.0, done: dict[int, tuple[int, int]] | None = None,
                 ) -> tuple[dict[int, dict[str, CardState]], int, dict[int, int]]:
    """Card states of the source partitions in ``commits`` (partition -> committed offset of
    ``transactions``): their log partitions read to the exact end, every transaction row
    recorded once (a row is written only after its event's outputs were delivered, so the
    log, not the commit, says what was done). ``done``, when given, receives per partition
    how far the log goes: one past the highest ``transactions`` and ``transaction-labels``
    offsets it holds (at least the committed offset for transactions, -1 for none). ``consumer``
    is started and stopped by the caller. Returns the states per partition, the number of rows
    recorded and the end offset of each log partition read."""
    from aiokafka.structs import TopicPartition

    cards: dict[int, dict[str, CardState]] = {p: {} for p in commits}
    ends_of: dict[int, list[int]] = {p: [commits[p], -1] for p in commits}
    if done is not None:
        done.update({p: (e[0], e[1]) for p, e in ends_of.items()})
    if not commits:
        return cards, 0, {}
    tps = [TopicPartition(topic, p) for p in sorted(commits)]
    consumer.assign(tps)
    ends = await _exact_ends(consumer, tps, exact)
    todo = {tp for tp in tps if ends.get(tp, 0) > 0}
    if todo:
        await consumer.seek_to_beginning(*todo)
    n = 0
    next_row = {p: 0 for p in commits}
    deadline = time.monotonic() + timeout_s
    while todo:
        if time.monotonic() > deadline:
            raise TimeoutError(f"state log replay of {sorted(map(str, todo))} did not reach the "
                               f"end in {timeout_s} s")
        batches = await consumer.getmany(*todo, timeout_ms=200)
        for tp, records in batches.items():
            p = tp.partition
            states = cards[p]
            span = ends_of[p]
            for rec in records:
                if rec.offset >= ends[tp]:
                    break
                head, txns, _ = segments.decode(rec.value)
                span[0] = max(span[0], head.txn_end)
                span[1] = max(span[1], head.label_end)
                for row in txns:
                    if row.offset < next_row[p]:
                        continue  # a row written twice (never by this version)
                    next_row[p] = row.offset + 1
                    state = states.get(row.card_id)
                    if state is None:
                        state = states[row.card_id] = CardState(spec, **config)
                    state.record(row)
                    n += 1
                if rec.offset + 1 >= ends[tp]:
                    todo.discard(tp)
            await asyncio.sleep(0)
    if done is not None:
        done.update({p: (e[0], e[1]) for p, e in ends_of.items()})
    return cards, n, {tp.partition: int(end) for tp, end in ends.items()}


class Feeder:
    """Applies the state log to the terminal view (see the module docstring).

    Driven by :meth:`add` (records as fetched) and :meth:`apply` (what the merge allows); the
    worker's loop is :meth:`run`. Rows of a partition this worker owns are applied only below
    the offsets it started from (where the log ended at the assignment, or the commit if
    later; later ones are processed again in process), and this worker's own segments never
    (they were applied when processed).
    """

    def __init__(self, view: TerminalView, writer_id: bytes, partitions: int) -> None:
        self.view = view
        self.writer_id = writer_id
        self.partitions = partitions
        self.merge = Aligner(max_queued=1 << 62)
        self.merge.own(range(partitions))
        self.next_offset: dict[int, int] = {p: 0 for p in range(partitions)}
        self.applied_next: dict[int, int] = {p: 0 for p in range(partitions)}
        self.highwater: dict[int, int | None] = {p: None for p in range(partitions)}
        self.owned: dict[int, tuple[int, int]] = {}
        self.barrier: dict[int, int] = {}
        self.rows = 0
        self.skipped = 0
        self.bad = 0

    # -- ownership -------------------------------------------------------------------------
    def assign(self, owned: Mapping[int, tuple[int, int]], barrier: Mapping[int, int]) -> None:
        """This worker now owns ``owned`` (partition -> committed offsets of transactions and
        labels); its first events wait until the log of every owned partition is applied up to
        ``barrier`` (partition -> end offset of its log partition at assignment)."""
        self.owned = dict(owned)
        self.barrier = dict(barrier)

    def revoke(self) -> None:
        self.owned = {}
        self.barrier = {}

    def ready(self) -> bool:
        """Every owned partition's log history (before the assignment) is in the view."""
        applied = self.applied_next
        return all(applied.get(p, 0) >= end for p, end in self.barrier.items())

    def done_reading(self) -> bool:
        """Nothing is left to read for any partition that is not owned (or barrier-pending)."""
        return all(self.caught_up(p) for p in range(self.partitions))

    def caught_up(self, p: int) -> bool:
        high = self.highwater.get(p)
        return high is not None and self.applied_next.get(p, 0) >= high

    # -- records ---------------------------------------------------------------------------
    def add(self, partition: int, offset: int, value: bytes) -> None:
        """A fetched state-log record (in offset order per partition)."""
        self.next_offset[partition] = offset + 1
        try:
            head = segments.decode_header(value)
        except ValueError:
            self.bad += 1
            log.error("state log %d@%d: not a segment, skipped", partition, offset)
            self.applied_next[partition] = max(self.applied_next[partition], offset + 1)
            return
        time_ = head.t_first if head.t_first != NONE else self.merge.last_time.get(
            (0, partition), NONE)
        self.merge.add(0, partition, time_, offset, (head, value))
        if head.t_last != NONE and head.t_last > self.merge.last_time.get((0, partition), NONE):
            self.merge.last_time[(0, partition)] = head.t_last

    def _lagging(self, kind: int, p: int) -> bool:
        if p in self.owned and p not in self.barrier:
            return False  # our own partition: its segments are ours, nothing to wait for
        high = self.highwater.get(p)
        return high is None or self.next_offset.get(p, 0) < high

    def apply(self, budget: int = 50_000) -> int:
        """Apply queued segments in merge order; returns the rows applied."""
        n = 0
        merge = self.merge
        view = self.view
        me = self.writer_id
        while n < budget:
            item = merge.select(self._lagging)
            if item is None:
                break
            merge.pop(item)
            p = item.partition
            head, value = item.payload
            if head.writer != me and (head.t_first != NONE):
                try:
                    _, txns, labels = segments.decode(value)
                except ValueError:
                    self.bad += 1
                    log.error("state log %d@%d: damaged segment, skipped", p, item.offset)
                    txns, labels = [], []
                commit = self.owned.get(p)
                if p in self.owned and commit is not None:
                    txn_commit, label_commit = commit
                    for row in txns:
                        if row.offset < txn_commit:
                            view.record(row)
                            n += 1
                        else:
                            self.skipped += 1
                    for lab in labels:
                        if lab.offset < label_commit:
                            view.add_label(lab)
                            n += 1
                        else:
                            self.skipped += 1
                else:
                    for row in txns:
                        view.record(row)
                    for lab in labels:
                        view.add_label(lab)
                    n += len(txns) + len(labels)
            self.applied_next[p] = item.offset + 1
            view.progress[p].advance(head, self.caught_up(p))
        self.rows += n
        for p, prog in self.view.progress.items():
            prog.read_all = self.caught_up(p)
        return n

    async def run(self, consumer: Any, topic: str, idle: Callable[[], bool],
                  fetch_timeout_ms: int = 50) -> None:  # pragma: no cover - worker loop
        """Read every partition from the start, forever (``idle()``: nothing foreign to read
        now, so only poll slowly)."""
        from aiokafka.structs import TopicPartition

        tps = [TopicPartition(topic, p) for p in range(self.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while True:
            batches = await consumer.getmany(timeout_ms=fetch_timeout_ms,
                                             max_records=20_000)
            for tp, records in batches.items():
                for rec in records:
                    self.add(tp.partition, rec.offset, rec.value)
            for tp in tps:
                high = consumer.highwater(tp)
                if high is not None:
                    self.highwater[tp.partition] = high
            while self.apply():
                await asyncio.sleep(0)
            if idle() and not len(self.merge):
                await asyncio.sleep(0.2)
