"""Poison records against a real broker and a real worker: a 10 MB record and a 10,000-deep
JSON are dead-lettered (the big one truncated, with its size and hash), nothing escapes, and
their valid neighbours in the same batch are all processed."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.bad_inputs import dumps, valid
from tests.support.kafka import consume, produce
from tests.support.outputs import final_output_topic, output_txn_id, produce_large

pytestmark = [pytest.mark.integration]

TEN_MB = 10 * 1024 * 1024
DEEP = b"[" * 10_000 + b"]" * 10_000


def _poison_value() -> bytes:
    # A JSON-looking 10 MB value (the start of a transaction, then padding).
    head = dumps(valid(txn_id="poison"))[:-1] + b', "pad": "'
    return head + b"x" * (TEN_MB - len(head) - 2) + b'"}'


def test_a_10_mb_record_is_dead_lettered_truncated_and_its_neighbours_are_processed(
        workers, kafka_bootstrap):
    worker = workers.start()
    poison = _poison_value()
    assert len(poison) == TEN_MB
    before = [f"before-{i}" for i in range(20)]
    after = [f"after-{i}" for i in range(20)]
    records = [(b"card-1", dumps(valid(txn_id=t, ts=1_522_540_831_000 + i)))
               for i, t in enumerate(before)]
    records.append((b"card-1", poison))
    records += [(b"card-1", dumps(valid(txn_id=t, ts=1_522_540_832_000 + i)))
                for i, t in enumerate(after)]
    produce_large(kafka_bootstrap, workers.topic("transactions"), records)

    dead = consume(kafka_bootstrap, workers.topic("dlq"), expected=1, settle=2.0)
    out = consume(kafka_bootstrap, final_output_topic(workers), expected=len(before + after),
                  settle=2.0)

    assert len(dead) == 1
    rec = dead[0]
    assert rec.headers["reason"] == b"payload_too_large"
    assert rec.headers["truncated"] == b"true"
    assert rec.headers["original_size"] == str(TEN_MB).encode()
    assert rec.headers["original_sha256"] == hashlib.sha256(poison).hexdigest().encode()
    assert rec.headers["source_offset"] == b"20"
    assert 0 < len(rec.value) < 1_000_000 and poison.startswith(rec.value)
    assert rec.key == b"card-1"
    assert sorted(output_txn_id(r) for r in out) == sorted(before + after)
    assert worker.proc.poll() is None
    assert "MessageSizeTooLarge" not in worker.log_text()
    assert "Traceback" not in worker.log_text()


def test_deep_json_on_every_input_topic_is_refused_without_an_exception(
        workers, kafka_bootstrap):
    # The payload limit raised so that the depth, not the size, is what refuses the record.
    worker = workers.start(FRAUDSTREAM_MAX_PAYLOAD_BYTES="1048576",
                           FRAUDSTREAM_RETRAIN_MODE="agent")
    deep_field = dumps(valid(txn_id="deep-field"))[:-1] + b', "x": ' + DEEP + b"}"
    produce(kafka_bootstrap, workers.topic("transactions"),
            [(b"card-1", dumps(valid(txn_id="ok-1"))), (b"card-1", DEEP),
             (b"card-1", deep_field),
             (b"card-1", dumps(valid(txn_id="ok-2", ts=1_522_540_832_000)))])
    produce(kafka_bootstrap, workers.topic("labels"), [(b"card-1", DEEP)])
    produce(kafka_bootstrap, workers.topic("retrain"), [(b"fraud-lgbm", DEEP)])

    dead = consume(kafka_bootstrap, workers.topic("dlq"), expected=4, settle=2.0)
    out = consume(kafka_bootstrap, final_output_topic(workers), expected=2, settle=1.0)

    assert sorted(r.headers["reason"] for r in dead) == [b"too_deep"] * 4
    assert sorted(r.headers["source_topic"] for r in dead) == sorted(
        [workers.topic("transactions").encode()] * 2 + [workers.topic("labels").encode(),
                                                        workers.topic("retrain").encode()])
    assert all(r.value in (DEEP, deep_field) for r in dead)
    assert sorted(output_txn_id(r) for r in out) == ["ok-1", "ok-2"]
    log = worker.log_text()
    assert "dead-lettered a model-retrain record" in log and "too_deep" in log
    assert "RecursionError" not in log and "Traceback" not in log
    assert worker.proc.poll() is None
    # and the worker still processes what comes next
    produce(kafka_bootstrap, workers.topic("transactions"),
            [(b"card-1", dumps(valid(txn_id="ok-3", ts=1_522_540_833_000)))])
    out = consume(kafka_bootstrap, final_output_topic(workers), expected=3, settle=0.5)
    assert sorted(json.loads(r.value)["txn_id"] for r in out) == ["ok-1", "ok-2", "ok-3"]
