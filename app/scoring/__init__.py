"""Scoring: pure logic of the scoring agent and of ``POST /score`` (no Kafka, no Faust).

* :mod:`app.scoring.split` — which variant (champion / challenger) scores a card;
* :mod:`app.scoring.records` — the ``ml-predictions`` record and the decision rule;
* :mod:`app.scoring.vectors` — enriched records to a feature matrix, with the checks;
* :mod:`app.scoring.models` — models loaded from MLflow by alias, verified, warmed up and
  swapped between batches (a bad model is refused; the current one keeps serving);
* :mod:`app.scoring.scorer` — a micro-batch in, one prediction per transaction per variant out.
"""
