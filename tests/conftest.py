"""Session fixtures: a real Kafka-compatible broker and a real Redis, and a worker factory.

Broker: ``KAFKA_BOOTSTRAP_SERVERS`` when set; otherwise a testcontainers Apache Kafka when a
Docker engine answers; otherwise the embedded Tansu broker. Redis likewise (``REDIS_URL``,
testcontainers, embedded valkey). Every test gets unique topic names and a unique group.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.processes import start_broker, start_redis
from tests.support.worker import WorkerFactory


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    if _docker_answers():  # pragma: no cover - no Docker engine on the project's machines
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
        return
    server = start_broker(tmp_path_factory.mktemp("broker"))
    yield f"{server.host}:{server.port}"
    server.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    if _docker_answers():  # pragma: no cover
        from testcontainers.redis import RedisContainer

        with RedisContainer() as redis:
            yield f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0"
        return
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield f"redis://{server.host}:{server.port}/0"
    server.stop()


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic and group names."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def workers(kafka_bootstrap: str, tmp_path: Path, unique: str) -> Iterator[WorkerFactory]:
    """Start real ``faust -A app worker`` processes on unique topics; stopped after the test."""
    factory = WorkerFactory(kafka_bootstrap, tmp_path, unique)
    yield factory
    factory.stop_all()
