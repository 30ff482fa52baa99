"""``fraudstream stack up|down|status``: the local broker and Redis."""

from __future__ import annotations

import click

from config.settings import get_settings


@click.group()
def command() -> None:
    """Start, stop or show the local stack.

    Endpoints set in the environment (KAFKA_BOOTSTRAP_SERVERS, REDIS_URL) are used as they are
    and only checked; anything unset is started embedded on a free loopback port (Tansu broker,
    valkey-server), recorded in <data_dir>/stack.json for the worker and the CLI.
    """


@command.command()
def up() -> None:
    """Start what is missing and print where everything runs."""
    from infra import stack

    stack.up(get_settings())
    _print_status()


@command.command()
def down() -> None:
    """Stop what `stack up` started (never an external endpoint)."""
    from infra import stack

    stopped = stack.down(get_settings())
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing to stop")


@command.command()
def status() -> None:
    """Say what runs where; exit status 1 when something does not answer."""
    if not _print_status():
        raise SystemExit(1)


def _print_status() -> bool:
    from infra import stack

    rows = stack.status(get_settings())
    ok = True
    for row in rows:
        running = row["running"]
        mark = "up" if running else "DOWN"
        ok = ok and running
        click.echo(f"{row['name']:<6} {mark:<5} {row['where']:<28} {row['origin']}")
    return ok
