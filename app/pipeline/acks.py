"""Acknowledge an event only after its outputs were delivered, in offset order per partition.

Faust flushes the producer before it commits, but a flush returns normally when a send failed
(research notes, section 8), so a fire-and-forget output could be lost while its input offset is
committed. :class:`Deliveries` therefore keeps, for each group of finished events, the futures
of everything they produced (predictions, enriched records, dead-letter records, their rows'
state-log segment) and hands the events to :class:`app.faust_ext.acks.InOrderAcks` (which
acknowledges only each partition's contiguous finished prefix) once every future of the group
succeeded. A failed future raises :class:`DeliveryFailed`: the worker must stop without
committing past it (its events are redelivered to the next owner).

>>> import asyncio
>>> class Msg:
...     def __init__(self, o): self.topic, self.partition, self.offset = "t", 0, o
>>> class Ev:
...     def __init__(self, o): self.message, self.acked = Msg(o), False
...     def ack(self): self.acked = True
>>> d = Deliveries()
>>> evs = [Ev(o) for o in range(3)]
>>> all(d.received(e) for e in evs)
True
>>> loop = asyncio.new_event_loop(); fut = loop.create_future()
>>> d.finish([evs[1], evs[2]], []); d.finish([evs[0]], [fut])
>>> d.settle(), [e.acked for e in evs]           # offset 0 waits for its send
(0, [False, False, False])
>>> fut.set_result(None); d.settle(), [e.acked for e in evs]
(3, [True, True, True])
>>> bad = loop.create_future(); bad.set_exception(OSError("broker gone"))
>>> e3 = Ev(3); _ = d.received(e3); d.finish([e3], [bad]); d.settle()  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
app.pipeline.acks.DeliveryFailed: a send failed (OSError('broker gone')); 1 events stay ...
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from app.faust_ext.acks import InOrderAcks


class DeliveryFailed(RuntimeError):
    """A send that unacknowledged events depend on failed: nothing past it may be committed."""


class Deliveries:
    """In-order acknowledgement gated on delivery futures (see the module docstring)."""

    def __init__(self, ack: Callable[[Any], Any] | None = None) -> None:
        self.acks = InOrderAcks(ack)
        self._pending: deque[tuple[list[Any], list[Any]]] = deque()
        self.acked = 0

    def received(self, event: Any) -> bool:
        """Register a taken event; False for a copy of an offset already registered."""
        return self.acks.received(event)

    def finish(self, events: Iterable[Any], futures: list[Any]) -> None:
        """``events`` are finished once every future of ``futures`` has succeeded."""
        events = list(events)
        if events or futures:
            self._pending.append((futures, events))

    def settle(self) -> int:
        """Acknowledge every event that can be; returns how many were."""
        pending = self._pending
        n = 0
        while pending:
            futures, events = pending[0]
            if not all(fut.done() for fut in futures):
                break
            for fut in futures:
                if fut.cancelled() or fut.exception() is not None:
                    why = "cancelled" if fut.cancelled() else repr(fut.exception())
                    raise DeliveryFailed(f"a send failed ({why}); {len(events)} events stay "
                                         "unacknowledged")
            pending.popleft()
            for event in events:
                n += len(self.acks.done(event))
        self.acked += n
        return n

    def in_flight(self) -> int:
        """Finished events whose sends are not all delivered yet."""
        return sum(len(events) for _, events in self._pending)

    def held(self) -> int:
        """Events taken and not acknowledged."""
        return self.acks.pending()

    def held_events(self) -> list[Any]:
        """The events taken and not acknowledged, partition by partition."""
        return self.acks.held()

    def finished_ids(self) -> set[int]:
        """``id()`` of the finished events waiting for their sends."""
        return {id(e) for _, events in self._pending for e in events}

    def last_received(self) -> dict[tuple[str, int], int]:
        return self.acks.last_received()

    def revoked(self) -> list[Any]:
        """Forget everything (a rebalance started): the events still held, to release."""
        self._pending.clear()
        return self.acks.revoked()
