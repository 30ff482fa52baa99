"""Faults (issue 11, item 4): SIGKILL twice under a backlog, and 1 -> 2 -> 1 workers.

Real broker, real worker processes scoring with a champion and a shadow challenger; the whole
traffic (transactions and labels) is on the broker before the first worker starts. The shared
checker (:func:`tests.support.faults.check`) then demands one prediction per transaction and
variant, streamed features equal to the batch recomputation, nothing valid dead-lettered or
late, and no process left behind.
"""

from __future__ import annotations

import time

import pytest

from tests.support import faults, models

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

#: About 9,700 transactions over 12 days (terminal features' 7-day delayed windows fill).
CUSTOMERS, DAYS = 400, 12


@pytest.fixture(scope="module")
def exported():
    return faults.scoring_models()


def _registered(workers, tmp_path_factory) -> None:
    faults.install_registry(tmp_path_factory, workers.tmp / "data")


def _env(**extra: str) -> dict[str, str]:
    return {**faults.SCORING, "FRAUDSTREAM_MODEL_NAME": models.MODEL_NAME, **extra}


def test_sigkill_twice_under_a_backlog(workers, kafka_bootstrap, redis_url, exported,
                                      tmp_path_factory):
    data = faults.traffic(customers=CUSTOMERS, days=DAYS)
    # Feast on, so that each killed worker has children (the push child, the resource tracker)
    url = redis_url.rsplit("/", 1)[0] + "/9"
    import redis as redis_client

    redis_client.Redis.from_url(url).flushdb()
    env = _env(REDIS_URL=url, FRAUDSTREAM_FEAST_ENABLED="true",
               FRAUDSTREAM_FEAST_OFFLINE="false")
    _registered(workers, tmp_path_factory)
    faults.preload(workers, kafka_bootstrap, data, **env)
    target = len(data) * len(exported)
    began = time.monotonic()
    killed = []
    for fraction in (0.30, 0.66):
        worker = workers.start(**env)
        faults.wait_outputs(kafka_bootstrap, workers.topic("predictions"),
                            int(fraction * target), key=faults.prediction_key)
        killed.append(faults.kill(worker))
    workers.start(**env)
    outcome = faults.check(kafka_bootstrap, workers, data, models=exported)
    assert all(killed), f"each killed worker had children (Feast): {killed}"
    print(f"sigkill x2: {outcome.summary()} in {time.monotonic() - began:.0f} s")


def test_one_then_two_then_one_worker(workers, kafka_bootstrap, exported, tmp_path_factory):
    data = faults.traffic(customers=CUSTOMERS, days=DAYS)
    env = _env()
    _registered(workers, tmp_path_factory)
    faults.preload(workers, kafka_bootstrap, data, **env)
    target = len(data) * len(exported)
    began = time.monotonic()
    first = workers.start(**env)
    faults.wait_outputs(kafka_bootstrap, workers.topic("predictions"), int(0.2 * target),
                        key=faults.prediction_key)
    second = workers.start(**env)            # 1 -> 2 while the first consumes
    faults.wait_outputs(kafka_bootstrap, workers.topic("predictions"), int(0.6 * target),
                        key=faults.prediction_key)
    assert second.proc.poll() is None and first.proc.poll() is None
    faults.kill(first)                        # 2 -> 1
    outcome = faults.check(kafka_bootstrap, workers, data, models=exported)
    print(f"1->2->1: {outcome.summary()} in {time.monotonic() - began:.0f} s")
