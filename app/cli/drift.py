"""``fraudstream drift report``: PSI and KS per feature against the model's training reference."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from config.settings import get_settings
from contracts.records import decode_enriched
from contracts.rejections import ContractError


@click.group()
def command() -> None:
    """Drift of the live features against the data the model was trained on.

    The streaming side (River ADWIN per signal, model-retrain events) runs in the worker when
    FRAUDSTREAM_DRIFT_ENABLED=true. This command is the batch view: PSI and KS per feature of
    a sample of live feature vectors against the reference statistics stored with the model.

    \b
      fraudstream drift report --data live.parquet                 # against the champion
      fraudstream drift report --topic --limit 50000 --out drift.md
      fraudstream drift report --model model.onnx --data rows.csv
    """


def _reference(model: Path | None, reference: Path | None, version: str) -> tuple[dict, str]:
    if reference is not None:
        return json.loads(reference.read_text()), str(reference)
    if model is not None:
        from models.serving import read_metadata

        meta = read_metadata(model.read_bytes())
        return json.loads(meta.get("reference_stats") or "{}"), str(model)
    from models.registry import open_registry
    from models.serving import read_metadata

    settings = get_settings()
    registry = open_registry(settings)
    info = registry.get_version(version)
    assert info.local_path is not None
    meta = read_metadata(info.local_path.read_bytes())
    return (json.loads(meta.get("reference_stats") or "{}"),
            f"{settings.registry.model_name} v{info.version}")


def _live_from_file(path: Path) -> dict[str, Any]:
    import pandas as pd

    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix == ".csv":
        frame = pd.read_csv(path)
    else:  # JSON lines of enriched records (or flat rows)
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        frame = pd.DataFrame([r.get("features", r) for r in rows])
    return {c: frame[c].to_numpy(dtype="float64") for c in frame.columns
            if pd.api.types.is_numeric_dtype(frame[c])}


def _live_from_topic(limit: int, timeout: float) -> dict[str, Any]:
    import numpy as np

    from config.endpoints import kafka_bootstrap
    from infra.kafka_io import consume

    settings = get_settings()
    records = consume(kafka_bootstrap(settings), settings.topics.enriched, expected=limit,
                      timeout=timeout, settle=0, idle=3.0)[-limit:]
    columns: dict[str, list[float]] = {}
    for rec in records:
        try:
            features = decode_enriched(rec.value).features
        except ContractError:
            continue  # not an enriched record (or a poison one)
        for name, value in features.items():
            columns.setdefault(name, []).append(np.nan if value is None else float(value))
    return {name: np.asarray(values) for name, values in columns.items()}


@command.command()
@click.option("--data", "data", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Live feature rows: .parquet, .csv, or JSON lines of enriched records.")
@click.option("--topic", "from_topic", is_flag=True,
              help="Read the live rows from the transactions-enriched topic instead.")
@click.option("--limit", default=50_000, show_default=True,
              help="With --topic: the most recent this many records.")
@click.option("--timeout", default=60.0, show_default=True, help="With --topic: seconds.")
@click.option("--model", "model", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Reference from this ONNX file's metadata.")
@click.option("--reference", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Reference statistics JSON (training.refstats.reference_stats).")
@click.option("--version", "version", default="champion", show_default=True,
              help="Otherwise: this MLflow version or alias of FRAUDSTREAM_MODEL_NAME.")
@click.option("--alpha", default=0.05, show_default=True, type=click.FloatRange(0, 1),
              help="KS significance level (severity bands alpha, alpha/10, alpha/100).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("drift-report.md"), show_default=True,
              help="Markdown report; the JSON report goes next to it (.json).")
@click.option("--fail-on", type=click.Choice(["none", "low", "medium", "high"]), default=None,
              help="Exit with status 2 when the overall severity is at least this.")
def report(data: Path | None, from_topic: bool, limit: int, timeout: float,
           model: Path | None, reference: Path | None, version: str, alpha: float, out: Path,
           fail_on: str | None) -> None:
    """Write a PSI/KS drift report of live features against the training reference."""
    from app.drift.report import SEVERITIES, drift_report, to_json, to_markdown

    if (data is None) == (not from_topic):
        raise click.UsageError("give exactly one of --data FILE or --topic")
    ref, ref_source = _reference(model, reference, version)
    if not ref.get("features"):
        raise click.ClickException(f"{ref_source}: no reference feature statistics stored")
    live = _live_from_file(data) if data is not None else _live_from_topic(limit, timeout)
    source = {"live": str(data) if data else "topic", "reference": ref_source}
    result = drift_report(live, ref, alpha=alpha, source=source)
    out.write_text(to_markdown(result))
    out.with_suffix(".json").write_text(to_json(result) + "\n")
    counts = {s: sum(r["severity"] == s for r in result["features"].values())
              for s in SEVERITIES}
    click.echo(f"drift: {result['severity']} ({', '.join(f'{v} {k}' for k, v in counts.items())}"
               f"); wrote {out} and {out.with_suffix('.json')}")
    if fail_on is not None and SEVERITIES.index(result["severity"]) >= SEVERITIES.index(fail_on):
        sys.exit(2)
