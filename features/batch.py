"""Batch recomputation of the feature spec over a DataFrame, with the streaming code.

:func:`compute_features` runs the very state classes the Faust agents run
(:class:`~features.terminal.TerminalState`, then :class:`~features.card.CardState`), one
instance per key, over the transactions sorted by ``(ts, original row order)`` — the order in
which an in-order stream delivers them to each key. It is the reference for training sets,
backfills and the streaming parity tests.

Label interleave
----------------
Labels are fed to the terminal state of their ``terminal_id`` ordered by
``(reported_at, original row order)``; a label with ``reported_at <= t`` is applied before the
transaction at ``t``. Genuine labels change nothing (see :mod:`features.terminal`) and are
skipped. A stream matches this when each label reaches its terminal before the first
transaction with ``ts >= reported_at`` (labels that arrive earlier are held by the state).

Examples
--------
>>> import pandas as pd
>>> txns = pd.DataFrame({"txn_id": ["a", "b"], "card_id": ["c", "c"],
...     "terminal_id": ["T", "T"], "amount": [10.0, 30.0], "ts": [0, 60_000]})
>>> out = compute_features(txns)
>>> out[["txn_id", "card_tx_count_1d", "card_amount_mean_1d", "card_seconds_since_prev"]]
  txn_id  card_tx_count_1d  card_amount_mean_1d  card_seconds_since_prev
0      a               1.0                 10.0                     -1.0
1      b               2.0                 20.0                     60.0
>>> feature_vector(out.iloc[1].to_dict(), DEFAULT_SPEC)[:4]
[30.0, 0.0, 1.0, 2.0]
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd

from features.card import CardState, clean_category, clean_coords
from features.eventlog import DEFAULT_MAX_EVENTS, to_cents
from features.spec import DEFAULT_SPEC, FeatureSpec
from features.terminal import TerminalState
from features.txn import txn_value

REQUIRED = ("txn_id", "card_id", "terminal_id", "amount", "ts")
LABEL_COLUMNS = ("txn_id", "terminal_id", "is_fraud", "ts", "reported_at")


def feature_vector(features: Mapping[str, float], spec: FeatureSpec = DEFAULT_SPEC) -> list[float]:
    """The values of ``features`` in ``spec`` order (a KeyError names a missing feature).

    Examples
    --------
    >>> spec = FeatureSpec(DEFAULT_SPEC.features[:2])
    >>> feature_vector({"tx_during_weekend": 1, "amount": 5.5, "extra": 3}, spec)
    [5.5, 1.0]
    """
    return [float(features[name]) for name in spec.names]


def epoch_ms(values: Any) -> np.ndarray:
    """Event times as int64 epoch milliseconds (ints pass through; datetimes: naive = UTC).

    Examples
    --------
    >>> epoch_ms(pd.Series(pd.to_datetime(["1970-01-01 00:00:01"]))).tolist()
    [1000]
    """
    series = pd.Series(values)
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return series.to_numpy("datetime64[ms]").astype(np.int64)
    return series.to_numpy(np.int64)


def _groups(keys: pd.Series, ts: np.ndarray) -> Iterator[np.ndarray]:
    """Row positions of each key, sorted by (ts, original order)."""
    codes = pd.factorize(keys)[0]
    order = np.lexsort((np.arange(len(ts)), ts, codes))
    if not len(order):
        return
    cuts = np.flatnonzero(np.diff(codes[order])) + 1
    yield from np.split(order, cuts)


def _column(frame: pd.DataFrame, name: str) -> list[Any]:
    if name not in frame:
        return [None] * len(frame)
    return frame[name].astype(object).tolist()


def compute_features(
    transactions: pd.DataFrame,
    labels: pd.DataFrame | None = None,
    spec: FeatureSpec = DEFAULT_SPEC,
    *,
    allowed_lateness_ms: int = 0,
    max_events: int = DEFAULT_MAX_EVENTS,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per transaction: ``txn_id`` and the features of ``spec`` in spec order.

    Parameters
    ----------
    transactions : DataFrame
        Columns ``txn_id``, ``card_id``, ``terminal_id``, ``amount``, ``ts`` (int epoch ms or
        datetime) and optionally ``lat``, ``lon`` and the categorical fields the spec uses.
        ``txn_id`` must be unique.
    labels : DataFrame, optional
        Columns ``txn_id``, ``terminal_id``, ``is_fraud``, ``ts``, ``reported_at``.
    spec : FeatureSpec
    allowed_lateness_ms, max_events : int
        As for the streaming states (they affect retention and the size cap only).
    progress : bool
        Show a progress bar (tqdm).

    Returns
    -------
    DataFrame
        Same index and row order as ``transactions``.
    """
    missing = [c for c in REQUIRED if c not in transactions]
    if missing:
        raise ValueError(f"transactions lack columns {missing}")
    if not transactions["txn_id"].is_unique:
        raise ValueError("txn_id must be unique")
    n = len(transactions)
    ts = epoch_ms(transactions["ts"])
    ids = transactions["txn_id"].astype(str).tolist()
    amounts = transactions["amount"].astype(float).tolist()
    cents = [to_cents(a) for a in amounts]
    out = np.empty((n, len(spec)), dtype=np.float64)
    col = {name: i for i, name in enumerate(spec.names)}
    for f in spec.for_entity("txn"):
        out[:, col[f.name]] = txn_value(f.aggregation, ts, np.asarray(amounts, dtype=float))

    bar = None
    if progress:
        from tqdm import tqdm

        stages = bool(spec.for_entity("terminal")) + bool(spec.for_entity("card"))
        bar = tqdm(total=n * stages, unit="txn", desc="features")
    config = {"allowed_lateness_ms": allowed_lateness_ms, "max_events": max_events}
    ts_list = ts.tolist()
    base_rows = list(zip(ts_list, ids, cents, strict=True))

    if spec.for_entity("terminal"):
        target = _ColumnWriter(out, [col[name] for name in spec.names_for("terminal")])
        by_terminal = _labels_by_terminal(labels)
        terminals = transactions["terminal_id"].astype(str)
        term_list = terminals.tolist()
        for rows in _groups(terminals, ts):
            tstate = TerminalState(spec, **config)
            pending = by_terminal.get(term_list[rows[0]], [])
            k = 0
            values = []
            for i in rows.tolist():
                t = ts_list[i]
                while k < len(pending) and pending[k][2] <= t:
                    tstate._add_label(*pending[k])
                    k += 1
                values.append(tstate._ingest(base_rows[i]))
            target[rows] = values
            if bar is not None:
                bar.update(len(rows))
        target.flush()

    if spec.for_entity("card"):
        target = _ColumnWriter(out, [col[name] for name in spec.names_for("card")])
        cards = transactions["card_id"].astype(str)
        lats, lons = _column(transactions, "lat"), _column(transactions, "lon")
        coords = [clean_coords(a, b) for a, b in zip(lats, lons, strict=True)]
        del lats, lons
        cat_names = list(CardState(spec).cat)
        cats = [[clean_category(v) for v in _column(transactions, c)] for c in cat_names]
        extra = list(zip(*cats, strict=True)) if cats else [()] * n
        del cats
        for rows in _groups(cards, ts):
            cstate = CardState(spec, **config)
            values = [cstate._ingest(base_rows[i] + coords[i] + extra[i]) for i in rows.tolist()]
            target[rows] = values
            if bar is not None:
                bar.update(len(rows))
        target.flush()
    if bar is not None:
        bar.close()

    frame = pd.DataFrame(out, columns=spec.names, index=transactions.index)
    frame.insert(0, "txn_id", transactions["txn_id"].to_numpy())
    return frame


