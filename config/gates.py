"""Promotion gates: minimum test metrics and "beats the champion by a margin".

The gates are the ``FRAUDSTREAM_GATE_*`` settings (a :class:`config.section.Section`) and
the rule that applies them. They compare metric dicts as produced by
:func:`training.metrics.evaluate` (``auc_roc``, ``average_precision``,
``card_precision_at_100``). The champion's metrics must come from the *same* test data as the
candidate's; the registry (:meth:`models.registry.ModelRegistry.promote`) enforces that before
calling :meth:`PromotionGates.failures`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

from annotated_types import Ge
from pydantic import Field

from config.section import Section


class PromotionRefused(RuntimeError):
    """A promotion gate failed; ``reasons`` lists every failure."""

    def __init__(self, version: int, reasons: list[str]) -> None:
        self.version, self.reasons = version, reasons
        super().__init__(f"promotion of v{version} refused: " + "; ".join(reasons))


class PromotionGates(Section):
    """Minimum test metrics, and the margin by which a candidate must beat the champion.

    >>> g = PromotionGates(min_auc_roc=0.8, min_average_precision=0.5,
    ...                    min_card_precision_at_100=0.2, min_improvement=0.02)
    >>> ok = {"auc_roc": 0.9, "average_precision": 0.7, "card_precision_at_100": 0.3}
    >>> g.failures(ok), g.failures(ok, champion={"average_precision": 0.69})
    ([], ['average_precision 0.7000 does not beat champion 0.6900 by 2% (needs 0.7038)'])
    >>> g.failures({**ok, "auc_roc": 0.7})
    ['auc_roc 0.7000 < minimum 0.8000']
    """

    env_prefix = "FRAUDSTREAM_GATE_"
    #: A negative margin (any candidate beats the champion) is for tests and tools, not a setting.
    env_only = {"min_improvement": (Ge(0),)}

    min_auc_roc: float = Field(
        default=0.85, ge=0, le=1, description="Promotion gate: least test AUC ROC of a champion."
    )
    min_average_precision: float = Field(
        default=0.60, ge=0, le=1, description="Promotion gate: least test average precision."
    )
    min_card_precision_at_100: float = Field(
        default=0.25, ge=0, le=1, description="Promotion gate: least test card precision@100."
    )
    compare_metric: Literal["auc_roc", "average_precision", "card_precision_at_100"] = Field(
        default="average_precision",
        description="Metric on which a candidate must beat the champion "
        "(both measured on the candidate's test data).",
    )
    min_improvement: float = Field(
        default=0.01,
        description="Relative margin by which it must beat it (0.01 = 1 %; an absolute "
        "one with FRAUDSTREAM_GATE_IMPROVEMENT=absolute).",
    )
    improvement: Literal["relative", "absolute"] = Field(
        default="relative", description="Whether that margin is relative to the champion's metric "
        "(relative) or added to it (absolute).",
    )

    def failures(self, candidate: Mapping[str, float],
                 champion: Mapping[str, float] | None = None) -> list[str]:
        """Every failed gate as a sentence; empty when the candidate may be promoted."""
        reasons = []
        for key, minimum in (("auc_roc", self.min_auc_roc),
                             ("average_precision", self.min_average_precision),
                             ("card_precision_at_100", self.min_card_precision_at_100)):
            value = candidate.get(key)
            if value is None or not value >= minimum:  # NaN fails too
                shown = "missing" if value is None else f"{value:.4f}"
                reasons.append(f"{key} {shown} < minimum {minimum:.4f}")
        if champion is not None:
            key = self.compare_metric
            new, old = candidate.get(key), champion.get(key)
            if new is None or old is None or math.isnan(old):
                reasons.append(f"cannot compare {key} with the champion (missing)")
            else:
                relative = self.improvement == "relative"
                gain = self.min_improvement
                needed = old * (1 + gain) if relative else old + gain
                margin = f"{self.min_improvement:.0%}" if relative else f"{self.min_improvement}"
                if not new >= needed:
                    reasons.append(f"{key} {new:.4f} does not beat champion {old:.4f} by "
                                   f"{margin} (needs {needed:.4f})")
        return reasons
