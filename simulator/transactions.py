"""Genuine transactions of the handbook process, as parallel NumPy arrays.

For every customer and day: a Poisson(mean per day) number of transactions; for each, a time
of day ~ Normal(``time_mean_s``, ``time_std_s``) truncated to whole seconds and dropped unless
in (0, 86,400); an amount ~ Normal(mean, std), redrawn Uniform(0, 2 x mean) when negative,
rounded to cents; a terminal drawn uniformly among the reachable ones (customers with none
make no transactions). All draws are made for every candidate row before any is dropped, so
the result depends only on the seed.

One deliberate deviation: an amount that rounds to 0.00 (about one row in a million) becomes
0.01, because the pipeline's validator refuses amounts <= 0.

>>> from simulator.config import HandbookParams
>>> from simulator.profiles import make_customers, make_terminals, reachable_terminals
>>> p = HandbookParams(n_customers=200, n_terminals=400, n_days=10, grid_size=20.0)
>>> rng = np.random.default_rng(3)
>>> cust, term = make_customers(rng, p), make_terminals(rng, p)
>>> tx = generate_genuine(np.random.default_rng(4), cust, reachable_terminals(cust, term, 5), p)
>>> bool(((tx.t_ms % 86_400_000) > 0).all()), bool((tx.amount >= 0.01).all())
(True, True)
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from simulator.config import DAY_MS, HandbookParams
from simulator.profiles import Customers, Reachable


@dataclass(frozen=True)
class Txns:
    """Transactions as parallel arrays; ``t_ms`` is milliseconds since the simulation start."""

    t_ms: np.ndarray  # int64
    customer: np.ndarray  # int32
    terminal: np.ndarray  # int32
    amount: np.ndarray  # float64, cents
    is_fraud: np.ndarray  # int8
    scenario: np.ndarray  # int8

    def __len__(self) -> int:
        return int(self.t_ms.shape[0])

    @property
    def day(self) -> np.ndarray:
        """Day index of each transaction."""
        return self.t_ms // DAY_MS

    def take(self, index: np.ndarray) -> Txns:
        """The rows at ``index`` (an integer or boolean array), in that order."""
        return Txns(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def sorted(self) -> Txns:
        """Rows in chronological order; ties keep their current order (stable sort)."""
        return self.take(np.argsort(self.t_ms, kind="stable"))

    @staticmethod
    def concat(parts: list[Txns]) -> Txns:
        """Rows of all ``parts``, in order."""
        return Txns(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                       for f in fields(Txns)})

    @staticmethod
    def build(t_ms: np.ndarray, customer: np.ndarray, terminal: np.ndarray,
              amount: np.ndarray, scenario: int | np.ndarray = 0) -> Txns:
        """Rows from columns; ``is_fraud`` follows from ``scenario`` (0 genuine)."""
        n = t_ms.shape[0]
        scen = np.broadcast_to(np.asarray(scenario, dtype=np.int8), (n,)).copy()
        return Txns(t_ms=t_ms.astype(np.int64), customer=customer.astype(np.int32),
                    terminal=terminal.astype(np.int32), amount=amount.astype(np.float64),
                    is_fraud=(scen != 0).astype(np.int8), scenario=scen)


def round_cents(amount: np.ndarray) -> np.ndarray:
    """Round to cents, at least 0.01.

    >>> round_cents(np.array([0.001, 1.234, 2.675, 3.0])).tolist()
    [0.01, 1.23, 2.68, 3.0]
    """
    return np.maximum(np.round(amount, 2), 0.01)


def generate_genuine(
    rng: np.random.Generator, customers: Customers, reachable: Reachable, params: HandbookParams
) -> Txns:
    """Genuine transactions, ordered by (day, customer, draw); not yet chronological."""
    n_cust, n_days = customers.n, params.n_days
    counts = rng.poisson(customers.tx_per_day[None, :], size=(n_days, n_cust))
    slot = np.repeat(np.arange(n_days * n_cust, dtype=np.int64), counts.ravel())
    day, cust = np.divmod(slot, n_cust)
    n = slot.shape[0]

    tod = rng.normal(params.time_mean_s, params.time_std_s, n).astype(np.int64)  # int(): trunc
    mean = customers.mean_amount[cust]
    amount = rng.normal(mean, customers.std_amount[cust])
    redraw = rng.uniform(0.0, 2.0 * mean)
    amount = round_cents(np.where(amount < 0, redraw, amount))
    n_reach = reachable.counts[cust]
    pick = np.floor(rng.random(n) * n_reach).astype(np.int64)

    keep = (tod > 0) & (tod < 86_400) & (n_reach > 0)
    terminal = reachable.terminals[(reachable.offsets[cust] + pick)[keep]]
    return Txns.build(t_ms=(day[keep] * 86_400 + tod[keep]) * 1000, customer=cust[keep],
                      terminal=terminal, amount=amount[keep])
