"""The dead-letter topic: the original bytes, with headers that say why and where from.

Delivery: at-least-once. The dead-letter record is handed to the producer before the source
offset can be committed (Faust acknowledges an event only after the agent has finished with
it), so an invalid record is never lost; after a crash it may be dead-lettered twice.
"""

from __future__ import annotations

import logging
from typing import Any

from app.metrics import TRANSACTIONS_INVALID, TRANSACTIONS_LATE
from contracts.rejections import Rejection

log = logging.getLogger(__name__)


def dlq_headers(message: Any, rejection: Rejection) -> list[tuple[str, bytes]]:
    """Headers of a dead-letter record (the source record's own headers are kept after them).

    >>> from types import SimpleNamespace
    >>> msg = SimpleNamespace(topic="transactions", partition=3, offset=41, headers=[("h", b"v")])
    >>> for name, value in dlq_headers(msg, Rejection("invalid_amount", "amount: must be > 0")):
    ...     print(name, value)
    reason b'invalid_amount'
    error b'amount: must be > 0'
    source_topic b'transactions'
    source_partition b'3'
    source_offset b'41'
    h b'v'
    """
    headers = [
        ("reason", rejection.reason.encode()),
        ("error", rejection.error.encode()),
        ("source_topic", str(message.topic).encode()),
        ("source_partition", str(message.partition).encode()),
        ("source_offset", str(message.offset).encode()),
    ]
    original = message.headers or []
    if isinstance(original, dict):
        original = list(original.items())
    headers.extend((k, v) for k, v in original if k not in dict(headers))
    return headers


async def send_late(late_topic: Any, message: Any, stage: str, watermark: int | None) -> None:
    """Route a transaction beyond the allowed lateness to the late topic (original bytes)."""
    headers = [
        ("reason", b"late"),
        ("stage", stage.encode()),
        ("watermark", str(watermark).encode()),
        ("source_topic", str(message.topic).encode()),
        ("source_partition", str(message.partition).encode()),
        ("source_offset", str(message.offset).encode()),
    ]
    await late_topic.send(key=message.key, value=message.value, headers=headers)
    TRANSACTIONS_LATE.labels(stage).inc()
    log.info("late at the %s stage: %s[%s]@%s", stage, message.topic, message.partition,
             message.offset)


async def dead_letter(dlq_topic: Any, message: Any, rejection: Rejection) -> None:
    """Send the original key and value to the dead-letter topic and count it."""
    await dlq_topic.send(
        key=message.key, value=message.value, headers=dlq_headers(message, rejection)
    )
    TRANSACTIONS_INVALID.labels(rejection.reason).inc()
    log.warning(
        "dead-lettered %s[%s]@%s: %s", message.topic, message.partition, message.offset,
        rejection.reason,
    )
