"""Compact states: stream == batch on simulator traffic, record/features_at, row codec,
binary snapshots, memory per key."""

from __future__ import annotations

import json
import random
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from features.batch import compute_features
from features.card import CardState
from features.lateness import Arrival
from features.rows import LabelRow, TxnRow, as_txn, decode, encode, label_row, txn_row
from features.spec import DEFAULT_SPEC
from features.terminal import TerminalState
from features.txn import transaction_features
from simulator import simulate
from tests.unit.test_features_parity import random_traffic

DAY = 86_400_000


@pytest.fixture(scope="module")
def sim_traffic():
    sim = simulate("realistic", seed=21, n_customers=150, n_terminals=300, n_days=45)
    txns = sim.transactions().to_pandas().drop(columns=["is_fraud", "scenario"])
    labels = sim.labels(jitter_hours=6.0).to_pandas()
    return txns, labels


def _records(txns: pd.DataFrame) -> list[dict]:
    return txns.astype(object).where(txns.notna(), None).to_dict("records")


def _restart(state, rng: random.Random):
    cls = type(state)
    if rng.random() < 0.5:
        return cls.loads(state.dumps())
    return cls.from_dict(json.loads(json.dumps(state.to_dict())))


def test_stream_with_snapshots_equals_batch_on_simulated_traffic(sim_traffic):
    """Update one by one in (ts, row) order, labels at reported_at, restarting states from
    their JSON or binary snapshots: identical to the batch, bit for bit."""
    txns, labels = sim_traffic
    batch = compute_features(txns, labels)
    assert len(txns) > 5_000 and labels["is_fraud"].sum() > 20
    records = _records(txns)
    order = sorted(range(len(records)), key=lambda i: (records[i]["ts"], i))
    events = [(int(r["reported_at"]), 0, k, r) for k, r in enumerate(labels.to_dict("records"))]
    events += [(records[i]["ts"], 1, i, records[i]) for i in order]
    events.sort(key=lambda e: e[:3])
    rng = random.Random(4)
    cards: dict[str, CardState] = {}
    terminals: dict[str, TerminalState] = {}
    rows = {}
    for _, kind, i, rec in events:
        t = terminals.get(rec["terminal_id"]) or TerminalState()
        if kind == 0:
            t.add_label(rec)
            terminals[rec["terminal_id"]] = t
            continue
        c = cards.get(rec["card_id"]) or CardState()
        if rng.random() < 0.1:
            c, t = _restart(c, rng), _restart(t, rng)
        cards[rec["card_id"]], terminals[rec["terminal_id"]] = c, t
        assert c.arrival(rec) is t.arrival(rec) is Arrival.IN_ORDER
        before = t.features_at(rec["ts"])
        got = {**transaction_features(rec), **t.update(rec), **c.update(rec)}
        assert {k: got[k] for k in before} == before
        rows[i] = [got[name] for name in DEFAULT_SPEC.names]
    stream = np.array([rows[i] for i in range(len(records))])
    expected = batch[DEFAULT_SPEC.names].to_numpy()
    assert stream.tobytes() == expected.tobytes()


def _shuffled(seed: int):
    txns, labels = random_traffic(seed=seed, n=1500, n_cards=12, n_terminals=6, days=40,
                                  jitter_ms=DAY)
    rng = np.random.default_rng(seed)
    arrival = np.argsort(txns["ts"].to_numpy() + rng.integers(0, 3_600_000, len(txns)),
                         kind="stable")
    recs = _records(txns.iloc[arrival])
    dups = [recs[i] for i in rng.choice(len(recs), 60, replace=False)]
    for d in dups:  # redeliveries a little later
        recs.insert(min(len(recs), recs.index(d) + int(rng.integers(1, 20))), d)
    by_txn = labels.set_index("txn_id")
    return recs, by_txn


@pytest.mark.parametrize("seed", [1, 2])
def test_record_leaves_the_state_update_would(seed):
    """record() == update() for the state, and both report the arrival() kind."""
    recs, by_txn = _shuffled(seed)
    config = {"allowed_lateness_ms": 1_800_000}
    states = {}
    kinds = set()
    for k, rec in enumerate(recs):
        for cls, key in ((CardState, "card_id"), (TerminalState, "terminal_id")):
            a, b = states.setdefault((cls, rec[key]), (cls(**config), cls(**config)))
            kind = a.arrival(rec)
            kinds.add(kind)
            if kind is not Arrival.LATE:
                a.update(rec)
            assert b.record(rec if k % 2 else txn_row(rec)) is kind
            if cls is TerminalState and rec["txn_id"] in by_txn.index:
                label = by_txn.loc[rec["txn_id"]].to_dict() | {"txn_id": rec["txn_id"]}
                assert a.add_label(label) == b.add_label(label_row(label))
            assert a.to_dict() == b.to_dict()
    assert kinds == set(Arrival)


