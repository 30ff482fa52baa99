"""Drift agents: River ADWIN per signal on the champion's scores, selected features and the
error stream; a ``model-retrain`` record on detection. Logic in :mod:`app.drift`.

Two stages, because one ADWIN must see the whole stream of a model while the inputs are
partitioned by card:

1. **Join stage** (keyed by card; table ``drift-join``, :class:`app.drift.join.CardJoin`):
   ``drift-predictions`` reads ``ml-predictions`` (champion, non-shadow records only; the
   challenger's and shadow scores describe another model), ``drift-labels`` reads
   ``transaction-labels`` (invalid ones are skipped and counted: the label router dead-letters
   them) and ``drift-features`` reads ``transactions-enriched`` for the feature signals
   (features come from the enriched topic, not from the predictions: they describe the traffic
   whatever model scored it, and are there before any model is). Each forwards what it has not
   forwarded before (txn_id dedup, bounded by the join horizon) to the internal topic
   ``<app_id>-drift-signals``, keyed by model name, and the label/prediction join adds the
   error records.
2. **Detection stage** (``drift-detect``, keyed by model name; table ``drift-monitor``,
   :class:`app.drift.monitor.ModelMonitor`): feeds the detectors, publishes the retrain
   records to ``model-retrain`` (keyed by model name), saves the monitor once per micro-batch
   with the highest source offset applied: records at or below it (a redelivery after a crash)
   are skipped, so nothing is fed twice from a replay of this topic.

Delivery: at-least-once. A retrain record sent just before a crash may be sent again after it,
with the same ``idempotency_key`` (the restored state and the replayed events detect at the same
txn with the same count): consumers deduplicate on it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from app.agents.batching import Sender, run_batches
from app.dlq import dead_letter
from app.drift.join import CardJoin
from app.drift.monitor import MODEL_SIGNALS, ModelMonitor
from app.faust_ext import event_context
from app.keyed_state import KeyedStates, changelog_writer
from app.metrics import DRIFT_DETECTIONS, DRIFT_INPUTS, DRIFT_MEAN, DRIFT_WIDTH
from app.topics import Topics
from config.settings import Settings
from contracts.rejections import Rejection
from contracts.transactions import Rules, validate_label

log = logging.getLogger(__name__)


def register(app: Any, topics: Topics, settings: Settings) -> None:
    """Attach the drift agents, their tables and the internal signals topic to ``app``."""
    horizon_ms = settings.drift.join_horizon_s * 1000
    feature_signals = [s for s in settings.drift.signals if s not in MODEL_SIGNALS]
    rules = Rules.from_settings(settings.validation)
    send = Sender(app)
    worker = settings.worker
    max_events, max_wait_s = worker.batch_max_events, worker.batch_max_wait_ms / 1000
    signals = app.topic(f"{worker.app_id}-drift-signals", partitions=topics.partitions,
                        replicas=settings.topics.replication, key_type=bytes, value_type=bytes,
                        key_serializer="raw", value_serializer="raw", internal=True)

    join_table = app.Table("drift-join", default=None, partitions=topics.partitions,
                           key_type=str)
    joins: KeyedStates[CardJoin] = KeyedStates(
        join_table,
        new=lambda: CardJoin(horizon_ms, settings.drift.join_max_per_card, settings.drift.error),
        load=lambda d: CardJoin.from_dict(d, horizon_ms, settings.drift.join_max_per_card,
                                          settings.drift.error),
        dump=lambda j: j.to_dict(), max_cached=settings.features.state_cache_keys,
        write=changelog_writer(app, join_table))
    monitor_table = app.Table("drift-monitor", default=None,
                              partitions=topics.partitions, key_type=str)

    def new_monitor(name: str, data: Any = None) -> ModelMonitor:
        return ModelMonitor.from_dict(data, name, settings.drift.signals,
                                      settings.drift.adwin_delta, settings.drift.adwin_clock,
                                      settings.drift.cooldown_s)

    monitors: dict[str, KeyedStates[ModelMonitor]] = {}

    def monitor_states(name: str) -> KeyedStates[ModelMonitor]:
        if name not in monitors:
            monitors[name] = KeyedStates(
                monitor_table, new=lambda: new_monitor(name),
                load=lambda d: new_monitor(name, d), dump=lambda m: m.to_dict(),
                max_cached=16, write=changelog_writer(app, monitor_table))
        return monitors[name]

    def forget(*_: Any, **__: Any) -> None:
        joins.clear()
        for states in monitors.values():
            states.clear()

    app.on_partitions_revoked.connect(forget)

    async def forward(model: str, record: dict[str, Any]) -> None:
        await send(signals, model.encode(), json.dumps(record).encode())

    # -- stage 1: join and dedup, keyed by card --------------------------------------------
    async def on_prediction(event: Any) -> None:
        p = json.loads(event.value)
        if p.get("shadow") or p.get("variant") != "champion" or p.get("score") is None:
            DRIFT_INPUTS.labels("prediction", "skipped").inc()
            return
        card, txn, version = p["card_id"], p["txn_id"], str(p["model_version"])
        join = joins.get(card)
        fresh, error = join.prediction(txn, int(p["event_ts"]), float(p["score"]),
                                       p["model_name"], version)
        if not fresh:
            DRIFT_INPUTS.labels("prediction", "duplicate").inc()
            return
        await joins.save(card, join, -1)
        await forward(p["model_name"], {"k": "p", "txn_id": txn, "model_version": version,
                                        "event_ts": int(p["event_ts"]), "score": p["score"]})
        DRIFT_INPUTS.labels("prediction", "fed").inc()
        if error is not None:
            await forward(p["model_name"], {"k": "e", **error})
            DRIFT_INPUTS.labels("error", "fed").inc()

    async def on_label(event: Any) -> None:
        label = validate_label(event.value, rules)
        if isinstance(label, Rejection):
            DRIFT_INPUTS.labels("label", "invalid").inc()
            return
        join = joins.get(label.card_id)
        error = join.label(label.txn_id, int(label.is_fraud), int(label.ts),  # type: ignore[arg-type]
                           int(label.reported_at))  # type: ignore[arg-type]
        await joins.save(label.card_id, join, -1)
        DRIFT_INPUTS.labels("label", "fed").inc()
        if error is not None:
            await forward(error["model_name"], {"k": "e", **error})
            DRIFT_INPUTS.labels("error", "fed").inc()

    async def on_features(event: Any) -> None:
        rec = json.loads(event.value)
        join = joins.get(rec["card_id"])
        if not join.features(rec["txn_id"], int(rec["ts"])):
            DRIFT_INPUTS.labels("features", "duplicate").inc()
            return
        await joins.save(rec["card_id"], join, -1)
        values = {name: rec["features"].get(name) for name in feature_signals}
        await forward(settings.registry.model_name,
                      {"k": "f", "txn_id": rec["txn_id"], "event_ts": int(rec["ts"]),
                       "features": values})
        DRIFT_INPUTS.labels("features", "fed").inc()

    @app.agent(topics.predictions, name="drift-predictions")
    async def drift_predictions(stream: Any) -> None:
        await run_batches(stream, on_prediction, topics.dlq, "drift join", max_events, max_wait_s)

    @app.agent(topics.labels, name="drift-labels")
    async def drift_labels(stream: Any) -> None:
        await run_batches(stream, on_label, topics.dlq, "drift join", max_events, max_wait_s)

    if feature_signals:
        @app.agent(topics.enriched, name="drift-features")
        async def drift_features(stream: Any) -> None:
            await run_batches(stream, on_features, topics.dlq, "drift join", max_events, max_wait_s)

    # -- stage 2: detectors, keyed by model --------------------------------------------------
    def feed(monitor: ModelMonitor, rec: dict[str, Any]) -> list[Any]:
        kind = rec["k"]
        if kind == "p":
            return monitor.prediction(rec["txn_id"], rec["model_version"], rec["event_ts"],
                                      float(rec["score"]))
        if kind == "f":
            values = {k: float(v) for k, v in rec["features"].items() if v is not None}
            return monitor.features(rec["txn_id"], rec["event_ts"], values)
        return monitor.error(rec["txn_id"], rec["model_version"], rec["event_ts"],
                             float(rec["error"]))

    async def detect(event: Any) -> str | None:
        model = event.key.decode()
        states = monitor_states(model)
        if event.message.offset <= states.applied_offset(model):
            DRIFT_INPUTS.labels("signal", "duplicate").inc()
            return model
        monitor = states.get(model)
        for outcome in feed(monitor, json.loads(event.value)):
            d = outcome.detection
            DRIFT_DETECTIONS.labels(model, d.signal, str(outcome.record is not None).lower()).inc()
            log.info("drift on %s/%s at event time %s after %s values (mean %.4g -> %.4g)%s",
                     model, d.signal, d.event_ts, d.n_seen, d.mean_before, d.mean_after,
                     "" if outcome.record else " (cooldown: no retrain event)")
            if outcome.record is not None:
                await send(topics.retrain, model.encode(),
                           json.dumps(outcome.record, allow_nan=False).encode())
        return model

    def export(model: str, monitor: ModelMonitor) -> None:
        for signal, det in monitor.detectors.items():
            DRIFT_WIDTH.labels(model, signal).set(det.width)
            DRIFT_MEAN.labels(model, signal).set(det.mean)

    @app.agent(signals, name="drift-detect")
    async def drift_detect(stream: Any) -> None:
        async for events in stream.take_events(max_events, within=max_wait_s):
            last: dict[str, Any] = {}
            for event in events:
                with event_context(event):
                    try:
                        model = await detect(event)
                        if model is not None:
                            last[model] = event
                    except Exception as exc:
                        message = event.message
                        log.exception("drift detection failed for %s[%s]@%s", message.topic,
                                      message.partition, message.offset)
                        await dead_letter(topics.dlq, message, Rejection(
                            "processing_error", f"{type(exc).__name__} in the drift detector"))
            for model, event in last.items():
                states = monitor_states(model)
                monitor = states.get(model)
                with event_context(event):
                    await states.save(model, monitor, event.message.offset)
                export(model, monitor)
