"""Options shared by several commands, defined once as decorators (pip-tools' options.py)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click

data_dir_option = click.option(
    "--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
    help="Folder of the data set's files (br35h: the folder holding yes/ no/ Br35H-Mask-RCNN/). "
         "Default: $MRIBENCH_DATA, then ~/.cache/mribench/data/<name>.")
dataset_option = click.option(
    "--dataset", default="synthetic", show_default=True,
    help="Data set: a name from `bench list`, name[k=v] (e.g. synthetic[n=200]), or folder:PATH; "
         "`bench run` takes a comma list (each split on its own, the transfer matrix between "
         "them); name=... names one in tables.")
# Values pass through as typed and are checked by the library (one range, one message, the
# same from a suite file): see mribench.api.specs.check_image_size and RunConfig.
image_size_option = click.option(
    "--image-size", default=None, metavar="N",
    help="Side of the square every slice and mask is resized to: 8 to 1024 (default 256, or "
         "the data set's image_size=).")
seed_option = click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0,
                           show_default=True,
                           help="Seed of the split (when one is made), training and bootstrap.")
split_option = click.option(
    "--split", default=None,
    help="Split strategy (br35h: leak-free [default] or official; others: stratified) or a "
         "manifest JSON path.")


class MetricChoice(click.Choice):
    """``click.Choice`` of the metrics in the registry (:mod:`mribench.eval.registry`), read
    when the command line is parsed or its help shown, so a metric registered after this
    module was imported is a valid choice too."""

    def __init__(self) -> None:
        super().__init__((), case_sensitive=True)

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        from mribench.eval.registry import metric_names

        return metric_names()

    @choices.setter
    def choices(self, value: Iterable[Any]) -> None:
        """Ignored: the registry is the list of choices."""


def metric_option(*names: str, help: str) -> Any:
    """A ``--rank-by``-style option choosing a registered metric, default ``f1``."""
    return click.option(*names, type=MetricChoice(), default="f1", show_default=True,
                        help=help)
