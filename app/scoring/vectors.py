"""Enriched records to a float32 feature matrix, refusing any vector the model was not built for.

A ``transactions-enriched`` value holds the transaction, ``features`` (name -> value) and
``feature_spec_version``; the terminal stage may add ``source_ts_ms``, the Kafka timestamp of
the original transaction record (for end-to-end latency). A record is refused, with a reason
for the dead-letter topic, when:

* ``malformed_enriched`` — not a JSON object with the transaction ids, ``ts`` and ``features``;
* ``feature_spec_mismatch`` — its ``feature_spec_version`` is not the model's;
* ``feature_mismatch`` — its feature names are not exactly the model's, or a value is not a
  finite number.

>>> names = ["amount", "card_tx_count_1d"]
>>> ok = b'{"txn_id": "t1", "card_id": "c", "terminal_id": "x", "ts": 1, "features": ' \\
...      b'{"card_tx_count_1d": 2, "amount": 9.5}, "feature_spec_version": "v1"}'
>>> batch = parse_batch([ok, b'{"txn_id": "t2"}', ok.replace(b'"v1"', b'"v0"')], names, "v1")
>>> batch.matrix.tolist(), batch.positions, [(p, r.reason) for p, r in batch.rejects]
([[9.5, 2.0]], [0], [(1, 'malformed_enriched'), (2, 'feature_spec_mismatch')])
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contracts.rejections import Rejection

REQUIRED = ("txn_id", "card_id", "terminal_id", "ts", "features")


@dataclass
class ParsedBatch:
    """The scoreable records of a batch and the refused ones (by position in the batch)."""

    txns: list[dict[str, Any]] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    matrix: np.ndarray = field(default_factory=lambda: np.empty((0, 0), dtype=np.float32))
    rejects: list[tuple[int, Rejection]] = field(default_factory=list)


def parse_record(raw: bytes | None, names: Sequence[str], spec_version: str,
                 ) -> tuple[dict[str, Any], list[float]] | Rejection:
    """One enriched value: the record (features removed) and its vector in ``names`` order."""
    try:
        value = json.loads(raw) if raw is not None else None
    except (ValueError, UnicodeDecodeError):
        return Rejection("malformed_enriched", "not JSON")
    if not isinstance(value, dict) or any(k not in value for k in REQUIRED):
        return Rejection("malformed_enriched", f"needs the fields {list(REQUIRED)}")
    features = value.pop("features")
    version = value.get("feature_spec_version")
    if version != spec_version:
        return Rejection("feature_spec_mismatch",
                         f"record built by feature spec {version!r}, model needs {spec_version!r}")
    if not isinstance(features, dict) or len(features) != len(names):
        return Rejection("feature_mismatch", f"expected {len(names)} features")
    try:
        vector = [float(features[name]) for name in names]
    except KeyError as exc:
        return Rejection("feature_mismatch", f"feature {exc.args[0]!r} missing")
    except (TypeError, ValueError):
        return Rejection("feature_mismatch", "a feature value is not a number")
    if not all(math.isfinite(v) for v in vector):
        return Rejection("feature_mismatch", "a feature value is not finite")
    return value, vector


def parse_batch(raws: Sequence[bytes | None], names: Sequence[str],
                spec_version: str) -> ParsedBatch:
    """Parse a micro-batch; ``matrix`` rows follow ``positions``."""
    out = ParsedBatch()
    vectors: list[list[float]] = []
    for position, raw in enumerate(raws):
        parsed = parse_record(raw, names, spec_version)
        if isinstance(parsed, Rejection):
            out.rejects.append((position, parsed))
            continue
        out.txns.append(parsed[0])
        out.positions.append(position)
        vectors.append(parsed[1])
    out.matrix = (np.asarray(vectors, dtype=np.float32) if vectors
                  else np.empty((0, len(names)), dtype=np.float32))
    return out
