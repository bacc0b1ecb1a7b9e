"""The ``bench`` command line: a click group whose commands load lazily.

Each command lives in its own module (pip-tools' layout); the group maps names to import paths
so ``bench --help`` never imports torch or the plugins.
"""

from __future__ import annotations

import importlib
import sys

import click

from mribench.api.errors import MribenchError

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("mribench.cli.run", "run"),
    "list": ("mribench.cli.listing", "list_plugins"),
    "data": ("mribench.cli.data", "data"),
    "split": ("mribench.cli.split", "split"),
    "report": ("mribench.cli.report", "report"),
    "status": ("mribench.cli.status", "status"),
    "compare": ("mribench.cli.compare", "compare"),
    "rank": ("mribench.cli.rank", "rank"),
    "check": ("mribench.cli.check", "check"),
    "baseline": ("mribench.cli.check", "baseline"),
    "predict": ("mribench.cli.predict", "predict"),
    "explain": ("mribench.cli.explain", "explain"),
    "export": ("mribench.cli.export", "export"),
}

SHORT_HELP = {
    "run": "Train and score methods on a data set under one split.",
    "list": "List the registered methods and data sets.",
    "data": "Inspect a data set (near-duplicate audit).",
    "split": "Make split manifests.",
    "report": "Write the HTML/Markdown report of a results folder.",
    "status": "Show each job of a run: done, failed, running or not started.",
    "compare": "Two runs side by side, with a paired test of each difference.",
    "rank": "How far a ranking holds over data sets: intervals, consensus, transfer.",
    "check": "Fail when metrics fell below a baseline.",
    "baseline": "Write a baseline file from a results folder.",
    "predict": "Apply a saved model to a folder of images.",
    "explain": "Explanation maps (occlusion, Grad-CAM) of a saved model.",
    "export": "Export a deep row to ONNX or TorchScript with its preprocessing spec.",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when invoked (click docs, 'complex')."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SHORT_HELP[name]) for name in COMMANDS]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mribench")
def cli() -> None:
    """mribench: reproduce and rank brain-MRI tumour pipelines on one honest split.

    \b
    Quick start:
      bench run --method all --dataset synthetic
      bench run --method all --dataset br35h --data-dir ../shared/data/br35h
    """


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit status 2."""
    try:
        cli.main(args=argv, prog_name="bench", standalone_mode=False)
    except MribenchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
