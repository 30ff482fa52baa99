"""Score one micro-batch of enriched records with the models of a snapshot.

Pure: bytes and models in, ``ml-predictions`` records and refusals out. Every scoreable
transaction gets one record per variant that :class:`app.scoring.split.SplitPolicy` assigns to
it; each variant scores its rows in one ONNX Runtime call.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.scoring.models import LoadedModel
from app.scoring.records import prediction_record
from app.scoring.split import CHALLENGER, CHAMPION, SplitPolicy
from app.scoring.vectors import parse_batch
from contracts.rejections import Rejection


@dataclass
class ScoredBatch:
    """Records to publish (key, value dict) in input order, the input position of each record,
    and refused positions."""

    records: list[tuple[bytes, dict[str, Any]]] = field(default_factory=list)
    rejects: list[tuple[int, Rejection]] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)


def source_ts(txn: dict[str, Any], fallback_ms: float) -> float:
    """Kafka timestamp (ms) of the original transaction record, if the stream carried it.

    >>> source_ts({"source_ts_ms": 12}, 99.0), source_ts({}, 99.0)
    (12.0, 99.0)
    """
    value = txn.get("source_ts_ms")
    return float(value) if isinstance(value, int | float) else fallback_ms


def score_batch(raws: Sequence[bytes | None], kafka_ts_ms: Sequence[float],
                champion: LoadedModel, challenger: LoadedModel | None,
                policy: SplitPolicy) -> ScoredBatch:
    """Parse, assign variants, predict each variant once, build the records."""
    parsed = parse_batch(raws, champion.feature_names, champion.spec_version)
    out = ScoredBatch(rejects=parsed.rejects)
    if not parsed.txns:
        return out
    assignments = [policy.assign(txn["card_id"], challenger=challenger is not None)
                   for txn in parsed.txns]
    models = {CHAMPION: champion, CHALLENGER: challenger}
    scores: dict[str, dict[int, float]] = {}
    for variant, model in models.items():
        rows = [i for i, a in enumerate(assignments) if any(v == variant for v, _ in a)]
        if not rows or model is None:
            continue
        matrix = parsed.matrix if len(rows) == len(parsed.txns) else parsed.matrix[rows]
        predicted = np.asarray(model.predict(matrix), dtype=np.float64).tolist()
        scores[variant] = dict(zip(rows, predicted, strict=True))
    now_ms = time.time() * 1000
    for i, txn in enumerate(parsed.txns):
        sent_ms = source_ts(txn, kafka_ts_ms[parsed.positions[i]])
        key = str(txn["card_id"]).encode()
        for variant, shadow in assignments[i]:
            model = models[variant]
            assert model is not None
            out.positions.append(parsed.positions[i])
            out.records.append((key, prediction_record(
                txn, score=scores[variant][i], threshold=model.threshold,
                model_name=model.model_name, model_version=model.version, variant=variant,
                shadow=shadow, scored_at_ms=now_ms, source_ts_ms=sent_ms)))
    return out
