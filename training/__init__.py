"""Model training building blocks: metrics, time-based protocol, LightGBM, ONNX export, registry.

Modules (import what you need; nothing is imported here, so ``import training`` is cheap):

- :mod:`training.metrics` — AUC ROC, AP, card precision@k (handbook), thresholds.
- :mod:`training.protocol` — handbook train / delay / test splits, prequential folds.
- :mod:`training.lgbm` — seeded LightGBM classifier with early stopping.
- :mod:`training.onnx_export` — ONNX export, parity check, verified loader.
- :mod:`training.refstats` — training reference statistics stored with a model.
- :mod:`config.gates` — promotion gates.
- :mod:`training.registry` — MLflow 3 registry (champion / challenger / rollback).
- :mod:`training.report` — Markdown + PNG evaluation report.
- :mod:`training.toydata` — a tiny seeded frame for tests and demos.
- :mod:`training.dataset` — training sets (simulator or parquet), cached feature frames.
- :mod:`training.pipeline` — train → evaluate → export → register → promote (CLI, retrain).
- :mod:`training.events` — publish ``model-updates`` events to Kafka.
"""
