"""The contract every data-set plugin fulfils.

A plugin in ``datasets/`` defines one subclass of :class:`Dataset` with a ``name`` and a
``load()`` that returns every labelled :class:`~mribench.api.types.Sample` at the run's image size.
Data sets never split themselves: the split manifests in ``benchmarks/splits/`` do.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from mribench.api.types import Sample

DEFAULT_IMAGE_SIZE = 256


class Dataset(ABC):
    """Base class of a data set.

    Parameters
    ----------
    data_dir : Path or None
        Where the files are (for data sets that read files).
    image_size : int
        Side of the square the images and masks are resized to.
    show_progress : bool
        Draw a progress bar while loading.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: Whether the data set lives in files the user must provide (``--data-dir``).
    needs_files: ClassVar[bool] = False

    def __init__(self, data_dir: Path | str | None = None, *, image_size: int = DEFAULT_IMAGE_SIZE,
                 show_progress: bool = False, **options: Any) -> None:
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.image_size = int(image_size)
        self.show_progress = show_progress
        self.options = options

    @abstractmethod
    def load(self) -> list[Sample]:
        """Every labelled sample, images float32 in [0, 1] at ``image_size``; masks where known.

        Raises :class:`~mribench.api.errors.DataError` with a one-line message naming the file and
        the fix for anything unreadable.
        """

    def iter_load(self) -> Iterator[Sample]:
        """:meth:`load` one sample at a time. The loader writes a cacheable data set to the
        data cache as this yields, so a plugin that overrides it to make samples on the fly
        may hold more slices than memory does. Default: iterate over :meth:`load`."""
        return iter(self.load())

    def load_unlabelled(self) -> list[Sample]:
        """Slices without a label (for ``bench predict``); none by default."""
        return []

    def official_parts(self) -> dict[str, str]:
        """Published train/val/test assignment of some ids (e.g. Br35H's Mask-RCNN split)."""
        return {}

    def fingerprint(self) -> str:
        """A string that changes when the data would load differently (for caches)."""
        return f"{self.name}:{self.data_dir}:{self.image_size}:{sorted(self.options.items())}"

    @property
    def split_name(self) -> str:
        """The data set's name as used in split-manifest file names."""
        return self.name

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {"name": cls.name, "description": cls.description, "needs_files": cls.needs_files}
