"""Late and out-of-order transactions in a real worker: the stated policy, end to end."""

from __future__ import annotations

import json

import pytest

from infra.kafka_io import consume, produce
from tests.bad_inputs import VALID, dumps, valid

pytestmark = [pytest.mark.integration]
T0 = VALID["ts"]


def test_late_goes_to_the_late_topic_and_out_of_order_within_lateness_is_applied(
        workers, kafka_bootstrap):
    worker = workers.start(FRAUDSTREAM_CARD_ALLOWED_LATENESS_S="60")
    records = [
        dumps(valid(txn_id="a", ts=T0 + 600_000, amount=10.0)),
        dumps(valid(txn_id="b", ts=T0 + 570_000, amount=20.0)),  # 30 s behind: applied
        dumps(valid(txn_id="c", ts=T0, amount=40.0)),             # 10 min behind: late
        dumps(valid(txn_id="d", ts=T0 + 660_000, amount=80.0)),
    ]
    produce(kafka_bootstrap, workers.topic("transactions"), [(b"card-1", r) for r in records])

    enriched = consume(kafka_bootstrap, workers.topic("enriched"), expected=3, settle=2.0)
    features = {json.loads(r.value)["txn_id"]: json.loads(r.value)["features"] for r in enriched}
    assert set(features) == {"a", "b", "d"}
    # b is placed before a in event time: it sees only itself ...
    assert features["b"]["card_tx_count_10m"] == 1.0
    # ... and d sees a and b (both within 10 min of it) but not the late c.
    assert features["d"]["card_tx_count_10m"] == 3.0
    assert features["d"]["card_amount_sum_10m"] == 110.0

    late = consume(kafka_bootstrap, workers.topic("late"), expected=1, settle=1.0)
    assert len(late) == 1
    assert late[0].value == records[2]  # the original bytes
    assert late[0].headers["reason"] == b"late"
    assert late[0].headers["stage"] == b"card"
    assert late[0].headers["watermark"] == str(T0 + 600_000).encode()
    assert 'fraudstream_transactions_late_total{stage="card"} 1.0' in worker.metrics()
