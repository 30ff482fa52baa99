"""Window boundaries, labels, lateness, duplicates, memory bounds and restarts of the states."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features.batch import compute_features
from features.card import CardState
from features.lateness import Arrival, LateEventError
from features.spec import DEFAULT_SPEC
from features.terminal import TerminalState
from tests.unit.test_features_parity import random_traffic

DAY = 86_400_000
MIN = 60_000


def txn(i: int | str, ts: int, amount: float = 10.0, card: str = "c", terminal: str = "T",
        **extra) -> dict:
    return {"txn_id": str(i), "card_id": card, "terminal_id": terminal, "amount": amount,
            "currency": "EUR", "ts": ts, **extra}


def label(i: int | str, ts: int, reported_at: int, fraud: bool = True, terminal: str = "T"):
    return {"txn_id": str(i), "card_id": "c", "terminal_id": terminal, "is_fraud": int(fraud),
            "ts": ts, "reported_at": reported_at}


def restarted(state):
    return type(state).from_dict(json.loads(json.dumps(state.to_dict())))


# -- window boundaries -----------------------------------------------------------------------
@pytest.mark.parametrize("restart", [False, True])
def test_card_window_excludes_t_minus_w_and_includes_t(restart):
    state = CardState()
    t = 100 * DAY
    state.update(txn("old", t - DAY, 1.0))  # exactly t - 1 d: out of the 1 d window
    state.update(txn("in", t - DAY + 1, 2.0))
    state.update(txn("same0", t, 4.0))
    state = restarted(state) if restart else state
    f = state.update(txn("same1", t, 8.0))  # arrived after "same0" with the same ts
    assert f["card_tx_count_1d"] == 3.0
    assert f["card_amount_sum_1d"] == 14.0
    assert f["card_tx_count_7d"] == 4.0
    assert f["card_seconds_since_prev"] == 0.0


def test_equal_timestamps_follow_arrival_order():
    state = CardState()
    first = state.update(txn("a", 0, 1.0))
    second = state.update(txn("b", 0, 3.0))
    assert (first["card_tx_count_10m"], second["card_tx_count_10m"]) == (1.0, 2.0)
    assert second["card_amount_mean_1d"] == 2.0


@pytest.mark.parametrize("restart", [False, True])
def test_terminal_delayed_window_bounds(restart):
    state = TerminalState()
    t = 100 * DAY
    state.update(txn("out", t - 8 * DAY))  # t - d - 1 d: excluded
    state.update(txn("in", t - 7 * DAY))  # t - d: included
    state.update(txn("recent", t - 7 * DAY + 1))  # after t - d: not yet
    state = restarted(state) if restart else state
    f = state.update(txn("now", t))
    assert f["terminal_tx_count_1d_delay7d"] == 1.0
    assert f["terminal_tx_count_7d_delay7d"] == 2.0


# -- labels ----------------------------------------------------------------------------------
def test_label_reported_in_the_future_is_held_until_event_time_passes_it():
    state = TerminalState()
    state.update(txn("a", 0))
    assert state.add_label(label("a", 0, reported_at=7 * DAY + 10))
    assert state.update(txn("b", 7 * DAY + 9))["terminal_risk_1d_delay7d"] == 0.0
    restored = restarted(state)
    for s in (state, restored):
        assert s.update(txn("c", 7 * DAY + 10))["terminal_risk_1d_delay7d"] == 1.0


def test_label_before_its_transaction_and_redelivered_labels():
    state = TerminalState()
    state.update(txn("x", 0))
    assert state.add_label(label("a", 5, reported_at=10))  # arrives before txn "a"
    assert not state.add_label(label("a", 5, reported_at=10))  # redelivery: ignored
    assert not state.add_label(label("x", 0, reported_at=10, fraud=False))  # genuine: no-op
    state.update(txn("a", 5))
    f = state.update(txn("b", 7 * DAY + 5))
    assert (f["terminal_tx_count_1d_delay7d"], f["terminal_risk_1d_delay7d"]) == (2.0, 0.5)


def test_label_of_unknown_transaction_is_never_counted():
    state = TerminalState()
    state.update(txn("a", 0))
    state.add_label(label("ghost", 0, reported_at=1))
    f = state.update(txn("b", 7 * DAY))
    assert (f["terminal_tx_count_1d_delay7d"], f["terminal_risk_1d_delay7d"]) == (1.0, 0.0)


# -- lateness, out of order, duplicates ------------------------------------------------------
def test_late_event_is_rejected_and_leaves_state_unchanged():
    state = CardState()
    state.update(txn("a", 10 * MIN))
    before = state.to_dict()
    late = txn("b", 10 * MIN - 1)
    assert state.arrival(late) is Arrival.LATE
    with pytest.raises(LateEventError):
        state.update(late)
    assert state.to_dict() == before


def test_duplicate_returns_the_same_features_and_changes_nothing():
    cstate, tstate = CardState(), TerminalState()
    events = [txn(i, i * MIN, 1.0 + i, lat=45.0 + i / 100, lon=2.0, country="FR") for i in range(5)]
    first = [(cstate.update(e), tstate.update(e)) for e in events]
    snapshot = (cstate.to_dict(), tstate.to_dict())
    assert cstate.arrival(events[4]) is Arrival.DUPLICATE
    assert (cstate.update(events[4]), tstate.update(events[4])) == first[4]
    assert (cstate.to_dict(), tstate.to_dict()) == snapshot


def test_out_of_order_within_lateness_is_inserted_in_event_time_order():
    state = CardState(allowed_lateness_ms=DAY)
    state.update(txn("a", 0, 1.0))
    state.update(txn("c", 20 * MIN, 4.0))
    assert state.arrival(txn("b", 10 * MIN)) is Arrival.OUT_OF_ORDER
    f = state.update(txn("b", 10 * MIN, 2.0))  # sees only events with ts <= its own
    assert (f["card_tx_count_1h"], f["card_amount_sum_1h"]) == (2.0, 3.0)
    assert f["card_seconds_since_prev"] == 600.0
    g = state.update(txn("d", 20 * MIN, 8.0))  # now includes the inserted event
    assert (g["card_tx_count_1h"], g["card_amount_sum_1h"]) == (4.0, 15.0)
    assert state.ts == [0, 10 * MIN, 20 * MIN, 20 * MIN]


def test_out_of_order_features_equal_batch_over_what_has_arrived():
    """Each event's features = batch recomputation over the events (and labels) seen so far."""
    txns, labels = random_traffic(seed=3, n=200, n_cards=4, n_terminals=2, days=12,
                                  jitter_ms=2 * DAY)
    rng = np.random.default_rng(1)
    arrival = np.argsort(txns["ts"].to_numpy() + rng.integers(0, DAY, len(txns)), kind="stable")
    txns = txns.iloc[arrival].reset_index(drop=True)
    label_at = {t: k for k, t in enumerate(txns["txn_id"])}  # a label arrives with its txn
    cards, terminals = {}, {}
    kinds = set()
    for k, rec in enumerate(txns.astype(object).where(txns.notna(), None).to_dict("records")):
        lateness = {"allowed_lateness_ms": 2 * DAY}
        tstate = terminals.setdefault(rec["terminal_id"], TerminalState(**lateness))
        cstate = cards.setdefault(rec["card_id"], CardState(**lateness))
        kinds.add(cstate.arrival(rec))
        got = {**tstate.update(rec), **cstate.update(rec)}
        tstate.add_label(labels.set_index("txn_id").loc[rec["txn_id"]].to_dict()
                         | {"txn_id": rec["txn_id"]})
        seen = labels[labels["txn_id"].map(label_at) < k]
        expected = compute_features(txns.iloc[: k + 1], seen).iloc[k]
        for name, value in got.items():
            assert value == expected[name], (k, name)
    assert kinds == {Arrival.IN_ORDER, Arrival.OUT_OF_ORDER}


