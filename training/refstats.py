"""Reference statistics of the training data, stored with a model for drift checks.

The result is plain JSON (no NaN: missing values become ``None``) so it fits in
the ONNX metadata and in an MLflow artifact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def _num(value: float) -> float | None:
    value = float(value)
    return None if not np.isfinite(value) else round(value, 6)


def column_stats(values: np.ndarray | pd.Series, n_bins: int = 10) -> dict[str, object]:
    """Summary of one numeric column: moments, quantiles and decile bin edges for PSI.

    ``bin_edges`` are the inner quantile edges (``n_bins - 1`` values, duplicates
    removed) and ``bin_shares`` the share of rows in each resulting bin
    (``x <= edge`` goes left), so a live window can be compared bin by bin.

    >>> s = column_stats(np.arange(10.0), n_bins=2)
    >>> s["mean"], s["bin_edges"], s["bin_shares"]
    (4.5, [4.5], [0.5, 0.5])
    """
    x = np.asarray(values, dtype=np.float64)
    finite = x[np.isfinite(x)]
    out: dict[str, object] = {"count": int(x.size),
                              "missing_share": _num(1 - finite.size / x.size) if x.size else None}
    if finite.size == 0:
        return out
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, n_bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, finite, side="left"), minlength=len(edges) + 1)
    out.update(
        mean=_num(finite.mean()), std=_num(finite.std()), min=_num(finite.min()),
        max=_num(finite.max()),
        quantiles={str(q): _num(v) for q, v in zip(QUANTILES, np.quantile(finite, QUANTILES),
                                                   strict=True)},
        bin_edges=[_num(e) for e in edges],
        bin_shares=[_num(c / finite.size) for c in counts],
    )
    return out


def reference_stats(frame: pd.DataFrame, feature_names: Sequence[str],
                    scores: np.ndarray | None = None, *, label_col: str = "is_fraud",
                    ts_col: str = "ts") -> dict[str, object]:
    """Row count, fraud rate, time range, per-feature stats and (optionally) score stats.

    >>> f = pd.DataFrame({"ts": [0, 5], "is_fraud": [0, 1], "x": [1.0, 3.0]})
    >>> r = reference_stats(f, ["x"])
    >>> r["n_rows"], r["fraud_rate"], r["features"]["x"]["mean"]
    (2, 0.5, 2.0)
    """
    out: dict[str, object] = {"n_rows": len(frame)}
    if label_col in frame:
        out["fraud_rate"] = _num(frame[label_col].mean()) if len(frame) else None
    if ts_col in frame and len(frame):
        out["ts_min"], out["ts_max"] = int(frame[ts_col].min()), int(frame[ts_col].max())
    out["features"] = {name: column_stats(frame[name].to_numpy(dtype=np.float64))
                       for name in feature_names}
    if scores is not None:
        out["score"] = column_stats(np.asarray(scores, dtype=np.float64))
    return out
