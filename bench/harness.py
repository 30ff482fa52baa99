"""The benchmark run: every measurement on one broker, a table on screen, JSON on disk.

Each pipeline measurement pre-loads ``n`` records into a fresh input topic, starts a real
worker process on it, and reads the output topic back; throughput is computed from the output
records' timestamps (first to last), so worker start-up is excluded and reported apart.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from infra.kafka_io import consume, produce
from infra.processes import start_broker
from infra.worker_process import create_topics, isolated_env, start_worker, topic_name


@dataclass
class Result:
    name: str
    events: int
    events_per_s: float
    seconds: float
    notes: dict[str, Any] = field(default_factory=dict)


def _rate(timestamps_ms: list[int]) -> tuple[float, float]:
    span = (max(timestamps_ms) - min(timestamps_ms)) / 1000
    return ((len(timestamps_ms) - 1) / span if span > 0 else float("inf")), span


def raw_passthrough(bootstrap: str, records: list[tuple[bytes, bytes]]) -> Result:
    """(a) aiokafka consumer group -> producer, in this process: the floor under any agent."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    suffix = uuid.uuid4().hex[:8]
    src, dst = f"bench-raw-in-{suffix}", f"bench-raw-out-{suffix}"
    produce(bootstrap, src, records)

    async def run() -> float:
        consumer = AIOKafkaConsumer(src, bootstrap_servers=bootstrap, group_id=f"raw-{suffix}",
                                    auto_offset_reset="earliest", fetch_max_wait_ms=10,
                                    max_partition_fetch_bytes=4 << 20)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                    max_batch_size=1 << 20)
        await consumer.start()
        await producer.start()
        seen, start = 0, None
        try:
            while seen < len(records):
                batches = await consumer.getmany(timeout_ms=100, max_records=5000)
                for messages in batches.values():
                    if start is None:
                        start = time.perf_counter()
                    for m in messages:
                        await producer.send(dst, key=m.key, value=m.value)
                    seen += len(messages)
            await producer.flush()
            await consumer.commit()
            return time.perf_counter() - (start or time.perf_counter())
        finally:
            await producer.stop()
            await consumer.stop()

    seconds = asyncio.run(run())
    return Result("a. aiokafka passthrough (no Faust)", len(records), len(records) / seconds,
                  seconds)


def worker_run(name: str, app: str, bootstrap: str, records: list[tuple[bytes, bytes]],
               out_role: str, expected: int, workdir: Path, extra_env: dict[str, str],
               measure_state: bool = False) -> Result:
    """Pre-load the input topic, start ``faust -A app worker``, time the output topic."""
    import psutil

    suffix = uuid.uuid4().hex[:8]
    env = isolated_env(bootstrap, workdir / suffix, suffix, **extra_env)
    create_topics(bootstrap, env)
    produce(bootstrap, topic_name("transactions", suffix), records)
    worker = start_worker(env, workdir / f"{suffix}.log", app=app)
    notes: dict[str, Any] = {}
    try:
        notes["worker_ready_s"] = round(worker.wait_ready(), 2)
        out = consume(bootstrap, topic_name(out_role, suffix), expected=expected,
                      timeout=900, settle=0.5)
        if measure_state:
            notes["worker_rss_mb"] = round(psutil.Process(worker.proc.pid).memory_info().rss
                                           / 2**20, 1)
            notes.update(_state_bytes(bootstrap, f"fraudstream-{suffix}-card-state-changelog"))
    finally:
        worker.stop()
    rate, span = _rate([r.timestamp for r in out])
    return Result(name, len(out), rate, span, notes)


def _state_bytes(bootstrap: str, changelog: str) -> dict[str, Any]:
    """Latest serialised state per card, from the table's changelog."""
    latest: dict[bytes | None, int] = {}
    for rec in consume(bootstrap, changelog, expected=10**9, timeout=60, idle=3.0):
        latest[rec.key] = len(rec.value or b"")
    cards = len(latest)
    return {"cards": cards,
            "state_bytes_per_card": round(sum(latest.values()) / cards) if cards else 0}


def simulated(n_cards: int, days: int, seed: int = 3) -> list[tuple[bytes, bytes]]:
    """Realistic simulated transactions as (key, value) records."""
    from simulator import simulate
    from simulator.serialize import keys, transaction_values

    table = simulate("realistic", seed=seed, n_customers=n_cards,
                     n_terminals=max(2 * n_cards, 100), n_days=days).transactions()
    return list(zip(keys(table), transaction_values(table), strict=True))


