"""Metric functions on frames small enough to compute by hand."""

import math

import numpy as np
import pandas as pd
import pytest

from training.metrics import (
    DAY_MS,
    auc_roc,
    average_precision,
    card_precision_at_k,
    card_precision_at_k_per_day,
    confusion,
    evaluate,
    precision_recall_f1,
    threshold_for_daily_budget,
    threshold_for_precision,
)


def test_auc_counts_ordered_pairs():
    # positives 0.35, 0.8; negatives 0.1, 0.4: pairs won 3 of 4
    assert auc_roc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # a tie between a positive and a negative counts one half: (1 + 0.5) / 2
    assert auc_roc([0, 1, 0, 1], [0.2, 0.2, 0.1, 0.9]) == pytest.approx(0.875)
    assert math.isnan(auc_roc([0, 0], [0.1, 0.2]))


def test_average_precision_is_mean_precision_at_each_positive():
    # ranked: 0.9 (1) P=1; 0.8 (0); 0.7 (1) P=2/3; 0.2 (0); 0.1 (1) P=3/5
    y = [1, 0, 1, 0, 1]
    s = [0.9, 0.8, 0.7, 0.2, 0.1]
    assert average_precision(y, s) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert math.isnan(average_precision([0, 0], [0.3, 0.1]))


def test_confusion_and_rates_at_threshold():
    y = [0, 0, 0, 1, 1, 1, 1]
    s = [0.1, 0.6, 0.3, 0.6, 0.9, 0.2, 0.7]
    assert confusion(y, s, 0.6) == {"tn": 2, "fp": 1, "fn": 1, "tp": 3}
    m = precision_recall_f1(y, s, 0.6)
    assert m["precision"] == pytest.approx(0.75)
    assert m["recall"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx(0.75)
    assert m["specificity"] == pytest.approx(2 / 3)
    assert m["fpr"] == pytest.approx(1 / 3)
    none = precision_recall_f1(y, s, 2.0)
    assert none["precision"] == 0.0 and none["recall"] == 0.0 and none["f1"] == 0.0


def _cp_frame() -> pd.DataFrame:
    rows = [
        # day 0: A fraud 0.9; B genuine with two txns (max 0.8); C fraud but low score
        (0, "A", 0.90, 1), (0, "B", 0.80, 0), (0, "B", 0.30, 0), (0, "C", 0.20, 1),
        # day 1: A (detected on day 0) scores highest again; B genuine 0.6;
        # C compromised (one fraud txn with a low score, max score 0.5 from a genuine txn)
        (1, "A", 0.95, 1), (1, "B", 0.60, 0), (1, "C", 0.50, 0), (1, "C", 0.05, 1),
        (1, "D", 0.10, 0),
    ]
    f = pd.DataFrame(rows, columns=["day", "card_id", "score", "is_fraud"])
    f["ts"] = 1_530_403_200_000 + f["day"] * DAY_MS + np.arange(len(f)) * 1000
    return f.drop(columns="day")


def test_card_precision_drops_cards_detected_on_an_earlier_day():
    f = _cp_frame()
    per_day = card_precision_at_k_per_day(f, k=1)
    # day 0: top card A is compromised -> 1/1, A detected
    # day 1: A removed; B (0.6, genuine) ranks first -> 0/1
    assert per_day["card_precision"].tolist() == [1.0, 0.0]
    assert per_day["n_cards"].tolist() == [3, 3]
    assert per_day["n_compromised"].tolist() == [2, 1]
    assert card_precision_at_k(f, k=1) == pytest.approx(0.5)
    # without removal A would be counted again on day 1
    assert card_precision_at_k(f, k=1, remove_detected=False) == pytest.approx(1.0)


def test_card_precision_uses_card_max_score_and_divides_by_k():
    f = _cp_frame()
    # k=2: day 0 top A, B -> 1/2 (A detected); day 1 top B (0.6), C (0.5, compromised) -> 1/2
    assert card_precision_at_k_per_day(f, k=2)["n_detected"].tolist() == [1, 1]
    assert card_precision_at_k(f, k=2) == pytest.approx(0.5)
    # k larger than the number of cards: still divided by k
    # day 0: A and C detected of 3 cards -> 2/10; day 1: A and C removed, nothing left -> 0
    assert card_precision_at_k_per_day(f, k=10)["card_precision"].tolist() == [0.2, 0.0]


def test_card_precision_breaks_ties_by_card_id():
    f = pd.DataFrame({"card_id": [2, 1], "ts": [0, 1], "score": [0.5, 0.5],
                      "is_fraud": [1, 0]})
    assert card_precision_at_k(f, k=1) == 0.0  # card 1 ranks first on the tie
    assert card_precision_at_k(f.assign(is_fraud=[0, 1]), k=1) == 1.0


def test_evaluate_keys():
    f = _cp_frame()
    out = evaluate(f, k=1)
    assert set(out) == {"auc_roc", "average_precision", "card_precision_at_1"}
    assert out["card_precision_at_1"] == pytest.approx(0.5)


def test_daily_budget_threshold_gives_k_alerts_per_day():
    f = _cp_frame()
    t = threshold_for_daily_budget(f, 2)  # 4 transaction alerts over 2 days
    assert t == pytest.approx(0.6)
    assert int((f["score"] >= t).sum()) == 4
    # per card and day: A0 .9, B0 .8, C0 .2, A1 .95, B1 .6, C1 .5, D1 .1 -> 3rd highest
    assert threshold_for_daily_budget(f, 1.5, unit="card") == pytest.approx(0.8)
    with pytest.raises(ValueError):
        threshold_for_daily_budget(f, 0)


def test_threshold_for_target_precision():
    y = [1, 1, 0, 1, 0, 0]
    s = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    # precision by threshold: 0.9 -> 1, 0.8 -> 1, 0.7 -> 2/3, 0.6 -> 3/4, 0.5 -> 3/5
    assert threshold_for_precision(y, s, 0.75) == pytest.approx(0.6)
    assert threshold_for_precision(y, s, 0.9) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="no threshold"):
        threshold_for_precision([0, 1], [0.9, 0.1], 0.9)
