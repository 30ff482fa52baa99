"""Content checks of the generator: every handbook rule and every extension, row by row."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from simulator import Scenario, make_config, simulate
from simulator.config import DAY_MS
from simulator.fraud import apply_handbook_frauds, window_mask
from simulator.geo import country_of, haversine_km
from simulator.rng import stream
from simulator.transactions import generate_genuine
from simulator.world import build_world

SMALL = {"n_customers": 600, "n_terminals": 1_200, "n_days": 45}
START = 1_522_540_800_000


@pytest.fixture(scope="module")
def handbook():
    return simulate("handbook", seed=11, **SMALL)


@pytest.fixture(scope="module")
def realistic():
    return simulate("realistic", seed=11, drift_start="2018-04-21T12:00:00", **SMALL)


@pytest.fixture(scope="module")
def hb_table(handbook) -> pa.Table:
    return handbook.transactions()


@pytest.fixture(scope="module")
def re_frame(realistic):
    return realistic.to_frame()


def test_same_seed_same_output_other_seed_other_output(hb_table):
    again = simulate("handbook", seed=11, **SMALL).transactions()
    assert again.equals(hb_table)
    other = simulate("handbook", seed=12, **SMALL).transactions()
    assert other.num_rows != hb_table.num_rows or not other.equals(hb_table)


def test_ids_are_chronological_and_stable(hb_table):
    ids = hb_table.column("txn_id").to_pylist()
    assert ids[:3] == ["0000000000", "0000000001", "0000000002"]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    ts = hb_table.column("ts").to_numpy()
    assert (np.diff(ts) >= 0).all()
    assert ts.min() >= START and ts.max() < START + SMALL["n_days"] * DAY_MS


def test_handbook_rows_follow_the_process(handbook, hb_table):
    df = hb_table.to_pandas()
    tod_s = (df.ts - START) % DAY_MS / 1000
    assert ((tod_s > 0) & (tod_s < 86_400) & (tod_s == tod_s.round())).all()
    assert (df.amount >= 0.01).all()
    assert np.allclose(df.amount * 100, (df.amount * 100).round())
    assert (df.currency == "EUR").all()
    for col in ("lat", "lon", "country", "mcc", "channel"):
        assert df[col].isna().all()
    # every transaction's terminal lies strictly within radius 5 of the customer's home
    w = handbook.world
    cust = handbook.txns.customer
    term = handbook.txns.terminal
    dist = np.hypot(w.customers.x[cust] - w.terminals.x[term],
                    w.customers.y[cust] - w.terminals.y[term])
    assert dist.max() < 5.0
    # time of day ~ Normal(43,200, 20,000) truncated: mean near noon
    assert abs(tod_s.mean() - 43_200) < 600


def test_handbook_fraud_rules_exactly():
    cfg = make_config("handbook", seed=5, **SMALL)
    world = build_world(cfg)
    p = cfg.handbook
    genuine = generate_genuine(stream(5, "transactions"), world.customers, world.reachable, p)
    tx, draws = apply_handbook_frauds(5, genuine, world.customers.n, world.terminals.n, p)
    day = tx.day
    # scenario 2: exactly the rows on a terminal inside a 28-day compromise window ...
    active = window_mask(draws.terminals, world.terminals.n, p.n_days, 28)[tx.terminal, day]
    assert (tx.is_fraud[active] == 1).all()
    assert set(np.unique(tx.scenario[active])) <= {2, 3}
    assert not ((tx.scenario == 2) & ~active).any()
    # ... scenario 1: amount > 220 unless relabelled by 2/3; never otherwise
    s1 = tx.scenario == 1
    assert (genuine.amount[s1] > 220).all()
    assert ((genuine.amount > 220) == (s1 | (tx.scenario >= 2) & (genuine.amount > 220))).all()
    # scenario 3: floor(n/3) of each compromised card's window rows, amount x 5 (x 25 if twice)
    s3 = tx.scenario == 3
    times = np.round(np.log(tx.amount[s3] / genuine.amount[s3]) / np.log(5)).astype(int)
    assert (times >= 1).all() and (times == 1).mean() > 0.95
    assert np.allclose(tx.amount[s3], np.round(genuine.amount[s3] * 5.0**times, 2))
    assert (tx.amount[~s3] == genuine.amount[~s3]).all()
    card_active = window_mask(draws.customers, world.customers.n, p.n_days, 14)
    assert card_active[tx.customer[s3], day[s3]].all()
    checked = 0
    for d in range(p.n_days - 14):
        for c in draws.customers[d]:
            others = np.argwhere(draws.customers[max(0, d - 13):d + 14] == c)
            if len(others) != 1:  # overlaps another compromise of the same card
                continue
            rows = (tx.customer == c) & (day >= d) & (day < d + 14)
            assert int(s3[rows].sum()) == int(rows.sum()) // 3
            checked += 1
    assert checked > 50
    assert tx.is_fraud.sum() == (tx.scenario > 0).sum()


def test_labels_one_per_transaction(handbook, hb_table):
    labels = handbook.labels(delay_days=7)
    assert labels.column("txn_id").equals(hb_table.column("txn_id"))
    assert labels.column("is_fraud").equals(hb_table.column("is_fraud"))
    gap = labels.column("reported_at").to_numpy() - labels.column("ts").to_numpy()
    assert (gap == 7 * DAY_MS).all()
    jittered = handbook.labels(delay_days=2, jitter_hours=6).column("reported_at").to_numpy()
    gap = jittered - labels.column("ts").to_numpy()
    assert gap.min() >= 2 * DAY_MS - 6 * 3_600_000 and gap.max() <= 2 * DAY_MS + 6 * 3_600_000
    assert len(np.unique(gap)) > 100


def test_realistic_keeps_the_handbook_traffic(hb_table, re_frame):
    hb = hb_table.to_pandas()
    base = re_frame[re_frame.scenario <= 3].reset_index(drop=True)
    assert len(base) == len(hb)
    for col in ("ts", "card_id", "amount", "is_fraud", "scenario"):
        assert (base[col].to_numpy() == hb[col].to_numpy()).all(), col
    moved = base.scenario == 3
    assert (base.terminal_id[~moved] == hb.terminal_id[~moved]).all()
    assert (base.channel[moved] == "online").all()


def test_realistic_geo_merchants_channels(realistic, re_frame):
    df = re_frame
    geo = realistic.config.geo
    online = df.channel == "online"
    assert set(df.channel) == {"online", "card_present"}
    assert df.lat[online].isna().all() and df.lon[online].isna().all()
    present = df[~online]
    assert present.lat.between(geo.lat_min, geo.lat_max).all()
    assert present.lon.between(geo.lon_min, geo.lon_max).all()
    x = (present.lon - geo.lon_min) / (geo.lon_max - geo.lon_min) * 100
    y = (present.lat - geo.lat_min) / (geo.lat_max - geo.lat_min) * 100
    assert (country_of(x.to_numpy(), y.to_numpy(), 100.0, geo) == present.country).all()
    assert df.mcc.str.fullmatch(r"[0-9]{4}").all()
    assert df.groupby("terminal_id").mcc.nunique().max() == 1
    assert df.groupby("terminal_id").channel.nunique().max() == 1


def test_impossible_travel_is_impossible(re_frame):
    df = re_frame
    fraud_rows = df.index[df.scenario == Scenario.IMPOSSIBLE_TRAVEL]
    assert len(fraud_rows) >= 60
    present = df[(df.channel == "card_present") & (df.scenario != Scenario.IMPOSSIBLE_TRAVEL)]
    for i in fraud_rows:
        row = df.loc[i]
        before = present[(present.card_id == row.card_id) & (present.ts <= row.ts)]
        prev = before.iloc[-1]
        hours = (row.ts - prev.ts) / 3_600_000
        km = float(haversine_km(prev.lat, prev.lon, row.lat, row.lon))
        assert 0 < hours <= 0.5 and km / hours > 900, (km, hours)


def test_card_testing_bursts(re_frame):
    df = re_frame[re_frame.scenario == Scenario.CARD_TESTING]
    assert (df.channel == "online").all()
    small, large = df[df.amount < 2], df[df.amount >= 300]
    assert len(small) + len(large) == len(df) and len(large) >= 50
    for _, row in large.iterrows():
        burst = small[(small.card_id == row.card_id) & (small.ts < row.ts)
                      & (small.ts > row.ts - 25 * 60_000)]
        assert len(burst) >= 5


def test_drift_pattern_only_after_start(realistic, re_frame):
    df = re_frame
    drift = df[df.scenario == Scenario.DRIFT_NIGHT_TAKEOVER]
    first_midnight = START + 21 * DAY_MS
    assert len(drift) > 100
    assert drift.ts.min() >= first_midnight
    assert ((drift.ts % DAY_MS) < 5 * 3_600_000).all()
    assert (drift.channel == "online").all() and drift.amount.between(20, 150).all()
    home = realistic.world.home.country[drift.card_id.str[1:].astype(int).to_numpy()]
    assert (home != drift.country.to_numpy()).mean() > 0.95
    no_drift = simulate("realistic", seed=11, **SMALL).txns.scenario
    assert (no_drift == Scenario.DRIFT_NIGHT_TAKEOVER).sum() == 0


def test_write_parquet_round_trip(realistic, tmp_path):
    paths = realistic.write_parquet(tmp_path, id_prefix="run7-", delay_days=3)
    tx = pq.read_table(paths["transactions"])
    labels = pq.read_table(paths["labels"])
    assert tx.equals(realistic.transactions("run7-"))
    assert tx.column("txn_id")[0].as_py() == "run7-0000000000"
    assert labels.column("txn_id").equals(tx.column("txn_id"))
    assert tx.schema.field("ts").type == pa.int64()
    assert tx.schema.field("scenario").type == pa.int8()
