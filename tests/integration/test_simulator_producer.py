"""The batched producer against a real broker: every record arrives, keyed, ordered per card."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from simulator import simulate
from simulator.patterns import TrafficPattern, schedule
from simulator.producer import IDEMPOTENCE_UNSUPPORTED, BatchProducer
from simulator.sender import plan_historical, plan_live, send_plan

pytestmark = [pytest.mark.integration]


async def _create(bootstrap: str, *topics: str, partitions: int = 4) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
    finally:
        await admin.close()


async def _consume(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    records: list = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=50_000)
            for part in batch.values():
                records.extend(part)
    finally:
        await consumer.stop()
    return records


@pytest.fixture(scope="module")
def sim():
    return simulate("realistic", seed=21, n_customers=300, n_terminals=600, n_days=20)


def test_historical_replay_delivers_everything_keyed_and_in_order(kafka_bootstrap, unique, sim,
                                                                  caplog):
    tx_topic, label_topic = f"tx-{unique}", f"labels-{unique}"
    table = sim.transactions(f"{unique}-")
    labels = sim.labels(delay_days=7)
    ts = table.column("ts").to_numpy()
    plan = plan_historical(ts, labels.column("reported_at").to_numpy(), speed=None)

    async def run() -> tuple[BatchProducer, list, list]:
        await _create(kafka_bootstrap, tx_topic, label_topic)
        with caplog.at_level(logging.WARNING, logger="simulator.producer"):
            async with BatchProducer(kafka_bootstrap, linger_ms=5) as producer:
                await send_plan(producer, plan, table, labels, tx_topic=tx_topic,
                                label_topic=label_topic, paced=False)
        got_tx = await _consume(kafka_bootstrap, tx_topic, table.num_rows)
        got_labels = await _consume(kafka_bootstrap, label_topic, labels.num_rows)
        return producer, got_tx, got_labels

    producer, got_tx, got_labels = asyncio.run(run())
    assert producer.stats.produced == table.num_rows + labels.num_rows
    assert producer.stats.per_topic == {tx_topic: table.num_rows, label_topic: labels.num_rows}
    if not producer.idempotent:  # Tansu: InitProducerId fails, a clear warning says so
        assert "without idempotence" in caplog.text

    assert len(got_tx) == table.num_rows and len(got_labels) == labels.num_rows
    values = [json.loads(r.value) for r in got_tx]
    assert sorted(v["txn_id"] for v in values) == table.column("txn_id").to_pylist()
    assert all(r.key.decode() == v["card_id"] for r, v in zip(got_tx, values, strict=True))
    assert "is_fraud" not in values[0] and "scenario" not in values[0]
    rows = {r["txn_id"]: r for r in table.drop_columns(["is_fraud", "scenario"]).to_pylist()}
    for value in values:  # every field of every record equals the file's row
        row = rows[value["txn_id"]]
        assert {k: v for k, v in value.items() if v is not None} == {
            k: v for k, v in row.items() if v is not None}, value["txn_id"]
    partitions: dict[str, set[int]] = {}
    last_ts: dict[str, int] = {}
    for rec, value in zip(got_tx, values, strict=True):
        partitions.setdefault(value["card_id"], set()).add(rec.partition)
        assert value["ts"] >= last_ts.get(value["card_id"], 0)  # per-card event-time order
        last_ts[value["card_id"]] = value["ts"]
    assert all(len(p) == 1 for p in partitions.values())
    assert len({p for ps in partitions.values() for p in ps}) > 1
    label_values = [json.loads(r.value) for r in got_labels]
    frauds = int(sum(table.column("is_fraud").to_pylist()))
    assert sum(v["is_fraud"] for v in label_values) == frauds


def test_idempotence_auto_matches_what_the_broker_supports(kafka_bootstrap, unique):
    topic = f"idem-{unique}"

    async def run() -> tuple[bool, bool, int]:
        await _create(kafka_bootstrap, topic, partitions=1)
        strict = BatchProducer(kafka_bootstrap, idempotence=True)
        try:
            await strict.start()
        except IDEMPOTENCE_UNSUPPORTED:
            supported = False  # Tansu: InitProducerId -> UnknownError; no silent downgrade
        else:
            supported = True
            await strict.stop()
        async with BatchProducer(kafka_bootstrap) as auto:
            await auto.send(topic, [b"k"], [b'{"x":1}'])
        return supported, auto.idempotent, auto.stats.produced

    supported, auto_idempotent, produced = asyncio.run(run())
    assert auto_idempotent == supported and produced == 1


def test_live_mode_paces_at_the_pattern_rate(kafka_bootstrap, unique, sim):
    topic = f"live-{unique}"
    pattern = TrafficPattern("spike", tps=200, spike_every_s=1.0, spike_duration_s=0.25,
                             spike_factor=4)
    offsets = schedule(pattern, duration_s=3.0)
    table = sim.transactions().slice(0, len(offsets))
    start_ms = int(time.time() * 1000)
    ts, _, plan = plan_live(offsets, start_ms, label_delay_ms=None)
    table = table.set_column(table.schema.get_field_index("ts"), "ts", [ts])

    async def run() -> tuple[float, list]:
        await _create(kafka_bootstrap, topic, partitions=2)
        async with BatchProducer(kafka_bootstrap, idempotence=False) as producer:
            began = time.monotonic()
            await send_plan(producer, plan, table, None, tx_topic=topic, label_topic="-",
                            paced=True)
            took = time.monotonic() - began
        return took, await _consume(kafka_bootstrap, topic, len(offsets))

    took, got = asyncio.run(run())
    assert 2.6 < took < 6.0  # paced: about the 3 s schedule, not as fast as possible
    event_ts = np.sort([json.loads(r.value)["ts"] for r in got])
    assert len(event_ts) == len(offsets) == 3 * (150 + 200)
    per_quarter = np.histogram((event_ts - start_ms) / 1000, bins=np.arange(0, 3.01, 0.25))[0]
    assert per_quarter.tolist() == [50, 50, 50, 200] * 3
    # the broker received each record no earlier than its event time (live: ts <= send time)
    assert all(r.timestamp >= json.loads(r.value)["ts"] - 5 for r in got)
