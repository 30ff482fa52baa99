"""Fault (issue 11, item 4): a model that loads late, during a rebalance.

A worker holds a backlog with no model in the registry (default ``hold`` mode, default
registry poll: it processes nothing and acknowledges nothing). The registry appears (its
database moved into the data folder in one rename, the models having been registered elsewhere
beforehand) and is announced on ``model-updates``; at once a second worker joins, so the group
rebalances while the first worker loads the models (a load takes seconds). Nothing may be
skipped and nothing dead-lettered ``no_model``: every transaction is scored once per variant,
with features equal to the batch.
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from infra.kafka_io import consume, produce
from tests.support import faults, models

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(420)]

#: Scoring with a shadow challenger, otherwise the defaults (hold mode, the registry poll).
ENV = {"FRAUDSTREAM_SCORING_ENABLED": "true", "FRAUDSTREAM_SCORE_MODE": "shadow",
       "FRAUDSTREAM_MODEL_NAME": models.MODEL_NAME}
STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


def _first(worker, text: str) -> str | None:
    """The log time of the first line of ``worker`` containing ``text``."""
    for line in worker.log_text().splitlines():
        if text in line and (match := STAMP.match(line)):
            return match.group(1)
    return None


def _until(what, timeout: float, worker) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, worker.log_text()[-3000:]
        time.sleep(0.02)


@pytest.mark.parametrize("poll", ["default", "off"])
def test_model_loads_late_during_a_rebalance(workers, kafka_bootstrap, tmp_path_factory, poll):
    """``poll``: the registry poll at its default, or off (``0``: model-updates events, the
    load at start and the hold mode's retry are then what loads a model)."""
    env = ENV | ({"FRAUDSTREAM_MODEL_POLL_INTERVAL_S": "0"} if poll == "off" else {})
    exported = faults.scoring_models()
    data = faults.traffic(customers=300, days=10)
    # the models, registered into a registry whose database is not where the workers look
    staging = workers.tmp / "staging"
    updates = faults.install_registry(tmp_path_factory, staging)
    faults.preload(workers, kafka_bootstrap, data, **env)
    began = time.monotonic()

    first = workers.start(**env)
    _until(lambda: "NO LOADABLE MODEL" in first.log_text(), 30, first)
    time.sleep(2.0)  # the first worker has fetched and queued a backlog it may not process
    assert consume(kafka_bootstrap, workers.topic("predictions"), expected=1, timeout=1) == []

    announced = time.strftime("%H:%M:%S")
    os.rename(staging / "mlflow.db", workers.tmp / "data" / "mlflow.db")  # the models appear
    produce(kafka_bootstrap, workers.topic("model_updates"),
            [(models.MODEL_NAME.encode(), json.dumps(u).encode()) for u in updates])
    second = workers.start(wait=False, **env)     # ... and the group rebalances
    second.wait_ready(timeout=120)

    def loaded_during_the_rebalance(outcome: faults.Outcome) -> None:
        for worker in (first, second):
            assert "Traceback" not in worker.log_text()
        print(f"models announced {announced}, rebalance started "
              f"{_first(first, 'rebalance: released')}, models loaded "
              f"{_first(first, 'champion: v2 loaded')} (first worker) / "
              f"{_first(second, 'champion: v2 loaded')} (second), second worker assigned "
              f"{_first(second, 'pipeline: partitions')}")

    outcome = faults.check(kafka_bootstrap, workers, data, models=exported, timeout=240,
                           extra=loaded_during_the_rebalance)
    print(f"late model in a rebalance: {outcome.summary()} in {time.monotonic() - began:.0f} s")
