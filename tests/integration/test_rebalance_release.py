"""A rebalance does not wait for events an agent holds once they are released (faust_ext)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
EVENT = re.compile(r"HOLD EVENT (\d+) (\d+) (-?\d+)")


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "tests.support.hold_worker", *args],
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


def _events(log: Path) -> list[tuple[int, int, int]]:
    return [tuple(map(int, m.groups())) for m in EVENT.finditer(log.read_text(errors="replace"))]


def _wait(what, timeout: float, logs: list[Path]):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.1)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs
                      if p.exists())
    raise AssertionError(f"timed out after {timeout} s\n{tails}")


async def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in (0, 1)}
    finally:
        await consumer.stop()


def test_released_events_let_the_rebalance_complete_and_are_redelivered(
        kafka_bootstrap, tmp_path, unique):
    topic, group = f"held-{unique}", f"held-{unique}"
    asyncio.run(_create(kafka_bootstrap, topic))
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [_start([kafka_bootstrap, topic, group, str(tmp_path / "a"), "release"], logs[0])]
    try:
        # A owns both partitions and holds their first events, unacknowledged
        first = _wait(lambda: len(_events(logs[0])) >= 2 and _events(logs[0]), 60, logs)
        gen = max(g for _, _, g in first)
        assert sorted((p, o) for p, o, _ in first) == [(0, 0), (1, 0)]
        time.sleep(1.0)  # a few commit intervals: nothing acknowledged, nothing committed
        started = time.monotonic()
        procs.append(_start([kafka_bootstrap, topic, group, str(tmp_path / "b"), "release"],
                            logs[1]))

        def redelivered():
            later = [(p, o) for log in logs for p, o, g in _events(log) if g > gen]
            return sorted(set(later)) == [(0, 0), (1, 0)] and later

        _wait(redelivered, 30, logs)
        took = time.monotonic() - started
        a_text, b_text = (log.read_text(errors="replace") for log in logs)
        assert "HOLD RELEASED 2" in a_text
        assert "HOLD ASSIGNED" in b_text
        assert took < 20, f"the rebalance took {took:.1f} s"
        # held again by their new owners, never acknowledged: nothing committed past them
        assert asyncio.run(_committed(kafka_bootstrap, group, topic)) == {0: None, 1: None}
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)


async def _create(bootstrap: str, topic: str) -> None:
    """The topic, with one record on each of its two partitions."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition in (0, 1):
            await producer.send_and_wait(topic, b"%d" % partition, key=b"k",
                                         partition=partition)
    finally:
        await producer.stop()
