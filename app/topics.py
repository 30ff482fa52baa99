"""The topics of ARCHITECTURE.md, declared on a Faust app with the configured partitions.

Every topic carries raw bytes (keys and values) and the agents (de)serialise explicitly: the
edge must see the original bytes to validate them and to dead-letter them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from config.settings import Settings


@dataclass(frozen=True)
class Topics:
    """Faust topic objects, by role."""

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

    def all(self) -> list[Any]:
        return [getattr(self, f.name) for f in fields(self)]


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

    return Topics(
        transactions=topic(settings.topics.transactions),
        labels=topic(settings.topics.labels),
        dlq=topic(settings.topics.dlq),
        validated=topic(settings.topics.validated),
        labels_by_terminal=topic(settings.topics.labels_by_terminal),
        enriched=topic(settings.topics.enriched),
        late=topic(settings.topics.late),
        predictions=topic(settings.topics.predictions),
        retrain=topic(settings.topics.retrain),
        model_updates=topic(settings.topics.model_updates),
    )
