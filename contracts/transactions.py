"""The transaction and label contract, and strict validation of raw record values at the edge.

A record value is parsed by the one depth-limited decoder of :mod:`contracts.wire` (no NaN or
Infinity anywhere, extra fields and overflowing literals such as ``1e309`` included; at most 64
levels of nesting), then checked by pydantic in strict mode (JSON numbers only where numbers
are expected). The ids (``txn_id``, ``card_id``, ``terminal_id``) are 1-64 characters without
any control character (C0, DEL, C1: no NUL, ESC or newline to inject into logs and UIs
downstream). The outcome is either a :class:`Transaction` or a
:class:`~contracts.rejections.Rejection` with a machine-readable ``reason`` (a
:class:`~contracts.reasons.Reason`) and a human-readable ``error``.
Neither ever contains the payload: it is card data, and the original bytes travel only to the
dead-letter topic.

Event time (``ts``) is accepted as ISO-8601 with a time-zone offset or as epoch milliseconds,
and normalised to integer epoch milliseconds (UTC).

>>> rules = Rules(max_amount=1000, currencies=frozenset({"EUR"}), max_future_skew_ms=60_000,
...               max_payload_bytes=1024)
>>> ok = validate(b'{"txn_id":"t1","card_id":"c1","terminal_id":"x1","amount":12.5,'
...               b'"currency":"EUR","ts":"2018-04-01T00:00:31Z"}', rules, now_ms=2e12)
>>> ok.ts, ok.amount
(1522540831000, 12.5)
>>> validate(b'{"txn_id":"t1","card_id":"c1","terminal_id":"x1","amount":-3,'
...          b'"currency":"EUR","ts":1522540831000}', rules, now_ms=2e12).reason
'invalid_amount'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.reasons import Reason
from contracts.rejections import ContractError, Rejection
from contracts.wire import loads_object

#: Earliest accepted event time: 2000-01-01T00:00:00Z in epoch ms. Catches epoch *seconds*.
MIN_TS_MS = 946_684_800_000
#: Latest representable event time we accept at all (year 2100).
MAX_TS_MS = 4_102_444_800_000

#: An id: 1-64 characters, none of them a control character (C0 U+0000-U+001F, DEL U+007F,
#: C1 U+0080-U+009F).
ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]{1,64}$"
ID_RULE = "1-64 characters, no control characters"
Id = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]
ID_FIELDS = frozenset({"txn_id", "card_id", "terminal_id"})


class Transaction(BaseModel):
    """A card transaction as it travels through the pipeline (``ts`` in epoch ms, UTC)."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore", frozen=True)

    txn_id: Id
    card_id: Id
    terminal_id: Id
    amount: float
    currency: str = Field(min_length=3, max_length=3)
    ts: int | str
    lat: float | None = None
    lon: float | None = None
    country: str | None = Field(None, pattern=r"^[A-Z]{2}$")
    mcc: str | None = Field(None, pattern=r"^[0-9]{4}$")
    channel: Literal["card_present", "online"] | None = None


@dataclass(frozen=True)
class Rules:
    """The configurable part of validation (from the ``validation`` settings section)."""

    max_amount: float
    currencies: frozenset[str]
    max_future_skew_ms: int
    max_payload_bytes: int

    @classmethod
    def from_settings(cls, validation: Any) -> Rules:
        """Rules from a :class:`config.stream.ValidationSettings` (or anything with its fields)."""
        return cls(
            max_amount=float(validation.max_amount),
            currencies=frozenset(validation.currencies),
            max_future_skew_ms=int(validation.max_future_skew_s) * 1000,
            max_payload_bytes=int(validation.max_payload_bytes),
        )


def _reject(reason: Reason, error: str) -> Rejection:
    return Rejection(reason, error)


def _from_pydantic(exc: ValidationError) -> Rejection:
    errors = exc.errors(include_input=True, include_url=False)
    ranked: list[tuple[int, Reason, str]] = []
    for err in errors:
        kind = err["type"]
        field = str(err["loc"][0]) if err["loc"] else ""
        reason: Reason
        if kind == "json_invalid":
            reason = Reason.MALFORMED_JSON
        elif kind == "model_type":
            reason = Reason.NULL_VALUE if err.get("input") is None else Reason.NOT_AN_OBJECT
        elif kind == "finite_number":
            reason = Reason.NON_FINITE_NUMBER
        elif kind == "missing" or err.get("input", 0) is None:
            reason = Reason.MISSING_FIELD
        elif kind.endswith("_type"):
            reason = Reason.WRONG_TYPE
        else:
            reason = Reason.INVALID_FIELD
        detail = f"{field}: {err['msg']}" if field else err["msg"]
        if kind == "missing" or err.get("input", 0) is None:
            detail = f"{field}: required field is missing or null"
        elif field in ID_FIELDS and reason is Reason.INVALID_FIELD:
            detail = f"{field}: {ID_RULE}"  # never the pattern's text, never the value
        ranked.append((reason.rank, reason, detail))
    ranked.sort()
    reason = ranked[0][1]
    return _reject(reason, "; ".join(detail for _, _, detail in ranked))


