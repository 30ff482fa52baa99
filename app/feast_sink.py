"""Where the materialiser's micro-batches go: Feast, from a thread or from a child process.

:class:`FeastSink` is the blocking push function of :class:`app.materialiser.Materialiser`:
online through ``FeatureStore.push`` (Redis), offline as parquet files in the views' batch
source folders. :class:`ProcessFeastSink` runs one in a child process, so that Feast's per-row
Python work does not take the worker's GIL. :func:`feast_materialiser` wires a materialiser to
either. Feast is imported only when a sink is built.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app.materialiser import Batch, Materialiser, PushFn, Row, spec_views
from features.spec import DEFAULT_SPEC, FeatureSpec

log = logging.getLogger(__name__)


class FeastSink:
    """The push function for Feast: online through the push sources, offline as parquet.

    Online: one ``FeatureStore.push(<entity>_features_push, df, to=PushMode.ONLINE)`` per view
    in the batch. Offline: the same rows are appended to the view's batch source folder as
    parquet files, one per ``offline_max_rows`` rows or ``offline_max_interval_s`` seconds
    (checked at each push; :meth:`close` writes the rest), written to a hidden temporary name
    and renamed, so readers never see half a file. Feast's own offline push
    (``PushMode.OFFLINE``) reads and rewrites the view's whole parquet file on every call, which
    grows without bound on a stream (seconds per push at a million rows); appending files is
    constant time. An offline write failure is logged and counted and its rows are kept for
    the next attempt; it never fails the online push.

    Offline rows are a copy of what was pushed online (latest per key per micro-batch). They
    are buffered in memory up to the bounds above, so a crash loses at most that much of the
    offline copy; training sets are recomputed from the transactions
    (:mod:`features.batch`), not read from it.
    """

    def __init__(self, store: Any, offline_root: str | Path | None,
                 spec: FeatureSpec = DEFAULT_SPEC, *, offline_max_rows: int = 100_000,
                 offline_max_interval_s: float = 60.0, metrics: bool = True) -> None:
        from feast.data_source import PushMode

        self.store = store
        self.spec = spec
        self.offline_root = None if offline_root is None else Path(offline_root)
        self.offline_max_rows = offline_max_rows
        self.offline_max_interval_s = offline_max_interval_s
        self._online = PushMode.ONLINE
        self._metrics = metrics
        self._offline: dict[str, list[Any]] = {}
        self._offline_rows = 0
        self._offline_written_at = time.monotonic()
        self.offline_failures = 0

    def frame(self, entity: str, rows: list[Row]) -> Any:
        """The DataFrame Feast expects for ``entity``'s rows."""
        import numpy as np
        import pandas as pd

        from app.feast_env import TIMESTAMP_FIELD, join_key, version_field

        names = self.spec.names_for(entity)
        values = np.array([values for _, values, _ in rows], dtype=np.float64)
        data: dict[str, Any] = {
            join_key(entity): [key for key, _, _ in rows],
            TIMESTAMP_FIELD: pd.to_datetime([ts for _, _, ts in rows], unit="ms", utc=True),
        }
        data.update((name, values[:, i]) for i, name in enumerate(names))
        data[version_field(entity)] = self.spec.version
        return pd.DataFrame(data)

    def __call__(self, batch: Batch) -> None:
        from app.feast_env import push_source_name

        frames = {entity: self.frame(entity, rows) for entity, rows in batch.items() if rows}
        for entity, df in frames.items():
            self.store.push(push_source_name(entity), df, to=self._online)
        if self.offline_root is not None:
            self._buffer_offline(frames)
            due = time.monotonic() - self._offline_written_at >= self.offline_max_interval_s
            if due or self._offline_rows >= self.offline_max_rows:
                self.write_offline()

    def _buffer_offline(self, frames: Mapping[str, Any]) -> None:
        import pyarrow as pa

        from app.feast_env import offline_schema

        for entity, df in frames.items():
            table = pa.Table.from_pandas(df, schema=offline_schema(entity, self.spec),
                                         preserve_index=False)
            self._offline.setdefault(entity, []).append(table)
            self._offline_rows += table.num_rows

    def write_offline(self) -> bool:
        """Write the buffered offline rows, one parquet file per view; False on failure."""
        import os
        import uuid

        import pyarrow as pa
        import pyarrow.parquet as pq

        from app.feast_env import offline_dir

        assert self.offline_root is not None
        try:
            for entity in list(self._offline):
                table = pa.concat_tables(self._offline[entity])
                folder = offline_dir(self.offline_root, entity)
                folder.mkdir(parents=True, exist_ok=True)
                stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
                name = f"part-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
                tmp = folder / f".{name}.tmp"
                pq.write_table(table, tmp)
                os.replace(tmp, folder / name)
                self._offline_rows -= table.num_rows
                del self._offline[entity]
        except Exception as exc:  # kept for the next push; never fails the online push
            log.warning("offline write of %d rows failed (%s: %s); kept for the next push",
                        self._offline_rows, type(exc).__name__, exc)
            self.offline_failures += 1
            if self._metrics:
                from app import feast_metrics

                feast_metrics.FEAST_PUSH_FAILURES.labels(store="offline").inc()
            return False
        self._offline_written_at = time.monotonic()
        return True

    def close(self) -> None:
        """Write what the offline buffer holds."""
        if self.offline_root is not None and self._offline:
            self.write_offline()


