"""Traffic patterns: the produced timestamps have the configured shape."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from simulator.patterns import TrafficPattern, schedule
from simulator.timing import (
    Pacer,
    historical_offsets,
    live_event_times,
    send_slices,
)


def counts_per_bin(offsets: np.ndarray, width: float, horizon: float) -> np.ndarray:
    return np.histogram(offsets, bins=np.arange(0.0, horizon + width / 2, width))[0]


def test_constant_is_evenly_spaced():
    off = schedule(TrafficPattern("constant", tps=200), duration_s=10)
    assert len(off) == 2_000
    assert np.allclose(np.diff(off), 1 / 200)
    assert off[0] == 0.0 and off[-1] < 10


def test_spike_is_a_spike():
    p = TrafficPattern("spike", tps=100, spike_every_s=10, spike_duration_s=1, spike_factor=8)
    off = schedule(p, duration_s=60)
    per_s = counts_per_bin(off, 1.0, 60)
    in_spike = (np.arange(60) % 10) == 9
    assert (per_s[in_spike] == 800).all()
    assert (per_s[~in_spike] == 100).all()
    assert len(off) == 6 * (9 * 100 + 800)


def test_wave_oscillates_with_the_period():
    p = TrafficPattern("wave", tps=500, period_s=20, amplitude=0.6)
    off = schedule(p, duration_s=200)
    per_s = counts_per_bin(off, 1.0, 200).astype(float)
    spectrum = np.abs(np.fft.rfft(per_s - per_s.mean()))
    freqs = np.fft.rfftfreq(per_s.size, d=1.0)
    assert freqs[spectrum.argmax()] == pytest.approx(1 / 20)
    # peak at a quarter period, trough at three quarters: 500 x (1 +- 0.6), within binning
    assert per_s[4:200:20].mean() == pytest.approx(800, rel=0.03)
    assert per_s[14:200:20].mean() == pytest.approx(200, rel=0.05)
    assert len(off) == pytest.approx(500 * 200, abs=1)


def test_random_walk_is_seeded_bounded_and_varies():
    p = TrafficPattern("random", tps=100, seed=3, walk_sigma=0.2, walk_bounds=(0.5, 2.0))
    rates = p.rate(np.arange(0, 600, 1.0))
    again = TrafficPattern("random", tps=100, seed=3, walk_sigma=0.2, walk_bounds=(0.5, 2.0))
    assert np.array_equal(rates, again.rate(np.arange(0, 600, 1.0)))
    other = TrafficPattern("random", tps=100, seed=4, walk_sigma=0.2, walk_bounds=(0.5, 2.0))
    assert not np.array_equal(rates, other.rate(np.arange(0, 600, 1.0)))
    assert rates.min() >= 50 - 1e-9 and rates.max() <= 200 + 1e-9
    assert rates.std() > 10
    # the schedule follows the walk second by second (piecewise-constant rate)
    off = schedule(p, duration_s=600)
    per_s = counts_per_bin(off, 1.0, 600)
    assert np.abs(per_s - rates).max() <= 1.0 + 1e-9
    # extending the horizon never changes the start of the walk
    assert np.array_equal(p.rate(np.arange(0, 5_000, 1.0))[:600], rates)


def test_count_and_duration_agree():
    p = TrafficPattern("wave", tps=50, period_s=7)
    by_count = schedule(p, count=1_000)
    assert len(by_count) == 1_000 and (np.diff(by_count) >= 0).all()
    by_duration = schedule(p, duration_s=float(by_count[-1]) + 1e-3)
    assert np.allclose(by_duration[:1_000], by_count)


@pytest.mark.parametrize("kwargs", [{"tps": 0}, {"kind": "square"}, {"amplitude": 1.0},
                                    {"spike_duration_s": 50, "spike_every_s": 10}])
def test_bad_patterns_are_refused(kwargs):
    with pytest.raises(ValueError):
        TrafficPattern(**kwargs)


def test_historical_and_live_times():
    ts = np.array([1_000, 1_000, 61_000, 121_000])
    assert historical_offsets(ts, speed=60).tolist() == [0.0, 0.0, 1.0, 2.0]
    assert historical_offsets(ts, speed=None).tolist() == [0.0] * 4
    assert live_event_times(np.array([0.0, 0.0014, 2.5]), 10_000).tolist() == [10_000, 10_001,
                                                                             12_500]


def test_send_slices_cover_everything_in_order():
    off = schedule(TrafficPattern("spike", tps=1_000, spike_every_s=2, spike_duration_s=0.5),
                   duration_s=6)
    slices = list(send_slices(off, max_batch=300, tick_s=0.01))
    assert slices[0][0] == 0 and slices[-1][1] == len(off)
    assert all(a[1] == b[0] for a, b in zip(slices, slices[1:], strict=False))
    for lo, hi, due in slices:
        assert hi - lo <= 300 and due == off[lo] and off[hi - 1] < due + 0.01


def test_pacer_sleeps_until_due_and_records_lag():
    now = [0.0]
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(clock=lambda: now[0], sleep=fake_sleep)

    async def run() -> None:
        await pacer.wait_until(1.5)
        now[0] += 2.0  # the sender fell behind
        await pacer.wait_until(3.0)

    asyncio.run(run())
    assert slept == [1.5] and pacer.max_lag_s == pytest.approx(0.5)
