"""What the registry stores: an exported ONNX model, its identity and its parity report.

The trainer (:func:`training.onnx_export.export_model`) makes an :class:`ExportedModel`; the
registry (:meth:`models.registry.ModelRegistry.register_candidate`) takes one and refuses it
unless its parity check passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from models.serving import sha256_hex


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
