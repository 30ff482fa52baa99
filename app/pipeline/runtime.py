"""Wire :class:`app.pipeline.agent.Pipeline` into a Faust app: agent, timers, rebalance, feeder.

* one agent, ``pipeline``, subscribed to ``transactions`` and ``transaction-labels`` together
  (co-partitioned by Faust's PartitionAssignor, which the app uses because it has tables and
  ``table_standby_replicas >= 1``), taking micro-batches that it never acknowledges itself
  (``noack_take``): :class:`~app.pipeline.acks.Deliveries` does, in offset order, after the
  outputs are delivered;
* a timer task (flushes, acknowledgements, unblocking), and the state-log feeder task (its own
  aiokafka consumer, all partitions assigned, from the start);
* rebalance hooks (:mod:`app.faust_ext.rebalance`): at the start, everything held is released
  unacknowledged; at completion, the owned partitions' card states are rebuilt from the state
  log (to its exact end on Tansu) before their first event.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from faust.types import TP

from app import metrics
from app.faust_ext import exact_end_offsets, pausing
from app.faust_ext.progress import PartitionProgress
from app.faust_ext.rebalance import hooks, release_held
from app.pipeline.acks import DeliveryFailed
from app.pipeline.agent import Config, Pipeline, drive
from app.pipeline.statelog import Feeder, Writer, replay
from app.pipeline.view import TerminalView
from app.topics import Topics
from config.settings import Settings
from contracts.transactions import Rules
from features.spec import DEFAULT_SPEC

log = logging.getLogger(__name__)

#: Period of the pipeline's timer (flush checks, acknowledgements, unblocking).
TICK_S = 0.02
#: Retry period of the model load while holding without a champion.
HOLD_RETRY_S = 5.0


class FaustPorts:
    """:class:`app.pipeline.agent.Ports` on a running Faust app."""

    def __init__(self, app: Any, topics: Topics) -> None:
        self.app = app
        self.dlq = topics.dlq
        self.late = topics.late

    async def send(self, topic: str, key: bytes | None, value: bytes,
                   partition: int | None = None) -> Any:
        return await self.app.producer.send(topic, key, value, partition, None, None)

    def lagging(self, topic: str, partition: int, delivered: int | None) -> bool:
        consumer = self.app.consumer
        tp = TP(topic, partition)
        thread = getattr(consumer, "_thread", None)
        ak = getattr(thread, "_consumer", None)
        if ak is None:
            return True
        sub = ak._subscription.subscription
        try:
            state = sub.assignment.state_value(tp) if sub is not None else None
        except (KeyError, AttributeError):
            state = None
        if state is None:
            return True
        records = getattr(ak._fetcher, "_records", {}) if ak._fetcher is not None else {}
        return PartitionProgress(
            highwater=state.highwater,
            position=state.position if state.has_valid_position else None,
            buffered=tp in records, delivered=delivered, committed=None,
            last_fetch_ms=state.timestamp).lagging

    def current(self, event: Any) -> bool:
        gen = getattr(event.message, "generation_id", None)
        return gen is None or gen == self.app.consumer_generation_id

    def release(self, events: list[Any]) -> None:
        release_held(self.app, events)

    def pause(self, topic: str, partition: int) -> None:
        pausing.pause(self.app, [(topic, partition)])

    async def resume(self, topic: str, partition: int, delivered: int | None) -> None:
        tp = TP(topic, partition)
        await pausing.resume(self.app, [tp], None if delivered is None else {tp: delivered})


def pipeline_config(settings: Settings, topics: Topics, score: bool) -> Config:
    names = settings.topics
    return Config(
        transactions=names.transactions, labels=names.labels, enriched=names.enriched,
        predictions=names.predictions, partitions=topics.partitions,
        rules=Rules.from_settings(settings.validation), spec=DEFAULT_SPEC,
        card_lateness_ms=settings.features.card_allowed_lateness_s * 1000,
        max_events_per_key=settings.features.max_events_per_key,
        batch_max_events=settings.worker.batch_max_events,
        flush_ms=settings.pipeline.flush_ms, flush_rows=settings.pipeline.flush_rows,
        queue_max_events=settings.pipeline.queue_max_events, score=score,
        no_model=settings.scoring.no_model, mode=settings.scoring.mode,
        challenger_share=settings.scoring.challenger_share)


async def _committed(app: Any, tps: list[TP]) -> dict[TP, int]:
    """Committed offsets of ``tps`` (the log start where none is committed), read by the
    Faust consumer's own aiokafka consumer, in its thread."""
    from aiokafka.structs import TopicPartition

    thread = app.consumer._thread
    ak = thread._ensure_consumer()
    atps = [TopicPartition(tp.topic, tp.partition) for tp in tps]
    out: dict[TP, int] = {}
    missing = []
    for tp, atp in zip(tps, atps, strict=True):
        offset = await thread.call_thread(ak.committed, atp)
        if offset is None or offset < 0:
            missing.append((tp, atp))
        else:
            out[tp] = int(offset)
    if missing:
        starts = await thread.call_thread(ak.beginning_offsets, [atp for _, atp in missing])
        for tp, atp in missing:
            out[tp] = int(starts.get(atp, 0) or 0)
    return out


