"""The topics of the contract (docs/architecture.md), declared on a Faust app.

Partitions and replication are the configured ones. Every topic carries raw bytes (keys and
values) and the agents (de)serialise explicitly: the edge must see the original bytes to
validate them and to dead-letter them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config.settings import Settings


@dataclass(frozen=True)
class Topics:
    """Faust topic objects, by role (the roles of :data:`config.kafka.TOPIC_ROLES`)."""

    transactions: Any
    labels: Any
    dlq: Any
    validated: Any
    labels_by_terminal: Any
    enriched: Any
    late: Any
    predictions: Any
    retrain: Any
    model_updates: Any


def declare_topics(app: Any, settings: Settings) -> Topics:
    """Topic objects for ``app``; created on the broker at worker start if missing."""

    def topic(name: str) -> Any:
        return app.topic(
            name,
            partitions=settings.topics.partitions,
            replicas=settings.topics.replication,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )

    return Topics(**{role: topic(name) for role, name in settings.topics.names().items()})
