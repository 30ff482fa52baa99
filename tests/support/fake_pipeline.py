"""Fakes to drive :class:`app.pipeline.agent.Pipeline` in process: events, ports, log, models."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from app.pipeline import segments
from app.pipeline.agent import Config, Pipeline
from app.pipeline.statelog import Feeder, Writer
from app.pipeline.view import TerminalView
from app.scoring.models import LoadedModel
from features.spec import DEFAULT_SPEC

TXN_TOPIC, LABEL_TOPIC = "transactions", "transaction-labels"


@dataclass
class FakeMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float = 1.0
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    generation_id: int = 1
    acked: bool = False


class FakeEvent:
    def __init__(self, message: FakeMessage) -> None:
        self.message = message
        self.value = message.value
        self.acked = False

    def ack(self) -> None:
        assert not self.acked, "acknowledged twice"
        self.acked = True
        self.message.acked = True

    def __repr__(self) -> str:
        m = self.message
        return f"<{m.topic}[{m.partition}]@{m.offset}{' acked' if self.acked else ''}>"


_LOOP: list[asyncio.AbstractEventLoop] = []


def _loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        if not _LOOP:
            _LOOP.append(asyncio.new_event_loop())
        return _LOOP[0]


def done_future(exc: BaseException | None = None) -> asyncio.Future:
    fut = _loop().create_future()
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)
    return fut


class FakeTopic:
    """A Faust topic stand-in: ``send`` records and returns a done future."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[dict[str, Any]] = []

    def get_topic_name(self) -> str:
        return self.name

    async def send(self, key: Any = None, value: Any = None, headers: Any = None) -> Any:
        self.sent.append({"key": key, "value": value, "headers": dict(headers or [])})
        return done_future()


class FakePorts:
    """Producer and consumer ports of a pipeline, all in memory."""

    def __init__(self) -> None:
        self.dlq = FakeTopic("transactions-dlq")
        self.late = FakeTopic("transactions-late")
        self.out: dict[str, list[tuple[bytes | None, bytes, int | None]]] = defaultdict(list)
        self.highwater: dict[tuple[str, int], int] = {}
        self.released: list[Any] = []
        self.paused: set[tuple[str, int]] = set()
        self.resumed: list[tuple[str, int, int | None]] = []
        self.generation = 1
        self.fail_next: BaseException | None = None

    async def send(self, topic: str, key: bytes | None, value: bytes,
                   partition: int | None = None) -> Any:
        self.out[topic].append((key, value, partition))
        exc, self.fail_next = self.fail_next, None
        return done_future(exc)

    def lagging(self, topic: str, partition: int, delivered: int | None) -> bool:
        high = self.highwater.get((topic, partition), 0)
        return high > (-1 if delivered is None else delivered) + 1

    def current(self, event: Any) -> bool:
        return event.message.generation_id == self.generation

    def release(self, events: list[Any]) -> None:
        self.released.extend(events)

    def pause(self, topic: str, partition: int) -> None:
        self.paused.add((topic, partition))

    async def resume(self, topic: str, partition: int, delivered: int | None) -> None:
        self.paused.discard((topic, partition))
        self.resumed.append((topic, partition, delivered))


class SharedLog:
    """The state-log topic in memory: partition -> list of values."""

    def __init__(self, partitions: int) -> None:
        self.parts: dict[int, list[bytes]] = {p: [] for p in range(partitions)}

    def sender(self) -> Any:
        async def send(partition: int, value: bytes) -> Any:
            self.parts[partition].append(value)
            return done_future()
        return send

    def feed(self, feeder: Feeder, read: dict[int, int]) -> int:
        """Hand ``feeder`` what it has not read yet; apply; returns rows applied."""
        for p, values in self.parts.items():
            start = read.get(p, 0)
            for offset in range(start, len(values)):
                feeder.add(p, offset, values[offset])
            read[p] = len(values)
            feeder.highwater[p] = len(values)
        return feeder.apply()

    def headers(self, p: int) -> list[segments.Header]:
        return [segments.decode_header(v) for v in self.parts[p]]


class FakeLogConsumer:
    """An aiokafka consumer stand-in reading a :class:`SharedLog` (for ``replay``)."""

    def __init__(self, log: SharedLog, per_fetch: int = 3) -> None:
        self.log = log
        self.per_fetch = per_fetch
        self.pos: dict[Any, int] = {}

    def assign(self, tps: list[Any]) -> None:
        self.pos = {tp: 0 for tp in tps}

    async def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        return {tp: len(self.log.parts[tp.partition]) for tp in tps}

    async def seek_to_beginning(self, *tps: Any) -> None:
        for tp in tps:
            self.pos[tp] = 0

    async def getmany(self, *tps: Any, timeout_ms: int = 0) -> dict[Any, list[Any]]:
        out = {}
        for tp in tps or list(self.pos):
            values = self.log.parts[tp.partition]
            start = self.pos[tp]
            chunk = values[start:start + self.per_fetch]
            if chunk:
                out[tp] = [SimpleNamespace(offset=start + i, value=v)
                           for i, v in enumerate(chunk)]
                self.pos[tp] = start + len(chunk)
        return out


class FakeScorer:
    """Deterministic 'model': a squashed weighted sum; raises on a poisoned row."""

    def __init__(self, poison_amount: float | None = None) -> None:
        self.poison_amount = poison_amount
        self.calls = 0

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.poison_amount is not None and np.any(
                np.isclose(matrix[:, 0], self.poison_amount)):
            raise RuntimeError("ONNX Runtime failed on this batch")
        return 1 / (1 + np.exp(-np.tanh(matrix.sum(axis=1) / 1e4)))


def fake_model(alias: str = "champion", version: int = 1,
               scorer: FakeScorer | None = None) -> LoadedModel:
    return LoadedModel("fraud-lgbm", version, alias, "sha", 0.5, DEFAULT_SPEC.version,
                       tuple(DEFAULT_SPEC.names), scorer=scorer or FakeScorer())


class FakeHolder:
    def __init__(self, champion: LoadedModel | None = None,
                 challenger: LoadedModel | None = None) -> None:
        self.champion, self.challenger = champion, challenger

    def snapshot(self) -> tuple[LoadedModel | None, LoadedModel | None]:
        return self.champion, self.challenger


def make_pipeline(*, partitions: int = 1, holder: Any = None, log: SharedLog | None = None,
                  writer_id: bytes = b"A" * 16, lateness_ms: int = 2 * 86_400_000,
                  **config: Any) -> tuple[Pipeline, FakePorts, Feeder]:
    """A pipeline on fakes; ``assign`` it before handing it events."""
    config.setdefault("partitions", partitions)
    config.setdefault("score", holder is not None)
    config.setdefault("flush_ms", 0.0)
    cfg = Config(**config)
    ports = FakePorts()
    view = TerminalView(DEFAULT_SPEC, lateness_ms=lateness_ms, partitions=partitions)
    log = log or SharedLog(partitions)
    writer = Writer(writer_id, log.sender())
    feeder = Feeder(view, writer_id, partitions)
    pipeline = Pipeline(cfg, ports, view, writer, feeder, holder, None, now_ms=lambda: 4e12)
    return pipeline, ports, feeder


def events(topic: str, partition: int, values: list[bytes | None], start: int = 0,
           key: bytes | None = b"c") -> list[FakeEvent]:
    return [FakeEvent(FakeMessage(topic, partition, start + i, key, v))
            for i, v in enumerate(values)]