def test_features_at_equals_update_at_the_same_point():
    recs, by_txn = _shuffled(3)
    states: dict[str, TerminalState] = {}
    held = []
    checked = 0
    for rec in recs:
        s = states.setdefault(rec["terminal_id"], TerminalState(allowed_lateness_ms=DAY))
        kind = s.arrival(rec)
        if kind is Arrival.LATE:
            continue
        if kind is not Arrival.DUPLICATE:
            expected = s.features_at(rec["ts"])
            assert s.update(rec) == expected
            checked += 1
        else:
            s.update(rec)
        label = by_txn.loc[rec["txn_id"]].to_dict() | {"txn_id": rec["txn_id"]}
        if label["is_fraud"]:
            held.append((s, label))
        if held and random.Random(len(held)).random() < 0.3:  # labels arrive a little late
            state, lab = held.pop(0)
            state.add_label(lab)
    assert checked > 1000
    assert sum(len(s._pending) for s in states.values())  # some labels were held


def test_features_at_counts_held_labels_due_and_rejects_late_times():
    state = TerminalState(allowed_lateness_ms=DAY)
    state.record({"txn_id": "a", "amount": 1.0, "ts": 0})
    state.record({"txn_id": "b", "amount": 1.0, "ts": 7 * DAY})
    state.add_label({"txn_id": "a", "ts": 0, "reported_at": 7 * DAY + 10, "is_fraud": 1})
    assert len(state._pending) == 1  # reported after the watermark: held
    f = state.features_at(7 * DAY + 10)
    assert (f["terminal_tx_count_1d_delay7d"], f["terminal_risk_1d_delay7d"]) == (1.0, 1.0)
    assert state.features_at(7 * DAY + 9)["terminal_risk_1d_delay7d"] == 0.0
    assert len(state._pending) == 1  # nothing changed
    with pytest.raises(ValueError, match="late"):
        state.features_at(6 * DAY - 1)


def test_reused_txn_id_with_another_event_time_is_a_new_transaction():
    state = CardState(allowed_lateness_ms=DAY)
    state.update({"txn_id": "x", "amount": 1.0, "ts": 10})
    assert state.arrival({"txn_id": "x", "ts": 10}) is Arrival.DUPLICATE
    assert state.record({"txn_id": "x", "amount": 1.0, "ts": 20}) is Arrival.IN_ORDER
    assert len(state) == 2 and "x" in state


