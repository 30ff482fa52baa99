"""Training sets from the pipeline's own feature log: ``transactions-enriched`` ⋈ labels.

The enriched topic holds every transaction with the feature vector it was scored with (the
features exactly as served); ``transaction-labels`` holds the late labels. The retrain worker
reads both back from Kafka over an event-time range, joins them by ``txn_id`` and gets a
:class:`training.dataset.TrainingFrame` without recomputing a single feature.

Reading (:func:`read_topic`): every partition from its first retained offset up to the end
offset found when the read starts, filtered on the record's event time (``ts``). Kafka
timestamps are processing time (a replay of six months is produced in minutes), so they
cannot select an event-time range; the scan is bounded by the topic's retention instead.
Records that are not JSON objects are counted and skipped. Redeliveries (at-least-once
upstream) are dropped by ``txn_id``, keeping the last copy.

:func:`watermark` reads only the tail of each partition: the newest event time there, used to
wait until labels (and features) have arrived up to a point.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from contracts.rejections import ContractError
from contracts.wire import loads_object
from features.spec import DEFAULT_SPEC, FeatureSpec
from training.dataset import KEY_COLUMNS, TrainingFrame, assemble

log = logging.getLogger(__name__)


@dataclass
class TopicRead:
    """Records kept from one topic, and how many were read and skipped."""

    records: list[dict[str, Any]]
    read: int
    malformed: int
    seconds: float


def _decode(value: bytes | None) -> dict[str, Any] | None:
    """A JSON object from a record value, or ``None`` (counted as malformed): parsed by the
    one depth-limited decoder, so a poison record cannot raise."""
    try:
        return loads_object(value)
    except ContractError:
        return None


async def _partitions(consumer: Any, topic: str) -> list[Any]:
    from aiokafka import TopicPartition

    await consumer.topics()  # refreshes the metadata
    parts = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(parts)]


async def _read(bootstrap: str, topic: str, client_kwargs: Mapping[str, Any],
                keep: Callable[[dict[str, Any]], bool], tail: int | None,
                timeout_s: float) -> TopicRead:
    from aiokafka import AIOKafkaConsumer

    began = time.perf_counter()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=50, **dict(client_kwargs))
    await consumer.start()
    out: list[dict[str, Any]] = []
    read = malformed = 0
    try:
        tps = await _partitions(consumer, topic)
        if not tps:
            return TopicRead([], 0, 0, time.perf_counter() - began)
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        for tp in tps:
            first = starts[tp] if tail is None else max(starts[tp], ends[tp] - tail)
            consumer.seek(tp, first)
        pending = {tp for tp in tps if ends[tp] > starts[tp]}
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: {len(pending)} partition(s) not read to "
                                   f"their end in {timeout_s:.0f} s")
            batch = await consumer.getmany(*pending, timeout_ms=200, max_records=10_000)
            for tp, messages in batch.items():
                for m in messages:
                    if m.offset >= ends[tp]:
                        continue
                    read += 1
                    rec = _decode(m.value)
                    if rec is None:
                        malformed += 1
                    elif keep(rec):
                        out.append(rec)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return TopicRead(out, read, malformed, time.perf_counter() - began)


def _event_ts(rec: Mapping[str, Any]) -> int | None:
    ts = rec.get("ts")
    return int(ts) if isinstance(ts, int | float) and not isinstance(ts, bool) else None


def read_topic(bootstrap: str, topic: str, client_kwargs: Mapping[str, Any] | None = None, *,
               since_ts: int | None = None, until_ts: int | None = None,
               timeout_s: float = 300.0) -> TopicRead:
    """Records of ``topic`` whose event time ``ts`` is in ``[since_ts, until_ts]``.

    Delivery: reads what the topic held when the call started (end offsets taken first),
    each record once; nothing is committed (no consumer group).
    """
    lo = -(2**63) if since_ts is None else since_ts
    hi = 2**63 if until_ts is None else until_ts

    def keep(rec: dict[str, Any]) -> bool:
        ts = _event_ts(rec)
        return ts is not None and lo <= ts <= hi

    return asyncio.run(_read(bootstrap, topic, client_kwargs or {}, keep, None, timeout_s))


def watermark(bootstrap: str, topic: str, client_kwargs: Mapping[str, Any] | None = None, *,
              tail: int = 200, timeout_s: float = 60.0) -> int | None:
    """Newest event time ``ts`` among the last ``tail`` records of each partition (None when
    the topic is empty)."""
    got = asyncio.run(_read(bootstrap, topic, client_kwargs or {},
                            lambda rec: _event_ts(rec) is not None, tail, timeout_s))
    stamps = [_event_ts(r) for r in got.records]
    return max((s for s in stamps if s is not None), default=None)


def training_frame(enriched: Sequence[Mapping[str, Any]], labels: Sequence[Mapping[str, Any]],
                   spec: FeatureSpec = DEFAULT_SPEC, source: dict[str, object] | None = None,
                   ) -> TrainingFrame:
    """Enriched records joined with their labels by ``txn_id`` (unlabelled ones are left out).

    Records of another feature-spec version, or missing a feature, are left out and counted
    in ``source``.

    >>> f = {n: 1.0 for n in DEFAULT_SPEC.names}
    >>> enr = [{"txn_id": "a", "card_id": "c", "terminal_id": "t", "ts": 5, "features": f,
    ...         "feature_spec_version": DEFAULT_SPEC.version},
    ...        {"txn_id": "b", "card_id": "c", "terminal_id": "t", "ts": 9, "features": f,
    ...         "feature_spec_version": DEFAULT_SPEC.version},
    ...        {"txn_id": "x", "card_id": "c", "terminal_id": "t", "ts": 9, "features": f,
    ...         "feature_spec_version": "old"}]
    >>> data = training_frame(enr, [{"txn_id": "b", "is_fraud": 1}, {"txn_id": "x",
    ...                              "is_fraud": 0}])
    >>> data.frame[["txn_id", "is_fraud", "amount"]].values.tolist()
    [['b', 1, 1.0]]
    >>> data.source["unlabelled"], data.source["other_spec_version"]
    (1, 1)
    """
    source = dict(source or {})
    by_id: dict[str, Mapping[str, Any]] = {}
    for rec in enriched:  # the last copy of a redelivered record wins
        if isinstance(rec.get("txn_id"), str) and isinstance(rec.get("features"), dict):
            by_id[rec["txn_id"]] = rec
    label_of: dict[str, int] = {}
    for lab in labels:
        if isinstance(lab.get("txn_id"), str) and lab.get("is_fraud") in (0, 1, True, False):
            label_of[lab["txn_id"]] = int(lab["is_fraud"])
    other = [r for r in by_id.values() if r.get("feature_spec_version") != spec.version]
    rows = [r for r in by_id.values() if r.get("feature_spec_version") == spec.version]
    unlabelled = sum(1 for r in rows if r["txn_id"] not in label_of)
    rows = [r for r in rows if r["txn_id"] in label_of]
    names = spec.names
    matrix = np.array([[r["features"].get(n, np.nan) for n in names] for r in rows],
                      dtype=np.float64).reshape(len(rows), len(names))
    complete = ~np.isnan(matrix).any(axis=1)
    keys = pd.DataFrame({c: [r.get(c) for r in rows] for c in KEY_COLUMNS})
    keys = keys.loc[complete].reset_index(drop=True)
    feats = pd.DataFrame(matrix[complete], columns=names)
    feats.insert(0, "txn_id", keys["txn_id"].to_numpy())
    lab = pd.DataFrame({"txn_id": keys["txn_id"].to_numpy(),
                        "is_fraud": [label_of[t] for t in keys["txn_id"]]})
    source.update({"rows": int(complete.sum()), "unlabelled": unlabelled,
                   "other_spec_version": len(other),
                   "incomplete_features": int((~complete).sum())})
    if not len(keys):
        frame = pd.DataFrame(columns=[*KEY_COLUMNS, "is_fraud", *names])
        return TrainingFrame(frame, names, spec.version, source)
    return TrainingFrame(assemble(keys, lab, feats, spec), names, spec.version, source)
