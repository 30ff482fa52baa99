"""The central test: every enriched record equals the batch recomputation of the same spec.

Simulated traffic (realistic profile: geo, card testing, impossible travel) with labels goes
through real worker processes on a real broker; what comes out of ``transactions-enriched`` is
compared, feature by feature, with :func:`features.batch.compute_features` over the same
transactions and labels: counts exactly, floats within 1e-9 relative. Then again with the worker
killed (SIGKILL) in the middle and restarted: state comes back from the changelogs, and nothing
is counted twice.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pandas as pd
import pytest

from features.batch import compute_features
from features.spec import DEFAULT_SPEC
from infra.kafka_io import consume, produce
from simulator import simulate
from simulator.serialize import keys, label_values, transaction_values

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200)]

#: ~100,000 transactions: 5,000 cards over 12 days (labels reported after 7 days).
DAYS = int(os.environ.get("FRAUDSTREAM_EXACTNESS_DAYS", "12"))
#: Days of the same traffic that the killed-worker test replays.
RESTART_DAYS = min(DAYS, 4)
T_START = 1_522_540_800_000  # 2018-04-01, the simulator's first day


@pytest.fixture(scope="module")
def traffic():
    sim = simulate("realistic", seed=11, n_days=DAYS)
    txns = sim.transactions()
    labels = sim.labels()
    batch = compute_features(txns.to_pandas(), labels.to_pandas()).set_index("txn_id")
    return {
        "tx": list(zip(keys(txns), transaction_values(txns), strict=True)),
        "labels": list(zip(keys(labels), label_values(labels), strict=True)),
        "batch": batch,
    }


def _wait_labels(worker, count: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    line = "fraudstream_labels_applied_total "
    while time.monotonic() < deadline:
        for row in worker.metrics().splitlines():
            if row.startswith(line) and float(row[len(line):]) >= count:
                return
        time.sleep(0.5)
    raise TimeoutError(f"labels not applied within {timeout} s")


def _assert_equal_to_batch(records, batch: pd.DataFrame) -> None:
    by_id: dict[str, dict] = {}
    for rec in records:
        value = json.loads(rec.value)
        assert value["feature_spec_version"] == DEFAULT_SPEC.version
        assert rec.key == value["card_id"].encode()
        previous = by_id.setdefault(value["txn_id"], value)
        assert previous["features"] == value["features"], "a redelivery changed its features"
    assert set(by_id) == set(batch.index), "every transaction enriched exactly once"
    names = DEFAULT_SPEC.names
    stream = pd.DataFrame([[by_id[t]["features"][n] for n in names] for t in batch.index],
                          index=batch.index, columns=names)
    for name in names:
        got, want = stream[name].to_numpy(float), batch[name].to_numpy(float)
        if "count" in name:
            bad = np.flatnonzero(got != want)
        else:
            bad = np.flatnonzero(~np.isclose(got, want, rtol=1e-9, atol=0.0))
        assert bad.size == 0, (
            f"{name}: {bad.size} of {len(got)} differ, e.g. {batch.index[bad[0]]}: "
            f"stream {got[bad[0]]!r} batch {want[bad[0]]!r}")


def test_stream_equals_batch(workers, kafka_bootstrap, traffic):
    worker = workers.start()
    produce(kafka_bootstrap, workers.topic("labels"), traffic["labels"])
    _wait_labels(worker, len(traffic["labels"]))
    produce(kafka_bootstrap, workers.topic("transactions"), traffic["tx"])
    out = consume(kafka_bootstrap, workers.topic("enriched"), expected=len(traffic["tx"]),
                  timeout=900, settle=1.0)
    assert len(traffic["tx"]) >= 100_000 or DAYS < 12
    _assert_equal_to_batch(out, traffic["batch"])


def test_stream_equals_batch_across_a_killed_worker(workers, kafka_bootstrap, traffic):
    # The first RESTART_DAYS days of the same traffic (labels of later days are irrelevant to
    # them): the restart path is what is under test, and the full run takes minutes.
    last_ts = T_START + RESTART_DAYS * 86_400_000
    tx = [(k, v) for k, v in traffic["tx"] if json.loads(v)["ts"] < last_ts]
    labels = [(k, v) for k, v in traffic["labels"] if json.loads(v)["reported_at"] < last_ts]
    batch = traffic["batch"].iloc[: len(tx)]
    first = workers.start()
    produce(kafka_bootstrap, workers.topic("labels"), labels)
    _wait_labels(first, len(labels))
    half = len(tx) // 2
    produce(kafka_bootstrap, workers.topic("transactions"), tx[:half])
    consume(kafka_bootstrap, workers.topic("enriched"), expected=half // 2, timeout=600,
            settle=0)
    first.stop(kill=True)  # SIGKILL in the middle of the stream: no clean shutdown, no commit
    produce(kafka_bootstrap, workers.topic("transactions"), tx[half:])
    workers.start()
    out = consume(kafka_bootstrap, workers.topic("enriched"), expected=len(tx), timeout=900,
                  settle=3.0, distinct=lambda record: json.loads(record.value)["txn_id"])
    assert len(out) >= len(tx)  # redeliveries after the kill are allowed, losses are not
    _assert_equal_to_batch(out, batch)
