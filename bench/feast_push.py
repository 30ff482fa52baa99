"""Benchmark: rows/s of Feast materialisation into a real Redis, by micro-batch size.

For each batch size it pushes the same number of rows through :class:`app.materialiser.FeastSink`
(``FeatureStore.push(..., PushMode.ONLINE)`` per view), cycling over one batch worth of keys with
newer event times, as a stream overwrites its entities: the first push inserts, the rest
overwrite (Feast's Redis store then reads every key's stored timestamp before writing). Three
variants:

- ``card_features``: the widest view (the card features of the spec, float64, plus the version);
- ``terminal_features``: the narrow view;
- ``card_features+parquet``: the card view with its offline copy written at every push
  (the sink's worst case; by default it writes once a minute).

It also times :meth:`Materialiser.update`, the per-event cost on the stream, and the event
loop's throughput of pure-Python work while 1,000-row pushes run back to back from a thread
(:class:`FeastSink`) or from a child process (:class:`ProcessFeastSink`). Run it with
``python -m bench.feast_push`` (JSON on standard output). Feast's import takes seconds; the
timings exclude it and the ``feast apply``.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from features.spec import DEFAULT_SPEC

BATCH_SIZES = (100, 1_000, 5_000)


def _rows(entity: str, keys: list[str], ts_ms: int, seed: int) -> list[tuple[str, tuple, int]]:
    width = len(DEFAULT_SPEC.names_for(entity))
    return [(key, tuple(float(seed + i + j) for j in range(width)), ts_ms)
            for i, key in enumerate(keys)]


def push_rate(sink: Any, entity: str, batch_size: int, total_rows: int) -> dict[str, float]:
    """Rows/s and ms per push of ``sink`` for ``entity`` at ``batch_size`` rows per push."""
    run = uuid.uuid4().hex[:8]
    keys = [f"bench-{run}-{i}" for i in range(batch_size)]
    ts = int(time.time() * 1000) - 3_600_000
    sink({entity: _rows(entity, keys, ts, 0)})  # warm-up: inserts the keys
    pushes = max(3, total_rows // batch_size)
    durations = []
    for n in range(1, pushes + 1):
        batch = {entity: _rows(entity, keys, ts + n, n)}
        started = time.perf_counter()
        sink(batch)
        durations.append(time.perf_counter() - started)
    seconds = sum(durations)
    return {"rows_per_s": round(pushes * batch_size / seconds),
            "ms_per_push": round(seconds / pushes * 1000, 2),
            "pushes": pushes}


def _busy() -> int:
    total = 0
    for i in range(300):  # ~ the Python work of one event
        total += i * i
    return total


def loop_throughput(sink: Any | None, seconds: float = 4.0,
                    batch_size: int = 1_000) -> dict[str, float]:
    """An event loop doing pure-Python work while ``sink`` pushes back to back from a thread
    (``None``: no pushes): the loop's work units/s and the rows/s pushed meanwhile. Shows
    what the worker's loop and the pushes take from each other."""
    import asyncio

    keys = [f"loop-{uuid.uuid4().hex[:8]}-{i}" for i in range(batch_size)]

    async def measure() -> dict[str, float]:
        stop = time.monotonic() + seconds
        done = pushed = 0

        async def pusher(push: Any) -> None:
            nonlocal pushed
            n = 0
            while time.monotonic() < stop:
                n += 1
                rows = _rows("card", keys, int(time.time() * 1000) + n, n)
                await asyncio.to_thread(push, {"card": rows})
                pushed += len(rows)

        task = asyncio.create_task(pusher(sink)) if sink is not None else None
        started = time.monotonic()
        while time.monotonic() < stop:
            for _ in range(100):
                _busy()
            done += 100
            await asyncio.sleep(0)
        if task is not None:
            await task
        elapsed = time.monotonic() - started
        return {"loop_units_per_s": round(done / elapsed),
                "rows_per_s": round(pushed / elapsed)}

    return asyncio.run(measure())


def update_cost_us(updates: int = 200_000) -> float:
    """Microseconds per :meth:`Materialiser.update` of a card row (no push)."""
    from app.materialiser import Materialiser, spec_views

    m = Materialiser(lambda batch: None, spec_views(), max_rows=10**9, metrics=False)
    vectors = [dict.fromkeys(DEFAULT_SPEC.names, float(i)) for i in range(100)]
    keys = [f"c{i}" for i in range(10_000)]
    started = time.perf_counter()
    for i in range(updates):
        m.update("card", keys[i % 10_000], vectors[i % 100], event_ts_ms=i)
    return round((time.perf_counter() - started) / updates * 1e6, 2)


def run(redis_url: str | None = None, batch_sizes: tuple[int, ...] = BATCH_SIZES,
        rows_per_size: int = 10_000) -> dict[str, Any]:
    """Apply the store in a temporary folder and measure; embedded Redis unless ``redis_url``."""
    from app.feast_env import OFFLINE_PATH_VAR, apply, feast_env
    from app.feast_sink import FeastSink, ProcessFeastSink
    from infra.processes import start_redis

    with tempfile.TemporaryDirectory(prefix="fraudstream-bench-feast-") as tmp:
        server = None
        if redis_url is None:
            server = start_redis(Path(tmp) / "redis")
            redis_url = f"redis://{server.host}:{server.port}/0"
        try:
            with contextlib.redirect_stdout(sys.stderr):  # Feast prints what it applies
                store = apply(redis_url, tmp)
            offline = feast_env(redis_url, tmp)[OFFLINE_PATH_VAR]
            variants = {
                "card_features": ("card", FeastSink(store, None, metrics=False)),
                "terminal_features": ("terminal", FeastSink(store, None, metrics=False)),
                "card_features+parquet": ("card", FeastSink(store, offline, metrics=False,
                                                            offline_max_rows=0)),
            }
            results: dict[str, Any] = {
                "redis": "embedded valkey" if server else "REDIS_URL",
                "features": {e: len(DEFAULT_SPEC.names_for(e)) for e in ("card", "terminal")},
                "update_us": update_cost_us(),
            }
            for name, (entity, sink) in variants.items():
                results[name] = {str(size): push_rate(sink, entity, size, rows_per_size)
                                 for size in batch_sizes}
            child = ProcessFeastSink(redis_url, tmp, offline=False, metrics=False)
            child({"card": _rows("card", ["warm-up"], int(time.time() * 1000), 0)})
            results["event_loop_while_pushing"] = {
                "idle": loop_throughput(None),
                "thread_pushes": loop_throughput(variants["card_features"][1]),
                "process_pushes": loop_throughput(child),
            }
            child.close()
            return results
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":  # pragma: no cover
    import os

    print(json.dumps(run(os.environ.get("REDIS_URL")), indent=2))
