"""The ``bench`` command line (placeholder until the CLI lands)."""

import click


@click.group()
def main() -> None:
    """mribench: reproduce and rank brain-MRI tumour pipelines."""
