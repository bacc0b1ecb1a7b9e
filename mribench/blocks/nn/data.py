"""Samples to tensors, seeded loaders and batch augmentation for the deep methods.

Two ways to feed a network, giving the same numbers:

- *stacked*: a list of :class:`~mribench.api.types.Sample` becomes one ``(n, C, S, S)`` float
  tensor (resized to the working resolution ``S``) with its targets (masks ``(n, 1, S, S)`` or
  labels ``(n,)``), and a :class:`SampleDataset` indexes it; memory grows with the data set;
- *streamed*: a :class:`SliceDataset` reads one sample when asked (a stored sample's pixels come
  from the on-disk sample store, :mod:`mribench.data.store`) and resizes it then, so memory
  depends on the batch, not the data set (50,000 slices at 128 px are 3.3 GB stacked).
  :func:`stream_inputs` gives the inference batches in order.

Both resize each sample alone (a one-sample ``F.interpolate``, :func:`images_to_tensor`), so an
item of a :class:`SliceDataset` equals the row of the stacked tensor bit for bit, and a
``DataLoader``'s collation stacks the same rows: the batches are identical.

:class:`Augment` transforms a whole batch at once (image and mask jointly), on the device the
batch lives on. Loaders are seeded: :func:`make_loader` gives the shuffling its own
``torch.Generator``, which :func:`mribench.blocks.nn.train.fit_model` re-seeds at the start of every
epoch (``seed + epoch``), so an interrupted run resumed from a checkpoint sees the same batches
as one that never stopped. Worker processes (``workers``) read and resize the slices in
parallel, each with one BLAS/OpenMP/torch thread; the order of the batches and their content
do not depend on them. :class:`EpochSampler` draws a fixed number of batches per epoch with a
share forced onto foreground slices (nnU-Net's oversampling).

Resizing policy: images are resized with bilinear interpolation and anti-aliasing; masks are
resized as floats the same way and thresholded at 0.5 (:func:`resize_masks`), which keeps thin
structures better than nearest-neighbour; predicted probability maps go back to a sample's size
with :func:`resize_back` (bilinear) before thresholding. These are the torch side of resizing,
one function for images and maps (:func:`resize_tensor`) and one for masks
(:func:`resize_masks`); arrays outside a network are resized by :mod:`mribench.blocks.resize`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
    TensorDataset,
)

from mribench.api.context import Context
from mribench.api.errors import DataError
from mribench.api.stack import write_rows
from mribench.api.types import Sample

__all__ = [
    "Augment",
    "EpochSampler",
    "SampleDataset",
    "SliceDataset",
    "TensorBatches",
    "images_to_tensor",
    "make_loader",
    "maps_for",
    "masks_to_tensor",
    "predict_stacks",
    "resize_back",
    "resize_masks",
    "resize_tensor",
    "scored_indices",
    "stream_inputs",
]


def resize_tensor(x: torch.Tensor, size: int | tuple[int, int] | None) -> torch.Tensor:
    """Resize an ``(n, C, H, W)`` float tensor to ``size`` (bilinear, anti-aliased)."""
    if size is None:
        return x
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(x.shape[-2:]) == hw:
        return x
    shrinking = hw[0] < x.shape[-2] or hw[1] < x.shape[-1]
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=shrinking)


def resize_masks(masks: torch.Tensor, size: int | tuple[int, int] | None) -> torch.Tensor:
    """Resize ``(n, 1, H, W)`` 0/1 masks: bilinear on floats, then threshold at 0.5."""
    if size is None:
        return masks.float()
    out = resize_tensor(masks.float(), size)
    return (out >= 0.5).float()


def images_to_tensor(samples: Sequence[Sample], size: int | None = None,
                     extra: Sequence[np.ndarray] | np.ndarray | None = None) -> torch.Tensor:
    """Stack the samples' images as an ``(n, C, S, S)`` float32 tensor at the working size.

    Args:
        samples: the samples (images float32 in [0, 1], any size; each is resized alone).
        size: working resolution ``S``; None keeps the images' own (equal) size.
        extra: optional further channels, one ``(k, H, W)`` or ``(H, W)`` array per sample
            (e.g. a fuzzy membership map), resized to the image's working size and appended.

    Returns:
        ``(n, 1 + k, S, S)`` float32 tensor on the CPU.
    """
    if len(samples) == 0:
        return torch.zeros((0, 1, size or 1, size or 1))
    rows = []
    for i, s in enumerate(samples):
        image = torch.from_numpy(np.ascontiguousarray(s.image, dtype=np.float32))[None, None]
        channels = [resize_tensor(image, size)]
        if extra is not None:
            e = np.ascontiguousarray(extra[i], dtype=np.float32)
            e = torch.from_numpy(e.reshape(-1, *e.shape[-2:]))[None]
            channels.append(resize_tensor(e, tuple(channels[0].shape[-2:])))
        rows.append(torch.cat(channels, dim=1))
    shapes = {tuple(r.shape) for r in rows}
    if len(shapes) > 1:
        raise DataError(f"images have different sizes {sorted(shapes)}; pass a working size")
    return torch.cat(rows, dim=0)


def masks_to_tensor(samples: Sequence[Sample], size: int | None = None) -> torch.Tensor:
    """Stack ``mask_or_empty()`` of each sample as ``(n, 1, S, S)`` float 0/1 masks.

    Raises DataError when a sample's mask is unknown (a tumour slice without annotation);
    filter with ``[s for s in samples if s.mask_or_empty() is not None]`` first.
    """
    rows = []
    for s in samples:
        m = s.mask_or_empty()
        if m is None:
            raise DataError(f"sample {s.id!r} has no mask (tumour slice without annotation)")
        rows.append(resize_masks(torch.from_numpy(np.asarray(m, dtype=np.float32))[None, None],
                                 size))
    if not rows:
        s = size or 1
        return torch.zeros((0, 1, s, s))
    return torch.cat(rows, dim=0)


def resize_back(maps: torch.Tensor | np.ndarray, shapes: Sequence[tuple[int, int]]
                ) -> list[np.ndarray]:
    """Resize each ``(S, S)`` map of an ``(n, S, S)`` / ``(n, 1, S, S)`` stack to its shape.

    Bilinear; returns float32 arrays (probabilities stay probabilities).
    """
    t = torch.as_tensor(maps, dtype=torch.float32)
    if t.ndim == 3:
        t = t[:, None]
    out = []
    for i, hw in enumerate(shapes):
        out.append(resize_tensor(t[i:i + 1], tuple(hw))[0, 0].numpy())
    return out


def maps_for(probs: torch.Tensor | np.ndarray, samples: Sequence[Sample]
             ) -> tuple[np.ndarray, np.ndarray]:
    """Probability maps ``(n, 1, S, S)`` back at each sample's size: (masks ``> 0.5``, maps)."""
    if not len(samples):
        return np.zeros((0, 1, 1), bool), np.zeros((0, 1, 1), np.float32)
    maps = np.stack(resize_back(probs, [s.shape for s in samples])).astype(np.float32)
    return maps > 0.5, maps


