"""The helpers of app/faust_ext for the streaming core, driven with fake events and consumers:
in-order acks, pausing without loss, partition progress, rebalance callbacks, release_held."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from weakref import WeakSet

import faust
import pytest
from aiokafka.structs import TopicPartition
from faust.types import TP

from app.faust_ext import apply, pausing, progress, rebalance, release_held
from app.faust_ext.acks import InOrderAcks

# -- fakes -------------------------------------------------------------------------------------


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        self.tp = TP(topic, partition)
        self.acked = False

    def __hash__(self) -> int:
        return id(self)


class FakeEvent:
    def __init__(self, topic: str, partition: int, offset: int, log: list) -> None:
        self.message = FakeMessage(topic, partition, offset)
        self._log = log

    def ack(self) -> bool:
        self._log.append((self.message.partition, self.message.offset))
        return True


def events(log, partition, offsets, topic="t"):
    return [FakeEvent(topic, partition, o, log) for o in offsets]


# -- InOrderAcks -----------------------------------------------------------------------------


def test_only_the_contiguous_done_prefix_of_each_partition_is_acked() -> None:
    acked: list = []
    acks = InOrderAcks()
    p0 = events(acked, 0, range(5))
    p1 = events(acked, 1, range(3))
    for a, b in zip(p0, p1 + [None, None], strict=True):
        acks.received(a)
        if b is not None:
            acks.received(b)
    assert acks.done(p0[2]) == [] and acks.done(p0[1]) == []  # 0 still running: a hole
    assert acks.done(p1[0]) == [p1[0]]  # partitions are independent
    assert acked == [(1, 0)]
    assert acks.done(p0[0]) == [p0[0], p0[1], p0[2]]
    assert acked[1:] == [(0, 0), (0, 1), (0, 2)]
    assert acks.done(p0[4]) == [] and acks.pending(("t", 0)) == 2
    assert acks.done(p0[3]) == [p0[3], p0[4]]
    assert acks.pending() == 2 and acks.last_received() == {("t", 0): 4, ("t", 1): 2}


def test_revoked_partitions_are_forgotten_and_their_late_done_never_acks() -> None:
    acked: list = []
    acks = InOrderAcks()
    p0, p1 = events(acked, 0, range(3)), events(acked, 1, range(2))
    for ev in p0 + p1:
        acks.received(ev)
    acks.done(p0[1])
    held = acks.revoked([TP("t", 0)])
    assert held == p0  # every event of p0 not acked, for release_held
    assert acks.done(p0[0]) == [] and acks.done(p0[2]) == []
    assert acked == []
    # the partition comes back: redelivered copies are new events, the old ones stay dead
    again = events(acked, 0, range(3))
    for ev in again:
        assert acks.received(ev)
    assert acks.done(p0[0]) == []
    assert acks.done(again[0]) == [again[0]]
    assert acks.keep_only([("t", 0)]) == p1 and acks.pending(("t", 1)) == 0


def test_a_redelivered_offset_within_one_assignment_is_not_registered_twice() -> None:
    acks = InOrderAcks()
    first, dup = events([], 0, [7])[0], events([], 0, [7])[0]
    assert acks.received(first) and not acks.received(dup)
    assert acks.done(dup) == []  # unknown to it: never acked
    assert acks.done(first) == [first]


def test_done_async_awaits_stream_ack() -> None:
    seen = []

    async def stream_ack(event):
        seen.append(event.message.offset)
        return True

    acks = InOrderAcks(ack=stream_ack)
    evs = events([], 0, range(2))
    for ev in evs:
        acks.received(ev)
    with pytest.raises(TypeError):
        acks.done(evs[0])  # a coroutine ack needs done_async
    acks2 = InOrderAcks(ack=stream_ack)
    for ev in evs:
        acks2.received(ev)
    assert asyncio.run(acks2.done_async(evs[1])) == []
    assert asyncio.run(acks2.done_async(evs[0])) == evs
    assert seen == [0, 1]


# -- pausing -----------------------------------------------------------------------------------


class FakeConsumer:
    def __init__(self, assigned) -> None:
        self._assigned = set(assigned)
        self._active = set(assigned)
        self._paused_partitions: set = set()
        self._buffered_partitions: set = set()
        self._read_offset: dict = {}
        self._committed_offset: dict = {}
        self.seeks: list = []
        self.resumed: list = []
        self._unacked_messages: WeakSet = WeakSet()
        self._waiting_for_ack = None

    def assignment(self):
        return set(self._assigned)

    def pause_partitions(self, tps):
        assert all(isinstance(tp, TP) for tp in tps)
        self._active -= set(tps)
        self._paused_partitions |= set(tps)

    def resume_partitions(self, tps):
        assert all(isinstance(tp, TP) for tp in tps)  # Faust's fetcher asserts this
        self.resumed.append(set(tps))
        self._active |= set(tps)
        self._paused_partitions -= set(tps)

    async def seek(self, tp, offset):
        self.seeks.append((tp, offset))
        self._read_offset[tp] = offset or None


def test_pause_converts_to_faust_tps_and_undoes_the_buffered_state() -> None:
    a, b = TP("t", 0), TP("t", 1)
    consumer = FakeConsumer({a, b})
    consumer._buffered_partitions.add(a)
    app = SimpleNamespace(consumer=consumer)
    ev = events([], 0, [3])[0]
    assert pausing.pause(app, [TopicPartition("t", 0), ev, ("t", 1)]) == {a, b}
    assert consumer._buffered_partitions == set()
    assert pausing.paused(app) == {a, b}


def test_resume_seeks_after_the_last_delivered_record_before_resuming() -> None:
    a, b, c, gone = TP("t", 0), TP("t", 1), TP("t", 2), TP("t", 3)
    consumer = FakeConsumer({a, b, c})
    app = SimpleNamespace(consumer=consumer)
    consumer._read_offset = {a: 15, b: 40}  # a: delivered up to 15; b: just sought to 40
    consumer._committed_offset = {b: 40, c: 7}  # c: nothing delivered since the assignment
    pausing.pause(app, [a, b, c])
    consumer._paused_partitions.add(gone)
    sought = asyncio.run(pausing.resume(app, [a, b, c, gone]))
    assert sought == {a: 16, b: 40, c: 7}
    assert consumer.seeks == [(a, 16), (b, 40), (c, 7)]  # all seeks before the resume
    assert consumer.resumed == [{a, b, c}]
    assert pausing.paused(app) == set()


def test_the_callers_own_record_of_delivered_offsets_wins() -> None:
    a = TP("t", 0)
    consumer = FakeConsumer({a})
    consumer._read_offset = {a: 40}
    consumer._committed_offset = {a: 40}
    app = SimpleNamespace(consumer=consumer)
    assert pausing.resume_offset(app, a, {("t", 0): 44}) == 45
    assert pausing.resume_offset(app, a) == 40
    assert pausing.resume_offset(app, TP("t", 9)) == 0


# -- progress ----------------------------------------------------------------------------------


def _progress_app(states, records=(), read=None, committed=None):
    consumer = FakeConsumer(set(states))
    consumer._read_offset = dict(read or {})
    consumer._committed_offset = dict(committed or {})
    assignment = SimpleNamespace(state_value=states.get)
    ak = SimpleNamespace(_subscription=SimpleNamespace(
        subscription=SimpleNamespace(assignment=assignment)),
        _fetcher=SimpleNamespace(_records={tp: object() for tp in records}))
    consumer._thread = SimpleNamespace(_consumer=ak)
    return SimpleNamespace(consumer=consumer)


def _state(highwater, position, ts=1):
    return SimpleNamespace(highwater=highwater, position=position,
                           has_valid_position=position is not None, timestamp=ts)


def test_progress_tells_caught_up_from_lagging_partitions() -> None:
    tps = [TP("t", i) for i in range(5)]
    states = {tps[0]: _state(30, 30), tps[1]: _state(30, 20), tps[2]: _state(30, 30),
              tps[3]: _state(None, None), tps[4]: _state(30, 30)}
    app = _progress_app(states, records=[tps[2]], read={tps[0]: 29, tps[1]: 19, tps[2]: 9,
                                                        tps[4]: 20},
                        committed={tps[0]: 25})
    got = progress.partition_progress(app)
    assert [got[tp].lagging for tp in tps] == [False, True, True, True, True]
    assert got[tps[0]].highwater == 30 and got[tps[0]].committed == 25
    assert got[tps[0]].delivered == 29 and got[tps[2]].buffered
    # the caller's own record: p4 delivered to 29 although Faust's read offset says 20
    mine = progress.partition_progress(app, delivered={("t", 4): 29})
    assert not mine[tps[4]].lagging and mine[tps[4]].delivered == 29


def test_an_empty_caught_up_partition_is_not_lagging() -> None:
    tp = TP("t", 0)
    got = progress.partition_progress(_progress_app({tp: _state(0, 0)}))
    assert not got[tp].lagging


# -- rebalance hooks and release_held ------------------------------------------------------------


def _hooked_app():
    app = faust.App("hooks-x", broker="kafka://127.0.0.1:9")
    apply(app, tansu=False, event_loop=None)
    return app, rebalance.hooks(app)


def test_rebalance_start_from_the_consumer_thread_runs_callbacks_on_the_app_loop() -> None:
    app, hooks = _hooked_app()
    seen: list = []

    async def main():
        loop = asyncio.get_running_loop()
        hooks.bind_loop(loop)
        done = asyncio.Event()

        def sync_cb(a):
            seen.append(("sync", a is app, threading.current_thread() is threading.main_thread()))

        async def async_cb(a):
            await asyncio.sleep(0)
            seen.append(("async", hooks.rebalancing))
            done.set()

        hooks.on_start(sync_cb)
        hooks.on_start(async_cb)
        waiter = hooks.next_start()
        # Faust calls app.on_rebalance_start() in its consumer thread, not on the app's loop
        thread = threading.Thread(target=app.on_rebalance_start)
        thread.start()
        thread.join()
        assert app.rebalancing
        await asyncio.wait_for(done.wait(), 5)
        assert await asyncio.wait_for(waiter, 1) == 1
        completed: list = []

        async def on_complete(a):
            completed.append(hooks.rebalancing)

        hooks.on_complete(on_complete)
        await app.on_rebalance_complete.send()
        assert completed == [False] and not hooks.rebalancing
        hooks.remove(sync_cb)
        app.on_rebalance_start()  # from the loop itself: at once
        assert len([s for s in seen if s[0] == "sync"]) == 1

    asyncio.run(main())
    assert seen[0] == ("sync", True, True) and seen[1] == ("async", True)


def test_a_failing_callback_does_not_stop_the_others() -> None:
    app, hooks = _hooked_app()
    seen = []

    def bad(a):
        raise RuntimeError("boom")

    hooks.on_start(bad)
    hooks.on_start(lambda a: seen.append(1))
    hooks.report_start()
    assert seen == [1]


def test_release_held_forgets_events_and_a_late_ack_is_a_noop() -> None:
    consumer = FakeConsumer(set())
    app = SimpleNamespace(consumer=consumer)
    acked: list = []
    held = events(acked, 0, range(3))
    for ev in held:
        consumer._unacked_messages.add(ev.message)

    async def main():
        consumer._waiting_for_ack = asyncio.get_running_loop().create_future()
        assert release_held(app, held[:2]) == 2
        assert consumer._waiting_for_ack.done()  # wait_empty wakes at once
        assert release_held(app, [held[0].message]) == 0  # already released

    asyncio.run(main())
    assert set(consumer._unacked_messages) == {held[2].message}
    assert held[0].message.acked  # Faust's Message.ack and stream iterators skip it


def test_release_held_on_a_real_consumer_message_blocks_its_ack() -> None:
    from faust.types import Message

    app, _ = _hooked_app()
    consumer = app.consumer
    msg = Message("t", 0, 5, 0.0, None, None, b"k", b"v", None, tp=TP("t", 0))
    msg.refcount = 1
    consumer.track_message(msg)
    assert msg in consumer._unacked_messages
    assert release_held(app, [msg]) == 1
    assert msg not in consumer._unacked_messages
    assert msg.ack(consumer) is False  # a late ack records nothing
    assert consumer._acked.get(TP("t", 0)) in (None, [])
