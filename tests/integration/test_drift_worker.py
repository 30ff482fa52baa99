"""The drift agents in a real worker against a real broker: a shift in the champion's scores
gives exactly one model-retrain record with the evidence of the change."""

from __future__ import annotations

import json
import random
import re
import time

import pytest

from tests.support.kafka import consume, produce

pytestmark = [pytest.mark.integration]

T0 = 1_522_540_800_000  # 2018-04-01T00:00:00Z
N_BEFORE, N_AFTER = 3000, 3000


def prediction(i: int, score: float, **extra: object) -> tuple[bytes, bytes]:
    card = f"C{i % 1000:04d}"
    rec = {"txn_id": f"t{i:06d}", "card_id": card, "terminal_id": "T1",
           "event_ts": T0 + i * 1000, "score": score, "decision": "pass", "threshold": 0.5,
           "model_name": "fraud-lgbm", "model_version": 3, "variant": "champion",
           "shadow": False, "scored_at": T0, "latency_ms": 1.0, **extra}
    return card.encode(), json.dumps(rec).encode()


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_metric(worker, name: str, value: float, timeout: float = 45.0, **labels: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metric(worker.metrics(), name, **labels) >= value:
            return
        time.sleep(0.2)
    raise AssertionError(f"{name}{labels} did not reach {value}: "
                         f"{metric(worker.metrics(), name, **labels)}")


def test_score_shift_gives_one_retrain_event(workers, kafka_bootstrap):
    started = time.monotonic()
    worker = workers.start(FRAUDSTREAM_DRIFT_ENABLED="true",
                           FRAUDSTREAM_DRIFT_SIGNALS="score,error")
    rng = random.Random(7)
    before = [prediction(i, rng.betavariate(1, 30)) for i in range(N_BEFORE)]
    after = [prediction(i, rng.betavariate(1, 8)) for i in range(N_BEFORE, N_BEFORE + N_AFTER)]
    ignored = [prediction(90_000 + i, 0.99, shadow=True, variant="challenger") for i in range(200)]
    labels = [(key, json.dumps({"txn_id": json.loads(v)["txn_id"], "card_id": key.decode(),
                                "terminal_id": "T1", "is_fraud": 0,
                                "ts": json.loads(v)["event_ts"],
                                "reported_at": json.loads(v)["event_ts"] + 7 * 86_400_000}
                               ).encode()) for key, v in before[:100]]

    # Phase 1, stationary, with redeliveries (the same records again) and ignored records.
    produce(kafka_bootstrap, workers.topic("predictions"), before + before[:500] + ignored)
    produce(kafka_bootstrap, workers.topic("labels"), labels)
    wait_metric(worker, "fraudstream_drift_window_width", N_BEFORE, model="fraud-lgbm",
                signal="score")
    wait_metric(worker, "fraudstream_drift_inputs_total", 100, kind="error", outcome="fed")
    # Phase 2: the shift (produced after phase 1 went through, so the change point is exact).
    produce(kafka_bootstrap, workers.topic("predictions"), after + after[:300])

    records = consume(kafka_bootstrap, workers.topic("retrain"), expected=1, timeout=30,
                      settle=3.0)
    wait_metric(worker, "fraudstream_drift_inputs_total", N_AFTER, kind="prediction",
                outcome="fed")  # all of phase 2 went through; still one record
    records = consume(kafka_bootstrap, workers.topic("retrain"), expected=2, timeout=2,
                      settle=0)
    assert len(records) == 1, [r.value for r in records]
    rec = json.loads(records[0].value)
    assert records[0].key == b"fraud-lgbm"
    assert (rec["model_name"], rec["model_version"], rec["signal"], rec["detector"]) == (
        "fraud-lgbm", "3", "score", "adwin")
    ev = rec["evidence"]
    delay = ev["n_seen"] - N_BEFORE
    print(f"detected after {delay} post-change predictions (n_seen {ev['n_seen']})")
    assert 0 < delay <= 400
    assert int(rec["txn_id"][1:]) >= N_BEFORE and rec["event_ts"] >= T0 + N_BEFORE * 1000
    assert abs(ev["mean_before"] - 1 / 31) < 0.01          # Beta(1, 30) mean
    assert ev["mean_after"] > ev["mean_before"]            # ADWIN's kept window (mixed)
    assert abs(ev["recent_mean"] - 1 / 9) < 0.04            # the last 64: Beta(1, 8), mean 0.111
    assert ev["width_before"] == ev["n_seen"] and 0 < ev["width_after"] < ev["width_before"]
    assert len(rec["idempotency_key"]) == 32

    text = worker.metrics()
    assert metric(text, "fraudstream_drift_inputs_total", kind="prediction",
                  outcome="fed") == N_BEFORE + N_AFTER
    assert metric(text, "fraudstream_drift_inputs_total", kind="prediction",
                  outcome="duplicate") == 800
    assert metric(text, "fraudstream_drift_inputs_total", kind="prediction",
                  outcome="skipped") == 200
    assert metric(text, "fraudstream_drift_detections_total", model="fraud-lgbm",
                  signal="score", emitted="true") == 1
    assert time.monotonic() - started < 60
