"""Retrain agent: ``model-retrain`` in; train → evaluate → gate → register, ``model-updates`` out.

Thin: the work is :func:`training.retrain.run_retrain`. It runs in a child process (``spawn``;
``FRAUDSTREAM_RETRAIN_EXECUTOR=process``, the default) or a thread, so the event loop keeps
scoring while a model trains; the scoring agent of this or any worker swaps to the new champion
when the ``model-updates`` event arrives (or at its next alias poll).

Events are handled one at a time, in order (the topic is keyed by model name). An event is
acknowledged only after its retrain finished (waiting for labels included), so a crash or a
stop before that redelivers it, and the idempotency key recorded in the registry makes a
redelivered event that was already handled a no-op.

The wait for labels can last ``FRAUDSTREAM_RETRAIN_MAX_WAIT_S`` (30 days), and Faust's
rebalance waits, without a limit, for every event an agent holds unacknowledged. So when a
rebalance starts (:mod:`app.faust_ext.rebalance`, the earliest hook) the retrain is told to
stop: a retrain still waiting (or not yet training) ends at once, and so does one still
training after :data:`CANCEL_GRACE_S` in a child process (the process is ended; nothing was
recorded under its key, the window between a registration and its key being recorded is
the only one where a second candidate could be registered). The event is then released
unacknowledged (:func:`app.faust_ext.release_held`): the partition's next owner, this worker
or another, gets it again and waits again, and the key prevents a double retrain. A thread
retrain (``FRAUDSTREAM_RETRAIN_EXECUTOR=thread``) cannot be ended while it trains: the
rebalance waits for it (a thread still waiting for labels ends at once).

A stop (SIGTERM) is handled the same way, and must be: Faust's ``App.on_stop`` waits, without
a limit, for held events (``Consumer.wait_empty``) *before* it cancels the agents, so a
cancelled agent alone would keep the worker running until the wait for labels ends. The
retrain watches ``app.wait_until_stopped()`` (set as the stop begins): the child is told to
stop (ended after :data:`CANCEL_GRACE_S` if it trains), reaped, and the event released
unacknowledged, for the next owner. An event taken while a rebalance is in progress or the
worker stops is released at once. Should the agent be cancelled anyway, the child is ended
and a waiting thread told to stop.

Delivery: at-least-once in, effectively once out (per idempotency key).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
from collections.abc import Awaitable, Callable
from typing import Any

from app.dlq import dead_letter
from app.metrics import RETRAIN_OUTCOMES, RETRAIN_SECONDS
from app.topics import Topics
from config.settings import Settings
from contracts.records import decode_retrain
from contracts.rejections import ContractError, Reason, Rejection

log = logging.getLogger(__name__)


def _child(record: dict[str, Any], settings: Settings, conn: Any,
           parent_pid: int | None = None, cancel: Any = None) -> None:
    """Entry point of the training process: run the retrain, send the outcome back."""
    import logging as child_logging

    from app.child_process import die_with_parent

    die_with_parent(parent_pid)  # a killed worker leaves no training process behind

    child_logging.basicConfig(level=settings.worker.log_level,
                              format="[%(asctime)s] [retrain %(process)d] %(message)s")
    from training.retrain import RetrainAbandoned, handle_record

    try:
        conn.send(("ok", handle_record(record, settings, cancel=cancel)))
    except RetrainAbandoned as exc:
        conn.send(("abandoned", str(exc)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which logs it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


async def in_child_process(record: dict[str, Any], settings: Settings,
                           cancel: Any = None) -> Any:
    """Run the retrain in a fresh ``spawn`` process; terminated if this task is cancelled.

    ``cancel``: a ``multiprocessing`` Event of the spawn context; set, the child abandons its
    wait and this raises :class:`training.retrain.RetrainAbandoned`.
    """
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(record, settings, send, os.getpid(), cancel),
                       daemon=True, name="fraudstream-retrain")
    proc.start()
    send.close()
    try:
        try:
            kind, value = await asyncio.to_thread(receive.recv)
        except EOFError:
            kind, value = "error", f"training process exited with code {proc.exitcode}"
        if kind == "abandoned":
            from training.retrain import RetrainAbandoned

            raise RetrainAbandoned(value)
        if kind == "error":
            raise RuntimeError(value)
        return value
    finally:
        if proc.is_alive():
            proc.terminate()
        await asyncio.to_thread(proc.join, 10)
        receive.close()


#: How long a retrain told to stop may take to finish on its own before its process is ended.
CANCEL_GRACE_S = 5.0


async def unless_interrupted(app: Any, hooks: Any, run: Callable[[Any], Awaitable[Any]],
                             cancel: Any, key: str, *, killable: bool,
                             grace_s: float | None = None) -> Any:
    """``await run(cancel)`` unless a rebalance starts or the app stops first.

    ``app``: ``should_stop`` and ``wait_until_stopped()`` (a Faust app); ``hooks``:
    ``rebalancing`` and ``next_start()`` (:class:`app.faust_ext.rebalance.RebalanceHooks`);
    ``cancel``: the stop flag ``run`` honours (``set()``). Interrupted, the flag is set and
    ``run`` gets ``grace_s`` (:data:`CANCEL_GRACE_S`) to end: what it returns or raises (a
    :class:`~training.retrain.RetrainAbandoned`) then; past that, a ``killable`` run (a child
    process) is cancelled, awaited, and RetrainAbandoned raised; a thread's is awaited.
    """
    from training.retrain import RetrainAbandoned

    grace = CANCEL_GRACE_S if grace_s is None else grace_s
    # An event taken between a rebalance start and its completion, or while the worker
    # stops, would hold the revocation (or the stop) until the next start: give it back.
    if hooks.rebalancing:
        raise RetrainAbandoned("a rebalance is in progress")
    if app.should_stop:
        raise RetrainAbandoned("the worker is stopping")
    interrupted = hooks.next_start()
    stopping = asyncio.ensure_future(app.wait_until_stopped())
    task = asyncio.ensure_future(run(cancel))
    try:
        await asyncio.wait({task, interrupted, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        why = "a rebalance started" if interrupted.done() else "the worker is stopping"
        log.info("retrain %s: %s, stopping it", key[:12], why)
        cancel.set()
        try:
            return await asyncio.wait_for(asyncio.shield(task), grace)
        except TimeoutError:
            if not killable:
                log.warning("retrain %s is training in a thread: %s waits for it",
                            key[:12], "the rebalance" if interrupted.done() else "the stop")
                return await task
            task.cancel()  # ends the child process
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task  # its process is ended and reaped before the event is released
            raise RetrainAbandoned(f"ended after {grace:.0f} s (starting or training): "
                                   f"{why}") from None
    finally:
        interrupted.cancel()
        stopping.cancel()
        if not task.done():  # the agent itself is cancelled (the worker stops)
            cancel.set()  # a thread waiting for labels ends too
            task.cancel()  # a child process is ended


def register(app: Any, topics: Topics, settings: Settings) -> None:
    """Attach the retrain agent to ``app``."""
    from app.faust_ext import rebalance, release_held

    hooks = rebalance.hooks(app)
    max_bytes = settings.validation.max_payload_bytes
    in_process = settings.retrain.executor == "process"

    def stop_flag() -> Any:
        if in_process:
            return multiprocessing.get_context("spawn").Event()
        import threading

        return threading.Event()

    async def retrain_one(record: dict[str, Any], cancel: Any) -> Any:
        if in_process:
            return await in_child_process(record, settings, cancel)
        from training.retrain import handle_record

        return await asyncio.to_thread(handle_record, record, settings, True, cancel)

    async def retrain_unless_interrupted(record: dict[str, Any], key: str) -> Any:
        return await unless_interrupted(app, hooks, lambda cancel: retrain_one(record, cancel),
                                        stop_flag(), key, killable=in_process)

    @app.agent(topics.retrain, name="retrain")
    async def retrain(stream: Any) -> None:
        from training.retrain import BadRetrainEvent, RetrainAbandoned, RetrainRequest

        async for event in stream.noack().events():
            where = f"{event.message.topic}[{event.message.partition}]@{event.message.offset}"
            try:
                record = decode_retrain(event.value, max_bytes=max_bytes).to_dict()
                request = RetrainRequest.from_record(record)
            except (ContractError, BadRetrainEvent) as exc:  # never the values: fields only
                # too large, too deep, not JSON, not a retrain event: dead-lettered with its
                # reason (fitted to the producer), delivered before it is acknowledged
                rejection = (exc.rejection() if isinstance(exc, ContractError)
                             else Rejection(Reason.INVALID_FIELD, str(exc)))
                log.warning("dead-lettered a model-retrain record (%s): %s", where, exc)
                RETRAIN_OUTCOMES.labels("invalid").inc()
                fut = await dead_letter(topics.dlq, event.message, rejection)
                if fut is not None:
                    await fut
                await stream.ack(event)
                continue
            log.info("retrain requested (%s): %s v%s, %s drift at event time %s, key %s",
                     where, request.model_name, request.model_version, request.signal,
                     request.event_ts, request.idempotency_key)
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                outcome = await retrain_unless_interrupted(record, request.idempotency_key)
            except RetrainAbandoned as exc:
                release_held(app, [event])
                log.info("retrain %s abandoned (%s): %s; the event is released "
                         "unacknowledged, for the partition's next owner",
                         request.idempotency_key[:12], where, exc)
                RETRAIN_OUTCOMES.labels("abandoned").inc()
                continue
            except Exception:
                log.exception("retrain for %s failed (%s)", request.idempotency_key, where)
                RETRAIN_OUTCOMES.labels("error").inc()
                await stream.ack(event)
                continue
            RETRAIN_SECONDS.observe(loop.time() - started)
            RETRAIN_OUTCOMES.labels(outcome.status).inc()
            for line in outcome.lines:
                log.info("retrain %s: %s", request.idempotency_key[:12], line)
            await stream.ack(event)
