"""The pipeline agent in process: fake events, fake producer and consumer, no broker.

What is checked: invalid and poison records dead-lettered while their neighbours pass; an
exception in one event dead-letters that event only; a failing batched ONNX run is isolated
per event; hold mode without a model processes, skips and dead-letters nothing; acks only in
offset order and only after every send the event depends on succeeded; a rebalance releases
everything held; the state log (segment codec, replay to the committed offset, the feeder's
merge and its skipping of its own segments); the gate; and the central property, on simulated
traffic with labels: the stream equals the batch recomputation, for one worker, for two
workers sharing the terminal view through the state log, and across a crash and restart.
"""

from __future__ import annotations

import asyncio
import json
import random
import zlib
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from app.pipeline import segments
from app.pipeline.acks import DeliveryFailed
from app.pipeline.aligner import LABEL, TXN, Aligner
from app.pipeline.segments import NONE, Header
from app.pipeline.statelog import Feeder, Writer, replay
from app.pipeline.view import TerminalView
from features.batch import compute_features
from features.rows import label_row, txn_row
from features.spec import DEFAULT_SPEC
from simulator import simulate
from simulator.serialize import label_values, transaction_values
from tests.support.fake_pipeline import (
    LABEL_TOPIC,
    TXN_TOPIC,
    FakeEvent,
    FakeHolder,
    FakeLogConsumer,
    FakeMessage,
    FakeScorer,
    SharedLog,
    events,
    fake_model,
    make_pipeline,
)

T0 = 1_522_540_800_000
DAY = 86_400_000


def txn(i: int, *, card: str = "c1", terminal: str = "T1", amount: float = 10.0,
        ts: int | None = None) -> bytes:
    return json.dumps({"txn_id": f"t{i}", "card_id": card, "terminal_id": terminal,
                       "amount": amount, "currency": "EUR",
                       "ts": T0 + i * 1000 if ts is None else ts}).encode()


def run(coro):
    return asyncio.run(coro)


# -- the agent's handle ------------------------------------------------------------------------

def test_valid_invalid_and_poison_mix():
    async def go():
        p, ports, _ = make_pipeline(holder=FakeHolder(fake_model()))
        p.assign([0], {}, {})
        values = [txn(0), b"{not json", txn(2), b"[" * 10_000 + b"]" * 10_000, None,
                  b"x" * 10_000_000, txn(6), json.dumps({"txn_id": "t\x00", "card_id": "c1",
                                                          "terminal_id": "T1", "amount": 1.0,
                                                          "currency": "EUR", "ts": T0}).encode()]
        evs = events(TXN_TOPIC, 0, values)
        await p.handle(evs)
        await p.tick()
        return p, ports, evs

    p, ports, evs = run(go())
    enriched = [json.loads(v) for _, v, _ in ports.out["transactions-enriched"]]
    assert [e["txn_id"] for e in enriched] == ["t0", "t2", "t6"]
    assert len(ports.out["ml-predictions"]) == 3
    reasons = [d["headers"]["reason"] for d in ports.dlq.sent]
    assert len(reasons) == 5 and all(r for r in reasons)
    assert all(e.acked for e in evs), "every event acknowledged once handled"
    assert max(len(d["value"] or b"") for d in ports.dlq.sent) < 1_100_000


def test_exception_in_one_event_dead_letters_that_event_only(monkeypatch):
    from app.pipeline import agent as agent_module

    real = agent_module.transaction_features

    def flaky(txn, spec):
        if txn["txn_id"] == "t1":
            raise ZeroDivisionError("boom")
        return real(txn, spec)

    monkeypatch.setattr(agent_module, "transaction_features", flaky)

    async def go():
        p, ports, _ = make_pipeline(holder=FakeHolder(fake_model()))
        p.assign([0], {}, {})
        evs = events(TXN_TOPIC, 0, [txn(i) for i in range(4)])
        await p.handle(evs)
        await p.tick()
        return ports, evs

    ports, evs = run(go())
    assert [json.loads(v)["txn_id"] for _, v, _ in ports.out["transactions-enriched"]] == [
        "t0", "t2", "t3"]
    assert [d["headers"]["reason"] for d in ports.dlq.sent] == [b"processing_error"]
    assert all(e.acked for e in evs)


