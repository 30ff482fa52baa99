"""Materialise the streaming features into Feast in micro-batches: the latest value per entity.

The streaming agents call :meth:`Materialiser.update` once per computed feature row. That call
only records the row in a dict keyed by ``(entity, key)`` (a few microseconds, no I/O); a
background task pushes the dict in micro-batches bounded by rows (``max_rows``) and by time
(``max_interval_s``: no row waits longer than that for its push to start while Feast is
healthy). A key updated many times between two pushes is pushed once, with its latest value.
Pushes are blocking (Feast, redis-py), so they run in a thread and the event loop keeps
processing events; one push is in flight at a time. The push function is given: the Feast
ones are in :mod:`app.feast_sink` (``ProcessFeastSink`` also moves Feast's CPU work to a child
process), and the tests pass plain callables.

Latest wins
-----------
Per key, the row with the greatest event time wins; on equal event times, the later call wins
(its values were computed with more of the stream). Feast's Redis store applies the same rule
across pushes but *drops* a write whose event time equals the stored one: if two updates of a
key carry the same event time and land in different pushes, Redis keeps the first, and the
online value stays one update behind until the key's next event with a newer time. (Two
transactions of a card in the same millisecond, split by a flush.) Within one push the later
one wins. Scoring is unaffected (the vector travels with the event); corrections that must
reach Redis need a strictly newer event time.

Failures
--------
A failed push (Redis down, timeout) keeps its batch: it is merged back with the updates that
arrived meanwhile (latest wins) and retried with exponential backoff (``retry_initial_s``
doubling up to ``retry_max_s``). Nothing is dropped and the stream is never blocked; the
backlog is bounded by the number of distinct entities, since each key holds one row. Updates
are validated when they arrive (unknown entity, missing feature: ``ValueError`` to the caller),
so a retried batch cannot fail on its data.

Delivery guarantee
------------------
While the process runs: the latest value of every key reaches Feast, at least once (values
superseded before their push are never pushed, by design; re-pushes are idempotent since Redis
skips rows that are not newer). Across a crash: the worker commits its Kafka offsets without
waiting for Feast, so rows pending or in flight (while healthy: about the last
``max_interval_s`` of updates, at most two batches; while Redis is down: the whole backlog)
are lost *for Feast only*. The source of truth is the changelog-backed Faust
tables: a key's online value is repaired by its next update, or at once if the worker re-seeds
the materialiser from its recovered tables on partition assignment (``update`` is idempotent,
so re-seeding is safe). :meth:`stop` pushes what is pending on a clean shutdown.

Re-seeding an emptied online store
----------------------------------
Redis may come back empty (restarted without persistence, flushed). Keys that are not updated
again would then stay missing. With a ``sentinel`` (:class:`RedisSentinel`: a key of this
materialiser's own, written when it starts and checked every ``reseed_check_s``), the
materialiser notices that the store lost its contents and pushes again the latest row of every
key it has pushed (it keeps that row per key, sharing the pushed tuples), merged under the
pending rows (latest wins). Each worker has its own sentinel, so every worker re-seeds its
keys; a row older than one another worker pushes since is skipped by Redis (not newer), so the
order of the re-seeds does not matter.

Examples
--------
>>> import asyncio
>>> pushed = []
>>> m = Materialiser(pushed.append, {"card": ("n_1d",)}, max_rows=2, max_interval_s=60,
...                  metrics=False)
>>> for n in (1.0, 2.0, 3.0):
...     m.update("card", "c1", {"n_1d": n}, event_ts_ms=1_000 + int(n))
>>> m.backlog_rows
1
>>> asyncio.run(m.flush())
True
>>> pushed
[{'card': [('c1', (3.0,), 1003)]}]
"""

from __future__ import annotations

import asyncio
import logging
import math
import operator
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence

from features.spec import DEFAULT_SPEC, FeatureSpec

log = logging.getLogger(__name__)

Row = tuple[str, tuple[float, ...], int]
"""``(key, feature values in view order, event time in ms)``."""
Batch = dict[str, list[Row]]
"""entity -> rows; what a push function receives."""
PushFn = Callable[[Batch], None]
"""Blocking; raises on failure (the batch is then retried)."""
SentinelFn = Callable[[], bool]
"""Blocking; True when the online store lost what was pushed (and marks it again), False when
it still holds it; raises when the store cannot be reached (checked again later)."""


