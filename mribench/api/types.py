"""The data that flows between the parts: samples in, predictions out.

A :class:`Sample` is what a dataset plugin yields and what a method sees; a
:class:`Prediction` is what a method returns. Methods never read files or the split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

Task = Literal["classify", "segment"]
TASKS: tuple[Task, ...] = ("classify", "segment")

#: Label of an image whose class is unknown (e.g. Br35H's ``pred/`` folder).
UNLABELLED = -1


class _FromReader:
    """Marks a stored sample's image or mask as "read it from the reader" (:meth:`Sample.stored`)."""

    def __repr__(self) -> str:
        return "<stored>"

    def __reduce__(self) -> str:
        return "_FROM_READER"  # one instance, also after pickling


_FROM_READER: Any = _FromReader()


class SampleReader(Protocol):
    """Where a stored sample's pixels live (e.g. the on-disk data cache,
    :class:`mribench.data.store.SampleStore`): read on each access, never held."""

    shape: tuple[int, int]

    def read_image(self, index: int) -> np.ndarray: ...

    def read_mask(self, index: int) -> np.ndarray | None: ...

    def has_mask(self, index: int) -> bool: ...


@dataclass(eq=False)
class Sample:
    """One grayscale slice. Two samples are equal only when they are the same object (their
    arrays are not compared; ``id`` names a sample).

    Attributes
    ----------
    id : str
        Stable identifier, unique in its data set (e.g. ``"yes/y12"``). Split manifests list ids.
    group : str
        Near-duplicate cluster. Samples sharing a group never straddle train and test.
    label : int
        1 tumour, 0 no tumour, ``UNLABELLED`` (-1) unknown.
    image : np.ndarray
        float32, shape (H, W), values in [0, 1], already resized to the run's image size.
    mask : np.ndarray or None
        bool, shape (H, W), tumour pixels; None where the data set has no annotation.
    source : str
        Where the image came from (path, or generator and seed).
    original_size : tuple of int
        (height, width) before resizing.
    """

    id: str
    group: str
    label: int
    image: np.ndarray
    mask: np.ndarray | None = None
    source: str = ""
    original_size: tuple[int, int] = (0, 0)

    @classmethod
    def stored(cls, reader: SampleReader, index: int, *, id: str, group: str, label: int,
               source: str = "", original_size: tuple[int, int] = (0, 0)) -> Sample:
        """A sample whose image and mask stay in ``reader`` and are read on each access (a
        fresh array each time), so a data set larger than memory can be held as samples.
        Assigning ``image`` or ``mask`` keeps the assigned array instead."""
        sample = cls.__new__(cls)
        sample.__dict__.update(id=id, group=group, label=int(label), source=source,
                               original_size=tuple(original_size), _image=_FROM_READER,
                               _mask=_FROM_READER, _reader=reader, _index=int(index))
        return sample

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the image, without reading it."""
        if self.__dict__["_image"] is _FROM_READER:
            return tuple(self._reader.shape)  # type: ignore[return-value]
        return tuple(np.shape(self.image))  # type: ignore[return-value]

    @property
    def has_mask(self) -> bool:
        if self.__dict__["_mask"] is _FROM_READER:
            return self._reader.has_mask(self._index)
        return self.mask is not None

    def mask_or_empty(self) -> np.ndarray | None:
        """The mask, or an empty mask for a tumour-free slice; None when truly unknown."""
        mask = self.mask
        if mask is not None:
            return mask
        if self.label == 0:
            return np.zeros(self.shape, dtype=bool)
        return None


def _get_image(self: Sample) -> np.ndarray:
    image = self.__dict__["_image"]
    return self._reader.read_image(self._index) if image is _FROM_READER else image


def _set_image(self: Sample, value: Any) -> None:
    self.__dict__["_image"] = value


def _get_mask(self: Sample) -> np.ndarray | None:
    mask = self.__dict__["_mask"]
    return self._reader.read_mask(self._index) if mask is _FROM_READER else mask


def _set_mask(self: Sample, value: Any) -> None:
    self.__dict__["_mask"] = value


# ``image`` and ``mask`` stay dataclass fields (constructor, repr, ``dataclasses.replace``) but
# are read through properties, so a stored sample reads its pixels only when asked.
Sample.image = property(_get_image, _set_image, doc="float32 (H, W) in [0, 1].")  # type: ignore[assignment]
Sample.mask = property(_get_mask, _set_mask, doc="bool (H, W), or None.")  # type: ignore[assignment]


@dataclass
class Prediction:
    """What a method returns for a list of samples, in the same order.

    Attributes
    ----------
    ids : list of str
        The samples' ids, in order.
    labels : np.ndarray
        int, shape (n,), 0 or 1 (the classify answer). Required.
    scores : np.ndarray or None
        float, shape (n,), higher means more likely tumour (for AUC and ROC curves).
    masks : np.ndarray or None
        bool, shape (n, H, W) (the segment answer), for methods that segment. A bool array is
        kept as it is, never copied: a disk-backed stack (:mod:`mribench.api.stack`, a memory
        map a method fills through ``Context.prediction_stack``) stays on disk, and whoever
        reads it goes a chunk at a time (:func:`mribench.api.stack.read_rows`).
    prob_maps : np.ndarray or None
        float16/float32, shape (n, H, W), tumour probability per pixel, where the method has
        one; kept as it is (possibly a disk-backed stack, like ``masks``).
    variants : dict
        Extra result rows the method reports beside its own, keyed by suffix: a method
        ``two-pathway-cnn`` returning ``variants={"crf": p}`` adds a row ``two-pathway-cnn+crf``.
    """

    ids: list[str]
    labels: np.ndarray
    scores: np.ndarray | None = None
    masks: np.ndarray | None = None
    prob_maps: np.ndarray | None = None
    variants: dict[str, Prediction] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.ids)
        self.labels = np.asarray(self.labels).astype(np.int64).reshape(-1)
        if self.labels.shape != (n,):
            raise ValueError(f"labels has shape {self.labels.shape}, expected ({n},)")
        if self.scores is not None:
            self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
            if self.scores.shape != (n,):
                raise ValueError(f"scores has shape {self.scores.shape}, expected ({n},)")
        if self.masks is not None:
            if not (isinstance(self.masks, np.ndarray) and self.masks.dtype == bool):
                self.masks = np.asarray(self.masks).astype(bool)
            if self.masks.ndim != 3 or self.masks.shape[0] != n:
                raise ValueError(f"masks has shape {self.masks.shape}, expected ({n}, H, W)")
