"""The late / out-of-order event policy, per key, on event time.

Each keyed state (a card, a terminal) remembers the largest event time it has applied, its
*watermark* ``W``. With an allowed lateness ``L`` (ms, default 0), an arriving transaction with
event time ``ts`` is:

``IN_ORDER``
    ``ts >= W`` (or the key has no history). Appended; its window ends at ``ts`` and includes
    every earlier-arrived transaction with the same ``ts`` but none that arrives later. This is
    the only case in a stream that is ordered per key, and the batch recomputation (which
    sorts by event time, ties by original order) only ever produces it.
``OUT_OF_ORDER``
    ``W - L <= ts < W``. Applied: inserted into the history at its event-time position (after
    the events with the same ``ts``). Its features are computed over the events applied so far
    whose position is at or before it (all those with ``ts`` <= its ``ts``, and for labels:
    reported at or before ``ts``). Transactions already emitted are not revised. Parity with
    the batch recomputation therefore holds for windows without delay (card windows) only
    when each key's stream is in order; for windows with a delay ``d > L`` (the terminal
    windows) it holds under any disorder within ``L``: no transaction emitted before the
    late one could have had it in its window, and every later one does.
``DUPLICATE``
    Not late, and its ``txn_id`` is still held by the state (redelivery after a crash or a
    retry). The state is left unchanged and the features are recomputed as of the
    transaction's position, so an at-least-once redelivery re-emits the same vector (unless
    an out-of-order transaction was inserted before it in between).
``LATE``
    ``ts < W - L``. Not applied; the caller routes it to the late-events topic.

With ``L = 0`` an event with the same time as the watermark is in order and any older one is
late. The states keep ``L`` more milliseconds of history than their widest window so that an
out-of-order event still sees its whole window.

Examples
--------
>>> policy = LatenessPolicy(allowed_lateness_ms=5_000)
>>> policy.classify(ts=100_000, watermark=None)
<Arrival.IN_ORDER: 'in_order'>
>>> policy.classify(ts=100_000, watermark=100_000).value
'in_order'
>>> policy.classify(ts=95_000, watermark=100_000).value
'out_of_order'
>>> policy.classify(ts=94_999, watermark=100_000).value
'late'
>>> LatenessPolicy().classify(ts=99_999, watermark=100_000).value
'late'
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Arrival(enum.Enum):
    """How a transaction relates to a key's history (see the module docstring)."""

    IN_ORDER = "in_order"
    OUT_OF_ORDER = "out_of_order"
    DUPLICATE = "duplicate"
    LATE = "late"


class LateEventError(ValueError):
    """Raised by a state's ``update`` when given a LATE event; route it to the late topic.

    Examples
    --------
    >>> err = LateEventError("t1", ts=1, watermark=10, allowed_lateness_ms=0)
    >>> str(err)
    'transaction t1 at 1 is late: watermark 10, allowed lateness 0 ms'
    """

    def __init__(self, txn_id: str, ts: int, watermark: int, allowed_lateness_ms: int) -> None:
        super().__init__(
            f"transaction {txn_id} at {ts} is late: watermark {watermark}, "
            f"allowed lateness {allowed_lateness_ms} ms"
        )
        self.txn_id = txn_id
        self.ts = ts
        self.watermark = watermark


@dataclass(frozen=True)
class LatenessPolicy:
    """Allowed lateness per key.

    Parameters
    ----------
    allowed_lateness_ms : int
        How far (ms) behind the key's watermark an event may be and still be applied.

    Examples
    --------
    >>> LatenessPolicy(-1)
    Traceback (most recent call last):
    ...
    ValueError: allowed_lateness_ms must be >= 0
    """

    allowed_lateness_ms: int = 0

    def __post_init__(self) -> None:
        if self.allowed_lateness_ms < 0:
            raise ValueError("allowed_lateness_ms must be >= 0")

    def classify(self, ts: int, watermark: int | None) -> Arrival:
        """IN_ORDER, OUT_OF_ORDER or LATE for an event at ``ts`` (duplicates: the state's job).

        Parameters
        ----------
        ts : int
            The event's time, epoch ms.
        watermark : int or None
            The largest event time the key has applied; None when it has none.
        """
        if watermark is None or ts >= watermark:
            return Arrival.IN_ORDER
        if ts >= watermark - self.allowed_lateness_ms:
            return Arrival.OUT_OF_ORDER
        return Arrival.LATE

    def is_late(self, ts: int, watermark: int | None) -> bool:
        """True when the event must not be applied (see :meth:`classify`).

        Examples
        --------
        >>> LatenessPolicy(0).is_late(5, 6), LatenessPolicy(1).is_late(5, 6)
        (True, False)
        """
        return watermark is not None and ts < watermark - self.allowed_lateness_ms