def test_failing_batched_onnx_run_is_isolated_per_event():
    scorer = FakeScorer(poison_amount=666.0)

    async def go():
        p, ports, _ = make_pipeline(holder=FakeHolder(fake_model(scorer=scorer)))
        p.assign([0], {}, {})
        evs = events(TXN_TOPIC, 0, [txn(i, amount=666.0 if i == 3 else 10.0)
                                    for i in range(6)])
        await p.handle(evs)
        await p.tick()
        return ports, evs

    ports, evs = run(go())
    scored = [json.loads(v)["txn_id"] for _, v, _ in ports.out["ml-predictions"]]
    assert scored == ["t0", "t1", "t2", "t4", "t5"]
    assert [d["headers"]["reason"] for d in ports.dlq.sent] == [b"processing_error"]
    assert scorer.calls == 1 + 6  # the batch, then one run per event
    assert all(e.acked for e in evs)


def test_hold_without_a_model_processes_skips_and_dead_letters_nothing():
    holder = FakeHolder(None)

    async def go():
        p, ports, _ = make_pipeline(holder=holder, queue_max_events=10)
        p.assign([0], {}, {})
        evs = events(TXN_TOPIC, 0, [txn(i) for i in range(25)])
        for i in range(0, 25, 5):
            await p.handle(evs[i:i + 5])
            await p.tick()
        assert not ports.out and not ports.dlq.sent
        assert not any(e.acked for e in evs)
        assert ports.paused == {(TXN_TOPIC, 0)}, "a full queue pauses its partition"
        assert p.holding
        holder.champion = fake_model()  # the model loads
        await p.tick()
        await p.tick()
        return p, ports, evs

    p, ports, evs = run(go())
    assert len(ports.out["ml-predictions"]) == 25
    assert all(e.acked for e in evs)
    assert ports.resumed and ports.resumed[0][:2] == (TXN_TOPIC, 0)
    assert ports.resumed[0][2] == 24  # resumed after the last delivered offset


def test_rebalance_releases_everything_held_unacknowledged():
    async def go():
        p, ports, _ = make_pipeline(holder=FakeHolder(None))
        p.assign([0], {}, {})
        evs = events(TXN_TOPIC, 0, [txn(i) for i in range(5)])
        await p.handle(evs)
        held = p.revoke()
        late = events(TXN_TOPIC, 0, [txn(9)], start=5)
        await p.handle(late)  # during the rebalance: released at once
        return p, ports, evs, held, late

    p, ports, evs, held, late = run(go())
    assert held == evs and not any(e.acked for e in evs)
    assert ports.released == late
    # nothing was processed: the drain has nothing to finish, and forgets the partitions
    assert run(p.drain()) == []
    assert p.stats()["queued"] == 0 and p.stats()["held"] == 0


def test_a_rebalance_finishes_what_was_processed_and_releases_the_rest():
    log = SharedLog(1)

    async def go():
        holder = FakeHolder(fake_model())
        p, ports, _ = make_pipeline(holder=holder, log=log, flush_ms=60_000.0,
                                    flush_rows=1_000_000)
        p.assign([0], {}, {})
        done = events(TXN_TOPIC, 0, [txn(i) for i in range(5)])
        await p.handle(done)  # processed and published; their segment not written yet
        assert not any(e.acked for e in done) and log.parts[0] == []
        holder.champion = None  # hold: what comes next stays queued
        queued = events(TXN_TOPIC, 0, [txn(i) for i in range(5, 8)], start=5)
        await p.handle(queued)
        released = p.revoke()
        rest = await p.drain()
        return p, ports, done, queued, released, rest

    p, ports, done, queued, released, rest = run(go())
    # the processed ones: their rows in the state log, then acknowledged (committed at the
    # rebalance, so nobody processes them again); the queued ones released unacknowledged
    assert all(e.acked for e in done) and not any(e.acked for e in queued)
    assert released == queued and rest == []
    assert len(ports.out["ml-predictions"]) == 5
    cards, n, _ = run(replay(FakeLogConsumer(log), "state-log", {0: 5}, DEFAULT_SPEC,
                             {"allowed_lateness_ms": 60_000}))
    assert n == 5 and len(cards[0]["c1"]) == 5
    assert p.stats()["queued"] == 0 and p.stats()["held"] == 0


