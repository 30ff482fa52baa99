"""Where each assigned partition stands, cheaply and synchronously, from inside the worker.

Research §5: no broker round trip is needed.

* high watermark: ``consumer.highwater(tp)``, from aiokafka's last fetch response for the
  partition, exact on Tansu (unlike ListOffsets), ``None`` before the first response; stale
  while aiokafka still holds unconsumed records of the partition (it does not fetch again);
* position: aiokafka's next offset to return to Faust (records of Faust's current batch are
  behind it);
* buffered: aiokafka holds fetched records of the partition not yet returned to Faust;
* delivered: the last offset handed to a stream (Faust's read offset; right after a seek it
  holds the next offset instead, see :func:`app.faust_ext.pausing.resume_offset`), unless
  the caller passes its own record (:meth:`app.faust_ext.acks.InOrderAcks.last_received`);
* committed: Faust's cached committed offset (``None`` for never or 0).

``lagging`` = records on the broker not yet delivered: the high watermark is unknown, or it is
beyond the position (not fetched yet), or aiokafka holds fetched records, or the position is
beyond the record after the last delivered one (Faust's current batch). A partition that is
not lagging is caught up: everything the broker had at the last fetch was delivered. The
aiokafka consumer lives in Faust's consumer thread; reading its state from the agents' loop
is racy but only ever a moment old.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PartitionProgress", "partition_progress"]


@dataclass(frozen=True)
class PartitionProgress:
    """One assigned partition (offsets as Kafka counts them; ``None`` when unknown)."""

    highwater: int | None
    position: int | None
    buffered: bool
    delivered: int | None
    committed: int | None
    last_fetch_ms: int | None

    @property
    def lagging(self) -> bool:
        if self.highwater is None:
            return True
        if self.buffered:
            return True
        if self.position is not None and self.highwater > self.position:
            return True
        next_delivery = 0 if self.delivered is None else self.delivered + 1
        if self.position is not None:
            return self.position > next_delivery
        return self.highwater > next_delivery


def _aiokafka(app: Any) -> Any | None:
    thread = getattr(app.consumer, "_thread", None)
    return getattr(thread, "_consumer", None) if thread is not None else None


def partition_progress(app: Any, delivered: Mapping[Any, int] | None = None
                       ) -> dict[Any, PartitionProgress]:
    """:class:`PartitionProgress` of every partition assigned to the app's consumer."""
    consumer = app.consumer
    ak = _aiokafka(app)
    assignment = None
    records: Mapping[Any, Any] = {}
    if ak is not None:
        sub = ak._subscription.subscription
        assignment = sub.assignment if sub is not None else None
        records = getattr(ak._fetcher, "_records", {}) if ak._fetcher is not None else {}
    out: dict[Any, PartitionProgress] = {}
    for tp in sorted(consumer.assignment()):
        highwater = position = last_fetch = None
        state = None
        if assignment is not None:
            try:
                state = assignment.state_value(tp)
            except (KeyError, AttributeError):
                state = None
        if state is not None:
            highwater = state.highwater
            position = state.position if state.has_valid_position else None
            last_fetch = state.timestamp
        mine = None
        if delivered is not None:
            mine = delivered.get(tp, delivered.get((tp.topic, tp.partition)))
        out[tp] = PartitionProgress(
            highwater=highwater, position=position,
            buffered=tp in records,  # aiokafka TopicPartitions equal Faust TPs
            delivered=mine if mine is not None else consumer._read_offset.get(tp),
            committed=consumer._committed_offset.get(tp), last_fetch_ms=last_fetch)
    return out
