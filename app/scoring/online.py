"""Synchronous scoring (``POST /score``): a transaction plus its Feast rows to a response.

The transaction's own features (amount, weekend, night) are computed from it
(:func:`features.txn.transaction_features`); the card and terminal features are the rows the
Feast online store holds for its card and terminal: the state after the entity's newest
transaction seen by the stream, *not* including the transaction being scored (the stream's
own vector does include it; see the README). Each row's age is the scored transaction's event
time minus the row's event time; a row older than the configured bound is flagged ``stale``
(its short windows no longer describe the entity now) and the score is still returned. A row
written under another feature-spec version, or a missing row, is refused: there is no score
without the features the model was trained on.

>>> from features.spec import DEFAULT_SPEC
>>> names = DEFAULT_SPEC.names
>>> card = {n: 1.0 for n in DEFAULT_SPEC.names_for("card")}
>>> term = {n: 0.0 for n in DEFAULT_SPEC.names_for("terminal")}
>>> txn = {"txn_id": "t", "card_id": "c", "terminal_id": "x", "amount": 10.0,
...        "ts": 1_522_540_800_000}
>>> rows = {"card": FeastRow(card, 1_522_540_700_000, DEFAULT_SPEC.version),
...         "terminal": FeastRow(term, 1_522_500_000_000, DEFAULT_SPEC.version)}
>>> vec, freshness = assemble(txn, rows, DEFAULT_SPEC, max_age_ms=3_600_000)
>>> len(vec) == len(names), vec[:3], freshness["terminal"]
(True, [10.0, 1.0, 1.0], {'age_s': 40800.0, 'stale': True})
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from features.spec import FeatureSpec
from features.txn import transaction_features

ENTITIES = ("card", "terminal")


class FeaturesUnavailable(LookupError):
    """No usable Feast row for an entity (missing, or another spec version)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class FeastRow:
    """One entity's online row: feature values, event time (ms) and spec version."""

    values: dict[str, Any]
    event_ts_ms: int | None
    spec_version: str | None


def assemble(txn: dict[str, Any], rows: dict[str, FeastRow], spec: FeatureSpec,
             max_age_ms: float) -> tuple[list[float], dict[str, dict[str, Any]]]:
    """The feature vector in spec order, and each entity's age and staleness flag."""
    values: dict[str, float] = dict(transaction_features(txn, spec))
    freshness: dict[str, dict[str, Any]] = {}
    for entity in ENTITIES:
        row = rows[entity]
        names = spec.names_for(entity)
        if row.event_ts_ms is None or any(row.values.get(n) is None for n in names):
            raise FeaturesUnavailable("no_features",
                                      f"the online store has no {entity} features for it")
        if row.spec_version != spec.version:
            raise FeaturesUnavailable(
                "feature_spec_mismatch", f"{entity} features were computed by spec "
                f"{row.spec_version!r}, the model needs {spec.version!r}")
        age_ms = txn["ts"] - row.event_ts_ms
        freshness[entity] = {"age_s": round(age_ms / 1000, 3), "stale": age_ms > max_age_ms}
        values.update({n: float(row.values[n]) for n in names})
    return [values[n] for n in spec.names], freshness


def read_rows(store: Any, card_id: str, terminal_id: str, spec: FeatureSpec) -> dict[str, FeastRow]:
    """Both entities' rows in one ``get_online_features`` call."""
    from app.feast_env import join_key, version_field, view_name

    refs = []
    for entity in ENTITIES:
        cols = [*spec.names_for(entity), version_field(entity)]
        refs += [f"{view_name(entity)}:{c}" for c in cols]
    online = store.get_online_features(
        features=refs, entity_rows=[{join_key("card"): card_id,
                                     join_key("terminal"): terminal_id}],
    ).to_dict(include_event_timestamps=True)
    rows = {}
    for entity in ENTITIES:
        names = spec.names_for(entity)
        first = names[0]
        ts = online.get(f"{first}__ts", [None])[0]
        present = online[first][0] is not None
        rows[entity] = FeastRow({n: online[n][0] for n in names},
                                int(ts) * 1000 if present and ts else None,
                                online[version_field(entity)][0])
    return rows
