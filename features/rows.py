"""State rows and their compact binary codec (the "state log": one record per micro-batch).

A :class:`TxnRow` is a validated transaction reduced to what the feature states need, already
quantised as the states store it (cents, 1e-7 degree coordinates, clean categories), plus the
offset of its source record; a :class:`LabelRow` is a fraud label. ``CardState`` /
``TerminalState`` ``update``/``record`` and ``TerminalState.add_label`` take them as they take
dicts, and give identical results: :func:`txn_row` quantises with the very functions the
states use on dicts.

Format (version :data:`FORMAT`, little-endian)
---------------------------------------------
::

    header   B format, I n_txn, I n_label, I n_string_bytes
    txns     q ts[n], q cents[n], q offset[n], i lat[n], i lon[n], B nulls[n]
    labels   q ts[m], q reported_at[m], q offset[m], B is_fraud[m]
    strings  UTF-8, NUL-separated: txn_id[n], card_id[n], terminal_id[n], country[n], mcc[n],
             channel[n], then label txn_id[m], terminal_id[m] (column after column)
    trailer  I CRC-32 of everything before

``lat``/``lon`` are int32 1e-7 degrees, ``-2**31`` for none; ``nulls`` has bit 0/1/2 set when
country/mcc/channel is none. Columns are packed and unpacked by :mod:`array` at C speed.
:func:`decode` raises :class:`ValueError` for anything that is not an intact batch of this
format (wrong version, truncated, trailing bytes, checksum, malformed strings).

Examples
--------
>>> t = txn_row({"txn_id": "a", "card_id": "c", "terminal_id": "T", "amount": 12.34,
...              "ts": 1_000, "lat": 48.85, "lon": 2.35, "country": "FR"}, offset=7)
>>> t
TxnRow(txn_id='a', card_id='c', terminal_id='T', ts=1000, cents=1234, lat=488500000, \
lon=23500000, country='FR', mcc=None, channel=None, offset=7)
>>> lab = label_row({"txn_id": "a", "terminal_id": "T", "ts": 1_000, "reported_at": 9_000,
...                  "is_fraud": 1})
>>> blob = encode([t], [lab])
>>> decode(blob) == ([t], [lab])
True
>>> decode(blob[:-1])
Traceback (most recent call last):
...
ValueError: row batch: truncated or trailing bytes (88 bytes, expected 89)
"""

from __future__ import annotations

import struct
import zlib
from array import array
from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any, NamedTuple

from features.geo import to_fixed

FORMAT = 1
_HEADER = struct.Struct("<BIII")
_CRC = struct.Struct("<I")
_NONE32 = -(2**31)
_TXN_BYTES = 8 * 3 + 4 * 2 + 1
_LABEL_BYTES = 8 * 3 + 1
_new = tuple.__new__


class TxnRow(NamedTuple):
    """A transaction as the states store it (see the module docstring)."""

    txn_id: str
    card_id: str
    terminal_id: str
    ts: int
    cents: int
    lat: int | None  # 1e-7 degrees; lat and lon are both None or both set
    lon: int | None
    country: str | None
    mcc: str | None
    channel: str | None
    offset: int = -1


class LabelRow(NamedTuple):
    """A fraud label (``offset``: of its source record, -1 if none)."""

    txn_id: str
    terminal_id: str
    ts: int
    reported_at: int
    is_fraud: bool
    offset: int = -1


def to_cents(amount: float) -> int:
    """Amount as integer cents (rounded half to even).

    Examples
    --------
    >>> to_cents(12.34), to_cents(0.1 + 0.2), to_cents(220.0)
    (1234, 30, 22000)
    """
    return round(amount * 100)


def clean_category(value: Any) -> str | None:
    """A categorical value as str, or None for None / NaN.

    Examples
    --------
    >>> clean_category("FR"), clean_category(None), clean_category(float("nan"))
    ('FR', None, None)
    """
    if value is None or value != value:
        return None
    return str(value)


def clean_coords(lat: Any, lon: Any) -> tuple[int | None, int | None]:
    """``(lat, lon)`` in 1e-7 degree units, or ``(None, None)`` unless both are present.

    Examples
    --------
    >>> clean_coords(1, 2.5), clean_coords(1.0, None), clean_coords(float("nan"), 2.0)
    ((10000000, 25000000), (None, None), (None, None))
    """
    if lat is None or lon is None or lat != lat or lon != lon:
        return None, None
    return to_fixed(float(lat)), to_fixed(float(lon))


def txn_row(txn: Mapping[str, Any], offset: int = -1) -> TxnRow:
    """The :class:`TxnRow` of a (validated) transaction dict."""
    lat, lon = clean_coords(txn.get("lat"), txn.get("lon"))
    return TxnRow(str(txn["txn_id"]), str(txn["card_id"]), str(txn["terminal_id"]),
                  int(txn["ts"]), to_cents(float(txn["amount"])), lat, lon,
                  clean_category(txn.get("country")), clean_category(txn.get("mcc")),
                  clean_category(txn.get("channel")), offset)


def label_row(label: Mapping[str, Any], offset: int = -1) -> LabelRow:
    """The :class:`LabelRow` of a label dict."""
    return LabelRow(str(label["txn_id"]), str(label["terminal_id"]), int(label["ts"]),
                    int(label["reported_at"]), bool(label["is_fraud"]), offset)


