"""Settings of training: the MLflow registry, the handbook windows, the alert budget, LightGBM.

:class:`LGBMParams` is both the ``FRAUDSTREAM_LGBM_*`` settings and what
:func:`training.lgbm.train_lgbm` takes, so each hyperparameter's default exists once: the
one ``fraudstream train`` and the retrain worker use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from config.section import Section


class RegistrySettings(Section):
    """The MLflow tracking/registry URI, its artifact root and the registered model's name."""

    env_prefix = "FRAUDSTREAM_MLFLOW_"

    tracking_uri: str | None = Field(
        default=None, validation_alias="MLFLOW_TRACKING_URI",
        description="MLflow tracking/registry URI. Unset: sqlite in the data folder.",
    )
    model_name: str = Field(
        default="fraud-lgbm", min_length=1, validation_alias="FRAUDSTREAM_MODEL_NAME",
        description="Registered model name in MLflow (aliases champion and challenger).",
    )
    artifact_root: Path | None = Field(
        default=None, description="Where MLflow stores run artifacts and ONNX models. Unset: "
        "<data_dir>/mlartifacts.",
    )


class TrainingSettings(Section):
    """The handbook protocol's windows and the alert budget that sets the threshold."""

    env_prefix = "FRAUDSTREAM_TRAIN_"

    window_days: int = Field(
        default=7, ge=1, le=365,
        description="Days of transactions a model is trained on (handbook: 7).",
    )
    delay_days: int = Field(
        default=7, ge=0, le=90, description="Days between the training window and the test window: "
        "labels of the last training days are not known yet (handbook: 7).",
    )
    test_days: int = Field(default=7, ge=1, le=90, description="Days of the test window.")
    alert_budget_per_day: float = Field(
        default=100.0, gt=0, validation_alias="FRAUDSTREAM_ALERT_BUDGET_PER_DAY",
        description="Alerts a day the fraud team can investigate: the decision "
        "threshold is the score that would have raised that many on the days after training.",
    )
    alert_budget_unit: Literal["card", "transaction"] = Field(
        default="card", validation_alias="FRAUDSTREAM_ALERT_BUDGET_UNIT",
        description="What the alert budget counts: cards (a card alerts once a day) or "
        "transactions.",
    )

    def windows(self) -> dict[str, Any]:
        """``handbook_split`` keyword arguments.

        >>> TrainingSettings().windows()
        {'train_days': 7, 'delay_days': 7, 'test_days': 7}
        """
        return {"train_days": self.window_days, "delay_days": self.delay_days,
                "test_days": self.test_days}


class LGBMParams(Section):
    """LightGBM hyperparameters; ``model_dump()`` is what the registry logs.

    Class imbalance: ``none`` by default (ranking metrics need no reweighting),
    ``scale_pos_weight`` (the training negatives / positives ratio unless fixed) or
    ``is_unbalance``. Reweighting makes the scores uncalibrated, so alert thresholds are
    always chosen on scored data (:mod:`training.metrics`), never assumed to be 0.5.

    >>> p = LGBMParams(imbalance="scale_pos_weight")
    >>> p.to_lgb(n_pos=10, n_neg=990)["scale_pos_weight"], p.num_leaves
    (99.0, 7)
    """

    env_prefix = "FRAUDSTREAM_LGBM_"

    num_boost_round: int = Field(
        default=2000, ge=1,
        description="LightGBM: most trees; early stopping on the validation period "
        "picks the number actually used.",
    )
    early_stopping_rounds: int = Field(
        default=100, ge=1, description="LightGBM: stop after this many trees without a better "
        "validation average precision.",
    )
    learning_rate: float = Field(default=0.02, gt=0, le=1, description="LightGBM: learning rate.")
    num_leaves: int = Field(default=7, ge=2, le=4096, description="LightGBM: leaves per tree.")
    max_depth: int = Field(default=-1, ge=-1, description="LightGBM: deepest tree (-1 = no limit).")
    min_child_samples: int = Field(
        default=100, ge=1, description="LightGBM: fewest training rows in a leaf."
    )
    feature_fraction: float = Field(
        default=0.8, gt=0, le=1, description="LightGBM: share of features drawn per tree."
    )
    bagging_fraction: float = Field(
        default=0.8, gt=0, le=1, description="LightGBM: share of rows drawn per tree."
    )
    bagging_freq: int = Field(
        default=1, ge=0,
        description="LightGBM: redraw the bagged rows every this many trees (0 = no "
        "bagging).",
    )
    lambda_l2: float = Field(default=0.0, ge=0, description="LightGBM: L2 regularisation.")
    imbalance: Literal["scale_pos_weight", "is_unbalance", "none"] = Field(
        default="none",
        description="Class imbalance: none (the default: best validation AP, AUC and "
        "CP@100 on the handbook data; ranking metrics need no reweighting), scale_pos_weight "
        "(weight frauds by genuine/fraud ratio, or FRAUDSTREAM_LGBM_SCALE_POS_WEIGHT) or "
        "is_unbalance.",
    )
    scale_pos_weight: float | None = Field(
        default=None, gt=0,
        description="Fixed fraud weight. Unset: genuine/fraud count of the training "
        "rows.",
    )
    seed: int = Field(default=42, description="Seed of every random source of training.")
    num_threads: int = Field(default=1, ge=1, le=256, description="LightGBM threads (results are "
                             "reproducible for a fixed value).")

    def to_lgb(self, n_pos: int, n_neg: int) -> dict[str, object]:
        """LightGBM parameter dict for a training set with these class counts."""
        params: dict[str, object] = {
            "objective": "binary",
            "metric": ["average_precision", "auc"],
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "max_depth": self.max_depth,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "lambda_l2": self.lambda_l2,
            "seed": self.seed,
            "num_threads": self.num_threads,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }
        if self.imbalance == "scale_pos_weight":
            params["scale_pos_weight"] = (self.scale_pos_weight if self.scale_pos_weight
                                          else n_neg / max(n_pos, 1))
        elif self.imbalance == "is_unbalance":
            params["is_unbalance"] = True
        return params
