"""The consumer side of the transport: a fetch wait that is a setting, and a cheaper drain.

Installed per app by :func:`app.faust_ext.apply` (``app.transport.Consumer`` becomes a
subclass of :class:`FetchWaitConsumer`), checked against faust-streaming 0.15.3 and
aiokafka 0.14.0 (the versions ``pyproject.toml`` pins; ``tests/unit/test_faust_ext.py``
asserts that each extension is active under them).

Consumer fetch wait hard-coded at 1,500 ms (fix 2)
---------------------------------------------------
``_create_worker_consumer`` passes ``fetch_max_wait_ms=1500`` to
``aiokafka.AIOKafkaConsumer`` and no Faust setting controls it. Tansu answers a fetch on a
caught-up partition only when the full wait runs out; it does not wake up when new data
arrives. So every event arriving at an idle worker waits up to 1.5 s.
:class:`FetchWaitConsumer` and its thread subclass call Faust's own builder and then set the
consumer's ``_fetch_max_wait_ms``. aiokafka reads that attribute when ``start()`` builds its
Fetcher, which is after this point. :func:`app.faust_ext.apply` installs the subclass on
*this app's* transport only (``app.transport.Consumer``), so the broker URL scheme stays the
same and other apps are not affected. The same subclass asks for exact end offsets on Tansu
(:func:`app.faust_ext.tables.exact_end_offsets`, fix 7) when Faust reads highwaters.

Fetch wait while lagging (fix 8)
--------------------------------
Tansu ends a fetch when its wait runs out even while it is still reading the log, and
reading costs more the more batches the partition stores (a producer with a 1 ms linger at
1,000 ev/s writes about one batch per record). With the 10 ms wait, a worker that fell
behind on such a log on a loaded machine got fetch responses with no records: its positions
stayed put for minutes while the highwaters in those responses kept growing, and nothing came
out (the aligner waits for the partition that lags). A plain consumer at the same offsets got
21,789 records in 342 ms with a 500 ms wait; with 10 ms, 16 to 1,124 of 5,000.
:func:`adaptive_fetch_wait` sends :data:`LAGGING_FETCH_MAX_WAIT_MS` while a partition in the
request lags behind its highwater (Tansu answers as soon as it has read them) and the short
wait once caught up (where Tansu holds the fetch for the whole wait).

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
   (:class:`app.faust_ext.sensors.LeanMonitor` drops them): 5-15 %.
6. uvloop instead of asyncio's loop (``event_loop="uvloop"``,
   :func:`app.faust_ext.use_event_loop`): 10-20 %. It cuts the cost of every task, future
   and callback that Faust and aiokafka create per event.

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
* Partitions: 1 or 8 changes little for the worker. It does change Tansu
  (docs/operations.md: its fetch cost grows with the stored batches).
* ``producer_linger`` 10 ms instead of 5 ms: +10-15 % at saturation
  (fewer, larger produce batches). Settings that made no measurable
  difference here: ``broker_commit_every`` / ``broker_commit_interval``
  (commits are cheap), ``stream_buffer_maxsize`` (with fix 4), the
  ``broker_max_poll_records`` and fetch sizes (Tansu returns the whole
  partition in one fetch whatever the fetch size).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from faust.transport.drivers import aiokafka as _faust_aiokafka

from app.faust_ext.tables import exact_end_offsets

__all__ = [
    "DEFAULT_FETCH_MAX_WAIT_MS",
    "FAUST_FETCH_MAX_WAIT_MS",
    "FetchWaitConsumer",
    "FetchWaitConsumerThread",
    "fast_drain_supported",
]

log = logging.getLogger(__name__)

#: Fetch wait for low latency on Tansu. p99 is ~2-3x this value at 500 msg/s.
DEFAULT_FETCH_MAX_WAIT_MS = 10
#: What Faust hard-codes (used when ``fetch_max_wait_ms=None``).
FAUST_FETCH_MAX_WAIT_MS = 1500


#: Fetch wait while an assigned partition lags (fix 8). Tansu ends a fetch when its wait runs
#: out even while it is still reading the log, and reading costs more the more batches are
#: stored: a worker behind on a long log of small batches got no records at all from 10 ms
#: fetches (positions frozen for minutes while the highwater moved) on a loaded machine.
LAGGING_FETCH_MAX_WAIT_MS = 500


def fetch_wait_ms(assignment: Any, caught_up_ms: int, lagging_ms: int,
                  buffered: Any = ()) -> int:
    """The fetch wait for the next request: ``lagging_ms`` when a partition it will fetch has
    records on the broker beyond its position (the highwater of its last fetch response is
    ahead: that response stopped short), else ``caught_up_ms`` (Tansu holds a fetch of a
    caught-up partition for the whole wait: the latency floor). Partitions with fetched
    records not consumed yet (``buffered``) are not in the request and do not count."""
    for tp in assignment.tps:
        if tp in buffered:
            continue
        state = assignment.state_value(tp)
        highwater = state.highwater
        if highwater is not None and state.has_valid_position and highwater > state.position:
            return lagging_ms
    return caught_up_ms


def adaptive_fetch_wait(fetcher: Any, caught_up_ms: int,
                        lagging_ms: int = LAGGING_FETCH_MAX_WAIT_MS) -> None:
    """Make aiokafka's ``fetcher`` choose :func:`fetch_wait_ms` before building each fetch
    request (it reads ``_fetch_max_wait_ms`` per request, in ``_get_actions_per_node``)."""
    if lagging_ms <= caught_up_ms:
        return
    original = fetcher._get_actions_per_node

    def _get_actions_per_node(assignment: Any) -> Any:
        fetcher._fetch_max_wait_ms = fetch_wait_ms(assignment, caught_up_ms, lagging_ms,
                                                   fetcher._records)
        return original(assignment)

    fetcher._get_actions_per_node = _get_actions_per_node


class FetchWaitConsumerThread(_faust_aiokafka.AIOKafkaConsumerThread):
    """Consumer thread that overrides Faust's hard-coded ``fetch_max_wait_ms=1500``."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = int(getattr(self.consumer, "fetch_max_wait_ms", DEFAULT_FETCH_MAX_WAIT_MS))
        if not hasattr(consumer, "_fetch_max_wait_ms"):  # pragma: no cover - aiokafka drift
            raise RuntimeError(
                "aiokafka.AIOKafkaConsumer has no _fetch_max_wait_ms; "
                "app.faust_ext.transport needs updating for this aiokafka version"
            )
        # AIOKafkaConsumer stores the constructor argument here; start() builds
        # its Fetcher from it, so this is picked up.
        consumer._fetch_max_wait_ms = wait_ms
        return consumer

    async def on_start(self) -> None:  # pragma: no cover - worker thread
        await super().on_start()
        consumer = self._consumer
        if consumer is not None and consumer._fetcher is not None:
            adaptive_fetch_wait(consumer._fetcher, int(consumer._fetch_max_wait_ms))

    async def _highwaters(self, partitions: Any) -> Any:
        reported = await super()._highwaters(partitions)
        if not getattr(self.consumer, "exact_end_offsets", False) or self.consumer.in_transaction:
            return reported
        bootstrap = self._ensure_consumer()._client._bootstrap_servers
        return await exact_end_offsets(bootstrap, reported)


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
                log.warning("faust_ext: faust %s changed (sha %s): fast drain disabled, "
                            "re-check app.faust_ext.transport._fast_drain_messages", name, sha)
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
