"""Champion / challenger assignment by a stable hash of the card id.

A card's bucket is the first 8 bytes of ``blake2b(card_id, digest_size=8)`` as a fraction of
2**64: the same on every worker, every restart and every Python version (Python's ``hash`` is
salted per process, so it is never used). In ``split`` mode a card whose bucket is below the
challenger share is scored by the challenger only, every other card by the champion only. In
``shadow`` mode the champion decides for every card and the challenger scores every card too,
its records flagged ``shadow=true`` (never used for decisions). Without a loaded challenger
every card goes to the champion in both modes.

>>> policy = SplitPolicy("split", challenger_share=0.25)
>>> [policy.assign(f"card-{i}", challenger=True)[0][0] for i in range(4)]
['challenger', 'champion', 'champion', 'champion']
>>> policy.assign("card-0", challenger=False)
(('champion', False),)
>>> SplitPolicy("shadow").assign("card-0", challenger=True)
(('champion', False), ('challenger', True))
>>> shares = [bucket(f"c{i}") < 0.1 for i in range(20_000)]
>>> round(sum(shares) / len(shares), 2)
0.1
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

Mode = Literal["split", "shadow"]
CHAMPION, CHALLENGER = "champion", "challenger"
Assignment = tuple[tuple[str, bool], ...]
"""``(variant, shadow)`` pairs: who scores a transaction, and whether that score is shadow."""

_ONLY_CHAMPION: Assignment = ((CHAMPION, False),)
_ONLY_CHALLENGER: Assignment = ((CHALLENGER, False),)
_SHADOW: Assignment = ((CHAMPION, False), (CHALLENGER, True))


def bucket(card_id: str) -> float:
    """The card's stable position in [0, 1).

    >>> bucket("card-1") == bucket("card-1"), 0.0 <= bucket("card-1") < 1.0
    (True, True)
    >>> round(bucket("card-1"), 6)
    0.971243
    """
    digest = hashlib.blake2b(card_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True)
class SplitPolicy:
    """Who scores which card: ``mode`` and, in ``split`` mode, the challenger's share."""

    mode: Mode = "shadow"
    challenger_share: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in ("split", "shadow"):
            raise ValueError(f"mode must be 'split' or 'shadow', got {self.mode!r}")
        if not 0.0 <= self.challenger_share <= 1.0:
            raise ValueError("challenger_share must be within [0, 1]")

    def assign(self, card_id: str, *, challenger: bool) -> Assignment:
        """The variants that score ``card_id`` (``challenger``: one is loaded)."""
        if not challenger:
            return _ONLY_CHAMPION
        if self.mode == "shadow":
            return _SHADOW
        return _ONLY_CHALLENGER if bucket(card_id) < self.challenger_share else _ONLY_CHAMPION
