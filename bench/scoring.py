"""Scoring benchmarks: full pipeline throughput, end-to-end latency at an offered rate, the naive
per-event design, and ``POST /score`` latency.

* ``pipeline``: N valid transactions pre-loaded, one worker (validate -> card features ->
  terminal features -> score -> publish); events/s from the predictions' record timestamps.
* ``latency``: transactions produced at an offered rate (default 1,000 ev/s) into a running
  worker; per prediction, publication (its Kafka timestamp) minus the transaction's Kafka
  timestamp (carried as ``source_ts_ms``): p50 / p95 / p99.
* ``naive``: the seed pipelines' design, per event in one process: a Feast push of the card
  row, a Feast online read of card and terminal rows, a single-row ONNX predict. No Kafka at
  all, so it is an upper bound for that design.
* ``score_api``: sequential ``POST /score`` requests against a worker with Feast on; client-side
  latency p50 / p99.

The model is a small real one (trained on simulated traffic, tests/support/models.py);
scoring cost depends on the tree count, not on the model's quality.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from infra.kafka_io import consume, produce
from infra.worker_process import create_topics, isolated_env, start_worker, topic_name


def _percentiles(values_ms: list[float]) -> dict[str, float]:
    arr = np.asarray(values_ms, dtype=float)
    return {f"p{p}_ms": round(float(np.percentile(arr, p)), 2) for p in (50, 95, 99)} | {
        "max_ms": round(float(arr.max()), 2), "n": len(arr)}


def _models() -> Any:
    """tests/support/models.py (the benchmarks run from a source checkout, like the tests)."""
    import sys

    from infra.worker_process import ROOT

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.support import models

    return models


def _with_model(data_dir: Path, model_name: str = "fraud-bench") -> None:
    models = _models()

    registry = models.registry(data_dir, name=model_name)
    models.register(registry, models.train(seed=1, rounds=100), threshold=0.3, champion=True)


def _env(bootstrap: str, workdir: Path, suffix: str, **extra: str) -> dict[str, str]:
    base = {"FRAUDSTREAM_STORE": "memory://", "FRAUDSTREAM_LOG_LEVEL": "WARNING",
            "FRAUDSTREAM_FEAST_ENABLED": "false", "FRAUDSTREAM_MODEL_NAME": "fraud-bench",
            "FRAUDSTREAM_MODEL_POLL_INTERVAL_S": "0"}
    return isolated_env(bootstrap, workdir / suffix, suffix, **(base | extra))


def _wait_for_model(worker: Any, timeout: float = 90.0) -> None:
    """Until the worker serves a champion (the first load imports MLflow: seconds)."""
    deadline = time.monotonic() + timeout
    while 'fraudstream_model_info{alias="champion"' not in worker.metrics():
        if time.monotonic() > deadline:
            raise TimeoutError("the worker loaded no model")
        time.sleep(0.5)


def pipeline(bootstrap: str, records: list[tuple[bytes, bytes]], workdir: Path) -> dict:
    """Full pipeline events/s on one worker, input pre-loaded."""
    suffix = uuid.uuid4().hex[:8]
    env = _env(bootstrap, workdir, suffix)
    _with_model(workdir / suffix)
    create_topics(bootstrap, env)
    produce(bootstrap, topic_name("transactions", suffix), records)
    worker = start_worker(env, workdir / f"{suffix}.log")
    try:
        ready = worker.wait_ready()
        out = consume(bootstrap, topic_name("predictions", suffix), expected=len(records),
                      timeout=900, settle=0.5)
    finally:
        worker.stop()
    ts = [r.timestamp for r in out]
    span = (max(ts) - min(ts)) / 1000
    return {"events": len(out), "events_per_s": round((len(out) - 1) / span),
            "seconds": round(span, 2), "worker_ready_s": round(ready, 2)}


async def _paced(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]],
                 rate: float) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
    await producer.start()
    try:
        start = time.perf_counter()
        for i, (key, value) in enumerate(records):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await producer.send(topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


def latency(bootstrap: str, records: list[tuple[bytes, bytes]], workdir: Path,
            rate: float = 1_000.0, warmup: int = 2_000) -> dict:
    """End-to-end latency percentiles at an offered rate (after ``warmup`` events)."""
    suffix = uuid.uuid4().hex[:8]
    env = _env(bootstrap, workdir, suffix)
    _with_model(workdir / suffix)
    create_topics(bootstrap, env)
    worker = start_worker(env, workdir / f"{suffix}.log")
    try:
        worker.wait_ready()
        _wait_for_model(worker)
        asyncio.run(_paced(bootstrap, topic_name("transactions", suffix), records, rate))
        out = consume(bootstrap, topic_name("predictions", suffix), expected=len(records),
                      timeout=120, settle=0.5)
    finally:
        worker.stop()
    lat = []
    for rec in out:
        value = rec.json()
        source = value["scored_at"] - value["latency_ms"]
        lat.append(rec.timestamp - source)
    order = sorted(range(len(out)), key=lambda i: out[i].timestamp)
    measured = [lat[i] for i in order[warmup:]]
    return {"offered_per_s": rate, "events": len(out), **_percentiles(measured)}


def _enriched(n: int) -> list[tuple[bytes, bytes]]:
    """``n`` enriched records: the simulated traffic's, repeated with fresh txn ids."""
    models = _models()

    base = models.traffic().enriched()
    out = []
    for i in range(n):
        key, value = base[i % len(base)]
        record = json.loads(value)
        record["txn_id"] = f"{record['txn_id']}-{i // len(base)}"
        out.append((key, json.dumps(record).encode()))
    return out