def test_events_the_state_log_holds_are_acknowledged_not_processed_again():
    async def go():
        p, ports, _ = make_pipeline(holder=FakeHolder(fake_model()))
        # the log holds offsets 0-2 of partition 0 (done, outputs delivered) but the commit
        # says 1: a redelivery of 1 and 2 is acknowledged without being processed again
        p.assign([0], {}, {(TXN_TOPIC, 0): 1}, applied={(TXN_TOPIC, 0): 3})
        evs = events(TXN_TOPIC, 0, [txn(i) for i in range(1, 6)], start=1)
        await p.handle(evs)
        await p.tick()
        return p, ports, evs

    p, ports, evs = run(go())
    assert all(e.acked for e in evs)
    scored = [json.loads(v)["txn_id"] for _, v, _ in ports.out["ml-predictions"]]
    assert scored == ["t3", "t4", "t5"] and p.counts["replayed"] == 2


def test_no_state_log_row_before_its_outputs_are_delivered():
    log = SharedLog(1)

    async def go():
        p, ports, _ = make_pipeline(holder=FakeHolder(fake_model()), log=log)
        p.assign([0], {}, {})
        ports.fail_next = OSError("broker gone")  # t0's enriched record is not delivered
        with pytest.raises(DeliveryFailed):
            await p.handle(events(TXN_TOPIC, 0, [txn(0), txn(1)]))
        return p

    run(go())
    assert log.parts[0] == []  # nobody will take t0 and t1 for done


def test_stale_generation_events_are_released_not_processed():
    async def go():
        p, ports, _ = make_pipeline(holder=FakeHolder(fake_model()))
        p.assign([0], {}, {})
        old = FakeEvent(FakeMessage(TXN_TOPIC, 0, 0, b"c", txn(0), generation_id=0))
        await p.handle([old])
        return ports, old

    ports, old = run(go())
    assert ports.released == [old] and not ports.out and not old.acked


def test_acks_wait_for_delivery_and_stop_at_a_failed_send():
    async def go():
        p, ports, _ = make_pipeline(holder=FakeHolder(fake_model()))
        p.assign([0], {}, {})
        evs = events(TXN_TOPIC, 0, [txn(i) for i in range(3)])
        ports.fail_next = OSError("broker gone")  # the first send (t0's enriched) fails
        with pytest.raises(DeliveryFailed):
            await p.handle(evs)
            await p.tick()
        return evs

    evs = run(go())
    assert not any(e.acked for e in evs), "nothing acknowledged past a failed send"


def test_in_order_acks_with_invalid_events_between_labels_and_txns():
    async def go():
        p, ports, _ = make_pipeline(holder=FakeHolder(fake_model()))
        p.assign([0], {}, {})
        label = json.dumps({"txn_id": "t0", "card_id": "c1", "terminal_id": "T1",
                            "is_fraud": 1, "ts": T0, "reported_at": T0 + 8 * DAY}).encode()
        evs = events(LABEL_TOPIC, 0, [label, b"bad"]) + events(TXN_TOPIC, 0, [txn(0)])
        await p.handle(evs)
        await p.tick()
        return p, evs

    p, evs = run(go())
    assert all(e.acked for e in evs)
    assert p.stats()["labels"] == 1 and p.stats()["invalid"] == 1


def test_producer_duplicate_is_dropped_and_counted():
    async def go():
        p, ports, _ = make_pipeline(holder=FakeHolder(fake_model()))
        p.assign([0], {}, {})
        await p.handle(events(TXN_TOPIC, 0, [txn(0), txn(1), txn(1)]))
        await p.tick()
        return p, ports

    p, ports = run(go())
    assert len(ports.out["transactions-enriched"]) == 2 and p.stats()["duplicates"] == 1


# -- the aligner, the view and the gate --------------------------------------------------------

def test_aligner_merges_by_event_time_labels_first_and_waits_only_for_lagging_inputs():
    al = Aligner(max_queued=100)
    al.own([0, 1])
    al.add(TXN, 0, 10, 0, "p0 t10")
    al.add(TXN, 0, 20, 1, "p0 t20")
    al.add(LABEL, 1, 10, 0, "p1 l10")
    lagging = {(TXN, 1)}
    out = []
    while (item := al.select(lambda k, p: (k, p) in lagging)) is not None:
        out.append(al.pop(item).payload)
    # p1's transactions lag and nothing of them arrived: wait before anything
    assert out == [] and al.waiting_on == (TXN, 1)
    al.add(TXN, 1, 15, 0, "p1 t15")
    while (item := al.select(lambda k, p: (k, p) in lagging)) is not None:
        out.append(al.pop(item).payload)
    # after t15 of p1, its queue is empty and lagging again: t20 waits
    assert out == ["p1 l10", "p0 t10", "p1 t15"] and al.waiting_on == (TXN, 1)
    lagging.clear()
    assert al.pop(al.select(lambda k, p: False)).payload == "p0 t20"


