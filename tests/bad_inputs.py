"""The bad-input table: each case is raw record bytes and the dead-letter reason it must get.

Shared by the unit test of :func:`contracts.transactions.validate` and the integration test
that sends every case through a real broker and a real worker.
"""

from __future__ import annotations

import json

VALID = {
    "txn_id": "t-000001",
    "card_id": "card-1",
    "terminal_id": "term-9",
    "amount": 42.5,
    "currency": "EUR",
    "ts": 1_522_540_831_000,
    "lat": 48.85,
    "lon": 2.35,
    "country": "FR",
    "mcc": "5411",
    "channel": "card_present",
}
REQUIRED = ("txn_id", "card_id", "terminal_id", "amount", "currency", "ts")
MAX_PAYLOAD = 4096


def valid(**changes: object) -> dict:
    record = dict(VALID)
    record.update(changes)
    return record


def dumps(record: object) -> bytes:
    return json.dumps(record).encode()


def _without(field: str) -> bytes:
    record = valid()
    del record[field]
    return dumps(record)


#: (case name, raw value or None for a null record value, expected reason)
BAD_INPUTS: list[tuple[str, bytes | None, str]] = [
    ("malformed json", b'{"txn_id": "t1", "amount": ', "malformed_json"),
    ("not utf-8", b'{"txn_id": "\xff\xfe"}', "not_utf8"),
    ("not an object (list)", b"[1, 2, 3]", "not_an_object"),
    ("not an object (string)", b'"hello"', "not_an_object"),
    ("json null", b"null", "null_value"),
    ("null record value", None, "null_value"),
    *[(f"missing {field}", _without(field), "missing_field") for field in REQUIRED],
    ("null required field", dumps(valid(card_id=None)), "missing_field"),
    ("amount as string", dumps(valid(amount="42.5")), "wrong_type"),
    ("amount as bool", dumps(valid(amount=True)), "wrong_type"),
    ("txn_id as number", dumps(valid(txn_id=12345)), "wrong_type"),
    ("ts as float", dumps(valid(ts=1_522_540_831_000.5)), "wrong_type"),
    ("lat as string", dumps(valid(lat="48.85")), "wrong_type"),
    ("negative amount", dumps(valid(amount=-10.0)), "invalid_amount"),
    ("zero amount", dumps(valid(amount=0)), "invalid_amount"),
    ("huge amount", dumps(valid(amount=1e12)), "invalid_amount"),
    ("NaN amount", dumps(valid(amount=1.0)).replace(b"1.0", b"NaN", 1), "non_finite_number"),
    ("Infinity amount", dumps(valid(amount=1.0)).replace(b"1.0", b"Infinity", 1),
     "non_finite_number"),
    ("NaN in an extra field", dumps(valid(note=0.25)).replace(b"0.25", b"NaN"),
     "non_finite_number"),
    ("unknown currency", dumps(valid(currency="XXX")), "unknown_currency"),
    ("lower-case currency", dumps(valid(currency="eur")), "unknown_currency"),
    ("latitude out of range", dumps(valid(lat=91.0)), "invalid_coordinates"),
    ("longitude out of range", dumps(valid(lon=-180.5)), "invalid_coordinates"),
    ("lat without lon", dumps(valid(lon=None)), "invalid_coordinates"),
    ("far-future timestamp", dumps(valid(ts=4_000_000_000_000)), "future_timestamp"),
    ("far-future ISO timestamp", dumps(valid(ts="2090-01-01T00:00:00Z")), "future_timestamp"),
    ("epoch seconds", dumps(valid(ts=1_522_540_831)), "invalid_timestamp"),
    ("ISO without zone", dumps(valid(ts="2018-04-01T00:00:31")), "invalid_timestamp"),
    ("unparseable timestamp", dumps(valid(ts="yesterday")), "invalid_timestamp"),
    ("oversized payload", dumps(valid(note="x" * MAX_PAYLOAD)), "payload_too_large"),
    ("empty txn_id", dumps(valid(txn_id="")), "invalid_field"),
    ("unknown channel", dumps(valid(channel="telepathy")), "invalid_field"),
    ("bad country code", dumps(valid(country="France")), "invalid_field"),
    # nesting beyond the decoder's limit (64), within the payload limit
    ("deeply nested extra field",
     dumps(valid(txn_id="t-deep")).replace(b"}", b', "x": ' + b"[" * 1000 + b"]" * 1000 + b"}"),
     "too_deep"),
    # a literal that overflows a double is Infinity: refused anywhere, extra fields included
    ("1e309 in an extra field", dumps(valid(note=0.5)).replace(b"0.5", b"1e309"),
     "non_finite_number"),
    ("-1e309 nested in an extra field",
     dumps(valid(extra={"a": [0.5]})).replace(b"0.5", b"-1e309"), "non_finite_number"),
    ("huge integer literal in an extra field",
     dumps(valid(note=0.5)).replace(b"0.5", b"9" * 400), "non_finite_number"),
    # ids: 1-64 characters without control characters (log and UI injection downstream)
    ("NUL in txn_id", dumps(valid(txn_id="t\x00x")), "invalid_field"),
    ("ESC in card_id", dumps(valid(card_id="card\x1b[31m")), "invalid_field"),
    ("newline in terminal_id", dumps(valid(terminal_id="term\nforged log line")),
     "invalid_field"),
    ("DEL in txn_id", dumps(valid(txn_id="t\x7f")), "invalid_field"),
    ("C1 control in card_id", dumps(valid(card_id="card\x85")), "invalid_field"),
    ("65-character txn_id", dumps(valid(txn_id="t" * 65)), "invalid_field"),
]

#: Valid records of many shapes that must pass (ISO time, optional fields absent, extra field).
GOOD_INPUTS: list[tuple[str, bytes]] = [
    ("full record", dumps(valid())),
    ("ISO time with Z", dumps(valid(txn_id="t-2", ts="2018-04-01T00:00:31Z"))),
    ("ISO time with offset", dumps(valid(txn_id="t-3", ts="2018-04-01T02:00:31+02:00"))),
    ("only required fields",
     dumps({k: VALID[k] for k in REQUIRED} | {"txn_id": "t-4"})),
    ("integer amount", dumps(valid(txn_id="t-5", amount=7))),
    ("unknown extra field", dumps(valid(txn_id="t-6", merchant_name="NaN Bakery"))),
    ("maximum amount", dumps(valid(txn_id="t-7", amount=50_000))),
    ("largest finite double in an extra field",
     dumps(valid(txn_id="t-8", note=0.5)).replace(b"0.5", b"1.7976931348623157e308")),
    ("printable unicode ids", dumps(valid(txn_id="t-9-\u00e9\u4e2d", card_id="card-\u00df"))),
    ("64-character txn_id", dumps(valid(txn_id="t" * 64))),
    ("brackets inside strings do not nest", dumps(valid(txn_id="t-10", note="[" * 500))),
]