def scoring_stage(bootstrap: str, n: int, workdir: Path) -> dict:
    """The scoring agent alone: enriched records pre-loaded, predictions/s on one worker."""
    suffix = uuid.uuid4().hex[:8]
    env = _env(bootstrap, workdir, suffix)
    _with_model(workdir / suffix)
    create_topics(bootstrap, env)
    produce(bootstrap, topic_name("enriched", suffix), _enriched(n))
    worker = start_worker(env, workdir / f"{suffix}.log")
    try:
        worker.wait_ready()
        out = consume(bootstrap, topic_name("predictions", suffix), expected=n, timeout=600,
                      settle=0.5)
    finally:
        worker.stop()
    ts = [r.timestamp for r in out]
    span = (max(ts) - min(ts)) / 1000
    return {"events": len(out), "events_per_s": round((len(out) - 1) / span)}


def score_batch_cost(n: int = 20_000, batch: int = 256) -> dict:
    """In-process cost of :func:`app.scoring.scorer.score_batch` (parse, predict, records,
    JSON encoding), without Kafka or Faust."""
    import tempfile

    from app.scoring.models import ModelHolder, RegistrySource
    from app.scoring.records import encode
    from app.scoring.scorer import score_batch
    from app.scoring.split import SplitPolicy
    from features.spec import DEFAULT_SPEC

    with tempfile.TemporaryDirectory() as tmp:
        _with_model(Path(tmp))
        models = _models()
        holder = ModelHolder(RegistrySource(models.registry(Path(tmp), name="fraud-bench"),
                                            DEFAULT_SPEC.names, DEFAULT_SPEC.version))
        holder.refresh()
        raws = [v for _, v in _enriched(n)]
        policy = SplitPolicy("shadow")
        champion = holder.champion
        if champion is None:
            raise RuntimeError("the benchmark model did not load")
        started = time.perf_counter()
        for i in range(0, n, batch):
            result = score_batch(raws[i:i + batch], [0.0] * batch, champion, None, policy)
            for _, record in result.records:
                encode(record)
        seconds = time.perf_counter() - started
    return {"events": n, "batch": batch, "us_per_event": round(seconds / n * 1e6, 1),
            "events_per_s": round(n / seconds)}


def naive(n: int = 2_000) -> dict:
    """Per event: Feast push (1 row) + Feast online read (card + terminal) + 1-row predict."""
    import contextlib
    import sys
    import tempfile

    from app.feast_env import apply
    from app.feast_sink import FeastSink
    from app.scoring.online import read_rows
    from features.spec import DEFAULT_SPEC
    from infra.processes import start_redis
    models = _models()
    from models.serving import load_onnx_model

    exported = models.train(seed=1, rounds=100)
    scorer = load_onnx_model(exported.onnx_bytes, list(exported.feature_names),
                             exported.spec_version, exported.sha256)
    card_names = DEFAULT_SPEC.names_for("card")
    with tempfile.TemporaryDirectory(prefix="fraudstream-bench-naive-") as tmp:
        server = start_redis(Path(tmp) / "redis")
        try:
            url = f"redis://{server.host}:{server.port}/0"
            with contextlib.redirect_stdout(sys.stderr):
                store = apply(url, tmp)
            sink = FeastSink(store, None, metrics=False)
            ts0 = int(time.time() * 1000) - 3_600_000
            vector = np.zeros((1, len(DEFAULT_SPEC)), dtype=np.float32)
            timings = []
            for i in range(n):
                started = time.perf_counter()
                card, term = f"c{i % 500}", f"t{i % 900}"
                sink({"card": [(card, tuple(float(i) for _ in card_names), ts0 + i)]})
                read_rows(store, card, term, DEFAULT_SPEC)
                scorer.predict(vector)
                timings.append((time.perf_counter() - started) * 1000)
        finally:
            server.stop()
    warm = timings[100:]
    return {"events": len(warm), "events_per_s": round(1000 / float(np.mean(warm))),
            **_percentiles(warm)}


