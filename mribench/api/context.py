"""What the runner hands a method besides its samples: device, seed, profile, progress,
logging, a method-private folder, a scratch folder for its prediction stacks and the run's
shared feature cache."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tqdm.auto import tqdm

from mribench.api.feature_cache import FeatureCache
from mribench.api.stack import new_stack

T = TypeVar("T")


@dataclass
class Context:
    """Run-time context of one method in one run.

    Attributes
    ----------
    device : str
        "cpu" or "cuda" (already resolved from "auto").
    seed : int
        The run's seed; methods seed every random generator from it.
    profile : str
        "quick" or "paper".
    workdir : Path
        The method's own results folder: checkpoints, training logs, figures go here.
    cache : FeatureCache
        The run's feature cache, shared by all methods (features computed once per image).
    show_progress : bool
        Whether to draw progress bars (off in tests and when stderr is not a terminal).
    scratch : Path or None
        Where :meth:`prediction_stack` puts its files: a folder of the job's own, given by the
        runner (:meth:`mribench.results.layout.RunLayout.scratch_dir`), which empties it once
        the scores of each evaluation set are written, after fitting and when the job ends or
        fails (:meth:`clear_scratch`). None (the default: tests, ``bench predict``): the
        stacks are in memory.
    """

    device: str = "cpu"
    seed: int = 0
    profile: str = "quick"
    workdir: Path = field(default_factory=lambda: Path("."))
    cache: FeatureCache = field(default_factory=lambda: FeatureCache(None))
    show_progress: bool = False
    method_name: str = "method"
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("mribench"))
    history: list[dict[str, Any]] = field(default_factory=list)
    scratch: Path | None = None

    def progress(self, iterable: Iterable[T], desc: str = "", total: int | None = None,
                 leave: bool = False) -> Iterator[T]:
        """Wrap ``iterable`` in a progress bar named after the method."""
        label = f"{self.method_name}: {desc}" if desc else self.method_name
        return iter(
            tqdm(iterable, desc=label, total=total, leave=leave, disable=not self.show_progress,
                 file=sys.stderr, dynamic_ncols=True)
        )

    def log(self, message: str, **values: Any) -> None:
        """Log a line to the method's training log (and the logger)."""
        self.logger.info("%s: %s %s", self.method_name, message,
                         json.dumps(values, default=float) if values else "")

    def record(self, **values: Any) -> None:
        """Append one row (e.g. an epoch's losses) to the training history (``history.json``)."""
        self.history.append({k: (float(v) if hasattr(v, "__float__") and not isinstance(v, str)
                                 else v) for k, v in values.items()})

    def subdir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def prediction_stack(self, n: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A zeroed ``(n, *shape)`` array of ``dtype`` that a method fills batch by batch with
        its predicted masks or maps (:mod:`mribench.api.stack`): a memory-mapped file in
        :attr:`scratch` when the runner gives one, so memory depends on the batch and not on
        the number of slices; in memory otherwise. Write it with
        :func:`mribench.api.stack.write_rows` (which releases the written pages)."""
        return new_stack(self.scratch, n, shape, dtype)

    def clear_scratch(self) -> None:
        """Remove the files of :meth:`prediction_stack` (the runner calls it once they are
        scored); a stack still referenced keeps its data until it is dropped (POSIX)."""
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
