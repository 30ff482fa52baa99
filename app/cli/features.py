"""``fraudstream features apply|env|get``: the Feast feature store of the pipeline."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from config.settings import get_settings


@click.group()
def command() -> None:
    """Register the Feast features and read them back.

    The feature repo is feature_repo/ (entities, push sources, one feature view per entity,
    the fraud_model feature service). Its feature_store.yaml holds only ${VARIABLES}, derived
    from REDIS_URL (or the embedded Redis of `fraudstream stack up`) and the data folder:

    \b
      fraudstream features apply                  # = feast apply, for this configuration
      eval "$(fraudstream features env)"          # or set the variables and use feast itself:
      cd feature_repo && feast apply
      fraudstream features get --card C000042 --terminal T000007
    """


def _endpoints(check: bool = True) -> tuple[str, Path]:
    """Redis URL (PING-checked unless ``check`` is False) and data folder in force."""
    from config.endpoints import redis_url

    settings = get_settings()
    return redis_url(settings, check=check), settings.data_dir


@command.command()
def apply() -> None:
    """Register entities, sources, views and the feature service (`feast apply`)."""
    from app.feast_env import apply as feast_apply
    from app.feast_env import feast_env

    url, data_dir = _endpoints()
    feast_apply(url, data_dir)
    click.echo(f"registry: {feast_env(url, data_dir)['FEAST_REGISTRY_PATH']}")


@command.command()
@click.option("--show-password", is_flag=True,
              help="Print the Redis password even when standard output is a terminal.")
def env(show_password: bool) -> None:
    """Print `export` lines of the variables feature_store.yaml reads.

    The Redis password is masked when the output is a terminal (not when it is captured,
    as by eval "$(fraudstream features env)").
    """
    from app.feast_env import REDIS_VAR, feast_env, mask_connection_string

    url, data_dir = _endpoints(check=False)
    variables = feast_env(url, data_dir)
    masked = sys.stdout.isatty() and not show_password
    for name, value in variables.items():
        if name == REDIS_VAR and masked:
            value = mask_connection_string(value)
        click.echo(f"export {name}={shlex.quote(value)}")
    if masked and "password=" in variables[REDIS_VAR]:
        click.echo('# password masked on a terminal: eval "$(fraudstream features env)"')


@command.command()
@click.option("--card", "card_id", help="Card id to read.")
@click.option("--terminal", "terminal_id", help="Terminal id to read.")
def get(card_id: str | None, terminal_id: str | None) -> None:
    """Read the online features of a card and/or a terminal (JSON; null: never pushed)."""
    from app.feast_env import join_key, load_store, version_field, view_name
    from features.spec import DEFAULT_SPEC

    wanted = {"card": card_id, "terminal": terminal_id}
    wanted = {entity: key for entity, key in wanted.items() if key is not None}
    if not wanted:
        raise click.UsageError("give --card and/or --terminal")
    store = load_store(*_endpoints())
    out = {}
    for entity, key in wanted.items():
        names = [*DEFAULT_SPEC.names_for(entity), version_field(entity)]
        refs = [f"{view_name(entity)}:{name}" for name in names]
        row = store.get_online_features(features=refs,
                                        entity_rows=[{join_key(entity): key}]).to_dict()
        out[entity] = {name: row[name][0] for name in [join_key(entity), *names]}
    click.echo(json.dumps(out, indent=2))
