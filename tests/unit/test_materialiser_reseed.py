"""Re-seeding an emptied online store (the materialiser's sentinel), with a fake Redis."""

from __future__ import annotations

import asyncio

from app.materialiser import Batch, Materialiser, RedisSentinel

VIEWS = {"card": ("n",), "terminal": ("risk",)}


class FakeRedis:
    """The part of redis-py the sentinel uses, plus Feast's rule: a row not newer is skipped.

    ``rows`` is what the online store holds; :meth:`flush` empties everything (a restart
    without persistence); ``down`` makes every call raise.
    """

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}
        self.rows: dict[tuple[str, str], tuple[tuple[float, ...], int]] = {}
        self.down = False

    def _up(self) -> None:
        if self.down:
            raise ConnectionError("Redis is down")

    def set(self, key: str, value: bytes, ex: int | None = None, nx: bool = False) -> bool | None:
        self._up()
        if nx and key in self.keys:
            return None
        self.keys[key] = value
        return True

    def expire(self, key: str, seconds: int) -> bool:
        self._up()
        return key in self.keys

    def delete(self, key: str) -> int:
        self._up()
        return int(self.keys.pop(key, None) is not None)

    def close(self) -> None:
        pass

    def flush(self) -> None:
        self.keys.clear()
        self.rows.clear()

    def push(self, batch: Batch) -> None:
        self._up()
        for entity, rows in batch.items():
            for key, values, ts in rows:
                current = self.rows.get((entity, key))
                if current is None or ts > current[1]:
                    self.rows[(entity, key)] = (values, ts)


def _make(redis: FakeRedis) -> tuple[Materialiser, RedisSentinel]:
    sentinel = RedisSentinel("redis://fake", client=redis)
    m = Materialiser(redis.push, VIEWS, max_rows=1000, max_interval_s=0.01, metrics=False,
                     retry_initial_s=0.01, retry_max_s=0.05, sentinel=sentinel,
                     reseed_check_s=0.02)
    return m, sentinel


def test_the_sentinel_says_whether_the_store_was_emptied() -> None:
    redis = FakeRedis()
    sentinel = RedisSentinel("redis://fake", client=redis)
    assert sentinel() is True          # first check: written
    assert sentinel() is False         # still there
    redis.flush()
    assert sentinel() is True          # gone: the store was emptied
    assert sentinel() is False
    other = RedisSentinel("redis://fake", client=redis)
    assert other.key != sentinel.key and other() is True   # one per worker incarnation
    sentinel.close()
    assert sentinel.key not in redis.keys


def test_an_emptied_store_is_reseeded_with_the_latest_row_of_every_key() -> None:
    async def run() -> None:
        redis = FakeRedis()
        m, _ = _make(redis)
        m.start()
        for i in range(50):
            m.update("card", f"c{i % 10}", {"n": float(i)}, event_ts_ms=1_000 + i)
            m.update("terminal", f"t{i % 3}", {"risk": i / 100}, event_ts_ms=1_000 + i)
        await asyncio.sleep(0.2)
        expected = dict(redis.rows)
        assert len(expected) == 13 and expected[("card", "c9")] == ((49.0,), 1_049)

        redis.down = True                 # Redis goes away ...
        m.update("card", "c0", {"n": 100.0}, event_ts_ms=2_000)   # an update meanwhile
        await asyncio.sleep(0.1)
        redis.flush()                      # ... and comes back empty
        redis.down = False
        expected[("card", "c0")] = ((100.0,), 2_000)
        for _ in range(100):
            await asyncio.sleep(0.02)
            if redis.rows == expected:
                break
        assert redis.rows == expected, (len(redis.rows), len(expected))
        assert m.reseeds == 1               # after the flush (the first check had nothing)
        assert await m.stop(timeout=1.0)

    asyncio.run(run())


def test_a_reseed_keeps_newer_pending_rows() -> None:
    redis = FakeRedis()
    m, _ = _make(redis)
    asyncio.run(m.flush())
    m.update("card", "c1", {"n": 1.0}, event_ts_ms=10)
    asyncio.run(m.flush())
    m.update("card", "c1", {"n": 2.0}, event_ts_ms=20)   # pending, newer than the seeded row
    assert m.reseed() == 0
    asyncio.run(m.flush())
    assert redis.rows[("card", "c1")] == ((2.0,), 20)
    redis.flush()
    assert m.reseed() == 1
    asyncio.run(m.flush())
    assert redis.rows[("card", "c1")] == ((2.0,), 20)


def test_an_unreachable_store_is_checked_again_later() -> None:
    redis = FakeRedis()
    m, _ = _make(redis)
    redis.down = True
    assert asyncio.run(m.check_store()) is None
    redis.down = False
    assert asyncio.run(m.check_store()) is True      # first contact: sentinel written
    assert asyncio.run(m.check_store()) is False


def test_without_a_sentinel_nothing_is_kept_for_reseeding() -> None:
    pushed: list[Batch] = []
    m = Materialiser(pushed.append, VIEWS, metrics=False)
    m.update("card", "c1", {"n": 1.0}, event_ts_ms=10)
    asyncio.run(m.flush())
    assert m._seeded == {} and asyncio.run(m.check_store()) is False
