"""The ``ml-predictions`` record (docs/architecture.md) and the decision rule.

One record per transaction per variant that scored it, keyed by card id, JSON:

===============  ==========================================================================
``txn_id``       the transaction's id (sinks deduplicate on ``(txn_id, variant)``)
``card_id``      ... ``terminal_id``: the ids, as in the transaction
``event_ts``     the transaction's event time, epoch ms (UTC)
``score``        fraud score in [0, 1] (the model's ``probabilities[:, 1]``); ``null`` only in
                 a fail-open record
``decision``     ``alert`` when ``score >= threshold``, else ``pass``
``threshold``    the decision threshold in force for that model version
``model_name``   registered model name; ``model_version``: its MLflow version number (int)
``variant``      ``champion`` or ``challenger`` (``none`` in a fail-open record)
``shadow``       true: a challenger's shadow score, never a decision to act on
``scored_at``    wall-clock time the score was made, epoch ms
``latency_ms``   ``scored_at`` minus the Kafka timestamp of the original transaction record
                 (end to end through validation, features and scoring)
``fail_open``    only present, and true, in a record published without a model under the
                 configured fail-open rule (``FRAUDSTREAM_SCORE_NO_MODEL=fail_open``)
===============  ==========================================================================

>>> rec = prediction_record({"txn_id": "t1", "card_id": "c1", "terminal_id": "x1", "ts": 5},
...     score=0.8125, threshold=0.5, model_name="fraud-lgbm", model_version=3,
...     variant="champion", shadow=False, scored_at_ms=1_000, source_ts_ms=990)
>>> rec["decision"], rec["latency_ms"], rec["event_ts"], sorted(rec) == sorted(FIELDS)
('alert', 10.0, 5, True)
>>> fail_open_record({"txn_id": "t2", "card_id": "c1", "terminal_id": "x1", "ts": 6},
...     scored_at_ms=1_000, source_ts_ms=1_000)["decision"]
'pass'
"""

from __future__ import annotations

import json
from typing import Any

FIELDS = ("txn_id", "card_id", "terminal_id", "event_ts", "score", "decision", "threshold",
          "model_name", "model_version", "variant", "shadow", "scored_at", "latency_ms")
ALERT, PASS = "alert", "pass"


def decide(score: float, threshold: float) -> str:
    """``alert`` at or above the threshold, else ``pass``.

    >>> decide(0.5, 0.5), decide(0.4999, 0.5)
    ('alert', 'pass')
    """
    return ALERT if score >= threshold else PASS


def prediction_record(txn: dict[str, Any], *, score: float, threshold: float, model_name: str,
                      model_version: int, variant: str, shadow: bool, scored_at_ms: float,
                      source_ts_ms: float) -> dict[str, Any]:
    """One ``ml-predictions`` value (a dict; :func:`encode` makes the bytes)."""
    score = float(score)
    return {
        "txn_id": txn["txn_id"], "card_id": txn["card_id"], "terminal_id": txn["terminal_id"],
        "event_ts": txn["ts"], "score": score, "decision": decide(score, threshold),
        "threshold": threshold, "model_name": model_name, "model_version": model_version,
        "variant": variant, "shadow": shadow, "scored_at": int(scored_at_ms),
        "latency_ms": round(float(scored_at_ms - source_ts_ms), 3),
    }


def fail_open_record(txn: dict[str, Any], *, scored_at_ms: float,
                     source_ts_ms: float) -> dict[str, Any]:
    """The explicit record of the fail-open rule: no model, no score, decision ``pass``."""
    return {
        "txn_id": txn["txn_id"], "card_id": txn["card_id"], "terminal_id": txn["terminal_id"],
        "event_ts": txn["ts"], "score": None, "decision": PASS, "threshold": None,
        "model_name": None, "model_version": None, "variant": "none", "shadow": False,
        "scored_at": int(scored_at_ms), "latency_ms": round(float(scored_at_ms - source_ts_ms), 3),
        "fail_open": True,
    }


def encode(record: dict[str, Any]) -> bytes:
    """JSON bytes of a record (NaN and infinity refused).

    >>> encode({"score": 0.25})
    b'{"score": 0.25}'
    """
    return json.dumps(record, allow_nan=False).encode()
