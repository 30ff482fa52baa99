"""``fraudstream train``: train, evaluate, export to ONNX, register and promote a fraud model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


@click.command()
@click.option("--profile", type=click.Choice(["handbook", "realistic"]), default="handbook",
              show_default=True, help="Simulator profile of the training data (without --data).")
@click.option("--days", type=click.IntRange(min=7), default=183, show_default=True,
              help="Simulated days (without --data).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Simulator seed (without --data).")
@click.option("--customers", type=click.IntRange(min=1), default=None,
              help="Simulated cards (default: the profile's, 5,000).")
@click.option("--terminals", type=click.IntRange(min=1), default=None,
              help="Simulated terminals (default: the profile's, 10,000).")
@click.option("--data", "data_path", type=click.Path(exists=True, path_type=Path), default=None,
              help="Train on a parquet file or folder instead: a feature log (transactions-"
              "enriched records) or raw transactions with labels (`fraudstream simulate --to "
              "parquet`).")
@click.option("--labels", "labels_path", type=click.Path(exists=True, dir_okay=False,
                                                          path_type=Path), default=None,
              help="Labels parquet (txn_id, is_fraud, ...) for --data, if not next to it.")
@click.option("--train-start", default=None,
              help="First training day (ISO date) or 'latest'. Default: the handbook's "
              "2018-07-25 for simulated data, the latest window that fits for --data.")
@click.option("--prequential", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also evaluate over N test weeks and report mean ± std.")
@click.option("--promote/--no-promote", default=True, show_default=True,
              help="Promote to champion when the gates pass.")
@click.option("--publish/--no-publish", default=True, show_default=True,
              help="Send model-updates events to Kafka (skipped, and said so, without a broker).")
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the report here (default: <data_dir>/training/reports/<time>); it is "
              "also logged with the MLflow run.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bars.")
def command(profile: str, days: int, seed: int, customers: int | None, terminals: int | None,
            data_path: Path | None, labels_path: Path | None, train_start: str | None,
            prequential: int, promote: bool, publish: bool, report_dir: Path | None,
            progress: bool) -> None:
    """Train a LightGBM fraud model and register it in MLflow as ONNX.

    Uses the handbook protocol: 7 training days, a 7-day label delay, 7 test days with the
    cards already known to be compromised removed. The number of trees is early-stopped on an
    earlier validation split; the alert threshold follows the daily alert budget. The model is
    exported to ONNX (parity with LightGBM checked on every test row), registered as
    challenger, and promoted to champion when the gates pass (minimum metrics; beat the
    current champion on the same test rows). Features are cached under the data folder.

    \b
    Examples:
      fraudstream train                          # handbook data, 183 days, seed 0
      fraudstream train --prequential 4          # plus mean ± std over 4 test weeks
      fraudstream train --data data/simulated --train-start latest
      mlflow ui --backend-store-uri sqlite:///.fraudstream/mlflow.db
    """
    import time
    from datetime import UTC, datetime

    from config.settings import get_settings
    from training.dataset import DatasetError, from_parquet, from_simulator
    from training.onnx_export import ParityError
    from training.pipeline import HANDBOOK_TRAIN_START, train_and_register

    settings = get_settings()
    began = time.perf_counter()
    try:
        if data_path is not None:
            data = from_parquet(data_path, labels=labels_path,
                                cache_dir=settings.training_cache_dir, progress=progress)
        else:
            sizes = (("n_customers", customers), ("n_terminals", terminals))
            options: dict[str, Any] = {k: v for k, v in sizes if v is not None}
            click.echo(f"training data: simulator {profile}, {days} days, seed {seed}"
                       + (f", {options}" if options else ""), err=True)
            data = from_simulator(profile, seed=seed, days=days,
                                  cache_dir=settings.training_cache_dir, progress=progress,
                                  **options)
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{len(data):,} transactions, {int(data.frame['is_fraud'].sum()):,} frauds "
               f"({'cached' if data.from_cache else 'features computed'} in "
               f"{time.perf_counter() - began:.1f} s)", err=True)
    if train_start in (None, "") and data_path is None:
        train_start = HANDBOOK_TRAIN_START
    start = None if train_start in (None, "", "latest") else train_start
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = report_dir or settings.data_dir / "training" / "reports" / stamp
    try:
        result = train_and_register(
            data, settings, train_start=start, promote=promote, prequential=prequential,
            publish=publish, progress=progress, report_dir=out,
            echo=lambda line: click.echo(line, err=True))
    except ParityError as exc:
        raise click.ClickException(f"refused: {exc}") from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    for line in result.lines():
        click.echo(line)
    click.echo(f"mlflow ui --backend-store-uri {settings.tracking_uri}")


if __name__ == "__main__":  # pragma: no cover
    command()