def register(app: Any, topics: Topics, settings: Settings, *, bootstrap: str, tansu: bool,
             holder: Any = None, reloader: Any = None, materialiser: Any = None) -> Pipeline:
    """Attach the pipeline agent, its timer, the state-log feeder and the rebalance hooks."""
    from aiokafka import AIOKafkaConsumer

    from config.security import aiokafka_kwargs

    score = holder is not None
    cfg = pipeline_config(settings, topics, score)
    partitions = topics.partitions
    view = TerminalView(DEFAULT_SPEC,
                        lateness_ms=settings.features.terminal_allowed_lateness_s * 1000,
                        max_events=settings.features.max_events_per_key, partitions=partitions)
    writer_id = uuid.uuid4().bytes
    state_topic = topics.state_log.get_topic_name()

    async def send_segment(partition: int, value: bytes) -> Any:
        return await app.producer.send(state_topic, None, value, partition, None, None)

    writer = Writer(writer_id, send_segment)
    feeder = Feeder(view, writer_id, partitions)
    ports = FaustPorts(app, topics)
    pipeline = Pipeline(cfg, ports, view, writer, feeder, holder, materialiser)
    app.fraudstream_pipeline = pipeline
    kafka_kwargs = aiokafka_kwargs(settings)
    fetch_wait = settings.broker.fetch_max_wait_ms

    def side_consumer() -> Any:
        return AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=fetch_wait, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=8 * 1024 * 1024, **kafka_kwargs)

    async def exact(consumer: Any, reported: dict[Any, int]) -> dict[Any, int]:
        return await exact_end_offsets(bootstrap, reported)

    rebalance = hooks(app)

    draining: list[asyncio.Future] = []

    def revoke(why: str) -> None:
        """Stop processing; release what was not processed; finish (segment, deliveries,
        acknowledgements) what was, while Faust waits for the held events before it commits
        and lets the partitions go."""
        held = pipeline.revoke()
        feeder.revoke()
        if held:
            release_held(app, held)
        if draining and not draining[-1].done():
            return
        acked = pipeline.deliveries.acked

        async def drain() -> None:
            rest = await pipeline.drain()
            if rest:
                release_held(app, rest)
            log.info("%s: %d processed events acknowledged, %d released unacknowledged",
                     why, pipeline.deliveries.acked - acked, len(held) + len(rest))

        draining.append(asyncio.ensure_future(drain()))

    @rebalance.on_start
    def _revoke(app_: Any) -> None:
        revoke("rebalance")

    @app.task
    async def drain_at_stop() -> None:
        # Faust's stop waits for every held event before it cancels the agents
        await app.wait_until_stopped()
        revoke("stop")

    @rebalance.on_complete
    async def _assigned(app_: Any) -> None:
        if draining:
            await draining[-1]
        inputs = (cfg.transactions, cfg.labels)
        owned = sorted({tp.partition for tp in app.consumer.assignment() if tp.topic in inputs})
        started = time.monotonic()
        committed = await _committed(app, [TP(t, p) for t in inputs for p in owned])
        commits = {p: committed[TP(cfg.transactions, p)] for p in owned}
        consumer = side_consumer()
        await consumer.start()
        done: dict[int, tuple[int, int]] = {}
        try:
            cards, rows, ends = await replay(consumer, state_topic, commits, cfg.spec,
                                             pipeline.card_config, exact if tansu else None,
                                             done=done)
        finally:
            await consumer.stop()
        # where each owned partition starts: after what the state log holds (done and
        # delivered), or at the commit if that is later
        start = {p: (max(commits[p], done[p][0]), max(committed[TP(cfg.labels, p)], done[p][1]))
                 for p in owned}
        feeder.assign(start, ends)
        pipeline.assign(owned, cards, {(tp.topic, tp.partition): off
                                       for tp, off in committed.items()},
                        applied={**{(cfg.transactions, p): s[0] for p, s in start.items()},
                                 **{(cfg.labels, p): s[1] for p, s in start.items()}})
        seconds = time.monotonic() - started
        metrics.STATE_LOG_REPLAY_SECONDS.observe(seconds)
        log.info("pipeline: partitions %s, card states rebuilt from %d state-log rows in "
                 "%.2f s (%d cards)", owned, rows, seconds,
                 sum(len(c) for c in cards.values()))

    inputs = app.topic(cfg.transactions, cfg.labels, key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")
    within = settings.worker.batch_max_wait_ms / 1000

    @app.agent(inputs, name="pipeline")
    async def pipeline_agent(stream: Any) -> None:
        async for events in stream.noack_take(cfg.batch_max_events, within=within or 0.001):
            try:
                await pipeline.handle(events)
            except DeliveryFailed as exc:
                await app.crash(exc)  # stop: nothing may be committed past the failed send
                raise

    @app.task
    async def pipeline_timer() -> None:
        last_retry = time.monotonic()

        def stopping() -> bool:
            return bool(app.should_stop)

        async def tick_forever() -> None:
            try:
                await drive(pipeline, TICK_S, stopping)
            except Exception as exc:
                # without its timer nothing is acknowledged any more: stop the worker (its
                # held events go to the partitions' next owner) rather than stall
                await app.crash(exc)
                raise

        async def retry_model() -> None:
            nonlocal last_retry
            while not stopping():
                await asyncio.sleep(0.5)
                # the holder itself, not pipeline.holding: that flag is only refreshed
                # while the pipeline can run (not during a rebalance or the view's catch-up)
                if holder is not None and holder.champion is None and reloader is not None and (
                        time.monotonic() - last_retry >= HOLD_RETRY_S):
                    last_retry = time.monotonic()
                    await reloader.refresh("holding without a champion")

        await asyncio.gather(tick_forever(), retry_model())

    @app.task
    async def state_log_feeder() -> None:
        consumer = side_consumer()
        await consumer.start()
        try:
            await feeder.run(consumer, state_topic, idle=lambda: bool(
                pipeline.owned) and not pipeline.foreign and feeder.ready())
        finally:
            await consumer.stop()

    @app.timer(1.0)
    async def pipeline_gauges() -> None:
        stats = view.stats()
        for kind in ("terminals", "recorded", "late", "labels"):
            metrics.VIEW_ROWS.labels(kind).set(stats[kind])
        metrics.STATE_KEYS.labels("card").set(sum(len(c) for c in pipeline.cards.values()))
        metrics.STATE_KEYS.labels("terminal").set(stats["terminals"])

    return pipeline