class _ColumnWriter:
    """Rows of ``out`` restricted to columns ``dest``: a view when contiguous, else a buffer."""

    def __init__(self, out: np.ndarray, dest: list[int]) -> None:
        self.out, self.dest = out, dest
        contiguous = dest == list(range(dest[0], dest[0] + len(dest)))
        self.view = out[:, dest[0] : dest[0] + len(dest)] if contiguous else None
        self.buffer: np.ndarray = (
            self.view if self.view is not None else np.empty((len(out), len(dest)))
        )

    def __setitem__(self, rows: np.ndarray, values: list[list[float]]) -> None:
        self.buffer[rows] = values

    def flush(self) -> None:
        if self.view is None:
            self.out[:, self.dest] = self.buffer


def _labels_by_terminal(labels: pd.DataFrame | None) -> dict[str, list[tuple[Any, ...]]]:
    """Fraud labels per terminal as ``_add_label`` arguments, by (reported_at, row order)."""
    if labels is None or not len(labels):
        return {}
    missing = [c for c in LABEL_COLUMNS if c not in labels]
    if missing:
        raise ValueError(f"labels lack columns {missing}")
    frauds = labels[labels["is_fraud"].astype(bool).to_numpy()]
    reported = epoch_ms(frauds["reported_at"])
    order = np.lexsort((np.arange(len(frauds)), reported))
    rows = zip(
        frauds["terminal_id"].astype(str).to_numpy()[order].tolist(),
        frauds["txn_id"].astype(str).to_numpy()[order].tolist(),
        epoch_ms(frauds["ts"])[order].tolist(),
        reported[order].tolist(),
        strict=True,
    )
    out: dict[str, list[tuple[Any, ...]]] = {}
    for terminal, txn_id, ts, rep in rows:
        out.setdefault(terminal, []).append((txn_id, ts, rep, True))
    return out
