"""Every reason a record is dead-lettered: one :class:`Reason` enum, from most to least
fundamental (a record with several faults gets the first that applies).

A ``Reason`` is a :class:`enum.StrEnum`: it compares equal to, formats as and encodes like its
value, so the ``reason`` header of the dead-letter topic and the ``reason`` label of
``fraudstream_transactions_invalid_total`` carry the bare value (``invalid_amount``). Its
``repr`` is the value's too, so a reason reads the same in a log line, a list or a doctest
whether it is a member or the plain string.
The README's "Dead-letter reasons" list is this enum (a test compares them).

>>> Reason.TOO_DEEP, str(Reason.TOO_DEEP), Reason("too_deep") is Reason.TOO_DEEP
('too_deep', 'too_deep', True)
"""

from __future__ import annotations

import enum
from typing import Any


class Reason(enum.StrEnum):
    """Why a record is dead-lettered (the ``reason`` header); members in precedence order."""

    # -- the bytes -----------------------------------------------------------------------------
    NULL_VALUE = "null_value"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    NOT_UTF8 = "not_utf8"
    MALFORMED_JSON = "malformed_json"
    TOO_DEEP = "too_deep"
    NOT_AN_OBJECT = "not_an_object"
    NON_FINITE_NUMBER = "non_finite_number"
    # -- the fields ----------------------------------------------------------------------------
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    INVALID_AMOUNT = "invalid_amount"
    UNKNOWN_CURRENCY = "unknown_currency"
    INVALID_COORDINATES = "invalid_coordinates"
    INVALID_TIMESTAMP = "invalid_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    INVALID_FIELD = "invalid_field"
    # -- internal records (enriched, scoring) --------------------------------------------------
    MALFORMED_ENRICHED = "malformed_enriched"
    FEATURE_SPEC_MISMATCH = "feature_spec_mismatch"
    FEATURE_MISMATCH = "feature_mismatch"
    NO_MODEL = "no_model"
    # -- the code ------------------------------------------------------------------------------
    PROCESSING_ERROR = "processing_error"

    def __repr__(self) -> str:
        return repr(self.value)

    @property
    def rank(self) -> int:
        """Precedence: lower is more fundamental.

        >>> Reason.NULL_VALUE.rank, Reason.PROCESSING_ERROR.rank == len(Reason) - 1
        (0, True)
        """
        return _RANK[self]

    @classmethod
    def of(cls, value: Any) -> Reason:
        """``value`` as a member; :class:`ValueError` naming the unknown reason otherwise.

        >>> Reason.of("wrong_type") is Reason.WRONG_TYPE
        True
        >>> Reason.of("nope")
        Traceback (most recent call last):
        ...
        ValueError: 'nope' is not a dead-letter reason (contracts.reasons.Reason)
        """
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a dead-letter reason "
                             "(contracts.reasons.Reason)") from None


_RANK = {reason: i for i, reason in enumerate(Reason)}
