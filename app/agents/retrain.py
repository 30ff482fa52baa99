"""Retrain agent: ``model-retrain`` in; train → evaluate → gate → register, ``model-updates`` out.

Thin: the work is :func:`training.retrain.run_retrain`. It runs in a child process (``spawn``;
``FRAUDSTREAM_RETRAIN_EXECUTOR=process``, the default) or a thread, so the event loop keeps
scoring while a model trains; the scoring agent of this or any worker swaps to the new champion
when the ``model-updates`` event arrives (or at its next alias poll).

Events are handled one at a time, in order (the topic is keyed by model name). An event is
acknowledged only after its retrain finished (waiting for labels included), so a crash or a
stop before that redelivers it, and the idempotency key recorded in the registry makes a
redelivered event that was already handled a no-op.

Delivery: at-least-once in, effectively once out (per idempotency key).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from typing import Any

from app.metrics import RETRAIN_OUTCOMES, RETRAIN_SECONDS
from app.topics import Topics
from config.settings import Settings
from contracts.records import decode_retrain
from contracts.rejections import ContractError

log = logging.getLogger(__name__)


def _child(record: dict[str, Any], settings: Settings, conn: Any,
           parent_pid: int | None = None) -> None:
    """Entry point of the training process: run the retrain, send the outcome back."""
    import logging as child_logging

    from app.child_process import die_with_parent

    die_with_parent(parent_pid)  # a killed worker leaves no training process behind

    child_logging.basicConfig(level=settings.worker.log_level,
                              format="[%(asctime)s] [retrain %(process)d] %(message)s")
    from training.retrain import handle_record

    try:
        conn.send(("ok", handle_record(record, settings)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which logs it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


async def in_child_process(record: dict[str, Any], settings: Settings) -> Any:
    """Run the retrain in a fresh ``spawn`` process; terminated if this task is cancelled."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(record, settings, send, os.getpid()), daemon=True,
                       name="fraudstream-retrain")
    proc.start()
    send.close()
    try:
        try:
            kind, value = await asyncio.to_thread(receive.recv)
        except EOFError:
            kind, value = "error", f"training process exited with code {proc.exitcode}"
        if kind == "error":
            raise RuntimeError(value)
        return value
    finally:
        if proc.is_alive():
            proc.terminate()
        await asyncio.to_thread(proc.join, 10)
        receive.close()


def register(app: Any, topics: Topics, settings: Settings) -> None:
    """Attach the retrain agent to ``app``."""

    async def retrain_one(record: dict[str, Any]) -> Any:
        if settings.retrain.executor == "process":
            return await in_child_process(record, settings)
        from training.retrain import handle_record

        return await asyncio.to_thread(handle_record, record, settings)

    @app.agent(topics.retrain, name="retrain")
    async def retrain(stream: Any) -> None:
        from training.retrain import BadRetrainEvent, RetrainRequest

        async for event in stream.events():
            where = f"{event.message.topic}[{event.message.partition}]@{event.message.offset}"
            try:
                record = decode_retrain(event.value).to_dict()
                request = RetrainRequest.from_record(record)
            except (ContractError, BadRetrainEvent) as exc:  # never the values: fields only
                log.warning("ignored a model-retrain record (%s): %s", where, exc)
                RETRAIN_OUTCOMES.labels("invalid").inc()
                continue
            log.info("retrain requested (%s): %s v%s, %s drift at event time %s, key %s",
                     where, request.model_name, request.model_version, request.signal,
                     request.event_ts, request.idempotency_key)
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                outcome = await retrain_one(record)
            except Exception:
                log.exception("retrain for %s failed (%s)", request.idempotency_key, where)
                RETRAIN_OUTCOMES.labels("error").inc()
                continue
            RETRAIN_SECONDS.observe(loop.time() - started)
            RETRAIN_OUTCOMES.labels(outcome.status).inc()
            for line in outcome.lines:
                log.info("retrain %s: %s", request.idempotency_key[:12], line)
