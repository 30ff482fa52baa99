"""Handbook time-based splits, known-compromised removal, prequential folds."""

import numpy as np
import pandas as pd
import pytest

from training.metrics import DAY_MS
from training.protocol import (
    frame_fingerprint,
    from_day,
    handbook_split,
    prequential_evaluate,
    prequential_splits,
    to_day,
)

START = "2018-07-25"
D0 = to_day(START)


def _daily_frame(n_days: int = 30, first: int = D0 - 3) -> pd.DataFrame:
    """Card 0 (never fraud) makes one transaction a day, at noon."""
    days = np.arange(first, first + n_days)
    return pd.DataFrame({"txn_id": np.arange(n_days), "card_id": 0,
                         "ts": days * DAY_MS + 43_200_000, "is_fraud": 0, "x": 1.0})


def _days(part: pd.DataFrame) -> list[int]:
    return sorted(set((part["ts"] // DAY_MS - D0).tolist()))


def test_windows_train_delay_test():
    s = handbook_split(_daily_frame(), START)
    assert _days(s.train) == list(range(0, 7))  # 2018-07-25 .. 07-31
    assert s.valid.empty
    assert _days(s.test) == list(range(14, 21))  # after the 7-day delay
    assert from_day(s.test_start).isoformat() == "2018-08-08"
    assert s.describe()["test"] == "2018-08-08..2018-08-15"


def test_validation_is_carved_from_the_training_window_never_from_test():
    s = handbook_split(_daily_frame(), START, valid_days=2)
    assert _days(s.train) == list(range(0, 5))
    assert _days(s.valid) == [5, 6]
    assert not set(s.valid["txn_id"]) & set(s.test["txn_id"])
    with pytest.raises(ValueError):
        handbook_split(_daily_frame(), START, valid_days=7)


def test_known_compromised_cards_are_removed_by_the_delay_rule():
    base = _daily_frame(first=D0 - 3, n_days=30)
    extra = []
    # card 1: fraud on the last training day (day 6): known before every test day
    # card 2: fraud on delay day 8: known from test day 16 (8 < 16 - 7), not on 14 and 15
    # card 3: fraud on test day 14 itself: not known during the test week
    # card 4: fraud before the training window (day -2): ignored, as in the handbook
    for card, fraud_day in ((1, 6), (2, 8), (3, 14), (4, -2)):
        extra.append((card, fraud_day, 1))
        extra += [(card, d, 0) for d in range(14, 21)]
    rows = pd.DataFrame(extra, columns=["card_id", "day", "is_fraud"])
    rows["ts"] = (D0 + rows["day"]) * DAY_MS + 60_000
    rows = rows.drop(columns="day").assign(x=1.0)
    frame = pd.concat([base, rows], ignore_index=True)
    frame["txn_id"] = np.arange(len(frame))

    s = handbook_split(frame, START)
    test = s.test.assign(day=s.test["ts"] // DAY_MS - D0)
    kept = test.groupby("card_id")["day"].apply(sorted).to_dict()
    assert 1 not in kept
    assert kept[2] == [14, 15]
    assert kept[3] == [14] + list(range(14, 21))  # its own fraud on day 14 stays too
    assert kept[4] == list(range(14, 21))
    assert s.removed_test_rows == 7 + 5
    assert len(handbook_split(frame, START, remove_known_compromised=False).test) == len(
        test) + 12


def test_prequential_folds_move_forward():
    starts = [from_day(s.train_start).isoformat()
              for s in prequential_splits(_daily_frame(60), START, 3)]
    assert starts == ["2018-07-25", "2018-08-01", "2018-08-08"]


def test_prequential_evaluate_reports_mean_and_std():
    rng = np.random.default_rng(0)
    n = 40 * 20
    frame = pd.DataFrame({"txn_id": np.arange(n), "card_id": rng.integers(0, 50, n),
                          "ts": (D0 + np.arange(n) // 20) * DAY_MS,
                          "is_fraud": (rng.random(n) < 0.2).astype(int)})
    calls = []

    def fit_predict(split):
        calls.append(split)
        assert split.train["ts"].max() < split.test["ts"].min()
        return split.test["is_fraud"].to_numpy() * 0.5 + 0.25  # a perfect ranker

    result = prequential_evaluate(frame, START, fit_predict, 3, k=5)
    assert len(calls) == 3 and len(result.folds) == 3
    mean, std = result.summary()["auc_roc"]
    assert (mean, std) == (1.0, 0.0)
    assert "average_precision 1.000 ± 0.000" in result.format()


def test_frame_fingerprint_names_the_same_rows_and_labels():
    f = _daily_frame()
    assert frame_fingerprint(f) == frame_fingerprint(f.sample(frac=1, random_state=1))
    assert frame_fingerprint(f) != frame_fingerprint(f.iloc[1:])
