"""Merchant category (MCC) and channel of each terminal; choosing online merchants for fraud.

A share ``online_share`` of the terminals are online merchants (channel ``"online"``); the
others are card-present. Each draws an MCC from the weighted list of its channel. A
transaction inherits its terminal's MCC and channel. Online transactions carry no
coordinates (there is no terminal location for a card-not-present payment); their country is
the merchant's.

>>> from simulator.config import MerchantConfig
>>> m = assign_merchants(np.random.default_rng(0), 2_000, MerchantConfig())
>>> 0.12 < m.online.mean() < 0.18
np.True_
>>> sorted(set(m.mcc[m.online].tolist()) - set(dict(MerchantConfig().online_mccs)))
[]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.config import MerchantConfig


@dataclass(frozen=True)
class Merchants:
    """Per terminal: MCC code, whether online, whether the MCC is high-risk."""

    mcc: np.ndarray  # '<U4'
    online: np.ndarray  # bool
    high_risk: np.ndarray  # bool

    def channel(self) -> np.ndarray:
        """``"online"`` or ``"card_present"`` per terminal."""
        return np.where(self.online, "online", "card_present")


def _weighted(rng: np.random.Generator, table: tuple[tuple[str, float], ...],
              n: int) -> np.ndarray:
    codes = np.array([code for code, _ in table], dtype="<U4")
    weights = np.array([w for _, w in table], dtype=np.float64)
    return codes[rng.choice(len(codes), size=n, p=weights / weights.sum())]


def assign_merchants(rng: np.random.Generator, n_terminals: int,
                     cfg: MerchantConfig) -> Merchants:
    """Draw channel and MCC for ``n_terminals`` terminals."""
    online = rng.random(n_terminals) < cfg.online_share
    present_mcc = _weighted(rng, cfg.card_present_mccs, n_terminals)
    online_mcc = _weighted(rng, cfg.online_mccs, n_terminals)
    mcc = np.where(online, online_mcc, present_mcc)
    high = np.isin(mcc, np.array(sorted(cfg.high_risk_mccs), dtype="<U4"))
    return Merchants(mcc=mcc, online=online, high_risk=high)


def pick_online(rng: np.random.Generator, merchants: Merchants, n: int,
                high_risk_share: float) -> np.ndarray:
    """``n`` online terminals: high-risk MCC with probability ``high_risk_share``.

    Falls back to any online terminal (then to any terminal) when a pool is empty.
    """
    online = np.flatnonzero(merchants.online)
    if online.size == 0:
        online = np.arange(merchants.mcc.shape[0])
    risky = np.flatnonzero(merchants.online & merchants.high_risk)
    if risky.size == 0:
        risky = online
    use_risky = rng.random(n) < high_risk_share
    a = online[rng.integers(0, online.size, n)]
    b = risky[rng.integers(0, risky.size, n)]
    return np.where(use_risky, b, a)
