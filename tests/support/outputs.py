"""What the worker's hot path writes last, in one place, so that tests that count processed
transactions follow the pipeline when its stages change; and a producer for poison records.

The pipeline agent's ``transactions-enriched`` is the last topic every valid transaction
reaches with scoring off (the tests' default); a core that writes another topic last repoints
:data:`FINAL_OUTPUT_ROLE` (and :func:`output_txn_id` if its records put the id elsewhere).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

#: Role (``infra.worker_process.topic_name``) of the topic with one record per valid
#: transaction.
FINAL_OUTPUT_ROLE = "enriched"


def final_output_topic(workers: Any) -> str:
    """The final output topic of the workers started by a ``WorkerFactory``."""
    return str(workers.topic(FINAL_OUTPUT_ROLE))


def output_txn_id(record: Any) -> str:
    """The ``txn_id`` of one record of the final output topic."""
    return str(json.loads(record.value)["txn_id"])


def produce_large(bootstrap: str, topic: str,
                  records: Sequence[tuple[bytes | None, bytes | None]],
                  max_request_size: int = 16 * 1024 * 1024) -> None:
    """Like ``tests.support.kafka.produce``, with a producer that may send records up to
    ``max_request_size`` bytes (a poison producer: the worker's own limit is 1,000,000)."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all",
                                    max_request_size=max_request_size)
        await producer.start()
        try:
            futures = [await producer.send(topic, key=k, value=v) for k, v in records]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(run())
