"""Scoring agents: ``transactions-enriched`` in, ``ml-predictions`` out; hot model swaps.

* ``scoring`` takes enriched records in micro-batches (``FRAUDSTREAM_SCORE_BATCH_MAX_EVENTS``
  / ``..._MAX_WAIT_MS``), scores each batch with the models it snapshots at its start (one ONNX
  Runtime session per loaded model, one run per variant) and publishes one prediction per
  transaction per served variant (:mod:`app.scoring`). A record whose feature-spec version or
  features do not fit the model goes to the dead-letter topic with the reason.
* ``model-updates`` reloads on every event about the configured model; the aliases are also
  polled every ``FRAUDSTREAM_MODEL_POLL_INTERVAL_S`` (the model-updates topic is keyed by
  model name, so with several workers only one of them receives each event: the others swap
  at their next poll). Loading runs in a thread; the swap happens on the event loop, so it
  falls between two batches.

With no loadable champion (``FRAUDSTREAM_SCORE_NO_MODEL``): ``hold`` (default) keeps the batch,
logs an error naming the model, alias and registry, and retries the load every few seconds;
the events are not acknowledged, so their offsets are not committed and nothing is lost or
scored by an invented model. While holding, the worker stops fetching
``transactions-enriched`` (so the other agents, which share Faust's one delivery loop, keep
running) and re-reads from the last delivered offset when it resumes. Faust lets go of a
partition (stop, rebalance) only once every taken event is acknowledged, so if that happens
while holding, the held batch is dead-lettered with reason ``no_model`` (original bytes,
replayable) instead of blocking the stop. ``dlq`` dead-letters them with reason
``no_model``; ``fail_open`` publishes an explicit record (score null, decision pass,
``fail_open: true``).

Delivery: at-least-once. A batch's predictions are handed to the producer before its events
are acknowledged; after a crash a transaction may be scored again by the same version
(consumers deduplicate on ``(txn_id, variant)``). A swap never rescores: each event is scored
once per variant, by the version in force for its batch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

from app.agents.batching import Sender
from app.dlq import dead_letter
from app.metrics import END_TO_END_SECONDS, PREDICTIONS, SCORING_BATCH_SECONDS, SCORING_HELD
from app.scoring.models import ModelHolder, RegistrySource
from app.scoring.records import encode, fail_open_record
from app.scoring.scorer import score_batch, source_ts
from app.scoring.split import SplitPolicy
from app.topics import Topics
from config.settings import Settings
from contracts.rejections import Rejection
from features.spec import DEFAULT_SPEC

log = logging.getLogger(__name__)

HOLD_RETRY_S = 5.0


def build_holder(settings: Settings) -> ModelHolder:
    """The worker's champion/challenger holder on the configured MLflow registry."""

    def registry() -> Any:
        uri = settings.tracking_uri
        if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
            raise FileNotFoundError(f"no MLflow registry at {uri} (train and register a model "
                                    "first, or set MLFLOW_TRACKING_URI)")
        from models.registry import open_registry

        return open_registry(settings)

    source = RegistrySource(registry, DEFAULT_SPEC.names, DEFAULT_SPEC.version,
                            threads=settings.scoring.intra_op_threads,
                            threshold=settings.scoring.threshold,
                            warmup_batch=settings.scoring.batch_max_events)
    return ModelHolder(source)


class Reloader:
    """Serialises refreshes: load in a thread, install on the event loop."""

    def __init__(self, holder: ModelHolder) -> None:
        self.holder = holder
        self.lock = asyncio.Lock()

    async def refresh(self, why: str) -> list[str]:
        async with self.lock:
            try:
                plan = await asyncio.to_thread(self.holder.plan)
            except Exception:
                log.exception("model refresh (%s) failed", why)
                return []
            changes = self.holder.apply(plan)
        if changes:
            log.info("model refresh (%s): %s", why, "; ".join(changes))
        return changes


