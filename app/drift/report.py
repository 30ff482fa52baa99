"""Batch drift report: PSI and KS per feature of a live sample against the training reference.

The reference is what :func:`training.refstats.reference_stats` stored with the model (ONNX
metadata ``fraudstream.reference_stats``): per feature the row count, the inner decile edges
``bin_edges`` and the share of training rows in each bin (``x <= edge`` goes left). Raw
training values are not stored, so:

* **PSI** = sum over those bins of ``(live - ref) * ln(live / ref)`` (shares floored at 1e-4);
  exact for the stored bins. Severity: < 0.1 none, < 0.25 low, < 0.5 medium, else high
  (0.1 and 0.25 are the usual "moderate" and "significant" PSI bands).
* **KS**: ``D = max |F_live(e) - F_ref(e)|`` over the stored edges ``e``, the only points where
  the training CDF is known exactly (so ``D`` is a lower bound of the full two-sample
  statistic); p-value from the asymptotic Kolmogorov distribution with
  ``n_eff = n * m / (n + m)`` (n live rows, m training rows). Severity from the p-value and a
  significance level ``alpha`` as in the seed pipeline S: p >= alpha none; >= alpha/10 low;
  >= alpha/100 medium; otherwise high.

A feature's severity is the worse of the two; the report's, the worst feature's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.special import kolmogorov

SEVERITIES = ("none", "low", "medium", "high")
PSI_BANDS = (0.1, 0.25, 0.5)
PSI_FLOOR = 1e-4


def psi_severity(psi: float) -> str:
    """Severity of a PSI value.

    >>> [psi_severity(x) for x in (0.05, 0.1, 0.3, 0.7)]
    ['none', 'low', 'medium', 'high']
    """
    return SEVERITIES[sum(psi >= band for band in PSI_BANDS)]


def ks_severity(p_value: float, alpha: float = 0.05) -> str:
    """Severity of a KS p-value at significance ``alpha``.

    >>> [ks_severity(p) for p in (0.2, 0.01, 0.001, 1e-9)]
    ['none', 'low', 'medium', 'high']
    """
    if p_value >= alpha:
        return "none"
    if p_value >= alpha / 10:
        return "low"
    if p_value >= alpha / 100:
        return "medium"
    return "high"


def _worse(a: str, b: str) -> str:
    return max(a, b, key=SEVERITIES.index)


def compare_feature(values: np.ndarray, ref: Mapping[str, Any], alpha: float = 0.05
                    ) -> dict[str, Any]:
    """PSI and KS of one feature's live values against its stored reference.

    >>> from training.refstats import column_stats
    >>> rng = np.random.default_rng(0)
    >>> ref = column_stats(rng.normal(0, 1, 20_000))
    >>> same = compare_feature(rng.normal(0, 1, 5_000), ref)
    >>> same["severity"], same["psi"] < 0.01
    ('none', True)
    >>> moved = compare_feature(rng.normal(0.5, 1, 5_000), ref)
    >>> moved["severity"], round(moved["ks_statistic"], 2), moved["psi"] > 0.2
    ('high', 0.19, True)
    """
    x = np.asarray(values, dtype=np.float64)
    finite = x[np.isfinite(x)]
    out: dict[str, Any] = {"n": int(finite.size),
                           "missing_share": float(1 - finite.size / x.size) if x.size else None}
    edges = [e for e in (ref.get("bin_edges") or []) if e is not None]
    shares = ref.get("bin_shares")
    if finite.size == 0 or not shares or len(shares) != len(edges) + 1:
        return {**out, "psi": None, "ks_statistic": None, "ks_p_value": None,
                "severity": "none", "note": "no live values or no reference bins"}
    expected = np.asarray(shares, dtype=np.float64)
    counts = np.bincount(np.searchsorted(np.asarray(edges), finite, side="left"),
                         minlength=len(edges) + 1)
    actual = counts / finite.size
    e, a = np.maximum(expected, PSI_FLOOR), np.maximum(actual, PSI_FLOOR)
    psi = float(np.sum((a - e) * np.log(a / e)))
    if edges:
        d = float(np.max(np.abs(np.cumsum(actual)[:-1] - np.cumsum(expected)[:-1])))
        m = int(ref.get("count") or finite.size)
        n_eff = finite.size * m / (finite.size + m)
        p = float(kolmogorov(d * math.sqrt(n_eff))) if d > 0 else 1.0
    else:  # a constant training column: one bin, nothing to compare on
        d, p = 0.0, 1.0
    severity = _worse(psi_severity(psi), ks_severity(p, alpha))
    return {**out, "live_mean": float(finite.mean()), "ref_mean": ref.get("mean"),
            "psi": round(psi, 6), "psi_severity": psi_severity(psi),
            "ks_statistic": round(d, 6), "ks_p_value": p, "ks_severity": ks_severity(p, alpha),
            "severity": severity}


def drift_report(live: Mapping[str, np.ndarray], reference: Mapping[str, Any],
                 alpha: float = 0.05, source: Mapping[str, Any] | None = None
                 ) -> dict[str, Any]:
    """The report of every reference feature present in ``live`` (column name -> values)."""
    features = {name: compare_feature(live[name], ref, alpha)
                for name, ref in (reference.get("features") or {}).items() if name in live}
    missing = sorted(set(reference.get("features") or {}) - set(live))
    overall = "none"
    for row in features.values():
        overall = _worse(overall, row["severity"])
    return {"alpha": alpha, "severity": overall, "source": dict(source or {}),
            "reference": {k: reference.get(k) for k in ("n_rows", "fraud_rate", "ts_min",
                                                          "ts_max")},
            "features": features, "missing_features": missing}


def to_markdown(report: Mapping[str, Any]) -> str:
    """The report as a Markdown page: one table row per feature, worst first."""
    src = ", ".join(f"{k}: {v}" for k, v in report["source"].items())
    lines = [f"# Drift report: {report['severity']}", "",
             f"Source: {src or '-'}. Training reference: {report['reference']['n_rows']} rows. "
             f"KS alpha = {report['alpha']}; PSI bands {PSI_BANDS}.", "",
             "| feature | severity | PSI | KS D | KS p | live mean | training mean | n |",
             "|---|---|---|---|---|---|---|---|"]

    def fmt(v: Any, spec: str = ".4g") -> str:
        return "-" if v is None else format(v, spec)

    rows = sorted(report["features"].items(),
                  key=lambda kv: (-SEVERITIES.index(kv[1]["severity"]), -(kv[1]["psi"] or 0)))
    for name, r in rows:
        lines.append(f"| {name} | {r['severity']} | {fmt(r['psi'])} | {fmt(r['ks_statistic'])} "
                     f"| {fmt(r['ks_p_value'], '.3g')} | {fmt(r.get('live_mean'))} "
                     f"| {fmt(r.get('ref_mean'))} | {r['n']} |")
    if report["missing_features"]:
        lines += ["", "Not in the live data: " + ", ".join(report["missing_features"])]
    return "\n".join(lines) + "\n"


def to_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True, allow_nan=False)
