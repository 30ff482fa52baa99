"""Model training: metrics, time-based protocol, LightGBM, ONNX export, the pipeline, retraining.

Modules (import what you need; nothing is imported here, so ``import training`` is cheap):

- :mod:`training.metrics` — AUC ROC, AP, card precision@k (handbook), thresholds.
- :mod:`training.protocol` — handbook train / delay / test splits, prequential folds.
- :mod:`training.lgbm` — seeded LightGBM classifier with early stopping.
- :mod:`training.onnx_export` — ONNX export and the parity check.
- :mod:`training.refstats` — training reference statistics stored with a model.
- :mod:`training.report` — Markdown + PNG evaluation report.
- :mod:`training.toydata` — a tiny seeded frame for tests and demos.
- :mod:`training.dataset` — training sets (simulator or parquet), cached feature frames.
- :mod:`training.feature_log` — training sets from the pipeline's own feature log (Kafka).
- :mod:`training.pipeline` — train → evaluate → export → register → promote (CLI, retrain).
- :mod:`training.retrain` — one ``model-retrain`` event in, a challenger (maybe champion) out.

What serving needs lives one layer down, in :mod:`models` (registry, gates' enforcement,
``model-updates`` events, ONNX loading); the hyperparameters and gates are settings
(:class:`config.training.LGBMParams`, :class:`config.gates.PromotionGates`).
"""
