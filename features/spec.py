"""The declarative feature spec: which features exist, in which order, and how each is defined.

A :class:`FeatureSpec` is an ordered tuple of :class:`FeatureDef`. The streaming agents and the
batch recomputation both read it: the state classes (:mod:`features.card`,
:mod:`features.terminal`) derive the windows they must keep from it, and
:func:`features.batch.feature_vector` orders a feature dict by it. ``FeatureSpec.version`` is a
short, stable hash of the definition; it travels with every enriched record so that a model is
never fed a vector built by another spec.

Missing values
--------------
Every feature is a finite float. A feature that is undefined for a transaction (no previous
transaction, no coordinates, ...) takes the sentinel :data:`MISSING` ``= -1.0``; every feature
that can be undefined is otherwise >= 0, so the sentinel is unambiguous. No NaN, no infinity.

Examples
--------
>>> [f.name for f in DEFAULT_SPEC.features[:3]]
['amount', 'tx_during_weekend', 'tx_during_night']
>>> len(DEFAULT_SPEC), len(DEFAULT_SPEC.names_for("terminal"))
(26, 6)
>>> DEFAULT_SPEC.version == FeatureSpec(DEFAULT_SPEC.features).version
True
>>> smaller = FeatureSpec(DEFAULT_SPEC.features[:3])
>>> smaller.version != DEFAULT_SPEC.version
True
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Literal

MISSING = -1.0
"""Value of a feature that is undefined for a transaction (see module docstring)."""

Entity = Literal["card", "terminal", "txn"]

MINUTE = 60
HOUR = 3_600
DAY = 86_400

# aggregation -> (entities allowed, needs a window, allowed source fields)
_RULES: dict[str, tuple[frozenset[str], bool, frozenset[str | None]]] = {
    "value": (frozenset({"txn"}), False, frozenset({"amount"})),
    "is_weekend": (frozenset({"txn"}), False, frozenset({"ts"})),
    "is_night": (frozenset({"txn"}), False, frozenset({"ts"})),
    "count": (frozenset({"card", "terminal"}), True, frozenset({None})),
    "sum": (frozenset({"card", "terminal"}), True, frozenset({"amount"})),
    "mean": (frozenset({"card", "terminal"}), True, frozenset({"amount"})),
    "ratio_to_mean": (frozenset({"card"}), True, frozenset({"amount"})),
    "distinct": (
        frozenset({"card"}), True, frozenset({"country", "mcc", "channel", "terminal_id"})
    ),
    "seconds_since_prev": (frozenset({"card"}), False, frozenset({"ts"})),
    "distance_prev_km": (frozenset({"card"}), False, frozenset({"lat_lon"})),
    "speed_prev_kmh": (frozenset({"card"}), False, frozenset({"lat_lon"})),
    "distance_usual_km": (frozenset({"card"}), True, frozenset({"lat_lon"})),
    "fraud_count": (frozenset({"terminal"}), True, frozenset({"is_fraud"})),
    "fraud_risk": (frozenset({"terminal"}), True, frozenset({"is_fraud"})),
}
AGGREGATIONS = tuple(_RULES)


@dataclass(frozen=True)
class FeatureDef:
    """One feature.

    Parameters
    ----------
    name : str
        Column name in the feature vector, the offline store and Feast.
    entity : {'card', 'terminal', 'txn'}
        Whose history it aggregates ('txn': the transaction alone).
    aggregation : str
        One of :data:`AGGREGATIONS`; the state modules document each one.
    window_s : int
        Window width w in seconds; the window is ``(t - d - w, t - d]`` on event time. 0 for
        aggregations without a window.
    delay_s : int
        Delay d in seconds (0: the window ends at, and includes, the current transaction).
    source_field : str or None
        Transaction field aggregated ('amount', 'country', 'lat_lon', 'is_fraud', ...).

    Examples
    --------
    >>> FeatureDef("card_tx_count_1d", "card", "count", DAY).window_s
    86400
    >>> FeatureDef("bad", "txn", "count", DAY)
    Traceback (most recent call last):
    ...
    ValueError: bad: aggregation 'count' is not defined for entity 'txn'
    """

    name: str
    entity: Entity
    aggregation: str
    window_s: int = 0
    delay_s: int = 0
    source_field: str | None = None

    def __post_init__(self) -> None:
        rule = _RULES.get(self.aggregation)
        if rule is None:
            raise ValueError(f"{self.name}: unknown aggregation {self.aggregation!r}")
        entities, windowed, sources = rule
        if self.entity not in entities:
            raise ValueError(
                f"{self.name}: aggregation {self.aggregation!r} is not defined for entity "
                f"{self.entity!r}"
            )
        if windowed != (self.window_s > 0):
            raise ValueError(f"{self.name}: window_s must be {'> 0' if windowed else '0'}")
        if self.delay_s < 0 or (self.delay_s and not windowed):
            raise ValueError(f"{self.name}: delay_s must be >= 0 and only on windowed features")
        if self.source_field not in sources:
            allowed = sorted(map(str, sources))
            raise ValueError(f"{self.name}: source_field must be one of {allowed}")

    @property
    def window_ms(self) -> int:
        """Window width in milliseconds."""
        return self.window_s * 1000

    @property
    def delay_ms(self) -> int:
        """Delay in milliseconds."""
        return self.delay_s * 1000


@dataclass(frozen=True)
class FeatureSpec:
    """An ordered, versioned set of features.

    Parameters
    ----------
    features : tuple of FeatureDef
        In vector order; names must be unique.
    version : str
        Derived: the first 12 hex digits of the SHA-256 of the canonical JSON of ``features``.
        Any change of a name, order, window, delay or aggregation changes it.
    """

    features: tuple[FeatureDef, ...]
    version: str = field(init=False)

    def __post_init__(self) -> None:
        features = tuple(self.features)
        names = [f.name for f in features]
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        object.__setattr__(self, "features", features)
        canonical = json.dumps([asdict(f) for f in features], sort_keys=True)
        object.__setattr__(self, "version", hashlib.sha256(canonical.encode()).hexdigest()[:12])

    def __len__(self) -> int:
        return len(self.features)

    @property
    def names(self) -> list[str]:
        """All feature names in vector order."""
        return [f.name for f in self.features]

    def for_entity(self, entity: str) -> tuple[FeatureDef, ...]:
        """The features of one entity, in vector order."""
        return tuple(f for f in self.features if f.entity == entity)

    def names_for(self, entity: str) -> list[str]:
        """The names of one entity's features, in vector order."""
        return [f.name for f in self.for_entity(entity)]


