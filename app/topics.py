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
            partitions=settings.topic_partitions,
            replicas=settings.topic_replication,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )

    return Topics(
        transactions=topic(settings.topic_transactions),
        labels=topic(settings.topic_labels),
        dlq=topic(settings.topic_dlq),
        validated=topic(settings.topic_validated),
        labels_by_terminal=topic(settings.topic_labels_by_terminal),
        enriched=topic(settings.topic_enriched),
        late=topic(settings.topic_late),
        predictions=topic(settings.topic_predictions),
        retrain=topic(settings.topic_retrain),
        model_updates=topic(settings.topic_model_updates),
    )
