"""Train -> export -> register -> promote -> rollback against a temporary sqlite MLflow."""

import uuid
from pathlib import Path

import numpy as np
import pytest

from config.gates import PromotionGates, PromotionRefused
from models.registry import ModelRegistry, RegistryError
from training.lgbm import LGBMParams, train_lgbm
from training.metrics import card_precision_at_k_per_day, evaluate, threshold_for_daily_budget
from training.onnx_export import ExportedModel, ParityReport, export_model
from training.protocol import frame_fingerprint, handbook_split
from training.report import write_report
from training.toydata import TOY_FEATURES, make_toy_transactions

SPEC = "toy-v1"
LENIENT = PromotionGates(min_auc_roc=0.6, min_average_precision=0.1,
                         min_card_precision_at_100=0.0, min_improvement=0.01)
EVENT_KEYS = {"model_name", "action", "version", "alias", "artifact_uri", "sha256", "event_id",
              "at"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    frame = make_toy_transactions(n_cards=300, n_days=28, seed=5)
    split = handbook_split(frame, "2018-07-01", valid_days=2)
    model = train_lgbm(split.train, TOY_FEATURES, LGBMParams(num_boost_round=150, num_leaves=31),
                       valid=split.valid, progress=False)
    scored = split.test.assign(score=model.predict(split.test))
    metrics = evaluate(scored, k=100)
    valid_scored = split.valid.assign(score=model.predict(split.valid))
    threshold = threshold_for_daily_budget(valid_scored, 5)
    report = write_report(
        tmp_path_factory.mktemp("report"), scored, metrics=metrics,
        importance=model.feature_importance(), threshold=threshold,
        cp_per_day=card_precision_at_k_per_day(scored, 100),
        sections={"data": split.describe(), "hyperparameters": model.params.model_dump()})
    exported = export_model(model, frame, spec_version=SPEC)
    return {"frame": frame, "split": split, "model": model, "metrics": metrics,
            "exported": exported, "report_dir": report.parent,
            "test_id": frame_fingerprint(split.test)}


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    mp = pytest.MonkeyPatch()
    # anything in MLflow that falls back to the global URI must hit the temp store too
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
    yield f"sqlite:///{root}/mlflow.db", root / "artifacts"
    mp.undo()


def _registry(tracking_uri, gates=LENIENT) -> ModelRegistry:
    uri, artifacts = tracking_uri
    return ModelRegistry(uri, artifact_root=artifacts, gates=gates,
                         model_name=f"fraud-{uuid.uuid4().hex[:8]}")


def _register(reg, trained, **kwargs):
    return reg.register_candidate(trained["exported"], metrics=trained["metrics"],
                                  params=trained["model"].params.model_dump(),
                                  test_data_id=trained["test_id"], **kwargs)


def test_report_has_markdown_and_plots(trained):
    files = {p.name for p in trained["report_dir"].iterdir()}
    assert {"report.md", "roc.png", "precision_recall.png", "score_hist.png",
            "feature_importance.png"} <= files
    text = (trained["report_dir"] / "report.md").read_text()
    assert "card_precision_at_100" in text and "![ROC](roc.png)" in text


def test_lifecycle_register_promote_rollback(trained, tracking_uri):
    reg = _registry(tracking_uri)
    exported = trained["exported"]

    ev1 = _register(reg, trained, report_dir=trained["report_dir"])
    assert set(ev1) == EVENT_KEYS
    assert (ev1["action"], ev1["version"], ev1["alias"]) == ("registered", 1, "challenger")
    assert ev1["sha256"] == exported.sha256 and ev1["artifact_uri"].endswith("/model.onnx")

    ev = reg.promote(1)
    assert (ev["action"], ev["version"], ev["alias"]) == ("promoted", 1, "champion")
    assert reg.get_version("champion").aliases == ("champion",)  # challenger alias dropped

    ev2 = _register(reg, trained)
    assert ev2["version"] == 2 and ev2["event_id"] != ev1["event_id"]
    with pytest.raises(PromotionRefused, match="does not beat champion"):
        reg.promote(2)  # same metrics on the same test data: no 1% gain
    assert reg.promote(2, force=True)["version"] == 2

    ev = reg.rollback()
    assert (ev["action"], ev["version"], ev["alias"]) == ("rolled_back", 1, "champion")
    assert reg.get_version("champion").version == 1
    assert [(h["action"], h["version"]) for h in reg.history()] == [
        ("promoted", 1), ("promoted", 2), ("rolled_back", 1)]
    with pytest.raises(RegistryError, match="no previous champion"):
        reg.rollback()

    versions = reg.list_versions()
    assert [v.version for v in versions] == [1, 2]
    info = reg.get_version("champion")
    assert info.feature_names == TOY_FEATURES and info.spec_version == SPEC
    assert info.sha256 == exported.sha256 and info.local_path.read_bytes() == exported.onnx_bytes
    assert info.metrics["auc_roc"] == pytest.approx(trained["metrics"]["auc_roc"])

    # the registered ONNX scores equal LightGBM's on the test rows
    scorer = reg.load_scorer("champion", TOY_FEATURES, SPEC)
    test = trained["split"].test
    np.testing.assert_allclose(scorer.predict(test), trained["model"].predict(test),
                               atol=1e-5, rtol=0)

    run = reg.client.get_run(info.run_id)
    assert run.data.params["onnx_sha256"] == exported.sha256
    assert run.data.params["num_leaves"] == "31"
    assert "average_precision" in run.data.metrics
    assert {a.path for a in reg.client.list_artifacts(info.run_id, "report")} >= {
        "report/report.md", "report/roc.png"}


def test_gates_refuse_weak_or_incomparable_candidates(trained, tracking_uri):
    strict = PromotionGates(min_auc_roc=0.999, min_average_precision=0.1,
                            min_card_precision_at_100=0.0)
    reg = _registry(tracking_uri, gates=strict)
    _register(reg, trained)
    with pytest.raises(PromotionRefused, match="auc_roc .* < minimum 0.9990"):
        reg.promote(1)

    reg = _registry(tracking_uri)
    _register(reg, trained)
    reg.promote(1)
    reg.register_candidate(trained["exported"], metrics=trained["metrics"],
                           test_data_id="other-test-week")
    with pytest.raises(PromotionRefused, match="other test data"):
        reg.promote(2)
    weaker = {k: v * 0.9 for k, v in trained["metrics"].items()}
    assert reg.promote(2, champion_metrics=weaker)["alias"] == "champion"


def test_refuses_unverified_models_and_tampered_files(trained, tracking_uri):
    reg = _registry(tracking_uri)
    good = trained["exported"]
    bad = ExportedModel(onnx_bytes=good.onnx_bytes, feature_names=good.feature_names,
                        spec_version=SPEC, model_name="x", model_version="x",
                        parity=ParityReport(n_rows=10, max_abs_diff=0.1, tolerance=1e-5),
                        metadata=good.metadata)
    with pytest.raises(RegistryError, match="parity"):
        reg.register_candidate(bad, metrics=trained["metrics"])

    ev = _register(reg, trained)
    path = Path(reg.get_version(ev["version"]).local_path)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(RegistryError, match="sha256"):
        reg.get_version(ev["version"])
