"""Time-based evaluation protocol: handbook train / delay / test splits, prequential folds.

Only time-based splits exist here: nothing shuffles transactions across time.
The frame must have ``txn_id, card_id, ts (int epoch ms), is_fraud`` plus feature
columns; days are UTC calendar days of ``ts``.

Handbook protocol (Le Borgne et al., 2022, ch. 3): train on ``train_days`` days,
leave ``delay_days`` days unused (labels of the last training days are not known
yet), test on the following ``test_days`` days. On test day ``T`` a card is
*known compromised*, and its transactions of that day are removed, when it had a
fraud on a day ``d`` with ``train_start <= d < T - delay_days`` (its label was
reported before ``T``). Validation for early stopping is the last ``valid_days``
of the training window, before the delay and never taken from the test period.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from training.metrics import day_index, evaluate

DateLike = str | date | datetime


def to_day(value: DateLike) -> int:
    """Day number (days since 1970-01-01 UTC) of a date.

    >>> to_day("2018-07-25"), to_day(date(1970, 1, 2))
    (17737, 1)
    """
    if isinstance(value, datetime):
        value = value.astimezone(UTC).date() if value.tzinfo else value.date()
    elif isinstance(value, str):
        value = date.fromisoformat(value[:10])
    return (value - date(1970, 1, 1)).days


def from_day(day: int) -> date:
    """Inverse of :func:`to_day`.

    >>> from_day(17737)
    datetime.date(2018, 7, 25)
    """
    return date(1970, 1, 1) + timedelta(days=int(day))


@dataclass(frozen=True)
class Split:
    """One train / validation / test split; day bounds are half-open ``[start, end)``."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    train_start: int
    valid_start: int
    train_end: int
    test_start: int
    test_end: int
    removed_test_rows: int

    def describe(self) -> dict[str, object]:
        """Windows (ISO dates, end exclusive), row and fraud counts, removed rows."""
        out: dict[str, object] = {
            "train": f"{from_day(self.train_start)}..{from_day(self.valid_start)}",
            "valid": f"{from_day(self.valid_start)}..{from_day(self.train_end)}",
            "test": f"{from_day(self.test_start)}..{from_day(self.test_end)}",
            "removed_known_compromised_test_rows": self.removed_test_rows,
        }
        for name in ("train", "valid", "test"):
            part = getattr(self, name)
            out[f"{name}_rows"] = len(part)
            out[f"{name}_frauds"] = int(part["is_fraud"].sum()) if len(part) else 0
        return out


def handbook_split(
    frame: pd.DataFrame,
    train_start: DateLike,
    *,
    train_days: int = 7,
    delay_days: int = 7,
    test_days: int = 7,
    valid_days: int = 0,
    remove_known_compromised: bool = True,
    card_col: str = "card_id",
    label_col: str = "is_fraud",
    ts_col: str = "ts",
) -> Split:
    """Cut ``frame`` into the handbook's train / (validation) / delay / test windows.

    ``Split.valid`` is the last ``valid_days`` of the training window (empty when
    0), and ``Split.train`` the rest of it. Day fields: training rows are in
    ``[train_start, valid_start)``, validation rows in ``[valid_start, train_end)``,
    test rows in ``[test_start, test_end)`` with ``test_start = train_end +
    delay_days``.

    >>> f = pd.DataFrame({"txn_id": range(6), "card_id": [1, 2, 1, 1, 2, 3],
    ...                   "ts": [d * 86_400_000 for d in (0, 0, 2, 3, 3, 3)],
    ...                   "is_fraud": [1, 0, 0, 1, 0, 1]})
    >>> s = handbook_split(f, "1970-01-01", train_days=1, delay_days=1, test_days=2)
    >>> s.train["txn_id"].tolist(), s.test["txn_id"].tolist(), s.removed_test_rows
    ([0, 1], [4, 5], 2)
    """
    if valid_days < 0 or valid_days >= train_days:
        raise ValueError("valid_days must be in [0, train_days)")
    start = to_day(train_start)
    valid_start = start + train_days - valid_days
    test_start = start + train_days + delay_days
    test_end = test_start + test_days
    days = day_index(frame[ts_col])
    train = frame[(days >= start) & (days < valid_start)]
    train_end = start + train_days
    valid = frame[(days >= valid_start) & (days < train_end)]
    in_test = (days >= test_start) & (days < test_end)
    removed = 0
    if remove_known_compromised:
        history = (days >= start) & (days < test_end - delay_days) & (frame[label_col] == 1)
        first_fraud = pd.Series(days[history]).groupby(
            frame.loc[history, card_col].to_numpy()).min()
        card_first = frame[card_col].map(first_fraud).to_numpy(dtype=np.float64)
        known = card_first < (days - delay_days)  # NaN (never defrauded) compares False
        removed = int(np.sum(in_test & known))
        in_test = in_test & ~known
    return Split(train=train, valid=valid, test=frame[in_test], train_start=start,
                 valid_start=valid_start, train_end=train_end, test_start=test_start,
                 test_end=test_end, removed_test_rows=removed)