# -- row codec ------------------------------------------------------------------------------
def _rows(n: int, seed: int = 0) -> tuple[list[TxnRow], list[LabelRow]]:
    rng = random.Random(seed)
    txns = []
    for i in range(n):
        geo = rng.random() < 0.8
        txns.append(TxnRow(f"tx-{i}-é", f"card{rng.randrange(99)}", f"T{rng.randrange(9)}",
                           rng.randrange(2**40) - 2**39, rng.randrange(-10**9, 10**12),
                           rng.randrange(-900_000_000, 900_000_001) if geo else None,
                           rng.randrange(-1_800_000_000, 1_800_000_001) if geo else None,
                           rng.choice(["FR", "", None]), rng.choice(["5411", None]),
                           rng.choice(["online", "card_present", None]), rng.randrange(-1, 2**62)))
    labels = [LabelRow(f"tx-{i}", f"T{i % 7}", rng.randrange(2**41), rng.randrange(2**41),
                       rng.random() < 0.5, rng.randrange(2**50)) for i in range(n // 2)]
    return txns, labels


@pytest.mark.parametrize("n", [0, 1, 7, 500])
def test_row_codec_round_trip_is_exact(n):
    txns, labels = _rows(n, seed=n)
    assert decode(encode(txns, labels)) == (txns, labels)
    assert decode(encode(txns)) == (txns, [])
    assert decode(encode([], labels)) == ([], labels)


def test_row_codec_rejects_damaged_records():
    txns, labels = _rows(20)
    blob = encode(txns, labels)
    for size in range(len(blob)):
        with pytest.raises(ValueError, match="row batch"):
            decode(blob[:size])
    with pytest.raises(ValueError, match="row batch"):
        decode(blob + b"\x00")
    rng = random.Random(1)
    for _ in range(300):
        bad = bytearray(blob)
        bad[rng.randrange(len(bad))] ^= 1 << rng.randrange(8)
        with pytest.raises(ValueError, match="row batch"):
            decode(bytes(bad))
    with pytest.raises(ValueError, match="format"):
        decode(b"\x02" + blob[1:])


def test_row_codec_refuses_what_it_cannot_hold():
    row = _rows(1)[0][0]
    with pytest.raises(ValueError, match="NUL"):
        encode([row._replace(txn_id="a\x00b")])
    with pytest.raises(ValueError, match="range"):
        encode([row._replace(lat=2**31, lon=0)])
    with pytest.raises(ValueError, match="range"):
        encode([row._replace(cents=2**63)])


def test_decoded_rows_drive_the_states_like_the_dicts(sim_traffic):
    txns, _ = sim_traffic
    recs = _records(txns.iloc[:3000])
    rows = decode(encode([txn_row(r, offset=i) for i, r in enumerate(recs)]))[0]
    assert [r.offset for r in rows] == list(range(len(recs)))
    assert all(txn_row(as_txn(r), r.offset) == r for r in rows)
    for cls, key in ((CardState, "card_id"), (TerminalState, "terminal_id")):
        a, b = {}, {}
        for rec, row in zip(recs, rows, strict=True):
            fa = a.setdefault(rec[key], cls()).update(rec)
            fb = b.setdefault(rec[key], cls()).update(row)
            assert fa == fb
        assert all(a[k].to_dict() == b[k].to_dict() for k in a)


# -- snapshots ------------------------------------------------------------------------------
def _states():
    recs, by_txn = _shuffled(5)
    config = {"allowed_lateness_ms": 3_600_000, "max_events": 40}
    cards, terms = {}, {}
    for rec in recs:
        c = cards.setdefault(rec["card_id"], CardState(**config))
        t = terms.setdefault(rec["terminal_id"], TerminalState(**config))
        for s in (c, t):
            s.record(rec)
        t.add_label(by_txn.loc[rec["txn_id"]].to_dict() | {"txn_id": rec["txn_id"]})
    t.add_label({"txn_id": "ghost", "ts": t.watermark, "reported_at": t.watermark, "is_fraud": 1})
    return config, [*cards.values(), *terms.values(), CardState(), TerminalState()]


def test_binary_snapshot_round_trip_and_size():
    config, states = _states()
    assert any(s._orphans for s in states if isinstance(s, TerminalState))
    assert any(s.evicted for s in states)
    for s in states:
        blob = s.dumps()
        back = type(s).loads(blob, **config)
        assert back.to_dict() == s.to_dict()
        assert back.dumps() == blob
        assert len(blob) <= 120 + 34 * len(s) + 40 * len(getattr(s, "f_ts", ())) + sum(
            len(x[1]) + 20 for x in getattr(s, "_pending", ()))


def test_binary_snapshot_rejects_damaged_or_foreign_blobs():
    _, states = _states()
    blob = states[0].dumps()
    for size in range(len(blob)):
        with pytest.raises(ValueError, match="snapshot"):
            CardState.loads(blob[:size])
    rng = random.Random(2)
    for _ in range(200):
        bad = bytearray(blob)
        bad[rng.randrange(len(bad))] ^= 1 << rng.randrange(8)
        with pytest.raises(ValueError, match="snapshot"):
            CardState.loads(bytes(bad))
    with pytest.raises(ValueError, match="not a terminal"):
        TerminalState.loads(blob)


def test_previous_dict_format_still_loads():
    old = {"fmt": 1, "wm": 2000, "ev": 0, "ts": [1000, 1000], "id": ["a", "b"],
           "c": [150, 250], "x": {"lat": [None, 450000000], "lon": [None, 40000000],
                                  "cat:country": ["FR", None]}, "bts": None, "bgeo": None}
    state = CardState.from_dict(old)
    assert state.arrival({"txn_id": "b", "ts": 2000}) is Arrival.DUPLICATE
    f = state.update({"txn_id": "c", "amount": 1.0, "ts": 2000, "country": "BE"})
    assert (f["card_tx_count_1d"], f["card_amount_sum_1d"], f["card_countries_1d"]) == (
        3.0, 5.0, 2.0)


# -- memory ---------------------------------------------------------------------------------
def test_small_states_are_small():
    recs = [{"txn_id": f"t{i}", "card_id": "c", "terminal_id": "T", "amount": 12.5,
             "ts": 1_000_000 + i, "lat": 45.0, "lon": 4.0, "country": "FR", "mcc": "5411",
             "channel": "online"} for i in range(200)]
    for cls in (CardState, TerminalState):
        cls()  # the shared layout is built once per class and configuration
        tracemalloc.start()
        states = [cls() for _ in range(100)]
        for s in states:
            s.update(recs[0])
            s.update(recs[1])
        size = tracemalloc.get_traced_memory()[0] / len(states)
        tracemalloc.stop()
        assert size < 700, (cls.__name__, size)


def test_any_mapping_or_row_is_accepted():
    from types import MappingProxyType

    rec = {"txn_id": "a", "card_id": "c", "terminal_id": "T", "amount": 2.5, "ts": 5,
           "lat": 1.0, "lon": 2.0, "country": "FR"}
    for cls in (CardState, TerminalState):
        a, b, c = cls(), cls(), cls()
        assert a.arrival(MappingProxyType(rec)) is b.arrival(txn_row(rec)) is Arrival.IN_ORDER
        assert a.update(MappingProxyType(rec)) == b.update(txn_row(rec)) == c.update(rec)
        assert a.arrival(rec) is b.arrival(txn_row(rec)) is Arrival.DUPLICATE