_CHILD_SINK: FeastSink | None = None


def _child_init(redis_url: str, data_dir: str, spec: FeatureSpec,
                options: dict[str, Any], parent_pid: int | None = None) -> None:
    global _CHILD_SINK
    from app.child_process import die_with_parent

    die_with_parent(parent_pid)  # a killed worker leaves no Feast child behind
    from app.feast_env import OFFLINE_PATH_VAR, feast_env, load_store

    offline = options.pop("offline", True)
    offline_root = feast_env(redis_url, data_dir)[OFFLINE_PATH_VAR] if offline else None
    _CHILD_SINK = FeastSink(load_store(redis_url, data_dir), offline_root, spec,
                            metrics=False, **options)


def _child_call(batch: Batch | None) -> int:
    """Push ``batch`` (None: close) in the child; offline write failures it caused."""
    assert _CHILD_SINK is not None
    before = _CHILD_SINK.offline_failures
    if batch is None:
        _CHILD_SINK.close()
    else:
        _CHILD_SINK(batch)
    return _CHILD_SINK.offline_failures - before


class ProcessFeastSink:
    """A :class:`FeastSink` in a child process, so Feast's Python work uses another core.

    Feast turns every row into protobufs in Python (here ~0.3 ms per card row of 17 features),
    holding the GIL. Measured with ``bench.feast_push`` (2 shared cores): back-to-back 1,000-row
    pushes cut an event loop's pure-Python throughput from ~42k to ~12.5k units/s from a
    thread, to ~24k from a child process. The worker then only pickles the batch. The child
    (``spawn``; ~220 MB) starts at construction and loads Feast (~10 s; the first push waits
    for it). A push error propagates (the materialiser retries); a dead child is replaced at
    the failing push.
    """

    def __init__(self, redis_url: str, data_dir: str | Path, spec: FeatureSpec = DEFAULT_SPEC,
                 *, offline: bool = True, offline_max_rows: int = 100_000,
                 offline_max_interval_s: float = 60.0, metrics: bool = True) -> None:
        options = {"offline": offline, "offline_max_rows": offline_max_rows,
                   "offline_max_interval_s": offline_max_interval_s}
        self._initargs = (redis_url, str(data_dir), spec, options)
        self._metrics = metrics
        self._pool: Any = None
        self._start()

    def _start(self) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._pool = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"),
            initializer=_child_init, initargs=(*self._initargs, os.getpid()))
        self._pool.submit(int)  # start the child (and Feast's import) now

    def __call__(self, batch: Batch) -> None:
        from concurrent.futures.process import BrokenProcessPool

        try:
            failures = self._pool.submit(_child_call, batch).result()
        except BrokenProcessPool:  # the child died (or could not load Feast): a new one
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._start()
            raise
        if failures and self._metrics:
            from app import feast_metrics

            feast_metrics.FEAST_PUSH_FAILURES.labels(store="offline").inc(failures)

    def close(self) -> None:
        """Write the child's offline buffer and stop the child."""
        from concurrent.futures.process import BrokenProcessPool

        try:
            self._pool.submit(_child_call, None).result()
        except BrokenProcessPool:
            log.warning("the Feast child process died; its offline buffer is lost")
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


def feast_materialiser(redis_url: str, data_dir: str | Path, spec: FeatureSpec = DEFAULT_SPEC,
                       *, process: bool = True, offline: bool = True,
                       offline_max_rows: int = 100_000, offline_max_interval_s: float = 60.0,
                       **options: Any) -> Materialiser:
    """A :class:`Materialiser` pushing to the applied store on ``redis_url``.

    ``process``: push from a child process (:class:`ProcessFeastSink`, the default) or from a
    thread of this process (:class:`FeastSink`; loads Feast here, blocking for seconds).
    ``options`` go to :class:`Materialiser` (``max_rows``, ``max_interval_s``, ...).
    """
    sink: PushFn
    if process:
        sink = ProcessFeastSink(redis_url, data_dir, spec, offline=offline,
                                offline_max_rows=offline_max_rows,
                                offline_max_interval_s=offline_max_interval_s)
    else:
        from app.feast_env import OFFLINE_PATH_VAR, feast_env, load_store

        offline_root = feast_env(redis_url, data_dir)[OFFLINE_PATH_VAR] if offline else None
        sink = FeastSink(load_store(redis_url, data_dir), offline_root, spec,
                         offline_max_rows=offline_max_rows,
                         offline_max_interval_s=offline_max_interval_s)
    return Materialiser(sink, spec_views(spec), **options)
