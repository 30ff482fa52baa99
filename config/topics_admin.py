"""Create the contract's topics before anything subscribes to them, and check existing ones.

A consumer or producer that touches a missing topic makes the broker auto-create it with the
broker's default partition count; Faust tables then refuse to work when a source topic and its
changelog disagree. So every process that starts the pipeline (worker, simulator, demo) calls
:func:`ensure_topics` first: missing topics are created with the configured partitions, and an
existing topic with another partition count stops the process with a message saying what to set.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from config.kafka import TopicSettings
from config.settings import ConfigError, Settings


@dataclass(frozen=True)
class BrokerInfo:
    """What :func:`ensure_topics` learnt about the cluster."""

    cluster_id: str | None
    created: list[str]
    #: partitions of the app's topics (configured, else the broker's default)
    partitions: int = 0

    @property
    def tansu(self) -> bool:
        """Whether the cluster is the embedded Tansu broker (see app.faust_ext)."""
        from config.endpoints import is_tansu

        return is_tansu(self.cluster_id)


def wanted_topics(settings: Settings) -> dict[str, str]:
    """Role -> name of every topic the app creates: the contract's and the state log."""
    names = settings.topics.names()
    names["state_log"] = settings.topics.state_log_name(settings.worker.app_id)
    return names


async def _ensure(bootstrap: str, settings: Settings, kwargs: dict[str, Any]) -> BrokerInfo:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from config.endpoints import is_tansu

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kwargs)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        cluster_id = cluster.get("cluster_id")
        partitions = settings.topics.count(tansu=is_tansu(cluster_id))
        existing = set(await admin.list_topics())
        wanted = wanted_topics(settings)
        missing = [name for name in wanted.values() if name not in existing]
        if missing:
            await admin.create_topics([
                NewTopic(name, partitions, settings.topics.replication) for name in missing
            ])
        present = [name for name in wanted.values() if name in existing]
        if present:
            for desc in await admin.describe_topics(present):
                count = len(desc.get("partitions") or [])
                if count and count != partitions:
                    role = next(r for r, n in wanted.items() if n == desc["topic"])
                    raise ConfigError(
                        f"topic {desc['topic']!r} ({TopicSettings.env_name(role)}) has {count} "
                        f"partitions but {partitions} are configured "
                        f"(FRAUDSTREAM_TOPIC_PARTITIONS={settings.topics.partitions}): set "
                        f"FRAUDSTREAM_TOPIC_PARTITIONS={count}, or use another topic name"
                    )
        return BrokerInfo(cluster_id, missing, partitions)
    finally:
        await admin.close()


def ensure_topics(bootstrap: str, settings: Settings) -> BrokerInfo:
    """Create missing contract topics; returns the cluster id and the names created."""
    from config.security import aiokafka_kwargs

    return asyncio.run(_ensure(bootstrap, settings, aiokafka_kwargs(settings)))
