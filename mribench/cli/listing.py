"""``bench list``: every registered method and data set."""

from __future__ import annotations

import click


@click.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "names"]), default="table",
              show_default=True, help="A table, or just the names (for scripts).")
def list_plugins(fmt: str) -> None:
    """List methods (name, tasks, classical or deep, the paper) and data sets."""
    from tabulate import tabulate

    from mribench.api import registry

    methods = registry.methods()
    sets = registry.datasets()
    if fmt == "names":
        click.echo("\n".join([*methods, *sets]))
        return
    rows = [[cls.name, ", ".join(cls.tasks), cls.kind, _short(cls.reference)]
            for cls in methods.values()]
    click.echo("Methods")
    click.echo(tabulate(rows, headers=["name", "tasks", "kind", "reproduces"],
                        tablefmt="simple", maxcolwidths=[None, None, None, 70]))
    rows = [[cls.name, "needs --data-dir" if cls.needs_files else "built in",
             _short(cls.description)] for cls in sets.values()]
    click.echo("\nData sets (also folder:PATH for your own class folders)")
    click.echo(tabulate(rows, headers=["name", "files", "description"], tablefmt="simple",
                        maxcolwidths=[None, None, 80]))


def _short(text: str, limit: int = 140) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
