"""The retrain agent gives its event back at a rebalance start or a stop (fake app and hooks):
the run is told to stop, a child that does not is ended after the grace, a thread is awaited,
and an event taken during a rebalance or a stop is not started at all."""

from __future__ import annotations

import asyncio
import threading

import pytest

from app.agents.retrain import unless_interrupted
from training.retrain import RetrainAbandoned


class FakeApp:
    def __init__(self) -> None:
        self.should_stop = False
        self._stopped = asyncio.Event()

    async def wait_until_stopped(self) -> None:
        await self._stopped.wait()

    def stop(self) -> None:
        self.should_stop = True
        self._stopped.set()


class FakeHooks:
    def __init__(self) -> None:
        self.rebalancing = False
        self._waiters: list[asyncio.Future] = []

    def next_start(self) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        return future

    def start(self) -> None:
        self.rebalancing = True
        for future in self._waiters:
            if not future.done():
                future.set_result(1)


async def _honours(cancel: threading.Event) -> str:
    """A retrain waiting for labels: it ends as soon as the flag is set."""
    while not cancel.is_set():
        await asyncio.sleep(0.01)
    raise RetrainAbandoned("stopped while waiting for labels")


def test_it_returns_the_outcome_when_nothing_interrupts() -> None:
    async def main() -> None:
        async def quick(cancel: threading.Event) -> str:
            return "trained"

        got = await unless_interrupted(FakeApp(), FakeHooks(), quick, threading.Event(), "k",
                                       killable=True)
        assert got == "trained"

    asyncio.run(main())


@pytest.mark.parametrize("what", ["rebalance", "stop"])
def test_an_interruption_sets_the_flag_and_the_waiting_run_gives_up(what: str) -> None:
    async def main() -> None:
        app, hooks, cancel = FakeApp(), FakeHooks(), threading.Event()
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, hooks.start if what == "rebalance" else app.stop)
        began = loop.time()
        with pytest.raises(RetrainAbandoned, match="waiting for labels"):
            await unless_interrupted(app, hooks, _honours, cancel, "k", killable=True)
        assert cancel.is_set() and loop.time() - began < 1.0

    asyncio.run(main())


@pytest.mark.parametrize("state", ["rebalancing", "stopping"])
def test_an_event_taken_during_a_rebalance_or_a_stop_is_not_started(state: str) -> None:
    async def main() -> None:
        app, hooks = FakeApp(), FakeHooks()
        if state == "rebalancing":
            hooks.rebalancing = True
        else:
            app.should_stop = True
        started: list[int] = []

        async def run(cancel: threading.Event) -> str:
            started.append(1)
            return "trained"

        with pytest.raises(RetrainAbandoned):
            await unless_interrupted(app, hooks, run, threading.Event(), "k", killable=True)
        assert not started

    asyncio.run(main())


def test_a_child_that_does_not_stop_is_ended_after_the_grace() -> None:
    async def main() -> None:
        app, hooks, cancel = FakeApp(), FakeHooks(), threading.Event()
        ended = asyncio.Event()

        async def training(cancel: threading.Event) -> str:  # ignores the flag
            try:
                await asyncio.sleep(3600)
            finally:
                ended.set()  # in_child_process terminates and reaps the process here
            return "trained"

        loop = asyncio.get_running_loop()
        loop.call_later(0.05, hooks.start)
        began = loop.time()
        with pytest.raises(RetrainAbandoned, match="ended after"):
            await unless_interrupted(app, hooks, training, cancel, "k", killable=True,
                                     grace_s=0.3)
        assert ended.is_set(), "the child is ended before the event is released"
        assert 0.3 <= loop.time() - began < 2.0

    asyncio.run(main())


def test_a_thread_that_trains_is_awaited_it_cannot_be_ended() -> None:
    async def main() -> None:
        app, hooks, cancel = FakeApp(), FakeHooks(), threading.Event()

        async def training(cancel: threading.Event) -> str:
            await asyncio.sleep(0.6)
            return "trained"

        asyncio.get_running_loop().call_later(0.05, app.stop)
        got = await unless_interrupted(app, hooks, training, cancel, "k", killable=False,
                                       grace_s=0.1)
        assert got == "trained" and cancel.is_set()

    asyncio.run(main())


def test_a_cancelled_agent_sets_the_flag_and_cancels_the_run() -> None:
    async def main() -> None:
        app, hooks, cancel = FakeApp(), FakeHooks(), threading.Event()
        ran = asyncio.Event()
        cancelled = asyncio.Event()

        async def waiting(cancel: threading.Event) -> str:
            ran.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return "trained"

        outer = asyncio.ensure_future(
            unless_interrupted(app, hooks, waiting, cancel, "k", killable=True))
        await ran.wait()
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        await asyncio.sleep(0)
        assert cancel.is_set() and cancelled.is_set()

    asyncio.run(main())
