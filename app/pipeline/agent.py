"""The pipeline agent: ``transactions`` + ``transaction-labels`` in, one hop, scored out.

:class:`Pipeline` is the whole hot path of a worker, as a class that a test drives in process
with fake events (:meth:`Pipeline.handle`), a fake producer and fake consumer ports
(:class:`Ports`); :mod:`app.pipeline.runtime` wires it into Faust.

Per event, in this order:

1. **At arrival** (:meth:`Pipeline.handle`): registered for in-order acknowledgement, parsed
   and validated (invalid: to the dead-letter topic at once), queued by input.
2. **In merge order** (:mod:`app.pipeline.aligner`): ``(event time, label before txn,
   partition, offset)`` across the owned partitions, waiting only for lagging inputs; a
   transaction also waits at the gate of the terminal view until the other workers'
   partitions are complete enough (:meth:`app.pipeline.view.TerminalView.blocking`).
   * a label: into the terminal view; a fraud label's row to the state log;
   * a transaction: terminal features from the view (read-only, at its event time), card
     features from its card's state (updated), the transaction features; its row into the
     view and the state log; Feast rows to the materialiser.
3. **Per micro-batch**: one ONNX Runtime run per variant (champion, challenger; shadow or
   split), an ``ml-predictions`` record per variant and a ``transactions-enriched`` record per
   transaction, handed to the producer.
4. **Per flush** (every ``FRAUDSTREAM_STATE_LOG_FLUSH_MS`` or ``..._FLUSH_ROWS`` rows): one
   state-log segment per source partition with rows; the events of the interval are then
   acknowledged, per partition in offset order, once every send they depend on has been
   delivered (:mod:`app.pipeline.acks`).

Failures: an exception in one event dead-letters that event (``processing_error``) and the
rest of the batch goes on; an exception in a batched ONNX run falls back to one run per event
to find the failing one. Without a loadable champion, ``hold`` (default) processes nothing:
events stay queued and unacknowledged (their partitions pause when the queues are full, without
losing fetched records), never skipped or dead-lettered, also across rebalances.

Rebalance: at its start every event held is released unacknowledged (the next owner gets it
again) and the per-partition state is dropped; at its completion the card states of the owned
partitions are rebuilt from the state log before their first event is processed, and no event
is processed before the terminal view holds the log's history of every owned partition.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from app import metrics
from app.dlq import dead_letter, send_late
from app.pipeline.acks import Deliveries, DeliveryFailed
from app.pipeline.aligner import LABEL, NEVER, TXN, Aligner, Item
from app.pipeline.segments import NONE
from app.pipeline.statelog import Feeder, Writer
from app.pipeline.view import TerminalView
from app.scoring.records import fail_open_record, prediction_record
from app.scoring.split import CHALLENGER, CHAMPION, SplitPolicy
from contracts.records import Prediction, encode_enriched, encode_prediction
from contracts.rejections import Rejection
from contracts.transactions import Rules, validate, validate_label
from features.card import CardState
from features.lateness import Arrival, LateEventError
from features.rows import label_row, txn_row
from features.spec import DEFAULT_SPEC, FeatureSpec
from features.txn import transaction_features

log = logging.getLogger(__name__)


@dataclass
class Config:
    """What the pipeline needs to know (built from the settings by the runtime)."""

    transactions: str = "transactions"
    labels: str = "transaction-labels"
    enriched: str = "transactions-enriched"
    predictions: str = "ml-predictions"
    partitions: int = 1
    rules: Rules = field(default_factory=lambda: Rules(50_000.0, frozenset({"EUR"}), 300, 4096))
    spec: FeatureSpec = DEFAULT_SPEC
    card_lateness_ms: int = 60_000
    max_events_per_key: int = 10_000
    batch_max_events: int = 500
    flush_ms: float = 200.0
    flush_rows: int = 5_000
    queue_max_events: int = 20_000
    #: score in this agent (fused); False: publish enriched records only
    score: bool = True
    no_model: str = "hold"
    mode: str = "shadow"
    challenger_share: float = 0.1


class Ports(Protocol):
    """What the pipeline needs from Faust and the broker (fakes in the unit tests)."""

    dlq: Any  # Faust topic objects (``await topic.send(key=, value=, headers=)`` -> future)
    late: Any

    async def send(self, topic: str, key: bytes | None, value: bytes,
                   partition: int | None = None) -> Any: ...

    def lagging(self, topic: str, partition: int, delivered: int | None) -> bool: ...

    def current(self, event: Any) -> bool: ...

    def release(self, events: list[Any]) -> None: ...

    def pause(self, topic: str, partition: int) -> None: ...

    async def resume(self, topic: str, partition: int, delivered: int | None) -> None: ...


class _Txn:
    """A queued valid transaction."""

    __slots__ = ("row", "txn", "message")

    def __init__(self, row: Any, txn: dict[str, Any], message: Any) -> None:
        self.row, self.txn, self.message = row, txn, message


def _source_ts_ms(message: Any) -> int | None:
    ts = getattr(message, "timestamp", None)
    return int(ts * 1000) if isinstance(ts, int | float) and ts > 0 else None


class Pipeline:
    """The single-hop pipeline of one worker (see the module docstring)."""

    def __init__(self, config: Config, ports: Ports, view: TerminalView, writer: Writer,
                 feeder: Feeder | None = None, holder: Any = None, materialiser: Any = None,
                 now_ms: Callable[[], float] = lambda: time.time() * 1000) -> None:
        self.config = config
        self.ports = ports
        self.view = view
        self.writer = writer
        self.feeder = feeder
        self.holder = holder
        self.materialiser = materialiser
        self.now_ms = now_ms
        self.names = config.spec.names
        getter = operator.itemgetter(*self.names)
        self._vector: Callable[[dict[str, float]], tuple[float, ...]] = (
            getter if len(self.names) > 1 else lambda f: (getter(f),))
        self.version = config.spec.version
        self.card_config = {"allowed_lateness_ms": config.card_lateness_ms,
                            "max_events": config.max_events_per_key}
        self.policy = SplitPolicy(config.mode, config.challenger_share)  # type: ignore[arg-type]
        self.deliveries = Deliveries()
        self.aligner = Aligner(config.queue_max_events, self._on_full, self._on_room)
        self.cards: dict[int, dict[str, CardState]] = {}
        self.owned: set[int] = set()
        self.foreign: list[int] = []
        self.delivered: dict[tuple[str, int], int] = {}
        self.applied: dict[tuple[str, int], int] = {}
        self.epoch = 0
        self.revoking = True  # until the first assignment completes
        self.clock = NEVER
        self.blocked_on: int | None = None
        self.holding = False
        self._to_resume: set[tuple[int, int]] = set()
        self._paused: set[tuple[int, int]] = set()
        self._unflushed: list[Any] = []
        self._unflushed_futures: list[Any] = []
        self._last_flush = time.monotonic()
        self._pumping = False
        self._handling = 0
        self._again = False
        self._released: set[int] = set()
        self._sorted = False
        self._topic_kind = {config.transactions: TXN, config.labels: LABEL}
        self._kind_topic = {TXN: config.transactions, LABEL: config.labels}
        self.counts = {"valid": 0, "invalid": 0, "labels": 0, "duplicates": 0, "late": 0,
                       "errors": 0, "scored": 0, "released": 0, "replayed": 0}
        self._stage = metrics.STAGE_EVENTS.labels("pipeline")

    # -- partitions ------------------------------------------------------------------------
    def assign(self, owned: Iterable[int], cards: dict[int, dict[str, CardState]],
               committed: dict[tuple[str, int], int],
               applied: dict[tuple[str, int], int] | None = None) -> None:
        """A rebalance completed: ``owned`` source partitions, their rebuilt card states, the
        committed offsets (``(topic, partition) -> offset``) of both inputs and, per input,
        the offset below which the state log already holds what was done (``applied``: those
        events are acknowledged without being processed again; their outputs were delivered
        before their rows were written, :meth:`flush`)."""
        self.applied = dict(applied or {})
        self.owned = set(owned)
        self.foreign = [q for q in range(self.config.partitions) if q not in self.owned]
        self.cards = {p: cards.get(p, {}) for p in self.owned}
        self.delivered = {tp: off - 1 for tp, off in committed.items()}
        self.aligner.own(sorted(self.owned))
        self._paused.clear()
        self._to_resume.clear()
        self.revoking = False
        self.blocked_on = None
        metrics.PIPELINE_PARTITIONS.set(len(self.owned))

    def revoke(self) -> list[Any]:
        """A rebalance or a stop started: nothing more is processed. Returns the events to
        release unacknowledged at once: those not processed yet (queued, waiting at the gate).
        The processed ones are finished by :meth:`drain` (their state-log rows written, their
        sends delivered, then acknowledged), so the group commits exactly after them and no
        worker processes them again; if a step is running, :meth:`drain` sorts them out when
        it ends."""
        if self.revoking:
            return []
        self.revoking = True
        self._released.clear()
        self._sorted = False
        return [] if self._busy() else self._unprocessed()

    def _busy(self) -> bool:
        return self._pumping or self._handling > 0

    def _unprocessed(self) -> list[Any]:
        """The held events neither finished nor waiting for their segment (once per revoke)."""
        self._sorted = True
        finished = {id(e) for e in self._unflushed} | self.deliveries.finished_ids()
        out = [e for e in self.deliveries.held_events() if id(e) not in finished]
        self._released.update(id(e) for e in out)
        self.counts["released"] += len(out)
        return out

    async def drain(self, timeout_s: float = 30.0) -> list[Any]:
        """After :meth:`revoke`: flush the state log for what was processed, wait (at most
        ``timeout_s``) until its sends are delivered and acknowledge it; then forget the
        per-partition state. Returns the events still to release (unacknowledged)."""
        while self._busy():
            await asyncio.sleep(0.005)
        out = [] if self._sorted else self._unprocessed()
        try:
            if self._unflushed or self.writer.rows:
                await self.flush()
            deadline = time.monotonic() + timeout_s
            while self.deliveries.in_flight() and time.monotonic() < deadline:
                self.deliveries.settle()
                await asyncio.sleep(0.005)
            self.deliveries.settle()
        except DeliveryFailed as exc:
            log.error("rebalance: %s; released for the next owner", exc)
        acked = self.deliveries.acked
        leftover = [e for e in self.deliveries.revoked() if id(e) not in self._released]
        self.counts["released"] += len(leftover)
        self._reset()
        log.debug("drained at a rebalance: %d acknowledged in all, %d released", acked,
                  len(out) + len(leftover))
        return out + leftover

    def _reset(self) -> None:
        self.epoch += 1
        self.aligner.drop()
        self.writer.drop()
        self._unflushed.clear()
        self._unflushed_futures.clear()
        self.cards.clear()
        self.owned = set()
        self.foreign = []
        self._paused.clear()
        self._to_resume.clear()

    # -- arrival ---------------------------------------------------------------------------
    async def handle(self, events: list[Any]) -> None:
        """Take a micro-batch of events from the stream: validate, queue, process what can."""
        self._handling += 1
        try:
            await self._handle(events)
        finally:
            self._handling -= 1

    async def _handle(self, events: list[Any]) -> None:
        stale = []
        now = self.now_ms()
        cfg = self.config
        for event in events:
            if self.revoking or not self.ports.current(event):
                stale.append(event)
                continue
            message = event.message
            if not self.deliveries.received(event):
                stale.append(event)  # a second copy of an offset we already hold
                continue
            tp = (message.topic, message.partition)
            self.delivered[tp] = message.offset
            if message.offset < self.applied.get(tp, 0):
                # done before (its rows are in the state log, its outputs were delivered):
                # a redelivery because the group's commit lagged or was lost
                self.counts["replayed"] += 1
                self.deliveries.finish([event], [])
                continue
            kind = self._topic_kind.get(message.topic)
            try:
                if kind == TXN:
                    result = validate(message.value, cfg.rules, now_ms=now)
                    if isinstance(result, Rejection):
                        await self._reject(event, result)
                        continue
                    txn = result.model_dump()
                    row = txn_row(txn, message.offset)
                    self.aligner.add(TXN, message.partition, row.ts, message.offset,
                                     _Txn(row, txn, message), event)
                elif kind == LABEL:
                    label = validate_label(message.value, cfg.rules)
                    if isinstance(label, Rejection):
                        await self._reject(event, label)
                        continue
                    lrow = label_row(label.model_dump(), message.offset)
                    self.aligner.add(LABEL, message.partition, lrow.reported_at,
                                     message.offset, lrow, event)
                else:
                    raise ValueError(f"unexpected topic {message.topic!r}")
            except Exception as exc:
                await self._error(event, exc, "validation")
        if stale:
            self.ports.release(stale)
        metrics.PIPELINE_QUEUED.set(len(self.aligner))
        await self.pump()

    def _finished(self, event: Any, fut: Any = None) -> None:
        """``event`` is done (dead-lettered, late, a duplicate): acknowledged with the next
        flush, whose state-log segment is written only after ``fut`` was delivered."""
        self._unflushed.append(event)
        if fut is not None:
            self._unflushed_futures.append(fut)

    async def _reject(self, event: Any, rejection: Rejection) -> None:
        self.counts["invalid"] += 1
        fut = await dead_letter(self.ports.dlq, event.message, rejection)
        self._finished(event, fut)

    async def _error(self, event: Any, exc: BaseException, where: str) -> None:
        message = event.message
        log.error("processing failed for %s[%s]@%s in the %s: %r", message.topic,
                  message.partition, message.offset, where, exc,
                  exc_info=(type(exc), exc, exc.__traceback__))
        self.counts["errors"] += 1
        await self._reject(event, Rejection("processing_error",
                                            f"{type(exc).__name__} in the {where}"))

    # -- processing ------------------------------------------------------------------------
    def _lagging(self) -> Callable[[int, int], bool]:
        ports, delivered, kinds = self.ports, self.delivered, self._kind_topic
        cache: dict[tuple[int, int], bool] = {}

        def lagging(kind: int, p: int) -> bool:
            key = (kind, p)
            hit = cache.get(key)
            if hit is None:
                topic = kinds[kind]
                hit = cache[key] = ports.lagging(topic, p, delivered.get((topic, p)))
            return hit

        return lagging

    def ready(self) -> bool:
        return not self.revoking and (self.feeder is None or self.feeder.ready())

    def scoring_blocked(self) -> bool:
        """Hold mode without a champion: nothing may be processed."""
        cfg = self.config
        held = bool(cfg.score and cfg.no_model == "hold" and self.holder is not None
                    and self.holder.champion is None)
        if held != self.holding:
            self.holding = held
            metrics.SCORING_HELD.set(len(self.aligner) if held else 0)
        return held

    async def pump(self) -> None:
        """Process queued events as far as the merge order, the gate and the model allow."""
        if self._pumping:
            self._again = True
            return
        self._pumping = True
        try:
            while True:
                self._again = False
                progressed = await self._round()
                if not (progressed or self._again):
                    break
        finally:
            self._pumping = False

    async def _round(self) -> bool:
        if self._to_resume:
            await self._resume()
        if not self.ready() or self.scoring_blocked():
            return False
        epoch = self.epoch
        cfg = self.config
        chunk: list[tuple[Item, dict[str, float]]] = []
        aligner = self.aligner
        lagging = self._lagging()
        view = self.view
        foreign = self.foreign
        blocked = False
        steps = 0
        while len(chunk) < cfg.batch_max_events and steps < 4 * cfg.batch_max_events:
            item = aligner.select(lagging)
            if item is None:
                break
            if item.kind == TXN and foreign:
                q = view.blocking(item.time, foreign)
                if q is not None:
                    blocked = True
                    self.blocked_on = q
                    break
            aligner.pop(item)
            steps += 1
            if item.time > self.clock:
                self.clock = item.time
            if item.kind == TXN:
                out = await self._transaction(item)
                if out is not None:
                    chunk.append((item, out))
            else:
                await self._label(item)
        if not blocked:
            self.blocked_on = None
        if chunk:
            await self._emit(chunk, epoch)
        if epoch != self.epoch:
            return False
        if blocked:
            metrics.PIPELINE_GATE_WAITS.inc()
            await self.flush()  # say at once how far we are: no two workers wait on each other
        elif (self.writer.rows >= cfg.flush_rows or
              (self._unflushed and time.monotonic() - self._last_flush >= cfg.flush_ms / 1000)):
            await self.flush()
        self.deliveries.settle()
        metrics.PIPELINE_QUEUED.set(len(aligner))
        return steps > 0

    async def _label(self, item: Item) -> None:
        event = item.event
        try:
            row = item.payload
            self.view.add_label(row)
            if row.is_fraud:
                self.writer.label(item.partition, row)
            self.counts["labels"] += 1
            metrics.LABELS_APPLIED.inc()
        except Exception as exc:
            await self._error(event, exc, "terminal view (label)")
            return
        self._unflushed.append(event)

    async def _transaction(self, item: Item) -> dict[str, float] | None:
        """The features of one transaction (None when it was routed elsewhere)."""
        event = item.event
        queued: _Txn = item.payload
        row = queued.row
        try:
            states = self.cards.setdefault(item.partition, {})
            state = states.get(row.card_id)
            if state is None:
                state = states[row.card_id] = CardState(self.config.spec, **self.card_config)
            arrival = state.arrival(row)
            if arrival is Arrival.LATE:
                self.counts["late"] += 1
                fut = await send_late(self.ports.late, queued.message, "card", state.watermark)
                self._finished(event, fut)
                return None
            if arrival is Arrival.DUPLICATE:
                # the card still holds this txn_id, recorded from a lower offset: a producer's
                # duplicate (a redelivery of what the rebuilt state holds was acknowledged
                # at arrival: it is below where the state log ends)
                self.counts["duplicates"] += 1
                metrics.TRANSACTIONS_DUPLICATE.inc()
                self._finished(event)
                return None
            try:
                terminal = self.view.features_at(row.terminal_id, row.ts)
            except LateEventError:
                self.counts["late"] += 1
                metrics.PIPELINE_VIEW_LATE.inc()
                state_wm = self.view.states[row.terminal_id].watermark
                fut = await send_late(self.ports.late, queued.message, "terminal", state_wm)
                self._finished(event, fut)
                return None
            card = state.update(row)
            self.view.record(row)
            self.writer.txn(item.partition, row)
            txn = queued.txn
            features = transaction_features(txn, self.config.spec)
            features.update(card)
            features.update(terminal)
            if self.materialiser is not None:
                self.materialiser.update("card", row.card_id, card, row.ts)
                self.materialiser.update("terminal", row.terminal_id, terminal, row.ts)
            self.counts["valid"] += 1
            return features
        except Exception as exc:
            await self._error(event, exc, "feature stage")
            return None

    # -- scoring and output ----------------------------------------------------------------
    def _predict(self, model: Any, matrix: np.ndarray, rows: list[int],
                 failed: dict[int, BaseException]) -> dict[int, float]:
        """Scores of ``rows``; if the batched run raises, one run per row isolates the bad
        ones (into ``failed``)."""
        try:
            scores = np.asarray(model.predict(matrix[rows]), dtype=np.float64).tolist()
            return dict(zip(rows, scores, strict=True))
        except Exception:
            log.exception("batched ONNX run of %d rows failed: scoring them one by one",
                          len(rows))
        out: dict[int, float] = {}
        for r in rows:
            try:
                out[r] = float(np.asarray(model.predict(matrix[r:r + 1]),
                                          dtype=np.float64)[0])
            except Exception as exc:
                failed[r] = exc
        return out

    async def _emit(self, chunk: list[tuple[Item, dict[str, float]]], epoch: int) -> None:
        cfg = self.config
        names = self.names
        vector = self._vector
        vectors = [vector(f) for _, f in chunk]
        champion = challenger = None
        if cfg.score and self.holder is not None:
            champion, challenger = self.holder.snapshot()
        failed: dict[int, BaseException] = {}
        scores: dict[str, dict[int, float]] = {}
        assignments: list[Any] = []
        if champion is not None:
            matrix = np.asarray(vectors, dtype=np.float32)
            assignments = [self.policy.assign(it.payload.row.card_id,
                                              challenger=challenger is not None)
                           for it, _ in chunk]
            for variant, model in ((CHAMPION, champion), (CHALLENGER, challenger)):
                if model is None:
                    continue
                rows = [i for i, a in enumerate(assignments) if any(v == variant for v, _ in a)]
                if rows:
                    scores[variant] = self._predict(model, matrix, rows, failed)
        send = self.ports.send
        now = self.now_ms()
        models: dict[str, Any] = {CHAMPION: champion, CHALLENGER: challenger}
        published = 0
        decisions: dict[tuple[str, str, Any], int] = {}
        for i, (item, _) in enumerate(chunk):
            if epoch != self.epoch:
                return
            event = item.event
            queued: _Txn = item.payload
            message = queued.message
            txn = queued.txn
            key = message.key if message.key is not None else queued.row.card_id.encode()
            source_ms = _source_ts_ms(message)
            if i in failed:
                await self._error(event, failed[i], "scoring")
                continue
            try:
                futures = [await send(cfg.enriched, key, encode_enriched(
                    txn, dict(zip(names, vectors[i], strict=True)), self.version, source_ms))]
                if champion is not None:
                    sent_ms = float(source_ms if source_ms is not None else now)
                    for variant, shadow in assignments[i]:
                        model = models[variant]
                        rec = prediction_record(
                            txn, score=scores[variant][i], threshold=model.threshold,
                            model_name=model.model_name, model_version=model.version,
                            variant=variant, shadow=shadow, scored_at_ms=now,
                            source_ts_ms=sent_ms)
                        futures.append(await send(cfg.predictions, key,
                                               encode_prediction(Prediction(**rec))))
                        decided = (rec["decision"], variant, model.version)
                        decisions[decided] = decisions.get(decided, 0) + 1
                        if not shadow:
                            metrics.END_TO_END_SECONDS.observe(
                                max(0.0, now - sent_ms) / 1000)
                    published += 1
                elif cfg.score and self.holder is not None:
                    futures.extend(await self._without_model(event, txn, source_ms, now))
            except Exception as exc:
                await self._error(event, exc, "output")
                continue
            self._unflushed.append(event)
            self._unflushed_futures.extend(f for f in futures if f is not None)
        self.counts["scored"] += published
        for (decision, variant, version), n in decisions.items():  # once per batch, not event
            metrics.PREDICTIONS.labels(decision, variant, str(version)).inc(n)
        metrics.TRANSACTIONS_VALID.inc(len(chunk))
        self._stage.inc(len(chunk))

    async def _without_model(self, event: Any, txn: dict[str, Any], source_ms: int | None,
                             now: float) -> list[Any]:
        if self.config.no_model == "dlq":
            fut = await dead_letter(self.ports.dlq, event.message, Rejection(
                "no_model", "no loadable champion"))
            return [fut]
        rec = fail_open_record(txn, scored_at_ms=now,
                               source_ts_ms=float(source_ms if source_ms is not None else now))
        metrics.PREDICTIONS.labels(rec["decision"], "none", "none").inc()
        key = event.message.key or str(txn["card_id"]).encode()
        return [await self.ports.send(self.config.predictions, key,
                                      encode_prediction(Prediction(**rec)))]

    # -- state log and acknowledgement -----------------------------------------------------
    def progress(self, p: int) -> tuple[int, int, bool]:
        """Completeness of owned source partition ``p`` for a segment header: transactions
        (minus the card allowed lateness, the per-partition disorder absorbed), labels, and
        whether nothing of ``p`` is left to receive or process."""
        al = self.aligner
        lagging = self._lagging()
        lag_t, lag_l = lagging(TXN, p), lagging(LABEL, p)
        txn_bound = al.bound(TXN, p, self.clock, lag_t)
        label_bound = al.bound(LABEL, p, self.clock, lag_l)
        # NEVER: nothing known yet of that input (NONE in the header, not an overflow)
        complete = (NONE if txn_bound == NEVER
                    else max(NONE, txn_bound - 1 - self.config.card_lateness_ms))
        labels = NONE if label_bound == NEVER else max(NONE, label_bound - 1)
        caught_up = (al.empty(TXN, p) and al.empty(LABEL, p) and not lag_t and not lag_l)
        return complete, labels, caught_up

    async def flush(self) -> None:
        """Write the state-log segments, then finish the interval's events on their futures.

        A row goes into the log only once every output of the interval's events was
        delivered: the log is then the truth about what was done, and whoever owns a partition
        next skips the events it holds (:meth:`assign`), even if the group's commit of their
        offsets was lost (a rebalance, a crash). A failed output raises
        :class:`~app.pipeline.acks.DeliveryFailed` before anything is written."""
        epoch = self.epoch
        while True:
            pending = [f for f in self._unflushed_futures if not f.done()]
            if not pending:
                break
            await asyncio.wait(pending)
        for fut in self._unflushed_futures:
            if fut.cancelled() or fut.exception() is not None:
                why = "cancelled" if fut.cancelled() else repr(fut.exception())
                raise DeliveryFailed(f"an output failed ({why}); its events' state-log rows "
                                     "are not written and they stay unacknowledged")
        if epoch != self.epoch:
            return
        partitions = self.owned if self.foreign else ()
        futures = await self.writer.flush(self.progress, partitions)
        if epoch != self.epoch:
            return
        self.deliveries.finish(self._unflushed, self._unflushed_futures + futures)
        self._unflushed = []
        self._unflushed_futures = []
        self._last_flush = time.monotonic()
        metrics.STATE_LOG_SEGMENTS.inc(len(futures))

    async def tick(self) -> None:
        """Periodic work: resume partitions, flush when due, settle acks, process what became
        possible (a partition caught up, the gate opened, a model loaded)."""
        await self.pump()
        due = time.monotonic() - self._last_flush >= self.config.flush_ms / 1000
        if due and not self._pumping and not self.revoking and (
                self._unflushed or self.writer.rows or (self.foreign and self.owned)):
            self._pumping = True  # no step adds rows while their segment is being written
            try:
                await self.flush()  # with other workers: progress too, when it changed
            finally:
                self._pumping = False
            if self._again:
                await self.pump()
        self.deliveries.settle()

    # -- flow control ----------------------------------------------------------------------
    def _on_full(self, kind: int, p: int) -> None:
        if (kind, p) not in self._paused:
            self._paused.add((kind, p))
            self._to_resume.discard((kind, p))
            self.ports.pause(self._kind_topic[kind], p)

    def _on_room(self, kind: int, p: int) -> None:
        if (kind, p) in self._paused:
            self._to_resume.add((kind, p))

    async def _resume(self) -> None:
        todo, self._to_resume = self._to_resume, set()
        for kind, p in sorted(todo):
            self._paused.discard((kind, p))
            topic = self._kind_topic[kind]
            await self.ports.resume(topic, p, self.delivered.get((topic, p)))

    def stats(self) -> dict[str, Any]:
        return {**self.counts, "queued": len(self.aligner), "held": self.deliveries.held(),
                "owned": sorted(self.owned), "blocked_on": self.blocked_on,
                "view": self.view.stats()}


SendRaw = Callable[[str, bytes | None, bytes, int | None], Awaitable[Any]]


async def drive(pipeline: Pipeline, interval_s: float, stopping: Callable[[], bool]) -> None:
    """The pipeline's timer loop (flushes, acks, unblocking), until ``stopping()``."""
    while not stopping():
        await asyncio.sleep(interval_s)
        try:
            await pipeline.tick()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pipeline tick failed")
            raise
