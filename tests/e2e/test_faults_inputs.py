"""Fault (issue 11, item 4): a 10 MB record and a 10,000-deep JSON on every input topic.

``transactions``, ``transaction-labels``, ``model-updates`` and ``model-retrain`` each get the
two poisons among valid records (tests/integration/test_poison.py has the single-topic cases
on ``transactions``; this is the whole worker at once, with the fault criterion). Every poison
is dead-lettered - the 10 MB ones truncated, with their size and SHA-256 in headers - and
every valid neighbour is processed: each transaction scored by both variants with features
equal to the batch, each label applied (the features say so), each valid retrain event handled
(recorded under its key), and the model update after the poisons loads the models (without it
nothing would be scored: the worker starts with no model and holds).
"""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from config.settings import settings_for_env
from contracts.records import RetrainEvent, encode_retrain
from infra.worker_process import create_topics
from models.registry import open_registry
from tests.support import faults, models
from tests.support.outputs import produce_large

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(480)]

ENV = {**faults.SCORING, "FRAUDSTREAM_MODEL_NAME": models.MODEL_NAME,
       "FRAUDSTREAM_RETRAIN_MODE": "agent", "FRAUDSTREAM_RETRAIN_MAX_WAIT_S": "5",
       "FRAUDSTREAM_RETRAIN_POLL_S": "1",
       # the payload limit above the deep records' 20 kB: the depth is what refuses them
       "FRAUDSTREAM_MAX_PAYLOAD_BYTES": "1048576"}


def _interleave(valid: list[tuple[bytes, bytes]], key: bytes, poison: list[bytes]):
    """The valid records with the poisons in the middle (same key: same partition, one
    batch)."""
    middle = len(valid) // 2
    return valid[:middle] + [(key, p) for p in poison] + valid[middle:]


def test_poison_on_every_input_topic(workers, kafka_bootstrap, tmp_path_factory):
    exported = faults.scoring_models()
    data = faults.traffic(customers=120, days=10)
    topics = {role: workers.topic(role) for role in
              ("transactions", "labels", "model_updates", "retrain")}
    create_topics(kafka_bootstrap, workers.env(**ENV))
    began = time.monotonic()

    # transactions and labels: a 10 MB and a deep record of their shape in the middle
    card = data.tx[len(data.tx) // 2][0]
    txn = json.loads(data.tx[0][1]) | {"txn_id": "poison-txn"}
    label = json.loads(data.labels[0][1]) | {"txn_id": "poison-label"}
    poison = {"transactions": [faults.padded(txn), faults.deep_object(txn)],
              "labels": [faults.padded(label), faults.deep_object(label)]}
    produce_large(kafka_bootstrap, topics["labels"],
                  _interleave(data.labels, card, poison["labels"]))
    produce_large(kafka_bootstrap, topics["transactions"],
                  _interleave(data.tx, card, poison["transactions"]))

    # model-retrain: valid events about another model (handled at once: recorded under their
    # key as failed) around the poisons
    keys = [f"fault-{workers.unique}-{i}" for i in range(2)]
    retrain = [encode_retrain(RetrainEvent(model_name="another-model", idempotency_key=k,
                                           signal="error", event_ts=faults.T_START))
               for k in keys]
    shape = json.loads(retrain[0][1]) | {"idempotency_key": "poison"}
    poison["retrain"] = [faults.padded(shape), faults.deep_object(shape)]
    produce_large(kafka_bootstrap, topics["retrain"],
                  [retrain[0], *[(retrain[0][0], p) for p in poison["retrain"]], retrain[1]])

    worker = workers.start(**ENV)  # no model yet: it holds every transaction

    # model-updates: the registration of the challenger, the poisons, the champion's promotion
    first, second = faults.install_registry(tmp_path_factory, workers.tmp / "data")
    name = models.MODEL_NAME.encode()
    poison["model_updates"] = [faults.padded(second), faults.deep_object(second), faults.DEEP]
    produce_large(kafka_bootstrap, topics["model_updates"],
                  [(name, json.dumps(first).encode()),
                   *[(name, p) for p in poison["model_updates"]],
                   (name, json.dumps(second).encode())])
    everything = [p for values in poison.values() for p in values]

    def dead_letters_and_neighbours(outcome: faults.Outcome) -> None:
        by_topic: dict[bytes, list] = {}
        for rec in outcome.dead:
            by_topic.setdefault(rec.headers.get("source_topic"), []).append(rec)
        wrong = []
        for role, values in poison.items():
            dead = by_topic.get(topics[role].encode(), [])
            for value in values:
                if len(value) == faults.TEN_MB:
                    found = [r for r in dead if r.headers.get("reason") == b"payload_too_large"
                             and r.headers.get("truncated") == b"true"
                             and r.headers.get("original_size") == str(faults.TEN_MB).encode()
                             and r.headers.get("original_sha256")
                             == hashlib.sha256(value).hexdigest().encode()
                             and 0 < len(r.value) < 1_000_000 and value.startswith(r.value)]
                else:
                    found = [r for r in dead
                             if r.value == value and r.headers.get("reason") == b"too_deep"]
                if len(found) != 1:
                    wrong.append(f"{role}: {len(value):,}-byte poison dead-lettered "
                                 f"{len(found)} times")
        assert not wrong, "; ".join(wrong)
        registry = open_registry(settings_for_env(workers.env(**ENV)))
        deadline = time.monotonic() + 120  # one at a time, each in a child process
        while (unhandled := [k for k in keys if registry.handled_retrain(k) is None]) \
                and time.monotonic() < deadline:
            time.sleep(1.0)
        assert not unhandled, f"valid model-retrain neighbours not handled: {unhandled}"
        log = worker.log_text()
        for bad in ("Traceback", "RecursionError", "MessageSizeTooLarge"):
            assert bad not in log, f"{bad} in the worker's log"

    outcome = faults.check(kafka_bootstrap, workers, data, models=exported,
                           expected_dead=len(everything), poison=everything, timeout=240,
                           extra=dead_letters_and_neighbours)
    print(f"poison on 4 topics: {outcome.summary()} in {time.monotonic() - began:.0f} s")