def test_gate_blocks_until_the_foreign_partition_is_complete_enough():
    view = TerminalView(DEFAULT_SPEC, lateness_ms=2 * DAY, partitions=2)
    t = T0 + 10 * DAY
    assert view.blocking(t, [1]) == 1
    view.progress[1].advance(Header(b"B" * 16, 1, 0, 0, 0, 0, t - DAY, t - 1, False), True)
    assert view.blocking(t, [1]) == 1, "a label reported before t may still come"
    view2 = TerminalView(DEFAULT_SPEC, lateness_ms=2 * DAY, partitions=2)
    view2.progress[1].advance(Header(b"B" * 16, 1, 0, 0, 0, 0, t - 2 * DAY, t, False), True)
    assert view2.blocking(t, [1]) == 1, "transactions more than the gate lag behind"
    view.progress[1].advance(Header(b"B" * 16, 1, 0, 0, 0, 0, t - DAY, t, False), True)
    assert view.blocking(t, [1]) is None
    idle = TerminalView(DEFAULT_SPEC, lateness_ms=2 * DAY, partitions=2)
    idle.progress[1].advance(Header(b"B" * 16, 1, NONE, NONE, 0, 0, NONE, NONE, True), True)
    assert idle.blocking(t, [1]) is None, "a caught-up partition never blocks"
    idle.progress[1].read_all = False
    assert idle.blocking(t, [1]) == 1, "...unless the feeder has not read all of it"


def test_view_lateness_must_stay_below_the_terminal_delay():
    with pytest.raises(ValueError, match="below"):
        TerminalView(DEFAULT_SPEC, lateness_ms=7 * DAY)


# -- the state log -----------------------------------------------------------------------------

def _row(i: int, offset: int, card: str = "c1", ts: int | None = None):
    return txn_row({"txn_id": f"t{i}", "card_id": card, "terminal_id": "T1", "amount": 1.0 + i,
                    "ts": T0 + i * 1000 if ts is None else ts}, offset)


def test_segment_codec_round_trip_and_damage():
    head = Header(b"w" * 16, 3, T0, T0 + 5, 10, -1, T0 - 60_000, T0, True)
    rows = [_row(i, i) for i in range(5)]
    labels = [label_row({"txn_id": "t1", "terminal_id": "T1", "ts": T0, "reported_at": T0 + 9,
                         "is_fraud": True}, 4)]
    blob = segments.encode(head, rows, labels)
    assert segments.decode(blob) == (head, rows, labels)
    with pytest.raises(ValueError):
        segments.decode(blob[:-3])
    with pytest.raises(ValueError):
        segments.decode_header(blob[:10])


def test_replay_records_every_row_of_the_log_once_and_says_how_far_it_goes():
    log = SharedLog(2)

    async def go():
        writer = Writer(b"A" * 16, log.sender())
        for i in range(10):
            writer.txn(0, _row(i, i))
            if i % 3 == 2:
                await writer.flush(lambda p: (0, 0, False))
        await writer.flush(lambda p: (0, 0, False))
        again = Writer(b"B" * 16, log.sender())  # rows 8 and 9 written a second time
        again.txn(0, _row(8, 8))
        again.txn(0, _row(9, 9))
        await again.flush(lambda p: (0, 0, False))
        writer.txn(1, _row(50, 0, card="c9"))
        await writer.flush(lambda p: (0, 0, False))
        done: dict = {}
        # committed offsets behind the log (a commit lost at a rebalance): the log decides
        out = await replay(FakeLogConsumer(log), "state-log", {0: 7, 1: 0}, DEFAULT_SPEC,
                           {"allowed_lateness_ms": 60_000}, done=done)
        return out, done

    (cards, n, ends), done = run(go())
    assert n == 11 and len(cards[0]["c1"]) == 10 and len(cards[1]["c9"]) == 1
    assert ends == {0: 5, 1: 1}
    assert done == {0: (10, -1), 1: (1, -1)}