def encode(txns: Sequence[TxnRow], labels: Sequence[LabelRow] = ()) -> bytes:
    """One binary record holding ``txns`` and ``labels`` (see the module docstring).

    Raises ValueError for a value the format cannot hold (a NUL in a string, an integer out
    of range, a coordinate beyond +-214 degrees).
    """
    n, m = len(txns), len(labels)
    try:
        if n:
            (ids, cards, terms, ts, cents, lat, lon, country, mcc, channel,
             offs) = zip(*txns, strict=True)
            nulls = bytes((c is None) | (k is None) << 1 | (h is None) << 2
                          for c, k, h in zip(country, mcc, channel, strict=True))
            txn_cols = b"".join((
                array("q", ts).tobytes(), array("q", cents).tobytes(),
                array("q", offs).tobytes(),
                array("i", [_NONE32 if v is None else v for v in lat]).tobytes(),
                array("i", [_NONE32 if v is None or a is None else v
                            for v, a in zip(lon, lat, strict=True)]).tobytes(),
                nulls))
            strs: Any = chain(ids, cards, terms, [c or "" for c in country],
                              [c or "" for c in mcc], [c or "" for c in channel])
        else:
            txn_cols, strs = b"", ()
        if m:
            l_ids, l_terms, l_ts, l_rep, l_fraud, l_offs = zip(*labels, strict=True)
            label_cols = b"".join((
                array("q", l_ts).tobytes(), array("q", l_rep).tobytes(),
                array("q", l_offs).tobytes(), bytes(map(bool, l_fraud))))
            strs = chain(strs, l_ids, l_terms)
        else:
            label_cols = b""
        text = "\x00".join(strs)
    except (OverflowError, TypeError) as err:
        raise ValueError(f"row batch: value out of range or of the wrong type: {err}") from err
    if text.count("\x00") != max(6 * n + 2 * m - 1, 0):
        raise ValueError("row batch: a string field contains NUL")
    raw = text.encode()
    body = b"".join((_HEADER.pack(FORMAT, n, m, len(raw)), txn_cols, label_cols, raw))
    return body + _CRC.pack(zlib.crc32(body))


def decode(blob: bytes) -> tuple[list[TxnRow], list[LabelRow]]:
    """Inverse of :func:`encode`: ``(txns, labels)``; ValueError for a damaged record."""
    if len(blob) < _HEADER.size + _CRC.size:
        raise ValueError(f"row batch: truncated ({len(blob)} bytes)")
    fmt, n, m, nstr = _HEADER.unpack_from(blob)
    if fmt != FORMAT:
        raise ValueError(f"row batch: unsupported format {fmt} (expected {FORMAT})")
    size = _HEADER.size + n * _TXN_BYTES + m * _LABEL_BYTES + nstr + _CRC.size
    if len(blob) != size:
        raise ValueError(f"row batch: truncated or trailing bytes ({len(blob)} bytes, "
                         f"expected {size})")
    view = memoryview(blob)
    if zlib.crc32(view[:-4]) != _CRC.unpack_from(blob, size - 4)[0]:
        raise ValueError("row batch: checksum mismatch (corrupt record)")
    pos = _HEADER.size

    def column(code: str, count: int) -> list[int]:
        nonlocal pos
        col = array(code)
        width = col.itemsize * count
        col.frombytes(view[pos : pos + width])
        pos += width
        return col.tolist()

    ts, cents, offs, lat, lon = (column(c, n) for c in "qqqii")
    nulls = bytes(view[pos : pos + n])
    pos += n
    l_ts, l_rep, l_offs = (column("q", m) for _ in range(3))
    l_fraud = [b != 0 for b in view[pos : pos + m]]
    pos += m
    try:
        parts = str(view[pos : pos + nstr], "utf-8").split("\x00") if 6 * n + 2 * m else []
    except UnicodeDecodeError as err:
        raise ValueError(f"row batch: strings are not UTF-8: {err}") from err
    if len(parts) != 6 * n + 2 * m:
        raise ValueError("row batch: wrong number of strings (corrupt record)")
    txns: list[TxnRow] = []
    if n:
        lats = [None if v == _NONE32 else v for v in lat]
        lons = [None if v == _NONE32 else v for v in lon]
        country = [None if f & 1 else v for v, f in zip(parts[3 * n : 4 * n], nulls, strict=True)]
        mcc = [None if f & 2 else v for v, f in zip(parts[4 * n : 5 * n], nulls, strict=True)]
        channel = [None if f & 4 else v for v, f in zip(parts[5 * n : 6 * n], nulls, strict=True)]
        txns = [_new(TxnRow, r) for r in zip(parts[:n], parts[n : 2 * n], parts[2 * n : 3 * n],
                                              ts, cents, lats, lons, country, mcc, channel, offs,
                                              strict=True)]
    labels: list[LabelRow] = []
    if m:
        s = 6 * n
        labels = [_new(LabelRow, r) for r in zip(parts[s : s + m], parts[s + m : s + 2 * m],
                                                  l_ts, l_rep, l_fraud, l_offs, strict=True)]
    return txns, labels


def as_txn(row: TxnRow) -> dict[str, Any]:
    """A transaction dict equivalent to ``row`` for the states (amount = cents / 100, degrees
    = units / 1e7: both quantise back to the same integers).

    Examples
    --------
    >>> t = txn_row({"txn_id": "a", "card_id": "c", "terminal_id": "T", "amount": 0.29,
    ...              "ts": 5, "lat": -33.8688, "lon": 151.2093})
    >>> txn_row(as_txn(t)) == t
    True
    """
    return {"txn_id": row.txn_id, "card_id": row.card_id, "terminal_id": row.terminal_id,
            "ts": row.ts, "amount": row.cents / 100,
            "lat": None if row.lat is None else row.lat / 1e7,
            "lon": None if row.lon is None else row.lon / 1e7,
            "country": row.country, "mcc": row.mcc, "channel": row.channel}
