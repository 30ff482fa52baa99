"""A rebalance or a stop while the retrain agent waits for labels stalls neither the worker nor
the group, and the retrain event is handled exactly once in the end."""

from __future__ import annotations

import asyncio
import time

import pytest

from config.settings import settings_for_env
from contracts.records import RetrainEvent, encode_retrain
from infra.kafka_io import produce

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RETRAIN = {"FRAUDSTREAM_RETRAIN_MODE": "agent", "FRAUDSTREAM_RETRAIN_MAX_WAIT_S": "20",
           "FRAUDSTREAM_RETRAIN_POLL_S": "1"}
WAITING = "waiting for labels and features"


def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int | None]:
    """The group's committed offsets of ``topic``'s 3 partitions (no group join)."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    async def read() -> dict[int, int | None]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(3)}
        finally:
            await consumer.stop()

    return asyncio.run(read())


def _count(worker, text: str) -> int:
    return worker.log_text().count(text)


def _until(what, timeout: float, workers) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {w.log}\n{w.log_text()[-4000:]}" for w in workers)
            raise AssertionError(f"timed out after {timeout} s\n{tails}")
        time.sleep(0.2)


def test_a_rebalance_and_a_stop_during_the_wait_for_labels(workers, kafka_bootstrap):
    first = workers.start(**RETRAIN)
    settings = settings_for_env(workers.env(**RETRAIN))
    key = f"rebalance-{workers.unique}"
    event = RetrainEvent(model_name=settings.registry.model_name, idempotency_key=key,
                         signal="error", event_ts=int(time.time() * 1000))
    produce(kafka_bootstrap, workers.topic("retrain"), [encode_retrain(event)])
    _until(lambda: _count(first, WAITING) == 1, 90, [first])  # labels up to event time + 7 d

    # a second worker joins while the first waits: the group rebalances at once
    started = time.monotonic()
    second = workers.start(wait=False, **RETRAIN)
    ready = second.wait_ready(timeout=60)
    assert time.monotonic() - started < 20, f"the second worker was ready after {ready:.1f} s"
    assert "abandoned" in first.log_text() and "released unacknowledged" in first.log_text()
    both = [first, second]
    # redelivered to the partition's new owner (either worker), which waits again (a training
    # process takes 10-30 s to start on a busy 2-core machine: spawn, MLflow's import)
    _until(lambda: sum(_count(w, WAITING) for w in both) == 2, 90, both)
    owner, other = (first, second) if _count(first, WAITING) == 2 else (second, first)

    # the owner stops while it waits: it stops at once, the other one takes the event over
    stopping = time.monotonic()
    owner.stop()
    assert time.monotonic() - stopping < 15
    assert owner.proc.returncode is not None
    _until(lambda: sum(_count(w, WAITING) for w in both) == 3, 90, both)
    assert _count(other, WAITING) >= 1

    # it gives up waiting after FRAUDSTREAM_RETRAIN_MAX_WAIT_S and handles the event, once
    summary = f"retrain {key}: "
    _until(lambda: sum(_count(w, summary) for w in both) >= 1, 120, both)
    time.sleep(2.0)
    finished = [line for w in both for line in w.log_text().splitlines()
                if "[retrain " in line and summary in line]
    assert len(finished) == 1, finished
    from models.registry import open_registry

    handled = open_registry(settings).handled_retrain(key)
    assert handled is not None, "the outcome is recorded under the event's key"
    # acknowledged once handled: its offset is committed (a few commit intervals)
    group, topic = settings.worker.app_id, workers.topic("retrain")
    _until(lambda: sorted(_committed(kafka_bootstrap, group, topic).values(),
                          key=str) == [1, None, None], 30, both)


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("executor", ["process", "thread"])
def test_a_stop_during_the_wait_for_labels_ends_the_worker_at_once(workers, kafka_bootstrap,
                                                                   executor):
    """SIGTERM while the retrain waits (for up to an hour here): the worker exits in seconds,
    leaves no process behind, records nothing under the key, and the event is redelivered."""
    import psutil

    env = {**RETRAIN, "FRAUDSTREAM_RETRAIN_MAX_WAIT_S": "3600",
           "FRAUDSTREAM_RETRAIN_EXECUTOR": executor}
    first = workers.start(**env)
    settings = settings_for_env(workers.env(**env))
    key = f"stop-{executor}-{workers.unique}"
    event = RetrainEvent(model_name=settings.registry.model_name, idempotency_key=key,
                         signal="error", event_ts=int(time.time() * 1000))
    produce(kafka_bootstrap, workers.topic("retrain"), [encode_retrain(event)])
    _until(lambda: _count(first, WAITING) == 1, 90, [first])
    parent = psutil.Process(first.proc.pid)
    children = [c for c in parent.children(recursive=True) if _alive(c.pid)]
    lines = [" ".join(c.cmdline()) for c in children]
    if executor == "process":  # the training process (spawn) is there, waiting
        assert any("multiprocessing" in line and "resource_tracker" not in line
                   for line in lines), lines

    stopping = time.monotonic()
    first.proc.terminate()  # SIGTERM
    first.proc.wait(timeout=60)
    took = time.monotonic() - stopping
    assert took < 10, f"the worker took {took:.1f} s to stop\n{first.log_text()[-4000:]}"
    deadline = time.monotonic() + 5
    while (left := [c.pid for c in children if _alive(c.pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, [" ".join(psutil.Process(p).cmdline()) for p in left if _alive(p)]
    text = first.log_text()
    assert "the worker is stopping" in text and "released unacknowledged" in text, text[-4000:]
    assert f"retrain {key}: " not in text  # no outcome: it did not train, nothing recorded
    from models.registry import open_registry

    assert open_registry(settings).handled_retrain(key) is None
    committed = _committed(kafka_bootstrap, settings.worker.app_id, workers.topic("retrain"))
    assert set(committed.values()) == {None}, f"committed past the held event: {committed}"

    # nothing was committed past the event: the next worker gets it and waits again
    second = workers.start(**env)
    _until(lambda: _count(second, WAITING) == 1, 90, [second])
    assert f"retrain requested (retrain-{workers.unique}[" in second.log_text()
