"""End-to-end latency at offered rates: the broker's one-hop floor, the pipeline, a rate search.

Latency of an event is the Kafka timestamp of its output record minus the Kafka timestamp of
its input record (both set by the producing clients on this host's clock):

* **one hop** (:func:`one_hop`): a paced producer writes ``bench-hop-in``, a bare aiokafka
  relay process (:mod:`bench.relay`) copies it to ``bench-hop-out``: the latency floor of the
  broker with the worker's client settings;
* **pipeline** (:class:`PipelineRun`): a paced producer writes ``transactions`` of one running
  worker (full pipeline, a real model); a prediction's latency is its record timestamp minus
  its ``source`` (``scored_at - latency_ms``, the transaction's record timestamp).

A run is a sequence of *phases* on one worker (warm-up, 1,000 ev/s, then the probes of the
search); between phases the bench waits until every prediction of the phase is out, so a
backlog does not leak into the next phase. Outputs are read only between phases (the reader
does not compete with the pipeline for the two cores while it is measured).
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Latency bound of the rate search (p99 over the phase).
SEARCH_P99_MS = 100.0


def percentile(values: list[float], q: float) -> float:
    """The ``q`` percentile (linear interpolation), NaN for no values.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.5
    >>> math.isnan(percentile([], 99))
    True
    """
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=float), q))


def window_p99(points: list[tuple[float, float]], start_ms: float,
               window_s: float = 10.0) -> list[float]:
    """p99 latency of each ``window_s`` window of ``(source_ms, latency_ms)`` points, windows
    counted from ``start_ms`` by the source time (an empty window: NaN).

    >>> window_p99([(0, 1.0), (5_000, 3.0), (12_000, 7.0)], 0)
    [2.98, 7.0]
    """
    if not points:
        return []
    width = window_s * 1000
    count = int((max(s for s, _ in points) - start_ms) // width) + 1
    buckets: list[list[float]] = [[] for _ in range(max(count, 1))]
    for source, lat in points:
        buckets[max(0, int((source - start_ms) // width))].append(lat)
    return [round(percentile(b, 99), 2) for b in buckets]


@dataclass
class Phase:
    """What one offered-rate phase measured."""

    rate: float
    seconds: float
    sent: int
    received: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    achieved_per_s: float
    windows_p99_ms: list[float] = field(default_factory=list)
    drain_s: float = 0.0

    @property
    def complete(self) -> bool:
        return self.received >= self.sent

    def ok(self, bound_ms: float = SEARCH_P99_MS) -> bool:
        return self.complete and self.p99_ms <= bound_ms

    def brief(self) -> dict[str, Any]:
        return {"rate": self.rate, "seconds": self.seconds, "sent": self.sent,
                "received": self.received, "p50_ms": self.p50_ms, "p99_ms": self.p99_ms,
                "max_ms": self.max_ms, "achieved_per_s": self.achieved_per_s,
                "windows_p99_ms": self.windows_p99_ms, "drain_s": self.drain_s}


def summarise(rate: float, seconds: float, sent: int, points: list[tuple[float, float]],
              achieved: float, drain_s: float) -> Phase:
    lat = [lat for _, lat in points]
    start = min((s for s, _ in points), default=0.0)
    return Phase(rate, seconds, sent, len(points), round(percentile(lat, 50), 2),
                 round(percentile(lat, 99), 2), round(max(lat), 2) if lat else float("nan"),
                 round(achieved, 1), window_p99(points, start), round(drain_s, 2))


async def paced_send(producer: Any, topic: str, records: list[tuple[bytes, bytes]],
                     rate: float) -> float:
    """Send ``records`` at ``rate`` per second (every due record each millisecond); returns
    the rate achieved by the sender."""
    start = time.perf_counter()
    i, n = 0, len(records)
    while i < n:
        due = min(n, int((time.perf_counter() - start) * rate) + 1)
        while i < due:
            key, value = records[i]
            await producer.send(topic, key=key, value=value)
            i += 1
        await asyncio.sleep(0.001)
    await producer.flush()
    elapsed = time.perf_counter() - start
    return n / elapsed if elapsed > 0 else float("inf")


class Tail:
    """Reads a topic from where it last stopped (all partitions, no group)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.consumer: Any = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.structs import TopicPartition

        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap,
                                         enable_auto_commit=False, group_id=None,
                                         auto_offset_reset="earliest", fetch_max_wait_ms=50,
                                         max_partition_fetch_bytes=8 << 20)
        await self.consumer.start()
        deadline = time.monotonic() + 30
        parts = None
        while not parts and time.monotonic() < deadline:
            parts = self.consumer.partitions_for_topic(self.topic)
            if not parts:
                await self.consumer.force_metadata_update()  # type: ignore[attr-defined]
                await asyncio.sleep(0.2)
        if not parts:
            raise RuntimeError(f"topic {self.topic!r} has no partitions")
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)

    async def read(self, take: Callable[[list[Any]], None], done: Callable[[], bool],
                   timeout: float, idle: float = 5.0) -> float:
        """Hand records to ``take`` until ``done()``, ``timeout`` s, or (after half the timeout)
        ``idle`` s without a record; returns the seconds spent."""
        started = time.monotonic()
        last = started
        while not done():
            now = time.monotonic()
            if now - started > timeout or (now - started > timeout / 2 and now - last > idle):
                break
            batch = await self.consumer.getmany(timeout_ms=200, max_records=20_000)
            for recs in batch.values():
                take(recs)
                last = time.monotonic()
        return time.monotonic() - started

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()