def score_api(bootstrap: str, workdir: Path, requests: int = 2_000) -> dict:
    """Client-side latency of sequential POST /score requests on a worker with Feast on."""
    from infra.processes import start_redis
    from simulator import simulate
    from simulator.serialize import keys, transaction_values

    suffix = uuid.uuid4().hex[:8]
    server = start_redis(workdir / f"redis-{suffix}")
    url = f"redis://{server.host}:{server.port}/0"
    env = _env(bootstrap, workdir, suffix, REDIS_URL=url, FRAUDSTREAM_FEAST_ENABLED="true",
               FRAUDSTREAM_FEAST_OFFLINE="false", FRAUDSTREAM_FEAST_MAX_INTERVAL_S="0.2")
    _with_model(workdir / suffix)
    create_topics(bootstrap, env)
    table = simulate("realistic", seed=4, n_customers=300, n_terminals=400,
                     n_days=2).transactions()
    produce(bootstrap, topic_name("transactions", suffix),
            list(zip(keys(table), transaction_values(table), strict=True)))
    worker = start_worker(env, workdir / f"{suffix}.log")
    try:
        worker.wait_ready()
        enriched = [r.json() for r in consume(
            bootstrap, topic_name("enriched", suffix), expected=table.num_rows, timeout=300)]
        bodies = [json.dumps({k: e[k] for k in ("txn_id", "card_id", "terminal_id", "amount",
                                                "currency", "ts")}).encode()
                  for e in enriched[-500:]]
        endpoint = f"http://127.0.0.1:{worker.web_port}/score"

        def post(body: bytes) -> tuple[int, float]:
            request = urllib.request.Request(endpoint, data=body, method="POST")
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                    response.read()
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            return status, (time.perf_counter() - started) * 1000

        deadline = time.monotonic() + 60
        while post(bodies[-1])[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        results = [post(bodies[i % len(bodies)]) for i in range(requests)]
        server_side = worker.metrics()
    finally:
        worker.stop()
        server.stop()
    ok = [ms for status, ms in results if status == 200]
    hist = [ln for ln in server_side.splitlines()
            if ln.startswith("fraudstream_score_request_seconds_sum")
            or ln.startswith("fraudstream_score_request_seconds_count")]
    return {"requests": requests, "ok": len(ok), **_percentiles(ok), "server": hist}


def run(bootstrap: str, workdir: Path, n: int = 30_000, rate: float = 1_000.0,
        seconds: float = 20.0, only: set[str] | None = None) -> dict[str, Any]:
    """The scoring benchmarks on one broker; a dict of results."""
    from bench.workload import transactions

    out: dict[str, Any] = {}
    if not only or "score_batch" in only:
        out["score_batch"] = score_batch_cost()
    if not only or "scoring_stage" in only:
        out["scoring_stage"] = scoring_stage(bootstrap, n, workdir)
    if not only or "pipeline" in only:
        out["pipeline"] = pipeline(bootstrap, transactions(n), workdir)
    if not only or "latency" in only:
        out["latency"] = latency(bootstrap, transactions(int(rate * seconds), seed=11),
                                 workdir, rate)
    if not only or "latency_low" in only:
        low = rate / 4
        out["latency_low"] = latency(bootstrap, transactions(int(low * seconds), seed=12),
                                     workdir, low, warmup=int(low * 2))
    if not only or "naive" in only:
        out["naive"] = naive()
    if not only or "score_api" in only:
        out["score_api"] = score_api(bootstrap, workdir)
    return out


if __name__ == "__main__":  # pragma: no cover
    import argparse
    import os

    from infra.processes import start_broker

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--rate", type=float, default=1_000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--out", type=Path, default=Path(".fraudstream/bench"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        broker = start_broker(args.out / "work")
        bootstrap = f"{broker.host}:{broker.port}"
    try:
        result = run(bootstrap, args.out / "work", args.events, args.rate, args.seconds,
                     set(args.only) if args.only else None)
    finally:
        if broker:
            broker.stop()
    path = args.out / f"scoring-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"JSON: {path}")
