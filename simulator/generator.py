"""Generate a whole simulated period: the entry point of the simulator.

Deterministic: the same configuration (seed included) gives the same rows and ids, bit for
bit, with the same NumPy version (NumPy does not promise identical ``Generator`` streams
across its major versions).

>>> sim = simulate("handbook", seed=1, n_customers=200, n_terminals=400, n_days=20)
>>> t = sim.transactions()
>>> t.column_names[:6]
['txn_id', 'card_id', 'terminal_id', 'amount', 'currency', 'ts']
>>> ts = t.column("ts").to_numpy()
>>> bool((np.diff(ts) >= 0).all()), t.column("txn_id")[0].as_py()
(True, '0000000000')
>>> sim.labels(delay_days=7).column("reported_at")[0].as_py() - ts[0] == 7 * 86_400_000
np.True_
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from simulator.config import DAY_MS, Profile, Scenario, SimConfig, make_config
from simulator.drift import drift_pattern
from simulator.extensions import card_testing, cnp_online, impossible_travel
from simulator.fraud import FraudDraws, apply_handbook_frauds
from simulator.output import labels_table, transactions_table, write_parquet
from simulator.rng import stream
from simulator.transactions import Txns, generate_genuine
from simulator.world import World, build_world


@dataclass(frozen=True)
class Simulation:
    """A generated period: the world, the chronological transactions and the fraud draws."""

    config: SimConfig
    world: World
    txns: Txns
    draws: FraudDraws

    def __len__(self) -> int:
        return len(self.txns)

    def transactions(self, id_prefix: str = "") -> pa.Table:
        """Transactions with ``is_fraud`` and ``scenario`` (``output.TRANSACTION_SCHEMA``)."""
        return transactions_table(self.config, self.world, self.txns, id_prefix)

    def labels(self, delay_days: float = 7.0, jitter_hours: float = 0.0,
               id_prefix: str = "") -> pa.Table:
        """One late label per transaction (:data:`~simulator.labels.LABEL_SCHEMA`)."""
        return labels_table(self.transactions(id_prefix), delay_days=delay_days,
                            jitter_hours=jitter_hours, seed=self.config.seed)

    def to_frame(self, id_prefix: str = "") -> pd.DataFrame:
        """The transactions table as a pandas DataFrame."""
        return self.transactions(id_prefix).to_pandas()

    def write_parquet(self, out_dir: str | Path, *, id_prefix: str = "",
                      delay_days: float = 7.0, jitter_hours: float = 0.0) -> dict[str, Path]:
        """Write ``transactions.parquet`` and ``labels.parquet`` into ``out_dir``."""
        table = self.transactions(id_prefix)
        labels = labels_table(table, delay_days=delay_days, jitter_hours=jitter_hours,
                              seed=self.config.seed)
        return write_parquet(table, labels, out_dir)

    def summary(self) -> dict[str, Any]:
        """Counts for reports: transactions, per day, fraud share, frauds per scenario."""
        n = len(self.txns)
        counts = np.bincount(self.txns.scenario, minlength=len(Scenario))
        return {
            "profile": self.config.profile,
            "seed": self.config.seed,
            "transactions": n,
            "per_day": n / self.config.handbook.n_days,
            "frauds": int(self.txns.is_fraud.sum()),
            "fraud_share": float(self.txns.is_fraud.mean()) if n else 0.0,
            "scenarios": {s.name.lower(): int(counts[s]) for s in Scenario if s != 0},
        }


def generate(cfg: SimConfig) -> Simulation:
    """Generate the period described by ``cfg`` (deterministic for ``cfg``)."""
    params = cfg.handbook
    world = build_world(cfg)
    genuine = generate_genuine(stream(cfg.seed, "transactions"), world.customers,
                               world.reachable, params)
    tx, draws = apply_handbook_frauds(cfg.seed, genuine, world.customers.n, world.terminals.n,
                                      params)
    parts = [tx]
    ext = cfg.extensions
    if ext is not None:
        if ext.cnp_online:
            parts[0] = cnp_online(stream(cfg.seed, "ext.cnp"), tx, world, ext)
        parts.append(impossible_travel(stream(cfg.seed, "ext.travel"), tx, world, ext,
                                       params.n_days))
        parts.append(card_testing(stream(cfg.seed, "ext.testing"), world, ext, params.n_days))
    if cfg.drift is not None:
        parts.append(drift_pattern(stream(cfg.seed, "drift"), world, cfg.drift, cfg.start_ms,
                                   params.n_days))
    merged = Txns.concat(parts) if len(parts) > 1 else parts[0]
    return Simulation(config=cfg, world=world, txns=merged.sorted(), draws=draws)


def simulate(profile: Profile = "handbook", *, seed: int = 0, **options: Any) -> Simulation:
    """:func:`make_config` then :func:`generate` (options as in :func:`make_config`)."""
    return generate(make_config(profile, seed=seed, **options))


def days_for(count: int, cfg: SimConfig, margin: float = 1.15) -> SimConfig:
    """``cfg`` with enough days to hold about ``count`` transactions (never fewer days).

    Uses the handbook expectation: customers x mean rate x P(time kept) per day.
    """
    p = cfg.handbook
    per_day = p.n_customers * sum(p.tx_per_day_range) / 2 * 0.969
    days = max(p.n_days, int(np.ceil(count * margin / max(per_day, 1e-9))) + 1)
    return replace(cfg, handbook=replace(p, n_days=days))


__all__ = ["DAY_MS", "Simulation", "days_for", "generate", "simulate"]
