"""JSON record values and Kafka keys for whole tables at once (Arrow compute, no per-row dict).

``json_values(table, columns)`` builds one compact JSON object per row, in column order:
strings are quoted (and escaped through :func:`json.dumps` when they hold a character that
needs it), numbers are written in their shortest round-trip form, nulls and NaN as ``null``.
The values parse back to the same records with :func:`json.loads`; the transaction payload
(:data:`~simulator.output.PAYLOAD_COLUMNS`) never includes ``is_fraud`` or ``scenario``.

>>> t = pa.table({"txn_id": ["a\\"1", "b"], "amount": [12.5, 3.0], "lat": [None, 48.1]})
>>> [json.loads(v) for v in json_values(t, ["txn_id", "amount", "lat"])]
[{'txn_id': 'a"1', 'amount': 12.5, 'lat': None}, {'txn_id': 'b', 'amount': 3.0, 'lat': 48.1}]
>>> keys(t, "txn_id")
[b'a"1', b'b']
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from simulator.labels import LABEL_SCHEMA
from simulator.output import PAYLOAD_COLUMNS

LABEL_COLUMNS: tuple[str, ...] = tuple(LABEL_SCHEMA.names)
_QUOTE, _BACKSLASH, _DEL = 0x22, 0x5C, 0x7F


def _may_need_escape(column: pa.Array) -> bool:
    """Whether any byte of the string data is a quote, a backslash or a control character.

    Scans the whole data buffer with NumPy (bytes outside a slice can only cause a false
    positive, which takes the slower but exact path).
    """
    data = column.buffers()[2]
    if data is None:
        return False
    raw = np.frombuffer(data, dtype=np.uint8)
    return bool(((raw < 0x20) | (raw == _QUOTE) | (raw == _BACKSLASH) | (raw == _DEL)).any())


def _json_strings(column: pa.Array) -> pa.Array:
    """Each value as a JSON string literal (``null`` for nulls)."""
    column = column.cast(pa.string())
    if _may_need_escape(column):
        return pa.array([json.dumps(v) if v is not None else "null"
                         for v in column.to_pylist()], pa.string())
    quoted = pc.binary_join_element_wise('"', column, '"', "")
    return pc.fill_null(quoted, "null")


def _json_numbers(column: pa.Array) -> pa.Array:
    """Each number as JSON (``null`` for nulls, NaN and infinities)."""
    if pa.types.is_floating(column.type):
        finite = pc.is_finite(column)
        column = pc.if_else(finite, column, pa.scalar(None, column.type))
        text = column.cast(pa.string())
        integral = pc.match_substring_regex(text, r"^-?[0-9]+$")  # keep floats floats: "3.0"
        text = pc.if_else(integral, pc.binary_join_element_wise(text, ".0", ""), text)
        return pc.fill_null(text, "null")
    elif pa.types.is_boolean(column.type):
        column = column.cast(pa.int8())
    return pc.fill_null(column.cast(pa.string()), "null")


def json_values(table: pa.Table, columns: Sequence[str] = PAYLOAD_COLUMNS) -> list[bytes]:
    """One compact JSON object (UTF-8 bytes) per row with ``columns`` in that order."""
    if table.num_rows == 0:
        return []
    pieces: list[pa.Array | str] = []
    for i, name in enumerate(columns):
        column = table.column(name).combine_chunks()
        text = (_json_strings(column) if pa.types.is_string(column.type)
                or pa.types.is_large_string(column.type) else _json_numbers(column))
        pieces.append(("{" if i == 0 else ",") + json.dumps(name) + ":")
        pieces.append(text)
    pieces.append("}")
    joined = pc.binary_join_element_wise(*pieces, "")
    return joined.cast(pa.binary()).to_pylist()


def keys(table: pa.Table, column: str = "card_id") -> list[bytes]:
    """The UTF-8 bytes of ``column`` (the Kafka key) per row."""
    return table.column(column).combine_chunks().cast(pa.binary()).to_pylist()


def transaction_values(table: pa.Table) -> list[bytes]:
    """Values of the ``transactions`` topic (payload columns only)."""
    return json_values(table, [c for c in PAYLOAD_COLUMNS if c in table.column_names])


def label_values(table: pa.Table) -> list[bytes]:
    """Values of the ``transaction-labels`` topic."""
    return json_values(table, LABEL_COLUMNS)


def as_int64(values: pa.Array | pa.ChunkedArray | np.ndarray) -> np.ndarray:
    """A numeric column as an int64 NumPy array (helper for event-time columns)."""
    if isinstance(values, pa.ChunkedArray | pa.Array):
        values = values.to_numpy()
    return np.asarray(values, dtype=np.int64)
