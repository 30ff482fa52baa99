"""Why a record is dead-lettered: the reasons, from most to least fundamental, and the verdict.

A :class:`Rejection` travels with the original bytes to the dead-letter topic (the ``reason``
and ``error`` headers, :mod:`app.dlq`); it names fields, never their values (card data).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Reasons a record is dead-lettered, from most to least fundamental.
REASONS = (
    "null_value",
    "payload_too_large",
    "not_utf8",
    "malformed_json",
    "not_an_object",
    "non_finite_number",
    "missing_field",
    "wrong_type",
    "invalid_amount",
    "unknown_currency",
    "invalid_coordinates",
    "invalid_timestamp",
    "future_timestamp",
    "invalid_field",
    "processing_error",
)


@dataclass(frozen=True)
class Rejection:
    """Why a record was refused. ``error`` names fields, never their values."""

    reason: str
    error: str
