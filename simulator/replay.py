"""Read recorded transactions (parquet or CSV) into the transaction contract, for replay.

A column mapping renames source columns to contract columns (``{"TX_DATETIME": "ts", ...}``);
it is a dict, the path of a small YAML or JSON file holding that dict, or the name of a preset
(``"handbook"``: the published handbook dataset; a preset's optional columns may be absent).
Source columns already named like contract columns are taken as they are; other columns are
ignored.

* required after mapping: ``ts``, ``card_id``, ``terminal_id``, ``amount``; optional: the rest
  of the payload (``txn_id``, ``currency``, ``lat``, ``lon``, ``country``, ``mcc``,
  ``channel``), and ``is_fraud`` / ``scenario`` (labels, kept apart from the payload).
* ``ts``: datetime strings (ISO-8601; naive times are UTC), a datetime column, or numbers in
  ``ts_unit`` (epoch milliseconds by default).
* rows are put in event-time order with a stable sort (equal times keep file order).
* without a ``txn_id`` column, ids are derived from the file content and position:
  ``<first 12 hex digits of the SHA-256 of the file bytes>-<0-based row number in the file>``,
  so re-reading the same file gives the same ids and two different files never collide.

A source or destination column that does not exist, or a missing required column, raises
:class:`MappingError` naming the columns found.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import yaml

from simulator.ids import index_ids
from simulator.output import PAYLOAD_COLUMNS, TRANSACTION_SCHEMA

REQUIRED: tuple[str, ...] = ("ts", "card_id", "terminal_id", "amount")
LABEL_COLUMNS: tuple[str, ...] = ("is_fraud", "scenario")
KNOWN: tuple[str, ...] = PAYLOAD_COLUMNS + LABEL_COLUMNS
PRESETS: dict[str, dict[str, str]] = {
    "handbook": {
        "TRANSACTION_ID": "txn_id", "TX_DATETIME": "ts", "CUSTOMER_ID": "card_id",
        "TERMINAL_ID": "terminal_id", "TX_AMOUNT": "amount", "TX_FRAUD": "is_fraud",
        "TX_FRAUD_SCENARIO": "scenario",
    },
}
TS_UNITS = {"ms": 1, "s": 1_000, "us": 1e-3, "ns": 1e-6}
MIN_TS_MS = 946_684_800_000  # 2000-01-01: smaller numbers are not epoch milliseconds


class MappingError(ValueError):
    """The file and the column mapping do not fit; the message lists the columns found."""


def load_mapping(mapping: Mapping[str, str] | str | Path | None) -> dict[str, str]:
    """A ``{source: destination}`` dict from a dict, a preset name or a YAML/JSON file.

    >>> load_mapping({"TX_AMOUNT": "amount"})
    {'TX_AMOUNT': 'amount'}
    >>> load_mapping("handbook")["TX_DATETIME"]
    'ts'
    """
    if mapping is None:
        return {}
    if isinstance(mapping, Mapping):
        result = dict(mapping)
    elif str(mapping) in PRESETS:
        result = dict(PRESETS[str(mapping)])
    else:
        path = Path(mapping)
        if not path.is_file():
            raise MappingError(f"mapping {mapping!r} is neither a preset "
                               f"({', '.join(PRESETS)}) nor a file")
        text = path.read_text()
        result = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        if not isinstance(result, dict):
            raise MappingError(f"{path}: expected a mapping of source: destination columns")
    bad = {k: v for k, v in result.items() if not isinstance(k, str) or not isinstance(v, str)}
    if bad:
        raise MappingError(f"mapping entries must be strings: {bad}")
    return result


def parse_ts(values: pd.Series, ts_unit: str = "ms") -> np.ndarray:
    """Event times (epoch ms, int64) from datetimes, datetime strings or epoch numbers.

    >>> parse_ts(pd.Series(["2018-04-01 00:00:31", "2018-04-01T02:00:31+02:00"])).tolist()
    [1522540831000, 1522540831000]
    >>> parse_ts(pd.Series([1522540831]), ts_unit="s").tolist()
    [1522540831000]
    """
    if ts_unit not in TS_UNITS:
        raise MappingError(f"ts_unit must be one of {', '.join(TS_UNITS)}")
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = pd.to_datetime(values, utc=True)
    elif pd.api.types.is_numeric_dtype(values):
        ms = np.asarray(values, dtype=np.float64) * TS_UNITS[ts_unit]
        if np.isnan(ms).any():
            raise MappingError("ts: missing values")
        if ms.size and ms.min() < MIN_TS_MS:
            raise MappingError(f"ts: numbers before year 2000 in epoch {ts_unit}; "
                               "seconds? pass ts_unit='s'")
        return np.round(ms).astype(np.int64)
    else:
        try:
            stamps = pd.to_datetime(values, utc=True, format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise MappingError(f"ts: not datetimes nor epoch numbers ({exc})") from None
    if stamps.isna().any():
        raise MappingError("ts: missing values")
    return (stamps.astype("datetime64[ns, UTC]").astype("int64") // 1_000_000).to_numpy()


def _read(path: Path) -> pa.Table:
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return pq.read_table(path)
    if name.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.zst")):
        return pa_csv.read_csv(path)
    raise MappingError(f"{path}: unsupported file type (parquet or CSV)")


def _ts_ms(column: pa.ChunkedArray, ts_unit: str) -> np.ndarray:
    """Event times (epoch ms) of an Arrow column (timestamps, numbers or strings)."""
    if pa.types.is_timestamp(column.type):
        if column.null_count:
            raise MappingError("ts: missing values")
        target = pa.timestamp("ms", tz=column.type.tz or "UTC")  # naive times are UTC
        return column.cast(target).cast(pa.int64()).to_numpy()
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        return parse_ts(pd.Series(column.cast(pa.float64()).to_numpy()), ts_unit)
    return parse_ts(column.to_pandas(), ts_unit)


def _strings(column: pa.ChunkedArray, name: str, source: str, required: bool) -> pa.Array:
    if required and column.null_count:
        raise MappingError(f"{name} (column {source}): missing values")
    if pa.types.is_floating(column.type):  # e.g. CSV integers with gaps: 596.0 -> "596"
        whole = pc.equal(column, pc.round(column))
        if pc.all(pc.fill_null(whole, True)).as_py():
            column = column.cast(pa.int64())
    return column.combine_chunks().cast(pa.string())


def _floats(column: pa.ChunkedArray, name: str, source: str, required: bool) -> pa.Array:
    try:
        values = column.combine_chunks().cast(pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise MappingError(f"{name} (column {source}): not numbers") from None
    nan = pc.fill_null(pc.is_nan(values), False)
    values = pc.if_else(nan, pa.scalar(None, pa.float64()), values)
    if required and values.null_count:
        raise MappingError(f"{name} (column {source}): missing values")
    return values


def file_digest(path: Path) -> str:
    """First 12 hex digits of the SHA-256 of the file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def read_recorded(path: str | Path, mapping: Mapping[str, str] | str | Path | None = None, *,
                  overrides: Mapping[str, str] | None = None, ts_unit: str = "ms",
                  currency: str = "EUR") -> pa.Table:
    """Recorded transactions as a table of the contract, in event-time order.

    ``overrides`` (``{source: destination}``) are applied over ``mapping``; a destination
    mapped twice keeps the override. Columns of the result: all payload columns (null where
    the file has none), then ``is_fraud`` and ``scenario`` when the file has them.
    """
    path = Path(path)
    frame = _read(path)
    found = list(map(str, frame.column_names))
    columns = load_mapping(mapping)
    if isinstance(mapping, str) and mapping in PRESETS:  # a preset's optional columns may lack
        columns = {s: d for s, d in columns.items() if s in found or d in REQUIRED}
    if overrides:
        taken = set(overrides.values())
        columns = {s: d for s, d in columns.items() if d not in taken}
        columns.update(load_mapping(overrides))
    unknown_src = [src for src in columns if src not in found]
    if unknown_src:
        raise MappingError(f"{path.name}: no column {', '.join(unknown_src)}; "
                           f"columns found: {', '.join(found)}")
    unknown_dst = sorted({dst for dst in columns.values() if dst not in KNOWN})
    if unknown_dst:
        raise MappingError(f"unknown destination {', '.join(unknown_dst)}; "
                           f"expected some of: {', '.join(KNOWN)}")
    picked = {dst: src for src, dst in columns.items()}
    for name in KNOWN:
        if name not in picked and name in found:
            picked[name] = name
    missing = [c for c in REQUIRED if c not in picked]
    if missing:
        raise MappingError(f"{path.name}: missing required {', '.join(missing)}; "
                           f"columns found: {', '.join(found)}; map them with SRC=DST")

    n = frame.num_rows
    data: dict[str, pa.Array] = {}
    data["ts"] = pa.array(_ts_ms(frame.column(picked["ts"]), ts_unit))
    for name in ("card_id", "terminal_id", "txn_id", "currency", "country", "mcc", "channel"):
        if name in picked:
            data[name] = _strings(frame.column(picked[name]), name, picked[name],
                                  required=name in REQUIRED or name == "txn_id")
    if "txn_id" not in data:
        data["txn_id"] = index_ids(np.arange(n), 9, f"{file_digest(path)}-")
    if "currency" not in data:
        data["currency"] = pa.array([currency], pa.string()).take(pa.array(np.zeros(n, np.int64)))
    for name in ("amount", "lat", "lon"):
        if name in picked:
            data[name] = _floats(frame.column(picked[name]), name, picked[name],
                                 required=name in REQUIRED)
    for name, lo, hi, what in (("is_fraud", 0, 1, "0 or 1"), ("scenario", 0, 127, "0..127")):
        if name in picked:
            values = _floats(frame.column(picked[name]), name, picked[name], False)
            values = values.to_numpy(zero_copy_only=False)
            bad = np.isnan(values) | (values < lo) | (values > hi) | (values != np.round(values))
            if bad.any():
                raise MappingError(f"{name} (column {picked[name]}): integers {what} expected")
            data[name] = pa.array(values.astype(np.int8))

    order = pa.array(np.argsort(data["ts"].to_numpy(), kind="stable"))
    arrays, fields = [], []
    for field in TRANSACTION_SCHEMA:
        if field.name in LABEL_COLUMNS and field.name not in data:
            continue
        values = data.get(field.name)
        arrays.append(pa.nulls(n, field.type) if values is None
                      else values.take(order).cast(field.type))
        fields.append(field)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
