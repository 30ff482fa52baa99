"""The validation agent in a real worker against a real broker: the bad-input table end to end."""

from __future__ import annotations

import json

import pytest

from tests.bad_inputs import BAD_INPUTS, GOOD_INPUTS, VALID, dumps, valid
from tests.support.kafka import consume, produce

pytestmark = [pytest.mark.integration]


def test_bad_inputs_are_dead_lettered_and_valid_neighbours_pass(workers, kafka_bootstrap):
    worker = workers.start()
    # One batch, one partition (same key): every bad record sits between two good ones.
    records: list[tuple[bytes | None, bytes | None]] = []
    good_ids = []
    for i, (_case, raw, _reason) in enumerate(BAD_INPUTS):
        txn_id = f"good-{i}"
        good_ids.append(txn_id)
        records.append((b"card-1", dumps(valid(txn_id=txn_id, amount=10.0 + i))))
        records.append((b"card-1", raw))
    for _case, raw in GOOD_INPUTS:
        good_ids.append(json.loads(raw)["txn_id"])
        records.append((b"card-1", raw))
    produce(kafka_bootstrap, workers.topic("transactions"), records)

    dead = consume(kafka_bootstrap, workers.topic("dlq"), expected=len(BAD_INPUTS))
    forwarded = consume(kafka_bootstrap, workers.topic("validated"), expected=len(good_ids))

    assert len(dead) == len(BAD_INPUTS)
    by_value = {}
    for rec in dead:
        assert rec.headers["source_topic"] == workers.topic("transactions").encode()
        assert rec.headers["error"]
        assert rec.headers["source_partition"].isdigit()
        by_value.setdefault(rec.value, []).append(rec)
    source_offsets = sorted(int(r.headers["source_offset"]) for r in dead)
    # bad records were produced at odd offsets 1, 3, 5, ... of one partition
    assert source_offsets == [2 * i + 1 for i in range(len(BAD_INPUTS))]
    for case, raw, reason in BAD_INPUTS:
        matches = by_value.get(raw)
        assert matches, f"{case}: not in the dead-letter topic"
        assert matches[0].headers["reason"] == reason.encode(), case
        assert matches[0].key == b"card-1"

    assert [json.loads(r.value)["txn"]["txn_id"] for r in forwarded] == good_ids
    first = json.loads(forwarded[0].value)["txn"]
    assert first == {**VALID, "txn_id": "good-0", "amount": 10.0}
    assert forwarded[0].key == VALID["terminal_id"].encode()

    metrics = worker.metrics()
    assert f"fraudstream_transactions_valid_total {float(len(good_ids))}" in metrics
    assert 'fraudstream_transactions_invalid_total{reason="missing_field"} 7.0' in metrics
    assert "card-1" not in worker.log_text()  # log lines name topic/partition/offset only


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_duplicate_txn_id_is_processed_once_and_counted(workers, kafka_bootstrap, store):
    worker = workers.start(FRAUDSTREAM_STORE=store)
    first = dumps(valid(txn_id="dup-1"))
    other = dumps(valid(txn_id="dup-2", ts=VALID["ts"] + 1000))
    third = dumps(valid(txn_id="dup-3", card_id="card-2", ts=VALID["ts"] + 2000))
    produce(kafka_bootstrap, workers.topic("transactions"),
            [(b"card-1", first), (b"card-1", other), (b"card-1", first), (b"card-2", third),
             (b"card-1", first), (b"card-2", third)])
    forwarded = consume(kafka_bootstrap, workers.topic("validated"), expected=3, settle=2.0)
    assert sorted(json.loads(r.value)["txn"]["txn_id"] for r in forwarded) == [
        "dup-1", "dup-2", "dup-3"]
    metrics = worker.metrics()
    assert "fraudstream_transactions_duplicate_total 3.0" in metrics
    assert "fraudstream_transactions_invalid_total" not in metrics.replace(
        "# HELP fraudstream_transactions_invalid_total", "").replace(
        "# TYPE fraudstream_transactions_invalid_total", "")
