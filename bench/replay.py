"""A full-speed replay of the handbook profile through one full-pipeline worker.

What ``fraudstream replay --speed 0`` does (the same :func:`simulator.run.prepare_historical`
and :func:`simulator.run.send_to_kafka`: transactions and their labels, reported 7 days later,
in event-time order, as fast as the producer goes), into a running worker with a model. Then:

* total time: first record sent -> last prediction published;
* the rate of the first and of the last ``chunk`` (100,000) predictions, by their record
  timestamps (does the pipeline slow down as state and history grow?);
* late: the worker's late counter and the records of ``transactions-late``;
* scored: distinct transactions with a champion prediction;
* features == batch: every enriched record against :func:`features.batch.compute_features`
  over the same transactions and labels (counts exactly, floats within 1e-9 relative).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HANDBOOK_ROWS = 1_758_314  # simulate("handbook", seed=3): 5,000 cards, 10,000 terminals, 183 d
HANDBOOK_DAYS = 183


def handbook(n: int, seed: int = 3) -> Any:
    """The first ``n`` transactions of the handbook profile (days scaled to ``n``)."""
    from simulator import simulate

    days = min(HANDBOOK_DAYS, max(2, math.ceil(HANDBOOK_DAYS * n / HANDBOOK_ROWS) + 1))
    table = simulate("handbook", seed=seed, n_days=days).transactions()
    return table.slice(0, min(n, table.num_rows))


def _metric(text: str, name: str) -> float:
    """Sum of the samples of ``name`` in a Prometheus page.

    >>> _metric('a_total{x="1"} 2.0\\na_total{x="2"} 3.0\\nb 1', "a_total")
    5.0
    """
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? ([-+0-9.eE]+|NaN)$", line)
        if m:
            total += float(m.group(2))
    return total


def run(bootstrap: str, workdir: Path, n: int = HANDBOOK_ROWS, chunk: int = 100_000,
        check_batch: bool = True, cap_s: float | None = None,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Replay, wait until every transaction is out (or ``cap_s`` after the first send, or
    120 s without progress), read the outputs back, compare with the batch."""
    from bench.scoring import _env, _wait_for_model, _with_model
    from config.security import aiokafka_kwargs
    from config.settings import settings_for_env
    from infra.kafka_io import consume
    from infra.worker_process import create_topics, start_worker, topic_name
    from simulator.run import prepare_historical, send_to_kafka

    began = time.perf_counter()
    table = handbook(n)
    n = table.num_rows
    table, labels, plan = prepare_historical(table, label_delay_days=7.0, speed=None)
    generated_s = time.perf_counter() - began
    log(f"  {n:,} handbook transactions generated in {generated_s:.1f} s")
    chunk = min(chunk, max(1, n // 10))
    suffix = uuid.uuid4().hex[:8]
    env = _env(bootstrap, workdir, suffix)
    _with_model(workdir / suffix)
    create_topics(bootstrap, env)
    worker = start_worker(env, workdir / f"{suffix}.log")
    out: dict[str, Any] = {"transactions": n, "chunk": chunk}
    try:
        out["worker_ready_s"] = round(worker.wait_ready(), 2)
        _wait_for_model(worker)
        sent_at = time.time()
        summary = asyncio.run(send_to_kafka(
            bootstrap, aiokafka_kwargs(settings_for_env(env)), plan, table, labels,
            tx_topic=topic_name("transactions", suffix),
            label_topic=topic_name("labels", suffix), paced=False))
        out["sender"] = {"transactions": summary.transactions, "labels": summary.labels,
                         "seconds": round(summary.elapsed_s, 1),
                         "per_s": round(summary.rate)}
        log(f"  sent in {summary.elapsed_s:.0f} s ({summary.rate:,.0f} tx/s); waiting for "
            "the worker ...")
        done = 0.0
        last_change, last = time.monotonic(), -1.0
        while True:
            page = worker.metrics()
            done = _metric(page, "fraudstream_stage_events_total")
            late = _metric(page, "fraudstream_transactions_late_total")
            if done + late >= n:
                out["completed"] = True
                break
            if cap_s is not None and time.time() - sent_at > cap_s:
                log(f"  capped at {cap_s:.0f} s: {done:,.0f} of {n:,} out")
                out["completed"] = False
                out["out_at_cap"] = int(done)
                break
            if done != last:
                last, last_change = done, time.monotonic()
            elif time.monotonic() - last_change > 120:
                log(f"  no progress for 120 s at {done:,.0f}: giving up")
                out["completed"] = False
                break
            time.sleep(2.0)
        page = worker.metrics()
        out["worker_rss_mb"] = _rss(worker)
        out["late_counter"] = int(_metric(page, "fraudstream_transactions_late_total"))
        out["invalid_counter"] = int(_metric(page, "fraudstream_transactions_invalid_total"))
    finally:
        worker.stop()
    log("  reading the outputs back ...")
    expect = n if out.get("completed") else int(done)
    preds = consume(bootstrap, topic_name("predictions", suffix), expected=expect,
                    timeout=900, settle=1.0, idle=10.0)
    first_ts: dict[str, int] = {}
    for rec in preds:
        value = json.loads(rec.value or b"{}")
        if value.get("variant") == "champion" and not value.get("fail_open"):
            txn = value["txn_id"]
            if txn not in first_ts or rec.timestamp < first_ts[txn]:
                first_ts[txn] = rec.timestamp
    ts = np.sort(np.fromiter(first_ts.values(), dtype=np.int64))
    out["scored"] = len(first_ts)
    out["prediction_records"] = len(preds)
    del preds
    if ts.size:
        out["total_s"] = round((int(ts[-1]) - sent_at * 1000) / 1000, 1)
        out["events_per_s"] = round(ts.size / max(out["total_s"], 1e-9))
        if ts.size >= 2 * chunk:
            first = (chunk - 1) / max((ts[chunk - 1] - ts[0]) / 1000, 1e-9)
            lastr = (chunk - 1) / max((ts[-1] - ts[-chunk]) / 1000, 1e-9)
            out["first_chunk_per_s"], out["last_chunk_per_s"] = round(first), round(lastr)
            out["last_vs_first"] = round(lastr / first, 2)
    out["late_records"] = len(consume(bootstrap, topic_name("late", suffix), expected=10**9,
                                      timeout=60, idle=3.0))
    if check_batch:
        out.update(_versus_batch(bootstrap, topic_name("enriched", suffix), table, labels,
                                 expect, log))
    return out


def _rss(worker: Any) -> float:
    import psutil

    return round(psutil.Process(worker.proc.pid).memory_info().rss / 2**20, 1)


def _versus_batch(bootstrap: str, topic: str, table: Any, labels: Any, n: int,
                  log: Callable[[str], None]) -> dict[str, Any]:
    """Enriched records against the batch recomputation: mismatching transactions."""
    from features.batch import compute_features
    from features.spec import DEFAULT_SPEC
    from infra.kafka_io import consume

    started = time.perf_counter()
    names = DEFAULT_SPEC.names
    stream: dict[str, list[float]] = {}
    for rec in consume(bootstrap, topic, expected=n, timeout=900, settle=1.0, idle=10.0):
        value = json.loads(rec.value or b"{}")
        feats = value["features"]
        stream.setdefault(value["txn_id"], [feats[k] for k in names])
    log(f"  {len(stream):,} enriched records read; batch recomputation ...")
    txns = table.to_pandas()
    # a transaction's features depend on the past only: the prefix up to the last enriched
    # one is enough when the replay was capped
    enriched_pos = np.flatnonzero(txns["txn_id"].isin(stream).to_numpy())
    if enriched_pos.size:
        txns = txns.iloc[:int(enriched_pos[-1]) + 1]
    batch = compute_features(txns, None if labels is None else labels.to_pandas()
                             ).set_index("txn_id")
    ids = [t for t in batch.index if t in stream]
    got = np.asarray([stream[t] for t in ids], dtype=float).reshape(len(ids), len(names))
    want = batch.loc[ids, list(names)].to_numpy(float)
    bad = np.zeros(len(ids), dtype=bool)
    worst: dict[str, int] = {}
    for j, name in enumerate(names):
        if "count" in name:
            diff = got[:, j] != want[:, j]
        else:
            diff = ~np.isclose(got[:, j], want[:, j], rtol=1e-9, atol=0.0)
        if diff.any():
            worst[name] = int(diff.sum())
        bad |= diff
    return {"enriched": len(stream), "missing_enriched": int(len(batch.index) - len(ids)),
            "features_mismatch": int(bad.sum()), "features_mismatch_by_name": worst,
            "features_equal_batch": bool(not bad.any() and len(ids) == len(batch.index)),
            "batch_check_s": round(time.perf_counter() - started, 1)}
