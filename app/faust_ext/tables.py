"""Tables: a table manager that starts at once, exact end offsets on Tansu, table writes
inside batches.

Installed by :func:`app.faust_ext.apply` (``table_startup_grace``, ``exact_end_offsets``);
:func:`event_context` is called by agents that write tables inside ``take_events`` batches.

Faust's TableManager sleeps 1 s before it subscribes
-----------------------------------------------------
``TableManager.on_start`` starts with a fixed ``await self.sleep(1.0)`` grace before it
finalizes the tables and subscribes (``faust/tables/manager.py``), so that tables created
*during* start-up can register. fraudstream defines all its tables before the worker starts,
so the sleep only adds a second to every start: :class:`FastStartTableManager` makes the
grace a class attribute (``table_startup_grace=0`` in :func:`app.faust_ext.apply`).

Tansu's end offsets stop at the last batch's first record (fix 7)
-------------------------------------------------------------------
Tansu 0.6 answers ListOffsets(latest) with the base offset of the partition's last record
batch plus one (docs/operations.md). Faust recovers a table by reading its changelog up to
that "highwater", so without :func:`exact_end_offsets` the newest state of some keys was
never restored after a restart (the killed-worker exactness test caught it). The transport's
consumer thread (:mod:`app.faust_ext.transport`) calls it when the app's consumer class has
``exact_end_offsets`` set.

Table writes inside ``stream.take()`` batches (fix 3): :func:`event_context`
------------------------------------------------------------------------------
``take()``/``take_events()`` fill the batch in a background task. That
task, not the agent's task, is where the ``faust.streams._current_event``
ContextVar is set. In the agent body ``faust.current_event()`` therefore
returns ``None``, and ``table[k] = v`` raises
``TypeError: Cannot modify table key from outside of stream iteration``
(``Collection.partition_for_key``). Windowed tables raise
``RuntimeError: Operation outside of stream iteration`` instead.
With ``take_events()``, wrap each event's writes in
``with event_context(event):``. The table then sees that event: the
changelog goes to ``event.message.partition``, and window-relative times
use that event's timestamp. This is exactly what the normal
``async for`` path does per event. Events are acked only after the batch
body returns.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from time import monotonic as _monotonic
from typing import Any, ClassVar

from faust.tables.manager import TableManager as _TableManager

__all__ = [
    "EXACT_END_OFFSETS_TIMEOUT_S",
    "FastStartTableManager",
    "event_context",
    "exact_end_offsets",
]

#: How long :func:`exact_end_offsets` waits for the fetches it needs.
EXACT_END_OFFSETS_TIMEOUT_S = 30.0


async def exact_end_offsets(bootstrap: Any, reported: Any,
                            timeout_s: float = EXACT_END_OFFSETS_TIMEOUT_S) -> dict[Any, int]:
    """The true end offset of each partition, from a fetch at its reported end.

    Tansu 0.6 answers ListOffsets(latest) with the base offset of the partition's last record
    batch plus one: after a batch of 10 records at offsets 10-19 it reports 11, not 20. Faust
    recovers a table by reading its changelog up to that "highwater", so the last batch but
    its first record was never restored: a worker killed and restarted lost the newest state
    of some keys (the killed-worker exactness test). A fetch response carries the right high
    watermark, so this seeks a side consumer to ``reported - 1`` (the last batch's first
    record) and reads the high watermark of the answer. Partitions reported empty are kept.
    ``reported`` maps Faust or aiokafka TopicPartitions to offsets; the keys are kept.
    """
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    todo = {TopicPartition(tp.topic, tp.partition): tp for tp, end in reported.items() if end}
    result = {tp: int(end) for tp, end in reported.items()}
    if not todo:
        return result
    side = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                            fetch_max_wait_ms=50)
    await side.start()
    try:
        side.assign(list(todo))
        for atp, tp in todo.items():
            side.seek(atp, int(reported[tp]) - 1)
        pending = set(todo)
        deadline = _monotonic() + timeout_s
        while pending and _monotonic() < deadline:
            await side.getmany(*pending, timeout_ms=200)
            for atp in list(pending):
                high = side.highwater(atp)
                if high is not None:
                    tp = todo[atp]
                    result[tp] = max(int(high), int(reported[tp]))
                    pending.discard(atp)
        if pending:
            raise RuntimeError(f"no fetch answer for {sorted(map(str, pending))} within "
                               f"{timeout_s} s: cannot tell where their logs end")
    finally:
        await side.stop()
    return result


class FastStartTableManager(_TableManager):
    """TableManager with a configurable start-up grace (Faust's is a fixed 1.0 s).

    Faust sleeps 1 s in ``on_start`` before it finalizes the tables and
    subscribes. The sleep gives tables created *during* start-up time to
    register. fraudstream defines all its tables at import time, so the sleep
    only costs time. Use it as ``faust.App(..., TableManager=...)``, or let
    :func:`app.faust_ext.apply` set it before any table exists.
    """

    startup_grace: ClassVar[float] = 0.0

    async def on_start(self) -> None:
        if self.startup_grace > 0:
            await self.sleep(self.startup_grace)
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()



@contextlib.contextmanager
def event_context(event: Any) -> Iterator[Any]:
    """Make ``event`` the current event for table writes inside a batch.

    Usage::

        async for events in stream.take_events(500, within=0.05):
            for event in events:
                with faust_ext.event_context(event):
                    counts[event.value.card_id] += 1   # changelog -> event's partition

    It sets ``faust.streams._current_event`` (a ContextVar that holds a
    weakref, as Faust itself does) and resets it through the token on exit.
    Only the agent's own task context is touched, so the stream's background
    iteration is unaffected.
    """
    from faust import streams as _streams

    token = _streams._current_event.set(weakref.ref(event))
    try:
        yield event
    finally:
        _streams._current_event.reset(token)
