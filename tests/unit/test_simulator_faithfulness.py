"""The handbook profile reproduces the published scale and fraud mix (docs/simulation.md).

Full scale (5,000 cards, 10,000 terminals, 183 days, ~1.77 M rows): generating it takes
2-5 s here, so no scaling argument is needed. Every figure is checked two ways:

1. against its **expected value derived from the generative process** (computed below from
   the profile distributions), with a tolerance of 4 seed-to-seed standard deviations;
2. against the **published figure** (docs/simulation.md: ~1.75 M transactions, ~9,500 a day,
   ~0.84 % fraud, scenario 2 > 3 > 1). The published data set is itself one realisation of
   the process, so the difference of two realisations has sd sqrt(2) x sigma; the tolerance is
   4 sqrt(2) sigma plus the rounding of the published figure.

Seed-to-seed spread, measured over seeds 0-19 at full scale (``simulate("handbook", seed=s)``):

==================  ========  ========  ========================================
figure              mean      sd        note
==================  ========  ========  ========================================
transactions/day    9,666     73.6      analytic sd: 0.969 x 4/sqrt(12) x sqrt(5000) = 79
fraud share         0.834 %   0.0133 pp
scenario 1 frauds   1,004     49
scenario 2 frauds   9,113     166
scenario 3 frauds   4,633     143
==================  ========  ========  ========================================

The sd of transactions/day is dominated by the customers' drawn rates (the sum of 5,000
Uniform(0, 4)), not by the Poisson counts (sd sqrt(9,700 x 183)/183 = 7 a day).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator import Scenario, simulate
from simulator.config import HandbookParams

P = HandbookParams()
SIGMA = {"per_day": 79.0, "fraud_pct": 0.0133, 1: 49.0, 2: 166.0, 3: 143.0}
PUBLISHED_TOTAL = 1_750_000  # "about 1.75 M", rounded to +-5,000
PUBLISHED_FRAUD_PCT = 0.84  # "about 0.84 %", rounded to +-0.005


def _phi(z: np.ndarray | float) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(np.asarray(z) / math.sqrt(2.0)))


def p_time_kept() -> float:
    """P(0 < int(T) < 86,400), T ~ Normal(43,200, 20,000); int() truncates: T in [1, 86,400)."""
    lo = (1 - P.time_mean_s) / P.time_std_s
    hi = (86_400 - P.time_mean_s) / P.time_std_s
    return float(_phi(hi) - _phi(lo))


def expected_per_day() -> float:
    """customers x E[Uniform(0, 4)] x P(time kept); P(no reachable terminal) = exp(-78.5) ~ 0."""
    return P.n_customers * sum(P.tx_per_day_range) / 2 * p_time_kept()


def expected_large_share() -> float:
    """P(amount > 220) averaged over mean ~ Uniform(5, 100), amount ~ Normal(mean, mean/2).

    (The redraw of a negative amount is Uniform(0, 2 mean) <= 200, never above 220.)
    """
    m = np.linspace(*P.mean_amount_range, 20_001)
    tail = 1.0 - _phi((P.large_amount - m) / (m / 2.0))
    return float(tail.mean())


def window_days(window: int) -> np.ndarray:
    """Days covered by each daily draw (the window is cut at the end of the period)."""
    return np.minimum(window, P.n_days - np.arange(P.n_days))


def expected_terminal_frauds(per_day: float) -> float:
    """2 draws a day x covered days x transactions per terminal-day."""
    return P.terminals_per_day * window_days(P.terminal_window_days).sum() * per_day / P.n_terminals


def expected_card_frauds() -> float:
    """3 draws a day x E[floor(n/3)], n ~ Poisson(rate x P(kept) x covered days), rate ~ U(0, 4)."""
    rates = np.linspace(*P.tx_per_day_range, 401)[:, None]
    n = np.arange(400)[None, :]
    log_factorial = np.cumsum(np.log(np.maximum(n, 1)), axis=1)
    total = 0.0
    covered, draws = np.unique(window_days(P.card_window_days), return_counts=True)
    for days, times in zip(covered.tolist(), draws.tolist(), strict=True):
        mu = rates * p_time_kept() * days
        log_pmf = n * np.log(np.maximum(mu, 1e-300)) - mu - log_factorial
        pmf = np.where(mu > 0, np.exp(log_pmf), (n == 0).astype(float))
        total += times * float((pmf * np.floor(n * P.card_fraud_share)).sum(axis=1).mean())
    return P.cards_per_day * total


@pytest.fixture(scope="module")
def summary() -> dict:
    return simulate("handbook", seed=0).summary()


def test_transactions_per_day_and_total(summary: dict) -> None:
    per_day = summary["per_day"]
    assert abs(per_day - expected_per_day()) <= 4 * SIGMA["per_day"]
    published_per_day = PUBLISHED_TOTAL / P.n_days
    rounding = 5_000 / P.n_days
    assert abs(per_day - published_per_day) <= 4 * math.sqrt(2) * SIGMA["per_day"] + rounding
    assert summary["transactions"] == pytest.approx(PUBLISHED_TOTAL, rel=0.06)


def test_fraud_rate(summary: dict) -> None:
    pct = summary["fraud_share"] * 100
    assert abs(pct - PUBLISHED_FRAUD_PCT) <= 4 * math.sqrt(2) * SIGMA["fraud_pct"] + 0.005
    counts = summary["scenarios"]
    assert summary["frauds"] == sum(counts.values())


def test_each_scenario_matches_its_expected_count(summary: dict) -> None:
    n = summary["transactions"]
    counts = summary["scenarios"]
    expected = {
        1: expected_large_share() * n,
        2: expected_terminal_frauds(summary["per_day"]),
        3: expected_card_frauds(),
    }
    names = {1: "large_amount", 2: "compromised_terminal", 3: "compromised_card_cnp"}
    for code, value in expected.items():
        assert abs(counts[names[code]] - value) <= 4 * SIGMA[code], (code, counts, expected)
    assert counts["compromised_terminal"] > counts["compromised_card_cnp"] > counts["large_amount"]
    assert all(counts[s.name.lower()] == 0 for s in Scenario if s > 3)


def test_expected_values_are_those_published() -> None:
    """The derivation itself lands on the published figures (a check of the test's maths)."""
    per_day = expected_per_day()
    frauds = (expected_large_share() * per_day * P.n_days
              + expected_terminal_frauds(per_day) + expected_card_frauds())
    assert 9_500 < per_day < 9_800
    assert frauds / (per_day * P.n_days) * 100 == pytest.approx(PUBLISHED_FRAUD_PCT, abs=0.03)
