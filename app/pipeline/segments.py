"""State-log segments: what one worker applied for one source partition, with its progress.

Partition ``p`` of ``<app_id>-state-log`` holds, in order, the segments written by whoever
owned source partition ``p`` (of ``transactions`` and ``transaction-labels``, co-partitioned).
A segment is one Kafka record: a fixed header, then the rows in the binary codec of
:mod:`features.rows` (validated transaction rows and fraud-label rows, each with its source
offset). The header says who wrote it and how complete partition ``p`` is in the log once the
segment is there:

============  ================================================================================
``writer``    16 bytes: the writing worker incarnation's random id (a restart is a new writer)
``partition`` the source partition
``t_first``   merge time of the first row (event time of a txn, ``reported_at`` of a label);
``t_last``    ... of the last row (:data:`NONE` for a header-only segment)
``txn_end``   one past the highest ``transactions`` offset in the log for ``p`` after this
              segment (-1: none yet); ``label_end`` the same for ``transaction-labels``
``complete``  every transaction of ``p`` with ``ts <= complete`` is in the log
``labels``    every fraud label of ``p`` with ``reported_at <= labels`` is in the log
``caught_up`` the writer had nothing of ``p`` left on the broker, queued or unprocessed
============  ================================================================================

Values are little-endian; :data:`NONE` (``-2**63``) stands for "no value". :func:`decode`
raises :class:`ValueError` for anything that is not an intact segment of this version (the
row codec checks its own CRC).

>>> from features.rows import txn_row
>>> row = txn_row({"txn_id": "a", "card_id": "c", "terminal_id": "T", "amount": 1.5,
...                "ts": 10}, offset=3)
>>> head = Header(b"w" * 16, 2, 10, 10, 4, -1, 9, 5, False)
>>> blob = encode(head, [row], [])
>>> decode(blob) == (head, [row], [])
True
>>> decode(b"x" + blob[1:])
Traceback (most recent call last):
...
ValueError: state-log segment: version 120, expected 1
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

from features import rows as _rows
from features.rows import LabelRow, TxnRow

VERSION = 1
NONE = -(2**63)
_HEAD = struct.Struct("<B16sIqqqqqqB")


class Header(NamedTuple):
    """The header of a segment (see the module docstring)."""

    writer: bytes
    partition: int
    t_first: int
    t_last: int
    txn_end: int
    label_end: int
    complete: int
    labels: int
    caught_up: bool


def encode(header: Header, txns: Sequence[TxnRow], labels: Sequence[LabelRow]) -> bytes:
    """One segment record: ``header`` then the rows."""
    return _HEAD.pack(VERSION, header.writer, header.partition, header.t_first, header.t_last,
                      header.txn_end, header.label_end, header.complete, header.labels,
                      1 if header.caught_up else 0) + _rows.encode(txns, labels)


def decode_header(blob: bytes) -> Header:
    """The header alone (cheap: the rows are not decoded)."""
    if len(blob) < _HEAD.size:
        raise ValueError(f"state-log segment: {len(blob)} bytes, shorter than its header")
    fields = _HEAD.unpack_from(blob)
    if fields[0] != VERSION:
        raise ValueError(f"state-log segment: version {fields[0]}, expected {VERSION}")
    return Header(fields[1], fields[2], fields[3], fields[4], fields[5], fields[6], fields[7],
                  fields[8], bool(fields[9]))


def decode(blob: bytes) -> tuple[Header, list[TxnRow], list[LabelRow]]:
    """Header and rows of a segment record."""
    header = decode_header(blob)
    txns, labels = _rows.decode(blob[_HEAD.size:])
    return header, txns, labels
