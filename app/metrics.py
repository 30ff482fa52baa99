"""Prometheus metrics of the worker, served at ``/metrics`` on its web port.

Metric names follow Prometheus conventions: ``fraudstream_`` prefix, ``_total`` counters,
base units (seconds, bytes).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

TRANSACTIONS_VALID = Counter(
    "fraudstream_transactions_valid_total",
    "Transactions that passed validation and were forwarded.",
)
TRANSACTIONS_INVALID = Counter(
    "fraudstream_transactions_invalid_total",
    "Records sent to the dead-letter topic, by reason.",
    ["reason"],
)
TRANSACTIONS_DUPLICATE = Counter(
    "fraudstream_transactions_duplicate_total",
    "Transactions whose txn_id the card's state still holds, at a new offset (dropped).",
)
TRANSACTIONS_LATE = Counter(
    "fraudstream_transactions_late_total",
    "Transactions beyond the allowed lateness, sent to the late topic, by stage.",
    ["stage"],
)
STAGE_EVENTS = Counter(
    "fraudstream_stage_events_total",
    "Transactions processed by each stage (rate() gives events/s per stage).",
    ["stage"],
)
STATE_KEYS = Gauge(
    "fraudstream_state_keys",
    "Feature states held live in memory, by stage (cards, terminals).",
    ["stage"],
)
STATE_EVENTS = Gauge(
    "fraudstream_state_events",
    "Transactions held in the live feature states' windows, by stage.",
    ["stage"],
)
LABELS_APPLIED = Counter(
    "fraudstream_labels_applied_total",
    "Fraud labels delivered to the terminal stage.",
)
