"""train_and_register on a small simulated set, against a real MLflow sqlite registry."""

from __future__ import annotations

import numpy as np
import pytest

from config.settings import load_settings
from models.registry import CHALLENGER, CHAMPION, ModelRegistry
from models.serving import ModelMismatchError
from training.dataset import from_simulator
from training.pipeline import train_and_register

pytestmark = pytest.mark.slow

SMALL = {"seed": 1, "days": 42, "n_customers": 300, "n_terminals": 600}
LENIENT = {"gate_min_auc_roc": 0.6, "gate_min_average_precision": 0.3,
           "gate_min_card_precision_at_100": 0.0, "gate_min_improvement": 0.01}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return from_simulator("handbook", cache_dir=tmp_path_factory.mktemp("cache"), **SMALL)


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    root = tmp_path_factory.mktemp("state")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")  # any global fallback
    mp.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    yield load_settings(data_dir=root, lgbm_num_boost_round=200, lgbm_early_stopping_rounds=20,
                        model_name="fraud-test", **LENIENT)
    mp.undo()


@pytest.fixture(scope="module")
def runs(data, settings, tmp_path_factory):
    """Two identical trainings: the first becomes champion, the second must be refused."""
    first = train_and_register(data, settings, prequential=2,
                               report_dir=tmp_path_factory.mktemp("r1"))
    second = train_and_register(data, settings, report_dir=tmp_path_factory.mktemp("r2"))
    return first, second


def _registry(settings):
    return ModelRegistry(settings.tracking_uri, artifact_root=settings.artifact_root,
                         model_name=settings.model_name)


def test_first_model_is_registered_and_promoted(runs, settings):
    first, _ = runs
    assert first.version == 1 and first.promoted and first.refused == []
    assert [e["action"] for e in first.events] == ["registered", "promoted"]
    assert first.metrics["auc_roc"] > 0.7 and first.metrics["average_precision"] > 0.4
    assert first.champion_before is None
    # the events were not sent (no broker in this test) and the result says why
    assert first.publish.sent == 0 and "no Kafka broker" in first.publish.skipped
    info = _registry(settings).get_version(CHAMPION)
    assert info.version == 1 and info.sha256 == first.onnx_sha256
    assert info.metrics["auc_roc"] == pytest.approx(first.metrics["auc_roc"])


def test_report_is_logged_with_the_run(runs, settings):
    first, _ = runs
    files = {p.name for p in first.report_path.parent.iterdir()}
    assert {"report.md", "roc.png", "precision_recall.png", "score_hist.png",
            "feature_importance.png"} <= files
    text = first.report_path.read_text()
    assert "Prequential" in text and "published handbook" in text
    registry = _registry(settings)
    run_id = registry.get_version(1).run_id
    logged = {a.path for a in registry.client.list_artifacts(run_id, "report")}
    assert "report/report.md" in logged and "report/roc.png" in logged


def test_registered_onnx_equals_lightgbm_on_whole_test_set(runs, data, settings):
    first, _ = runs
    scorer = _registry(settings).load_scorer(CHAMPION, data.feature_names, data.spec_version)
    p_onnx = scorer.predict(first.test).astype(np.float64)
    p_lgb = first.model.predict(first.test)
    assert len(p_onnx) == len(first.test) > 1000
    assert np.max(np.abs(p_onnx - p_lgb)) <= 1e-5
    assert first.parity_max_abs_diff <= 1e-5


def test_second_model_is_compared_on_the_same_test_rows_and_refused(runs, settings):
    first, second = runs
    # identical data and seed: identical model, so the champion's metrics on these rows are
    # exactly the candidate's and it cannot beat them by 1 %
    assert second.version == 2 and second.champion_before == 1
    assert second.champion_metrics["average_precision"] == pytest.approx(
        first.metrics["average_precision"], abs=1e-6)
    assert not second.promoted
    assert any("does not beat champion" in r for r in second.refused)
    registry = _registry(settings)
    assert registry.get_version(CHAMPION).version == 1
    assert registry.get_version(CHALLENGER).version == 2


def test_prequential_reports_mean_and_std(runs):
    first, _ = runs
    folds = first.prequential.folds
    assert len(folds) == 2 and folds["test_start"].is_monotonic_increasing
    mean, std = first.prequential.summary()["auc_roc"]
    assert mean == pytest.approx(folds["auc_roc"].mean())
    assert std == pytest.approx(folds["auc_roc"].std(ddof=1))
    assert first.metrics["prequential_auc_roc_mean"] == pytest.approx(mean)


def test_model_with_wrong_features_is_refused(runs, data, settings):
    registry = _registry(settings)
    swapped = list(data.feature_names)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    with pytest.raises(ModelMismatchError, match="different order: position 0"):
        registry.load_scorer(CHAMPION, swapped, data.spec_version)
    with pytest.raises(ModelMismatchError, match=r"model has unexpected \['amount'\]"):
        registry.load_scorer(CHAMPION, data.feature_names[1:], data.spec_version)
    with pytest.raises(ModelMismatchError, match="feature spec version differs"):
        registry.load_scorer(CHAMPION, data.feature_names, "not-the-spec")
