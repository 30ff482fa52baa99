"""Drift detection, pure logic (no Kafka or Faust import): the agents in
:mod:`app.agents.drift` and the ``fraudstream drift`` CLI call these modules.

* :mod:`app.drift.detector`: one River ADWIN per signal, with evidence and a serialisable state;
* :mod:`app.drift.monitor`: every signal of one model, the cooldown, the ``model-retrain`` record;
* :mod:`app.drift.join`: the per-card label/prediction join (the error stream) and txn_id dedup;
* :mod:`app.drift.report`: the batch report (PSI and KS per feature against the training
  reference stored with the model).
"""
