"""ONNX export: parity with LightGBM, dynamic batch, metadata, refusal of the wrong model."""

import json

import lightgbm as lgb
import numpy as np
import onnxruntime as ort
import pytest
from onnxmltools import convert_lightgbm
from onnxmltools.convert.common.data_types import FloatTensorType

from models.serving import ModelMismatchError, load_onnx_model, read_metadata, sha256_hex
from training.lgbm import LGBMParams, as_matrix, snap_thresholds_to_float32, train_lgbm
from training.onnx_export import ParityError, check_parity, export_model
from training.protocol import handbook_split
from training.refstats import reference_stats
from training.toydata import TOY_FEATURES, make_toy_transactions

SPEC = "test-spec-1"


@pytest.fixture(scope="module")
def frame():
    return make_toy_transactions(n_cards=300, n_days=21, seed=11)


@pytest.fixture(scope="module")
def model(frame):
    split = handbook_split(frame, "2018-07-01", valid_days=2)
    return train_lgbm(split.train, TOY_FEATURES, LGBMParams(num_boost_round=120),
                      valid=split.valid, progress=False)


@pytest.fixture(scope="module")
def exported(model, frame):
    ref = reference_stats(frame, TOY_FEATURES, model.predict(frame))
    return export_model(model, frame, spec_version=SPEC, model_name="fraud-test",
                        reference=ref)


def test_parity_on_the_whole_frame(exported, model, frame):
    assert exported.parity.n_rows == len(frame)
    assert exported.parity.max_abs_diff <= 1e-5
    scorer = load_onnx_model(exported.onnx_bytes, TOY_FEATURES, SPEC, exported.sha256)
    np.testing.assert_allclose(scorer.predict(frame), model.predict(frame), atol=1e-5, rtol=0)


def test_metadata_holds_features_spec_and_reference(exported):
    meta = read_metadata(exported.onnx_bytes)
    assert json.loads(meta["feature_names"]) == TOY_FEATURES
    assert meta["feature_spec_version"] == SPEC
    assert meta["model_name"] == "fraud-test"
    assert meta["model_version"] == exported.model_version
    ref = json.loads(meta["reference_stats"])
    assert ref["n_rows"] > 0 and set(ref["features"]) == set(TOY_FEATURES)
    assert "score" in ref


def test_batched_calls_log_no_shape_warning(exported, model, frame, capfd):
    ort.set_default_logger_severity(2)  # warnings and above
    scorer = load_onnx_model(exported.onnx_bytes, TOY_FEATURES, SPEC)
    x = as_matrix(frame, TOY_FEATURES)
    capfd.readouterr()
    for n in (1, 7, 256):
        outs = scorer.session.run(None, {"features": x[:n]})  # every output, label included
        assert [o.shape[0] for o in outs] == [n, n]
        np.testing.assert_allclose(scorer.predict(x[:n]), model.predict(x[:n]), atol=1e-5)
    err = capfd.readouterr().err
    assert "Expected shape" not in err and "W:onnxruntime" not in err, err


def test_session_settings(exported):
    scorer = load_onnx_model(exported.onnx_bytes, TOY_FEATURES, SPEC, intra_op_num_threads=2)
    opts = scorer.session.get_session_options()
    assert opts.intra_op_num_threads == 2
    assert opts.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_loads_from_path(exported, tmp_path):
    path = exported.save(tmp_path / "m.onnx")
    scorer = load_onnx_model(path, TOY_FEATURES, SPEC, sha256=sha256_hex(path.read_bytes()))
    assert scorer.sha256 == exported.sha256 and scorer.feature_names == TOY_FEATURES


@pytest.mark.parametrize(
    ("features", "spec", "sha", "message"),
    [
        (["night", "amount", "amount_ratio", "noise"], SPEC, None, "position 0 is 'amount'"),
        (TOY_FEATURES[:3], SPEC, None, "unexpected ['noise']"),
        ([*TOY_FEATURES, "velocity"], SPEC, None, "lacks ['velocity']"),
        (TOY_FEATURES, "test-spec-2", None, "spec version differs"),
        (TOY_FEATURES, SPEC, "0" * 64, "sha256 mismatch"),
    ],
)
def test_refuses_the_wrong_model(exported, features, spec, sha, message):
    with pytest.raises(ModelMismatchError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_onnx_model(exported.onnx_bytes, features, spec, sha256=sha)


def test_refuses_a_model_without_fraudstream_metadata(model):
    plain = convert_lightgbm(model.booster, zipmap=False,
                             initial_types=[("features", FloatTensorType([None, 4]))])
    with pytest.raises(ModelMismatchError, match="not a fraudstream model"):
        load_onnx_model(plain.SerializeToString(), TOY_FEATURES, SPEC)


def test_parity_failure_is_an_error(exported, frame):
    other = train_lgbm(frame, TOY_FEATURES, LGBMParams(num_boost_round=5, seed=3),
                       progress=False)
    with pytest.raises(ParityError, match="parity failed"):
        check_parity(exported.onnx_bytes, other.booster, as_matrix(frame, TOY_FEATURES))


def test_training_is_reproducible(frame):
    p = LGBMParams(num_boost_round=30, imbalance="scale_pos_weight")
    a = train_lgbm(frame, TOY_FEATURES, p, progress=False)
    b = train_lgbm(frame, TOY_FEATURES, p, progress=False)
    assert a.booster.model_to_string() == b.booster.model_to_string()
    assert a.lgb_params["scale_pos_weight"] == pytest.approx(
        (frame["is_fraud"] == 0).sum() / frame["is_fraud"].sum())


@pytest.fixture(scope="module")
def adjacent_frame():
    """Amounts on two adjacent float32 values; the larger one is fraud.

    LightGBM splits them at their float64 midpoint, which is no float32: rounded to
    the nearest float32 (as the ONNX converter does) it flips one side.
    """
    a = np.float32(22.53)
    b = np.nextafter(a, np.float32(np.inf))
    x = np.array([a, b] * 100, dtype=np.float32)
    return make_toy_transactions(n_cards=20, n_days=1).head(0).reindex(range(len(x))).assign(
        amount=x, night=0.0, amount_ratio=0.0, noise=0.0, is_fraud=(x == b).astype(int))


def test_float32_snapped_thresholds_keep_lightgbm_scores(frame, adjacent_frame):
    for data in (frame, adjacent_frame):
        x = as_matrix(data, TOY_FEATURES)
        params = {**LGBMParams(min_child_samples=1).to_lgb(1, 1), "verbosity": -1}
        raw = lgb.train(params, lgb.Dataset(x, data["is_fraud"].to_numpy()), num_boost_round=20)
        snapped = lgb.Booster(model_str=snap_thresholds_to_float32(raw.model_to_string()))
        assert snapped.model_to_string() != raw.model_to_string()
        np.testing.assert_array_equal(snapped.predict(x), raw.predict(x))


def test_parity_holds_when_values_sit_on_adjacent_float32s(adjacent_frame):
    model = train_lgbm(adjacent_frame, TOY_FEATURES,
                       LGBMParams(num_boost_round=3, min_child_samples=1), progress=False)
    out = export_model(model, adjacent_frame, spec_version=SPEC)
    assert out.parity.max_abs_diff <= 1e-5
