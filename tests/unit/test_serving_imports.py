"""The scoring worker needs ONNX Runtime and the registry, not the trainer.

Each check runs in a fresh interpreter (a subprocess), so that nothing this test process has
imported already can hide an import, and looks at ``sys.modules`` after the work is done:
lazy imports inside functions count too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from features.spec import DEFAULT_SPEC
from tests.support import models

ROOT = Path(__file__).resolve().parents[2]
TRAINER = ("lightgbm", "onnxmltools")

SERVING_MODULES = (
    "models.serving", "models.registry", "app.scoring.models", "app.scoring.scorer",
    "app.scoring.records", "app.scoring.vectors", "app.scoring.split", "app.agents.scoring",
    "app.score_api",
)

REPORT = """
import json, sys
print(json.dumps(sorted(m for m in sys.modules
                        if m.split(".")[0] in ("lightgbm", "onnxmltools", "training"))))
"""


def _loaded_after(code: str, tmp_path: Path) -> list[str]:
    """Run ``code`` in a fresh interpreter; the trainer's modules it left in ``sys.modules``."""
    script = tmp_path / "probe.py"
    script.write_text(textwrap.dedent(code) + REPORT)
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(ROOT),
                                                       "PATH": "/usr/bin:/bin",
                                                       "MLFLOW_DISABLE_TELEMETRY": "true"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_probe_sees_the_trainer_when_it_is_imported(tmp_path: Path) -> None:
    """The check itself can fail: importing the exporter pulls in LightGBM and onnxmltools."""
    loaded = _loaded_after("import training.onnx_export\n", tmp_path)
    assert {"lightgbm", "onnxmltools", "training.onnx_export"} <= set(loaded)


def test_serving_modules_import_neither_lightgbm_nor_onnxmltools(tmp_path: Path) -> None:
    imports = "".join(f"import {name}\n" for name in SERVING_MODULES)
    loaded = _loaded_after(imports, tmp_path)
    assert not loaded, f"serving imported {loaded}"


@pytest.mark.slow
def test_loading_and_scoring_a_registered_model_needs_no_trainer(tmp_path: Path) -> None:
    """Resolve the champion, load it (sha256, features, spec, threshold, warm-up), score."""
    registry = models.registry(tmp_path)
    models.register(registry, models.train(rounds=10), threshold=0.4, champion=True)
    vectors = models.traffic().features[DEFAULT_SPEC.names].to_numpy()[:64]
    (tmp_path / "vectors.json").write_text(json.dumps(vectors.tolist()))
    loaded = _loaded_after(f"""
        import json
        from pathlib import Path

        import numpy as np

        from app.scoring.models import ModelHolder, RegistrySource
        from features.spec import DEFAULT_SPEC
        from models.registry import ModelRegistry

        tmp = Path({str(tmp_path)!r})
        registry = ModelRegistry(f"sqlite:///{{tmp / 'mlflow.db'}}",
                                 artifact_root=tmp / "mlartifacts",
                                 model_name={models.MODEL_NAME!r})
        holder = ModelHolder(RegistrySource(registry, DEFAULT_SPEC.names, DEFAULT_SPEC.version))
        assert holder.refresh() == ["champion: v1 loaded"], holder.slots["champion"].error
        vectors = np.asarray(json.loads((tmp / "vectors.json").read_text()), dtype=np.float32)
        scores = holder.champion.predict(vectors)
        assert scores.shape == (64,) and ((scores >= 0) & (scores <= 1)).all()
    """, tmp_path)
    assert not loaded, f"loading and scoring imported {loaded}"


@pytest.mark.parametrize(("scoring", "agents"), [
    ("fused", {"pipeline", "model-updates"}),
    ("separate", {"pipeline", "scoring", "model-updates"}),
])
def test_a_scoring_worker_app_imports_neither_lightgbm_nor_onnxmltools(
        tmp_path: Path, scoring: str, agents: set[str]) -> None:
    """The whole worker (every agent registered, scoring on: fused into the pipeline agent or
    as the separate scoring agent), as ``faust -A app worker`` builds it, minus the broker
    connection."""
    loaded = _loaded_after(f"""
        from app.faust_app import create_app
        from config.settings import load_settings

        settings = load_settings(store="memory://", data_dir={str(tmp_path)!r},
                                 drift_enabled=True, feast_enabled=False,
                                 pipeline_scoring={scoring!r})
        app = create_app(settings, "127.0.0.1:9", agents=True)
        names = {{a.split(".")[-1] for a in app.agents}}
        assert {agents!r} <= names, names
        fused = app.fraudstream_pipeline.holder is not None
        assert fused == ({scoring!r} == "fused"), app.fraudstream_pipeline.holder
    """, tmp_path)
    trainer = [m for m in loaded if m.split(".")[0] in TRAINER]
    assert not trainer, f"the worker imported {trainer}"