def from_validation_error(exc: ValidationError) -> ContractError:
    """The :class:`ContractError` of a pydantic error (same reason and detail as
    :func:`validate`'s rejection)."""
    rejection = _from_pydantic(exc)
    return ContractError(rejection.reason, rejection.error)


def _parse_ts(value: int | str) -> int | Rejection:
    """Event time to epoch ms.

    >>> _parse_ts("2018-04-01T00:00:31+02:00")
    1522533631000
    >>> _parse_ts("2018-04-01T00:00:31").reason
    'invalid_timestamp'
    >>> _parse_ts(1522533631).reason   # seconds, not milliseconds
    'invalid_timestamp'
    """
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return _reject(Reason.INVALID_TIMESTAMP, "ts: not ISO-8601 nor epoch milliseconds")
        if parsed.tzinfo is None:
            return _reject(Reason.INVALID_TIMESTAMP,
                           "ts: ISO-8601 time needs a time-zone offset")
        ms = round(parsed.timestamp() * 1000)
    else:
        ms = value
    if not MIN_TS_MS <= ms < MAX_TS_MS:
        return _reject(
            Reason.INVALID_TIMESTAMP, "ts: epoch milliseconds between 2000-01-01 and 2100-01-01"
        )
    return ms


def validate(raw: bytes | None, rules: Rules, now_ms: float) -> Transaction | Rejection:
    """Parse and check one record value; a :class:`Transaction` or a :class:`Rejection`."""
    try:
        txn = Transaction.model_validate(loads_object(raw, max_bytes=rules.max_payload_bytes))
    except ContractError as exc:
        return exc.rejection()
    except ValidationError as exc:
        return _from_pydantic(exc)

    if not (0 < txn.amount <= rules.max_amount) or math.isnan(txn.amount):
        return _reject(Reason.INVALID_AMOUNT,
                       f"amount: must be > 0 and <= {rules.max_amount:g}")
    if txn.currency not in rules.currencies:
        return _reject(Reason.UNKNOWN_CURRENCY, "currency: not in the accepted list")
    if (txn.lat is None) != (txn.lon is None):
        return _reject(Reason.INVALID_COORDINATES, "lat and lon: give both or neither")
    if txn.lat is not None and txn.lon is not None:
        if not (-90.0 <= txn.lat <= 90.0 and -180.0 <= txn.lon <= 180.0):
            return _reject(Reason.INVALID_COORDINATES,
                           "lat must be in [-90, 90], lon in [-180, 180]")
    ts = _parse_ts(txn.ts)
    if isinstance(ts, Rejection):
        return ts
    if ts > now_ms + rules.max_future_skew_ms:
        return _reject(
            Reason.FUTURE_TIMESTAMP,
            f"ts: more than {rules.max_future_skew_ms // 1000} s ahead of the wall clock",
        )
    if ts != txn.ts:
        txn = txn.model_copy(update={"ts": ts})
    return txn


class Label(BaseModel):
    """A fraud label, published late (chargebacks, investigations, the simulator)."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore", frozen=True)

    txn_id: Id
    card_id: Id
    terminal_id: Id
    is_fraud: bool | Literal[0, 1]
    ts: int | str
    reported_at: int | str


def validate_label(raw: bytes | None, rules: Rules) -> Label | Rejection:
    """Parse and check one label value (event times normalised to epoch ms).

    >>> rules = Rules(1.0, frozenset(), 0, 1024)
    >>> label = validate_label(b'{"txn_id":"t1","card_id":"c1","terminal_id":"x1","is_fraud":1,'
    ...                        b'"ts":1522540831000,"reported_at":"2018-04-08T00:00:31Z"}', rules)
    >>> label.is_fraud, label.reported_at
    (True, 1523145631000)
    >>> validate_label(b'{"txn_id":"t1","card_id":"c1","terminal_id":"x1","is_fraud":1,'
    ...                b'"ts":1522540831000,"reported_at":1522540830000}', rules).reason
    'invalid_timestamp'
    """
    try:
        label = Label.model_validate(loads_object(raw, max_bytes=rules.max_payload_bytes))
    except ContractError as exc:
        return exc.rejection()
    except ValidationError as exc:
        return _from_pydantic(exc)
    ts, reported = _parse_ts(label.ts), _parse_ts(label.reported_at)
    for parsed in (ts, reported):
        if isinstance(parsed, Rejection):
            return parsed
    assert isinstance(ts, int) and isinstance(reported, int)
    if reported < ts:
        return _reject(Reason.INVALID_TIMESTAMP, "reported_at: before the transaction's ts")
    return label.model_copy(update={"ts": ts, "reported_at": reported,
                                    "is_fraud": bool(label.is_fraud)})
