"""Why a record is dead-lettered: the verdict (:class:`Rejection`) and the error that carries it.

A :class:`Rejection` travels with the original bytes to the dead-letter topic (the ``reason``
and ``error`` headers, :mod:`app.dlq`); it names fields, never their values (card data). Its
``reason`` is a :class:`~contracts.reasons.Reason`: a plain string naming a member is accepted
and converted, an unknown one is refused, so nothing can dead-letter with a reason the enum
(and the README) does not list.

:class:`ContractError` is what every decoder of :mod:`contracts` raises: the same reason and
detail, as an exception.

>>> Rejection("invalid_amount", "amount: must be > 0").reason is Reason.INVALID_AMOUNT
True
>>> Rejection("made_up", "x")
Traceback (most recent call last):
...
ValueError: 'made_up' is not a dead-letter reason (contracts.reasons.Reason)
>>> err = ContractError(Reason.TOO_DEEP, "nested deeper than 64 levels")
>>> str(err), err.rejection() == Rejection("too_deep", "nested deeper than 64 levels")
('too_deep: nested deeper than 64 levels', True)
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.reasons import Reason

#: Reasons a record is dead-lettered, from most to least fundamental (the values of
#: :class:`Reason`, for code that wants plain strings).
REASONS: tuple[str, ...] = tuple(reason.value for reason in Reason)

#: Longest ``error`` text kept (it becomes a header).
MAX_ERROR_CHARS = 500


@dataclass(frozen=True, init=False)
class Rejection:
    """Why a record was refused. ``error`` names fields, never their values.

    ``reason`` is always a :class:`Reason` (a string naming a member is converted; new code
    passes the member)."""

    reason: Reason
    error: str

    def __init__(self, reason: Reason | str, error: str) -> None:
        object.__setattr__(self, "reason", Reason.of(reason))
        object.__setattr__(self, "error", error[:MAX_ERROR_CHARS])


class ContractError(ValueError):
    """A record that breaks its contract: a :class:`Reason` and a detail naming fields only."""

    def __init__(self, reason: Reason | str, detail: str) -> None:
        self.reason = Reason.of(reason)
        self.detail = detail[:MAX_ERROR_CHARS]
        super().__init__(f"{self.reason.value}: {self.detail}")

    def rejection(self) -> Rejection:
        """The same verdict as a :class:`Rejection` (for :func:`app.dlq.dead_letter`)."""
        return Rejection(self.reason, self.detail)
