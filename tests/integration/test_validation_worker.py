"""Validation at the edge of a real worker on a real broker: the bad-input table end to end.

Every valid record must come out of the pipeline (``transactions-enriched``, the last topic a
valid transaction reaches with scoring off) with its fields unchanged and its features; every
invalid one goes to the dead-letter topic with its reason, and nothing else does.
"""

from __future__ import annotations

import json

import pytest

from contracts.records import decode_enriched
from features.spec import DEFAULT_SPEC
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
    forwarded = consume(kafka_bootstrap, workers.topic("enriched"), expected=len(good_ids),
                        settle=1.0)

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

    enriched = [decode_enriched(r.value) for r in forwarded]
    # one partition, one event time: the pipeline keeps the offset order
    assert [e.txn["txn_id"] for e in enriched] == good_ids
    assert enriched[0].txn == {**VALID, "txn_id": "good-0", "amount": 10.0}
    assert all(r.key == b"card-1" for r in forwarded)  # the source key, not re-keyed
    assert all(e.feature_spec_version == DEFAULT_SPEC.version for e in enriched)
    assert all(list(e.features) == DEFAULT_SPEC.names for e in enriched)
    # the good-<i> neighbours are card-1's first transactions, all at one time, in order
    goods = [e for e in enriched if e.txn["txn_id"].startswith("good-")]
    assert [e.features["card_tx_count_1d"] for e in goods] == [
        float(i + 1) for i in range(len(goods))]
    assert [e.features["amount"] for e in goods] == [10.0 + i for i in range(len(goods))]

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
    forwarded = consume(kafka_bootstrap, workers.topic("enriched"), expected=3, settle=2.0)
    assert sorted(json.loads(r.value)["txn_id"] for r in forwarded) == [
        "dup-1", "dup-2", "dup-3"]
    counts = {json.loads(r.value)["txn_id"]: json.loads(r.value)["features"]["card_tx_count_1d"]
              for r in forwarded}
    assert counts == {"dup-1": 1.0, "dup-2": 2.0, "dup-3": 1.0}  # a duplicate is not counted
    metrics = worker.metrics()
    assert "fraudstream_transactions_duplicate_total 3.0" in metrics
    assert "fraudstream_transactions_invalid_total" not in metrics.replace(
        "# HELP fraudstream_transactions_invalid_total", "").replace(
        "# TYPE fraudstream_transactions_invalid_total", "")