# -- memory ----------------------------------------------------------------------------------
def test_hard_cap_bounds_events_per_key_and_is_reported():
    state = CardState(max_events=50)
    for i in range(1000):
        f = state.update(txn(i, i * 1000, lat=1.0, lon=1.0, country="FR"))
    assert len(state) == 50 and state.evicted == 950
    assert f["card_tx_count_1d"] == 51.0  # the 50 kept + the current one
    assert len(state.ts) < 50 + 256  # dead entries are compacted
    assert len(json.dumps(state.to_dict())) < 5_000
    assert restarted(state).update(txn("n", 1_000_000))["card_tx_count_1d"] == 51.0


def test_retention_drops_events_older_than_the_widest_window():
    cstate, tstate = CardState(), TerminalState()
    for day in range(400):
        cstate.update(txn(day, day * DAY))
        tstate.update(txn(day, day * DAY))
    assert len(cstate) == 30 and len(tstate) == 37
    assert len(cstate.ts) < 30 + 256 and len(tstate.ts) < 37 + 256
    f = cstate.update(txn("next", 400 * DAY))
    assert f["card_seconds_since_prev"] == 86_400.0  # the previous transaction is remembered


def test_terminal_memory_with_many_labels_is_bounded():
    state = TerminalState(max_events=100)
    for i in range(3000):
        state.add_label(label(i, i * MIN, reported_at=i * MIN + 7 * DAY))
        state.update(txn(i, i * MIN))
    assert len(state) == 100
    assert len(state._pending) + len(state._orphans) <= 100
    assert len(state.f_ts) <= 100


