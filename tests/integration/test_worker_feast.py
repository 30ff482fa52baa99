"""A real worker materialises its feature tables into Feast: the online store equals them."""

from __future__ import annotations

import json
import time

import pytest
import redis as redis_client

from app import feast_env
from features.spec import DEFAULT_SPEC
from infra.kafka_io import consume, produce
from simulator import simulate
from simulator.serialize import keys, transaction_values

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_online_store_equals_the_latest_table_values(workers, kafka_bootstrap, redis_url,
                                                     tmp_path):
    db = redis_client.Redis.from_url(redis_url)
    url = redis_url.rsplit("/", 1)[0] + "/7"  # a database of its own
    redis_client.Redis.from_url(url).flushdb()
    worker = workers.start(REDIS_URL=url, FRAUDSTREAM_FEAST_ENABLED="true",
                           FRAUDSTREAM_FEAST_MAX_INTERVAL_S="0.5",
                           FRAUDSTREAM_FEAST_OFFLINE="false")
    sim = simulate("realistic", seed=5, n_customers=200, n_terminals=300, n_days=3)
    txns = sim.transactions()
    produce(kafka_bootstrap, workers.topic("transactions"),
            list(zip(keys(txns), transaction_values(txns), strict=True)))
    out = consume(kafka_bootstrap, workers.topic("enriched"), expected=txns.num_rows,
                  timeout=300)
    assert len(out) == txns.num_rows

    # The table value of a key is its state after its newest transaction (greatest event
    # time; the simulator's txn ids are chronological, so they break ties). A terminal's
    # transactions come from every card partition, so the arrival order of the enriched
    # records is not it.
    newest: dict[str, dict[str, tuple]] = {"card": {}, "terminal": {}}
    for rec in out:
        value = json.loads(rec.value)
        rank = (value["ts"], value["txn_id"])
        for entity in ("card", "terminal"):
            key = value[f"{entity}_id"]
            if key not in newest[entity] or rank > newest[entity][key][0]:
                newest[entity][key] = (rank, value["features"])
    latest = {e: {k: feats for k, (_, feats) in rows.items()} for e, rows in newest.items()}

    store = feast_env.load_store(url, workers.tmp / "data")
    deadline = time.monotonic() + 120
    while True:
        mismatches = []
        for entity in ("card", "terminal"):
            ids = sorted(latest[entity])
            names = DEFAULT_SPEC.names_for(entity)
            online = store.get_online_features(
                features=[f"{feast_env.view_name(entity)}:{n}" for n in names],
                entity_rows=[{feast_env.join_key(entity): i} for i in ids],
            ).to_dict()
            for row, key in enumerate(ids):
                for name in names:
                    if online[name][row] != latest[entity][key][name]:
                        mismatches.append((entity, key, name, online[name][row],
                                           latest[entity][key][name]))
        if not mismatches or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert not mismatches, f"{len(mismatches)} differ, e.g. {mismatches[:3]}"
    assert "fraudstream_feast_rows_pushed_total" in worker.metrics()
    db.close()