def register(app: Any, topics: Topics, settings: Settings) -> ModelHolder:
    """Attach the scoring and model-updates agents (and the alias poll) to ``app``."""
    holder = build_holder(settings)
    reloader = Reloader(holder)
    app.fraudstream_models = holder
    app.fraudstream_reloader = reloader
    policy = SplitPolicy(settings.scoring.mode, settings.scoring.challenger_share)
    send = Sender(app)
    where = f"model {settings.registry.model_name!r} alias 'champion' in MLflow"

    def leaving() -> bool:
        return bool(app.should_stop or getattr(app, "rebalancing", False))

    enriched_topic = topics.enriched.get_topic_name()

    def pause_input() -> set[Any]:
        """Stop fetching ``transactions-enriched`` while holding.

        Faust delivers every topic from one loop, which waits when a stream's buffer is full:
        a scoring agent that holds its events would stall the feature stages and every other
        agent of the worker. Paused, only scoring waits.
        """
        consumer = app.consumer
        paused = {tp for tp in consumer.assignment() if tp.topic == enriched_topic}
        consumer.pause_partitions(paused)
        return paused

    async def resume_input(paused: set[Any]) -> None:
        """Resume, re-reading from the last delivered offset: records that Faust fetched but
        dropped because their partition was paused are fetched again, none is skipped."""
        consumer = app.consumer
        paused &= set(consumer.assignment())
        read = consumer._read_offset
        for tp in paused:
            last = read.get(tp)
            if last is not None:
                await consumer.seek(tp, last + 1)
        consumer.resume_partitions(paused)

    async def wait_for_champion(n_events: int) -> bool:
        """``hold``: keep the batch until a champion loads (True), or until the worker stops
        or its partitions are revoked (False: Faust waits for every taken event to be
        acknowledged before it lets go of a partition)."""
        SCORING_HELD.set(n_events)
        paused = pause_input()
        warned = False
        retry = min(HOLD_RETRY_S, settings.scoring.model_poll_interval_s or HOLD_RETRY_S)
        try:
            while not leaving():
                await reloader.refresh("no champion")
                if holder.champion is not None:
                    log.info("champion loaded: scoring the %d held events", n_events)
                    return True
                if not warned:
                    log.error("NO LOADABLE MODEL (%s): holding %d enriched events, nothing "
                              "published; retrying every %.0f s (%s)", where, n_events, retry,
                              holder.slots["champion"].error or "no version has the alias")
                    warned = True
                deadline = time.monotonic() + retry
                while time.monotonic() < deadline and not leaving():
                    await asyncio.sleep(0.2)
            return False
        finally:
            SCORING_HELD.set(0)
            if not app.should_stop:
                await resume_input(paused)

    async def without_model(events: list[Any]) -> None:
        if settings.scoring.no_model == "dlq":
            for event in events:
                await dead_letter(topics.dlq, event.message,
                                  Rejection("no_model", f"no loadable champion ({where})"))
            return
        for event in events:  # fail_open
            try:
                txn = json.loads(event.value)
                now = time.time() * 1000
                record = fail_open_record(txn, scored_at_ms=now, source_ts_ms=source_ts(
                    txn, event.message.timestamp * 1000))
            except (ValueError, KeyError, TypeError):
                await dead_letter(topics.dlq, event.message,
                                  Rejection("malformed_enriched", "not an enriched record"))
                continue
            await send(topics.predictions, event.message.key, encode(record))
            PREDICTIONS.labels(record["decision"], "none", "none").inc()

    async def score(events: list[Any]) -> None:
        champion, challenger = holder.snapshot()
        if champion is None:
            if settings.scoring.no_model != "hold":
                await without_model(events)
                return
            if not await wait_for_champion(len(events)):
                log.error("worker stopping or rebalancing with %d events held and no model: "
                          "dead-lettered with reason no_model (replayable, not lost)",
                          len(events))
                for event in events:
                    await dead_letter(topics.dlq, event.message,
                                      Rejection("no_model", f"no loadable champion ({where})"))
                return
            champion, challenger = holder.snapshot()
            if champion is None:  # unloaded again between the wait and now: keep holding
                await score(events)
                return
        started = time.perf_counter()
        try:
            batch = score_batch([e.value for e in events],
                                [e.message.timestamp * 1000 for e in events],
                                champion, challenger, policy)
        except Exception as exc:  # e.g. ONNX Runtime failed: the events are kept, not lost
            log.exception("scoring a batch of %d failed", len(events))
            for event in events:
                await dead_letter(topics.dlq, event.message, Rejection(
                    "processing_error", f"{type(exc).__name__} in the scoring stage"))
            return
        SCORING_BATCH_SECONDS.observe(time.perf_counter() - started)
        for position, rejection in batch.rejects:
            await dead_letter(topics.dlq, events[position].message, rejection)
        for key, record in batch.records:
            await send(topics.predictions, key, encode(record))
        published = time.time() * 1000
        for _, record in batch.records:
            PREDICTIONS.labels(record["decision"], record["variant"],
                               str(record["model_version"])).inc()
            if not record["shadow"]:
                sent = record["scored_at"] - record["latency_ms"]
                END_TO_END_SECONDS.observe(max(0.0, published - sent) / 1000)

    @app.agent(topics.enriched, name="scoring")
    async def scoring(stream: Any) -> None:
        async for events in stream.take_events(settings.scoring.batch_max_events,
                                               within=settings.scoring.batch_max_wait_ms / 1000):
            await score(events)

    @app.agent(topics.model_updates, name="model-updates")
    async def model_updates(stream: Any) -> None:
        async for event in stream.events():
            try:
                update = json.loads(event.value)
                name = update.get("model_name")
            except (ValueError, AttributeError):
                log.warning("ignored a model-updates record that is not a JSON object: "
                            "%s[%s]@%s", event.message.topic, event.message.partition,
                            event.message.offset)
                continue
            if name != settings.registry.model_name:
                continue
            await reloader.refresh(f"model-updates: {update.get('action')} "
                                   f"v{update.get('version')} {update.get('alias')}")

    @app.task
    async def load_at_start() -> None:
        await reloader.refresh("start")
        if holder.champion is None:
            log.error("NO LOADABLE MODEL at start (%s): %s; scoring %s", where,
                      holder.slots["champion"].error or "no version has the alias",
                      {"hold": "holds events until one loads",
                       "dlq": "dead-letters events with reason no_model",
                       "fail_open": "publishes explicit fail-open records"}[
                           settings.scoring.no_model])

    if settings.scoring.model_poll_interval_s > 0:
        @app.timer(settings.scoring.model_poll_interval_s)
        async def poll_aliases() -> None:
            await reloader.refresh("poll")

    return holder
