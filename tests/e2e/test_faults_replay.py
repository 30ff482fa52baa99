"""Fault (issue 11, item 4): a full-speed replay of handbook-shaped data.

``fraudstream replay FILE --speed 0`` sends weeks of handbook-profile traffic (with its labels,
reported 7 days later) as fast as it can while a worker consumes: the worker's input partitions
are read at different speeds, so their event times diverge by days (the case that sent
transactions to the late topic before the rebuild). The replayed records are what
``fraudstream replay --to parquet`` writes for the same file; the stream must meet the fault
criterion on them (scoring off: one enriched record per transaction, features equal to the
batch recomputation, nothing late, nothing dead-lettered).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pyarrow.parquet as pq
import pytest

from infra.worker_process import ROOT, create_topics
from tests.support import faults

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(480)]

CUSTOMERS, DAYS = 400, 21


def _replay(env: dict[str, str], *args: str) -> str:
    command = [sys.executable, "-m", "app.cli.replay", *args]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_full_speed_replay(workers, kafka_bootstrap, tmp_path):
    from simulator import simulate

    sim = simulate("handbook", seed=7, n_customers=CUSTOMERS, n_terminals=2 * CUSTOMERS,
                   n_days=DAYS)
    source = tmp_path / "handbook.parquet"
    pq.write_table(sim.transactions(), source)
    env = workers.env()
    _replay(env, str(source), "--to", "parquet", "--out", str(tmp_path / "sent"))
    data = faults.from_tables(pq.read_table(tmp_path / "sent" / "transactions.parquet"),
                              pq.read_table(tmp_path / "sent" / "labels.parquet"))
    create_topics(kafka_bootstrap, env)
    began = time.monotonic()
    worker = workers.start()
    sampler = QueueSampler(worker)
    sampler.start()
    shown = _replay(env, str(source), "--speed", "0")
    sent = time.monotonic() - began
    outcome = faults.check(kafka_bootstrap, workers, data, orphans=False)
    sampler.done.set()
    sampler.join()
    faults.assert_no_orphans(workers)
    assert f"{len(data):,}" in shown, shown
    print(f"full-speed replay of {len(data)} handbook transactions (sent in {sent:.0f} s, "
          f"up to {sampler.most:.0f} events queued for the event-time alignment): "
          f"{outcome.summary()} in {time.monotonic() - began:.0f} s")


class QueueSampler(threading.Thread):
    """The most events the worker's pipeline had queued (fetched, waiting for their turn in
    the event-time merge), sampled from /metrics."""

    def __init__(self, worker) -> None:
        super().__init__(daemon=True)
        self.worker, self.most, self.done = worker, 0.0, threading.Event()

    def run(self) -> None:
        name = "fraudstream_pipeline_queued_events "
        while not self.done.wait(0.5):
            try:
                for line in self.worker.metrics().splitlines():
                    if line.startswith(name):
                        self.most = max(self.most, float(line[len(name):]))
            except OSError:
                pass
