"""Export a trained LightGBM model to ONNX and check parity (loading it: :mod:`models.serving`).

The ONNX graph has one input ``features`` (float32 ``[N, n_features]``, ``N``
dynamic, features in the order stored in the metadata) and the outputs
``label`` and ``probabilities``; scoring always selects ``probabilities`` by
name and takes column 1. Every output's batch dimension is declared dynamic, so
ONNX Runtime logs no shape warnings on batched calls.

Metadata (``metadata_props``, keys prefixed ``fraudstream.``): ``feature_names``
(JSON list, ordered), ``feature_spec_version``, ``model_name``,
``model_version``, ``created_at``, ``best_iteration``, ``lightgbm_version``,
and ``reference_stats`` (JSON, :mod:`training.refstats`). The parity result is
not in the metadata (parity is checked on the final bytes); the registry keeps it.
The names of the graph's input, output and metadata prefix are :mod:`models.serving`'s, so
that what is exported here is what the scoring worker loads.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import lightgbm as lgb
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from onnxmltools import convert_lightgbm
from onnxmltools.convert.common.data_types import FloatTensorType

from models.artifact import ExportedModel, ParityReport
from models.serving import INPUT_NAME, META_PREFIX, OUTPUT_NAME, make_session, sha256_hex
from training.lgbm import TrainedModel, as_matrix

PARITY_TOLERANCE = 1e-5


class ParityError(RuntimeError):
    """ONNX and LightGBM scores differ by more than the tolerance: the model must not ship."""


def _dynamic_batch(model: onnx.ModelProto) -> None:
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()
            dims[0].dim_param = "N"


def to_onnx(booster: lgb.Booster, feature_names: list[str], metadata: dict[str, str],
            ) -> onnx.ModelProto:
    """Convert (``zipmap=False``), declare the batch dimension dynamic, attach metadata."""
    model = convert_lightgbm(booster, name="fraudstream-lgbm", zipmap=False,
                             initial_types=[(INPUT_NAME,
                                             FloatTensorType([None, len(feature_names)]))])
    _dynamic_batch(model)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = META_PREFIX + key, value
    model.doc_string = "fraudstream LightGBM fraud scorer; use output 'probabilities'[:, 1]"
    onnx.checker.check_model(model)
    return model


def _onnx_scores(session: ort.InferenceSession, matrix: np.ndarray,
                 batch: int = 65_536) -> np.ndarray:
    parts = [session.run([OUTPUT_NAME], {INPUT_NAME: matrix[i:i + batch]})[0][:, 1]
             for i in range(0, len(matrix), batch)]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.float32)


def check_parity(onnx_bytes: bytes, booster: lgb.Booster, matrix: np.ndarray,
                 tolerance: float = PARITY_TOLERANCE) -> ParityReport:
    """Score every row with both engines; raise :class:`ParityError` past ``tolerance``."""
    p_onnx = _onnx_scores(make_session(onnx_bytes), matrix).astype(np.float64)
    p_lgb = booster.predict(matrix)
    diff = float(np.max(np.abs(p_onnx - p_lgb))) if len(matrix) else float("inf")
    report = ParityReport(n_rows=len(matrix), max_abs_diff=diff, tolerance=tolerance)
    if not report.passed:
        worst = int(np.argmax(np.abs(p_onnx - p_lgb))) if len(matrix) else -1
        raise ParityError(f"ONNX/LightGBM parity failed on {report.n_rows} rows: max |diff| "
                          f"{diff:.3g} > {tolerance:g} (worst row {worst}); not exported")
    return report


def export_model(model: TrainedModel, parity_frame: pd.DataFrame, *, spec_version: str,
                 model_name: str = "fraud-lgbm", model_version: str | None = None,
                 reference: dict | None = None, tolerance: float = PARITY_TOLERANCE,
                 ) -> ExportedModel:
    """Convert ``model`` and verify parity on every row of ``parity_frame``.

    ``model_version`` defaults to ``<UTC time>-<first 8 hex of the model's SHA-256>``
    (the registry's own version number is assigned later and kept in MLflow).

    Raises
    ------
    ParityError
        If any row's |p_onnx - p_lightgbm| exceeds ``tolerance``.
    """
    now = datetime.now(UTC)
    model_str = model.booster.model_to_string()
    version = model_version or (now.strftime("%Y%m%dT%H%M%SZ") + "-"
                                + sha256_hex(model_str.encode())[:8])
    meta = {
        "feature_names": json.dumps(model.feature_names),
        "feature_spec_version": str(spec_version),
        "model_name": model_name,
        "model_version": version,
        "created_at": now.isoformat(timespec="seconds"),
        "best_iteration": str(model.best_iteration),
        "lightgbm_version": lgb.__version__,
        "reference_stats": json.dumps(reference or {}, allow_nan=False),
    }
    matrix = as_matrix(parity_frame, model.feature_names)
    onnx_bytes = to_onnx(model.booster, model.feature_names, meta).SerializeToString()
    report = check_parity(onnx_bytes, model.booster, matrix, tolerance)
    return ExportedModel(onnx_bytes=onnx_bytes, feature_names=tuple(model.feature_names),
                         spec_version=str(spec_version), model_name=model_name,
                         model_version=version, parity=report, metadata=meta)


