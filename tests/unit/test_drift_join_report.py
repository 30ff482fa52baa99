"""The label/prediction join (error stream, dedup, horizon) and the batch drift report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from click.testing import CliRunner

from app.cli.main import cli
from app.drift.join import CardJoin
from app.drift.report import compare_feature, drift_report, to_markdown
from training.refstats import reference_stats

DAY = 86_400_000


def test_join_in_either_order_gives_one_error_each():
    j = CardJoin(horizon_ms=30 * DAY)
    assert j.prediction("a", 0, 0.9, "m", "1") == (True, None)
    err = j.label("a", 1, 0, 7 * DAY)
    assert err == {"txn_id": "a", "model_name": "m", "model_version": "1", "event_ts": 0,
                   "label": 1, "score": 0.9, "error": abs(1 - 0.9)}
    assert j.label("b", 0, DAY, 8 * DAY) is None
    fresh, err = j.prediction("b", DAY, 0.2, "m", "1")
    assert fresh and err["error"] == 0.2
    # redeliveries of both sides after the join: nothing new
    assert j.prediction("a", 0, 0.9, "m", "1") == (False, None)
    assert j.label("b", 0, DAY, 8 * DAY) is None
    assert j.pending == 0 and j.labels == {}


def test_unlabelled_predictions_expire_after_the_horizon():
    j = CardJoin(horizon_ms=10 * DAY)
    j.prediction("old", 0, 0.5, "m", "1")
    j.prediction("new", 5 * DAY, 0.5, "m", "1")
    j.features("later", 10 * DAY + 1)
    assert j.pending == 1 and "old" not in j.preds and j.expired == 1
    assert j.label("old", 1, 0, 11 * DAY) is None  # too late: waits, then expires too
    assert "p:old" not in j.done  # the dedup memory is bounded by the horizon as well


def test_per_card_memory_is_capped():
    j = CardJoin(horizon_ms=365 * DAY, max_entries=50)
    for i in range(1000):
        j.prediction(f"t{i}", i * 1000, 0.1, "m", "1")
        j.features(f"t{i}", i * 1000)
    assert len(j.preds) == 50 and len(j.done) == 50 and "t999" in j.preds
    state = json.loads(json.dumps(j.to_dict()))
    k = CardJoin.from_dict(state, 365 * DAY, 50)
    assert k.label("t999", 1, 999_000, 999_000 + DAY)["error"] == 0.9
    assert k.prediction("t999", 999_000, 0.1, "m", "1") == (False, None)


def _reference(n: int = 20_000) -> dict:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"ts": np.arange(n), "is_fraud": rng.random(n) < 0.01,
                          "amount": rng.lognormal(3, 1, n), "flag": (rng.random(n) < 0.3) * 1.0,
                          "risk": rng.beta(1, 30, n)})
    return reference_stats(frame, ["amount", "flag", "risk"])


def test_report_flags_the_moved_features_only():
    ref = _reference()
    rng = np.random.default_rng(2)
    n = 5000
    live = {"amount": rng.lognormal(3.4, 1, n),            # amounts up by ~50 %
            "flag": (rng.random(n) < 0.3) * 1.0,           # binary, unchanged
            "risk": rng.beta(1, 30, n)}                    # unchanged
    report = drift_report(live, ref, alpha=0.05)
    sev = {name: row["severity"] for name, row in report["features"].items()}
    assert sev == {"amount": "high", "flag": "none", "risk": "none"}
    assert report["severity"] == "high" and report["missing_features"] == []
    amount = report["features"]["amount"]
    assert amount["psi"] > 0.1 and amount["ks_p_value"] < 1e-6
    assert 0.12 < amount["ks_statistic"] < 0.2  # true sup|F - G| for this shift is ~0.157
    md = to_markdown(report)
    assert md.splitlines()[0] == "# Drift report: high"
    assert md.index("| amount | high") < md.index("| risk | none")


def test_small_shift_gives_an_intermediate_severity():
    ref = _reference()["features"]["risk"]
    rng = np.random.default_rng(3)
    row = compare_feature(rng.beta(1, 28.5, 3000), ref)  # mean 0.034 against 0.032
    assert (row["severity"], row["psi_severity"], row["ks_severity"]) == ("low", "none", "low")
    assert 0.0005 <= row["ks_p_value"] < 0.05 and row["psi"] < 0.1


def test_cli_writes_markdown_and_json(tmp_path):
    ref = _reference()
    (tmp_path / "ref.json").write_text(json.dumps(ref))
    rng = np.random.default_rng(4)
    pd.DataFrame({"amount": rng.lognormal(3.4, 1, 3000),
                  "risk": rng.beta(1, 30, 3000)}).to_csv(tmp_path / "live.csv", index=False)
    out = tmp_path / "report.md"
    result = CliRunner().invoke(cli, ["drift", "report", "--data", str(tmp_path / "live.csv"),
                                      "--reference", str(tmp_path / "ref.json"),
                                      "--out", str(out), "--fail-on", "high"])
    assert result.exit_code == 2, result.output
    assert "drift: high (1 none, 0 low, 0 medium, 1 high)" in result.output
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["features"]["amount"]["severity"] == "high"
    assert data["missing_features"] == ["flag"]
    assert "| amount | high" in out.read_text()
