"""Export a trained LightGBM model to ONNX, check parity, and load it safely for scoring.

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
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import lightgbm as lgb
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from onnxmltools import convert_lightgbm
from onnxmltools.convert.common.data_types import FloatTensorType

from training.lgbm import TrainedModel, as_matrix

INPUT_NAME = "features"
OUTPUT_NAME = "probabilities"
META_PREFIX = "fraudstream."
PARITY_TOLERANCE = 1e-5


class ParityError(RuntimeError):
    """ONNX and LightGBM scores differ by more than the tolerance: the model must not ship."""


class ModelMismatchError(ValueError):
    """The ONNX model is not the one the caller expects (features, spec version or bytes)."""


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of bytes.

    >>> sha256_hex(b"")[:12]
    'e3b0c44298fc'
    """
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ParityReport:
    """Result of comparing ONNX Runtime and LightGBM scores on the same rows."""

    n_rows: int
    max_abs_diff: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.n_rows > 0 and self.max_abs_diff <= self.tolerance


@dataclass(frozen=True)
class ExportedModel:
    """Serialized ONNX model that passed the parity check, with its identity."""

    onnx_bytes: bytes
    feature_names: tuple[str, ...]
    spec_version: str
    model_name: str
    model_version: str
    parity: ParityReport
    metadata: dict[str, str] = field(repr=False)

    @property
    def sha256(self) -> str:
        return sha256_hex(self.onnx_bytes)

    def save(self, path: str | Path) -> Path:
        """Write the ONNX bytes to ``path`` and return it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.onnx_bytes)
        return path


def make_session(model: bytes, intra_op_num_threads: int = 1) -> ort.InferenceSession:
    """ORT CPU session: sequential execution, no spinning, warning-level logging."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_num_threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 2
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


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


def read_metadata(model: bytes | onnx.ModelProto) -> dict[str, str]:
    """The ``fraudstream.`` metadata of a serialized model, prefix stripped."""
    proto = onnx.load_from_string(model) if isinstance(model, bytes) else model
    return {p.key[len(META_PREFIX):]: p.value for p in proto.metadata_props
            if p.key.startswith(META_PREFIX)}


def _feature_diff(actual: list[str], expected: list[str]) -> str:
    missing = [f for f in expected if f not in actual]
    extra = [f for f in actual if f not in expected]
    if missing or extra:
        return f"model lacks {missing}, model has unexpected {extra}"
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        if a != e:
            return (f"same features, different order: position {i} is {a!r} in the model, "
                    f"{e!r} expected")
    return "identical"


class OnnxScorer:
    """A verified ONNX model ready to score float32 ``[n, n_features]`` batches."""

    def __init__(self, session: ort.InferenceSession, metadata: dict[str, str], sha256: str):
        self.session = session
        self.metadata = metadata
        self.sha256 = sha256
        self.feature_names: list[str] = json.loads(metadata["feature_names"])
        self.spec_version = metadata["feature_spec_version"]
        self.model_name = metadata.get("model_name", "")
        self.model_version = metadata.get("model_version", "")

    @property
    def reference_stats(self) -> dict:
        return json.loads(self.metadata.get("reference_stats") or "{}")

    def predict(self, data: np.ndarray | pd.DataFrame) -> np.ndarray:
        """Fraud scores (float32, one per row) from the ``probabilities`` output."""
        matrix = as_matrix(data, self.feature_names)
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: matrix})[0][:, 1]


def load_onnx_model(path_or_bytes: str | Path | bytes, expected_features: list[str],
                    expected_spec_version: str, sha256: str | None = None, *,
                    intra_op_num_threads: int = 1) -> OnnxScorer:
    """Load a model for scoring, refusing any model that is not the expected one.

    Checks, in order: the SHA-256 of the bytes (when ``sha256`` is given), the
    presence of fraudstream metadata, the feature list and order, the feature-spec
    version, then the graph's input and output names and width.

    Raises
    ------
    ModelMismatchError
        Naming what differs.
    """
    if isinstance(path_or_bytes, bytes):
        data, origin = path_or_bytes, "<bytes>"
    else:
        data, origin = Path(path_or_bytes).read_bytes(), str(path_or_bytes)
    digest = sha256_hex(data)
    if sha256 is not None and digest != sha256.lower():
        raise ModelMismatchError(f"{origin}: sha256 mismatch: expected {sha256}, got {digest}")
    meta = read_metadata(data)
    for key in ("feature_names", "feature_spec_version"):
        if key not in meta:
            raise ModelMismatchError(f"{origin}: not a fraudstream model (no {key} metadata)")
    features = json.loads(meta["feature_names"])
    if features != list(expected_features):
        raise ModelMismatchError(
            f"{origin}: feature list differs: {_feature_diff(features, list(expected_features))}")
    if meta["feature_spec_version"] != str(expected_spec_version):
        raise ModelMismatchError(
            f"{origin}: feature spec version differs: model built for "
            f"{meta['feature_spec_version']!r}, expected {expected_spec_version!r}")
    session = make_session(data, intra_op_num_threads)
    inputs = {i.name: i.shape for i in session.get_inputs()}
    outputs = [o.name for o in session.get_outputs()]
    if inputs.get(INPUT_NAME, [None, None])[1] != len(features) or OUTPUT_NAME not in outputs:
        raise ModelMismatchError(f"{origin}: graph signature {inputs} -> {outputs} is not "
                                 f"{INPUT_NAME}[N, {len(features)}] -> {OUTPUT_NAME}")
    return OnnxScorer(session, meta, digest)