def test_feeder_merges_partitions_by_time_skips_its_own_and_the_uncommitted():
    view = TerminalView(DEFAULT_SPEC, lateness_ms=DAY, partitions=2)
    feeder = Feeder(view, b"A" * 16, 2)
    # partition 0: another writer, far ahead in event time; partition 1 starts earlier
    ahead = segments.encode(Header(b"B" * 16, 0, T0 + 3 * DAY, T0 + 3 * DAY, 1, -1, 0, 0,
                                   False), [_row(0, 0, ts=T0 + 3 * DAY)], [])
    early = segments.encode(Header(b"C" * 16, 1, T0, T0, 1, -1, 0, 0, False),
                            [_row(1, 0, ts=T0)], [])
    mine = segments.encode(Header(b"A" * 16, 1, T0 + 1, T0 + 1, 2, -1, 0, 0, False),
                           [_row(2, 1, ts=T0 + 1)], [])
    feeder.add(0, 0, ahead)
    feeder.highwater = {0: 1, 1: 3}
    assert feeder.apply() == 0, "partition 1 lags with nothing read: wait for it"
    feeder.add(1, 0, early)
    feeder.add(1, 1, mine)
    later = segments.encode(Header(b"C" * 16, 1, T0 + 4 * DAY, T0 + 4 * DAY, 3, -1, 0, 0,
                                   False), [_row(3, 2, ts=T0 + 4 * DAY)], [])
    feeder.add(1, 2, later)
    assert feeder.apply() == 3
    assert view.late == 0, "merged by time: nothing arrived later than the view accepts"
    assert "t2" not in view.states["T1"], "its own segment is skipped"
    # once this worker owns partition 1 from committed offset 3, rows from 3 on are skipped
    feeder.assign({1: (3, 0)}, {1: 4})
    redo = segments.encode(Header(b"C" * 16, 1, T0 + 4 * DAY, T0 + 4 * DAY, 4, -1, 0, 0,
                                  False), [_row(4, 3, ts=T0 + 4 * DAY + 5)], [])
    feeder.add(1, 3, redo)
    feeder.highwater[1] = 4
    assert not feeder.ready()
    feeder.apply()
    assert feeder.ready() and "t4" not in view.states["T1"] and feeder.skipped == 1


# -- stream == batch, in process ---------------------------------------------------------------

@pytest.fixture(scope="module")
def traffic():
    sim = simulate("realistic", seed=5, n_customers=120, n_terminals=60, n_days=24)
    txns, labels = sim.transactions(), sim.labels()
    batch = compute_features(txns.to_pandas(), labels.to_pandas()).set_index("txn_id")
    tx_values = transaction_values(txns)
    label_vals = label_values(labels)
    cards = txns.column("card_id").to_pylist()
    label_cards = labels.column("card_id").to_pylist()
    return {"tx": list(zip(cards, tx_values, strict=True)),
            "labels": list(zip(label_cards, label_vals, strict=True)), "batch": batch}


def _partition(card: str, n: int) -> int:
    return zlib.crc32(card.encode()) % n


def _inputs(traffic, n: int) -> dict[tuple[str, int], list[FakeEvent]]:
    out: dict[tuple[str, int], list[FakeEvent]] = defaultdict(list)
    for topic, records in ((TXN_TOPIC, traffic["tx"]), (LABEL_TOPIC, traffic["labels"])):
        for card, value in records:
            p = _partition(card, n)
            queue = out[(topic, p)]
            queue.append(FakeEvent(FakeMessage(topic, p, len(queue), card.encode(), value)))
    return out


def _assert_equal_to_batch(enriched: list[bytes], batch: pd.DataFrame) -> None:
    by_id: dict[str, dict] = {}
    for raw in enriched:
        value = json.loads(raw)
        previous = by_id.setdefault(value["txn_id"], value)
        assert previous["features"] == value["features"], "a redelivery changed its features"
    assert set(by_id) == set(batch.index)
    names = DEFAULT_SPEC.names
    got = np.array([[by_id[t]["features"][n] for n in names] for t in batch.index])
    for j, name in enumerate(names):
        want = batch[name].to_numpy(float)
        bad = np.flatnonzero(got[:, j] != want) if "count" in name else np.flatnonzero(
            ~np.isclose(got[:, j], want, rtol=1e-9, atol=0.0))
        assert bad.size == 0, f"{name}: {bad.size} differ, e.g. {batch.index[bad[0]]}"


