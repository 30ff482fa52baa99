"""Per-partition in-order acknowledgement: only the contiguous done prefix is acknowledged.

Faust does not commit only the contiguous acknowledged prefix (research §1, experiment E1):
``Consumer._new_offset`` commits past a hole when nothing was committed yet (or the committed
offset is 0), when the hole at the head is exactly one offset (an off-by-one in its guard),
and for any hole while a revocation is in progress. An agent that holds events and finishes
them out of order must therefore acknowledge, per partition, strictly in offset order.

:class:`InOrderAcks` does that. Register each event when it is received (in the order the
stream delivers them, which is offset order per partition), mark it done in any order, and
it acknowledges only the events of the contiguous done prefix of each partition::

    acks = InOrderAcks()
    async for event in stream.noack().events():
        acks.received(event)
        ...                      # later, in any order:
        acks.done(event)         # acknowledges this one and any done ones behind it

:meth:`revoked` drops the state of partitions that left (returning the events still held,
for :func:`app.faust_ext.release_held`); an event of a dropped partition that is finished
later is never acknowledged, so a late ack cannot join the next generation's offsets.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["InOrderAcks", "tp_of"]


def tp_of(event: Any) -> tuple[str, int]:
    """``(topic, partition)`` of an event or message (Faust ``TP``s are such tuples)."""
    message = getattr(event, "message", event)
    return (message.topic, message.partition)


def _offset(event: Any) -> int:
    return int(getattr(event, "message", event).offset)


def _default_ack(event: Any) -> Any:
    return event.ack()


class _Partition:
    __slots__ = ("queue", "done", "last")

    def __init__(self) -> None:
        self.queue: deque[tuple[int, Any]] = deque()  # (offset, event) in received order
        self.done: set[int] = set()
        self.last: int | None = None  # highest offset received


class InOrderAcks:
    """Acknowledge each partition's events only as a contiguous prefix of finished ones.

    ``ack`` acknowledges one event: ``event.ack()`` by default; ``stream.ack`` (a coroutine
    function) works with :meth:`done_async`. Not thread-safe: use it from the agent's loop.
    """

    def __init__(self, ack: Callable[[Any], Any] | None = None) -> None:
        self._ack = ack or _default_ack
        self._parts: dict[tuple[str, int], _Partition] = {}

    # -- bookkeeping -------------------------------------------------------------------------

    def received(self, event: Any) -> bool:
        """Register ``event``; False (and nothing registered) for an offset at or below the
        last one received on its partition (a redelivered copy within one assignment).
        """
        tp, offset = tp_of(event), _offset(event)
        part = self._parts.get(tp)
        if part is None:
            part = self._parts[tp] = _Partition()
        if part.last is not None and offset <= part.last:
            return False
        part.last = offset
        part.queue.append((offset, event))
        return True

    def _ready(self, event: Any) -> list[Any]:
        tp, offset = tp_of(event), _offset(event)
        part = self._parts.get(tp)
        if part is None or not any(off == offset and ev is event for off, ev in part.queue):
            return []  # unknown here (revoked, or never registered): never acknowledged
        part.done.add(offset)
        out = []
        queue, done = part.queue, part.done
        while queue and queue[0][0] in done:
            off, ev = queue.popleft()
            done.discard(off)
            out.append(ev)
        return out

    def done(self, event: Any) -> list[Any]:
        """Mark ``event`` finished; acknowledge and return the events that became ackable."""
        if inspect.iscoroutinefunction(self._ack):
            raise TypeError("ack is a coroutine function: use done_async()")
        ready = self._ready(event)
        for ev in ready:
            self._ack(ev)
        return ready

    async def done_async(self, event: Any) -> list[Any]:
        """:meth:`done` for an ``ack`` that is a coroutine function (``stream.ack``)."""
        ready = self._ready(event)
        for ev in ready:
            result = self._ack(ev)
            if inspect.isawaitable(result):
                await result
        return ready

    def revoked(self, tps: Iterable[Any] | None = None) -> list[Any]:
        """Forget the partitions ``tps`` (all when None); return their events not yet acked."""
        keys = list(self._parts) if tps is None else [(tp[0], tp[1]) for tp in tps]
        held: list[Any] = []
        for tp in keys:
            part = self._parts.pop(tp, None)
            if part is not None:
                held.extend(ev for _, ev in part.queue)
        return held

    def keep_only(self, tps: Iterable[Any]) -> list[Any]:
        """Forget every partition not in ``tps`` (the new assignment); return their held events."""
        keep = {(tp[0], tp[1]) for tp in tps}
        return self.revoked([tp for tp in self._parts if tp not in keep])

    # -- questions ---------------------------------------------------------------------------

    def pending(self, tp: Any | None = None) -> int:
        """Events received and not acknowledged (of one partition, or of all)."""
        if tp is not None:
            part = self._parts.get((tp[0], tp[1]))
            return len(part.queue) if part else 0
        return sum(len(p.queue) for p in self._parts.values())

    def held(self) -> list[Any]:
        """Every event received and not acknowledged, partition by partition."""
        return [ev for part in self._parts.values() for _, ev in part.queue]

    def last_received(self) -> dict[tuple[str, int], int]:
        """The highest offset received per partition (for :mod:`app.faust_ext.pausing` and
        :mod:`app.faust_ext.progress`)."""
        return {tp: part.last for tp, part in self._parts.items() if part.last is not None}
