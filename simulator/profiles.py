"""Customer and terminal profiles on the handbook's grid, and each customer's reachable terminals.

* customer: home ``(x, y)`` uniform on the grid; mean amount uniform in ``mean_amount_range``;
  amount std = mean / 2; mean transactions per day uniform in ``tx_per_day_range``.
* terminal: ``(x, y)`` uniform on the same grid.
* reachable terminals: those strictly within Euclidean ``radius`` of the customer's home,
  stored as a CSR structure (``offsets``/``terminals``), terminal indices ascending.

>>> from simulator.config import HandbookParams
>>> params = HandbookParams(n_customers=50, n_terminals=400, grid_size=20.0)
>>> cust = make_customers(np.random.default_rng(1), params)
>>> term = make_terminals(np.random.default_rng(2), params)
>>> reach = reachable_terminals(cust, term, params.radius)
>>> c = 3
>>> mine = reach.of(c)
>>> d = np.hypot(term.x - cust.x[c], term.y - cust.y[c])
>>> bool((np.flatnonzero(d < params.radius) == mine).all())
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.config import HandbookParams


@dataclass(frozen=True)
class Customers:
    """Customer (card) profiles, one entry per customer index."""

    x: np.ndarray
    y: np.ndarray
    mean_amount: np.ndarray
    std_amount: np.ndarray
    tx_per_day: np.ndarray

    @property
    def n(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class Terminals:
    """Terminal (merchant) locations, one entry per terminal index."""

    x: np.ndarray
    y: np.ndarray

    @property
    def n(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class Reachable:
    """Reachable terminals per customer: ``terminals[offsets[c]:offsets[c + 1]]``."""

    offsets: np.ndarray
    terminals: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        """Number of reachable terminals of each customer."""
        return np.diff(self.offsets)

    def of(self, customer: int) -> np.ndarray:
        """The reachable terminal indices of one customer."""
        return self.terminals[self.offsets[customer]:self.offsets[customer + 1]]


def make_customers(rng: np.random.Generator, params: HandbookParams) -> Customers:
    """Draw the customer profiles."""
    n = params.n_customers
    x = rng.uniform(0.0, params.grid_size, n)
    y = rng.uniform(0.0, params.grid_size, n)
    mean_amount = rng.uniform(*params.mean_amount_range, n)
    tx_per_day = rng.uniform(*params.tx_per_day_range, n)
    return Customers(x=x, y=y, mean_amount=mean_amount, std_amount=mean_amount / 2.0,
                     tx_per_day=tx_per_day)


def make_terminals(rng: np.random.Generator, params: HandbookParams) -> Terminals:
    """Draw the terminal locations."""
    n = params.n_terminals
    return Terminals(x=rng.uniform(0.0, params.grid_size, n),
                     y=rng.uniform(0.0, params.grid_size, n))


def reachable_terminals(
    customers: Customers, terminals: Terminals, radius: float, max_pairs: int = 4_000_000
) -> Reachable:
    """Terminals strictly within ``radius`` of each customer's home (chunked, vectorised).

    Customers are processed in chunks so that at most ``max_pairs`` distances are held at once.
    """
    n_term = terminals.n
    chunk = max(1, max_pairs // max(n_term, 1))
    r2 = radius * radius
    counts = np.zeros(customers.n, dtype=np.int64)
    parts: list[np.ndarray] = []
    for lo in range(0, customers.n, chunk):
        hi = min(lo + chunk, customers.n)
        dx = customers.x[lo:hi, None] - terminals.x[None, :]
        dy = customers.y[lo:hi, None] - terminals.y[None, :]
        inside = dx * dx + dy * dy < r2
        counts[lo:hi] = inside.sum(axis=1)
        parts.append(np.nonzero(inside)[1].astype(np.int32))  # row-major: per customer, asc
    offsets = np.zeros(customers.n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    return Reachable(offsets=offsets, terminals=flat)
