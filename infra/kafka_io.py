"""Small aiokafka helpers: produce records in order, read a topic back from the beginning.

Used by the demo, the CLI and the tests; not for the hot path (the worker uses Faust).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


@dataclass
class Record:
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    partition: int
    offset: int
    timestamp: int

    def json(self) -> Any:
        """The value parsed as JSON (``None`` for a tombstone)."""
        return None if self.value is None else json.loads(self.value)


def produce(bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes | None]],
            headers: list[tuple[str, bytes]] | None = None) -> None:
    """Send ``(key, value)`` pairs in order and wait until all are acknowledged."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
        await producer.start()
        try:
            futures = [await producer.send(topic, key=k, value=v, headers=headers or [])
                       for k, v in records]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(run())


def consume(bootstrap: str, topic: str, expected: int, timeout: float = 60.0,
            settle: float = 1.0, idle: float | None = None,
            distinct: Callable[[Record], Any] | None = None) -> list[Record]:
    """Read ``topic`` from the beginning until ``expected`` records came, then ``settle`` more
    seconds (to catch extras such as duplicates), or until ``timeout``; with ``idle``, also
    stop once nothing new came for that many seconds (after the first record). With
    ``distinct``, ``expected`` counts distinct ``distinct(record)`` values (redeliveries of
    the same record do not count twice)."""

    async def run() -> list[Record]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
            enable_auto_commit=False, group_id=None, fetch_max_wait_ms=50,
            metadata_max_age_ms=500,
        )
        await consumer.start()
        out: list[Record] = []
        deadline = time.monotonic() + timeout
        settle_until = None
        last_new = time.monotonic()
        seen: set[Any] = set()
        try:
            while time.monotonic() < deadline:
                count = len(seen) if distinct is not None else len(out)
                if settle_until is None and count >= expected:
                    settle_until = time.monotonic() + settle
                if settle_until is not None and time.monotonic() >= settle_until:
                    break
                batch = await consumer.getmany(timeout_ms=100)
                if batch:
                    last_new = time.monotonic()
                elif idle is not None and out and time.monotonic() - last_new > idle:
                    break
                for messages in batch.values():
                    for m in messages:
                        record = Record(m.key, m.value, dict(m.headers or []), m.partition,
                                        m.offset, m.timestamp)
                        out.append(record)
                        if distinct is not None:
                            seen.add(distinct(record))
        finally:
            await consumer.stop()
        return out

    return asyncio.run(run())
