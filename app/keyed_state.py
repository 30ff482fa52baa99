"""Live feature-state objects per key, persisted in a changelog-backed Faust table.

The feature states of :mod:`features` are Python objects with an incremental update (tens of
microseconds); rebuilding one from its serialised form on every event would cost several times
more. So each agent keeps the live objects of the keys it has seen in a bounded LRU cache and
writes the serialised form to its Faust table after every update: the table's changelog is what
a restarted or rebalanced worker recovers from. The cache is dropped on every rebalance, so a
worker never serves a stale object for a key it lost and regained.

Each table value is ``{"s": <state dict>, "o": <highest source offset applied>}``. The offset
tells a redelivery after a crash (the same source offset again: already applied, re-emit the
same result) from a producer's duplicate (a new offset carrying a known ``txn_id``: drop and
count).

Durability: the changelog record of every update is handed to the producer before the event is
acknowledged (:func:`changelog_writer`), so Faust's flush-then-commit covers it. Faust's own
``table[key] = value`` puts it in a buffer that a background task drains, and the flush before
an offset commit gives up on that buffer after 0.1 s without a send
(``ProducerBuffer.flush_atmost``), so under load an offset could be committed while the state
change of its event was still buffered, and a worker killed then would come back without it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sized
from typing import Any, Generic, TypeVar, cast

log = logging.getLogger(__name__)

S = TypeVar("S")


class KeyedStates(Generic[S]):
    """Cache of live states in front of a Faust table.

    >>> import asyncio
    >>> table = {}
    >>> states = KeyedStates(table, new=list, load=list, dump=list, max_cached=2)
    >>> s = states.get("a"); s.append(1); asyncio.run(states.save("a", s, offset=10))
    >>> table["a"]
    {'s': [1], 'o': 10}
    >>> states.clear(); states.get("a"), states.applied_offset("a")
    ([1], 10)
    >>> states.applied_offset("missing")
    -1
    """

    def __init__(self, table: Any, new: Callable[[], S], load: Callable[[Any], S],
                 dump: Callable[[S], Any], max_cached: int = 100_000,
                 write: Callable[[str, Any], Awaitable[None]] | None = None) -> None:
        self.table = table
        self._write = write
        self._new, self._load, self._dump = new, load, dump
        self.max_cached = max_cached
        self._cache: OrderedDict[str, tuple[S, int]] = OrderedDict()

    def _entry(self, key: str) -> tuple[S, int]:
        entry = self._cache.get(key)
        if entry is not None:
            self._cache.move_to_end(key)
            return entry
        stored = self.table.get(key)
        if stored:
            entry = (self._load(stored["s"]), int(stored.get("o", -1)))
        else:
            entry = (self._new(), -1)
        self._cache[key] = entry
        if len(self._cache) > self.max_cached:
            self._cache.popitem(last=False)
        return entry

    def get(self, key: str) -> S:
        """The live state of ``key`` (from the cache, the table, or new)."""
        return self._entry(key)[0]

    def applied_offset(self, key: str) -> int:
        """Highest source offset applied to ``key`` (-1 if none)."""
        return self._entry(key)[1]

    async def save(self, key: str, state: S, offset: int) -> None:
        """Write ``state`` back to the table and its changelog after an update."""
        offset = max(offset, self.applied_offset(key))
        self._cache[key] = (state, offset)
        value = {"s": self._dump(state), "o": offset}
        if self._write is None:
            self.table[key] = value
        else:
            await self._write(key, value)

    def clear(self) -> None:
        """Forget every live object (on rebalance)."""
        self._cache.clear()

    def __len__(self) -> int:
        return len(self._cache)

    def held_events(self) -> int:
        """Transactions held by the live states (their windows)."""
        return sum(len(cast(Sized, state)) for state, _ in self._cache.values())

    def export_size(self, keys_gauge: Any, events_gauge: Any) -> None:
        """Make two Prometheus gauges report this cache's size when scraped."""
        keys_gauge.set_function(lambda: len(self._cache))
        events_gauge.set_function(self.held_events)


def changelog_writer(app: Any, table: Any) -> Callable[[str, Any], Awaitable[None]]:
    """``write(key, value)`` for a Faust table inside an agent: store + changelog, unbuffered.

    Does what ``table[key] = value`` does (the local store, then a changelog record in the
    current event's partition, its offset recorded in the store once written) except that the
    record goes straight to the producer: when ``write`` returns it is in the producer's
    accumulator, so the flush before the next offset commit waits for it.
    """
    from faust.streams import current_event

    topic = table.changelog_topic
    topic_name = topic.get_topic_name()

    def written(fut: Any) -> None:
        if fut.cancelled() or fut.exception() is not None:
            log.error("changelog write to %s failed: %r", topic_name,
                      None if fut.cancelled() else fut.exception())
            return
        table._on_changelog_sent(fut)

    async def write(key: str, value: Any) -> None:
        event = current_event()
        if event is None:
            raise RuntimeError("a table write needs the current event (see event_context)")
        table.data[key] = value
        raw_key, _ = topic.prepare_key(key, table.key_serializer)
        raw_value, _ = topic.prepare_value(value, table.value_serializer)
        fut = await app.producer.send(topic_name, raw_key, raw_value,
                                      event.message.partition, None, None)
        fut.add_done_callback(written)

    return write
