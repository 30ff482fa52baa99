"""The feature spec, the transaction features, geo maths and the feature vector."""

from __future__ import annotations

import dataclasses
import math
import random

import numpy as np
import pytest

from features import geo
from features.batch import feature_vector
from features.spec import DAY, DEFAULT_SPEC, HANDBOOK_NAMES, MISSING, FeatureDef, FeatureSpec
from features.txn import is_night, is_weekend, transaction_features, utc_hour, utc_weekday


def test_default_spec_order_and_version_are_pinned():
    names = DEFAULT_SPEC.names
    assert names[:3] == ["amount", "tx_during_weekend", "tx_during_night"]
    entities = [f.entity for f in DEFAULT_SPEC.features]
    assert entities == ["txn"] * 3 + ["card"] * 17 + ["terminal"] * 6
    assert set(HANDBOOK_NAMES.values()) <= set(names) and len(HANDBOOK_NAMES) == 15
    # Changing the spec must be deliberate: it changes the version that models are tied to.
    assert DEFAULT_SPEC.version == "0e903cd2186d"


def test_version_changes_with_any_field_and_is_stable():
    again = FeatureSpec(tuple(dataclasses.replace(f) for f in DEFAULT_SPEC.features))
    assert again.version == DEFAULT_SPEC.version and len(again.version) == 12
    first = DEFAULT_SPEC.features[3]
    for change in ({"name": "x"}, {"window_s": 2 * DAY}, {"aggregation": "sum",
                                                          "source_field": "amount"}):
        changed = (dataclasses.replace(first, **change), *DEFAULT_SPEC.features[4:])
        assert FeatureSpec(changed).version != FeatureSpec(DEFAULT_SPEC.features[3:]).version
    reordered = FeatureSpec(DEFAULT_SPEC.features[::-1])
    assert reordered.version != DEFAULT_SPEC.version


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"aggregation": "median"}, "unknown aggregation"),
        ({"entity": "terminal", "aggregation": "distinct", "source_field": "country"},
         "not defined"),
        ({"window_s": 0}, "window_s"),
        ({"delay_s": -1}, "delay_s"),
        ({"source_field": "amount"}, "source_field"),
    ],
)
def test_invalid_definitions_are_rejected(kwargs, message):
    base = {"name": "f", "entity": "card", "aggregation": "count", "window_s": DAY}
    with pytest.raises(ValueError, match=message):
        FeatureDef(**{**base, **kwargs})


def test_duplicate_names_rejected_and_custom_spec_works():
    f = DEFAULT_SPEC.features[3]
    with pytest.raises(ValueError, match="unique"):
        FeatureSpec((f, f))
    from features.card import CardState

    spec = FeatureSpec((FeatureDef("since", "card", "seconds_since_prev", source_field="ts"),
                        FeatureDef("mccs_1h", "card", "distinct", 3600, 0, "mcc")))
    state = CardState(spec)
    state.update({"txn_id": "a", "amount": 1.0, "ts": 0, "mcc": "5411"})
    out = state.update({"txn_id": "b", "amount": 1.0, "ts": 1000, "mcc": "4829"})
    assert out == {"since": 1.0, "mccs_1h": 2.0}
    assert CardState.loads(state.dumps(), spec).to_dict() == state.to_dict()


def test_calendar_features_match_datetime_for_random_times():
    import datetime as dt

    rng = random.Random(12345)
    stamps = [rng.randrange(-10**12, 4 * 10**12) for _ in range(2000)]
    arr = np.array(stamps, dtype=np.int64)
    for ts, wd, hr in zip(stamps, utc_weekday(arr), utc_hour(arr), strict=True):
        d = dt.datetime.fromtimestamp(ts / 1000, dt.UTC)
        assert (utc_weekday(ts), utc_hour(ts)) == (d.weekday(), d.hour) == (wd, hr)
        assert is_weekend(ts) == (d.weekday() >= 5) and is_night(ts) == (d.hour <= 6)
    saturday_7am = 1_522_540_800_000 - DAY * 1000 + 7 * 3_600_000
    assert transaction_features({"amount": 3, "ts": saturday_7am}) == {
        "amount": 3.0, "tx_during_weekend": 1.0, "tx_during_night": 0.0}


def test_haversine_properties():
    rng = random.Random(1)
    for _ in range(500):
        a = (rng.uniform(-90, 90), rng.uniform(-180, 180))
        b = (rng.uniform(-90, 90), rng.uniform(-180, 180))
        d = geo.haversine_km(*a, *b)
        assert d == pytest.approx(geo.haversine_km(*b, *a), rel=1e-12)
        assert 0.0 <= d <= math.pi * geo.EARTH_RADIUS_KM + 1e-9
    assert geo.haversine_km(90, 0, -90, 0) == pytest.approx(math.pi * geo.EARTH_RADIUS_KM)


def test_implied_speed_guards():
    assert geo.implied_speed_kmh(10.0, 0) == geo.implied_speed_kmh(10.0, 999) == 36_000.0
    assert geo.implied_speed_kmh(10.0, -5_000) == 36_000.0
    assert geo.implied_speed_kmh(0.0, -5) == 0.0
    assert geo.implied_speed_kmh(10.0, 1_800_000) == 20.0


def test_fixed_point_mean_is_order_independent():
    rng = random.Random(2)
    values = [rng.uniform(-180, 180) for _ in range(100)]
    total = sum(geo.to_fixed(v) for v in values)
    shuffled = sum(geo.to_fixed(v) for v in rng.sample(values, len(values)))
    assert geo.mean_from_fixed(total, 100) == geo.mean_from_fixed(shuffled, 100)
    assert abs(geo.mean_from_fixed(total, 100) - sum(values) / 100) < 1e-7


def test_feature_vector_order_and_missing_key():
    features = {name: float(i) for i, name in enumerate(DEFAULT_SPEC.names)}
    assert feature_vector(dict(reversed(features.items()))) == list(features.values())
    del features["card_countries_1d"]
    with pytest.raises(KeyError, match="card_countries_1d"):
        feature_vector(features)
    assert MISSING == -1.0