async def _producer(bootstrap: str) -> Any:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1, acks="all")
    await producer.start()
    return producer


def one_hop(bootstrap: str, workdir: Path, rate: float = 1_000.0, seconds: float = 30.0,
            warmup_s: float = 3.0) -> Phase:
    """The relay's one-hop latency at ``rate`` for ``seconds`` (after ``warmup_s``)."""
    from bench.workload import transactions
    from infra.kafka_io import produce

    suffix = uuid.uuid4().hex[:8]
    src, dst = f"bench-hop-in-{suffix}", f"bench-hop-out-{suffix}"
    produce(bootstrap, src, [(b"warm", b"{}")])
    produce(bootstrap, dst, [(b"warm", b"{}")])
    warm = int(rate * warmup_s)
    records = transactions(warm + int(rate * seconds), seed=5)
    log = workdir / f"relay-{suffix}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bench.relay", bootstrap, src, dst,
                                 f"hop-{suffix}"], stdout=out, stderr=subprocess.STDOUT,
                                cwd=Path(__file__).resolve().parents[1])

    async def run() -> Phase:
        tail = Tail(bootstrap, dst)
        await tail.start()
        producer = await _producer(bootstrap)
        try:
            deadline = time.monotonic() + 60
            while b"relay ready" not in log.read_bytes():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"relay did not start: {log.read_text()[-2000:]}")
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # the relay's group join
            await paced_send(producer, src, records[:warm], rate)
            got: list[Any] = []
            await tail.read(got.extend, lambda: len(got) >= warm + 1, timeout=60)
            got.clear()
            achieved = await paced_send(producer, src, records[warm:], rate)
            drain = await tail.read(got.extend, lambda: len(got) >= len(records) - warm,
                                    timeout=120)
        finally:
            await producer.stop()
            await tail.stop()
        points = []
        for rec in got:
            src_ts = dict(rec.headers or []).get("src_ts")
            if src_ts is not None:
                points.append((float(src_ts), float(rec.timestamp - int(src_ts))))
        return summarise(rate, seconds, len(records) - warm, points, achieved, drain)

    try:
        return asyncio.run(run())
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class PipelineRun:
    """One full-pipeline worker (with a model) and paced phases into its input."""

    def __init__(self, bootstrap: str, workdir: Path, seed: int = 11, app: str = "app",
                 env: dict[str, str] | None = None) -> None:
        """``app``: the worker's Faust app; ``bench.faust_batch_passthrough`` measures Faust's
        own latency (its output carries the source timestamp in a ``src_ts`` header)."""
        self.bootstrap, self.workdir, self.seed, self.app = bootstrap, workdir, seed, app
        self.passthrough = app != "app"
        self.extra_env = env or {}
        self.sent = 0
        self.phases: list[Phase] = []
        self.worker: Any = None
        self.ready_s = 0.0

    def __enter__(self) -> PipelineRun:
        from bench.scoring import _env, _wait_for_model, _with_model
        from infra.worker_process import create_topics, start_worker, topic_name

        suffix = uuid.uuid4().hex[:8]
        env = _env(self.bootstrap, self.workdir, suffix, **self.extra_env)
        if not self.passthrough:
            _with_model(self.workdir / suffix)
        create_topics(self.bootstrap, env)
        self.tx_topic = topic_name("transactions", suffix)
        self.out_topic = topic_name("enriched" if self.passthrough else "predictions", suffix)
        self.worker = start_worker(env, self.workdir / f"{suffix}.log", app=self.app)
        self.ready_s = self.worker.wait_ready()
        if not self.passthrough:
            _wait_for_model(self.worker)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.worker is not None:
            self.worker.stop()

    def gauges(self) -> dict[str, float]:
        """The worker's pipeline metrics now (queued, held, partitions, gate waits, stage
        events, late): what to look at when outputs stop."""
        from bench.replay import _metric

        try:
            page = self.worker.metrics()
        except OSError as exc:
            return {"error": float("nan"), "reason": repr(exc)}  # type: ignore[dict-item]
        names = ("fraudstream_pipeline_queued_events", "fraudstream_scoring_held_events",
                 "fraudstream_pipeline_partitions", "fraudstream_pipeline_gate_waits_total",
                 "fraudstream_stage_events_total", "fraudstream_transactions_late_total",
                 "fraudstream_state_log_segments_total")
        return {n.removeprefix("fraudstream_"): _metric(page, n) for n in names}

    def rss_mb(self) -> float:
        import psutil

        return round(psutil.Process(self.worker.proc.pid).memory_info().rss / 2**20, 1)

    def phases_run(self, plan: list[tuple[float, float]],
                   decide: Callable[[Phase, list[Phase]], list[tuple[float, float]]] | None
                   = None) -> list[Phase]:
        """Run ``plan`` (``(rate, seconds)`` phases); after each, ``decide(phase, done)`` may
        return more phases to run next."""
        return asyncio.run(self._phases(list(plan), decide))

    async def _phases(self, plan: list[tuple[float, float]],
                      decide: Callable[[Phase, list[Phase]], list[tuple[float, float]]] | None
                      ) -> list[Phase]:
        import itertools

        from bench.workload import stream

        source = self._source = getattr(self, "_source", None) or stream(seed=self.seed)
        tail = Tail(self.bootstrap, self.out_topic)
        await tail.start()
        producer = await _producer(self.bootstrap)
        done: list[Phase] = []
        try:
            while plan:
                rate, seconds = plan.pop(0)
                count = max(1, int(rate * seconds))
                # event time continues across phases: one long sequence, sliced
                records = list(itertools.islice(source, count))
                first = self.sent
                self.sent += count
                ids = {f"b-{i:08d}" for i in range(first, first + count)}
                achieved = await paced_send(producer, self.tx_topic, records, rate)
                seen: dict[str, tuple[float, float]] = {}

                def take(recs: list[Any], ids: set[str] = ids,
                         seen: dict[str, tuple[float, float]] = seen,
                         passthrough: bool = self.passthrough) -> None:
                    for rec in recs:
                        value = json.loads(rec.value)
                        txn = value["txn_id"]
                        if txn not in ids or txn in seen:
                            continue
                        if passthrough:
                            source = float(dict(rec.headers or [])["src_ts"])
                        elif value.get("shadow"):
                            continue
                        else:
                            source = float(value["scored_at"]) - float(value["latency_ms"])
                        seen[txn] = (source, float(rec.timestamp) - source)

                def complete(count: int = count,
                             seen: dict[str, tuple[float, float]] = seen) -> bool:
                    return len(seen) >= count

                drain = await tail.read(take, complete, timeout=max(60.0, seconds))
                points = list(seen.values())
                phase = summarise(rate, seconds, count, points, achieved, drain)
                done.append(phase)
                self.phases.append(phase)
                if decide is not None:
                    plan.extend(decide(phase, done))
        finally:
            await producer.stop()
            await tail.stop()
        return done