def predict_stacks(samples: Sequence[Sample], ctx: Context, batches: Iterable[torch.Tensor],
                   answer: Callable[[torch.Tensor, Sequence[Sample]],
                                    tuple[np.ndarray, np.ndarray]],
                   map_dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """(masks bool, maps ``map_dtype``), each ``(n, H, W)`` at the samples' size, filled a
    batch at a time: ``answer(x, chunk)`` gives the masks and maps of the next batch of inputs
    ``x`` (``chunk``: its samples), written into two stacks of ``ctx.prediction_stack`` (files
    in the job's scratch folder in a run, :mod:`mribench.api.stack`), so a method's memory at
    inference depends on its batch, not on the number of slices."""
    if not len(samples):
        return np.zeros((0, 1, 1), bool), np.zeros((0, 1, 1), map_dtype)
    shape = tuple(samples[0].shape)
    masks = ctx.prediction_stack(len(samples), shape, bool)
    maps = ctx.prediction_stack(len(samples), shape, map_dtype)
    start = 0
    for x in batches:
        part = slice(start, start + len(x))
        batch_masks, batch_maps = answer(x, samples[part])
        write_rows(masks, part, batch_masks)
        write_rows(maps, part, batch_maps)
        start += len(x)
    return masks, maps


def scored_indices(samples: Sequence[Sample]) -> list[int]:
    """Indices of the slices the segmentation metrics score: those whose ``mask`` is given
    (on Br35H the annotated tumour slices), else, when there is none, every slice whose mask
    is known (:meth:`~mribench.api.types.Sample.mask_or_empty`). Model selection on val (networks,
    thresholds, the CRF) uses these, so it aims at the test metric."""
    given = [i for i, s in enumerate(samples) if s.mask is not None]
    return given or [i for i, s in enumerate(samples) if s.mask_or_empty() is not None]


class SampleDataset(Dataset):
    """A torch Dataset over samples: ``(image tensor, target)`` pairs at the working size.

    Args:
        samples: the samples.
        size: working resolution (None: the images' own size).
        target: ``"mask"`` (``(1, S, S)`` 0/1 floats from ``mask_or_empty()``; samples whose
            mask is unknown are an error) or ``"label"`` (a float 0/1 scalar).
        extra: optional extra input channels per sample (see :func:`images_to_tensor`).

    Attributes:
        inputs: ``(n, C, S, S)`` tensor; targets: ``(n, 1, S, S)`` or ``(n,)`` tensor.
    """

    def __init__(self, samples: Sequence[Sample], size: int | None = None, *,
                 target: str = "label",
                 extra: Sequence[np.ndarray] | np.ndarray | None = None) -> None:
        if target not in ("mask", "label"):
            raise ValueError(f"target must be 'mask' or 'label', got {target!r}")
        self.inputs = images_to_tensor(samples, size, extra)
        if target == "mask":
            self.targets = masks_to_tensor(samples, size)
        else:
            self.targets = torch.tensor([float(s.label) for s in samples], dtype=torch.float32)

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def __getitem__(self, index: int | list[int] | torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One pair, or a whole batch for a list of indices."""
        return self.inputs[index], self.targets[index]


class SliceDataset(Dataset):
    """A streamed torch Dataset over samples: item ``i`` reads sample ``i`` (one slice) and
    returns it at the working size, exactly as the row ``i`` of :class:`SampleDataset`.

    Nothing is stacked: a stored sample's pixels are read from the sample store on access,
    so the memory is that of the batch. The dataset pickles small (the samples and their
    store, no pixels), which is what a worker process receives.

    Args:
        samples: the samples.
        size: working resolution (None: the images' own size, which must then be equal).
        target: ``"mask"`` (``(1, S, S)`` 0/1 floats from ``mask_or_empty()``), ``"label"``
            (a float 0/1 scalar) or None (the image tensor alone, for inference).
        extra: optional extra input channels per sample (see :func:`images_to_tensor`).
    """

    def __init__(self, samples: Sequence[Sample], size: int | None = None, *,
                 target: str | None = "label",
                 extra: Sequence[np.ndarray] | np.ndarray | None = None) -> None:
        if target not in ("mask", "label", None):
            raise ValueError(f"target must be 'mask', 'label' or None, got {target!r}")
        self.samples = list(samples)
        self.size, self.target, self.extra = size, target, extra
        if size is None:
            shapes = sorted({tuple(s.shape) for s in self.samples})
            if len(shapes) > 1:
                raise DataError(f"images have different sizes {shapes}; pass a working size")
        if target == "mask":
            unknown = next((s for s in self.samples if not _mask_known(s)), None)
            if unknown is not None:
                raise DataError(f"sample {unknown.id!r} has no mask (tumour slice without "
                                "annotation)")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        sample = self.samples[index]
        extra = None if self.extra is None else [self.extra[index]]
        x = images_to_tensor([sample], self.size, extra)[0]
        if self.target is None:
            return x
        if self.target == "mask":
            return x, masks_to_tensor([sample], self.size)[0]
        return x, torch.tensor(float(sample.label), dtype=torch.float32)


def _mask_known(sample: Sample) -> bool:
    """Whether ``mask_or_empty()`` is not None, without reading a stored mask."""
    return sample.has_mask or sample.label == 0


class EpochSampler(Sampler[list[int]]):
    """Batches of indices for one epoch: a fixed number, with foreground oversampling.

    Every batch draws ``batch_size`` indices uniformly (with replacement) from the data set,
    except its last ``round(oversample * batch_size)`` slots, drawn from ``foreground`` (the
    items whose target holds some foreground: nnU-Net forces a third of each batch onto
    foreground). ``iterations`` batches per epoch (None: as many as a pass over the data
    set, ``ceil(n / batch_size)``). Draws come from ``generator`` (the loader's, re-seeded by
    ``fit_model`` every epoch), so an epoch's batches depend only on the seed and the epoch.

    Args:
        n: data set size.
        batch_size: items per batch.
        foreground: indices of the foreground items (empty: no oversampling possible).
        oversample: share of each batch forced onto foreground, in [0, 1].
        iterations: batches per epoch (None: ``ceil(n / batch_size)``).
        generator: the torch generator the draws use.
    """

    def __init__(self, n: int, batch_size: int, *, foreground: Sequence[int] = (),
                 oversample: float = 0.0, iterations: int | None = None,
                 generator: torch.Generator | None = None) -> None:
        if n < 1 or batch_size < 1:
            raise ValueError(f"n and batch_size must be >= 1, got {n}, {batch_size}")
        if not 0.0 <= oversample <= 1.0:
            raise ValueError(f"oversample must be in [0, 1], got {oversample}")
        self.n, self.batch_size = int(n), int(batch_size)
        self.foreground = torch.as_tensor(list(foreground), dtype=torch.int64)
        self.forced = int(round(oversample * batch_size)) if len(self.foreground) else 0
        self.iterations = int(iterations) if iterations is not None else -(-n // batch_size)
        self.generator = generator if generator is not None else torch.Generator()

    def __len__(self) -> int:
        return self.iterations

    def __iter__(self) -> Iterator[list[int]]:
        free = self.batch_size - self.forced
        for _ in range(self.iterations):
            batch = torch.randint(0, self.n, (free,), generator=self.generator)
            if self.forced:
                pick = torch.randint(0, len(self.foreground), (self.forced,),
                                     generator=self.generator)
                batch = torch.cat([batch, self.foreground[pick]])
            yield batch.tolist()


def _single_threaded(worker_id: int) -> None:
    """Worker start: one BLAS/OpenMP thread and one torch thread (the workers together use
    the cores; the numbers of a worker's item do not depend on threads anyway)."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False, workers: int = 0,
                batch_sampler: Callable[[torch.Generator], Sampler] | None = None
                ) -> DataLoader:
    """A DataLoader whose shuffling is seeded from ``seed``.

    The loader's ``generator`` is re-seeded every epoch by ``fit_model`` (``seed + epoch``),
    which makes a resumed training see the same batches. ``workers``: worker processes that
    read and resize the items (0: in this process; the default, as a stacked or an already
    resized stored data set gains nothing from them but their start-up cost). They are
    started afresh every epoch (no ``persistent_workers``: a persistent iterator would skip
    the per-epoch draw of its base seed from the generator and so change the shuffling).
    ``batch_sampler``: builds a batch sampler (e.g. :class:`EpochSampler`) on the loader's
    generator, in place of ``shuffle`` / ``drop_last``.

    A :class:`SampleDataset` or ``TensorDataset`` (tensors already in memory) read in this
    process gets a :class:`TensorBatches` instead of a ``DataLoader``: the same batches, in
    the same order from the same generator, each one indexing of the tensors.
    """
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    if (isinstance(dataset, SampleDataset | TensorDataset) and workers == 0
            and batch_sampler is None):
        return TensorBatches(dataset, batch_size, shuffle=shuffle, drop_last=drop_last,
                             generator=generator)
    extra: dict[str, Any] = {}
    if workers > 0:
        extra = {"num_workers": int(workers), "worker_init_fn": _single_threaded,
                 "pin_memory": torch.cuda.is_available()}
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler(generator), generator=generator,
                          **extra)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                      generator=generator, **extra)


class TensorBatches:
    """The batches of a ``DataLoader`` over tensors in memory, without the ``DataLoader``.

    For a :class:`SampleDataset` or ``TensorDataset`` read in this process, a ``DataLoader``
    (``batch_size=None`` over a ``BatchSampler`` of a ``RandomSampler``) costs a Python call
    per item or a list-to-tensor conversion per batch, and an iterator with a profiler
    record per batch: together about a tenth of an epoch of a small MLP (``dwt-dnn``). This
    draws exactly what that loader draws from ``generator``, when it draws it (an iterator's
    base seed when the iterator is made, one ``randperm`` of the data set at its first batch,
    and the sampler's trailing ``randperm`` once exhausted) and slices the permutation: the
    same batches in the same order, and the generator left in the same state.

    Attributes (as a ``DataLoader``'s): ``dataset``, ``generator``, ``batch_sampler`` (the
    equivalent ``BatchSampler``: its ``batch_size`` and ``drop_last``).
    """

    def __init__(self, dataset: Dataset, batch_size: int, *, shuffle: bool = False,
                 drop_last: bool = False, generator: torch.Generator | None = None) -> None:
        self.dataset, self.shuffle = dataset, shuffle
        self.generator = generator if generator is not None else torch.Generator()
        order = (RandomSampler(dataset, generator=self.generator) if shuffle
                 else SequentialSampler(dataset))
        self.batch_sampler = BatchSampler(order, batch_size, drop_last)
        self.sampler = None

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[Any]:
        # a DataLoader's iterator draws its base seed when it is made (tqdm.auto's bar makes
        # one it never reads), its sampler's permutation on the first batch
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        return self._batches()

    def _batches(self) -> Iterator[Any]:
        n, size = len(self.dataset), self.batch_sampler.batch_size  # type: ignore[arg-type]
        g = self.generator
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        stop = n - n % size if self.batch_sampler.drop_last else n
        for start in range(0, stop, size):
            yield self.dataset[order[start:start + size]]
        if self.shuffle:
            torch.randperm(n, generator=g)  # RandomSampler's draw for its remainder


def stream_inputs(samples: Sequence[Sample], size: int | None, batch_size: int, *,
                  extra: Sequence[np.ndarray] | np.ndarray | None = None,
                  workers: int = 0) -> Iterator[torch.Tensor]:
    """The samples' input tensors at the working size, ``batch_size`` at a time, in order:
    the consecutive slices ``[k * batch_size, (k + 1) * batch_size)`` of
    :func:`images_to_tensor`'s stack, read one sample at a time."""
    if not len(samples):
        return iter(())
    loader = make_loader(SliceDataset(samples, size, target=None, extra=extra), batch_size,
                         workers=workers)
    return iter(loader)


@dataclass(frozen=True)
class Augment:
    """Random batch augmentation, applied jointly to images and their masks.

    Every transform is drawn per sample and applied to the whole batch at once with tensor
    operations (no Python loop over samples), on the batch's device, from torch's global
    generator (which ``fit_model`` seeds every epoch).

    Args:
        hflip: probability of a left-right flip.
        vflip: probability of an up-down flip.
        rot90: whether to rotate by a random multiple of 90 degrees.
        max_angle: largest small rotation in degrees (uniform in ``[-a, a]``; 0 = none).
        max_scale: largest zoom change (scale uniform in ``[1 - s, 1 + s]``; 0 = none).
        brightness: largest additive change of intensity (uniform in ``[-b, b]``).
        contrast: largest relative change of contrast around the image mean (``[1-c, 1+c]``).
        intensity_channels: how many leading channels brightness/contrast apply to (None:
            all); e.g. 1 for an (image, membership map) input.
        clip: clip intensities to [0, 1] afterwards.
        artefacts: probability that a sample gets an MRI artefact (one of
            :data:`mribench.blocks.artefacts.ARTEFACTS` at a severity 1..5, the same
            transforms the artefact axis scores under; 0 = none). Drawn per sample from the
            same generator, applied on the CPU one image at a time to the intensity channels
            after the geometric transforms; the mask is not touched.
    """

    hflip: float = 0.5
    vflip: float = 0.0
    rot90: bool = False
    max_angle: float = 0.0
    max_scale: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    intensity_channels: int | None = None
    clip: bool = True
    artefacts: float = 0.0

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Augment ``x`` (n, C, H, W) and, when it is a mask stack (n, k, H, W), ``y``.

        Targets that are not spatial (labels) pass through unchanged. Masks come back as 0/1.
        """
        n = x.shape[0]
        if n == 0:
            return x, y
        spatial = y is not None and y.ndim == 4 and y.shape[-2:] == x.shape[-2:]
        dev = x.device
        c = x.shape[1]
        joint = torch.cat([x, y.to(x.dtype)], dim=1) if spatial else x
        if self.hflip > 0:
            flip = torch.rand(n, device=dev) < self.hflip
            joint = torch.where(flip[:, None, None, None], joint.flip(-1), joint)
        if self.vflip > 0:
            flip = torch.rand(n, device=dev) < self.vflip
            joint = torch.where(flip[:, None, None, None], joint.flip(-2), joint)
        if self.rot90 and joint.shape[-1] == joint.shape[-2]:
            k = torch.randint(0, 4, (n,), device=dev)
            out = joint
            for turns in (1, 2, 3):
                out = torch.where((k == turns)[:, None, None, None],
                                  torch.rot90(joint, turns, dims=(-2, -1)), out)
            joint = out
        if self.max_angle > 0 or self.max_scale > 0:
            angle = (torch.rand(n, device=dev) * 2 - 1) * math.radians(self.max_angle)
            scale = 1 + (torch.rand(n, device=dev) * 2 - 1) * self.max_scale
            cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
            zero = torch.zeros_like(cos)
            theta = torch.stack([torch.stack([cos, -sin, zero], 1),
                                 torch.stack([sin, cos, zero], 1)], 1).to(joint.dtype)
            grid = F.affine_grid(theta, list(joint.shape), align_corners=False)
            joint = F.grid_sample(joint, grid, mode="bilinear", padding_mode="zeros",
                                  align_corners=False)
        xs = joint[:, :c]
        if self.artefacts > 0:
            xs = self._mri_artefacts(xs)
        if self.brightness > 0 or self.contrast > 0:
            k = c if self.intensity_channels is None else min(c, self.intensity_channels)
            part = xs[:, :k]
            if self.contrast > 0:
                factor = 1 + (torch.rand(n, 1, 1, 1, device=dev) * 2 - 1) * self.contrast
                mean = part.mean(dim=(-2, -1), keepdim=True)
                part = (part - mean) * factor + mean
            if self.brightness > 0:
                part = part + (torch.rand(n, 1, 1, 1, device=dev) * 2 - 1) * self.brightness
            if self.clip:
                part = part.clamp(0, 1)
            xs = torch.cat([part, xs[:, k:]], dim=1)
        if spatial:
            return xs.contiguous(), (joint[:, c:] >= 0.5).to(y.dtype)
        return xs.contiguous(), y

    def _mri_artefacts(self, xs: torch.Tensor) -> torch.Tensor:
        """``xs`` with an MRI artefact on each sample drawn (probability ``artefacts``): the
        draw and each artefact's seed come from torch's generator, so training repeats."""
        import numpy as np

        from mribench.blocks.artefacts import random_artefact

        n, c = xs.shape[:2]
        k = c if self.intensity_channels is None else min(c, self.intensity_channels)
        chosen = torch.rand(n) < self.artefacts
        seeds = torch.randint(0, 2**62, (n,))
        if not bool(chosen.any()):
            return xs
        out = xs.detach().clone()
        for i in torch.nonzero(chosen).flatten().tolist():
            rng = np.random.default_rng(int(seeds[i]))
            for ch in range(k):
                image = out[i, ch].float().cpu().numpy()
                out[i, ch] = torch.from_numpy(random_artefact(image, rng)).to(out.dtype)
        return out
