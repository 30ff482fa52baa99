"""``fraudstream simulate`` and ``fraudstream replay`` writing parquet (no broker needed)."""

from __future__ import annotations

import time

import numpy as np
import pyarrow.parquet as pq
from click.testing import CliRunner

from app.cli.replay import command as replay
from app.cli.simulate import command as simulate_cmd

SMALL = ["--customers", "200", "--terminals", "400", "--days", "40"]


def test_simulate_historical_to_parquet(tmp_path):
    result = CliRunner().invoke(simulate_cmd, [
        "--mode", "historical", "--profile", "handbook", "--seed", "3", "--to", "parquet",
        "--out", str(tmp_path), "--count", "5000", "--run-id", "t1", "--label-delay-days", "2",
        *SMALL])
    assert result.exit_code == 0, result.output
    assert "transactions: 5,000  labels: 5,000" in result.output
    tx = pq.read_table(tmp_path / "transactions.parquet")
    labels = pq.read_table(tmp_path / "labels.parquet")
    assert tx.column("txn_id")[0].as_py() == "t1-0000000000"
    assert tx.column("ts")[0].as_py() >= 1_522_540_800_000  # from --start 2018-04-01
    gap = labels.column("reported_at").to_numpy() - labels.column("ts").to_numpy()
    assert (gap == 2 * 86_400_000).all()


def test_simulate_live_to_parquet_uses_the_pattern(tmp_path):
    before = int(time.time() * 1000)
    result = CliRunner().invoke(simulate_cmd, [
        "--mode", "live", "--pattern", "spike", "--tps", "100", "--duration", "60",
        "--to", "parquet", "--out", str(tmp_path), "--no-labels", *SMALL])
    assert result.exit_code == 0, result.output
    ts = pq.read_table(tmp_path / "transactions.parquet").column("ts").to_numpy()
    assert not (tmp_path / "labels.parquet").exists()
    assert ts[0] >= before and (np.diff(ts) >= 0).all()
    per_s = np.bincount(((ts - ts[0]) // 1000).astype(int), minlength=60)[:60]
    assert per_s[29] == 500 and per_s[59] == 500 and np.median(per_s) == 100  # 5x spikes


def test_simulate_refuses_conflicting_options(tmp_path):
    result = CliRunner().invoke(simulate_cmd, ["--count", "5", "--duration", "5"])
    assert result.exit_code == 2 and "not both" in result.output
    result = CliRunner().invoke(simulate_cmd, ["--profile", "handbook", "--drift-at", "2018-05-01"])
    assert result.exit_code == 2 and "realistic" in result.output


def test_replay_csv_with_maps_to_parquet(tmp_path):
    src = tmp_path / "recorded.csv"
    src.write_text("WHEN,CARD,TERM,AMT,FRAUD\n"
                   "2018-04-01 10:00:00,c1,t1,12.50,0\n"
                   "2018-04-01 09:00:00,c2,t2,99.00,1\n")
    out = tmp_path / "out"
    args = [str(src), "--map", "WHEN=ts", "--map", "CARD=card_id", "--map", "TERM=terminal_id",
            "--map", "AMT=amount", "--map", "FRAUD=is_fraud", "--to", "parquet", "--out",
            str(out)]
    result = CliRunner().invoke(replay, args)
    assert result.exit_code == 0, result.output
    tx = pq.read_table(out / "transactions.parquet")
    assert tx.column("card_id").to_pylist() == ["c2", "c1"]
    assert tx.column("txn_id").to_pylist()[0].endswith("-000000001")
    assert pq.read_table(out / "labels.parquet").column("is_fraud").to_pylist() == [1, 0]


def test_replay_unknown_column_is_a_clear_error(tmp_path):
    src = tmp_path / "recorded.csv"
    src.write_text("WHEN,CARD\n2018-04-01 10:00:00,c1\n")
    result = CliRunner().invoke(replay, [str(src), "--map", "WHN=ts", "--to", "parquet"])
    assert result.exit_code == 1
    assert "no column WHN; columns found: WHEN, CARD" in result.output
    result = CliRunner().invoke(replay, [str(src), "--map", "WHEN"])
    assert result.exit_code == 2 and "SRC=DST" in result.output
