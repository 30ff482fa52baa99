"""Load and run a registered ONNX fraud model: what a scoring worker needs, and nothing more.

This module imports ONNX Runtime and ``onnx`` (for the metadata), never LightGBM or
onnxmltools: the scoring worker loads it, the trainer (:mod:`training.onnx_export`) builds on it.

The graph has one input ``features`` (float32 ``[N, n_features]``, ``N`` dynamic, features in
the order stored in the metadata) and the outputs ``label`` and ``probabilities``; scoring
always selects ``probabilities`` by name and takes column 1. Metadata (``metadata_props``, keys
prefixed ``fraudstream.``) holds ``feature_names`` (JSON list, ordered),
``feature_spec_version``, ``model_name``, ``model_version`` and ``reference_stats``, among
others. :func:`load_onnx_model` refuses any model that is not the one the caller expects.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd

INPUT_NAME = "features"
OUTPUT_NAME = "probabilities"
META_PREFIX = "fraudstream."


class ModelMismatchError(ValueError):
    """The ONNX model is not the one the caller expects (features, spec version or bytes)."""


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of bytes.

    >>> sha256_hex(b"")[:12]
    'e3b0c44298fc'
    """
    return hashlib.sha256(data).hexdigest()


def as_matrix(data: pd.DataFrame | np.ndarray, feature_names: Sequence[str]) -> np.ndarray:
    """float32 C-ordered matrix of the features in the given order (what ONNX receives).

    >>> as_matrix(pd.DataFrame({"b": [1, 2], "a": [3, 4]}), ["a", "b"]).tolist()
    [[3.0, 1.0], [4.0, 2.0]]
    """
    if isinstance(data, pd.DataFrame):
        missing = [c for c in feature_names if c not in data.columns]
        if missing:
            raise KeyError(f"feature columns missing from frame: {missing}")
        data = data.loc[:, list(feature_names)].to_numpy(dtype=np.float32)
    matrix = np.ascontiguousarray(data, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[1] != len(feature_names):
        raise ValueError(f"expected [n, {len(feature_names)}] features, got {matrix.shape}")
    return matrix



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
