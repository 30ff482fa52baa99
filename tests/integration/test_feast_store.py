"""The materialiser against Feast and a real Redis: exact values, batching, Redis outages.

One ``feast apply`` per module (Feast's import and apply take seconds); every test uses its own
entity keys, so tests share the store and may share the Redis with other users.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from app.feast_env import (
    OFFLINE_PATH_VAR,
    apply,
    feast_env,
    join_key,
    load_store,
    version_field,
    view_name,
)
from app.feast_sink import FeastSink
from app.materialiser import Batch, Materialiser, spec_views
from features.spec import DEFAULT_SPEC, MISSING
from infra.processes import start_redis

pytestmark = pytest.mark.integration

ENTITIES = ("card", "terminal")


@pytest.fixture(scope="module")
def feast(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[tuple[Path, Any]]:
    data_dir = tmp_path_factory.mktemp("feast-data")
    yield data_dir, apply(redis_url, data_dir)


class Counting:
    """Wraps a push function; counts rows and records push times."""

    def __init__(self, push: Any) -> None:
        self.push = push
        self.rows = 0
        self.times: list[float] = []

    def __call__(self, batch: Batch) -> None:
        self.push(batch)
        self.rows += sum(len(rows) for rows in batch.values())
        self.times.append(time.monotonic())


def features_for(entity: str, rng: random.Random) -> dict[str, float]:
    special = [MISSING, 0.0, 1e-300, 123456789.125, 1 / 3]
    return {name: rng.choice(special) if rng.random() < 0.3 else rng.uniform(0, 1e6)
            for name in DEFAULT_SPEC.names_for(entity)}


def read_online(store: Any, entity: str, keys: list[str]) -> list[dict[str, Any]]:
    names = [*DEFAULT_SPEC.names_for(entity), version_field(entity)]
    result = store.get_online_features(
        features=[f"{view_name(entity)}:{name}" for name in names],
        entity_rows=[{join_key(entity): key} for key in keys],
    ).to_dict()
    return [{name: result[name][i] for name in names} for i in range(len(keys))]


def expected_row(entity: str, features: dict[str, float]) -> dict[str, Any]:
    return {**features, version_field(entity): DEFAULT_SPEC.version}


def now_ms() -> int:
    return int(time.time() * 1000)


def test_after_a_flush_online_reads_return_exactly_the_values(feast: tuple[Path, Any]) -> None:
    _, store = feast
    rng = random.Random(12345)
    run = uuid.uuid4().hex[:8]
    m = Materialiser(FeastSink(store, None), metrics=False)
    expected: dict[str, dict[str, dict[str, float]]] = {e: {} for e in ENTITIES}
    ts = now_ms()
    for entity in ENTITIES:
        for i in range(6):
            key = f"{entity}-{run}-{i}"
            expected[entity][key] = features_for(entity, rng)
            m.update(entity, key, expected[entity][key], event_ts_ms=ts - i)
    assert asyncio.run(m.flush())
    for entity in ENTITIES:
        keys = list(expected[entity])
        got = read_online(store, entity, keys)
        assert got == [expected_row(entity, expected[entity][k]) for k in keys]
    # the feature service reads the model's inputs
    service = store.get_feature_service("fraud_model")
    card_key = next(iter(expected["card"]))
    row = store.get_online_features(features=service, entity_rows=[
        {"card_id": card_key, "terminal_id": f"terminal-{run}-0"}]).to_dict()
    assert row["card_tx_count_1d"] == [expected["card"][card_key]["card_tx_count_1d"]]
    assert len(row) == 2 + len(DEFAULT_SPEC.names_for("card")) + len(
        DEFAULT_SPEC.names_for("terminal"))


def test_many_updates_of_one_key_push_only_the_latest(feast: tuple[Path, Any]) -> None:
    _, store = feast
    key = f"card-{uuid.uuid4().hex[:8]}"
    push = Counting(FeastSink(store, None))
    m = Materialiser(push, metrics=False)
    rng = random.Random(7)
    ts = now_ms()
    for i in range(500):
        last = features_for("card", rng)
        m.update("card", key, last, event_ts_ms=ts + i)
    assert asyncio.run(m.flush())
    assert push.rows == 1
    assert read_online(store, "card", [key]) == [expected_row("card", last)]


def test_same_event_time_in_a_later_push_is_dropped_by_redis(feast: tuple[Path, Any]) -> None:
    """The documented rule: Redis keeps the first of two writes with one event time."""
    _, store = feast
    key = f"terminal-{uuid.uuid4().hex[:8]}"
    m = Materialiser(FeastSink(store, None), metrics=False)
    ts = now_ms()
    first = dict.fromkeys(DEFAULT_SPEC.names_for("terminal"), 1.0)
    second = dict.fromkeys(DEFAULT_SPEC.names_for("terminal"), 2.0)
    third = dict.fromkeys(DEFAULT_SPEC.names_for("terminal"), 3.0)
    m.update("terminal", key, first, event_ts_ms=ts)
    asyncio.run(m.flush())
    m.update("terminal", key, second, event_ts_ms=ts)
    asyncio.run(m.flush())
    assert read_online(store, "terminal", [key]) == [expected_row("terminal", first)]
    m.update("terminal", key, third, event_ts_ms=ts + 1)
    asyncio.run(m.flush())
    assert read_online(store, "terminal", [key]) == [expected_row("terminal", third)]


async def _until(predicate: Any, timeout: float) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def test_flush_by_rows_and_by_time(feast: tuple[Path, Any]) -> None:
    _, store = feast
    run = uuid.uuid4().hex[:8]
    rng = random.Random(3)

    def present(entity: str, key: str) -> bool:
        return read_online(store, entity, [key])[0][version_field(entity)] is not None

    async def by_rows() -> None:
        push = Counting(FeastSink(store, None))
        m = Materialiser(push, max_rows=20, max_interval_s=600, metrics=False)
        m.start()
        for i in range(19):
            m.update("card", f"rows-{run}-{i}", features_for("card", rng), event_ts_ms=now_ms())
        await asyncio.sleep(0.3)
        assert push.rows == 0 and not present("card", f"rows-{run}-0")
        m.update("card", f"rows-{run}-19", features_for("card", rng), event_ts_ms=now_ms())
        await _until(lambda: push.rows == 20, timeout=5)
        assert present("card", f"rows-{run}-19")
        await m.stop()

    async def by_time() -> None:
        push = Counting(FeastSink(store, None))
        m = Materialiser(push, max_rows=100_000, max_interval_s=0.5, metrics=False)
        m.start()
        started = time.monotonic()
        m.update("terminal", f"time-{run}", features_for("terminal", rng), event_ts_ms=now_ms())
        await asyncio.sleep(0.2)
        assert not present("terminal", f"time-{run}")
        await _until(lambda: push.rows == 1, timeout=5)
        assert push.times[0] - started >= 0.45
        assert present("terminal", f"time-{run}")
        await m.stop()

    asyncio.run(by_rows())
    asyncio.run(by_time())


def _backlog() -> float:
    return REGISTRY.get_sample_value("fraudstream_feast_backlog_rows") or 0.0


def _failures() -> float:
    return REGISTRY.get_sample_value("fraudstream_feast_push_failures_total",
                                     {"store": "online"}) or 0.0


def test_redis_outage_keeps_the_stream_flowing_and_loses_nothing(
        feast: tuple[Path, Any], tmp_path: Path) -> None:
    data_dir, _ = feast
    server = start_redis(tmp_path / "redis")
    url = f"redis://{server.host}:{server.port}/0"
    store = load_store(url, data_dir)  # same registry, its own Redis
    rng = random.Random(11)
    expected: dict[str, dict[str, float]] = {}
    m = Materialiser(FeastSink(store, None), max_rows=200, max_interval_s=0.05,
                     retry_initial_s=0.05, retry_max_s=0.4, metrics=True)
    restarted: list[Any] = []

    async def scenario() -> None:
        m.start()
        m.update("card", "before-outage", features_for("card", rng), event_ts_ms=now_ms())
        await _until(lambda: m.backlog_rows == 0, timeout=5)

        server.stop()
        failures = _failures()
        backlog = [_backlog()]
        started = time.monotonic()
        for step in range(50):  # 1 s of traffic while Redis is down
            for i in range(8):
                key = f"card-{step}-{i}"
                expected[key] = features_for("card", rng)
                m.update("card", key, expected[key], event_ts_ms=now_ms())
            key = f"card-0-{step % 8}"  # keys updated again: only the latest must arrive
            expected[key] = features_for("card", rng)
            m.update("card", key, expected[key], event_ts_ms=now_ms())
            if step % 10 == 9:
                backlog.append(_backlog())
            await asyncio.sleep(0.02)
        elapsed = time.monotonic() - started
        assert elapsed < 2.5, f"the event loop stalled: {elapsed:.1f} s for 1 s of traffic"
        assert backlog == sorted(backlog) and backlog[-1] > backlog[1] > 0
        assert backlog[-1] == m.backlog_rows == len(expected)
        assert _failures() > failures

        restarted.append(start_redis(tmp_path / "redis", port=server.port))
        await _until(lambda: m.backlog_rows == 0, timeout=20)
        assert _backlog() == 0
        await m.stop()

    try:
        asyncio.run(scenario())
        keys = sorted(expected)
        got = read_online(store, "card", keys)
        assert got == [expected_row("card", expected[k]) for k in keys]
    finally:
        for s in [server, *restarted]:
            s.stop()


@pytest.mark.filterwarnings("ignore::FutureWarning")  # dask, inside Feast
def test_offline_copy_is_readable_by_feast(feast: tuple[Path, Any], redis_url: str) -> None:
    import pandas as pd
    import pyarrow.dataset as ds

    data_dir, store = feast
    offline_root = feast_env(redis_url, data_dir)[OFFLINE_PATH_VAR]
    sink = FeastSink(store, offline_root, offline_max_interval_s=3600)
    m = Materialiser(sink, metrics=False)
    key = f"card-{uuid.uuid4().hex[:8]}"
    rng = random.Random(5)
    t0 = now_ms() - 60_000
    old, new = features_for("card", rng), features_for("card", rng)
    m.update("card", key, old, event_ts_ms=t0)
    asyncio.run(m.flush())
    m.update("card", key, new, event_ts_ms=t0 + 30_000)
    asyncio.run(m.stop())  # writes the offline buffer: one file for both pushes
    table = ds.dataset(Path(offline_root) / view_name("card")).to_table()
    rows = table.filter(ds.field("card_id") == key).to_pylist()
    assert [r["card_tx_count_1d"] for r in rows] == [old["card_tx_count_1d"],
                                                    new["card_tx_count_1d"]]
    entity_df = pd.DataFrame({
        "card_id": [key, key],
        "event_timestamp": pd.to_datetime([t0 + 10_000, t0 + 40_000], unit="ms", utc=True),
    })
    history = store.get_historical_features(
        entity_df=entity_df, features=["card_features:card_amount_mean_7d"]).to_df()
    history = history.sort_values("event_timestamp")
    assert list(history["card_amount_mean_7d"]) == [old["card_amount_mean_7d"],
                                                   new["card_amount_mean_7d"]]


def test_views_are_generated_from_the_spec(feast: tuple[Path, Any]) -> None:
    _, store = feast
    for entity in ENTITIES:
        view = store.get_feature_view(view_name(entity))
        names = [f.name for f in view.features]
        assert names == [*DEFAULT_SPEC.names_for(entity), version_field(entity)]
        assert view.tags["spec_version"] == DEFAULT_SPEC.version
        assert list(spec_views()[entity]) == names[:-1]


@pytest.mark.parametrize("password", ["1e5", 'p@ss"w$rd\\x:y'])
def test_password_reaches_redis_through_the_connection_string(
        feast: tuple[Path, Any], tmp_path: Path, password: str) -> None:
    from urllib.parse import quote

    import redis

    data_dir, _ = feast
    server = start_redis(tmp_path / "redis")
    try:
        redis.Redis(host=server.host, port=server.port).config_set("requirepass", password)
        url = f"redis://:{quote(password, safe='')}@{server.host}:{server.port}/3"
        store = load_store(url, data_dir)
        values = dict.fromkeys(DEFAULT_SPEC.names_for("terminal"), 0.5)
        m = Materialiser(FeastSink(store, None), metrics=False)
        m.update("terminal", "t1", values, event_ts_ms=now_ms())
        assert asyncio.run(m.flush(timeout=5))
        assert read_online(store, "terminal", ["t1"]) == [expected_row("terminal", values)]
    finally:
        server.stop()


def test_offline_write_failure_never_fails_the_online_push(
        feast: tuple[Path, Any], tmp_path: Path) -> None:
    import pyarrow.dataset as ds

    _, store = feast
    blocked = tmp_path / "offline"
    blocked.write_text("a file where the offline folder should be")
    sink = FeastSink(store, blocked, offline_max_rows=0)
    key = f"terminal-{uuid.uuid4().hex[:8]}"
    values = dict.fromkeys(DEFAULT_SPEC.names_for("terminal"), 0.25)
    m = Materialiser(sink, metrics=False)
    m.update("terminal", key, values, event_ts_ms=now_ms())
    assert asyncio.run(m.flush())  # online succeeded
    assert read_online(store, "terminal", [key]) == [expected_row("terminal", values)]
    assert sink.offline_failures == 1
    blocked.unlink()
    sink.close()  # the kept rows are written once the folder can be created
    rows = ds.dataset(blocked / view_name("terminal")).to_table().to_pylist()
    assert [r["terminal_id"] for r in rows] == [key]


@pytest.mark.slow
def test_process_sink_pushes_from_a_child_process(feast: tuple[Path, Any],
                                                  redis_url: str) -> None:
    from app.feast_sink import feast_materialiser

    data_dir, store = feast
    m = feast_materialiser(redis_url, data_dir, process=True, offline=False, max_rows=10)
    rng = random.Random(9)
    expected = {f"card-{uuid.uuid4().hex[:8]}-{i}": features_for("card", rng) for i in range(25)}

    async def scenario() -> None:
        m.start()
        for key, values in expected.items():
            m.update("card", key, values, event_ts_ms=now_ms())
        assert await m.stop(timeout=120)

    asyncio.run(scenario())
    keys = list(expected)
    assert read_online(store, "card", keys) == [expected_row("card", expected[k]) for k in keys]
