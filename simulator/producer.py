"""A batched, keyed Kafka producer (aiokafka) for the simulator and replays.

Delivery guarantee: **at-least-once**. Every record is acknowledged by all in-sync replicas
(``acks="all"``) before :meth:`BatchProducer.flush` returns; a failed batch raises, and
re-running the same simulation or replay re-sends the same ``txn_id`` values, which the
pipeline de-duplicates. With a broker that supports it the producer is idempotent
(``enable_idempotence=True``: no duplicates from internal retries). The embedded Tansu broker
answers ``InitProducerId`` with an error; the producer then logs a warning and continues
without idempotence (``idempotence=None``, the default), or raises (``idempotence=True``).

Bulk calls are grouped per partition into large batches (``max_batch_size``, default 1 MiB,
``linger_ms`` >= 5) with ``create_batch``/``send_batch``; small calls (paced sending) go
through ``send`` into the producer's open batches; the partition of a key is the Java
client's default (murmur2 of the key bytes), so keyed records land where any Kafka client,
Faust included, expects them. Record timestamps are the send time, never the event time: a
replay of 2018 traffic with 2018 record timestamps would be deleted at once by time-based
retention. Event time travels in the value (``ts``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    UnknownError,
    UnsupportedVersionError,
)
from aiokafka.partitioner import DefaultPartitioner

log = logging.getLogger(__name__)

#: Errors from InitProducerId that mean "this broker cannot do idempotent producing".
IDEMPOTENCE_UNSUPPORTED = (UnknownError, UnsupportedVersionError,
                           ClusterAuthorizationFailedError)


@dataclass
class ProduceStats:
    """Counts and timing of what a producer sent (``produced`` = acknowledged records)."""

    produced: int = 0
    batches: int = 0
    per_topic: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None

    @property
    def elapsed_s(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    @property
    def rate(self) -> float:
        """Acknowledged records per second."""
        return self.produced / self.elapsed_s if self.elapsed_s > 0 else 0.0


class BatchProducer:
    """Keyed, batched producing of pre-serialised records; see the module docstring.

    Parameters
    ----------
    bootstrap_servers:
        ``host:port[,host:port]``.
    client_kwargs:
        Extra ``AIOKafkaProducer`` arguments, e.g. security settings
        (``config.security.aiokafka_kwargs(settings)``).
    idempotence:
        ``None``: idempotent when the broker supports it (else a warning); ``True``: required;
        ``False``: off.
    linger_ms, max_batch_size:
        Batching; ``linger_ms`` is raised to at least 5 (small batches slow Tansu's fetches).
    max_in_flight:
        Batches sent but not yet acknowledged before :meth:`send` waits.
    small_send:
        Calls of :meth:`send` with fewer records append them one by one to the producer's
        open batches (paced sending); larger calls build whole batches per partition.
    """

    def __init__(self, bootstrap_servers: str, client_kwargs: Mapping[str, Any] | None = None,
                 *, idempotence: bool | None = None, linger_ms: int = 10,
                 max_batch_size: int = 1 << 20, max_in_flight: int = 64,
                 small_send: int = 1_000) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.client_kwargs = dict(client_kwargs or {})
        self.idempotence = idempotence
        self.linger_ms = max(5, int(linger_ms))
        self.max_batch_size = int(max_batch_size)
        self.max_in_flight = int(max_in_flight)
        self.small_send = int(small_send)
        self.idempotent = False
        self.stats = ProduceStats()
        self._producer: AIOKafkaProducer | None = None
        self._pending: deque[tuple[asyncio.Future[Any], str, int]] = deque()
        self._partitions: dict[str, list[int]] = {}
        self._key_partition: dict[tuple[str, bytes], int] = {}

    def _make(self, idempotent: bool) -> AIOKafkaProducer:
        kwargs: dict[str, Any] = {
            "acks": "all", "linger_ms": self.linger_ms, "max_batch_size": self.max_batch_size,
            "max_request_size": max(self.max_batch_size * 2, 1 << 20),
            "enable_idempotence": idempotent,
        }
        kwargs.update(self.client_kwargs)
        return AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, **kwargs)

    async def start(self) -> BatchProducer:
        """Connect; negotiate idempotence as configured."""
        if self.idempotence is not False:
            producer = self._make(True)
            try:
                await producer.start()
            except IDEMPOTENCE_UNSUPPORTED as exc:
                await producer.stop()
                if self.idempotence:
                    raise
                log.warning("broker refused an idempotent producer (%s: %s); producing "
                            "without idempotence (acks=all, at-least-once)",
                            type(exc).__name__, exc)
            else:
                self._producer, self.idempotent = producer, True
        if self._producer is None:
            self._producer = self._make(False)
            await self._producer.start()
        self.stats = ProduceStats()
        return self

    async def __aenter__(self) -> BatchProducer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop(flush=exc[0] is None)

    async def _partition_list(self, topic: str) -> list[int]:
        if topic not in self._partitions:
            assert self._producer is not None
            self._partitions[topic] = sorted(await self._producer.partitions_for(topic))
        return self._partitions[topic]

    async def send(self, topic: str, keys: Sequence[bytes], values: Sequence[bytes], *,
                   bulk: bool | None = None) -> None:
        """Queue ``values`` keyed by ``keys``; returns once they are in batches in flight.

        ``bulk``: build whole batches per partition (True) or append record by record to the
        producer's open batches (False); None: bulk from ``small_send`` records on. Records of
        one key keep their order (same partition, batches sent in order).
        """
        if self._producer is None:
            raise RuntimeError("producer not started")
        if len(keys) != len(values):
            raise ValueError("one key per value")
        if not (len(values) >= self.small_send if bulk is None else bulk):
            await self._send_each(topic, keys, values)
            return
        partitions = await self._partition_list(topic)
        cache = self._key_partition
        if len(cache) > 1_000_000:
            cache.clear()
        builders: dict[int, Any] = {}
        counts: dict[int, int] = {}
        for key, value in zip(keys, values, strict=True):
            part = cache.get((topic, key))
            if part is None:
                part = cache[(topic, key)] = DefaultPartitioner()(key, partitions, partitions)
            builder = builders.get(part)
            if builder is None:
                builder = builders[part] = self._producer.create_batch()
                counts[part] = 0
            if builder.append(key=key, value=value, timestamp=None) is None:
                await self._submit(builder, topic, part, counts[part])
                builder = builders[part] = self._producer.create_batch()
                builder.append(key=key, value=value, timestamp=None)
                counts[part] = 0
            counts[part] += 1
        for part, builder in builders.items():
            await self._submit(builder, topic, part, counts[part])

    async def _send_each(self, topic: str, keys: Sequence[bytes],
                         values: Sequence[bytes]) -> None:
        """Few records (a paced slice): append to the producer's open batches, no waiting.

        ``send_batch`` would wait for the partition's previous batch to drain (one linger per
        call), which caps a paced sender at ~1/linger slices per second.
        """
        assert self._producer is not None
        futures = [await self._producer.send(topic, value, key=key)
                   for key, value in zip(keys, values, strict=True)]
        if futures:
            self._pending.append((asyncio.gather(*futures), topic, len(futures)))
            while len(self._pending) > self.max_in_flight * 16:
                await self._settle()

    async def _submit(self, builder: Any, topic: str, partition: int, count: int) -> None:
        assert self._producer is not None
        builder.close()  # a closed batch is sent at once, without waiting for linger_ms
        future = await self._producer.send_batch(builder, topic, partition=partition)
        self._pending.append((future, topic, count))
        while len(self._pending) > self.max_in_flight:
            await self._settle()

    async def _settle(self) -> None:
        future, topic, count = self._pending.popleft()
        await future
        self.stats.produced += count
        self.stats.batches += 1
        self.stats.per_topic[topic] = self.stats.per_topic.get(topic, 0) + count

    async def flush(self) -> ProduceStats:
        """Wait until every queued record is acknowledged."""
        while self._pending:
            await self._settle()
        self.stats.finished = time.perf_counter()
        return self.stats

    async def stop(self, flush: bool = True) -> None:
        """Flush (unless told not to) and close the connection."""
        if self._producer is None:
            return
        try:
            if flush:
                await self.flush()
        finally:
            await self._producer.stop()
            self._producer = None
