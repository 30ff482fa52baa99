"""LightGBM binary fraud classifier: seeded, deterministic, early-stopped on a validation period.

The hyperparameters are :class:`config.training.LGBMParams`, the ``FRAUDSTREAM_LGBM_*``
settings: one set of defaults for ``fraudstream train``, the retrain worker and code that
builds them by hand. Class imbalance: no reweighting by default; ``scale_pos_weight`` (by
default the training negatives / positives ratio) or ``is_unbalance`` can be chosen.
Reweighting keeps the ranking metrics (AUC, AP, card precision@k) meaningful but makes the
scores uncalibrated, so alert thresholds must be chosen on scored validation data
(:mod:`training.metrics`), never assumed to be 0.5.

Exact ONNX parity: ONNX tree ensembles compare float32 inputs with float32
thresholds, LightGBM compares them with float64 thresholds; a threshold that
lies between two float32 values is rounded *to nearest* by the converter and can
send a row down the other branch (|diff| up to 1e-2 seen on toy data). The
trained booster's thresholds are therefore snapped down to the largest float32
not above them (:func:`snap_thresholds_to_float32`): for every float32 input
``x <= t`` is unchanged, so LightGBM scores are the same and the converted model
agrees with them.

Determinism: ``deterministic=True``, ``force_row_wise=True``, one ``seed`` for
every random source and a fixed ``num_threads``; the same data and parameters
give the same model string.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from config.training import LGBMParams
from models.serving import as_matrix

log = logging.getLogger(__name__)


@dataclass
class TrainedModel:
    """A trained booster cut at its best iteration, with its feature order."""

    booster: lgb.Booster
    feature_names: list[str]
    params: LGBMParams
    lgb_params: dict[str, object]
    best_iteration: int
    history: dict[str, list[float]] = field(default_factory=dict)

    def predict(self, data: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Fraud scores (probability of the positive class) in [0, 1]."""
        return np.asarray(self.booster.predict(as_matrix(data, self.feature_names)))

    def feature_importance(self, kind: Literal["gain", "split"] = "gain") -> pd.Series:
        """Importance per feature, sorted descending."""
        values = self.booster.feature_importance(importance_type=kind)
        return pd.Series(values, index=self.feature_names, name=kind).sort_values(
            ascending=False)


def _float32_floor(value: float) -> float:
    down = np.float32(value)
    if float(down) > value:
        down = np.nextafter(down, np.float32(-np.inf))
    return float(down)


def snap_thresholds_to_float32(model_str: str) -> str:
    r"""Rewrite numerical split thresholds to the largest float32 not above them.

    Trees with categorical splits are left unchanged (their thresholds are not
    numbers to compare with). The ``tree_sizes=`` header (byte offsets that the
    new text no longer matches) is dropped; LightGBM then parses trees in order.

    >>> snap_thresholds_to_float32("num_cat=0\nthreshold=22.529999732971195 1.5\n")
    'num_cat=0\nthreshold=22.529998779296875 1.5\n'
    """
    out: list[str] = []
    categorical = False
    for line in model_str.split("\n"):
        if line.startswith("tree_sizes="):
            continue
        if line.startswith("num_cat="):
            categorical = int(line.split("=", 1)[1]) > 0
        elif line.startswith("threshold=") and not categorical:
            values = (_float32_floor(float(v)) for v in line[len("threshold="):].split())
            line = "threshold=" + " ".join(repr(v) for v in values)
        out.append(line)
    return "\n".join(out)


class _Progress:
    """LightGBM callback driving a tqdm bar, showing the latest validation metrics."""

    order = 5  # before early stopping (30), which may end training by raising

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = tqdm(total=total, desc="training", unit="tree", disable=not enabled,
                        leave=False)

    def __call__(self, env: lgb.callback.CallbackEnv) -> None:
        self.bar.update(1)
        if env.evaluation_result_list:
            self.bar.set_postfix({f"{name}": f"{value:.4f}"
                                  for _, name, value, *_ in env.evaluation_result_list})


def train_lgbm(
    train: pd.DataFrame,
    feature_names: Sequence[str],
    params: LGBMParams | None = None,
    *,
    valid: pd.DataFrame | None = None,
    label_col: str = "is_fraud",
    progress: bool = True,
) -> TrainedModel:
    """Train on ``train``; with a non-empty ``valid`` stop early on its average precision.

    Features are cast to float32 before training so LightGBM and the exported
    ONNX model see identical inputs.

    >>> from training.toydata import make_toy_transactions, TOY_FEATURES
    >>> df = make_toy_transactions(n_cards=100, n_days=6)
    >>> p = LGBMParams(num_boost_round=20, early_stopping_rounds=5)
    >>> m1 = train_lgbm(df[df.ts < df.ts.quantile(0.7)], TOY_FEATURES, p,
    ...                 valid=df[df.ts >= df.ts.quantile(0.7)], progress=False)
    >>> m2 = train_lgbm(df[df.ts < df.ts.quantile(0.7)], TOY_FEATURES, p,
    ...                 valid=df[df.ts >= df.ts.quantile(0.7)], progress=False)
    >>> m1.booster.model_to_string() == m2.booster.model_to_string()
    True
    """
    params = params or LGBMParams()
    names = list(feature_names)
    y = train[label_col].to_numpy(dtype=np.int32)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        raise ValueError("training rows must contain both classes")
    lgb_params = params.to_lgb(n_pos, len(y) - n_pos)
    dtrain = lgb.Dataset(as_matrix(train, names), y, feature_name=names, free_raw_data=True)
    history: dict[str, dict[str, list[float]]] = {}
    callbacks: list = [_Progress(params.num_boost_round, progress)]
    valid_sets, valid_names = [], []
    if valid is not None and len(valid) and valid[label_col].nunique() == 2:
        dvalid = lgb.Dataset(as_matrix(valid, names), valid[label_col].to_numpy(dtype=np.int32),
                             reference=dtrain)
        valid_sets, valid_names = [dvalid], ["valid"]
        callbacks += [lgb.early_stopping(params.early_stopping_rounds, first_metric_only=True,
                                         verbose=False),
                      lgb.record_evaluation(history)]
    elif valid is not None:
        log.warning("validation rows missing or one-class: training %d rounds without "
                    "early stopping", params.num_boost_round)
    try:
        booster = lgb.train(lgb_params, dtrain, num_boost_round=params.num_boost_round,
                            valid_sets=valid_sets, valid_names=valid_names, callbacks=callbacks)
    finally:
        callbacks[0].bar.close()
    best = booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration()
    trimmed = lgb.Booster(model_str=snap_thresholds_to_float32(
        booster.model_to_string(num_iteration=best)))
    return TrainedModel(booster=trimmed, feature_names=names, params=params,
                        lgb_params=lgb_params, best_iteration=best,
                        history=dict(history.get("valid", {})))
