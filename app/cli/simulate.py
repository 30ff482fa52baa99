"""``fraudstream simulate``: synthetic card traffic with known fraud, to Kafka or parquet."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

DEFAULT_COUNT = 10_000


def kafka_target() -> tuple[str, dict[str, Any], tuple[str, str]]:
    """Bootstrap servers, aiokafka security kwargs and (transactions, labels) topic names.

    Reads the settings (environment, or the embedded stack of `fraudstream stack up`) and
    creates the contract's topics when missing. Shared with ``fraudstream replay``.
    """
    from config.endpoints import kafka_bootstrap
    from config.security import aiokafka_kwargs
    from config.settings import get_settings
    from config.topics_admin import ensure_topics

    settings = get_settings()
    bootstrap = kafka_bootstrap(settings)
    ensure_topics(bootstrap, settings)
    return (bootstrap, aiokafka_kwargs(settings),
            (settings.topics.transactions, settings.topics.labels))


@contextmanager
def progress_bar(total: int) -> Iterator[Callable[[int, int], None]]:
    """A tqdm bar over transactions; the callback also counts labels."""
    from tqdm import tqdm

    labels = 0
    with tqdm(total=total, unit="tx", unit_scale=True, dynamic_ncols=True) as bar:

        def update(n_tx: int, n_labels: int) -> None:
            nonlocal labels
            labels += n_labels
            bar.update(n_tx)
            if n_labels:
                bar.set_postfix(labels=labels, refresh=False)

        yield update


@click.command()
@click.option("--profile", type=click.Choice(["realistic", "handbook"]), default="realistic",
              show_default=True,
              help="handbook: the Fraud Detection Handbook's process exactly; realistic: plus "
              "geo, merchant categories, channels, impossible travel and card testing.")
@click.option("--mode", type=click.Choice(["live", "historical"]), default="live",
              show_default=True,
              help="live: event time = now, paced by --pattern/--tps. historical: event times "
              "from --start, sent --speed times faster than real time.")
@click.option("--count", type=click.IntRange(min=1), default=None,
              help=f"Number of transactions (default {DEFAULT_COUNT:,} unless --duration).")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds of sending (live: of the pattern; historical: with --speed).")
@click.option("--tps", type=click.FloatRange(min=0, min_open=True), default=100.0,
              show_default=True, help="Base rate of the live pattern (transactions/s).")
@click.option("--pattern", type=click.Choice(["constant", "wave", "spike", "random"]),
              default="constant", show_default=True,
              help="Live traffic shape: wave = sinusoid (60 s period, +-50 %); spike = 5x bursts "
              "of 3 s every 30 s; random = seeded random walk (0.2x-5x).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Everything generated is determined by the seed.")
@click.option("--run-id", default=None,
              help="Prefix of txn ids (<run-id>-0000000042). Without it the same seed gives "
              "the same ids, which the pipeline de-duplicates: set it to send a seed twice.")
@click.option("--start", default="2018-04-01", show_default=True,
              help="First simulated day (historical mode; ISO date, UTC).")
@click.option("--speed", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Historical mode: event time runs this many times faster than real time; "
              "0 = as fast as possible.")
@click.option("--label-delay-days", type=click.FloatRange(min=0), default=7.0,
              show_default=True,
              help="Labels are reported this long after their transaction (live runs need a "
              "small value, e.g. 0.001 = 86 s, to see labels during the run).")
@click.option("--label-jitter-hours", type=click.FloatRange(min=0), default=0.0,
              show_default=True, help="Seeded +- jitter of the label delay.")
@click.option("--no-labels", is_flag=True, help="Send or write transactions only.")
@click.option("--drift-at", default=None,
              help="Realistic profile: from this date-time on, a new fraud pattern appears "
              "(night-time online takeover in a foreign country).")
@click.option("--days", type=click.IntRange(min=1), default=183, show_default=True,
              help="Simulated days (historical; more are added when --count needs them).")
@click.option("--customers", type=click.IntRange(min=1), default=5_000, show_default=True)
@click.option("--terminals", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--to", "target", type=click.Choice(["kafka", "parquet"]), default="kafka",
              show_default=True, help="Send to the transactions/labels topics or write files.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("data/simulated"), show_default=True,
              help="Folder of transactions.parquet and labels.parquet (--to parquet).")
def command(profile: str, mode: str, count: int | None, duration: float | None, tps: float,
            pattern: str, seed: int, run_id: str | None, start: str, speed: float,
            label_delay_days: float, label_jitter_hours: float, no_labels: bool,
            drift_at: str | None, days: int, customers: int, terminals: int, target: str,
            out: Path) -> None:
    """Generate synthetic card traffic with known fraud and send it (or write it).

    \b
    Examples:
      fraudstream simulate --count 50000 --tps 500 --pattern wave
      fraudstream simulate --mode historical --speed 3600 --duration 600
      fraudstream simulate --profile handbook --mode historical --to parquet --out data/hb
    """
    from simulator.config import make_config
    from simulator.generator import days_for, generate
    from simulator.patterns import TrafficPattern, schedule
    from simulator.run import prepare_historical, prepare_live, run_kafka, write_run

    if count is not None and duration is not None:
        raise click.UsageError("give --count or --duration, not both")
    if mode == "historical" and duration is not None and not speed:
        raise click.UsageError("--duration in historical mode needs --speed (or use --count)")
    if drift_at and profile != "realistic":
        raise click.UsageError("--drift-at needs --profile realistic")
    delay = None if no_labels else label_delay_days
    prefix = f"{run_id}-" if run_id else ""

    offsets = None
    if mode == "live":
        shape = TrafficPattern(pattern, tps=tps, seed=seed)  # type: ignore[arg-type]
        offsets = (schedule(shape, duration_s=duration) if duration is not None
                   else schedule(shape, count=count or DEFAULT_COUNT))
        count = len(offsets)
    cfg = make_config(profile, seed=seed, start=start, drift_start=drift_at,  # type: ignore[arg-type]
                      n_customers=customers, n_terminals=terminals, n_days=days)
    if count is not None:
        cfg = days_for(count + (cfg.handbook.n_customers * 2 * 30 if mode == "live" else 0), cfg)
    began = time.perf_counter()
    sim = generate(cfg)
    table = sim.transactions(prefix)
    click.echo(f"generated {table.num_rows:,} transactions ({profile}, seed {seed}) in "
               f"{time.perf_counter() - began:.1f} s", err=True)

    if mode == "live":
        assert offsets is not None
        table, labels, plan = prepare_live(
            table, offsets=offsets, start_ms=int(time.time() * 1000), label_delay_days=delay,
            label_jitter_hours=label_jitter_hours, seed=seed)
    else:
        if count is not None:
            table = table.slice(0, count)
        table, labels, plan = prepare_historical(
            table, label_delay_days=delay, label_jitter_hours=label_jitter_hours,
            speed=speed or None, seed=seed, duration_s=duration)

    if target == "parquet":
        summary = write_run(table, labels, out)
    else:
        bootstrap, client_kwargs, topics = kafka_target()
        with progress_bar(table.num_rows) as progress:
            summary = run_kafka(bootstrap, client_kwargs, plan, table, labels,
                                tx_topic=topics[0], label_topic=topics[1],
                                paced=mode == "live" or bool(speed), progress=progress)
        if offsets is not None and len(offsets) > 1:
            target_rate = (len(offsets) - 1) / float(offsets[-1])
            click.echo(f"target: {target_rate:,.0f} transactions/s on average ({pattern})")
    for line in summary.lines():
        click.echo(line)


if __name__ == "__main__":  # pragma: no cover
    command()
