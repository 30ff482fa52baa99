"""One simulate/replay run: choose the events, time them, send or write them, summarise.

Shared by ``fraudstream simulate`` and ``fraudstream replay`` (the click commands only parse
options and print). Labels whose ``reported_at`` falls after the last transaction of a run sent
to Kafka are not sent: at the end of the run they are not known yet. Parquet output keeps every
label.

>>> from simulator import simulate
>>> t = simulate("handbook", seed=1, n_customers=50, n_terminals=100, n_days=40).transactions()
>>> live, labels, plan = prepare_live(t, offsets=np.array([0.0, 0.5]), start_ms=10_000,
...                                   label_delay_days=1 / 86_400, skip_days=30)
>>> live.column("ts").to_pylist(), labels.column("reported_at").to_pylist()
([10000, 10500], [11000, 11500])
>>> plan.kinds.tolist()
[0, 0, 1, 1]
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from simulator.config import DAY_MS
from simulator.output import labels_table, write_parquet
from simulator.producer import BatchProducer
from simulator.sender import Plan, plan_historical, plan_live, send_plan

__all__ = ["RunSummary", "prepare_historical", "prepare_live", "run_kafka", "send_to_kafka",
           "write_run"]


@dataclass
class RunSummary:
    """What a run did (printed by the CLI)."""

    transactions: int
    labels: int
    frauds: int
    elapsed_s: float = 0.0
    target: str = "kafka"
    idempotent: bool | None = None
    max_lag_s: float = 0.0
    paths: dict[str, str] = field(default_factory=dict)

    @property
    def fraud_share(self) -> float:
        return self.frauds / self.transactions if self.transactions else 0.0

    @property
    def rate(self) -> float:
        """Transactions per second achieved."""
        return self.transactions / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def lines(self) -> list[str]:
        out = [f"transactions: {self.transactions:,}  labels: {self.labels:,}  "
               f"fraud share: {self.fraud_share:.3%} ({self.frauds:,})"]
        if self.target == "kafka":
            idem = {True: "yes", False: "no (broker refused)", None: "n/a"}[self.idempotent]
            messages = (self.transactions + self.labels) / self.elapsed_s if self.elapsed_s else 0
            out.append(f"sent in {self.elapsed_s:.1f} s: {self.rate:,.0f} transactions/s "
                       f"({messages:,.0f} records/s with labels); "
                       f"idempotent producer: {idem}; max lag behind schedule "
                       f"{self.max_lag_s * 1000:.0f} ms")
        out += [f"{name}: {path}" for name, path in self.paths.items()]
        return out


def _frauds(table: pa.Table) -> int:
    if "is_fraud" not in table.column_names:
        return 0
    return int(np.asarray(table.column("is_fraud").to_numpy(), dtype=np.int64).sum())


def prepare_historical(table: pa.Table, *, label_delay_days: float | None,
                       label_jitter_hours: float = 0.0, speed: float | None = None,
                       seed: int = 0, duration_s: float | None = None
                       ) -> tuple[pa.Table, pa.Table | None, Plan]:
    """Events keep their event times; sent ``speed`` x faster (None/0: as fast as possible).

    ``duration_s`` (with a speed) keeps the events due within that many seconds of sending.
    """
    ts = table.column("ts").to_numpy()
    if duration_s is not None and speed:
        table = table.slice(0, int(np.searchsorted(ts, ts[0] + duration_s * speed * 1000)))
        ts = ts[:table.num_rows]
    labels = None
    if label_delay_days is not None and "is_fraud" in table.column_names:
        labels = labels_table(table, delay_days=label_delay_days,
                              jitter_hours=label_jitter_hours, seed=seed)
    return table, labels, plan_historical(
        ts, None if labels is None else labels.column("reported_at").to_numpy(), speed)


def prepare_live(table: pa.Table, *, offsets: np.ndarray, start_ms: int,
                 label_delay_days: float | None, label_jitter_hours: float = 0.0,
                 seed: int = 0, skip_days: float = 28.0
                 ) -> tuple[pa.Table, pa.Table | None, Plan]:
    """The first ``len(offsets)`` events after ``skip_days`` of warm-up, re-timed to now.

    The warm-up skips the start of the simulated period, where the 28-day compromised-terminal
    windows have not yet built up (so the fraud mix is the steady one). If too few events
    remain after it, the warm-up is shortened.
    """
    n = len(offsets)
    ts = table.column("ts").to_numpy()
    first = int(np.searchsorted(ts, ts[0] + skip_days * DAY_MS)) if ts.size else 0
    first = max(0, min(first, table.num_rows - n))
    if table.num_rows < n:
        raise ValueError(f"only {table.num_rows} events available for {n} scheduled")
    table = table.slice(first, n)
    delay_ms = None if label_delay_days is None else int(round(label_delay_days * DAY_MS))
    live_ts, reported, plan = plan_live(offsets, start_ms, delay_ms, label_jitter_hours, seed)
    table = table.set_column(table.schema.get_field_index("ts"), "ts", pa.array(live_ts))
    labels = None
    if delay_ms is not None and "is_fraud" in table.column_names:
        labels = labels_table(table, delay_days=0.0)
        labels = labels.set_column(labels.schema.get_field_index("reported_at"), "reported_at",
                                   pa.array(reported))
    elif delay_ms is not None:
        plan = plan_live(offsets, start_ms, None)[2]
    return table, labels, plan


def drop_unknown_labels(plan: Plan, labels: pa.Table | None, last_ts: int) -> Plan:
    """``plan`` without the labels reported after ``last_ts`` (not known by the end of a run)."""
    if labels is None:
        return plan
    reported = labels.column("reported_at").to_numpy()
    keep = (plan.kinds == 0) | (reported[plan.index] <= last_ts)
    return Plan(kinds=plan.kinds[keep], index=plan.index[keep], due_s=plan.due_s[keep])


async def send_to_kafka(bootstrap: str, client_kwargs: Mapping[str, Any], plan: Plan,
                        table: pa.Table, labels: pa.Table | None, *, tx_topic: str,
                        label_topic: str, paced: bool,
                        progress: Callable[[int, int], None] | None = None) -> RunSummary:
    """Send a prepared run with a :class:`~simulator.producer.BatchProducer`."""
    if table.num_rows:
        plan = drop_unknown_labels(plan, labels, int(table.column("ts")[-1].as_py()))
    async with BatchProducer(bootstrap, client_kwargs) as producer:
        pacer = await send_plan(producer, plan, table, labels, tx_topic=tx_topic,
                                label_topic=label_topic, paced=paced, progress=progress)
    stats = producer.stats
    return RunSummary(transactions=stats.per_topic.get(tx_topic, 0),
                      labels=stats.per_topic.get(label_topic, 0), frauds=_frauds(table),
                      elapsed_s=stats.elapsed_s, idempotent=producer.idempotent,
                      max_lag_s=pacer.max_lag_s)


def run_kafka(bootstrap: str, client_kwargs: Mapping[str, Any], plan: Plan, table: pa.Table,
              labels: pa.Table | None, **kwargs: Any) -> RunSummary:
    """:func:`send_to_kafka` from synchronous code."""
    return asyncio.run(send_to_kafka(bootstrap, client_kwargs, plan, table, labels, **kwargs))


def write_run(table: pa.Table, labels: pa.Table | None, out_dir: str | Path) -> RunSummary:
    """Write a run to parquet instead of sending it."""
    paths = write_parquet(table, labels, out_dir)
    return RunSummary(transactions=table.num_rows,
                      labels=0 if labels is None else labels.num_rows, frauds=_frauds(table),
                      target="parquet", paths={k: str(v) for k, v in paths.items()})
