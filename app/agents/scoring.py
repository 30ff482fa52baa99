"""Models and the separate scoring agent: hot model swaps; ``transactions-enriched`` scored.

* :func:`register_models` (every worker that scores, fused or not): the champion/challenger
  holder, the ``model-updates`` agent that reloads on every event about the configured model
  (a record that is not a model update - too large, too deep, not JSON, missing fields - is
  dead-lettered with its reason), the alias poll every ``FRAUDSTREAM_MODEL_POLL_INTERVAL_S``
  (the model-updates topic is keyed by model name, so with several workers only one of them
  receives each event: the others swap at their next poll) and the load at start. Loading
  runs in a thread; the swap happens on the event loop, so it falls between two batches. The
  pipeline agent (:mod:`app.pipeline`) scores with this holder in its own micro-batches
  (fused, the default).
* :func:`register_scoring_agent` (``FRAUDSTREAM_PIPELINE_SCORING=separate``, to scale the
  stages apart): ``scoring`` takes enriched records in micro-batches
  (``FRAUDSTREAM_SCORE_BATCH_MAX_EVENTS`` / ``..._MAX_WAIT_MS``), scores each batch with the
  models it snapshots at its start (one ONNX Runtime run per variant) and publishes one
  prediction per transaction per served variant (:mod:`app.scoring`). A record whose
  feature-spec version or features do not fit the model goes to the dead-letter topic with
  the reason.

With no loadable champion (``FRAUDSTREAM_SCORE_NO_MODEL``): ``hold`` (default) keeps the batch,
logs an error naming the model, alias and registry, and retries the load every few seconds;
the events are not acknowledged, so their offsets are not committed and nothing is lost or
scored by an invented model. While holding, the worker stops fetching
``transactions-enriched`` (so the other agents keep running) and fetches again from the last
delivered offset when it resumes. A rebalance or a stop while holding releases the held
events unacknowledged (:func:`app.faust_ext.rebalance.release_held`): the next owner gets them
again; nothing is skipped or dead-lettered. ``dlq`` dead-letters them with reason
``no_model``; ``fail_open`` publishes an explicit record (score null, decision pass,
``fail_open: true``).

Delivery: at-least-once. Events are acknowledged in offset order per partition once their
predictions (or dead-letter records) were delivered (:mod:`app.pipeline.acks`); after a crash a
transaction may be scored again by the same version (consumers deduplicate on
``(txn_id, variant)``). A swap never rescores: each event is scored once per variant, by the
version in force for its batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from app.dlq import dead_letter
from app.metrics import END_TO_END_SECONDS, PREDICTIONS, SCORING_BATCH_SECONDS, SCORING_HELD
from app.scoring.models import ModelHolder, RegistrySource
from app.scoring.records import encode, fail_open_record
from app.scoring.scorer import score_batch
from app.scoring.split import SplitPolicy
from app.topics import Topics
from config.settings import Settings
from contracts.records import decode_enriched, decode_model_update
from contracts.rejections import ContractError, Rejection
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


def register_models(app: Any, topics: Topics, settings: Settings) -> tuple[ModelHolder, Reloader]:
    """The holder, the ``model-updates`` agent, the load at start and the alias poll."""
    holder = build_holder(settings)
    reloader = Reloader(holder)
    app.fraudstream_models = holder
    app.fraudstream_reloader = reloader
    where = f"model {settings.registry.model_name!r} alias 'champion' in MLflow"

    max_bytes = settings.validation.max_payload_bytes

    @app.agent(topics.model_updates, name="model-updates")
    async def model_updates(stream: Any) -> None:
        async for event in stream.events():
            try:
                update = decode_model_update(event.value, max_bytes=max_bytes)
            except ContractError as exc:
                # too large, too deep, not JSON, not a model update: dead-lettered (fitted to
                # the producer), delivered before the event is acknowledged
                fut = await dead_letter(topics.dlq, event.message, exc.rejection())
                if fut is not None:
                    await fut
                continue
            if update.model_name != settings.registry.model_name:
                continue
            await reloader.refresh(f"model-updates: {update.action} "
                                   f"v{update.version} {update.alias}")

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

    return holder, reloader


def register_scoring_agent(app: Any, topics: Topics, settings: Settings, holder: ModelHolder,
                           reloader: Reloader) -> None:
    """The separate ``scoring`` agent on ``transactions-enriched``."""
    from app.faust_ext import pausing
    from app.faust_ext.rebalance import hooks, release_held
    from app.pipeline.acks import Deliveries

    policy = SplitPolicy(settings.scoring.mode, settings.scoring.challenger_share)
    where = f"model {settings.registry.model_name!r} alias 'champion' in MLflow"
    deliveries = Deliveries()
    enriched_topic = topics.enriched.get_topic_name()
    predictions_topic = topics.predictions.get_topic_name()

    async def send(key: bytes | None, value: bytes) -> Any:
        return await app.producer.send(predictions_topic, key, value, None, None, None)

    @hooks(app).on_start
    def _revoked(app_: Any) -> None:
        held = deliveries.revoked()
        if held:
            release_held(app, held)
            log.info("scoring: rebalance, released %d held events unacknowledged", len(held))

    def leaving() -> bool:
        return bool(app.should_stop or hooks(app).rebalancing)

    async def wait_for_champion(n_events: int) -> bool:
        """``hold``: keep the batch until a champion loads (True), or until the worker stops
        or a rebalance starts (False: the events are released, never dead-lettered)."""
        SCORING_HELD.set(n_events)
        paused = pausing.pause(app, {tp for tp in app.consumer.assignment()
                                     if tp.topic == enriched_topic})
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
            if not app.should_stop and not hooks(app).rebalancing:
                await pausing.resume(app, paused, deliveries.last_received())

    async def without_model(events: list[Any]) -> None:
        for event in events:
            futures: list[Any] = []
            if settings.scoring.no_model == "dlq":
                futures.append(await dead_letter(topics.dlq, event.message, Rejection(
                    "no_model", f"no loadable champion ({where})")))
            else:  # fail_open
                try:
                    enriched = decode_enriched(event.value)
                    now = time.time() * 1000
                    sent = enriched.source_ts_ms
                    record = fail_open_record(enriched.txn, scored_at_ms=now, source_ts_ms=(
                        sent if sent is not None else event.message.timestamp * 1000))
                except (ContractError, ValueError, KeyError, TypeError):
                    futures.append(await dead_letter(topics.dlq, event.message, Rejection(
                        "malformed_enriched", "not an enriched record")))
                else:
                    futures.append(await send(event.message.key, encode(record)))
                    PREDICTIONS.labels(record["decision"], "none", "none").inc()
            deliveries.finish([event], futures)

    async def score(events: list[Any]) -> None:
        champion, challenger = holder.snapshot()
        while champion is None:
            if settings.scoring.no_model != "hold":
                await without_model(events)
                return
            if not await wait_for_champion(len(events)):
                if app.should_stop:
                    release_held(app, deliveries.revoked())
                log.warning("worker stopping or rebalancing with %d events held and no "
                            "model: released unacknowledged (the next owner gets them)",
                            len(events))
                return
            champion, challenger = holder.snapshot()  # unloaded again meanwhile: hold on
        started = time.perf_counter()
        try:
            batch = score_batch([e.value for e in events],
                                [e.message.timestamp * 1000 for e in events],
                                champion, challenger, policy)
        except Exception:  # e.g. ONNX Runtime failed: score one by one to isolate the bad one
            log.exception("scoring a batch of %d failed: one by one", len(events))
            for event in events:
                await score_alone(event, champion, challenger)
            return
        SCORING_BATCH_SECONDS.observe(time.perf_counter() - started)
        futures: dict[int, list[Any]] = {i: [] for i in range(len(events))}
        for position, rejection in batch.rejects:
            futures[position].append(await dead_letter(topics.dlq, events[position].message,
                                                       rejection))
        for position, (key, record) in zip(batch.positions, batch.records, strict=True):
            futures[position].append(await send(key, encode(record)))
        published = time.time() * 1000
        for _, record in batch.records:
            PREDICTIONS.labels(record["decision"], record["variant"],
                               str(record["model_version"])).inc()
            if not record["shadow"]:
                sent = record["scored_at"] - record["latency_ms"]
                END_TO_END_SECONDS.observe(max(0.0, published - sent) / 1000)
        for i, event in enumerate(events):
            deliveries.finish([event], futures[i])

    async def score_alone(event: Any, champion: Any, challenger: Any) -> None:
        try:
            batch = score_batch([event.value], [event.message.timestamp * 1000], champion,
                                challenger, policy)
        except Exception as exc:
            log.exception("scoring %s[%s]@%s failed", event.message.topic,
                          event.message.partition, event.message.offset)
            fut = await dead_letter(topics.dlq, event.message, Rejection(
                "processing_error", f"{type(exc).__name__} in the scoring stage"))
            deliveries.finish([event], [fut])
            return
        futures = [await dead_letter(topics.dlq, event.message, r) for _, r in batch.rejects]
        futures += [await send(key, encode(record)) for key, record in batch.records]
        deliveries.finish([event], futures)

    @app.agent(topics.enriched, name="scoring")
    async def scoring(stream: Any) -> None:
        async for events in stream.noack_take(settings.scoring.batch_max_events,
                                              within=settings.scoring.batch_max_wait_ms / 1000
                                              or 0.001):
            fresh, stale = [], []
            for event in events:
                current = event.message.generation_id == app.consumer_generation_id
                if current and not hooks(app).rebalancing and deliveries.received(event):
                    fresh.append(event)
                else:
                    stale.append(event)
            if stale:
                release_held(app, stale)
            if fresh:
                await score(fresh)
            deliveries.settle()

    @app.timer(0.05)
    async def settle_scoring_acks() -> None:
        deliveries.settle()


def register(app: Any, topics: Topics, settings: Settings) -> ModelHolder:
    """The models and the separate scoring agent (see the module docstring)."""
    holder, reloader = register_models(app, topics, settings)
    register_scoring_agent(app, topics, settings, holder, reloader)
    return holder
