"""Synthetic MRI-like axial slices with and without tumours: the embedded default data set.

Source: procedural (no paper, no download); the generator is :mod:`mribench.data.phantom`, which
documents the anatomy, the acquisition model and the tumour model.

Input: nothing (options ``n``, ``seed``, ``duplicates``; the image size is the run's).
Output: ``n`` labelled samples, exactly ``n // 2`` with a tumour, each with an exact bool mask
(all False without a tumour), float32 images in [0, 1] of ``image_size x image_size``.
Ids ``synthetic/00000``...; ``source`` ``phantom:seed=S:index=I``.

Options (``--dataset synthetic[n=200,seed=1]``):

- ``n`` (400): number of slices. 400 is enough for learning methods to beat chance clearly
  (small and weakly enhancing tumours keep them below 100%) while the quick suite stays fast.
- ``seed`` (0): everything is deterministic per seed.
- ``duplicates`` (0.2): chance that a slice re-images the previous slice's anatomy (same
  tumour and mask, new noise, slightly other contrast or resolution), about 9% of slices at
  0.2. Such pairs share a ``group``, so splits keep them together and the leakage audit has
  something to find, as on Br35H. Every other slice is its own group. 0 disables it.

Differences from real data: single 2-D slices with no patient structure beyond these pairs;
tissue contrasts are idealised (three sequences, T1/T2/FLAIR-like); no motion or wrap-around
artefacts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from mribench.api import DEFAULT_IMAGE_SIZE, Dataset, Interval, Sample
from mribench.data.load import resolve_options
from mribench.data.phantom import iter_generate

#: Bump when the generator's output changes (invalidates cached copies).
GENERATOR_VERSION = 3


class Synthetic(Dataset):
    name: ClassVar[str] = "synthetic"
    description: ClassVar[str] = (
        "procedural MRI-like slices, half with tumours of varied shape, size and contrast, "
        "with exact masks; no download"
    )
    needs_files: ClassVar[bool] = False
    cacheable: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {"n": 400, "seed": 0, "duplicates": 0.2}

    def __init__(self, data_dir: Path | str | None = None, *,
                 image_size: int = DEFAULT_IMAGE_SIZE, show_progress: bool = False,
                 **options: Any) -> None:
        super().__init__(None, image_size=image_size, show_progress=show_progress)
        self.options = resolve_options("synthetic", options, self.defaults, {
            "n": Interval(4, None, integer=True),
            "seed": Interval(0, None, integer=True),
            "duplicates": Interval(0, 1),
        })

    def fingerprint(self) -> str:
        return f"{super().fingerprint()}:generator={GENERATOR_VERSION}"

    def load(self) -> list[Sample]:
        return list(self.iter_load())

    def iter_load(self) -> Iterator[Sample]:
        """The slices one at a time, as they are rendered (the data cache writes them to disk
        as they come, so ``n`` may exceed what memory holds)."""
        n, seed = int(self.options["n"]), int(self.options["seed"])
        for s in iter_generate(n, self.image_size, seed, float(self.options["duplicates"])):
            yield Sample(id=f"synthetic/{s.index:05d}", group=f"synthetic/{s.group:05d}",
                         label=s.label, image=s.image, mask=s.mask,
                         source=f"phantom:seed={seed}:index={s.index}",
                         original_size=(self.image_size, self.image_size))
