"""``fraudstream retrain``: handle pending ``model-retrain`` events, or force a retrain now."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from contracts.records import decode_retrain
from contracts.rejections import ContractError


async def _pending(bootstrap: str, topic: str, group: str, client_kwargs: dict[str, Any],
                   timeout_s: float = 30.0) -> tuple[Any, list[Any]]:
    """A started consumer of ``group`` and the records after its committed offsets (up to the
    end offsets found now). The caller commits and stops it."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=50, **client_kwargs)
    await consumer.start()
    await consumer.topics()
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    if not tps:
        return consumer, []
    consumer.assign(tps)
    ends = await consumer.end_offsets(tps)
    for tp in tps:
        committed = await consumer.committed(tp)
        if committed is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, committed)
    out: list[Any] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pending = [tp for tp in tps if await consumer.position(tp) < ends[tp]]
    while pending and loop.time() < deadline:
        batch = await consumer.getmany(*pending, timeout_ms=200)
        for tp, messages in batch.items():
            out += [m for m in messages if m.offset < ends[tp]]
        pending = [tp for tp in pending if await consumer.position(tp) < ends[tp]]
    return consumer, sorted(out, key=lambda m: (m.timestamp, m.partition, m.offset))


def _commit(loop: asyncio.AbstractEventLoop, consumer: Any, message: Any) -> None:
    from aiokafka import TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    tp = TopicPartition(message.topic, message.partition)
    loop.run_until_complete(consumer.commit({tp: OffsetAndMetadata(message.offset + 1, "")}))


@click.command()
@click.option("--once", is_flag=True,
              help="Handle the model-retrain events not handled yet (consumer group "
              "<app_id>-retrain), then exit.")
@click.option("--now", "now", is_flag=True,
              help="Retrain at once on the most recent labelled window, whatever the drift "
              "says (no wait, no staleness check).")
@click.option("--wait/--no-wait", default=False, show_default=True,
              help="With --once: wait for labels after each detection "
              "(FRAUDSTREAM_RETRAIN_WAIT_DAYS), as the agent does.")
def command(once: bool, now: bool, wait: bool) -> None:
    """Retrain the fraud model from the pipeline's own feature log and labels.

    Reads transactions-enriched (the features as served) joined with transaction-labels by
    txn_id over the most recent window, trains, evaluates against the champion on the same
    test rows, registers a challenger and promotes it when the gates pass and
    FRAUDSTREAM_RETRAIN_AUTO_PROMOTE is on; model-updates tells the scorers. Each event's
    idempotency key is recorded in the registry: an event already handled is skipped.

    \b
    FRAUDSTREAM_RETRAIN_MODE decides who handles the events: agent (the worker), cli (this
    command, e.g. from cron) or off.

    \b
    Examples:
      fraudstream retrain --once
      fraudstream retrain --now
    """
    from config.endpoints import kafka_bootstrap
    from config.security import aiokafka_kwargs
    from config.settings import get_settings
    from training.retrain import BadRetrainEvent, RetrainRequest, run_retrain

    if once == now:
        raise click.UsageError("give --once or --now")
    settings = get_settings()
    bootstrap = kafka_bootstrap(settings)
    echo = lambda line: click.echo(line, err=True)  # noqa: E731
    if now:
        outcome = run_retrain(RetrainRequest.manual(settings.registry.model_name), settings,
                              wait=False, echo=echo, bootstrap=bootstrap)
        click.echo(outcome.summary())
        if outcome.status == "failed":
            raise SystemExit(1)
        return
    if settings.retrain.mode == "off":
        raise click.ClickException("FRAUDSTREAM_RETRAIN_MODE=off: retrain events are not "
                                   "handled (use --now to retrain anyway)")
    if settings.retrain.mode == "agent":
        click.echo("note: FRAUDSTREAM_RETRAIN_MODE=agent, workers handle these events too; "
                   "the idempotency keys keep an event from being trained twice", err=True)
    loop = asyncio.new_event_loop()  # its own loop: run_retrain uses asyncio.run inside
    consumer, messages = loop.run_until_complete(_pending(
        bootstrap, settings.topics.retrain, f"{settings.worker.app_id}-retrain",
        aiokafka_kwargs(settings)))
    try:
        click.echo(f"{len(messages)} pending model-retrain event(s)", err=True)
        for message in messages:
            try:
                request = RetrainRequest.from_record(decode_retrain(message.value).to_dict())
            except (ContractError, BadRetrainEvent) as exc:
                click.echo(f"skipped {message.topic}[{message.partition}]@{message.offset}: "
                           f"{exc}", err=True)
            else:
                outcome = run_retrain(request, settings, wait=wait, echo=echo,
                                      bootstrap=bootstrap)
                click.echo(outcome.summary())
            _commit(loop, consumer, message)
    finally:
        loop.run_until_complete(consumer.stop())
        loop.close()


if __name__ == "__main__":  # pragma: no cover
    command()