class RedisSentinel:
    """Detects an emptied Redis: a key of this materialiser's own (a random id), written when
    missing, its expiry refreshed at each check (so keys of dead workers disappear).

    ``__call__`` returns True when the key was missing (the store lost its contents, or this is
    the first check) and writes it; False otherwise.
    """

    PREFIX = "fraudstream:online-seeded:"

    def __init__(self, url: str, ttl_s: int = 3600, client: object | None = None) -> None:
        import uuid

        self.url = url
        self.key = f"{self.PREFIX}{uuid.uuid4().hex}"
        self.ttl_s = ttl_s
        self._client: object | None = client

    def _redis(self) -> object:
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(self.url, socket_timeout=2.0,
                                                socket_connect_timeout=2.0)
        return self._client

    def __call__(self) -> bool:
        client = self._redis()
        # SET ... NX: written only when missing; returns None when it was there
        written = client.set(self.key, b"1", ex=self.ttl_s, nx=True)  # type: ignore[attr-defined]
        if written:
            return True
        client.expire(self.key, self.ttl_s)  # type: ignore[attr-defined]
        return False

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.delete(self.key)  # type: ignore[attr-defined]
                client.close()  # type: ignore[attr-defined]
            except Exception as exc:  # best effort at shutdown
                log.debug("removing the online-store sentinel failed: %r", exc)


def spec_views(spec: FeatureSpec = DEFAULT_SPEC,
               entities: Iterable[str] = ("card", "terminal")) -> dict[str, tuple[str, ...]]:
    """entity -> feature names in vector order, for the views materialised from ``spec``.

    >>> len(spec_views()["terminal"])
    6
    """
    return {entity: tuple(spec.names_for(entity)) for entity in entities}


def backoff_delay(failures: int, initial_s: float, max_s: float) -> float:
    """Exponential backoff after ``failures`` consecutive failures, capped at ``max_s``.

    >>> [backoff_delay(k, 0.5, 4.0) for k in range(6)]
    [0.0, 0.5, 1.0, 2.0, 4.0, 4.0]
    """
    if failures <= 0:
        return 0.0
    return float(min(max_s, initial_s * 2 ** min(failures - 1, 30)))


def _values_getter(names: Sequence[str]) -> Callable[[Mapping[str, float]], tuple[float, ...]]:
    """A function returning the values of ``names`` of a mapping, as a tuple (KeyError)."""
    if len(names) == 1:
        name = names[0]
        return lambda features: (features[name],)
    return operator.itemgetter(*names)  # type: ignore[return-value]


