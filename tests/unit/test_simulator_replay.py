"""Reading recorded transactions for replay: mapping, timestamps, order, ids, errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from simulator import simulate
from simulator.replay import MappingError, load_mapping, read_recorded

HANDBOOK_CSV = """\
TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_TIME_SECONDS,TX_FRAUD
0,2018-04-01 00:00:31,596,3156,57.16,31,0
1,2018-04-01 00:02:10,4961,3412,81.51,130,0
3,2018-04-01 00:09:29,4128,8737,15.00,569,1
2,2018-04-01 00:07:56,2,1365,146.00,476,0
4,2018-04-01 00:09:29,927,9906,50.99,569,0
"""

MAP = {"TRANSACTION_ID": "txn_id", "TX_DATETIME": "ts", "CUSTOMER_ID": "card_id",
       "TERMINAL_ID": "terminal_id", "TX_AMOUNT": "amount", "TX_FRAUD": "is_fraud"}


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / "handbook.csv"
    path.write_text(HANDBOOK_CSV)
    return path


def test_handbook_csv_with_mapping_dict(csv_file):
    t = read_recorded(csv_file, MAP)
    assert t.column("txn_id").to_pylist() == ["0", "1", "2", "3", "4"]  # sorted by ts
    assert t.column("ts").to_pylist()[:2] == [1522540831000, 1522540930000]
    assert t.column("card_id").to_pylist()[0] == "596"
    assert t.column("amount").to_pylist()[2] == 146.0
    assert t.column("currency").to_pylist() == ["EUR"] * 5
    assert t.column("is_fraud").to_pylist() == [0, 0, 0, 1, 0]
    assert t.column("lat").null_count == 5 and "scenario" not in t.column_names


def test_equal_times_keep_file_order(csv_file):
    t = read_recorded(csv_file, MAP)
    # txn 3 and 4 share 00:09:29; 3 comes first in the file
    assert t.column("txn_id").to_pylist()[3:] == ["3", "4"]


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_mapping_file(csv_file, tmp_path, suffix):
    path = tmp_path / f"map{suffix}"
    path.write_text(json.dumps(MAP))  # JSON is valid YAML too
    assert read_recorded(csv_file, path).equals(read_recorded(csv_file, MAP))
    assert read_recorded(csv_file, "handbook").select(["txn_id", "ts"]).equals(
        read_recorded(csv_file, MAP).select(["txn_id", "ts"]))


def test_unknown_source_column_lists_columns_found(csv_file):
    with pytest.raises(MappingError, match="no column TX_WHEN; columns found: TRANSACTION_ID, "
                                            "TX_DATETIME"):
        read_recorded(csv_file, {**MAP, "TX_WHEN": "ts"})


def test_missing_required_column_lists_columns_found(csv_file):
    mapping = {k: v for k, v in MAP.items() if v != "amount"}
    with pytest.raises(MappingError, match=r"missing required amount; columns found: .*TX_AMOUNT"):
        read_recorded(csv_file, mapping)


def test_unknown_destination_is_refused(csv_file):
    with pytest.raises(MappingError, match="unknown destination amount_eur"):
        read_recorded(csv_file, {**MAP, "TX_AMOUNT": "amount_eur"})


def test_bad_mapping_file(tmp_path, csv_file):
    path = tmp_path / "map.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(MappingError, match="expected a mapping"):
        read_recorded(csv_file, path)
    with pytest.raises(MappingError, match="neither a preset"):
        load_mapping(tmp_path / "nope.yaml")


def test_epoch_ms_parquet_round_trip_of_a_simulation(tmp_path):
    sim = simulate("realistic", seed=4, n_customers=80, n_terminals=200, n_days=6)
    original = sim.transactions()
    path = tmp_path / "sim.parquet"
    shuffled = original.to_pandas().sample(frac=1.0, random_state=1)
    shuffled.to_parquet(path)
    back = read_recorded(path)  # contract column names: no mapping needed
    assert back.select(original.column_names).equals(original)


def test_derived_ids_are_stable_and_file_specific(tmp_path):
    frame = pd.DataFrame({"when": [1_522_540_900_000, 1_522_540_800_000, 1_522_540_850_000],
                          "card": ["a", "b", "a"], "term": ["x", "y", "z"],
                          "amt": [1.5, 2.5, 3.5]})
    mapping = {"when": "ts", "card": "card_id", "term": "terminal_id", "amt": "amount"}
    one = tmp_path / "one.csv"
    frame.to_csv(one, index=False)
    first = read_recorded(one, mapping).column("txn_id").to_pylist()
    assert first == read_recorded(one, mapping).column("txn_id").to_pylist()
    digest = first[0].split("-")[0]
    assert len(digest) == 12
    assert first == [f"{digest}-000000001", f"{digest}-000000002", f"{digest}-000000000"]
    two = tmp_path / "two.csv"
    frame.assign(amt=[9.0, 9.0, 9.0]).to_csv(two, index=False)
    assert not set(first) & set(read_recorded(two, mapping).column("txn_id").to_pylist())


def test_timestamp_units_and_errors(tmp_path):
    path = tmp_path / "s.csv"
    pd.DataFrame({"ts": [1_522_540_831], "card_id": ["c"], "terminal_id": ["t"],
                  "amount": [1.0]}).to_csv(path, index=False)
    with pytest.raises(MappingError, match="seconds\\? pass ts_unit='s'"):
        read_recorded(path)
    assert read_recorded(path, ts_unit="s").column("ts").to_pylist() == [1_522_540_831_000]
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"ts": ["yesterday"], "card_id": ["c"], "terminal_id": ["t"],
                  "amount": [1.0]}).to_csv(bad, index=False)
    with pytest.raises(MappingError, match="ts: not datetimes"):
        read_recorded(bad)


def test_overrides_replace_a_mapping_entry(csv_file):
    t = read_recorded(csv_file, "handbook", overrides={"TX_TIME_SECONDS": "amount"})
    assert t.column("amount").to_pylist() == [31.0, 130.0, 476.0, 569.0, 569.0]
    with pytest.raises(MappingError, match="no column NOPE"):
        read_recorded(csv_file, "handbook", overrides={"NOPE": "amount"})


def test_labels_must_be_zero_or_one(csv_file):
    with pytest.raises(MappingError, match="is_fraud .* 0 or 1"):
        read_recorded(csv_file, "handbook", overrides={"TX_TIME_SECONDS": "is_fraud"})