def run(n: int = 50_000, out_dir: Path | None = None, only: set[str] | None = None,
        progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the benchmarks; returns the report (also written as JSON in ``out_dir``)."""
    from bench.workload import transactions

    out_dir = out_dir or Path(os.environ.get("FRAUDSTREAM_DATA_DIR", ".fraudstream")) / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    workdir = out_dir / "work"
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        broker = start_broker(workdir)
        bootstrap = f"{broker.host}:{broker.port}"
    env = {"FRAUDSTREAM_STORE": "memory://", "FRAUDSTREAM_LOG_LEVEL": "WARNING",
           "FRAUDSTREAM_FEAST_ENABLED": "false"}
    # the passthrough and feature-stage runs measure those stages alone (bench/scoring.py
    # starts its own workers with a model for the scoring and full-pipeline runs)
    stages_env = {**env, "FRAUDSTREAM_SCORING_ENABLED": "false"}
    records = transactions(n)
    results: list[Result] = []

    def features_run() -> Result:
        sim = simulated(n_cards=5_000, days=max(1, n // 9_500))
        return worker_run("e. feature stages (ingest + terminal -> enriched)", "app", bootstrap,
                          sim, "enriched", len(sim), workdir, stages_env)

    def cards_100k() -> Result:
        sim = simulated(n_cards=100_000, days=1)
        return worker_run("f. feature stages, 100,000 cards", "app", bootstrap, sim,
                          "enriched", len(sim), workdir, stages_env, measure_state=True)

    def feast() -> Result:
        from bench.feast_push import run as feast_run

        report = feast_run(batch_sizes=(100, 1_000), rows_per_size=5_000)
        rates = {k: v for k, v in _flatten(report).items() if k.endswith("rows_per_s")}
        best = max(rates.values()) if rates else 0.0
        return Result("g. Feast push (rows/s, best batch size)", 5_000, best, 0.0,
                      {k: round(v) for k, v in rates.items()})

    def scoring(key: str) -> Result:
        from bench import scoring as sc

        if key == "scoring":
            r = sc.scoring_stage(bootstrap, n, workdir)
            return Result("h. scoring agent alone (enriched -> predictions)", r["events"],
                          r["events_per_s"], 0.0)
        if key == "pipeline":
            r = sc.pipeline(bootstrap, records, workdir)
            return Result("i. full pipeline (validate, features, score, publish)", r["events"],
                          r["events_per_s"], r["seconds"], {"worker_ready_s": r["worker_ready_s"]})
        if key == "latency":
            r = sc.latency(bootstrap, transactions(20_000, seed=11), workdir, 1_000.0)
            return Result("j. end-to-end latency at 1,000 ev/s offered", r["events"],
                          r["offered_per_s"], 0.0,
                          {k: v for k, v in r.items() if k.startswith("p")})
        if key == "naive":
            r = sc.naive()
            return Result("k. naive per event (Feast push+read, 1-row predict)", r["events"],
                          r["events_per_s"], 0.0, {"p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"]})
        r = sc.score_api(bootstrap, workdir)
        return Result("l. POST /score (sequential requests/s)", r["ok"],
                      1000 / r["p50_ms"], 0.0, {"p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"]})

    try:
        steps: list[tuple[str, Callable[[], Result]]] = [
            ("raw", lambda: raw_passthrough(bootstrap, records)),
            ("faust", lambda: worker_run("b. Faust passthrough agent (per event)",
                                         "bench.faust_passthrough", bootstrap, records,
                                         "validated", n, workdir, env)),
            ("faust-batch", lambda: worker_run("c. Faust passthrough agent (micro-batches)",
                                               "bench.faust_batch_passthrough", bootstrap,
                                               records, "validated", n, workdir, env)),
            ("ingest", lambda: worker_run("d. ingest: validation + card features", "app",
                                          bootstrap, records, "validated", n, workdir, stages_env)),
            ("features", features_run),
            ("cards", cards_100k),
            ("feast", feast),
            *[(key, lambda key=key: scoring(key))
              for key in ("scoring", "pipeline", "latency", "naive", "score-api")],
        ]
        for key, step in steps:
            if only and key not in only:
                continue
            progress(f"running {key} ...")
            results.append(step())
    finally:
        if broker:
            broker.stop()
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "broker": "embedded Tansu" if broker else bootstrap,
        "events": n,
        "results": [asdict(r) for r in results],
    }
    path = out_dir / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    report["path"] = str(path)
    return report


def _flatten(data: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}." if prefix or key else ""))
    elif isinstance(data, int | float) and not isinstance(data, bool):
        out[prefix.rstrip(".")] = float(data)
    return out


def table(report: dict[str, Any]) -> str:
    """The report as a text table, with ratios to the Faust passthrough."""
    rows = report["results"]
    base = next((r["events_per_s"] for r in rows if r["name"].startswith("c.")), None)
    lines = [f"{'benchmark':<52} {'events':>8} {'events/s':>10} {'vs c':>7}  notes",
             "-" * 90]
    for r in rows:
        ratio = f"{r['events_per_s'] / base:6.2f}x" if base else ""
        notes = ", ".join(f"{k}={v}" for k, v in r["notes"].items())
        lines.append(f"{r['name']:<52} {r['events']:>8} {r['events_per_s']:>10,.0f} "
                     f"{ratio:>7}  {notes}")
    return "\n".join(lines)
