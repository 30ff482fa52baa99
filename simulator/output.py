"""The output contract: transaction and label tables, and writing them to parquet.

Transactions (:data:`TRANSACTION_SCHEMA`): the payload of the ``transactions`` topic
(:data:`PAYLOAD_COLUMNS`) followed by ``is_fraud`` and ``scenario``, which are kept apart from
the payload (never sent to the transactions topic; ``scenario`` is for analysis only).
Labels follow :data:`simulator.labels.LABEL_SCHEMA`.

* ``txn_id``: ``<id_prefix>`` + the chronological index zero-padded to 10 digits;
* ``card_id`` ``C#####``, ``terminal_id`` ``T#####`` (profile index, zero-padded);
* ``amount`` float (cents), ``currency`` (``"EUR"``), ``ts`` epoch milliseconds UTC;
* ``lat``/``lon``/``country``/``mcc``/``channel``: null in the handbook profile; in the
  realistic profile ``lat``/``lon`` are null for online transactions (no terminal location).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from simulator.config import SimConfig
from simulator.ids import entity_ids, index_ids
from simulator.labels import make_labels
from simulator.transactions import Txns
from simulator.world import World

TXN_ID_WIDTH = 10

PAYLOAD_COLUMNS: tuple[str, ...] = (
    "txn_id", "card_id", "terminal_id", "amount", "currency", "ts",
    "lat", "lon", "country", "mcc", "channel",
)

TRANSACTION_SCHEMA = pa.schema([
    ("txn_id", pa.string()),
    ("card_id", pa.string()),
    ("terminal_id", pa.string()),
    ("amount", pa.float64()),
    ("currency", pa.string()),
    ("ts", pa.int64()),
    ("lat", pa.float64()),
    ("lon", pa.float64()),
    ("country", pa.string()),
    ("mcc", pa.string()),
    ("channel", pa.string()),
    ("is_fraud", pa.int8()),
    ("scenario", pa.int8()),
])


def _per_terminal(values: np.ndarray, terminal: np.ndarray, arrow_type: pa.DataType,
                  null: np.ndarray | None = None) -> pa.Array:
    """A per-terminal attribute looked up for every transaction (Arrow ``take``)."""
    table = pa.array(values, arrow_type)
    out = table.take(pa.array(terminal.astype(np.int64)))
    if null is not None and null.any():
        out = pa.array(out.to_numpy(zero_copy_only=False), arrow_type, mask=null[terminal])
    return out


def transactions_table(cfg: SimConfig, world: World, tx: Txns, id_prefix: str = "") -> pa.Table:
    """The chronological transactions ``tx`` as a table of :data:`TRANSACTION_SCHEMA`."""
    n = len(tx)
    nulls_f = pa.nulls(n, pa.float64())
    nulls_s = pa.nulls(n, pa.string())
    lat = lon = nulls_f
    country = mcc = channel = nulls_s
    online = world.merchants.online if world.merchants is not None else None
    if world.site is not None:
        lat = _per_terminal(world.site.lat, tx.terminal, pa.float64(), online)
        lon = _per_terminal(world.site.lon, tx.terminal, pa.float64(), online)
        country = _per_terminal(world.site.country, tx.terminal, pa.string())
    if world.merchants is not None:
        mcc = _per_terminal(world.merchants.mcc, tx.terminal, pa.string())
        channel = _per_terminal(world.merchants.channel(), tx.terminal, pa.string())
    columns = [
        index_ids(np.arange(n), TXN_ID_WIDTH, id_prefix),
        entity_ids(tx.customer, world.customers.n, "C"),
        entity_ids(tx.terminal, world.terminals.n, "T"),
        pa.array(tx.amount),
        pa.array([cfg.currency], pa.string()).take(pa.array(np.zeros(n, dtype=np.int64))),
        pa.array(tx.t_ms + cfg.start_ms),
        lat, lon, country, mcc, channel,
        pa.array(tx.is_fraud.astype(np.int8)),
        pa.array(tx.scenario.astype(np.int8)),
    ]
    return pa.Table.from_arrays(columns, schema=TRANSACTION_SCHEMA)


def labels_table(transactions: pa.Table, *, delay_days: float = 7.0, jitter_hours: float = 0.0,
                 seed: int = 0) -> pa.Table:
    """One label per row of a transactions table that has ``is_fraud``."""
    return make_labels(
        transactions.column("txn_id"), transactions.column("card_id"),
        transactions.column("terminal_id"), transactions.column("is_fraud").to_numpy(),
        transactions.column("ts").to_numpy(), delay_days=delay_days,
        jitter_hours=jitter_hours, seed=seed)


def write_parquet(transactions: pa.Table, labels: pa.Table | None, out_dir: str | Path,
                  row_group_size: int = 256_000) -> dict[str, Path]:
    """Write ``transactions.parquet`` (and ``labels.parquet``) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"transactions": out / "transactions.parquet"}
    pq.write_table(transactions, paths["transactions"], row_group_size=row_group_size,
                   compression="zstd")
    if labels is not None:
        paths["labels"] = out / "labels.parquet"
        pq.write_table(labels, paths["labels"], row_group_size=row_group_size,
                       compression="zstd")
    return paths
