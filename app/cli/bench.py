"""``fraudstream bench``: the streaming core's goals, measured in one run (docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path

import click

SECTIONS = ("latency", "backlog", "cards", "score-api", "profile", "replay")


@click.command()
@click.option("--events", "-n", type=click.IntRange(min=1_000), default=None,
              help="Handbook transactions of the full-speed replay (default 1,758,314, the "
              "whole 183-day profile; 50,000 with --quick).")
@click.option("--quick", is_flag=True,
              help="A smoke run: short phases, small backlogs (a few minutes).")
@click.option("--only", multiple=True, type=click.Choice(SECTIONS),
              help="Run only these sections (repeatable).")
@click.option("--replay-cap", type=click.FloatRange(min=10), default=None,
              help="Stop waiting for the replay after this many seconds (default 600, the "
              "goal; what is out by then is reported).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for the JSON results (default: <data_dir>/bench).")
def command(events: int | None, quick: bool, only: tuple[str, ...], replay_cap: float | None,
            out: Path | None) -> None:
    """Measure the pipeline against its goals on one broker (embedded unless
    KAFKA_BOOTSTRAP_SERVERS): latency at 1,000 ev/s beside the broker's one-hop floor and the
    highest rate with p99 <= 100 ms; backlog throughput beside the Faust passthrough; a
    full-speed replay of the handbook profile; 5,000 vs 100,000 cards; POST /score; a
    per-event cost breakdown. Prints a table (measurement, value, goal, met); JSON on disk.

    The default run takes about 30 minutes on 2 cores; --quick about 7.
    """
    import dataclasses

    from bench.harness import Plan, run, table
    from config.settings import get_settings

    plan = Plan.quick(events) if quick else Plan(**({"replay": events} if events else {}))
    if replay_cap is not None:
        plan = dataclasses.replace(plan, replay_cap_s=replay_cap)
    report = run(plan, out or get_settings().data_dir / "bench", set(only) or None,
                 progress=lambda msg: click.echo(msg, err=True))
    click.echo(table(report))
    click.echo(f"\nJSON: {report['path']}")
