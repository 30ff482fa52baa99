"""Detection-quality metrics and threshold rules for card-fraud scoring.

Transaction-level metrics (AUC ROC, average precision, precision/recall/F1 at a
threshold, confusion matrix) take arrays; the card-level metric *card
precision@k* takes a frame of scored transactions and follows the Practical
Handbook (Le Borgne et al., 2022): test days in order; each day the cards already
detected on an earlier day are dropped, each remaining card gets its maximum
score of the day, cards are ranked, and the share of truly compromised cards
among the top ``k`` is that day's value (the denominator is always ``k``); the
result is the mean over days.

Days are UTC calendar days of ``ts`` (int epoch milliseconds) unless a day
column is given.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

DAY_MS = 86_400_000


def _arrays(y_true: Sequence[int] | np.ndarray, y_score: Sequence[float] | np.ndarray):
    y = np.asarray(y_true).astype(np.int8)
    s = np.asarray(y_score, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(
            f"y_true and y_score must be 1-D of equal length, got {y.shape} and {s.shape}")
    return y, s


def auc_roc(y_true, y_score) -> float:
    """Area under the ROC curve; NaN when only one class is present.

    >>> auc_roc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    y, s = _arrays(y_true, y_score)
    if y.min(initial=0) == y.max(initial=0):
        return float("nan")
    return float(roc_auc_score(y, s))


def average_precision(y_true, y_score) -> float:
    """Average precision (area under the precision-recall step curve).

    >>> round(average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 4)
    0.8333
    """
    y, s = _arrays(y_true, y_score)
    if y.sum() == 0:
        return float("nan")
    return float(average_precision_score(y, s))


def confusion(y_true, y_score, threshold: float) -> dict[str, int]:
    """Confusion counts when alerting on ``score >= threshold``.

    >>> confusion([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.4)
    {'tn': 1, 'fp': 1, 'fn': 1, 'tp': 1}
    """
    y, s = _arrays(y_true, y_score)
    pred = s >= threshold
    pos = y == 1
    return {
        "tn": int(np.sum(~pred & ~pos)),
        "fp": int(np.sum(pred & ~pos)),
        "fn": int(np.sum(~pred & pos)),
        "tp": int(np.sum(pred & pos)),
    }


def precision_recall_f1(y_true, y_score, threshold: float) -> dict[str, float]:
    """Precision, recall, F1, specificity and false-positive rate at a threshold.

    Undefined ratios (no alert, no positive) are 0.0.

    >>> m = precision_recall_f1([0, 0, 1, 1, 1], [0.1, 0.7, 0.35, 0.8, 0.9], 0.5)
    >>> {k: round(v, 4) for k, v in m.items()}
    {'precision': 0.6667, 'recall': 0.6667, 'f1': 0.6667, 'specificity': 0.5, 'fpr': 0.5}
    """
    c = confusion(y_true, y_score, threshold)
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    spec = tn / (tn + fp) if tn + fp else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "specificity": spec,
            "fpr": 1.0 - spec if tn + fp else 0.0}


def day_index(ts_ms: pd.Series | np.ndarray) -> np.ndarray:
    """UTC calendar day number (days since epoch) of epoch-millisecond times.

    >>> day_index(np.array([0, 86_399_999, 86_400_000])).tolist()
    [0, 0, 1]
    """
    return np.asarray(ts_ms, dtype=np.int64) // DAY_MS


def card_precision_at_k_per_day(
    frame: pd.DataFrame,
    k: int = 100,
    *,
    score_col: str = "score",
    card_col: str = "card_id",
    label_col: str = "is_fraud",
    ts_col: str = "ts",
    day_col: str | None = None,
    remove_detected: bool = True,
) -> pd.DataFrame:
    """Card precision@k for each day, handbook semantics.

    Ties on score are broken by card id (ascending) so the result is
    deterministic.

    Returns
    -------
    pandas.DataFrame
        One row per day (ascending): ``day``, ``n_cards`` (cards still ranked),
        ``n_compromised`` (among them), ``n_detected`` (true frauds in top k),
        ``card_precision``.
    """
    if k <= 0:
        raise ValueError("k must be positive")
    days = frame[day_col].to_numpy() if day_col else day_index(frame[ts_col])
    work = pd.DataFrame(
        {
            "day": days,
            "card": frame[card_col].to_numpy(),
            "score": frame[score_col].to_numpy(dtype=np.float64),
            "fraud": frame[label_col].to_numpy().astype(np.int8),
        }
    )
    per_card = work.groupby(["day", "card"], sort=True).agg(score=("score", "max"),
                                                              fraud=("fraud", "max"))
    detected: set = set()
    rows = []
    for day, cards in per_card.groupby(level="day", sort=True):
        cards = cards.droplevel("day")
        if detected:
            cards = cards[~cards.index.isin(list(detected))]
        ranked = cards.reset_index().sort_values(["score", "card"], ascending=[False, True],
                                                 kind="mergesort")
        top = ranked.head(k)
        hits = top.loc[top["fraud"] == 1, "card"]
        rows.append((day, len(cards), int(cards["fraud"].sum()), len(hits), len(hits) / k))
        if remove_detected:
            detected.update(hits.tolist())
    return pd.DataFrame(rows, columns=["day", "n_cards", "n_compromised", "n_detected",
                                       "card_precision"])


