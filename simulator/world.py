"""The simulated world of one run: profiles, reachability, and (realistic) geo and merchants.

>>> from simulator.config import make_config
>>> w = build_world(make_config("realistic", seed=1, n_customers=30, n_terminals=60))
>>> w.customers.n, w.terminals.n, w.home.country.shape, w.merchants.mcc.shape
(30, 60, (30,), (60,))
>>> build_world(make_config("handbook", n_customers=30, n_terminals=60)).merchants is None
True
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.config import SimConfig
from simulator.geo import Places, places
from simulator.merchants import Merchants, assign_merchants
from simulator.profiles import (
    Customers,
    Reachable,
    Terminals,
    make_customers,
    make_terminals,
    reachable_terminals,
)
from simulator.rng import stream


@dataclass(frozen=True)
class World:
    """Everything fixed for a run: who buys where, and (realistic) where and what it is."""

    customers: Customers
    terminals: Terminals
    reachable: Reachable
    home: Places | None = None  # per customer (realistic)
    site: Places | None = None  # per terminal (realistic)
    merchants: Merchants | None = None  # per terminal (realistic)


def build_world(cfg: SimConfig) -> World:
    """Draw the profiles (and, for the realistic profile, places and merchants)."""
    params = cfg.handbook
    customers = make_customers(stream(cfg.seed, "profiles.customers"), params)
    terminals = make_terminals(stream(cfg.seed, "profiles.terminals"), params)
    reachable = reachable_terminals(customers, terminals, params.radius)
    home = site = merchants = None
    if cfg.geo is not None:
        home = places(customers.x, customers.y, params.grid_size, cfg.geo)
        site = places(terminals.x, terminals.y, params.grid_size, cfg.geo)
    if cfg.merchants is not None:
        merchants = assign_merchants(stream(cfg.seed, "merchants"), terminals.n, cfg.merchants)
    return World(customers=customers, terminals=terminals, reachable=reachable, home=home,
                 site=site, merchants=merchants)
