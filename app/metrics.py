"""Prometheus metrics of the worker, served at ``/metrics`` on its web port.

Metric names follow Prometheus conventions: ``fraudstream_`` prefix, ``_total`` counters,
base units (seconds, bytes).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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

# -- scoring (app/agents/scoring.py, app/scoring/, POST /score) ---------------------------------
PREDICTIONS = Counter(
    "fraudstream_predictions_total",
    "Predictions published to ml-predictions, by decision, variant and model version.",
    ["decision", "variant", "version"],
)
SCORING_BATCH_SECONDS = Histogram(
    "fraudstream_scoring_batch_seconds",
    "Time to score one micro-batch (parse, predict every variant, build the records).",
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
)
END_TO_END_SECONDS = Histogram(
    "fraudstream_end_to_end_latency_seconds",
    "From the transaction's Kafka record timestamp to the publication of its prediction.",
    buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0),
)
MODEL_INFO = Gauge(
    "fraudstream_model_info",
    "1 for each model version being served, by alias (champion, challenger).",
    ["alias", "model_name", "version", "sha256"],
)
MODEL_LOAD_FAILURES = Counter(
    "fraudstream_model_load_failures_total",
    "Model versions refused at load (bad bytes, wrong features, no threshold...), by alias.",
    ["alias", "reason"],
)
SCORING_HELD = Gauge(
    "fraudstream_scoring_held_events",
    "Events the scoring agent holds because no model is loaded (FRAUDSTREAM_SCORE_NO_MODEL=hold).",
)
SCORE_REQUESTS = Histogram(
    "fraudstream_score_request_seconds",
    "POST /score handling time (Feast read, checks, predict), by outcome.",
    ["outcome"],
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
)
DRIFT_DETECTIONS = Counter(
    "fraudstream_drift_detections_total",
    "ADWIN detections, by model, signal and whether a retrain event was emitted (outside the "
    "cooldown).",
    ["model", "signal", "emitted"],
)
DRIFT_WIDTH = Gauge(
    "fraudstream_drift_window_width",
    "Values in ADWIN's current window, by model and signal.",
    ["model", "signal"],
)
DRIFT_MEAN = Gauge(
    "fraudstream_drift_window_mean",
    "Mean of ADWIN's current window (features: of signed log1p values), by model and signal.",
    ["model", "signal"],
)
DRIFT_INPUTS = Counter(
    "fraudstream_drift_inputs_total",
    "Records seen by the drift agents, by kind (prediction, label, features, error) and "
    "outcome (fed, duplicate, skipped, invalid).",
    ["kind", "outcome"],
)
RETRAIN_OUTCOMES = Counter(
    "fraudstream_retrain_total",
    "model-retrain events handled by the retrain agent, by outcome (trained, duplicate, stale, "
    "failed, invalid, error, abandoned).",
    ["outcome"],
)
RETRAIN_SECONDS = Histogram(
    "fraudstream_retrain_seconds",
    "Wall-clock time of one retrain (waiting for labels, reading, training, registering).",
    buckets=(5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 86_400),
)

# -- the pipeline agent (app/pipeline/) ---------------------------------------------------------
PIPELINE_PARTITIONS = Gauge(
    "fraudstream_pipeline_partitions",
    "Source partitions (of transactions and labels) this worker owns.",
)
PIPELINE_QUEUED = Gauge(
    "fraudstream_pipeline_queued_events",
    "Valid events waiting in the event-time alignment queues.",
)
PIPELINE_GATE_WAITS = Counter(
    "fraudstream_pipeline_gate_waits_total",
    "Times the pipeline waited at the terminal view's gate for another worker's progress.",
)
PIPELINE_VIEW_LATE = Counter(
    "fraudstream_pipeline_view_late_total",
    "Transactions the terminal view could not answer exactly (later than its allowed "
    "lateness): sent to the late topic.",
)
VIEW_ROWS = Gauge(
    "fraudstream_view_rows",
    "Terminal view: terminals held, rows recorded, rows dropped as later than its allowed "
    "lateness (kept at zero by the gate), fraud labels applied; by kind.",
    ["kind"],
)
STATE_LOG_SEGMENTS = Counter(
    "fraudstream_state_log_segments_total",
    "State-log segments written (one per source partition per flush).",
)
STATE_LOG_REPLAY_SECONDS = Histogram(
    "fraudstream_state_log_replay_seconds",
    "Rebuilding the card states of the owned partitions from the state log, per rebalance.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
