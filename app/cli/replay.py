"""``fraudstream replay FILE``: recorded transactions (parquet/CSV) into the pipeline."""

from __future__ import annotations

from pathlib import Path

import click


def _parse_maps(pairs: tuple[str, ...]) -> dict[str, str]:
    """``SRC=DST`` options as a dict.

    >>> _parse_maps(("TX_AMOUNT=amount", "CUSTOMER_ID=card_id"))
    {'TX_AMOUNT': 'amount', 'CUSTOMER_ID': 'card_id'}
    """
    mapping = {}
    for pair in pairs:
        src, sep, dst = pair.partition("=")
        if not sep or not src.strip() or not dst.strip():
            raise click.BadParameter(f"{pair!r}: expected SRC=DST", param_hint="--map")
        mapping[src.strip()] = dst.strip()
    return mapping


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--map", "maps", multiple=True, metavar="SRC=DST",
              help="Rename a column of the file to a contract column (repeatable), e.g. "
              "--map TX_DATETIME=ts --map CUSTOMER_ID=card_id.")
@click.option("--mapping-file", default=None,
              help="YAML or JSON file of SRC: DST pairs, or a preset name: 'handbook' (the "
              "published handbook dataset). --map entries override it.")
@click.option("--ts-unit", type=click.Choice(["ms", "s", "us", "ns"]), default="ms",
              show_default=True, help="Unit of numeric timestamps (datetime strings need none).")
@click.option("--currency", default="EUR", show_default=True,
              help="Currency when the file has no currency column.")
@click.option("--speed", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Event time runs this many times faster than real time; 0 = as fast as "
              "possible.")
@click.option("--label-delay-days", type=click.FloatRange(min=0), default=7.0,
              show_default=True, help="Labels (from the file's is_fraud) are reported this "
              "long after their transaction.")
@click.option("--label-jitter-hours", type=click.FloatRange(min=0), default=0.0,
              show_default=True, help="Seeded +- jitter of the label delay.")
@click.option("--no-labels", is_flag=True, help="Send transactions only.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Replay only the first N transactions (in event-time order).")
@click.option("--to", "target", type=click.Choice(["kafka", "parquet"]), default="kafka",
              show_default=True, help="Send to the topics, or write the normalised files.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("data/replay"), show_default=True, help="Folder for --to parquet.")
def command(file: Path, maps: tuple[str, ...], mapping_file: str | None, ts_unit: str,
            currency: str, speed: float, label_delay_days: float, label_jitter_hours: float,
            no_labels: bool, limit: int | None, target: str, out: Path) -> None:
    """Replay recorded transactions in event-time order, with their late labels.

    Transaction ids come from the file (a txn_id column), else from the file's SHA-256 and
    the row number, so replaying the same file twice sends the same ids.

    \b
    Examples:
      fraudstream replay data/handbook.csv --mapping-file handbook
      fraudstream replay tx.parquet --map TX_DATETIME=ts --map CUSTOMER_ID=card_id \\
          --map TERMINAL_ID=terminal_id --map TX_AMOUNT=amount --speed 86400
    """
    import time

    from app.cli.simulate import kafka_target, progress_bar
    from simulator.replay import MappingError, read_recorded
    from simulator.run import prepare_historical, run_kafka, write_run

    try:
        began = time.perf_counter()
        table = read_recorded(file, mapping_file, overrides=_parse_maps(maps), ts_unit=ts_unit,
                              currency=currency)
    except MappingError as exc:
        raise click.ClickException(str(exc)) from None
    if limit is not None:
        table = table.slice(0, limit)
    click.echo(f"read {table.num_rows:,} transactions from {file.name} in "
               f"{time.perf_counter() - began:.1f} s", err=True)
    if "is_fraud" not in table.column_names and not no_labels:
        click.echo("no is_fraud column: sending transactions only", err=True)
    table, labels, plan = prepare_historical(
        table, label_delay_days=None if no_labels else label_delay_days,
        label_jitter_hours=label_jitter_hours, speed=speed or None)
    if target == "parquet":
        summary = write_run(table, labels, out)
    else:
        bootstrap, client_kwargs, topics = kafka_target()
        with progress_bar(table.num_rows) as progress:
            summary = run_kafka(bootstrap, client_kwargs, plan, table, labels,
                                tx_topic=topics[0], label_topic=topics[1], paced=bool(speed),
                                progress=progress)
    for line in summary.lines():
        click.echo(line)


if __name__ == "__main__":  # pragma: no cover
    command()
