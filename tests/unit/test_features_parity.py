"""Parity: state machines vs an independent pandas/NumPy implementation, and stream vs batch.

The reference implementations below do not use ``features`` code: the handbook features with
pandas ``rolling`` (as in the handbook), the other features by brute force over each key's
history. The stream emulation drives ``update``/``add_label`` with dicts, as the agents do, and
restarts states from their serialised form at random points.
"""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pandas as pd
import pytest

from features.batch import compute_features
from features.card import CardState
from features.spec import DEFAULT_SPEC, HANDBOOK_NAMES
from features.terminal import TerminalState
from features.txn import transaction_features

DAY = 86_400_000
T0 = 1_522_540_800_000  # 2018-04-01 00:00 UTC
COUNTRIES = ["FR", "BE", "DE", None]


def random_traffic(
    seed: int,
    n: int = 3000,
    n_cards: int = 30,
    n_terminals: int = 25,
    days: int = 45,
    jitter_ms: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Transactions (in a shuffled row order, with ties and bursts) and one label each."""
    rng = np.random.default_rng(seed)
    ts = T0 + rng.integers(0, days * DAY, n)
    ts[: n // 10] = (ts[: n // 10] // 60_000) * 60_000  # many equal timestamps
    card = rng.integers(0, n_cards, n)
    burst = rng.random(n) < 0.3  # a third of transactions minutes after another of the card
    src = rng.integers(0, n, n)
    ts[burst] = ts[src[burst]] + rng.integers(0, 20 * 60_000, burst.sum())
    card[burst] = card[src[burst]]
    terminal = rng.integers(0, n_terminals, n)
    edge = rng.random(n) < 0.1  # exactly one window width (+ delay) after another transaction
    widths = np.array([600_000, 3_600_000, DAY, 7 * DAY, 8 * DAY, 14 * DAY, 30 * DAY, 37 * DAY])
    ts[edge] = ts[src[edge]] + widths[rng.integers(0, len(widths), edge.sum())]
    card[edge], terminal[edge] = card[src[edge]], terminal[src[edge]]
    has_geo = rng.random(n) < 0.8
    lat = np.where(has_geo, np.round(rng.uniform(43, 51, n), 6), np.nan)
    lon = np.where(has_geo, np.round(rng.uniform(-4, 8, n), 6), np.nan)
    txns = pd.DataFrame(
        {
            "txn_id": [f"tx{i:06d}" for i in range(n)],
            "card_id": [f"card{c}" for c in card],
            "terminal_id": [f"term{t}" for t in terminal],
            "amount": rng.integers(1, 30_000, n) / 100,
            "currency": "EUR",
            "ts": ts,
            "lat": lat,
            "lon": lon,
            "country": [COUNTRIES[i] for i in rng.integers(0, len(COUNTRIES), n)],
        }
    )
    is_fraud = (rng.random(n) < 0.15).astype(int)
    delay = 7 * DAY + (rng.integers(0, jitter_ms + 1, n) if jitter_ms else 0)
    labels = pd.DataFrame(
        {
            "txn_id": txns["txn_id"],
            "card_id": txns["card_id"],
            "terminal_id": txns["terminal_id"],
            "is_fraud": is_fraud,
            "ts": ts,
            "reported_at": ts + delay,
        }
    )
    return txns, labels


# -- independent references ------------------------------------------------------------------
def handbook_reference(txns: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """The handbook's baseline features with pandas rolling (labels reported exactly 7 d late)."""
    df = txns.merge(labels[["txn_id", "is_fraud"]], on="txn_id", how="left")
    df["pos"] = np.arange(len(df))
    df["dt"] = pd.to_datetime(df["ts"], unit="ms")
    df = df.sort_values(["ts", "pos"], kind="mergesort")
    out = pd.DataFrame(index=df.index)
    out["TX_AMOUNT"] = df["amount"]
    out["TX_DURING_WEEKEND"] = (df["dt"].dt.weekday >= 5).astype(float)
    out["TX_DURING_NIGHT"] = (df["dt"].dt.hour <= 6).astype(float)

    def rolling(key: str, column: str, window: str, how: str) -> pd.Series:
        frame = df.groupby(key, sort=False)[[column, "dt"]].rolling(window, on="dt")
        return getattr(frame, how)()[column].droplevel(0)

    for days in (1, 7, 30):
        win = f"{days}D"
        out[f"CUSTOMER_ID_NB_TX_{days}DAY_WINDOW"] = rolling("card_id", "amount", win, "count")
        out[f"CUSTOMER_ID_AVG_AMOUNT_{days}DAY_WINDOW"] = rolling("card_id", "amount", win, "mean")
    n_delay = rolling("terminal_id", "is_fraud", "7D", "count")
    f_delay = rolling("terminal_id", "is_fraud", "7D", "sum")
    for days in (1, 7, 30):
        count = rolling("terminal_id", "is_fraud", f"{7 + days}D", "count") - n_delay
        frauds = rolling("terminal_id", "is_fraud", f"{7 + days}D", "sum") - f_delay
        out[f"TERMINAL_ID_NB_TX_{days}DAY_WINDOW"] = count
        out[f"TERMINAL_ID_RISK_{days}DAY_WINDOW"] = (frauds / count).where(count > 0, 0.0)
    return out.sort_index()


def _haversine(lat1, lon1, lat2, lon2):
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dlon = np.radians(lon2 - lon1)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return 2 * 6371.0088 * np.arcsin(np.sqrt(np.minimum(a, 1.0)))


def brute_force_reference(txns: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Every card and terminal feature of DEFAULT_SPEC by brute force over each key's history."""
    df = txns.reset_index(drop=True)
    order = np.lexsort((np.arange(len(df)), df["ts"].to_numpy()))
    rank = np.empty(len(df), dtype=np.int64)
    rank[order] = np.arange(len(df))  # position in the (ts, row) order
    out = {}
    fraud = dict(zip(labels["txn_id"], labels["is_fraud"], strict=True))
    reported = dict(zip(labels["txn_id"], labels["reported_at"], strict=True))
    for _card, g in df.groupby("card_id"):
        g = g.iloc[np.argsort(rank[g.index.to_numpy()], kind="stable")]
        ts = g["ts"].to_numpy()
        amt = g["amount"].to_numpy()
        lat, lon = g["lat"].to_numpy(), g["lon"].to_numpy()
        qlat = np.where(np.isnan(lat), 0, np.round(np.nan_to_num(lat) * 1e7)).astype(np.int64)
        qlon = np.where(np.isnan(lon), 0, np.round(np.nan_to_num(lon) * 1e7)).astype(np.int64)
        country = g["country"].tolist()
        for i, idx in enumerate(g.index):
            row = {}
            earlier = np.arange(len(g)) <= i
            for name, width in (("10m", 600_000), ("1h", 3_600_000), ("1d", DAY), ("7d", 7 * DAY),
                                ("30d", 30 * DAY)):
                inside = earlier & (ts > ts[i] - width)
                row[f"card_tx_count_{name}"] = inside.sum()
                row[f"card_amount_sum_{name}"] = amt[inside].sum()
                row[f"card_amount_mean_{name}"] = amt[inside].mean()
            row["card_amount_to_mean_30d"] = amt[i] / row["card_amount_mean_30d"]
            row["card_seconds_since_prev"] = (ts[i] - ts[i - 1]) / 1000 if i else -1.0
            geo_before = np.flatnonzero(~np.isnan(lat[:i]))
            if np.isnan(lat[i]) or not len(geo_before):
                row["card_distance_prev_km"] = row["card_speed_prev_kmh"] = -1.0
            else:
                j = geo_before[-1]
                km = float(_haversine(lat[j], lon[j], lat[i], lon[i]))
                hours = max(ts[i] - ts[j], 1000) / 3_600_000
                row["card_distance_prev_km"] = km
                row["card_speed_prev_kmh"] = km / hours if km else 0.0
            usual = (np.arange(len(g)) < i) & (ts > ts[i] - 30 * DAY) & ~np.isnan(lat)
            if np.isnan(lat[i]) or not usual.any():
                row["card_distance_usual_km"] = -1.0
            else:
                k = usual.sum()
                mlat, mlon = qlat[usual].sum() / (k * 1e7), qlon[usual].sum() / (k * 1e7)
                row["card_distance_usual_km"] = float(_haversine(lat[i], lon[i], mlat, mlon))
            day = earlier & (ts > ts[i] - DAY)
            row["card_countries_1d"] = len({c for c, m in zip(country, day, strict=True)
                                            if m and c is not None})
            out[idx] = row
    for _terminal, g in df.groupby("terminal_id"):
        ts = g["ts"].to_numpy()
        known = np.array([fraud[t] for t in g["txn_id"]])
        rep = np.array([reported[t] for t in g["txn_id"]])
        for i, idx in enumerate(g.index):
            t = ts[i]
            for days in (1, 7, 30):
                inside = (ts > t - (7 + days) * DAY) & (ts <= t - 7 * DAY)
                count = inside.sum()
                frauds = (inside & (known == 1) & (rep <= t)).sum()
                out[idx][f"terminal_tx_count_{days}d_delay7d"] = count
                out[idx][f"terminal_risk_{days}d_delay7d"] = frauds / count if count else 0.0
    return pd.DataFrame.from_dict(out, orient="index").sort_index()


# -- stream emulation ------------------------------------------------------------------------
def run_stream(txns, labels, *, label_arrival="reported", restart_prob=0.0, seed=0):
    """Feed dicts to per-key states as the agents would; restart states at random."""
    rng = random.Random(seed)
    records = txns.astype(object).where(txns.notna(), None).to_dict("records")
    for pos, rec in enumerate(records):
        rec["pos"] = pos
    records.sort(key=lambda r: (r["ts"], r["pos"]))
    label_recs = labels.to_dict("records") if labels is not None else []
    events: list[tuple[int, int, int, dict]] = []
    if label_arrival == "reported":  # a label arrives before the first txn with ts >= reported_at
        for k, lab in enumerate(label_recs):
            events.append((int(lab["reported_at"]), 0, k, lab))
        for rec in records:
            events.append((int(rec["ts"]), 1, rec["pos"], rec))
    else:  # "immediate": each label right after its transaction, long before reported_at
        by_txn = {lab["txn_id"]: lab for lab in label_recs}
        for rec in records:
            events.append((int(rec["ts"]), 1, rec["pos"], rec))
            if rec["txn_id"] in by_txn:
                events.append((int(rec["ts"]), 2, rec["pos"], by_txn[rec["txn_id"]]))
    events.sort(key=lambda e: e[:3])
    terminals: dict[str, TerminalState] = {}
    cards: dict[str, CardState] = {}
    rows = {}
    for _, kind, _, rec in events:
        tid = rec["terminal_id"]
        tstate = terminals.setdefault(tid, TerminalState())
        if rng.random() < restart_prob:
            tstate = terminals[tid] = TerminalState.loads(tstate.dumps())
        if kind != 1:
            tstate.add_label(rec)
            continue
        cstate = cards.setdefault(rec["card_id"], CardState())
        if rng.random() < restart_prob:
            blob = json.dumps(cstate.to_dict())  # the changelog value, through JSON
            cstate = cards[rec["card_id"]] = CardState.from_dict(json.loads(blob))
        rows[rec["pos"]] = {"txn_id": rec["txn_id"], **transaction_features(rec),
                            **tstate.update(rec), **cstate.update(rec)}
    return pd.DataFrame([rows[p] for p in range(len(records))])[["txn_id", *DEFAULT_SPEC.names]]


# -- tests -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def traffic():
    return random_traffic(seed=7)


@pytest.fixture(scope="module")
def batch(traffic):
    return compute_features(*traffic)


def _assert_close(actual: pd.Series, expected: pd.Series, name: str) -> None:
    a, e = actual.to_numpy(dtype=float), expected.to_numpy(dtype=float)
    if "count" in name or "countries" in name:
        np.testing.assert_array_equal(a, e, err_msg=name)
    else:
        np.testing.assert_allclose(a, e, rtol=1e-9, atol=1e-9, err_msg=name)


def test_handbook_features_equal_pandas_rolling(traffic, batch):
    expected = handbook_reference(*traffic)
    assert len(expected) == len(batch) == 3000
    for handbook_name, name in HANDBOOK_NAMES.items():
        _assert_close(batch[name], expected[handbook_name], name)
    assert batch["terminal_risk_7d_delay7d"].gt(0).sum() > 100  # the test exercises risk


def test_all_card_and_terminal_features_equal_brute_force():
    txns, labels = random_traffic(seed=11, n=1500, jitter_ms=3 * DAY)
    got = compute_features(txns, labels)
    expected = brute_force_reference(txns, labels)
    names = DEFAULT_SPEC.names_for("card") + DEFAULT_SPEC.names_for("terminal")
    for name in names:
        _assert_close(got[name], expected[name], name)
    assert (got["card_speed_prev_kmh"] > 0).sum() > 100
    assert (got["card_distance_usual_km"] > 0).sum() > 100


@pytest.mark.parametrize("label_arrival", ["reported", "immediate"])
def test_stream_with_restarts_equals_batch_exactly(traffic, batch, label_arrival):
    txns, labels = traffic
    stream = run_stream(txns, labels, label_arrival=label_arrival, restart_prob=0.1, seed=3)
    pd.testing.assert_frame_equal(stream, batch.reset_index(drop=True), check_exact=True)


def test_jittered_labels_stream_equals_batch():
    txns, labels = random_traffic(seed=5, n=1200, jitter_ms=2 * DAY)
    stream = run_stream(txns, labels, label_arrival="immediate", restart_prob=0.05)
    pd.testing.assert_frame_equal(stream, compute_features(txns, labels), check_exact=True)


def test_no_nan_or_infinity_anywhere(batch):
    values = batch[DEFAULT_SPEC.names].to_numpy()
    assert np.isfinite(values).all()
    assert not math.isnan(values.min())
