"""Harmonisation as a transform any data set can take: ``lgg:PATH[harmonise=true]``,
``folder:PATH[harmonise=true]``, ``synthetic[harmonise=true]``...

Br35H harmonises while it decodes its JPEGs (``br35h[harmonise=true]``, from the original
resolution). Every other data set gets the same transform (:func:`mribench.data.head.harmonise`:
crop to the head, pad square, resize, standardise inside the head) applied to its slices at the
run's size by :class:`HarmonisedDataset`, so preprocessing that changes pixels can travel with
a model: a run trained on a harmonised set scores its external sets harmonised the same way
(:class:`mribench.run.config.RunConfig`). Masks go through the same crop and resize; labels,
ids and groups are untouched, so a harmonised set keeps the splits of the original.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from mribench.api.dataset import Dataset
from mribench.api.types import Sample
from mribench.data.head import harmonise

__all__ = ["HARMONISE_VERSION", "HarmonisedDataset"]

#: Bump when the transform changes, to invalidate cached harmonised data sets.
HARMONISE_VERSION = 1


class HarmonisedDataset(Dataset):
    """``inner`` with every slice harmonised; named, split and grouped as ``inner``."""

    cacheable = True

    def __init__(self, inner: Dataset) -> None:
        super().__init__(inner.data_dir, image_size=inner.image_size,
                         show_progress=inner.show_progress)
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]  (an instance's name: the inner plugin's)
        self.options = {**inner.options, "harmonise": True}
        self.cacheable = bool(getattr(inner, "cacheable", False))  # type: ignore[misc]

    def iter_load(self) -> Iterator[Sample]:
        for sample in self.inner.iter_load():
            yield self._harmonised(sample)

    def load(self) -> list[Sample]:
        return list(self.iter_load())

    def _harmonised(self, sample: Sample) -> Sample:
        out = harmonise(sample.image, self.image_size, sample.mask)
        return replace(sample, image=out.image, mask=out.mask)

    def official_parts(self) -> dict[str, str]:
        return self.inner.official_parts()

    def fingerprint(self) -> str:
        return f"{self.inner.fingerprint()}|harmonised-v{HARMONISE_VERSION}"

    @property
    def split_name(self) -> str:
        return self.inner.split_name

    @property
    def split_options(self) -> dict[str, Any]:
        """The options ids and groups depend on: the inner set's (harmonising changes none)."""
        return dict(getattr(self.inner, "split_options", self.inner.options))

    def __getattr__(self, name: str) -> Any:  # group_kind and other plugin attributes
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
