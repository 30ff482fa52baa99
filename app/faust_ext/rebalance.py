"""Rebalances: learn at the earliest point that one starts and when it completed; release held
events so that a revocation does not wait for them.

What Faust does (faust-streaming 0.15.3, verified in /work/exp research, §2 and §6):

* aiokafka's rebalance listener calls ``app.on_rebalance_start()`` *synchronously, in Faust's
  consumer thread*, before anything else; that runs ``Sensor.on_rebalance_start`` of every
  sensor of the app. It is the earliest hook. The signal ``app.on_partitions_revoked`` and
  ``Agent.on_partitions_revoked`` run only after the revocation waited for every event an
  agent took and did not acknowledge, so they cannot be used to stop holding one.
* That wait (``Consumer.wait_empty``) has **no time limit**: on the embedded broker the whole
  group stalled for as long as one agent held one event (50 s and more in the experiment,
  whatever ``broker_rebalance_timeout`` said).
* Dropping the event object does not end the wait; the consumer tracks its message in
  ``consumer._unacked_messages``. Discarding it there does, and since its offset was never
  acknowledged nothing is committed past it: the new owner of the partition gets it again.
* ``app.on_rebalance_complete`` (a signal) is awaited by the recovery task after the new
  assignment and the table recovery, *before* the partitions are resumed and sought: what a
  receiver rebuilds there is in place before the first event of the new generation.

:class:`RebalanceHooks` (one per app, :func:`hooks`, installed by :func:`app.faust_ext.apply`)
runs project callbacks at both points: start callbacks on the app's event loop as soon as the
consumer thread reports the start (sync callbacks run there directly, async ones become
tasks); complete callbacks are awaited inside ``on_rebalance_complete``, in registration
order. :func:`release_held` makes Faust forget held events.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from faust.sensors import Sensor

__all__ = ["RebalanceHooks", "RebalanceSensor", "hooks", "install", "release_held"]

log = logging.getLogger(__name__)

#: A callback: ``fn(app)``, plain or ``async``.
Callback = Callable[[Any], "Awaitable[None] | None"]

_ATTR = "_fraudstream_rebalance_hooks"


class RebalanceSensor(Sensor):
    """The sensor that reports ``on_rebalance_start`` to the app's :class:`RebalanceHooks`."""

    def __init__(self, owner: RebalanceHooks, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.owner = owner

    async def on_start(self) -> None:
        self.owner.bind_loop(asyncio.get_running_loop())

    def on_rebalance_start(self, app: Any) -> dict:
        state = super().on_rebalance_start(app)
        self.owner.report_start()
        return state


class RebalanceHooks:
    """Callbacks at the start and at the completion of every rebalance of one app.

    ``started`` counts the rebalance starts seen, ``completed`` the completions;
    ``rebalancing`` is true between the two. :meth:`next_start` is a future for code that waits
    on something else and must give up when a rebalance starts (see the retrain agent).
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.started = 0
        self.completed = 0
        self._on_start: list[Callback] = []
        self._on_complete: list[Callback] = []
        self._waiters: list[asyncio.Future] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task] = set()
        self.sensor = RebalanceSensor(self)
        app.sensors.add(self.sensor)
        app.on_rebalance_complete.connect(self._complete, weak=False)

    @property
    def rebalancing(self) -> bool:
        return self.started > self.completed

    # -- registration ------------------------------------------------------------------------

    def on_start(self, fn: Callback) -> Callback:
        """Call ``fn(app)`` at every rebalance start (usable as a decorator)."""
        self._on_start.append(fn)
        return fn

    def on_complete(self, fn: Callback) -> Callback:
        """Await ``fn(app)`` when every rebalance completed, before its first event."""
        self._on_complete.append(fn)
        return fn

    def remove(self, fn: Callback) -> None:
        """Forget ``fn`` (both lists)."""
        for callbacks in (self._on_start, self._on_complete):
            while fn in callbacks:
                callbacks.remove(fn)

    def next_start(self) -> asyncio.Future:
        """A future of the running loop that is done at the next rebalance start."""
        loop = asyncio.get_running_loop()
        self.bind_loop(loop)
        future = loop.create_future()
        self._waiters.append(future)
        return future

    # -- what Faust calls --------------------------------------------------------------------

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the callbacks run on (the app's; set when the sensor starts)."""
        if self._loop is None:
            self._loop = loop

    def _app_loop(self) -> asyncio.AbstractEventLoop | None:
        if self._loop is not None:
            return self._loop
        loop = getattr(self.app, "_loop", None)
        return loop if isinstance(loop, asyncio.AbstractEventLoop) else None

    def report_start(self) -> None:
        """Run the start callbacks on the app's loop (called by the sensor, any thread)."""
        with self._lock:
            self.started += 1
        loop = self._app_loop()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            self._run_start()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._run_start)

    def _run_start(self) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(self.started)
        for fn in list(self._on_start):
            try:
                result = fn(self.app)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._tasks.add(task)
                    task.add_done_callback(self._task_done)
            except Exception:
                log.exception("rebalance start callback %r failed", fn)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("rebalance start callback failed", exc_info=task.exception())

    async def _complete(self, sender: Any = None, **kwargs: Any) -> None:
        self.bind_loop(asyncio.get_running_loop())
        with self._lock:
            self.completed = self.started
        for fn in list(self._on_complete):
            try:
                result = fn(self.app)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("rebalance complete callback %r failed", fn)


def install(app: Any) -> RebalanceHooks:
    """The app's :class:`RebalanceHooks`, created (and its sensor added) on first use."""
    existing = getattr(app, _ATTR, None)
    if existing is None:
        existing = RebalanceHooks(app)
        setattr(app, _ATTR, existing)
    return existing


def hooks(app: Any) -> RebalanceHooks:
    """The app's :class:`RebalanceHooks` (:func:`app.faust_ext.apply` installs them)."""
    return install(app)


def installed(app: Any) -> bool:
    """Whether the app has its hooks and their sensor is among the app's sensors."""
    existing = getattr(app, _ATTR, None)
    return existing is not None and existing.sensor in set(app.sensors)


def release_held(app: Any, events: Iterable[Any]) -> int:
    """Make Faust forget events (or messages) taken and not acknowledged; returns how many.

    Each message leaves ``consumer._unacked_messages`` and is marked done for Faust's own
    bookkeeping *without* its offset being acknowledged: a revocation stops waiting for it,
    nothing is committed past it, the new owner of its partition gets it again, and a later
    ``event.ack()`` (or the stream iterator's automatic ack) of a released event is a no-op, so
    a late ack cannot make a commit jump past redelivered copies. Call it from the app's
    event loop (a rebalance-start callback is). The caller must not produce the event's
    outputs after releasing it; whoever gets it again will.
    """
    consumer = app.consumer
    unacked = consumer._unacked_messages
    released = 0
    for item in events:
        message = getattr(item, "message", item)
        if message.acked:
            continue
        message.acked = True  # Faust's acks (Message.ack, stream iterators) skip it now
        unacked.discard(message)
        released += 1
    if released:
        waiting = getattr(consumer, "_waiting_for_ack", None)
        if waiting is not None and not waiting.done():  # wake wait_empty at once
            waiting.set_result(None)
    return released
