"""Models apart from training: what serving needs to find, check, load and run a model.

- :mod:`models.serving` — ONNX Runtime session, the model's metadata, feature-list and spec
  checks, the input matrix (no LightGBM, no onnxmltools).
- :mod:`models.registry` — the MLflow registry: versions, aliases champion / challenger,
  promotion through the gates, rollback, retraining's idempotency keys; one factory,
  :func:`models.registry.open_registry`, from the settings.
- :mod:`models.artifact` — what the registry stores: an exported model and its parity report.
- :mod:`models.events` — publish the registry's ``model-updates`` events to Kafka.

Training (:mod:`training`) builds on this layer; nothing here imports it.
"""