def _card_windows() -> list[FeatureDef]:
    out = []
    for days in (1, 7, 30):
        out.append(FeatureDef(f"card_tx_count_{days}d", "card", "count", days * DAY))
        out.append(FeatureDef(f"card_amount_mean_{days}d", "card", "mean", days * DAY, 0, "amount"))
    for label, width in (("10m", 10 * MINUTE), ("1h", HOUR)):
        out.append(FeatureDef(f"card_tx_count_{label}", "card", "count", width))
        out.append(FeatureDef(f"card_amount_sum_{label}", "card", "sum", width, 0, "amount"))
    out.append(FeatureDef("card_amount_sum_1d", "card", "sum", DAY, 0, "amount"))
    return out


def _terminal_windows(delay_days: int = 7) -> list[FeatureDef]:
    out = []
    for days in (1, 7, 30):
        suffix = f"{days}d_delay{delay_days}d"
        delay = delay_days * DAY
        width = days * DAY
        out.append(FeatureDef(f"terminal_tx_count_{suffix}", "terminal", "count", width, delay))
        risk = FeatureDef(f"terminal_risk_{suffix}", "terminal", "fraud_risk", width, delay,
                          "is_fraud")
        out.append(risk)
    return out


DEFAULT_SPEC = FeatureSpec(
    (
        FeatureDef("amount", "txn", "value", source_field="amount"),
        FeatureDef("tx_during_weekend", "txn", "is_weekend", source_field="ts"),
        FeatureDef("tx_during_night", "txn", "is_night", source_field="ts"),
        *_card_windows(),
        FeatureDef("card_seconds_since_prev", "card", "seconds_since_prev", source_field="ts"),
        FeatureDef("card_amount_to_mean_30d", "card", "ratio_to_mean", 30 * DAY, 0, "amount"),
        FeatureDef("card_distance_prev_km", "card", "distance_prev_km", source_field="lat_lon"),
        FeatureDef("card_speed_prev_kmh", "card", "speed_prev_kmh", source_field="lat_lon"),
        FeatureDef("card_distance_usual_km", "card", "distance_usual_km", 30 * DAY, 0, "lat_lon"),
        FeatureDef("card_countries_1d", "card", "distinct", DAY, 0, "country"),
        *_terminal_windows(),
    )
)
"""The default spec: the handbook baseline features plus velocity and geo features."""

HANDBOOK_NAMES: dict[str, str] = {
    "TX_AMOUNT": "amount",
    "TX_DURING_WEEKEND": "tx_during_weekend",
    "TX_DURING_NIGHT": "tx_during_night",
    **{
        f"CUSTOMER_ID_NB_TX_{d}DAY_WINDOW": f"card_tx_count_{d}d" for d in (1, 7, 30)
    },
    **{
        f"CUSTOMER_ID_AVG_AMOUNT_{d}DAY_WINDOW": f"card_amount_mean_{d}d" for d in (1, 7, 30)
    },
    **{
        f"TERMINAL_ID_NB_TX_{d}DAY_WINDOW": f"terminal_tx_count_{d}d_delay7d" for d in (1, 7, 30)
    },
    **{f"TERMINAL_ID_RISK_{d}DAY_WINDOW": f"terminal_risk_{d}d_delay7d" for d in (1, 7, 30)},
}
"""Handbook column name -> name in :data:`DEFAULT_SPEC` (the 15 baseline features)."""
