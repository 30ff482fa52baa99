"""Publish ``model-updates`` events (registered / promoted / rolled back) to Kafka.

The registry (:mod:`models.registry`) returns one event dict per action; this module sends
them, keyed by model name, to the configured topic, with the configured security settings.
When no broker is configured or it does not answer, nothing is sent and the result says so
(training and registry changes do not depend on Kafka: the MLflow aliases are the truth, and
the scoring agent also polls them).

Delivery: at-least-once with ``acks=all`` when sent; each event has a unique ``event_id`` so
consumers can drop redeliveries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from config.settings import ConfigError, Settings
from contracts.records import encode_model_update


@dataclass(frozen=True)
class PublishResult:
    """How many events went to ``topic``, or why none did (``skipped``)."""

    topic: str
    sent: int
    skipped: str | None = None

    def line(self) -> str:
        """One human-readable line.

        >>> PublishResult("model-updates", 0, "no broker").line()
        'model-updates: 0 event(s) NOT sent (skipped: no broker)'
        >>> PublishResult("model-updates", 2).line()
        'model-updates: 2 event(s) sent'
        """
        if self.skipped:
            return f"{self.topic}: {self.sent} event(s) NOT sent (skipped: {self.skipped})"
        return f"{self.topic}: {self.sent} event(s) sent"


def encode(event: dict) -> tuple[bytes, bytes]:
    """``(key, value)`` of an event: the model name, and compact sorted JSON
    (:func:`contracts.records.encode_model_update`, the one definition of the wire format).

    >>> encode({"model_name": "m", "version": 2})
    (b'm', b'{"model_name":"m","version":2}')
    """
    return encode_model_update(event)


def publish_model_updates(events: Sequence[dict], settings: Settings, *,
                          timeout_s: float = 15.0) -> PublishResult:
    """Send ``events`` in order; skip (with the reason) when no broker answers."""
    topic = settings.topics.model_updates
    if not events:
        return PublishResult(topic, 0, "no events")
    from config.endpoints import kafka_bootstrap

    try:
        bootstrap = kafka_bootstrap(settings)
    except ConfigError as exc:
        return PublishResult(topic, 0, exc.message.splitlines()[0])
    try:
        from config.topics_admin import ensure_topics

        ensure_topics(bootstrap, settings)  # creates model-updates when missing
        asyncio.run(asyncio.wait_for(_send(bootstrap, settings, topic, events), timeout_s))
    except Exception as exc:  # noqa: BLE001 - any broker failure is reported, not fatal
        return PublishResult(topic, 0, f"{type(exc).__name__}: {exc}")
    return PublishResult(topic, len(events))


async def _send(bootstrap: str, settings: Settings, topic: str, events: Sequence[dict]) -> None:
    from aiokafka import AIOKafkaProducer

    from config.security import aiokafka_kwargs

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                **aiokafka_kwargs(settings))
    await producer.start()
    try:
        for event in events:
            key, value = encode(event)
            await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()
