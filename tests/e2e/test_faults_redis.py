"""Fault (issue 11, item 4): Redis restarted empty under a running worker.

A worker with Feast materialisation processes a backlog; the online store (Feast on Redis)
equals the latest table value of every card and terminal. Then Redis is stopped and started
again on the same port, empty. With no new transaction, the worker must re-seed the online
store from its state until it equals the tables again. The stream itself meets the fault
criterion (scoring off: one enriched record per transaction, features equal to the batch).
"""

from __future__ import annotations

import json
import time

import pytest

from app import feast_env
from features.spec import DEFAULT_SPEC
from infra.processes import start_redis
from tests.support import faults

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(420)]


def _latest(features: dict[str, dict[str, float]], enriched) -> dict[str, dict[str, dict]]:
    """Each card's and terminal's table value: the features after its newest transaction."""
    newest: dict[str, dict[str, tuple]] = {"card": {}, "terminal": {}}
    for rec in enriched:
        value = json.loads(rec.value)
        rank = (value["ts"], value["txn_id"])
        for entity in ("card", "terminal"):
            key = value[f"{entity}_id"]
            if key not in newest[entity] or rank > newest[entity][key][0]:
                newest[entity][key] = (rank, features[value["txn_id"]])
    return {e: {k: f for k, (_, f) in rows.items()} for e, rows in newest.items()}


def _mismatches(store, latest) -> list[tuple]:
    out = []
    for entity in ("card", "terminal"):
        ids = sorted(latest[entity])
        names = DEFAULT_SPEC.names_for(entity)
        online = store.get_online_features(
            features=[f"{feast_env.view_name(entity)}:{n}" for n in names],
            entity_rows=[{feast_env.join_key(entity): i} for i in ids]).to_dict()
        for row, key in enumerate(ids):
            for name in names:
                if online[name][row] != latest[entity][key][name]:
                    out.append((entity, key, name, online[name][row], latest[entity][key][name]))
    return out


def _until_equal(store, latest, timeout: float) -> list[tuple]:
    deadline = time.monotonic() + timeout
    while (bad := _mismatches(store, latest)) and time.monotonic() < deadline:
        time.sleep(1.0)
    return bad


def test_redis_restarted_empty_is_reseeded(workers, kafka_bootstrap, tmp_path):
    server = start_redis(tmp_path / "redis")
    try:
        url = f"redis://{server.host}:{server.port}/0"
        env = {"REDIS_URL": url, "FRAUDSTREAM_FEAST_ENABLED": "true",
               "FRAUDSTREAM_FEAST_OFFLINE": "false", "FRAUDSTREAM_FEAST_MAX_INTERVAL_S": "0.5"}
        data = faults.traffic(customers=200, days=10)
        faults.preload(workers, kafka_bootstrap, data, **env)
        began = time.monotonic()
        worker = workers.start(**env)
        faults.wait_outputs(kafka_bootstrap, workers.topic("enriched"), len(data))
        outcome = faults.check(kafka_bootstrap, workers, data, orphans=False)
        latest = _latest(outcome.features, outcome.enriched)
        store = feast_env.load_store(url, workers.tmp / "data")
        bad = _until_equal(store, latest, 60)
        assert not bad, f"before the restart: {len(bad)} differ, e.g. {bad[:3]}"

        server.stop()                              # Redis goes away ...
        time.sleep(2.0)
        server = start_redis(tmp_path / "redis", port=server.port)   # ... and comes back empty
        store = feast_env.load_store(url, workers.tmp / "data")
        bad = _until_equal(store, latest, 90)
        assert worker.proc.poll() is None, worker.log_text()[-3000:]
        assert not bad, (f"after Redis restarted empty: {len(bad)} of "
                         f"{sum(len(v) for v in latest.values())} keys' features differ "
                         f"(not re-seeded), e.g. {bad[:3]}")
        faults.assert_no_orphans(workers)
        print(f"redis restart: {outcome.summary()}, re-seeded, in "
              f"{time.monotonic() - began:.0f} s")
    finally:
        server.stop()
