"""Prometheus metrics of the Feast materialiser (:mod:`app.materialiser`).

Served with the worker's other metrics at ``/metrics``. The two gauges are computed when
Prometheus scrapes (``set_function``), so a feature update costs nothing here.

- ``fraudstream_feast_backlog_rows``: rows waiting for Feast (pending plus in flight); it grows
  while Redis is unavailable and falls back to 0 once the backlog is pushed.
- ``fraudstream_feature_freshness_seconds``: wall time since the event time of the newest row
  that reached Feast. Event time: a replay of old traffic reads as old.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

FEAST_BACKLOG_ROWS = Gauge(
    "fraudstream_feast_backlog_rows",
    "Feature rows waiting to be pushed to Feast (pending plus in flight).",
)
FEAST_ROWS_PUSHED = Counter(
    "fraudstream_feast_rows_pushed_total",
    "Feature rows pushed to the Feast online store, by feature view.",
    ["view"],
)
FEAST_PUSH_SECONDS = Histogram(
    "fraudstream_feast_push_seconds",
    "Duration of one push attempt of a micro-batch (all views), successful or not.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
FEAST_PUSH_FAILURES = Counter(
    "fraudstream_feast_push_failures_total",
    "Failed pushes, by store (online: the batch is kept and retried; offline: the parquet "
    "rows are kept and written at the next push).",
    ["store"],
)
FEAST_BATCH_ROWS = Histogram(
    "fraudstream_feast_batch_rows",
    "Rows in each micro-batch pushed to Feast (all views).",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 50000),
)
FEATURE_FRESHNESS = Gauge(
    "fraudstream_feature_freshness_seconds",
    "Wall time since the event time of the newest row pushed to Feast (NaN before the first).",
)
