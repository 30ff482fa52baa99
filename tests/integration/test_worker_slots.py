"""Two workers on one host and one data folder: each takes its own slot, state folder and port."""

from __future__ import annotations

import time

import pytest

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
    time.sleep(1.0)
    for worker in (first, second):
        assert worker.proc.poll() is None, worker.log_text()[-3000:]
        assert "fraudstream" in worker.metrics()  # each serves its own web port
    data = workers.tmp / "data" / "workers"
    pids = {int((data / f"{n}.lock").read_text().split()[0]) for n in (0, 1)}
    assert pids == {first.proc.pid, second.proc.pid}
    folders = [p for n in (0, 1) for p in (data / str(n)).iterdir() if p.is_dir()]
    assert len(folders) == 2 and all(any(p.rglob("*")) for p in folders), folders
