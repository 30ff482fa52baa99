"""Materialiser batching logic with a fake push function (no Feast, no Redis)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from prometheus_client import REGISTRY

from app.materialiser import Batch, Materialiser, spec_views

VIEWS = {"card": ("n", "amount"), "terminal": ("risk",)}


class FakePush:
    """Records batches; fails while ``failing`` is set; optionally slow."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.batches: list[Batch] = []
        self.times: list[float] = []
        self.attempts: list[float] = []
        self.failing = False
        self.delay_s = delay_s
        self.closed = False
        self.threads: set[str] = set()

    def __call__(self, batch: Batch) -> None:
        self.attempts.append(time.monotonic())
        self.threads.add(threading.current_thread().name)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.failing:
            raise ConnectionError("Redis is down")
        self.batches.append(batch)
        self.times.append(time.monotonic())

    def close(self) -> None:
        self.closed = True

    def latest(self) -> dict[tuple[str, str], tuple[tuple[float, ...], int]]:
        """What a store applying 'newest event time wins' would hold."""
        out: dict[tuple[str, str], tuple[tuple[float, ...], int]] = {}
        for batch in self.batches:
            for entity, rows in batch.items():
                for key, values, ts in rows:
                    if (entity, key) not in out or ts > out[(entity, key)][1]:
                        out[(entity, key)] = (values, ts)
        return out

    @property
    def rows(self) -> int:
        return sum(len(rows) for batch in self.batches for rows in batch.values())


def card(n: float, amount: float = 1.0) -> dict[str, float]:
    return {"n": n, "amount": amount}


def make(push: FakePush, **kwargs: object) -> Materialiser:
    kwargs.setdefault("metrics", False)
    return Materialiser(push, VIEWS, **kwargs)  # type: ignore[arg-type]


def test_many_updates_of_one_key_push_only_the_latest() -> None:
    push = FakePush()
    m = make(push)
    for i in range(1000):
        m.update("card", "c1", card(i, 2 * i), event_ts_ms=10_000 + i)
    m.update("terminal", "t1", {"risk": 0.5}, event_ts_ms=10_000)
    assert m.backlog_rows == 2
    assert asyncio.run(m.flush())
    assert push.batches == [{"card": [("c1", (999.0, 1998.0), 10_999)],
                             "terminal": [("t1", (0.5,), 10_000)]}]
    assert m.backlog_rows == 0


def test_older_update_is_ignored_equal_time_replaces() -> None:
    push = FakePush()
    m = make(push)
    m.update("card", "c1", card(2), event_ts_ms=2_000)
    m.update("card", "c1", card(1), event_ts_ms=1_000)  # late event: older than pending
    m.update("card", "c2", card(1), event_ts_ms=5_000)
    m.update("card", "c2", card(7), event_ts_ms=5_000)  # same time, later call wins
    asyncio.run(m.flush())
    assert push.latest() == {("card", "c1"): ((2.0, 1.0), 2_000),
                             ("card", "c2"): ((7.0, 1.0), 5_000)}


def test_updates_are_validated_and_copied() -> None:
    push = FakePush()
    m = make(push)
    with pytest.raises(ValueError, match="entity 'txn'"):
        m.update("txn", "x", {"amount": 1.0}, event_ts_ms=1)
    with pytest.raises(ValueError, match=r"lacks features \['amount'\]"):
        m.update("card", "c1", {"n": 1.0}, event_ts_ms=1)
    vector = {"n": 1.0, "amount": 3.0, "risk": 9.0, "other": 4.0}  # a whole vector is fine
    m.update("card", 42, vector, event_ts_ms=1)  # type: ignore[arg-type]
    vector["n"] = 100.0  # the caller may reuse its dict
    asyncio.run(m.flush())
    assert push.batches == [{"card": [("42", (1.0, 3.0), 1)]}]


def test_flush_pushes_batches_of_at_most_max_rows_oldest_first() -> None:
    push = FakePush()
    m = make(push, max_rows=10)
    for i in range(25):
        m.update("card", f"c{i:02d}", card(i), event_ts_ms=i)
    assert asyncio.run(m.flush())
    sizes = [len(b["card"]) for b in push.batches]
    assert sizes == [10, 10, 5]
    assert [key for key, _, _ in push.batches[0]["card"]] == [f"c{i:02d}" for i in range(10)]


