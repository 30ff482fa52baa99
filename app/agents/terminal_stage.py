"""Terminal stage: terminal features and fraud labels, keyed by terminal; the enriched record.

Two agents share the changelog-backed table ``terminal-state``
(:class:`features.terminal.TerminalState`), both reading topics keyed by terminal id with the
same partitions, so a terminal's state lives in one partition:

* ``label-router`` reads fraud labels (keyed by card), validates them (invalid ones go to the
  dead-letter topic) and re-keys them by terminal;
* ``terminal-labels`` stores each label in its terminal's state; a label counts for a
  transaction at event time ``t`` only once ``reported_at <= t``;
* ``terminal-features`` reads the card stage's output, adds the terminal and per-transaction
  features, and publishes one record per transaction to ``transactions-enriched`` (keyed by
  card): the transaction, its feature vector in spec order and the spec version.

A label is held until event time reaches its ``reported_at``, so labels may arrive early.
One that reaches the stage only after a transaction whose event time is at or past its
``reported_at`` is not counted for that transaction (the feature uses what the stage knew when
it computed it). Labels and transactions come from different topics, so under processing skew
(a lagging labels topic, or a fast historical replay) terminal risk can differ from a batch
recomputation that assumes every label arrived on time; the exactness test publishes the
labels first. Delivery: at-least-once; a redelivered transaction is re-emitted with the same
features.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from app.agents.batching import Sender, run_batches
from app.dlq import dead_letter, send_late
from app.keyed_state import feature_states
from app.metrics import LABELS_APPLIED, STAGE_EVENTS
from app.topics import Topics
from config.settings import Settings
from contracts.rejections import Rejection
from contracts.transactions import Rules, validate_label
from features.lateness import Arrival
from features.spec import DEFAULT_SPEC
from features.terminal import TerminalState
from features.txn import transaction_features

log = logging.getLogger(__name__)


def enriched_record(txn: dict[str, Any], features: dict[str, float], version: str,
                    source_ts_ms: int | None = None) -> bytes:
    """The ``transactions-enriched`` value: the transaction, its features, the spec version,
    and (when known) ``source_ts_ms``, the Kafka timestamp of the original transaction record.

    >>> enriched_record({"txn_id": "t1"}, {"amount": 3.0}, "abc")
    b'{"txn_id": "t1", "features": {"amount": 3.0}, "feature_spec_version": "abc"}'
    >>> enriched_record({"txn_id": "t1"}, {}, "abc", 17)[-19:]
    b'"source_ts_ms": 17}'
    """
    value = {**txn, "features": features, "feature_spec_version": version}
    if source_ts_ms is not None:
        value["source_ts_ms"] = source_ts_ms
    return json.dumps(value).encode()


def register(app: Any, topics: Topics, settings: Settings, materialiser: Any = None) -> None:
    """Attach the label router, the label and feature agents and their table to ``app``."""
    spec = DEFAULT_SPEC
    names = spec.names
    rules = Rules.from_settings(settings.validation)
    states = feature_states(app, "terminal", TerminalState, spec,
                            settings.features.terminal_allowed_lateness_s, settings)

    send = Sender(app)
    batch: dict[str, Any] = {"max_events": settings.worker.batch_max_events,
                             "max_wait_s": settings.worker.batch_max_wait_ms / 1000}

    async def route_label(event: Any) -> None:
        label = validate_label(event.value, rules)
        if isinstance(label, Rejection):
            await dead_letter(topics.dlq, event.message, label)
            return
        await send(topics.labels_by_terminal, label.terminal_id.encode(),
                   label.model_dump_json().encode())

    async def apply_label(event: Any) -> None:
        label = json.loads(event.value)
        state = states.get(label["terminal_id"])
        if state.add_label(label):
            await states.save(label["terminal_id"], state, -1)
        LABELS_APPLIED.inc()

    async def enrich(event: Any) -> None:
        message = event.message
        payload = json.loads(event.value)
        txn = payload["txn"]
        terminal = txn["terminal_id"]
        state = states.get(terminal)
        arrival = state.arrival(txn)
        if arrival is Arrival.LATE:
            await send_late(topics.late, message, "terminal", state.watermark)
            return
        if arrival is Arrival.DUPLICATE and message.offset > states.applied_offset(terminal):
            return  # already enriched and published from another source offset
        terminal_features = state.update(txn)
        if arrival is not Arrival.DUPLICATE:
            await states.save(terminal, state, message.offset)
            if materialiser is not None:
                materialiser.update("terminal", terminal, terminal_features, txn["ts"])
        merged = {**transaction_features(txn, spec), **payload["card"], **terminal_features}
        features = {name: merged[name] for name in names}
        await send(topics.enriched, txn["card_id"].encode(),
                   enriched_record(txn, features, spec.version, payload.get("source_ts_ms")))
        STAGE_EVENTS.labels("terminal").inc()

    @app.agent(topics.labels, name="label-router")
    async def label_router(stream: Any) -> None:
        await run_batches(stream, route_label, topics.dlq, "label router", **batch)

    @app.agent(topics.labels_by_terminal, name="terminal-labels")
    async def terminal_labels(stream: Any) -> None:
        await run_batches(stream, apply_label, topics.dlq, "terminal label stage", **batch)

    @app.agent(topics.validated, name="terminal-features")
    async def terminal_features_agent(stream: Any) -> None:
        await run_batches(stream, enrich, topics.dlq, "terminal stage", **batch)
