"""``fraudstream predictions tail``: read ``ml-predictions`` as a consumer of the topic sees it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from contracts.records import decode_prediction
from contracts.rejections import ContractError

HEADER = (f"{'event time (UTC)':<20} {'txn_id':<22} {'card_id':<14} {'score':>8} "
          f"{'decision':<8} {'model':<14} {'variant':<11} {'e2e ms':>8}")


def keep(record: dict[str, Any], *, fraud_only: bool, card: str | None,
         include_shadow: bool) -> bool:
    """Whether the filters let ``record`` through.

    >>> r = {"decision": "alert", "card_id": "c1", "shadow": False}
    >>> keep(r, fraud_only=True, card="c1", include_shadow=False)
    True
    >>> keep({**r, "decision": "pass"}, fraud_only=True, card=None, include_shadow=True)
    False
    >>> keep({**r, "shadow": True}, fraud_only=False, card=None, include_shadow=False)
    False
    """
    if fraud_only and record.get("decision") != "alert":
        return False
    if card is not None and record.get("card_id") != card:
        return False
    return include_shadow or not record.get("shadow")


def line(record: dict[str, Any]) -> str:
    """One prediction as a table row.

    >>> row = line({"event_ts": 1522540800000, "txn_id": "t1", "card_id": "c1", "score": 0.91,
    ...     "decision": "alert", "model_name": "fraud-lgbm", "model_version": 3,
    ...     "variant": "champion", "shadow": False, "latency_ms": 12.5})
    >>> row.split()[2:]
    ['t1', 'c1', '0.9100', 'alert', 'fraud-lgbm', 'v3', 'champion', '12.5']
    """
    when = datetime.fromtimestamp(record["event_ts"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    score = "-" if record.get("score") is None else f"{record['score']:.4f}"
    model = ("fail-open" if record.get("fail_open")
             else f"{record.get('model_name')} v{record.get('model_version')}")
    variant = record.get("variant", "") + (" (shadow)" if record.get("shadow") else "")
    return (f"{when:<20} {record['txn_id']:<22} {record['card_id']:<14} {score:>8} "
            f"{record['decision']:<8} {model:<14} {variant:<11} "
            f"{record.get('latency_ms', 0):>8.1f}")


async def tail(bootstrap: str, topic: str, client: dict[str, Any], *, from_beginning: bool,
               max_records: int | None, idle_s: float | None,
               emit: Callable[[dict[str, Any], bytes], None],
               accept: Callable[[dict[str, Any]], bool]) -> int:
    """Consume ``topic`` without a consumer group (nothing is committed); returns the count."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, fetch_max_wait_ms=100,
                                auto_offset_reset="earliest" if from_beginning else "latest",
                                **client)
    await consumer.start()
    shown = 0
    loop = asyncio.get_running_loop()
    last = loop.time()
    try:
        while max_records is None or shown < max_records:
            batch = await consumer.getmany(timeout_ms=200)
            if not batch:
                if idle_s is not None and loop.time() - last > idle_s:
                    break
                continue
            last = loop.time()
            for messages in batch.values():
                for message in messages:
                    try:
                        record = decode_prediction(message.value).to_dict()
                    except ContractError:
                        continue  # not a prediction (or a poison record): not shown
                    if not accept(record):
                        continue
                    emit(record, message.value)
                    shown += 1
                    if max_records is not None and shown >= max_records:
                        return shown
    finally:
        await consumer.stop()
    return shown


@click.group()
def command() -> None:
    """Read the scores and decisions the pipeline publishes (topic ml-predictions)."""


@command.command("tail")
@click.option("--fraud-only", is_flag=True, help="Only predictions with decision 'alert'.")
@click.option("--card", default=None, help="Only this card id.")
@click.option("--from-beginning", is_flag=True,
              help="Start at the oldest record kept by the topic (default: only new ones).")
@click.option("--max", "max_records", type=click.IntRange(min=1), default=None,
              help="Stop after N predictions shown.")
@click.option("--idle", type=click.FloatRange(min=0), default=None,
              help="Stop after this many seconds without new records.")
@click.option("--shadow/--no-shadow", default=True, show_default=True,
              help="Show the challenger's shadow predictions.")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON lines.")
def tail_command(fraud_only: bool, card: str | None, from_beginning: bool,
                 max_records: int | None, idle: float | None, shadow: bool,
                 as_json: bool) -> None:
    """Follow ml-predictions: one line per prediction (Ctrl-C to stop).

    \b
      fraudstream predictions tail --from-beginning --max 20
      fraudstream predictions tail --fraud-only
      fraudstream predictions tail --card C000042 --json
    """
    from config.endpoints import kafka_bootstrap
    from config.security import aiokafka_kwargs
    from config.settings import get_settings

    settings = get_settings()
    bootstrap = kafka_bootstrap(settings)
    if not as_json:
        click.echo(HEADER)

    def emit(record: dict[str, Any], raw: bytes) -> None:
        click.echo(raw.decode() if as_json else line(record))

    def accept(record: dict[str, Any]) -> bool:
        return keep(record, fraud_only=fraud_only, card=card, include_shadow=shadow)

    try:
        asyncio.run(tail(bootstrap, settings.topics.predictions, aiokafka_kwargs(settings),
                         from_beginning=from_beginning, max_records=max_records, idle_s=idle,
                         emit=emit, accept=accept))
    except KeyboardInterrupt:  # pragma: no cover - interactive
        pass
