"""Compact binary snapshot of one key's state (``state.dumps()`` / ``Cls.loads(blob)``).

For local checkpoints: time and size proportional to the rows held, columns packed by
:mod:`array` at C speed, prefix sums left out (rebuilt on load, as by ``from_dict``).

Format (version :data:`FORMAT`, little-endian)
---------------------------------------------
::

    header   B format, B kind ('C' card, 'T' terminal), B flags, B narrow, I n,
             q watermark, q evicted
    ts       q[n]
    raw      the state's raw columns (id hash, cents, card: lat, lon), each q[n], or i[n]
             when bit k of ``narrow`` is set (-2**31 for a missing coordinate)
    card     [q before_ts] [q q q before_geo] (flags bits 1, 2), then the categorical
             fields: B count, per field its name, its vocabulary and per row a code
             (0: none, else vocabulary index + 1) as B, H or I
    terminal q dropped_labels, I frauds, I held, I orphans, their (ts, reported_at) as q
             columns and their txn ids
    trailer  I CRC-32 of everything before

Strings are ``I count, I length[count]``, then the UTF-8 bytes. ``loads`` raises
:class:`ValueError` for a damaged or foreign blob.

Examples
--------
>>> from features.card import CardState
>>> s = CardState()
>>> _ = s.update({"txn_id": "a", "card_id": "c", "terminal_id": "T", "amount": 1.5, "ts": 0,
...               "lat": 45.0, "lon": 4.0, "country": "FR"})
>>> blob = s.dumps()
>>> len(blob), CardState.loads(blob).to_dict() == s.to_dict()
(84, True)
>>> CardState.loads(blob[:40])
Traceback (most recent call last):
...
ValueError: state snapshot: checksum mismatch (corrupt)
"""

from __future__ import annotations

import struct
import zlib
from array import array
from typing import Any

from features.eventlog import NONE

FORMAT = 1
_HEADER = struct.Struct("<BBBBIqq")
_NONE32 = -(2**31)
_KINDS = {"card": ord("C"), "terminal": ord("T")}
_WM_NONE = 1
_BTS = 2
_BGEO = 4
_STRUCTS: dict[str, struct.Struct] = {}


def _narrow(col: array) -> tuple[bool, bytes]:
    """``col`` as int32 bytes (True) when every value fits, else its int64 bytes."""
    missing = col.count(NONE)
    if missing == len(col):  # no row has the value (e.g. no coordinates at all)
        return True, (array("i", [_NONE32]) * missing).tobytes()
    src = array("q", [_NONE32 if v == NONE else v for v in col]) if missing else col
    try:
        small = array("i", src)
    except OverflowError:
        return False, col.tobytes()
    if small.count(_NONE32) != missing:  # a real value equal to the int32 marker
        return False, col.tobytes()
    return True, small.tobytes()


_NAMES: dict[str, bytes] = {}


def _strings(values: list[str]) -> bytes:
    raw = [v.encode() for v in values]
    return b"".join((struct.pack("<I", len(raw)), array("I", map(len, raw)).tobytes(), *raw))


def dumps(state: Any) -> bytes:
    """The snapshot of ``state`` (a :class:`~features.card.CardState` or
    :class:`~features.terminal.TerminalState`)."""
    s = state.STRIDE
    head = state.head
    n = len(state)
    d = state._d
    flags = _WM_NONE if state.watermark is None else 0
    narrow = 0
    parts = [b"", state._ts[head:].tobytes(), d[head * s :: s].tobytes()]
    for k in range(1, state.RAW):
        small, raw = _narrow(d[head * s + k :: s])
        narrow |= small << k
        parts.append(raw)
    kind = state.ENTITY
    if kind == "card":
        if state.before_ts is not None:
            flags |= _BTS
            parts.append(struct.pack("<q", state.before_ts))
        if state.before_geo is not None:
            flags |= _BGEO
            parts.append(struct.pack("<qqq", *state.before_geo))
        fields = state._lay.fields
        parts.append(struct.pack("<B", len(fields)))
        k = len(fields)
        for j, name in enumerate(fields):
            col = state._cat[head * k + j :: k]
            index: dict[Any, int] = {None: 0}
            codes = [index.setdefault(v, len(index)) for v in col]
            size = len(index)
            code = "B" if size <= 256 else "H" if size <= 65536 else "I"
            packed = _NAMES.get(name) or _NAMES.setdefault(name, _strings([name]))
            parts += [packed, _strings(list(index)[1:]), code.encode(),
                      array(code, codes).tobytes()]
    else:
        pending = sorted(state._pending)
        orphans = [(i, ts, r) for i, (ts, r) in state._orphans.items()] if state._orphans else []
        parts += [struct.pack("<qIII", state.dropped_labels, len(state.f_ts), len(pending),
                              len(orphans)),
                  array("q", state.f_ts).tobytes(), array("q", state.f_rep).tobytes(),
                  array("q", [p[0] for p in pending]).tobytes(),
                  array("q", [p[2] for p in pending]).tobytes(),
                  array("q", [o[1] for o in orphans]).tobytes(),
                  array("q", [o[2] for o in orphans]).tobytes(),
                  _strings([*state.f_ids, *(p[1] for p in pending), *(o[0] for o in orphans)])]
    wm = 0 if state.watermark is None else state.watermark
    parts[0] = _HEADER.pack(FORMAT, _KINDS[kind], flags, narrow, n, wm, state.evicted)
    body = b"".join(parts)
    return body + struct.pack("<I", zlib.crc32(body))


