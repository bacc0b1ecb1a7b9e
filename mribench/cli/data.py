"""``bench data``: look at a data set before benchmarking on it."""

from __future__ import annotations

from pathlib import Path

import click

from mribench.cli.options import data_dir_option, image_size_option


@click.group()
def data() -> None:
    """Inspect a data set."""


@data.command(epilog="""\b
Example:
  bench data audit br35h --data-dir ../shared/data/br35h
""")
@click.argument("dataset")
@data_dir_option
@image_size_option
def audit(dataset: str, data_dir: Path | None, image_size: int) -> None:
    """Near-duplicate groups of DATASET and the leakage of each of its split manifests.

    For every committed manifest of the data set (benchmarks/splits/<name>-*.json) it prints
    the part sizes, how many test (and val) images have a near-duplicate in train or val, and
    the shortcut audit: the test accuracy of classifiers that never see the tumour, only each
    image's original size ("size acc"), its background and padding ("acquisition acc") or the
    content around the head ("content acc": background outside the head, exact zeros, head
    framing), beside always answering the commonest training label ("majority"). An accuracy
    well above the majority means a method can score high here without looking at the tumour;
    compare br35h with br35h[harmonise=true] to see what harmonising takes away.
    """
    from mribench.split.audit import audit_dataset, format_audit

    click.echo(format_audit(audit_dataset(dataset, data_dir=data_dir, image_size=image_size)))
