"""The retrain's stop flag: the wait for labels ends at once when it is set (a rebalance or a
stop of the worker), with RetrainAbandoned, from a thread or from a spawned process's Event."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

import training.retrain as retrain
from config.settings import load_settings


@pytest.fixture
def never_reached(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    polls: list[int] = []

    def fake(settings, bootstrap, client_kwargs):  # noqa: ANN001, ARG001 - a fake
        polls.append(1)
        return retrain.Watermarks(labels=None, enriched=None)

    monkeypatch.setattr(retrain, "watermarks", fake)
    return polls


@pytest.mark.parametrize("flag", [threading.Event, multiprocessing.get_context("spawn").Event])
def test_a_set_flag_ends_a_long_wait_for_labels_at_once(never_reached, flag) -> None:
    settings = load_settings(retrain_max_wait_s=3600, retrain_poll_s=60)
    cancel = flag()
    threading.Timer(0.3, cancel.set).start()
    lines: list[str] = []
    began = time.monotonic()
    with pytest.raises(retrain.RetrainAbandoned, match="waiting for labels"):
        retrain.wait_for_labels(10**13, settings, "unused:9092", {}, lines.append,
                                sleep=retrain._cancellable_sleep(cancel))
    assert 0.25 < time.monotonic() - began < 3
    assert len(never_reached) == 1  # polled once, then waited on the flag, not for 60 s
    assert len(lines) == 1 and lines[0].startswith("waiting for labels and features")


def test_an_unset_flag_sleeps_like_time_sleep_and_the_wait_gives_up(never_reached) -> None:
    settings = load_settings(retrain_max_wait_s=0.5, retrain_poll_s=0.1)
    lines: list[str] = []
    marks = retrain.wait_for_labels(10**13, settings, "unused:9092", {}, lines.append,
                                    sleep=retrain._cancellable_sleep(threading.Event()))
    assert not marks.reached(10**13)
    assert 3 <= len(never_reached) <= 8
    assert lines[-1].startswith("gave up waiting after")


def test_stop_if() -> None:
    retrain._stop_if(None, "never")
    retrain._stop_if(threading.Event(), "not set")
    flag = threading.Event()
    flag.set()
    with pytest.raises(retrain.RetrainAbandoned, match="why"):
        retrain._stop_if(flag, "why")