def card_precision_at_k(frame: pd.DataFrame, k: int = 100, **kwargs) -> float:
    """Mean over test days of :func:`card_precision_at_k_per_day`.

    Day 0: cards a (0.9, fraud), b (0.8), c (0.1, fraud); day 1: a (0.95, fraud,
    already detected so dropped), c (0.7, fraud), b (0.2).

    >>> f = pd.DataFrame({"card_id": ["a", "b", "c", "a", "c", "b"],
    ...                   "day": [0, 0, 0, 1, 1, 1],
    ...                   "score": [0.9, 0.8, 0.1, 0.95, 0.7, 0.2],
    ...                   "is_fraud": [1, 0, 1, 1, 1, 0]})
    >>> card_precision_at_k(f, k=1, day_col="day")  # day 0: 1/1, day 1: 1/1
    1.0
    >>> card_precision_at_k(f, k=2, day_col="day")  # day 0: 1/2, day 1: 1/2
    0.5
    """
    per_day = card_precision_at_k_per_day(frame, k, **kwargs)
    return float(per_day["card_precision"].mean()) if len(per_day) else float("nan")


def evaluate(frame: pd.DataFrame, *, score_col: str = "score", label_col: str = "is_fraud",
             k: int = 100, **cp_kwargs) -> dict[str, float]:
    """The headline metrics of a scored test frame.

    Keys: ``auc_roc``, ``average_precision``, ``card_precision_at_{k}``.
    """
    y = frame[label_col].to_numpy()
    s = frame[score_col].to_numpy()
    return {
        "auc_roc": auc_roc(y, s),
        "average_precision": average_precision(y, s),
        f"card_precision_at_{k}": card_precision_at_k(
            frame, k, score_col=score_col, label_col=label_col, **cp_kwargs),
    }


def threshold_for_daily_budget(
    frame: pd.DataFrame,
    alerts_per_day: float,
    *,
    score_col: str = "score",
    ts_col: str = "ts",
    card_col: str = "card_id",
    unit: str = "transaction",
) -> float:
    """Threshold that would have raised ``alerts_per_day`` alerts a day on ``frame``.

    Usually ``frame`` is the scored validation period. With ``unit="transaction"``
    every transaction scoring ``>= threshold`` is an alert; with ``unit="card"``
    a card alerts at most once a day (its daily max score is what counts). The
    threshold is the score of the ``round(alerts_per_day * n_days)``-th highest
    unit, so ties may add alerts.

    >>> f = pd.DataFrame({"ts": [0, 1, 2, 86_400_000, 86_400_001, 86_400_002],
    ...                   "score": [0.9, 0.5, 0.1, 0.8, 0.7, 0.2],
    ...                   "card_id": [1, 1, 2, 1, 2, 3]})
    >>> threshold_for_daily_budget(f, 1)  # 2 alerts over 2 days
    0.8
    >>> threshold_for_daily_budget(f, 1.5, unit="card")  # 3 card-days of 5
    0.7
    """
    if alerts_per_day <= 0:
        raise ValueError("alerts_per_day must be positive")
    days = day_index(frame[ts_col])
    if unit == "card":
        units = (pd.DataFrame({"d": days, "c": frame[card_col].to_numpy(),
                               "s": frame[score_col].to_numpy()})
                 .groupby(["d", "c"])["s"].max().to_numpy())
    elif unit == "transaction":
        units = frame[score_col].to_numpy()
    else:
        raise ValueError(f"unit must be 'transaction' or 'card', got {unit!r}")
    n_days = len(np.unique(days))
    n_alerts = max(1, round(alerts_per_day * n_days))
    ordered = np.sort(np.asarray(units, dtype=np.float64))[::-1]
    return float(ordered[min(n_alerts, len(ordered)) - 1])


def threshold_for_precision(y_true, y_score, target_precision: float) -> float:
    """Lowest threshold whose precision on this data reaches ``target_precision``.

    The lowest such threshold gives the highest recall at that precision.

    Raises
    ------
    ValueError
        When no threshold reaches the target.

    >>> threshold_for_precision([0, 1, 0, 1, 1], [0.1, 0.35, 0.4, 0.8, 0.9], 0.75)
    0.35
    >>> threshold_for_precision([0, 1, 0, 1, 1], [0.1, 0.35, 0.4, 0.8, 0.9], 1.0)
    0.8
    """
    y, s = _arrays(y_true, y_score)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    # Candidate thresholds are the distinct scores; count alerts at each.
    last_of_value = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    tp = np.cumsum(y_sorted)[last_of_value]
    n = (np.arange(len(s_sorted)) + 1)[last_of_value]
    ok = np.flatnonzero(tp / n >= target_precision)
    if ok.size == 0:
        raise ValueError(f"no threshold reaches precision {target_precision}")
    return float(s_sorted[last_of_value][ok[-1]])