# -- batch input handling --------------------------------------------------------------------
def test_batch_accepts_datetimes_and_rejects_duplicate_ids():
    txns, labels = random_traffic(seed=2, n=200)
    as_dates = txns.assign(ts=pd.to_datetime(txns["ts"], unit="ms", utc=True))
    pd.testing.assert_frame_equal(compute_features(as_dates), compute_features(txns))
    with pytest.raises(ValueError, match="unique"):
        compute_features(pd.concat([txns, txns.iloc[:1]]))
    empty = compute_features(txns.iloc[:0], labels)
    assert list(empty.columns) == ["txn_id", *DEFAULT_SPEC.names] and len(empty) == 0


def test_batch_with_entities_interleaved_in_the_spec_order():
    from features.spec import FeatureSpec

    picked = ["card_tx_count_1d", "terminal_risk_7d_delay7d", "amount", "card_countries_1d",
              "terminal_tx_count_7d_delay7d"]
    by_name = {f.name: f for f in DEFAULT_SPEC.features}
    spec = FeatureSpec(tuple(by_name[name] for name in picked))
    txns, labels = random_traffic(seed=4, n=400)
    got = compute_features(txns, labels, spec)
    assert list(got.columns) == ["txn_id", *picked]
    full = compute_features(txns, labels)
    pd.testing.assert_frame_equal(got, full[["txn_id", *picked]])


def test_restore_rejects_unknown_format():
    data = CardState().to_dict() | {"fmt": 99}
    with pytest.raises(ValueError, match="format"):
        CardState.from_dict(data)


def test_terminal_features_are_exact_under_disorder_shorter_than_the_delay():
    """Delayed windows (d = 7 d > L) give the batch values whatever the disorder within L."""
    txns, labels = random_traffic(seed=9, n=1500, days=40, jitter_ms=DAY)
    rng = np.random.default_rng(2)
    arrival = np.argsort(txns["ts"].to_numpy() + rng.integers(0, DAY, len(txns)), kind="stable")
    by_txn = labels.set_index("txn_id")
    states: dict[str, TerminalState] = {}
    got = {}
    kinds = set()
    for rec in txns.iloc[arrival].to_dict("records"):
        state = states.setdefault(rec["terminal_id"], TerminalState(allowed_lateness_ms=DAY))
        kinds.add(state.arrival(rec))
        got[rec["txn_id"]] = state.update(rec)
        state.add_label(by_txn.loc[rec["txn_id"]].to_dict() | {"txn_id": rec["txn_id"]})
    assert Arrival.OUT_OF_ORDER in kinds and Arrival.LATE not in kinds
    names = DEFAULT_SPEC.names_for("terminal")
    stream = pd.DataFrame.from_dict(got, orient="index").loc[txns["txn_id"], names]
    batch = compute_features(txns, labels).set_index("txn_id")[names]
    pd.testing.assert_frame_equal(stream, batch, check_names=False)
