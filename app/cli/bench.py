"""``fraudstream bench``: the benchmarks, a table on screen and JSON on disk."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--events", "-n", default=50_000, show_default=True, help="Events per benchmark.")
@click.option("--only", multiple=True,
              help="Run only these: raw, faust, faust-batch, ingest, features, cards, feast, "
              "scoring, pipeline, latency, naive, score-api.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for the JSON results (default: <data_dir>/bench).")
def command(events: int, only: tuple[str, ...], out: Path | None) -> None:
    """Measure throughput side by side on one broker (embedded unless KAFKA_BOOTSTRAP_SERVERS).

    Every run starts a fresh worker process on fresh topics pre-loaded with N events; events/s
    is taken from the output records' timestamps, so start-up time is excluded (and reported).
    """
    from bench.harness import run, table
    from config.settings import get_settings

    report = run(events, out or get_settings().data_dir / "bench", set(only) or None,
                 progress=lambda msg: click.echo(msg, err=True))
    click.echo(table(report))
    click.echo(f"\nJSON: {report['path']}")
