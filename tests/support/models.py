"""Small real fraud models for scoring tests: simulated traffic, exact features, LightGBM, ONNX,
registered in an MLflow sqlite registry in a temporary folder.

Nothing here is mocked: the models are trained on :func:`features.batch.compute_features` of a
few simulated days, exported (with the parity check) and registered with
:class:`models.registry.ModelRegistry`, exactly as the training pipeline does, only smaller.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from config.gates import PromotionGates
from features.batch import compute_features
from features.spec import DEFAULT_SPEC, FeatureSpec
from models.registry import ModelRegistry
from training.lgbm import LGBMParams, train_lgbm
from training.onnx_export import ExportedModel, export_model

MODEL_NAME = "fraud-test"


@dataclass(frozen=True)
class Traffic:
    """Simulated transactions with their exact features (the enriched stream's content)."""

    txns: pd.DataFrame          # one row per transaction, contract columns + is_fraud
    features: pd.DataFrame      # txn_id + spec features, same row order

    def enriched(self, limit: int | None = None) -> list[tuple[bytes, bytes]]:
        """``transactions-enriched`` records (key = card id) as the terminal stage writes them."""
        names = DEFAULT_SPEC.names
        cols = ["txn_id", "card_id", "terminal_id", "amount", "currency", "ts"]
        rows = self.txns[cols].to_dict("records")
        feats = self.features[names].to_numpy(dtype=float)
        out = []
        for i, txn in enumerate(rows[:limit]):
            txn["ts"] = int(txn["ts"])
            vector = {n: float(v) for n, v in zip(names, feats[i], strict=True)}
            value = {**txn, "features": vector, "feature_spec_version": DEFAULT_SPEC.version}
            out.append((txn["card_id"].encode(), json.dumps(value).encode()))
        return out


@lru_cache(maxsize=2)
def traffic(seed: int = 5, days: int = 4, customers: int = 300) -> Traffic:
    """A few simulated days and their features (cached per process)."""
    from simulator import simulate

    sim = simulate("realistic", seed=seed, n_customers=customers, n_terminals=2 * customers,
                   n_days=days)
    txns = sim.to_frame()
    feats = compute_features(txns, sim.labels().to_pandas())
    feats = feats.set_index("txn_id").loc[txns["txn_id"]].reset_index()
    return Traffic(txns, feats)


def train(seed: int = 42, rounds: int = 40, spec: FeatureSpec = DEFAULT_SPEC,
          features: list[str] | None = None, spec_version: str | None = None) -> ExportedModel:
    """A small exported model (different ``seed`` / ``rounds`` give different scores)."""
    data = traffic()
    names = features or spec.names
    frame = data.features.assign(is_fraud=data.txns["is_fraud"].to_numpy())
    params = LGBMParams(num_boost_round=rounds, seed=seed, num_leaves=15,
                        min_child_samples=5, bagging_fraction=0.7, feature_fraction=0.7)
    model = train_lgbm(frame, names, params, progress=False)
    return export_model(model, frame, spec_version=spec_version or spec.version,
                        model_name=MODEL_NAME)


def registry(tmp: Path, name: str = MODEL_NAME) -> ModelRegistry:
    """A registry on sqlite in ``tmp`` with gates that any model passes."""
    return ModelRegistry(f"sqlite:///{tmp / 'mlflow.db'}", artifact_root=tmp / "mlartifacts",
                         model_name=name,
                         gates=PromotionGates(min_auc_roc=0.0, min_average_precision=0.0,
                                              min_card_precision_at_100=0.0,
                                              min_improvement=-1.0))


def register(reg: ModelRegistry, exported: ExportedModel, *, threshold: float = 0.5,
             alias: str | None = None, champion: bool = False) -> dict:
    """Register ``exported`` (its decision threshold as the ``threshold`` metric); optionally
    promote it to champion. Returns the last model-updates event."""
    event = reg.register_candidate(exported, metrics={"threshold": threshold, "auc_roc": 0.9,
                                                      "average_precision": 0.7,
                                                      "card_precision_at_100": 0.3},
                                   test_data_id="scoring-tests", alias=alias)
    if champion:
        event = reg.promote(event["version"], force=True)
    return event


def scores(exported: ExportedModel, vectors: np.ndarray) -> np.ndarray:
    """The ONNX model's scores on ``vectors`` (float32 rows in spec order), as float64."""
    from models.serving import load_onnx_model

    scorer = load_onnx_model(exported.onnx_bytes, list(exported.feature_names),
                             exported.spec_version, exported.sha256)
    return scorer.predict(vectors.astype(np.float32)).astype(np.float64)
