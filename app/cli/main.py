"""``fraudstream``: the one command-line entry point, one subcommand per noun.

Subcommands live in their own modules (``app/cli/<noun>.py``, each defining ``command``) and are
imported only when used, so ``fraudstream --help`` is instant and a subcommand's heavy
dependencies (LightGBM, MLflow, Feast) load only for the subcommand that needs them.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import click

#: noun -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "stack": ("app.cli.stack", "Start, stop or show the local broker and Redis."),
    "simulate": ("app.cli.simulate", "Generate synthetic card traffic with known fraud."),
    "replay": ("app.cli.replay", "Replay a recorded transactions file into the pipeline."),
    "features": ("app.cli.features", "Register the Feast features (feast apply), read them."),
    "bench": ("app.cli.bench", "Run the benchmarks and print their table."),
    "predictions": ("app.cli.predictions", "Follow the scores and decisions (ml-predictions)."),
    "train": ("app.cli.train", "Train, evaluate, export (ONNX) and register a fraud model."),
    "models": ("app.cli.models", "List, show, promote or roll back registered models."),
    "retrain": ("app.cli.retrain", "Retrain from the feature log: pending drift events or now."),
    "drift": ("app.cli.drift", "Drift report: PSI and KS per feature against the training data."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n, (mod, _) in SUBCOMMANDS.items() if importlib.util.find_spec(mod))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in SUBCOMMANDS:
            return None
        module_name, _ = SUBCOMMANDS[cmd_name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None
            raise
        command: click.Command = module.command
        command.name = cmd_name
        return command

    def format_commands(self, ctx: click.Context, formatter: Any) -> None:
        rows = [(name, SUBCOMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fraudstream")
def cli() -> None:
    """Real-time card-fraud scoring on Kafka.

    Start the local stack, run a worker, send traffic, read predictions:

    \b
      fraudstream stack up
      faust -A app worker -l info
      fraudstream simulate --count 10000
      fraudstream predictions tail
    """


if __name__ == "__main__":  # pragma: no cover
    cli()
