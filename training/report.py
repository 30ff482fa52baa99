"""Evaluation report: a Markdown file and PNG plots in one folder (logged with the MLflow run).

Plots use matplotlib's object API on an explicit Agg canvas, so no display and
no global pyplot state are involved.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from training.metrics import confusion, precision_recall_f1


def _save(fig: Figure, path: Path) -> str:
    FigureCanvasAgg(fig)  # render with Agg, whatever pyplot's backend is
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path.name


def plot_roc(y: np.ndarray, s: np.ndarray, path: Path, auc: float | None = None) -> str:
    fpr, tpr, _ = roc_curve(y, s)
    fig = Figure(figsize=(5, 4))
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, label=f"model (AUC {auc:.3f})" if auc is not None else "model")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_pr(y: np.ndarray, s: np.ndarray, path: Path, ap: float | None = None) -> str:
    precision, recall, _ = precision_recall_curve(y, s)
    fig = Figure(figsize=(5, 4))
    ax = fig.add_subplot()
    label = f"model (AP {ap:.3f})" if ap is not None else "model"
    ax.step(recall, precision, where="post", label=label)
    ax.axhline(y.mean(), linestyle="--", color="grey", label=f"fraud rate {y.mean():.4f}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall", ylim=(0, 1.02))
    ax.legend(loc="upper right")
    return _save(fig, path)


def plot_score_hist(y: np.ndarray, s: np.ndarray, path: Path) -> str:
    fig = Figure(figsize=(5, 4))
    ax = fig.add_subplot()
    bins = np.linspace(0, 1, 51).tolist()
    ax.hist(s[y == 0], bins=bins, alpha=0.6, label="genuine", density=True)
    ax.hist(s[y == 1], bins=bins, alpha=0.6, label="fraud", density=True)
    ax.set(xlabel="score", ylabel="density (log)", yscale="log", title="Scores by class")
    ax.legend()
    return _save(fig, path)


def plot_importance(importance: pd.Series, path: Path, top: int = 25) -> str:
    imp = importance.sort_values(ascending=True).tail(top)
    fig = Figure(figsize=(6, max(2.5, 0.3 * len(imp) + 1)))
    ax = fig.add_subplot()
    ax.barh(imp.index.astype(str), imp.to_numpy())
    ax.set(xlabel=str(importance.name or "importance"), title="Feature importance")
    return _save(fig, path)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def _table(rows: Mapping[str, object], head: tuple[str, str] = ("name", "value")) -> list[str]:
    lines = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in rows.items()]
    return lines + [""]


def write_report(
    out_dir: str | Path,
    scored: pd.DataFrame,
    *,
    metrics: Mapping[str, float],
    importance: pd.Series | None = None,
    threshold: float | None = None,
    cp_per_day: pd.DataFrame | None = None,
    sections: Mapping[str, Mapping[str, object]] | None = None,
    title: str = "Fraud model evaluation",
    score_col: str = "score",
    label_col: str = "is_fraud",
) -> Path:
    """Write ``report.md`` and its PNG plots into ``out_dir``; return the Markdown path.

    ``scored`` holds the test rows with a score column; ``sections`` adds named
    key/value tables (data windows, hyperparameters, parity...).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    y = scored[label_col].to_numpy().astype(int)
    s = scored[score_col].to_numpy(dtype=np.float64)
    md = [f"# {title}", "", f"{len(scored)} test transactions, {int(y.sum())} frauds.", "",
          "## Metrics", ""] + _table(metrics)
    if threshold is not None:
        md += [f"## At threshold {threshold:.6g}", ""]
        md += _table({**precision_recall_f1(y, s, threshold), **confusion(y, s, threshold)})
    if cp_per_day is not None and len(cp_per_day):
        md += ["## Card precision per day", "", "| " + " | ".join(cp_per_day.columns) + " |",
               "|" + "---|" * len(cp_per_day.columns)]
        md += ["| " + " | ".join(_fmt(v) for v in row) + " |"
               for row in cp_per_day.itertuples(index=False)] + [""]
    for name, rows in (sections or {}).items():
        md += [f"## {name}", ""] + _table(rows)
    if y.min(initial=0) != y.max(initial=0):
        roc = plot_roc(y, s, out / "roc.png", metrics.get("auc_roc"))
        pr = plot_pr(y, s, out / "precision_recall.png", metrics.get("average_precision"))
        hist = plot_score_hist(y, s, out / "score_hist.png")
        md += ["## Plots", "", f"![ROC]({roc})", f"![PR]({pr})", f"![scores]({hist})", ""]
    if importance is not None and len(importance):
        md += ["## Feature importance", "",
               f"![importance]({plot_importance(importance, out / 'feature_importance.png')})", ""]
        md += _table(importance.sort_values(ascending=False).to_dict(),
                     ("feature", str(importance.name or "importance")))
    path = out / "report.md"
    path.write_text("\n".join(md), encoding="utf-8")
    return path
