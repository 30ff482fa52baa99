"""`fraudstream train` and `fraudstream models` end to end on a tiny simulated set (CliRunner)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from app.cli.main import cli
from config.settings import get_settings
from models.registry import CHAMPION, ModelRegistry

pytestmark = pytest.mark.slow

TINY = ["--days", "35", "--customers", "200", "--terminals", "400", "--seed", "2",
        "--train-start", "latest", "--no-progress", "--no-publish"]


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("FRAUDSTREAM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    for key, value in {"GATE_MIN_AUC_ROC": "0.55", "GATE_MIN_AVERAGE_PRECISION": "0.2",
                       "GATE_MIN_CARD_PRECISION_AT_100": "0", "LGBM_NUM_BOOST_ROUND": "120",
                       "LGBM_EARLY_STOPPING_ROUNDS": "15"}.items():
        monkeypatch.setenv(f"FRAUDSTREAM_{key}", value)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def _champion(tmp_path) -> int:
    s = get_settings()
    reg = ModelRegistry(s.tracking_uri, artifact_root=s.artifact_root, model_name=s.model_name)
    return reg.get_version(CHAMPION, verify=False).version


def test_train_then_models_promote_and_rollback(env):
    runner = CliRunner()
    first = runner.invoke(cli, ["train", *TINY, "--report-dir", str(env / "rep1")])
    assert first.exit_code == 0, first.output
    assert "registered fraud-lgbm v1 (challenger)" in first.output
    assert "promoted v1 to champion" in first.output
    assert "ONNX parity: max |p_onnx - p_lightgbm|" in first.output
    assert (env / "rep1" / "report.md").is_file()
    assert list((env / "training" / "cache").glob("*.parquet"))  # features cached

    second = runner.invoke(cli, ["train", *TINY, "--no-promote"])
    assert second.exit_code == 0, second.output
    assert "registered fraud-lgbm v2 (challenger)" in second.output
    assert "champion v1 on the same test rows" in second.output
    assert _champion(env) == 1

    listing = runner.invoke(cli, ["models", "list"])
    assert listing.exit_code == 0
    rows = [line.split() for line in listing.output.splitlines()[1:]]
    assert [r[:2] for r in rows] == [["1", "champion"], ["2", "challenger"]]

    # v2 is the same model on the same test data: the gate refuses it ...
    refused = runner.invoke(cli, ["models", "promote", "2"])
    assert refused.exit_code == 1 and "does not beat champion" in refused.output
    assert _champion(env) == 1
    # ... unless forced; every alias change is an event (not sent: no broker here)
    forced = runner.invoke(cli, ["models", "promote", "2", "--force"])
    assert forced.exit_code == 0, forced.output
    assert "champion -> v2 (forced)" in forced.output
    assert "model-updates: 0 event(s) NOT sent (skipped: no Kafka broker" in forced.output
    assert _champion(env) == 2

    back = runner.invoke(cli, ["models", "rollback"])
    assert back.exit_code == 0, back.output
    assert "rolled back to v1" in back.output and "NOT sent" in back.output
    assert _champion(env) == 1
    shown = runner.invoke(cli, ["models", "show"])
    assert "v1" in shown.output and "(verified)" in shown.output

    again = runner.invoke(cli, ["models", "rollback"])
    assert again.exit_code == 1 and "no previous champion" in again.output


def test_train_refuses_a_file_without_the_needed_columns(env):
    import pandas as pd

    bad = env / "bad.parquet"
    pd.DataFrame({"txn_id": ["a"], "amount": [1.0]}).to_parquet(bad)
    out = CliRunner().invoke(cli, ["train", "--data", str(bad), "--no-progress"])
    assert out.exit_code == 1
    assert "missing ['card_id', 'terminal_id', 'ts']" in out.output
