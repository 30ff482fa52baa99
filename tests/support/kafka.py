"""Test access to the Kafka helpers."""

from infra.kafka_io import Record, consume, produce

__all__ = ["Record", "consume", "produce"]