@dataclass
class _SearchState:
    stage: str = "up"
    confirms: int = 0
    confirmed: float | None = None


def rate_search(run: PipelineRun, start: float = 1_000.0, probe_s: float = 20.0,
                confirm_s: float = 120.0, bound_ms: float = SEARCH_P99_MS,
                step: float = 250.0, ceiling: float = 20_000.0,
                log: Callable[[str], None] = print) -> dict[str, Any]:
    """The highest offered rate whose p99 stays within ``bound_ms``: probes of ``probe_s``
    upwards from ``start`` (x1.5 each, then one bisection), then the best confirmed over
    ``confirm_s`` (stepping down to the previous passing probe if the confirmation fails).

    >>> class Fake:  # p99 = rate / 30 ms: 3,000 ev/s is the last within 100 ms
    ...     def phases_run(self, plan, decide):
    ...         done = []
    ...         while plan:
    ...             rate, secs = plan.pop(0)
    ...             done.append(summarise(rate, secs, 1, [(0.0, rate / 30)], rate, 0.0))
    ...             plan.extend(decide(done[-1], done))
    ...         return done
    >>> r = rate_search(Fake(), log=lambda msg: None)
    >>> [p["rate"] for p in r["probes"]], r["confirmed_rate"]
    ([1000.0, 1500.0, 2250.0, 3250.0, 2750.0, 2750.0], 2750.0)
    """
    passed: list[float] = []
    failed: list[float] = []
    state = _SearchState()

    def rounded(rate: float) -> float:
        return max(step, math.floor(rate / step) * step)

    def decide(phase: Phase, done: list[Phase]) -> list[tuple[float, float]]:
        ok = phase.ok(bound_ms)
        log(f"  {phase.rate:,.0f} ev/s over {phase.seconds:.0f} s: p99 {phase.p99_ms} ms, "
            f"{phase.received}/{phase.sent} out -> {'ok' if ok else 'over'}")
        if state.stage == "confirm":
            state.confirms += 1
            if ok:
                state.confirmed = phase.rate
                return []
            lower = [r for r in passed if r < phase.rate]
            if lower and state.confirms < 2:
                return [(max(lower), confirm_s)]
            return []
        (passed if ok else failed).append(phase.rate)
        if ok and phase.rate < ceiling and not failed:
            return [(rounded(phase.rate * 1.5), probe_s)]
        if not passed:  # even the start rate is over: go down
            half = rounded(phase.rate / 2)
            if step <= half < phase.rate:
                return [(half, probe_s)]
            return []
        best = max(passed)
        worst = min(failed) if failed else None
        if state.stage == "up" and worst is not None:
            state.stage = "bisect"
            mid = rounded((best + worst) / 2)
            if best < mid < worst:
                return [(mid, probe_s)]
        state.stage = "confirm"
        return [(max(passed), confirm_s)]

    phases = run.phases_run([(start, probe_s)], decide)
    return {"probes": [p.brief() for p in phases], "confirmed_rate": state.confirmed,
            "bound_ms": bound_ms, "probe_s": probe_s, "confirm_s": confirm_s}
