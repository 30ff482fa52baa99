"""JSON on the wire: the one way every topic's bytes are parsed, and the one way records are
written.

:func:`loads` is the decode entry point of every consumer of JSON from Kafka. It never raises
anything but :class:`~contracts.rejections.ContractError`, whose ``reason`` says what was wrong:

===========================  =====================================================================
``null_value``               no value (a tombstone) or an empty one
``payload_too_large``        more than ``max_bytes`` bytes
``too_deep``                 arrays/objects nested deeper than ``max_depth`` (64 by default)
``not_utf8``                 the bytes are not UTF-8
``non_finite_number``        ``NaN``, ``Infinity`` or a number literal that overflows a double
                             (``1e309``), anywhere, extra fields and nested values included
``malformed_json``           anything else that is not one JSON value
===========================  =====================================================================

How, and why it is cheap (measured, ``scripts/bench_contracts.py``): the parser is orjson,
which refuses ``NaN``/``Infinity`` and overflowing literals *while parsing* (pydantic's jiter
and the standard library turn ``1e309`` into ``inf``), and stops at depth 1024 with an error
(no ``RecursionError``: the standard library's ``json`` raises one at ~1,000 levels, jiter stops
at 200). The depth limit below 1024 costs two ``bytes.count`` calls per record: a value with at
most ``max_depth`` brackets cannot nest deeper, and only a value with more is scanned exactly
(strings stripped by one regular expression, then the brackets counted).

:func:`dumps` writes compact JSON (orjson; no spaces, keys in insertion order). Readers parse
JSON, so the bytes differ from ``json.dumps``'s only in whitespace.

>>> loads(b'{"a": [1, 2.5, "x"]}')
{'a': [1, 2.5, 'x']}
>>> loads(b'{"amount": 1, "note": 1e309}')
Traceback (most recent call last):
...
contracts.rejections.ContractError: non_finite_number: a number is NaN, Infinity or overflows \
a double (char 22)
>>> loads(b"[" * 10_000 + b"]" * 10_000)
Traceback (most recent call last):
...
contracts.rejections.ContractError: too_deep: nested deeper than 64 levels
>>> dumps({"a": 1, "b": [True, None]})
b'{"a":1,"b":[true,null]}'
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from contracts.reasons import Reason
from contracts.rejections import ContractError

#: Deepest nesting accepted by default (a transaction has depth 1; no record of ours exceeds 3).
MAX_DEPTH = 64

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_NON_FINITE_MESSAGE = "a number is NaN, Infinity or overflows a double"


class _NonFinite(Exception):
    pass


def _refuse_constant(_name: str) -> float:
    raise _NonFinite


def depth(data: bytes | bytearray | memoryview) -> int:
    """Deepest nesting of arrays and objects in JSON bytes (brackets inside strings ignored).

    Exact for valid JSON; for malformed bytes an upper bound of what a parser would reach.

    >>> depth(b'{"a": [[1], {"b": "[[[["}]}'), depth(b'"x"'), depth(b'[' * 5000)
    (3, 0, 5000)
    """
    brackets = _STRINGS.sub(b"", bytes(data)).translate(None, _NOT_BRACKETS)
    deepest = level = 0
    for byte in brackets:
        if byte == 0x5B or byte == 0x7B:  # [ {
            level += 1
            if level > deepest:
                deepest = level
        else:
            level -= 1
    return deepest


def check_size(data: Any, max_bytes: int | None, max_depth: int = MAX_DEPTH) -> bytes:
    """``data`` as bytes after the checks that need no parse: null, size, depth.

    >>> check_size(None, 10)
    Traceback (most recent call last):
    ...
    contracts.rejections.ContractError: null_value: record value is null (empty)
    >>> check_size(b"x" * 11, 10)
    Traceback (most recent call last):
    ...
    contracts.rejections.ContractError: payload_too_large: value is 11 bytes, the limit is 10
    """
    if data is None or len(data) == 0:
        raise ContractError(Reason.NULL_VALUE, "record value is null (empty)")
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    elif not isinstance(data, bytes | bytearray):
        data = bytes(data)
    if max_bytes is not None and len(data) > max_bytes:
        raise ContractError(Reason.PAYLOAD_TOO_LARGE,
                            f"value is {len(data)} bytes, the limit is {max_bytes}")
    if data.count(b"[") + data.count(b"{") > max_depth and depth(data) > max_depth:
        raise ContractError(Reason.TOO_DEEP, f"nested deeper than {max_depth} levels")
    return data


def loads(data: bytes | bytearray | memoryview | str | None, *, max_bytes: int | None = None,
          max_depth: int = MAX_DEPTH) -> Any:
    """Parse one JSON value from a record's bytes; :class:`ContractError` on any failure."""
    data = check_size(data, max_bytes, max_depth)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise _decode_error(data, exc) from None


def loads_object(data: bytes | bytearray | memoryview | str | None, *,
                 max_bytes: int | None = None, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """:func:`loads` for a value that must be a JSON object (``not_an_object`` otherwise; a
    JSON ``null`` is ``null_value``). The hot path of every topic: the checks are inlined.

    >>> loads_object(b"[1]")
    Traceback (most recent call last):
    ...
    contracts.rejections.ContractError: not_an_object: the value is a JSON array, not an object
    """
    if (not data or isinstance(data, str | memoryview)
            or (max_bytes is not None and len(data) > max_bytes)
            or data.count(b"[") + data.count(b"{") > max_depth):
        data = check_size(data, max_bytes, max_depth)
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise _decode_error(bytes(data), exc) from None
    if value.__class__ is not dict:
        if value is None:
            raise ContractError(Reason.NULL_VALUE, "the value is JSON null")
        raise ContractError(Reason.NOT_AN_OBJECT,
                            f"the value is a JSON {_json_kind(value)}, not an object")
    return value  # type: ignore[no-any-return]


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    return "number"


def _decode_error(data: bytes, exc: orjson.JSONDecodeError) -> ContractError:
    message = exc.msg
    if "UTF-8" in message:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as bad:
            return ContractError(Reason.NOT_UTF8, f"value is not UTF-8 (byte {bad.start})")
        return ContractError(Reason.NOT_UTF8, "value is not UTF-8")
    if "infinity" in message:
        return ContractError(Reason.NON_FINITE_NUMBER, f"{_NON_FINITE_MESSAGE} (char {exc.pos})")
    if "depth" in message:
        return ContractError(Reason.TOO_DEEP, "nested deeper than 1024 levels")
    if b"NaN" in data or b"Infinity" in data:
        # orjson refuses these tokens as "unexpected character"; tell them apart from other
        # syntax errors (the depth is already bounded, so the standard parser is safe here).
        try:
            json.loads(data, parse_constant=_refuse_constant)
        except _NonFinite:
            return ContractError(Reason.NON_FINITE_NUMBER,
                                 f"{_NON_FINITE_MESSAGE} (char {exc.pos})")
        except (ValueError, RecursionError):
            pass
    return ContractError(Reason.MALFORMED_JSON, f"not valid JSON: {message} (char {exc.pos})")


def dumps(value: Any) -> bytes:
    """Compact JSON bytes (orjson). Dataclasses and enums serialise natively.

    orjson writes NaN and infinities as ``null``: the record encoders of
    :mod:`contracts.records` refuse non-finite numbers before they get here.
    """
    return orjson.dumps(value)