def prequential_splits(frame: pd.DataFrame, first_train_start: DateLike, n_folds: int = 4, *,
                       step_days: int = 7, **split_kwargs) -> Iterator[Split]:
    """Handbook splits whose train start moves ``step_days`` forward per fold.

    >>> f = pd.DataFrame({"txn_id": range(30), "card_id": 1, "is_fraud": 0,
    ...                   "ts": [d * 86_400_000 for d in range(30)]})
    >>> [from_day(s.test_start).isoformat()
    ...  for s in prequential_splits(f, "1970-01-01", 3, train_days=2, delay_days=1)]
    ['1970-01-04', '1970-01-11', '1970-01-18']
    """
    start = to_day(first_train_start)
    for fold in range(n_folds):
        yield handbook_split(frame, from_day(start + fold * step_days), **split_kwargs)


@dataclass(frozen=True)
class PrequentialResult:
    """Per-fold metrics (one row per fold) and their mean and standard deviation."""

    folds: pd.DataFrame
    metric_names: tuple[str, ...]

    def summary(self) -> dict[str, tuple[float, float]]:
        """``{metric: (mean, std)}``; std uses ddof=1 (NaN with a single fold)."""
        return {m: (float(self.folds[m].mean()), float(self.folds[m].std(ddof=1)))
                for m in self.metric_names}

    def format(self, digits: int = 3) -> str:
        """One ``name mean ± std`` line per metric."""
        return "\n".join(f"{m} {mu:.{digits}f} ± {sd:.{digits}f}"
                         for m, (mu, sd) in self.summary().items())


def prequential_evaluate(
    frame: pd.DataFrame,
    first_train_start: DateLike,
    fit_predict: Callable[[Split], np.ndarray],
    n_folds: int = 4,
    *,
    step_days: int = 7,
    k: int = 100,
    progress: bool = False,
    **split_kwargs,
) -> PrequentialResult:
    """Train and test once per prequential fold; ``fit_predict(split)`` returns test scores.

    Metrics per fold are those of :func:`training.metrics.evaluate` on the test
    week; ``progress`` shows a bar over folds.

    >>> f = pd.DataFrame({"txn_id": range(40), "card_id": np.arange(40) % 5,
    ...                   "ts": [d * 86_400_000 for d in np.arange(40) // 2],
    ...                   "is_fraud": (np.arange(40) % 3 == 0).astype(int)})
    >>> oracle = lambda s: s.test["is_fraud"].to_numpy(dtype=float)
    >>> r = prequential_evaluate(f, "1970-01-01", oracle, 2, train_days=2, delay_days=1,
    ...                          test_days=2, step_days=2, k=1,
    ...                          remove_known_compromised=False)
    >>> r.summary()["auc_roc"]
    (1.0, 0.0)
    """
    rows = []
    folds = prequential_splits(frame, first_train_start, n_folds, step_days=step_days,
                               **split_kwargs)
    for fold, split in enumerate(tqdm(folds, total=n_folds, desc="prequential", unit="fold",
                                      disable=not progress)):
        scored = split.test.assign(score=np.asarray(fit_predict(split), dtype=np.float64))
        metrics = evaluate(scored, k=k)
        rows.append({"fold": fold, "train_start": from_day(split.train_start),
                     "test_start": from_day(split.test_start), "test_rows": len(scored),
                     **metrics})
    names = tuple(m for m in rows[0] if m not in
                  ("fold", "train_start", "test_start", "test_rows")) if rows else ()
    return PrequentialResult(folds=pd.DataFrame(rows), metric_names=names)


def frame_fingerprint(frame: pd.DataFrame, columns: tuple[str, ...] = ("txn_id", "is_fraud"),
                      ) -> str:
    """SHA-256 of the given columns in txn_id order: names "the same test data".

    >>> a = pd.DataFrame({"txn_id": [2, 1], "is_fraud": [0, 1]})
    >>> frame_fingerprint(a) == frame_fingerprint(a.iloc[::-1])
    True
    >>> frame_fingerprint(a) == frame_fingerprint(a.assign(is_fraud=[1, 1]))
    False
    """
    ordered = frame.sort_values("txn_id", kind="mergesort")
    digest = hashlib.sha256()
    for col in columns:
        digest.update(col.encode())
        digest.update(np.ascontiguousarray(ordered[col].to_numpy(dtype=np.int64)).tobytes())
    return digest.hexdigest()
