"""``POST /score`` on a real worker: Feast online features, the champion, freshness flags."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import redis as redis_client

from features.spec import DEFAULT_SPEC
from features.txn import transaction_features
from infra.kafka_io import consume, produce
from simulator.serialize import keys, transaction_values
from tests.support import models

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _post(port: int, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/score",
                                     data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_score_reads_feast_and_flags_stale_features(workers, kafka_bootstrap, redis_url):
    exported = models.train(seed=1, rounds=30)
    registry = models.registry(workers.tmp / "data")
    models.register(registry, exported, threshold=0.3, champion=True)
    url = redis_url.rsplit("/", 1)[0] + "/8"
    redis_client.Redis.from_url(url).flushdb()
    worker = workers.start(REDIS_URL=url, FRAUDSTREAM_FEAST_ENABLED="true",
                           FRAUDSTREAM_FEAST_MAX_INTERVAL_S="0.2",
                           FRAUDSTREAM_FEAST_OFFLINE="false",
                           FRAUDSTREAM_FEAST_PUSH_PROCESS="false",
                           FRAUDSTREAM_MODEL_NAME=models.MODEL_NAME,
                           FRAUDSTREAM_SCORING_ENABLED="true",
                           FRAUDSTREAM_SCORE_MAX_FEATURE_AGE_S="300")
    from simulator import simulate

    txns = simulate("realistic", seed=9, n_customers=60, n_terminals=80, n_days=1).transactions()
    produce(kafka_bootstrap, workers.topic("transactions"),
            list(zip(keys(txns), transaction_values(txns), strict=True)))
    enriched = [json.loads(r.value) for r in consume(
        kafka_bootstrap, workers.topic("enriched"), expected=txns.num_rows, timeout=60)]
    last = max(enriched, key=lambda v: (v["ts"], v["txn_id"]))
    new = {k: last[k] for k in ("card_id", "terminal_id", "currency", "lat", "lon", "country",
                                "mcc", "channel") if k in last}
    new.update(txn_id="sync-1", amount=123.45, ts=last["ts"] + 1_000)

    status, body = 0, {}
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:  # until Feast holds the newest rows
        status, body = _post(worker.web_port, new)
        if status == 200 and body["features"]["card"]["age_s"] <= 1.0:
            break
        time.sleep(0.5)
    assert status == 200, body
    vector = {**last["features"], **transaction_features(new, DEFAULT_SPEC)}
    matrix = np.asarray([[vector[n] for n in DEFAULT_SPEC.names]], dtype=np.float32)
    expected = models.scores(exported, matrix)[0]
    assert body["score"] == pytest.approx(expected, abs=1e-6)
    assert body["decision"] == ("alert" if body["score"] >= 0.3 else "pass")
    assert (body["model_version"], body["threshold"], body["stale"]) == (1, 0.3, False)

    status, late = _post(worker.web_port, {**new, "ts": last["ts"] + 3_600_000})
    assert status == 200 and late["stale"] is True
    assert late["features"]["card"]["stale"] and late["features"]["card"]["age_s"] >= 3599

    status, body = _post(worker.web_port, {**new, "card_id": "never-seen"})
    assert (status, body["reason"]) == (422, "no_features")
    status, body = _post(worker.web_port, {**new, "amount": -1})
    assert (status, body["reason"]) == (400, "invalid_amount")
    assert 'fraudstream_score_request_seconds_count{outcome="ok"}' in worker.metrics()
