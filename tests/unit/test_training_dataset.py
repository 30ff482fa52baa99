"""Training sets from the simulator and from parquet files; the cache; clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.spec import DEFAULT_SPEC
from simulator import simulate
from training.dataset import DatasetError, from_parquet, from_simulator

OPTS = {"n_customers": 80, "n_terminals": 150}


@pytest.fixture(scope="module")
def sim_frame(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return from_simulator("handbook", seed=4, days=20, cache_dir=cache, **OPTS), cache


def test_simulator_frame_columns_labels_and_cache(sim_frame):
    tf, cache = sim_frame
    f = tf.frame
    assert list(f.columns[:6]) == ["txn_id", "card_id", "terminal_id", "ts", "scenario",
                                   "is_fraud"]
    assert list(f.columns[6:]) == DEFAULT_SPEC.names == tf.feature_names
    assert f["ts"].is_monotonic_increasing and f["txn_id"].is_unique
    # labels joined by txn_id equal the simulator's ground truth
    truth = simulate("handbook", seed=4, n_days=20, **OPTS).to_frame().set_index("txn_id")
    assert (f.set_index("txn_id")["is_fraud"] == truth.loc[f["txn_id"], "is_fraud"]).all()
    assert f["is_fraud"].sum() > 0
    again = from_simulator("handbook", seed=4, days=20, cache_dir=cache, **OPTS)
    assert again.from_cache and not tf.from_cache
    pd.testing.assert_frame_equal(again.frame, f)
    other = from_simulator("handbook", seed=5, days=20, cache_dir=cache, **OPTS)
    assert not other.from_cache  # the seed is part of the cache key


def test_parquet_raw_transactions_give_the_same_features(sim_frame, tmp_path):
    tf, _ = sim_frame
    simulate("handbook", seed=4, n_days=20, **OPTS).write_parquet(tmp_path / "run")
    from_file = from_parquet(tmp_path / "run")
    assert from_file.source["kind"] == "raw transactions"
    pd.testing.assert_frame_equal(from_file.frame, tf.frame)


def test_parquet_feature_log_with_struct_features(sim_frame, tmp_path):
    tf, _ = sim_frame
    f = tf.frame.head(200)
    log = f[["txn_id", "card_id", "terminal_id", "ts", "is_fraud"]].assign(
        features=[dict(zip(tf.feature_names, row, strict=True))
                  for row in f[tf.feature_names].to_numpy()],
        feature_spec_version=DEFAULT_SPEC.version)
    log.to_parquet(tmp_path / "log.parquet")
    got = from_parquet(tmp_path / "log.parquet")
    assert got.source["kind"] == "feature log"
    np.testing.assert_array_equal(got.frame[tf.feature_names].to_numpy(),
                                  f[tf.feature_names].to_numpy())
    log.assign(feature_spec_version="old").to_parquet(tmp_path / "old.parquet")
    with pytest.raises(DatasetError, match="feature spec versions \\['old'\\]"):
        from_parquet(tmp_path / "old.parquet")


def test_missing_columns_are_listed(tmp_path):
    pd.DataFrame({"txn_id": ["a"], "card_id": ["c"], "amount": [1.0]}).to_parquet(
        tmp_path / "x.parquet")
    with pytest.raises(DatasetError) as err:
        from_parquet(tmp_path / "x.parquet")
    text = str(err.value)
    assert "missing ['terminal_id', 'ts']" in text and "Found columns" in text
    assert "is_fraud" in text
