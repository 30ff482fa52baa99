"""Labels interleaved with transactions in event-time order, and the send plans built on it."""

from __future__ import annotations

import numpy as np

from simulator import simulate
from simulator.config import DAY_MS
from simulator.interleave import LABEL, TRANSACTION, interleave, merge_order, merged_times
from simulator.sender import plan_historical, plan_live


def check_no_label_too_early(kinds, index, tx_ts, reported):
    """Every transaction with ts <= a label's reported_at comes before that label."""
    position_of_tx = np.empty(tx_ts.size, dtype=np.int64)
    position_of_tx[index[kinds == TRANSACTION]] = np.flatnonzero(kinds == TRANSACTION)
    order_ts = np.sort(tx_ts)
    last_pos_by_rank = np.maximum.accumulate(position_of_tx[np.argsort(tx_ts, kind="stable")])
    for pos in np.flatnonzero(kinds == LABEL):
        rank = np.searchsorted(order_ts, reported[index[pos]], side="right")
        if rank:
            assert last_pos_by_rank[rank - 1] < pos


def test_random_streams_never_put_a_label_early():
    rng = np.random.default_rng(0)
    for _ in range(20):
        tx_ts = np.sort(rng.integers(0, 1_000, 300))
        reported = tx_ts + rng.integers(0, 50, 300)  # includes zero delay
        kinds, index = merge_order(tx_ts, reported)
        assert sorted(index[kinds == TRANSACTION].tolist()) == list(range(300))
        assert sorted(index[kinds == LABEL].tolist()) == list(range(300))
        assert (np.diff(merged_times(tx_ts, reported, kinds, index)) >= 0).all()
        check_no_label_too_early(kinds, index, tx_ts, reported)
        # each label after its own transaction
        pos = {(int(k), int(i)): p for p, (k, i) in enumerate(zip(kinds, index, strict=True))}
        assert all(pos[(LABEL, i)] > pos[(TRANSACTION, i)] for i in range(300))


def test_ties_keep_input_order_and_transactions_first():
    kinds, index = merge_order(np.array([5, 5, 5]), np.array([5, 5]))
    assert kinds.tolist() == [0, 0, 0, 1, 1] and index.tolist() == [0, 1, 2, 0, 1]


def test_interleave_records_of_a_simulation():
    sim = simulate("handbook", seed=2, n_customers=50, n_terminals=100, n_days=12)
    tx = sim.transactions()
    labels = sim.labels(delay_days=7)
    txs = tx.to_pylist()
    labs = labels.to_pylist()
    times = [t["ts"] for t in txs], [lab["reported_at"] for lab in labs]
    merged = list(interleave(txs, labs, *times))
    assert len(merged) == len(txs) + len(labs)
    seen: set[str] = set()
    clock = 0
    for kind, record in merged:
        key = record["ts"] if kind == "transaction" else record["reported_at"]
        assert key >= clock
        clock = key
        if kind == "transaction":
            seen.add(record["txn_id"])
        else:
            assert record["txn_id"] in seen
            assert record["reported_at"] - record["ts"] == 7 * DAY_MS
    # the first label is reported 7 days after the first transaction, not earlier
    first_label = next(i for i, (k, _) in enumerate(merged) if k == "label")
    assert merged[first_label - 1][1]["ts"] <= merged[first_label][1]["reported_at"]
    assert all(r["ts"] < txs[0]["ts"] + 7 * DAY_MS for _, r in merged[:first_label])


def test_historical_plan_compresses_event_time():
    tx_ts = np.array([0, 60_000, 120_000])
    plan = plan_historical(tx_ts, tx_ts + 30_000, speed=60.0)
    assert plan.kinds.tolist() == [0, 1, 0, 1, 0, 1]
    assert plan.due_s.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    fast = plan_historical(tx_ts, None, speed=None)
    assert fast.due_s.tolist() == [0.0, 0.0, 0.0] and (fast.kinds == 0).all()


def test_live_plan_uses_the_schedule_as_event_time():
    offsets = np.array([0.0, 0.5, 1.0, 1.5])
    ts, reported, plan = plan_live(offsets, start_ms=1_000_000, label_delay_ms=1_200)
    assert ts.tolist() == [1_000_000, 1_000_500, 1_001_000, 1_001_500]
    assert (reported - ts == 1_200).all()
    assert plan.due_s.tolist() == [0.0, 0.5, 1.0, 1.2, 1.5, 1.7, 2.2, 2.7]
    assert plan.kinds.tolist() == [0, 0, 0, 1, 0, 1, 1, 1]
    _, none, only_tx = plan_live(offsets, start_ms=0, label_delay_ms=None)
    assert none.size == 0 and len(only_tx) == 4
