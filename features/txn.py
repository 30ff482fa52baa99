"""Stateless features of a transaction alone: amount, weekend, night.

Calendar features are in UTC and use integer arithmetic on epoch milliseconds only, so the
same functions work on a Python ``int`` (streaming) and element-wise on a NumPy ``int64``
array (batch) and give identical results.

Examples
--------
>>> t = 1_522_540_800_000 + 5 * 3_600_000     # Sunday 2018-04-01 05:00 UTC
>>> utc_weekday(t), utc_hour(t)
(6, 5)
>>> transaction_features({"txn_id": "a", "amount": 12.5, "ts": t})
{'amount': 12.5, 'tx_during_weekend': 1.0, 'tx_during_night': 1.0}
>>> import numpy as np
>>> utc_hour(np.array([t, t + 2 * 3_600_000])).tolist()
[5, 7]
"""

from __future__ import annotations

from typing import Any

from features.spec import DEFAULT_SPEC, FeatureSpec

HOUR_MS = 3_600_000
DAY_MS = 86_400_000


def utc_weekday(ts_ms: Any) -> Any:
    """Day of week in UTC, Monday = 0 ... Sunday = 6 (1970-01-01 was a Thursday).

    Examples
    --------
    >>> utc_weekday(0), utc_weekday(-1)
    (3, 2)
    """
    return (ts_ms // DAY_MS + 3) % 7


def utc_hour(ts_ms: Any) -> Any:
    """Hour of day in UTC, 0 ... 23.

    Examples
    --------
    >>> utc_hour(0), utc_hour(DAY_MS - 1)
    (0, 23)
    """
    return (ts_ms // HOUR_MS) % 24


def is_weekend(ts_ms: Any) -> Any:
    """Saturday or Sunday in UTC (weekday >= 5), as 0/1 (bool array for arrays)."""
    return utc_weekday(ts_ms) >= 5


def is_night(ts_ms: Any) -> Any:
    """Hour <= 6 in UTC (00:00 to 06:59, as in the handbook), as 0/1 (bool array for arrays)."""
    return utc_hour(ts_ms) <= 6


def transaction_features(txn: dict[str, Any], spec: FeatureSpec = DEFAULT_SPEC) -> dict[str, float]:
    """The ``txn`` features of ``spec`` for one transaction dict.

    ``value`` of ``amount`` is the amount as given (the contract says cents precision).
    """
    ts = int(txn["ts"])
    return {f.name: txn_value(f.aggregation, ts, float(txn["amount"]))
            for f in spec.for_entity("txn")}


def txn_value(aggregation: str, ts: Any, amount: Any) -> Any:
    """One ``txn`` feature for scalars or aligned arrays of ``ts`` (int ms) and ``amount``.

    Examples
    --------
    >>> txn_value("value", 0, 12), txn_value("is_night", 7 * HOUR_MS, 1.0)
    (12.0, 0.0)
    """
    if aggregation == "value":
        return 1.0 * amount
    if aggregation == "is_weekend":
        return 1.0 * is_weekend(ts)
    if aggregation == "is_night":
        return 1.0 * is_night(ts)
    raise ValueError(f"not a txn aggregation: {aggregation!r}")
