"""Where a partition's log ends, as Faust's table recovery and the state-log replay need it
(app.faust_ext.tables, fix 7)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

from app.faust_ext import exact_end_offsets

pytestmark = [pytest.mark.integration]


async def _batches(bootstrap: str, topic: str, sizes: list[int]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=100)
    await producer.start()
    try:
        for size in sizes:  # each flush closes one record batch on partition 0
            for i in range(size):
                await producer.send(topic, b"%d" % i, partition=0)
            await producer.flush()
    finally:
        await producer.stop()


async def _ends(bootstrap: str, tps: list[TopicPartition]) -> dict:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.end_offsets(tps)
    finally:
        await consumer.stop()


def test_exact_end_offsets_count_every_record_of_the_last_batch(kafka_bootstrap, unique):
    topic = f"ends-{unique}"
    asyncio.run(_batches(kafka_bootstrap, topic, [10, 1, 7]))
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    reported = asyncio.run(_ends(kafka_bootstrap, tps))
    exact = asyncio.run(exact_end_offsets(kafka_bootstrap, reported))
    assert exact == {tps[0]: 18, tps[1]: 0}
    # Apache Kafka reports 18; Tansu 0.6 reports 12 (the last batch's first record + 1).
    assert reported[tps[0]] in (12, 18)
    assert reported[tps[1]] == 0
