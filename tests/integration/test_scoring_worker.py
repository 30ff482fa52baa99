"""The scoring agent in a real worker on a real broker, with real models in an MLflow registry.

Enriched records in, ``ml-predictions`` out: every score equals the ONNX model's on the same
features; shadow challenger records; a hot swap while traffic flows (no event lost or scored
twice per variant, every prediction carries the version whose scores it has); with no model
at first, events are held (nothing published) until a champion appears. Those run the separate
scoring agent (``FRAUDSTREAM_PIPELINE_SCORING=separate``); the default fused pipeline (raw
transactions in, predictions out in one hop) has its own tests at the end: held without a
model, then every transaction scored once per variant with the model's scores on the batch
features; a stop while holding is prompt and commits nothing.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import numpy as np
import pytest

from app.cli.predictions import keep, tail
from features.spec import DEFAULT_SPEC
from infra.kafka_io import consume, produce
from tests.support import models

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def exported():
    return {"v1": models.train(seed=1, rounds=30), "v2": models.train(seed=2, rounds=45)}


def _expected(exported, n):
    matrix = models.traffic().features[DEFAULT_SPEC.names].to_numpy()[:n]
    ids = models.traffic().txns["txn_id"].tolist()[:n]
    return {key: dict(zip(ids, models.scores(model, matrix).tolist(), strict=True))
            for key, model in exported.items()}


def _env(**extra):
    """A worker that scores ``transactions-enriched`` with the separate scoring agent (the
    pipeline agent publishes enriched records only), unless ``extra`` says otherwise."""
    return {"FRAUDSTREAM_MODEL_NAME": models.MODEL_NAME, "FRAUDSTREAM_SCORING_ENABLED": "true",
            "FRAUDSTREAM_PIPELINE_SCORING": "separate", **extra}


def _publish_update(bootstrap, topic, event):
    produce(bootstrap, topic, [(models.MODEL_NAME.encode(), json.dumps(event).encode())])


def test_enriched_to_predictions_with_the_models_scores(workers, kafka_bootstrap, exported):
    registry = models.registry(workers.tmp / "data")
    models.register(registry, exported["v1"], threshold=0.3, champion=True)
    models.register(registry, exported["v2"], threshold=0.4, alias="challenger")
    worker = workers.start(**_env(FRAUDSTREAM_SCORE_MODE="shadow"))
    records = models.traffic().enriched(limit=600)
    bad = json.loads(records[0][1])
    bad["features"].pop("amount")
    produce(kafka_bootstrap, workers.topic("enriched"),
            records + [(b"card-x", json.dumps(bad).encode())])

    out = consume(kafka_bootstrap, workers.topic("predictions"), expected=1200, timeout=60)
    dead = consume(kafka_bootstrap, workers.topic("dlq"), expected=1, timeout=20)
    expected = _expected(exported, 600)
    assert len(out) == 1200
    seen = set()
    for rec in out:
        value = json.loads(rec.value)
        variant = value["variant"]
        seen.add((value["txn_id"], variant))
        model = "v1" if variant == "champion" else "v2"
        assert value["model_version"] == (1 if model == "v1" else 2)
        assert value["shadow"] is (variant == "challenger")
        assert value["score"] == expected[model][value["txn_id"]]
        assert value["decision"] == ("alert" if value["score"] >= value["threshold"] else "pass")
        assert rec.key == value["card_id"].encode()
        assert 0 <= value["latency_ms"] < 60_000
    assert len(seen) == 1200
    assert [d.headers["reason"] for d in dead] == [b"feature_mismatch"]
    metrics = worker.metrics()
    alerts = sum(1 for r in out if json.loads(r.value)["decision"] == "alert"
                 and json.loads(r.value)["variant"] == "champion")
    assert (f'fraudstream_predictions_total{{decision="alert",variant="champion",version="1"}} '
            f"{float(alerts)}") in metrics
    sha = exported["v2"].sha256[:12]
    assert ('fraudstream_model_info{alias="challenger",model_name="fraud-test",'
            f'sha256="{sha}",version="2"}} 1.0') in metrics
    assert "fraudstream_end_to_end_latency_seconds_count 600.0" in metrics

    # what `fraudstream predictions tail --fraud-only --card C --from-beginning` shows
    card = json.loads(records[0][1])["card_id"]
    shown: list[dict] = []
    count = asyncio.run(tail(
        kafka_bootstrap, workers.topic("predictions"), {}, from_beginning=True,
        max_records=None, idle_s=2.0, emit=lambda rec, raw: shown.append(rec),
        accept=lambda rec: keep(rec, fraud_only=False, card=card, include_shadow=False)))
    assert count == len(shown) == sum(1 for _, v in records if json.loads(v)["card_id"] == card)
    assert {(r["card_id"], r["shadow"]) for r in shown} == {(card, False)}
    alerts_only = asyncio.run(tail(
        kafka_bootstrap, workers.topic("predictions"), {}, from_beginning=True,
        max_records=3, idle_s=2.0, emit=lambda rec, raw: None,
        accept=lambda rec: keep(rec, fraud_only=True, card=None, include_shadow=True)))
    assert alerts_only == min(3, sum(json.loads(r.value)["decision"] == "alert" for r in out))


def test_hold_without_model_then_hot_swap_mid_stream(workers, kafka_bootstrap, exported):
    registry = models.registry(workers.tmp / "data")
    worker = workers.start(**_env(FRAUDSTREAM_MODEL_POLL_INTERVAL_S="0"))
    records = models.traffic().enriched(limit=2000)
    topic = workers.topic("enriched")
    updates = workers.topic("model_updates")

    # 1. no model: events are held, nothing is published, the log says why
    produce(kafka_bootstrap, topic, records[:200])
    early = consume(kafka_bootstrap, workers.topic("predictions"), expected=1, timeout=4)
    assert early == []
    deadline = time.monotonic() + 10
    while "NO LOADABLE MODEL" not in worker.log_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "NO LOADABLE MODEL" in worker.log_text()

    # 2. a champion appears: the held events are scored by it
    _publish_update(kafka_bootstrap, updates,
                    models.register(registry, exported["v1"], champion=True))
    first = consume(kafka_bootstrap, workers.topic("predictions"), expected=200, timeout=30)
    assert {json.loads(r.value)["model_version"] for r in first} == {1}

    # 3. traffic flows (~300 ev/s) while v2 is promoted and announced
    def stream() -> None:
        for i in range(200, 2000, 30):
            produce(kafka_bootstrap, topic, records[i:i + 30])
            time.sleep(0.1)

    sender = threading.Thread(target=stream)
    sender.start()
    time.sleep(1.5)
    _publish_update(kafka_bootstrap, updates,
                    models.register(registry, exported["v2"], champion=True))
    sender.join()

    out = consume(kafka_bootstrap, workers.topic("predictions"), expected=2000, timeout=60,
                  settle=2.0)
    expected = _expected(exported, 2000)
    ids = [json.loads(r.value)["txn_id"] for r in out]
    assert len(ids) == 2000 and len(set(ids)) == 2000, "each event scored exactly once"
    versions = {1: 0, 2: 0}
    last_version: dict[int, int] = {}
    for rec in sorted(out, key=lambda r: (r.partition, r.offset)):
        value = json.loads(rec.value)
        version = value["model_version"]
        versions[version] += 1
        assert value["score"] == expected[f"v{version}"][value["txn_id"]], "version != scores"
        assert version >= last_version.get(rec.partition, 1), "went back to v1 after the swap"
        last_version[rec.partition] = version
    assert versions[1] >= 200 and versions[2] > 0, versions
    assert not np.isclose(expected["v1"][ids[-1]], expected["v2"][ids[-1]])
    assert "champion: v2 loaded" in worker.log_text()


def test_holding_without_model_pauses_only_scoring(workers, kafka_bootstrap, exported):
    """More held events than a stream buffer (4,096) holds: the other agents keep going, and
    once a model loads every held event is scored exactly once (none dropped by the pause)."""
    from tests.bad_inputs import dumps, valid

    registry = models.registry(workers.tmp / "data")
    worker = workers.start(**_env(FRAUDSTREAM_MODEL_POLL_INTERVAL_S="0"))
    base = models.traffic().enriched(limit=2000)
    held = [(key, value.replace(b'"txn_id": "', b'"txn_id": "r%d-' % round_, 1))
            for round_ in range(3) for key, value in base]
    produce(kafka_bootstrap, workers.topic("enriched"), held)
    deadline = time.monotonic() + 30
    while "NO LOADABLE MODEL" not in worker.log_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "NO LOADABLE MODEL" in worker.log_text()

    # the feature stages still run while scoring holds 6,000 events
    raw = [(f"card-{i}".encode(), dumps(valid(txn_id=f"live-{i}", card_id=f"card-{i}")))
           for i in range(30)]
    produce(kafka_bootstrap, workers.topic("transactions"), raw)
    enriched = consume(kafka_bootstrap, workers.topic("enriched"), expected=len(held) + 30,
                       timeout=60)
    assert {json.loads(r.value)["txn_id"] for r in enriched} >= {f"live-{i}" for i in range(30)}
    assert consume(kafka_bootstrap, workers.topic("predictions"), expected=1, timeout=2) == []

    _publish_update(kafka_bootstrap, workers.topic("model_updates"),
                    models.register(registry, exported["v1"], champion=True))
    out = consume(kafka_bootstrap, workers.topic("predictions"), expected=len(held) + 30,
                  timeout=120, settle=2.0)
    ids = [json.loads(r.value)["txn_id"] for r in out]
    assert len(ids) == len(set(ids)) == len(held) + 30, "each held event scored exactly once"


def test_fused_pipeline_holds_then_scores_every_transaction_once(workers, kafka_bootstrap,
                                                                 exported):
    """The default path (``FRAUDSTREAM_PIPELINE_SCORING=fused``): raw transactions and labels
    in, one hop, ``ml-predictions`` out. With no model nothing is processed (no prediction, no
    enriched record); once a champion and a shadow challenger load, every transaction has
    exactly one prediction per variant, each score the model's on the batch recomputation of
    its features, and an enriched record with those features."""
    from simulator import simulate
    from simulator.serialize import keys, label_values, transaction_values

    registry = models.registry(workers.tmp / "data")
    worker = workers.start(FRAUDSTREAM_MODEL_NAME=models.MODEL_NAME,
                           FRAUDSTREAM_SCORING_ENABLED="true", FRAUDSTREAM_SCORE_MODE="shadow",
                           FRAUDSTREAM_MODEL_POLL_INTERVAL_S="0")
    traffic = models.traffic()
    sim = simulate("realistic", seed=5, n_customers=300, n_terminals=600, n_days=4)
    txns, labels = sim.transactions(), sim.labels()
    assert txns.column("txn_id").to_pylist() == traffic.txns["txn_id"].tolist()
    produce(kafka_bootstrap, workers.topic("labels"),
            list(zip(keys(labels), label_values(labels), strict=True)))
    produce(kafka_bootstrap, workers.topic("transactions"),
            list(zip(keys(txns), transaction_values(txns), strict=True)))
    n = txns.num_rows

    deadline = time.monotonic() + 20
    while "NO LOADABLE MODEL" not in worker.log_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "NO LOADABLE MODEL" in worker.log_text()
    assert consume(kafka_bootstrap, workers.topic("predictions"), expected=1, timeout=3) == []
    assert consume(kafka_bootstrap, workers.topic("enriched"), expected=1, timeout=1) == []
    assert consume(kafka_bootstrap, workers.topic("dlq"), expected=1, timeout=1) == []

    # challenger first: the champion's update loads both in one refresh
    # (registered first, v2 is registry version 1)
    challenger = models.register(registry, exported["v2"], threshold=0.4, alias="challenger")
    champion = models.register(registry, exported["v1"], threshold=0.3, champion=True)
    _publish_update(kafka_bootstrap, workers.topic("model_updates"), champion)
    version = {"v1": champion["version"], "v2": challenger["version"]}
    assert version["v1"] != version["v2"]
    out = consume(kafka_bootstrap, workers.topic("predictions"), expected=2 * n, timeout=120,
                  settle=2.0)
    enriched = consume(kafka_bootstrap, workers.topic("enriched"), expected=n, timeout=30,
                       settle=1.0)

    expected = _expected(exported, n)
    seen: dict[tuple[str, str], dict] = {}
    for rec in out:
        value = json.loads(rec.value)
        key = (value["txn_id"], value["variant"])
        assert key not in seen, f"{key} scored twice"
        seen[key] = value
        model = "v1" if value["variant"] == "champion" else "v2"
        assert value["model_version"] == version[model]
        assert value["shadow"] is (model == "v2")
        assert value["score"] == expected[model][value["txn_id"]], key
        assert value["decision"] == ("alert" if value["score"] >= value["threshold"] else "pass")
        assert rec.key == value["card_id"].encode()
    assert set(seen) == {(t, v) for t in expected["v1"] for v in ("champion", "challenger")}

    batch = traffic.features.set_index("txn_id")
    by_id = {json.loads(r.value)["txn_id"]: json.loads(r.value)["features"] for r in enriched}
    assert len(enriched) == n and set(by_id) == set(batch.index)
    for name in DEFAULT_SPEC.names:
        got = np.array([by_id[t][name] for t in batch.index], dtype=float)
        assert np.allclose(got, batch[name].to_numpy(float), rtol=1e-9, atol=0.0), name
    assert consume(kafka_bootstrap, workers.topic("dlq"), expected=1, timeout=1) == []
    assert f"fraudstream_end_to_end_latency_seconds_count {float(n)}" in worker.metrics()


async def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> list:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        return [await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)]
    finally:
        await consumer.stop()


def test_a_stop_while_holding_for_a_model_is_prompt_and_commits_nothing(workers, kafka_bootstrap):
    """``hold`` mode with no model: a SIGTERM ends the worker promptly (the held events are
    released unacknowledged, as at a rebalance), and no offset is committed past them."""
    from tests.bad_inputs import dumps, valid

    worker = workers.start(FRAUDSTREAM_MODEL_NAME=models.MODEL_NAME,
                           FRAUDSTREAM_SCORING_ENABLED="true",
                           FRAUDSTREAM_MODEL_POLL_INTERVAL_S="0")
    produce(kafka_bootstrap, workers.topic("transactions"),
            [(f"card-{i}".encode(), dumps(valid(txn_id=f"held-{i}", card_id=f"card-{i}")))
             for i in range(30)])
    deadline = time.monotonic() + 20
    while "NO LOADABLE MODEL" not in worker.log_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "NO LOADABLE MODEL" in worker.log_text()
    time.sleep(3.0)  # a few commit intervals while holding
    started = time.monotonic()
    worker.proc.terminate()
    try:
        worker.proc.wait(timeout=20)
    finally:
        took = time.monotonic() - started
        worker.stop(kill=True)
    committed = asyncio.run(_committed(kafka_bootstrap, f"fraudstream-{workers.unique}",
                                       workers.topic("transactions"), 3))
    assert committed == [None, None, None], committed
    print(f"SIGTERM while holding: exited in {took:.1f} s")
    assert took < 20, f"SIGTERM took {took:.1f} s"