def test_flush_by_rows() -> None:
    push = FakePush()

    async def scenario() -> float:
        m = make(push, max_rows=50, max_interval_s=60)
        m.start()
        await asyncio.sleep(0.05)
        for i in range(49):
            m.update("card", f"c{i}", card(i), event_ts_ms=i)
        await asyncio.sleep(0.2)
        assert push.batches == []  # 49 rows, 60 s: nothing due yet
        start = time.monotonic()
        m.update("card", "c49", card(49), event_ts_ms=49)
        while not push.batches:
            await asyncio.sleep(0.005)
        await m.stop()
        return push.times[0] - start

    assert asyncio.run(scenario()) < 0.5
    assert [len(b["card"]) for b in push.batches] == [50]


def test_flush_by_time() -> None:
    push = FakePush()

    async def scenario() -> float:
        m = make(push, max_rows=1_000_000, max_interval_s=0.3)
        m.start()
        await asyncio.sleep(0.05)
        start = time.monotonic()
        for i in range(3):
            m.update("card", f"c{i}", card(i), event_ts_ms=i)
            await asyncio.sleep(0.05)
        while not push.batches:
            await asyncio.sleep(0.005)
        waited = push.times[0] - start
        await m.stop()
        return waited

    waited = asyncio.run(scenario())
    assert 0.28 <= waited < 0.8  # timed from the first pending row, not the last
    assert [len(b["card"]) for b in push.batches] == [3]


def test_push_runs_in_a_thread_and_the_loop_keeps_going() -> None:
    push = FakePush(delay_s=0.5)

    async def scenario() -> float:
        m = make(push, max_rows=1000, max_interval_s=0.01)
        m.start()
        m.update("card", "c0", card(0), event_ts_ms=0)
        await asyncio.sleep(0.05)  # the first push is now sleeping in its thread
        started = time.monotonic()
        for i in range(1, 21):
            m.update("card", f"c{i}", card(i), event_ts_ms=i)
            await asyncio.sleep(0.01)
        ticking = time.monotonic() - started
        assert len(push.batches) == 0  # the push was in flight all along
        await m.stop()
        return ticking

    assert asyncio.run(scenario()) < 0.4
    assert [len(b["card"]) for b in push.batches] == [1, 20]
    assert threading.main_thread().name not in push.threads


def test_update_during_a_push_goes_to_the_next_batch() -> None:
    push = FakePush(delay_s=0.2)

    async def scenario() -> None:
        m = make(push, max_rows=1, max_interval_s=60)
        m.start()
        m.update("card", "c1", card(1), event_ts_ms=1)
        await asyncio.sleep(0.05)  # first push in flight
        m.update("card", "c1", card(2), event_ts_ms=2)
        assert m.backlog_rows == 2  # one in flight, one pending
        await m.stop()

    asyncio.run(scenario())
    assert [b["card"] for b in push.batches] == [[("c1", (1.0, 1.0), 1)],
                                                 [("c1", (2.0, 1.0), 2)]]


def test_failures_keep_the_batch_merge_newer_updates_and_back_off() -> None:
    push = FakePush()

    async def scenario() -> None:
        m = make(push, max_rows=100, max_interval_s=0.02, retry_initial_s=0.05,
                 retry_max_s=0.2)
        m.start()
        push.failing = True
        for i in range(10):
            m.update("card", f"c{i}", card(i), event_ts_ms=100)
        await asyncio.sleep(0.3)
        assert len(push.attempts) >= 2 and push.batches == []
        for i in range(5):  # newer values of half the keys while failing
            m.update("card", f"c{i}", card(100 + i), event_ts_ms=200)
        m.update("card", "c9", card(-1), event_ts_ms=50)  # older than the kept row: ignored
        for i in range(10, 30):
            m.update("card", f"c{i}", card(i), event_ts_ms=300)
        assert m.backlog_rows == 30
        await asyncio.sleep(0.6)
        gaps = [b - a for a, b in zip(push.attempts, push.attempts[1:], strict=False)]
        assert gaps[0] < 0.15 and max(gaps) >= 0.15  # 0.05, 0.1, 0.2, 0.2 ...
        assert all(g < 0.45 for g in gaps)  # capped at retry_max_s
        push.failing = False
        while m.backlog_rows:
            await asyncio.sleep(0.01)
        await m.stop()

    asyncio.run(scenario())
    latest = push.latest()
    assert len(latest) == 30
    for i in range(5):
        assert latest[("card", f"c{i}")] == ((100.0 + i, 1.0), 200)
    for i in range(5, 10):
        assert latest[("card", f"c{i}")] == ((float(i), 1.0), 100)
    assert push.rows == 30  # each key pushed once: failed batches were merged, not duplicated


