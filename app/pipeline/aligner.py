"""Event-time alignment across input partitions (Kafka Streams' PartitionGroup, per worker).

Valid events wait in one FIFO queue per input (``(kind, partition)``: the kind is
:data:`LABEL` or :data:`TXN`, so that a label reported at ``t`` goes before a transaction at
``t``, as in the batch recomputation). :meth:`Aligner.select` names the next event in the
merge order ``(event time, kind, partition, offset)``, comparing queue heads only, so each
queue keeps its offset order. It waits only for an input whose queue is empty *and* that is
lagging (records on the broker not received yet) *and* whose last received event is older than
the candidate: an input that is caught up never blocks, and neither does one that already
delivered something later than the candidate (its records come in event-time order, up to the
per-partition disorder that the completeness margin absorbs).

A queue above ``max_queued`` asks its input to be paused (the caller pauses the partition
without losing fetched records), and to be resumed once it is back to half.

>>> al = Aligner(max_queued=10)
>>> al.add(TXN, 0, 5, 100, "t@5")
Item(kind=1, p=0, t=5, o=100)
>>> _ = al.add(LABEL, 1, 5, 7, "l@5"); _ = al.add(TXN, 1, 3, 8, "t@3")
>>> lag = set()
>>> [al.pop(al.select(lambda k, p: (k, p) in lag)).payload for _ in range(3)]
['t@3', 'l@5', 't@5']
>>> _ = al.add(TXN, 0, 9, 101, "t@9")
>>> lag.add((TXN, 1))            # partition 1 lags, its last event (t=3) is older: wait
>>> al.select(lambda k, p: (k, p) in lag) is None, al.waiting_on
(True, (1, 1))
>>> _ = al.add(TXN, 1, 12, 9, "t@12")
>>> al.pop(al.select(lambda k, p: (k, p) in lag)).payload
't@9'
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

LABEL, TXN = 0, 1
KINDS = (LABEL, TXN)
NEVER = -(2**63)

Input = tuple[int, int]  # (kind, partition)


class Item:
    """One queued event: its merge key and what the pipeline needs to process it."""

    __slots__ = ("time", "kind", "partition", "offset", "payload", "event")

    def __init__(self, kind: int, partition: int, time: int, offset: int, payload: Any,
                 event: Any = None) -> None:
        self.kind, self.partition, self.time, self.offset = kind, partition, time, offset
        self.payload, self.event = payload, event

    @property
    def key(self) -> tuple[int, int, int, int]:
        return self.time, self.kind, self.partition, self.offset

    def __repr__(self) -> str:
        return f"Item(kind={self.kind}, p={self.partition}, t={self.time}, o={self.offset})"


class Aligner:
    """Per-input queues and the merge order (see the module docstring)."""

    def __init__(self, max_queued: int = 10_000,
                 on_full: Callable[[int, int], None] | None = None,
                 on_room: Callable[[int, int], None] | None = None) -> None:
        self.max_queued = max_queued
        self._on_full, self._on_room = on_full, on_room
        self.queues: dict[Input, deque[Item]] = {}
        self.last_time: dict[Input, int] = {}
        self.full: set[Input] = set()
        self.waiting_on: Input | None = None
        self._size = 0

    def own(self, partitions: Iterable[int]) -> None:
        """Declare the inputs of ``partitions`` (their queues exist even when empty)."""
        for p in partitions:
            for kind in KINDS:
                self.queues.setdefault((kind, p), deque())

    def __len__(self) -> int:
        return self._size

    def add(self, kind: int, partition: int, time: int, offset: int, payload: Any,
            event: Any = None) -> Item:
        """Queue one valid event (in its input's offset order)."""
        key = (kind, partition)
        queue = self.queues.get(key)
        if queue is None:
            queue = self.queues[key] = deque()
            self.queues.setdefault((1 - kind, partition), deque())
        item = Item(kind, partition, time, offset, payload, event)
        queue.append(item)
        self._size += 1
        if time > self.last_time.get(key, NEVER):
            self.last_time[key] = time
        if len(queue) >= self.max_queued and key not in self.full:
            self.full.add(key)
            if self._on_full is not None:
                self._on_full(kind, partition)
        return item

    def select(self, lagging: Callable[[int, int], bool]) -> Item | None:
        """The next event in merge order, or None (nothing queued, or waiting for a lagging
        input: :attr:`waiting_on`)."""
        best: Item | None = None
        for queue in self.queues.values():
            if queue:
                head = queue[0]
                if best is None or (head.time, head.kind, head.partition) < (
                        best.time, best.kind, best.partition):
                    best = head
        self.waiting_on = None
        if best is None:
            return None
        t, k = best.time, best.kind
        last_time = self.last_time
        for key, queue in self.queues.items():
            if queue:
                continue
            last = last_time.get(key, NEVER)
            # an input whose newest event is already past the candidate cannot deliver an
            # earlier one (in-order per input); otherwise wait only while it lags
            if (last > t or (last == t and key[0] > k)) or not lagging(*key):
                continue
            self.waiting_on = key
            return None
        return best

    def heads(self) -> Iterator[Item]:
        """The head of every non-empty queue."""
        for queue in self.queues.values():
            if queue:
                yield queue[0]

    def pop(self, item: Item | None) -> Item:
        """Remove ``item`` (a head returned by :meth:`select`)."""
        assert item is not None
        key = (item.kind, item.partition)
        queue = self.queues[key]
        got = queue.popleft()
        assert got is item, "pop() takes the head returned by select()"
        self._size -= 1
        if key in self.full and len(queue) <= self.max_queued // 2:
            self.full.discard(key)
            if self._on_room is not None:
                self._on_room(*key)
        return got

    def bound(self, kind: int, partition: int, clock: int, lagging: bool) -> int:
        """Every event of this input with merge time ``< bound`` has been taken out of the
        queue (processed): the head's time, or for an empty queue the newest time received
        (or ``clock``, the merge time reached, when the input is caught up)."""
        queue = self.queues.get((kind, partition))
        if queue:
            return queue[0].time
        last = self.last_time.get((kind, partition), NEVER)
        return last if lagging else max(last, clock)

    def empty(self, kind: int, partition: int) -> bool:
        return not self.queues.get((kind, partition))

    def drop(self, partitions: set[int] | None = None) -> list[Item]:
        """Forget the queued events of ``partitions`` (all when None); returns them."""
        out: list[Item] = []
        for key in list(self.queues):
            if partitions is None or key[1] in partitions:
                out.extend(self.queues.pop(key))
                self.last_time.pop(key, None)
                self.full.discard(key)
        self._size -= len(out)
        return out
