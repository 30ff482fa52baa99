"""JSON values and keys for the topics: exact round trip, contract shape, validator accepts."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pytest

from simulator import simulate
from simulator.output import PAYLOAD_COLUMNS
from simulator.serialize import json_values, keys, label_values, transaction_values


@pytest.fixture(scope="module")
def sim():
    return simulate("realistic", seed=9, n_customers=100, n_terminals=300, n_days=8)


def test_transaction_values_round_trip(sim):
    table = sim.transactions("r1-")
    values = transaction_values(table)
    rows = table.to_pylist()
    assert len(values) == len(rows)
    for raw, row in zip(values, rows, strict=True):
        parsed = json.loads(raw)
        assert list(parsed) == list(PAYLOAD_COLUMNS)  # no is_fraud / scenario in the payload
        assert parsed == {c: row[c] for c in PAYLOAD_COLUMNS}
        assert isinstance(parsed["amount"], float) and isinstance(parsed["ts"], int)
    assert keys(table) == [r["card_id"].encode() for r in rows]


def test_label_values_round_trip(sim):
    labels = sim.labels(delay_days=7)
    for raw, row in zip(label_values(labels), labels.to_pylist(), strict=True):
        assert json.loads(raw) == row


def test_values_pass_the_pipeline_validator(sim):
    validation = pytest.importorskip("contracts.transactions")
    rules = validation.Rules(max_amount=50_000, currencies=frozenset({"EUR"}),
                             max_future_skew_ms=0, max_payload_bytes=4096)
    table = sim.transactions()
    for raw in transaction_values(table)[:2_000]:
        result = validation.validate(raw, rules, now_ms=4e12)
        assert isinstance(result, validation.Transaction), result


def test_escaping_nulls_and_non_finite_numbers():
    t = pa.table({
        "s": ['plain', 'quote " and \\ back', "tab\tnew\nline", None, "ünï"],
        "f": [1.0, float("nan"), math.inf, None, 1e21],
        "i": pa.array([1, None, 3, 4, 5], pa.int64()),
    })
    parsed = [json.loads(v) for v in json_values(t, ["s", "f", "i"])]
    assert [p["s"] for p in parsed] == t.column("s").to_pylist()
    assert [p["f"] for p in parsed] == [1.0, None, None, None, 1e21]
    assert [p["i"] for p in parsed] == [1, None, 3, 4, 5]
    assert json_values(t.slice(0, 0), ["s"]) == []
