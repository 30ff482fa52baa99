"""Pause and resume partitions without losing fetched records.

What Faust does (research §3, experiment E3): ``Consumer.pause_partitions`` only edits Faust's
active set. The rest of the drain's current batch for a paused partition is silently dropped
while aiokafka's position is already past it; without a seek on resume, 183 of 200 records
were skipped, and once later records came, Faust's gap bookkeeping committed them as if they
had been processed. Also, ``resume_partitions`` puts the raw argument into the active set,
so an aiokafka ``TopicPartition`` (``event.message.tp``) crashes the fetcher: it needs Faust
``TP``s. And a partition paused while its stream queue was full ("buffered") is re-activated
when the queue drains, undoing the pause.

:func:`pause` converts to ``TP``s and takes the partitions out of the buffered set too;
:func:`resume` seeks each still-assigned partition to the record after the last one delivered
(or to its committed offset when nothing was delivered since the assignment) *before* it
resumes it, which gave 200 of 200 records and no duplicates in E3. Stale records of an old
batch arriving after the seek are dropped by Faust's own read-offset check.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from faust.types import TP

__all__ = ["pause", "paused", "resume", "resume_offset", "to_tps"]

log = logging.getLogger(__name__)


def to_tps(partitions: Iterable[Any]) -> set[TP]:
    """Faust ``TP``s of ``partitions`` (``TP``, aiokafka ``TopicPartition``, events, messages,
    or ``(topic, partition)`` pairs)."""
    out = set()
    for item in partitions:
        item = getattr(item, "message", item)
        if hasattr(item, "topic") and hasattr(item, "partition"):
            out.add(TP(item.topic, int(item.partition)))
        else:
            topic, partition = item
            out.add(TP(topic, int(partition)))
    return out


def pause(app: Any, partitions: Iterable[Any]) -> set[TP]:
    """Stop delivering ``partitions``; returns them as ``TP``s. Their records still in the
    drain's batch are dropped by Faust: :func:`resume` fetches them again."""
    tps = to_tps(partitions)
    consumer = app.consumer
    consumer.pause_partitions(tps)
    consumer._buffered_partitions.difference_update(tps)
    return tps


def paused(app: Any) -> set[TP]:
    """The partitions Faust holds paused."""
    return set(app.consumer._paused_partitions)


def resume_offset(app: Any, tp: TP, delivered: Mapping[Any, int] | None = None) -> int:
    """Where :func:`resume` seeks ``tp``: the record after the last delivered one.

    ``delivered`` (e.g. :meth:`app.faust_ext.acks.InOrderAcks.last_received`) is the caller's
    own record of the last offset it received per partition, exact whatever Faust did. Without
    it, Faust's read offset is used; it is the last offset handed to a stream, except right
    after a seek (Faust's initial seek to the committed offset included), when it holds the
    *next* offset: when it equals the committed offset nothing is known to have been delivered
    after it, so the seek goes there (at worst one record is delivered twice, never skipped).
    With no read offset: the committed offset, else 0 (the log start with
    ``consumer_auto_offset_reset="earliest"``).
    """
    consumer = app.consumer
    if delivered is not None:
        last = delivered.get(tp, delivered.get((tp.topic, tp.partition)))
        if last is not None:
            return int(last) + 1
    committed = consumer._committed_offset.get(tp)
    read = consumer._read_offset.get(tp)
    if read is None:
        return int(committed or 0)
    if committed is not None and read == committed:
        return int(read)
    return int(read) + 1


async def resume(app: Any, partitions: Iterable[Any],
                 delivered: Mapping[Any, int] | None = None) -> dict[TP, int]:
    """Resume ``partitions`` that are still assigned, each sought first to
    :func:`resume_offset`; returns the offsets sought. Partitions no longer assigned are
    only taken out of the paused set (the next owner starts from the committed offset)."""
    consumer = app.consumer
    tps = to_tps(partitions)
    assigned = set(consumer.assignment())
    sought: dict[TP, int] = {}
    for tp in sorted(tps):
        if tp not in assigned:
            continue
        offset = resume_offset(app, tp, delivered)
        await consumer.seek(tp, offset)
        sought[tp] = offset
    consumer.resume_partitions({tp for tp in tps if tp in assigned})
    consumer._paused_partitions.difference_update(tps)
    log.debug("resumed %s", {f"{tp.topic}/{tp.partition}": o for tp, o in sought.items()})
    return sought
