"""Per-event cost of the pipeline, in µs, by part: the in-process :class:`Pipeline` on fakes.

The real :class:`app.pipeline.agent.Pipeline` (real validation, card states, terminal view,
state-log writer, encoders, a real ONNX model) is driven in process with fake events and fake
ports, the way tests/support/fake_pipeline.py builds it, on the benchmark workload
(5,000 cards, 10,000 terminals). Each part is timed by wrapping the functions the pipeline
calls with ``time.perf_counter_ns`` (the wrapper's own cost, measured on a no-op, is
subtracted per call); what no wrapper covers (micro-batching, the merge order, the
acknowledgement bookkeeping, building the records) is ``other``.

Two parts happen outside the process and are measured apart:

* **produce**: ``AIOKafkaProducer.send`` on the real broker (the client's per-record CPU cost
  in the worker's loop), times the records an event produces (enriched + prediction);
* **delivery**: Faust handing an event to the agent, from the micro-batch passthrough run of
  the same bench (``1e6 / its rate`` minus one produce) when the harness has it.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

PARTS = ("validation", "merge order", "card state", "terminal state", "state log",
         "transaction features", "scoring", "encoding", "acks", "other")


class Timers:
    """Nanoseconds and calls per part; :meth:`wrap` times a callable into a part."""

    def __init__(self) -> None:
        self.ns: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)
        self.overhead_ns = 0.0

    def wrap(self, part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        ns, calls, clock = self.ns, self.calls, time.perf_counter_ns

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                ns[part] += clock() - t0
                calls[part] += 1

        return timed

    def wrap_async(self, part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        ns, calls, clock = self.ns, self.calls, time.perf_counter_ns

        async def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            try:
                return await fn(*args, **kwargs)
            finally:
                ns[part] += clock() - t0
                calls[part] += 1

        return timed

    def calibrate(self, n: int = 10_000, reps: int = 30) -> float:
        """The wrapper's own ns per call (on a no-op; the best of ``reps`` loops, so that a
        busy machine does not inflate it)."""
        probe = Timers()
        noop = probe.wrap("x", lambda: None)
        bare = lambda: None  # noqa: E731

        def best(fn: Callable[[], Any]) -> float:
            out = float("inf")
            for _ in range(reps):
                t0 = time.perf_counter_ns()
                for _ in range(n):
                    fn()
                out = min(out, (time.perf_counter_ns() - t0) / n)
            return out

        self.overhead_ns = max(0.0, best(noop) - best(bare))
        return self.overhead_ns

    def net_ns(self, part: str) -> float:
        return max(0.0, self.ns.get(part, 0) - self.calls.get(part, 0) * self.overhead_ns)


def _support() -> Any:
    """tests/support/fake_pipeline.py (the benchmarks run from a source checkout)."""
    import sys

    from infra.worker_process import ROOT

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.support import fake_pipeline

    return fake_pipeline


def _scorer() -> Any:
    from bench.scoring import _models
    from models.serving import load_onnx_model

    exported = _models().train(seed=1, rounds=100)
    return load_onnx_model(exported.onnx_bytes, list(exported.feature_names),
                           exported.spec_version, exported.sha256)


def pipeline_costs(n: int = 50_000, batch: int = 500, warmup: int = 5_000) -> dict[str, Any]:
    """µs per transaction of each part of :meth:`Pipeline.handle` (after ``warmup``)."""
    import app.pipeline.agent as agent_mod
    from bench.workload import transactions
    from features.card import CardState

    fp = _support()
    timers = Timers()
    timers.calibrate()
    scorer = _scorer()
    pipeline, ports, _ = fp.make_pipeline(
        holder=fp.FakeHolder(fp.fake_model(scorer=scorer)), batch_max_events=batch,
        flush_ms=200.0)
    pipeline.assign([0], {}, {})
    records = transactions(warmup + n, seed=21)
    now_s = time.time()
    events = [fp.FakeEvent(fp.FakeMessage(fp.TXN_TOPIC, 0, i, key, value,
                                          timestamp=now_s))
              for i, (key, value) in enumerate(records)]

    patched: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, part: str, is_async: bool = False) -> None:
        original = getattr(owner, name)
        patched.append((owner, name, original))
        wrapper = timers.wrap_async if is_async else timers.wrap
        setattr(owner, name, wrapper(part, original))

    async def drive(chunk: list[Any]) -> float:
        t0 = time.perf_counter_ns()
        for i in range(0, len(chunk), batch):
            await pipeline.handle(chunk[i:i + batch])
            await pipeline.tick()
        await pipeline.flush()
        pipeline.deliveries.settle()
        return time.perf_counter_ns() - t0

    cpu0 = 0

    async def main() -> float:
        nonlocal cpu0
        await drive(events[:warmup])
        cpu0 = time.process_time_ns()
        timers.ns.clear()
        timers.calls.clear()
        patch(agent_mod, "validate", "validation")
        patch(agent_mod, "validate_label", "validation")
        patch(agent_mod, "txn_row", "validation")
        patch(CardState, "arrival", "card state")
        patch(CardState, "update", "card state")
        view = pipeline.view
        patch(view, "features_at", "terminal state")
        patch(view, "record", "terminal state")
        patch(view, "add_label", "terminal state")
        writer = pipeline.writer
        patch(writer, "txn", "state log")
        patch(writer, "label", "state log")
        patch(writer, "flush", "state log", is_async=True)
        patch(agent_mod, "transaction_features", "transaction features")
        patch(agent_mod, "encode_enriched", "encoding")
        patch(agent_mod, "encode_prediction", "encoding")
        patch(agent_mod, "prediction_record", "encoding")
        patch(scorer, "predict", "scoring")
        patch(agent_mod, "Prediction", "encoding")
        aligner = pipeline.aligner
        for name in ("add", "select", "pop"):
            patch(aligner, name, "merge order")
        deliveries = pipeline.deliveries
        for name in ("received", "finish", "settle"):
            patch(deliveries, name, "acks")
        return await drive(events[warmup:])

    try:
        total_ns = asyncio.run(main())
        cpu_ns = time.process_time_ns() - cpu0
    finally:
        for owner, name, original in reversed(patched):
            if isinstance(owner, type) or owner is agent_mod:
                setattr(owner, name, original)
            else:
                delattr(owner, name) if name in vars(owner) else setattr(owner, name, original)
    scored = pipeline.counts["scored"] - warmup
    per_event = {part: round(timers.net_ns(part) / n / 1000, 1) for part in PARTS[:-1]}
    measured = sum(timers.net_ns(p) for p in PARTS[:-1])
    total_wrapped = total_ns - sum(timers.calls.values()) * timers.overhead_ns
    per_event["other"] = round(max(0.0, total_wrapped - measured) / n / 1000, 1)
    return {"events": n, "scored": scored, "batch": batch,
            "us_per_event": per_event,
            "in_process_us_per_event": round(total_wrapped / n / 1000, 1),
            "in_process_events_per_s": round(n / (total_wrapped / 1e9)),
            "wrapper_ns": round(timers.overhead_ns, 1),
            # CPU time of this process over wall time: below 1 when the machine was busy
            "cpu_share": round(cpu_ns / total_ns, 2),
            "in_process_cpu_us_per_event": round(cpu_ns / n / 1000, 1),
            "records_out": {t: len(v) for t, v in ports.out.items()}}


def produce_cost_us(bootstrap: str, n: int = 30_000) -> float:
    """CPU µs per ``AIOKafkaProducer.send`` of an enriched-sized record (the worker's producer
    settings), measured on the real broker; delivery waits excluded."""
    import uuid

    from aiokafka import AIOKafkaProducer

    value = b"x" * 900
    topic = f"bench-produce-{uuid.uuid4().hex[:8]}"

    async def run() -> float:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all",
                                    max_batch_size=1 << 20)
        await producer.start()
        try:
            await (await producer.send(topic, key=b"k", value=value))
            spent = 0
            for _ in range(0, n, 500):
                t0 = time.process_time_ns()
                for _j in range(500):
                    await producer.send(topic, key=b"c1234", value=value)
                spent += time.process_time_ns() - t0
                await producer.flush()
            return spent / n / 1000
        finally:
            await producer.stop()

    return round(asyncio.run(run()), 2)


def breakdown(bootstrap: str | None, n: int = 50_000,
              faust_batch_per_s: float | None = None,
              records_per_event: float = 2.0) -> dict[str, Any]:
    """The whole breakdown: in-process parts, produce, delivery (see the module docstring)."""
    out = pipeline_costs(n)
    parts: dict[str, float | None] = {"delivery": None, **out["us_per_event"]}
    if bootstrap is not None:
        send_us = produce_cost_us(bootstrap)
        out["produce_us_per_record"] = send_us
        parts["produce"] = round(send_us * records_per_event, 1)
        if faust_batch_per_s:
            parts["delivery"] = round(max(0.0, 1e6 / faust_batch_per_s - send_us), 1)
    out["parts_us"] = parts
    out["total_us"] = round(sum(v for v in parts.values() if v is not None), 1)
    return out


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(breakdown(None, 20_000), indent=2))
    _ = Path
