"""``fraudstream models``: list, show, promote and roll back registered fraud models."""

from __future__ import annotations

import json
from typing import Any

import click


def _registry() -> Any:
    from config.settings import get_settings
    from models.registry import open_registry

    settings = get_settings()
    return settings, open_registry(settings)


def _publish(settings: Any, event: dict) -> None:
    from models.events import publish_model_updates

    click.echo(publish_model_updates([event], settings).line())


@click.group()
def command() -> None:
    """Registered fraud models (MLflow): aliases champion and challenger.

    \b
    Examples:
      fraudstream models list
      fraudstream models show champion
      fraudstream models promote 3
      fraudstream models rollback
    """


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per version.")
def list_(as_json: bool) -> None:
    """Every version, oldest first, with aliases and test metrics."""
    from models.registry import RegistryError

    settings, registry = _registry()
    try:
        versions = registry.list_versions()
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    if not versions:
        click.echo(f"no versions of {settings.registry.model_name} in {settings.tracking_uri}")
        return
    if not as_json:
        click.echo(f"{'version':>7}  {'aliases':<22}{'auc_roc':>9}{'ap':>9}{'cp@100':>9}  "
                   "sha256")
    for info in versions:
        m = info.metrics
        if as_json:
            click.echo(json.dumps({"version": info.version, "aliases": list(info.aliases),
                                   "metrics": m, "sha256": info.sha256}))
            continue
        cells = [m.get(k, float("nan")) for k in ("auc_roc", "average_precision",
                                                   "card_precision_at_100")]
        click.echo(f"{info.version:>7}  {','.join(info.aliases) or '-':<22}"
                   + "".join(f"{v:>9.4f}" for v in cells) + f"  {info.sha256[:12]}")


@command.command()
@click.argument("ref", default="champion")
def show(ref: str) -> None:
    """One version (number or alias, default champion): files, features, metrics."""
    from models.registry import RegistryError

    _, registry = _registry()
    try:
        info = registry.get_version(ref)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{info.model_name} v{info.version}  aliases: {', '.join(info.aliases) or '-'}")
    click.echo(f"onnx: {info.local_path or info.artifact_uri}")
    click.echo(f"sha256: {info.sha256} (verified)")
    click.echo(f"feature spec {info.spec_version}: {len(info.feature_names)} features")
    click.echo(f"run: {info.run_id}  test data: {info.test_data_id}")
    for key, value in sorted(info.metrics.items()):
        click.echo(f"  {key:<40} {value:.6g}")


@command.command()
@click.argument("version", type=int)
@click.option("--alias", default="champion", show_default=True,
              help="Alias to move (champion goes through the promotion gates).")
@click.option("--force", is_flag=True,
              help="Skip the gates (recorded in the champion history).")
@click.option("--publish/--no-publish", default=True, show_default=True,
              help="Send a model-updates event.")
def promote(version: int, alias: str, force: bool, publish: bool) -> None:
    """Point ALIAS at VERSION (champion: only if the gates pass, unless --force).

    The gates compare with the current champion on the same test data: both versions must
    have been evaluated on the same test rows (`fraudstream train` does that by scoring the
    champion itself), otherwise the promotion is refused.
    """
    from config.gates import PromotionRefused
    from models.registry import RegistryError

    settings, registry = _registry()
    try:
        event = registry.promote(version, alias, force=force)
    except PromotionRefused as exc:
        raise click.ClickException(str(exc)) from None
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{settings.registry.model_name}: {alias} -> v{event['version']}"
               + (" (forced)" if force else ""))
    if publish:
        _publish(settings, event)


@command.command()
@click.option("--publish/--no-publish", default=True, show_default=True,
              help="Send a model-updates event.")
def rollback(publish: bool) -> None:
    """Give champion back to the previous champion."""
    from models.registry import RegistryError

    settings, registry = _registry()
    try:
        event = registry.rollback()
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{settings.registry.model_name}: champion rolled back to v{event['version']}")
    if publish:
        _publish(settings, event)


if __name__ == "__main__":  # pragma: no cover
    command()