class _Worker:
    """One in-process worker: its pipeline, what it owns, where it is in each input."""

    def __init__(self, name: bytes, owned: list[int], n: int, log: SharedLog,
                 inputs, committed: dict | None = None, seed: int = 0) -> None:
        self.pipeline, self.ports, self.feeder = make_pipeline(
            partitions=n, holder=FakeHolder(fake_model()), log=log, writer_id=name * 16,
            batch_max_events=64, queue_max_events=400)
        self.log, self.inputs, self.owned = log, inputs, owned
        self.read: dict[int, int] = {}
        self.rng = random.Random(seed)
        committed = committed or {}
        self.pos = {(t, p): committed.get((t, p), 0) for t in (TXN_TOPIC, LABEL_TOPIC)
                    for p in owned}
        for (t, p), events_ in inputs.items():
            self.ports.highwater[(t, p)] = len(events_)

    async def start(self) -> None:
        commits = {p: self.pos[(TXN_TOPIC, p)] for p in self.owned}
        cards, _, ends = await replay(FakeLogConsumer(self.log), "state-log", commits,
                                      DEFAULT_SPEC, self.pipeline.card_config)
        self.feeder.assign({p: (commits[p], self.pos[(LABEL_TOPIC, p)]) for p in self.owned},
                           ends)
        self.pipeline.assign(self.owned, cards, dict(self.pos))

    async def step(self) -> bool:
        """Deliver one random chunk of one owned input (as a fetch would), then tick."""
        self.log.feed(self.feeder, self.read)
        todo = [tp for tp in self.pos if self.pos[tp] < len(self.inputs.get(tp, []))
                and (tp[0], tp[1]) not in self.ports.paused]
        if todo:
            tp = self.rng.choice(todo)
            start = self.pos[tp]
            chunk = self.inputs[tp][start:start + self.rng.randint(1, 300)]
            self.pos[tp] = start + len(chunk)
            await self.pipeline.handle(chunk)
        await self.pipeline.tick()
        return bool(todo)

    def enriched(self) -> list[bytes]:
        return [v for _, v, _ in self.ports.out["transactions-enriched"]]


def test_one_worker_stream_equals_batch(traffic):
    log = SharedLog(2)
    inputs = _inputs(traffic, 2)

    async def go():
        worker = _Worker(b"A", [0, 1], 2, log, inputs)
        await worker.start()
        while await worker.step() or worker.pipeline.stats()["queued"]:
            pass
        for _ in range(5):
            await worker.step()
        return worker

    worker = run(go())
    _assert_equal_to_batch(worker.enriched(), traffic["batch"])
    assert worker.pipeline.view.late == 0 and worker.pipeline.stats()["late"] == 0
    assert worker.pipeline.stats()["held"] == 0, "everything acknowledged"
    assert len(worker.ports.out["ml-predictions"]) == len(traffic["tx"])


def test_two_workers_share_the_terminal_view_through_the_state_log(traffic):
    log = SharedLog(2)
    inputs = _inputs(traffic, 2)

    async def go():
        a = _Worker(b"A", [0], 2, log, inputs, seed=1)
        b = _Worker(b"B", [1], 2, log, inputs, seed=2)
        await a.start()
        await b.start()
        rounds = 0
        while True:
            rounds += 1
            assert rounds < 20_000, "the workers stopped making progress (a mutual wait?)"
            busy = [await w.step() for w in (a, b)]
            if not any(busy) and not any(w.pipeline.stats()["queued"] for w in (a, b)):
                break
        for _ in range(5):
            for w in (a, b):
                await w.step()
        return a, b

    a, b = run(go())
    _assert_equal_to_batch(a.enriched() + b.enriched(), traffic["batch"])
    for w in (a, b):
        assert w.pipeline.view.late == 0 and w.pipeline.stats()["late"] == 0
        assert w.pipeline.stats()["held"] == 0


def test_crash_and_restart_from_the_state_log_equals_batch(traffic):
    log = SharedLog(2)
    inputs = _inputs(traffic, 2)

    async def go():
        first = _Worker(b"A", [0, 1], 2, log, inputs, seed=3)
        await first.start()
        for _ in range(8):
            await first.step()
        # the crash: the committed offsets are the acknowledged prefix, whatever was sent
        committed = {}
        for tp in first.pos:
            acked = [e.message.offset for e in inputs[tp] if e.acked]
            committed[tp] = (max(acked) + 1) if acked else 0
        assert 0 < sum(committed.values()) < sum(len(v) for v in inputs.values())
        fresh = {tp: [FakeEvent(FakeMessage(*tp, e.message.offset, e.message.key,
                                            e.message.value)) for e in evs]
                 for tp, evs in inputs.items()}
        second = _Worker(b"B", [0, 1], 2, log, fresh, committed=committed, seed=4)
        await second.start()
        while await second.step() or second.pipeline.stats()["queued"]:
            pass
        for _ in range(5):
            await second.step()
        return first, second

    first, second = run(go())
    _assert_equal_to_batch(first.enriched() + second.enriched(), traffic["batch"])
    assert second.pipeline.view.late == 0