def test_stop_pushes_what_is_pending_and_closes_the_sink() -> None:
    push = FakePush()

    async def scenario() -> bool:
        m = make(push, max_rows=1000, max_interval_s=60)
        m.start()
        m.update("terminal", "t1", {"risk": 0.25}, event_ts_ms=7)
        return await m.stop()

    assert asyncio.run(scenario())
    assert push.batches == [{"terminal": [("t1", (0.25,), 7)]}] and push.closed


def test_stop_gives_up_after_its_timeout_when_the_store_stays_down() -> None:
    push = FakePush()
    push.failing = True

    async def scenario() -> tuple[bool, int]:
        m = make(push, retry_initial_s=0.05, retry_max_s=0.05)
        m.update("card", "c1", card(1), event_ts_ms=1)
        started = time.monotonic()
        done = await m.stop(timeout=0.3)
        assert time.monotonic() - started < 1
        return done, m.backlog_rows

    assert asyncio.run(scenario()) == (False, 1)


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics() -> None:
    push = FakePush()
    before = {
        "pushed": _sample("fraudstream_feast_rows_pushed_total", view="card_features"),
        "failures": _sample("fraudstream_feast_push_failures_total", store="online"),
        "batches": _sample("fraudstream_feast_batch_rows_count"),
        "push_s": _sample("fraudstream_feast_push_seconds_count"),
    }
    m = Materialiser(push, VIEWS, retry_initial_s=0.01, metrics=True)
    assert _sample("fraudstream_feast_backlog_rows") == 0
    now_ms = int(time.time() * 1000)
    for i in range(7):
        m.update("card", f"c{i}", card(i), event_ts_ms=now_ms - 5_000)
    assert _sample("fraudstream_feast_backlog_rows") == 7
    push.failing = True
    assert not asyncio.run(m.flush(timeout=0.05))
    assert _sample("fraudstream_feast_backlog_rows") == 7
    push.failing = False
    assert asyncio.run(m.flush())
    assert _sample("fraudstream_feast_backlog_rows") == 0
    assert _sample("fraudstream_feast_rows_pushed_total", view="card_features") \
        == before["pushed"] + 7
    assert _sample("fraudstream_feast_push_failures_total", store="online") \
        > before["failures"]
    assert _sample("fraudstream_feast_batch_rows_count") == before["batches"] + 1
    assert _sample("fraudstream_feast_push_seconds_count") >= before["push_s"] + 2
    assert 4.9 < _sample("fraudstream_feature_freshness_seconds") < 30


def test_spec_views_follow_the_spec() -> None:
    from features.spec import DEFAULT_SPEC

    views = spec_views()
    assert set(views) == {"card", "terminal"}
    assert list(views["card"]) == DEFAULT_SPEC.names_for("card")


def test_update_is_cheap() -> None:
    m = Materialiser(FakePush(), metrics=False)
    vectors = [{name: float(i) for name in spec_views()["card"]} for i in range(1000)]
    started = time.perf_counter()
    for i in range(20_000):
        m.update("card", f"c{i % 5000}", vectors[i % 1000], event_ts_ms=i)
    per_update_us = (time.perf_counter() - started) / 20_000 * 1e6
    assert per_update_us < 50, per_update_us  # a few µs on an idle core
