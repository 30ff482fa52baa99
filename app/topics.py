"""The topics of the contract (docs/architecture.md), declared on a Faust app.

Partitions (the configured ones, else the broker's default: :meth:`config.kafka.TopicSettings.
count`) and replication are those of every topic the app creates. Every topic carries raw
bytes (keys and values) and the agents (de)serialise explicitly: the edge must see the
original bytes to validate them and to dead-letter them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config.settings import Settings


@dataclass(frozen=True)
class Topics:
    """Faust topic objects, by role (the roles of :data:`config.kafka.TOPIC_ROLES`, then the
    state log)."""

    transactions: Any
    labels: Any
    dlq: Any
    enriched: Any
    late: Any
    predictions: Any
    retrain: Any
    model_updates: Any
    state_log: Any
    partitions: int = 1


def declare_topics(app: Any, settings: Settings, partitions: int | None = None) -> Topics:
    """Topic objects for ``app`` with ``partitions`` each (default: the configured count, else
    the Apache Kafka default); created on the broker at worker start if missing."""
    count = partitions or settings.topics.count(tansu=False)

    def topic(name: str) -> Any:
        return app.topic(
            name,
            partitions=count,
            replicas=settings.topics.replication,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )

    named = {role: topic(name) for role, name in settings.topics.names().items()}
    state_log = topic(settings.topics.state_log_name(settings.worker.app_id))
    return Topics(**named, state_log=state_log, partitions=count)