class _Reader:
    def __init__(self, view: memoryview) -> None:
        self.view = view
        self.pos = 0

    def take(self, size: int) -> memoryview:
        end = self.pos + size
        if size < 0 or end > len(self.view):
            raise ValueError("state snapshot: truncated or corrupt")
        out = self.view[self.pos : end]
        self.pos = end
        return out

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        st = _STRUCTS.get(fmt) or _STRUCTS.setdefault(fmt, struct.Struct(fmt))
        return st.unpack(self.take(st.size))

    def column(self, code: str, n: int) -> array:
        col = array(code)
        col.frombytes(self.take(col.itemsize * n))
        return col

    def strings(self) -> list[str]:
        (count,) = self.unpack("<I")
        lengths = self.column("I", count)
        try:
            return [str(self.take(k), "utf-8") for k in lengths]
        except UnicodeDecodeError as err:
            raise ValueError(f"state snapshot: corrupt string: {err}") from err


def loads(state: Any, blob: bytes) -> None:
    """Fill the fresh ``state`` from a :func:`dumps` blob (ValueError if damaged)."""
    if len(blob) < _HEADER.size + 4:
        raise ValueError(f"state snapshot: truncated ({len(blob)} bytes)")
    (crc,) = struct.unpack_from("<I", blob, len(blob) - 4)
    fmt, kind, flags, narrow, n, wm, evicted = _HEADER.unpack_from(blob)
    if fmt != FORMAT:
        raise ValueError(f"state snapshot: unsupported format {fmt} (expected {FORMAT})")
    if kind != _KINDS[state.ENTITY]:
        raise ValueError(f"state snapshot: not a {state.ENTITY} state")
    if zlib.crc32(memoryview(blob)[:-4]) != crc:
        raise ValueError("state snapshot: checksum mismatch (corrupt)")
    r = _Reader(memoryview(blob)[:-4])
    r.take(_HEADER.size)
    state.watermark = None if flags & _WM_NONE else wm
    state.evicted = evicted
    state._ts = r.column("q", n)
    raw = [r.column("q", n)]
    for k in range(1, state.RAW):
        if narrow >> k & 1:
            small = r.column("i", n)
            missing = small.count(_NONE32)
            if missing == n:
                col = array("q", [NONE]) * n
            elif missing:
                col = array("q", [NONE if v == _NONE32 else v for v in small])
            else:
                col = array("q", small)
        else:
            col = r.column("q", n)
        raw.append(col)
    state._set_rows(*raw)
    if state.ENTITY == "card":
        if flags & _BTS:
            (state.before_ts,) = r.unpack("<q")
        if flags & _BGEO:
            state.before_geo = r.unpack("<qqq")
        (count,) = r.unpack("<B")
        saved = {}
        for _ in range(count):
            (name,) = r.strings() or [""]
            vocab: list[Any] = [None, *r.strings()]
            code = str(r.take(1), "ascii")
            if code not in ("B", "H", "I"):
                raise ValueError("state snapshot: corrupt category codes")
            try:
                saved[name] = [vocab[c] for c in r.column(code, n)]
            except IndexError as err:
                raise ValueError("state snapshot: corrupt category codes") from err
        state._set_cats(n, [saved.get(name) for name in state._lay.fields])
    else:
        dropped, nf, np_, no = r.unpack("<qIII")
        f_ts, f_rep = r.column("q", nf), r.column("q", nf)
        p_rep, p_ts = r.column("q", np_), r.column("q", np_)
        o_ts, o_rep = r.column("q", no), r.column("q", no)
        ids = r.strings()
        if len(ids) != nf + np_ + no:
            raise ValueError("state snapshot: corrupt label ids")
        state._set_labels(list(zip(ids[:nf], f_ts, f_rep, strict=True)),
                          list(zip(p_rep, ids[nf : nf + np_], p_ts, strict=True)),
                          list(zip(ids[nf + np_ :], o_ts, o_rep, strict=True)))
        state.dropped_labels = dropped
    if r.pos != len(r.view):
        raise ValueError("state snapshot: trailing bytes (corrupt)")
