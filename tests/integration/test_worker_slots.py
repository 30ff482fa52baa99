"""Two workers on one host and one data folder: each takes its own slot, state folder and port."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from features.batch import compute_features
from features.spec import DEFAULT_SPEC
from infra.kafka_io import consume, produce
from simulator import simulate
from simulator.serialize import keys, transaction_values

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_two_workers_share_a_data_folder_with_rocksdb_state(workers, kafka_bootstrap):
    # RocksDB tables: before worker slots, the second worker crashed on card-state-0.db/LOCK
    first = workers.start(FRAUDSTREAM_STORE="rocksdb://")
    second = workers.start(FRAUDSTREAM_STORE="rocksdb://")
    sim = simulate("realistic", seed=11, n_customers=60, n_terminals=80, n_days=2)
    txns = sim.transactions()
    produce(kafka_bootstrap, workers.topic("transactions"),
            list(zip(keys(txns), transaction_values(txns), strict=True)))
    out = consume(kafka_bootstrap, workers.topic("enriched"), expected=txns.num_rows,
                  timeout=240)
    assert len({rec.json()["txn_id"] for rec in out}) == txns.num_rows
    # split across two workers (terminal view fed by the other's state log), the features
    # are still those of the batch recomputation; a redelivery never changes them
    labels = sim.labels().to_pandas().iloc[:0]
    batch = compute_features(txns.to_pandas(), labels).set_index("txn_id")
    by_id: dict[str, dict] = {}
    for rec in out:
        value = json.loads(rec.value)
        previous = by_id.setdefault(value["txn_id"], value["features"])
        assert previous == value["features"], value["txn_id"]
    for name in DEFAULT_SPEC.names:
        got = np.array([by_id[t][name] for t in batch.index], dtype=float)
        want = batch[name].to_numpy(float)
        assert np.allclose(got, want, rtol=1e-9, atol=0.0), (
            name, int((~np.isclose(got, want, rtol=1e-9, atol=0.0)).sum()))
    time.sleep(1.0)
    for worker in (first, second):
        assert worker.proc.poll() is None, worker.log_text()[-3000:]
        assert "fraudstream" in worker.metrics()  # each serves its own web port
    data = workers.tmp / "data" / "workers"
    pids = {int((data / f"{n}.lock").read_text().split()[0]) for n in (0, 1)}
    assert pids == {first.proc.pid, second.proc.pid}
    folders = [p for n in (0, 1) for p in (data / str(n)).iterdir() if p.is_dir()]
    assert len(folders) == 2 and all(any(p.rglob("*")) for p in folders), folders