class Materialiser:
    """Collects the latest feature row per entity key and pushes micro-batches to Feast.

    Parameters
    ----------
    push : callable
        ``push(batch)``, blocking, run in a thread; raises on failure.
        :class:`app.feast_sink.FeastSink` (or ``ProcessFeastSink``) for Feast; any callable
        in tests. If it has a ``close()``, :meth:`stop` calls it.
    views : mapping, optional
        entity -> feature names in the order the rows carry them (default
        :func:`spec_views`).
    max_rows : int
        Rows per push at most; reaching it triggers a push at once.
    max_interval_s : float
        A pending row's push starts within this many seconds, or when the push in flight
        ends if that takes longer (while pushes succeed).
    retry_initial_s, retry_max_s : float
        Backoff after a failed push: ``retry_initial_s`` doubling per failure, capped.
    metrics : bool
        Report to the Prometheus metrics of :mod:`app.feast_metrics`.
    sentinel : callable, optional
        ``sentinel()`` (:data:`SentinelFn`, e.g. :class:`RedisSentinel`): checked every
        ``reseed_check_s``; when it says the store was emptied, every key pushed so far is
        pushed again (see the module docstring). None: no re-seeding.
    """

    def __init__(self, push: PushFn, views: Mapping[str, Sequence[str]] | None = None, *,
                 max_rows: int = 1_000, max_interval_s: float = 1.0,
                 retry_initial_s: float = 0.5, retry_max_s: float = 30.0,
                 metrics: bool = True, sentinel: SentinelFn | None = None,
                 reseed_check_s: float = 2.0) -> None:
        if max_rows < 1 or max_interval_s <= 0 or retry_initial_s <= 0:
            raise ValueError("max_rows, max_interval_s and retry_initial_s must be positive")
        self._push = push
        views = spec_views() if views is None else views
        self._views = {e: tuple(names) for e, names in views.items()}
        self._getters = {e: _values_getter(names) for e, names in self._views.items()}
        self.max_rows = max_rows
        self.max_interval_s = max_interval_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = max(retry_max_s, retry_initial_s)
        self._pending: dict[tuple[str, str], tuple[tuple[float, ...], int]] = {}
        self._pending_since: float | None = None  # monotonic time of the oldest pending row
        self._inflight_rows = 0
        self._failures = 0  # consecutive failed pushes
        self._newest_pushed_ms: int | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sentinel = sentinel
        self.reseed_check_s = reseed_check_s
        self._seeded: dict[tuple[str, str], tuple[tuple[float, ...], int]] = {}
        self._checker: asyncio.Task[None] | None = None
        self.reseeds = 0
        self._metrics = metrics
        if metrics:
            from app import feast_metrics

            ref = weakref.ref(self)
            feast_metrics.FEAST_BACKLOG_ROWS.set_function(
                lambda: float(m.backlog_rows) if (m := ref()) else 0.0)
            feast_metrics.FEATURE_FRESHNESS.set_function(
                lambda: m.freshness_s() if (m := ref()) else math.nan)

    # -- the hot path ---------------------------------------------------------------------

    def update(self, entity: str, key: str, features: Mapping[str, float],
               event_ts_ms: int) -> None:
        """Record ``key``'s latest features (call from the event loop's thread).

        ``features`` may hold more than the view's features (a whole vector); the view's
        values are copied, so the caller may reuse the dict. Values are floats (the spec's
        features are finite floats), ``event_ts_ms`` an int. An update older than the pending
        one for the same key is ignored; an equal event time replaces it.
        """
        getter = self._getters.get(entity)
        if getter is None:
            raise ValueError(f"no feature view for entity {entity!r}")
        try:
            values = getter(features)
        except KeyError:
            missing = sorted(set(self._views[entity]) - features.keys())
            raise ValueError(f"{entity} update lacks features {missing}") from None
        slot = (entity, str(key))
        current = self._pending.get(slot)
        if current is not None and current[1] > event_ts_ms:
            return
        self._pending[slot] = (values, event_ts_ms)
        if self._pending_since is None:
            self._pending_since = time.monotonic()
            self._wake.set()
        elif len(self._pending) >= self.max_rows:
            self._wake.set()

    @property
    def backlog_rows(self) -> int:
        """Rows not yet in Feast: pending plus in flight."""
        return len(self._pending) + self._inflight_rows

    def freshness_s(self) -> float:
        """Seconds from the newest pushed row's event time to now (NaN before any push)."""
        if self._newest_pushed_ms is None:
            return math.nan
        return time.time() - self._newest_pushed_ms / 1000

    # -- pushing --------------------------------------------------------------------------

    def _take(self) -> tuple[Batch, int, float | None]:
        """Move up to ``max_rows`` pending rows (oldest first) into a batch."""
        since = self._pending_since
        n = min(self.max_rows, len(self._pending))
        batch: Batch = {}
        if n == len(self._pending):
            items = list(self._pending.items())
            self._pending.clear()
            self._pending_since = None
        else:
            items = []
            for slot in list(self._pending)[:n]:
                items.append((slot, self._pending.pop(slot)))
        for (entity, key), (values, ts) in items:
            batch.setdefault(entity, []).append((key, values, ts))
        return batch, n, since

    def _restore(self, batch: Batch, since: float | None) -> None:
        """Merge a failed batch back under the pending rows (latest wins)."""
        for entity, rows in batch.items():
            for key, values, ts in rows:
                slot = (entity, key)
                current = self._pending.get(slot)
                if current is None or ts > current[1]:
                    self._pending[slot] = (values, ts)
        if self._pending and since is not None:
            self._pending_since = min(since, self._pending_since or since)

    async def _attempt(self) -> bool:
        """Push one batch of at most ``max_rows``; False when it failed (batch kept)."""
        async with self._lock:
            batch, n, since = self._take()
            if not n:
                return True
            self._inflight_rows = n
            started = time.perf_counter()
            try:
                await asyncio.to_thread(self._push, batch)
            except BaseException as exc:
                self._inflight_rows = 0
                self._restore(batch, since)
                if not isinstance(exc, Exception):
                    raise  # cancelled: the batch is kept for the final flush
                self._failures += 1
                self._record_failure(exc, n, time.perf_counter() - started)
                return False
            self._inflight_rows = 0
            self._failures = 0
            if self._sentinel is not None:
                self._remember(batch)
            self._record_success(batch, n, time.perf_counter() - started)
            return True

    # -- re-seeding -----------------------------------------------------------------------

    def _remember(self, batch: Batch) -> None:
        """Keep the latest pushed row per key (for a re-seed)."""
        seeded = self._seeded
        for entity, rows in batch.items():
            for key, values, ts in rows:
                slot = (entity, key)
                current = seeded.get(slot)
                if current is None or ts >= current[1]:
                    seeded[slot] = (values, ts)

    def reseed(self) -> int:
        """Queue again the latest pushed row of every key (the store lost them); returns how
        many rows were queued (pending newer rows are kept: latest wins)."""
        pending = self._pending
        n = 0
        for slot, (values, ts) in self._seeded.items():
            current = pending.get(slot)
            if current is None or ts > current[1]:
                pending[slot] = (values, ts)
                n += 1
        if n:
            if self._pending_since is None:
                self._pending_since = time.monotonic()
            self._wake.set()
        self.reseeds += 1
        return n

    async def check_store(self) -> bool | None:
        """Ask the sentinel once; re-seed if the store was emptied. True: re-seeded, False:
        intact, None: the store could not be reached (asked again later)."""
        if self._sentinel is None:
            return False
        try:
            emptied = await asyncio.to_thread(self._sentinel)
        except Exception as exc:  # Redis down: the pushes report it; check again later
            log.debug("online store sentinel check failed: %r", exc)
            return None
        if not emptied:
            return False
        if self._seeded:
            n = self.reseed()
            log.warning("the Feast online store lost its contents (sentinel %s missing): "
                        "re-seeding %d feature rows", getattr(self._sentinel, "key", ""), n)
        return True

    async def _check_forever(self) -> None:
        while not self._stopping.is_set():
            await self.check_store()
            await self._sleep_unless_stopping(self.reseed_check_s)

    def _record_failure(self, exc: Exception, n: int, seconds: float) -> None:
        log.warning("Feast push of %d rows failed (%s: %s); %d rows kept, retry in %.1f s",
                    n, type(exc).__name__, exc, self.backlog_rows, self.backoff_s())
        if self._metrics:
            from app import feast_metrics

            feast_metrics.FEAST_PUSH_FAILURES.labels(store="online").inc()
            feast_metrics.FEAST_PUSH_SECONDS.observe(seconds)

    def _record_success(self, batch: Batch, n: int, seconds: float) -> None:
        newest = max(ts for rows in batch.values() for _, _, ts in rows)
        if self._newest_pushed_ms is None or newest > self._newest_pushed_ms:
            self._newest_pushed_ms = newest
        if self._metrics:
            from app import feast_metrics
            from app.feast_env import view_name

            feast_metrics.FEAST_PUSH_SECONDS.observe(seconds)
            feast_metrics.FEAST_BATCH_ROWS.observe(n)
            for entity, rows in batch.items():
                feast_metrics.FEAST_ROWS_PUSHED.labels(view=view_name(entity)).inc(len(rows))

    def backoff_s(self) -> float:
        """Delay before the next attempt after the current run of failures."""
        return backoff_delay(self._failures, self.retry_initial_s, self.retry_max_s)

    async def flush(self, timeout: float | None = None) -> bool:
        """Push everything pending now (retrying with backoff); True when nothing is left.

        With a ``timeout``, gives up after that many seconds and returns False (the rows
        stay pending).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._pending:
            if not await self._attempt():
                delay = self.backoff_s()
                if deadline is not None:
                    delay = min(delay, deadline - time.monotonic())
                    if delay <= 0:
                        return False
                await asyncio.sleep(delay)
        return True

    # -- the background task --------------------------------------------------------------

    async def _wait_until_due(self) -> None:
        """Return when a push is due: ``max_rows`` pending, or the oldest row's time is up."""
        while not self._stopping.is_set():
            if len(self._pending) >= self.max_rows:
                return
            timeout = None
            if self._pending_since is not None:
                timeout = self._pending_since + self.max_interval_s - time.monotonic()
                if timeout <= 0:
                    return
            self._wake.clear()
            waiters = [asyncio.ensure_future(self._wake.wait()),
                       asyncio.ensure_future(self._stopping.wait())]
            try:
                await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def run(self) -> None:
        """Push micro-batches until :meth:`stop` (never raises on a failed push)."""
        while not self._stopping.is_set():
            await self._wait_until_due()
            if self._stopping.is_set():
                return
            if not await self._attempt():
                await self._sleep_unless_stopping(self.backoff_s())

    def start(self) -> asyncio.Task[None]:
        """Run :meth:`run` as a task of the running loop."""
        if self._task is None or self._task.done():
            self._stopping.clear()
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self.run(), name="materialiser")
            if self._sentinel is not None and (self._checker is None or self._checker.done()):
                self._checker = loop.create_task(self._check_forever(),
                                                 name="materialiser-sentinel")
        return self._task

    async def stop(self, timeout: float = 10.0) -> bool:
        """Stop the task (after a push in flight), push what is pending, close the sink.

        Returns False, and logs how many rows Feast misses, if Feast is still failing after
        ``timeout`` seconds (those rows are recovered as the module docstring says).
        """
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._checker is not None:
            await self._checker
            self._checker = None
        done = await self.flush(timeout=timeout)
        if not done:
            log.error("Feast unavailable at shutdown: %d feature rows not pushed (repaired by "
                      "the next update of each key)", self.backlog_rows)
        for part in (self._push, self._sentinel):
            close = getattr(part, "close", None)
            if close is not None:
                try:
                    await asyncio.to_thread(close)
                except Exception:
                    log.exception("closing %r failed", part)
        return done
