"""Patch sampling for the patch-wise CNNs (Havaei et al. 2017; the multi-scale CNN).

Patch CNNs classify the centre pixel of a small window. Training draws window *centres* from a
stack of slices, then cuts the windows out of the stack with one fancy-indexing gather (no loop
over patches):

- :func:`head_regions`: where centres may fall (the head, from
  :func:`mribench.blocks.preprocess.brain_mask` without skull erosion, plus the tumour itself);
- :func:`sample_centres`: seeded centres, either *balanced* (a given share on tumour pixels, the
  rest on non-tumour pixels of the head; Havaei et al.'s first training phase) or from the
  *natural* distribution (uniform over the head; their second phase);
- :class:`PatchSource`: extracts ``(N, C, size, size)`` windows from the stack, single- or
  multi-scale (a ``size * s`` window averaged down by ``s`` to ``size``);
- :class:`PatchLoader`: batches of ``(windows, centre labels)`` for
  :func:`mribench.blocks.nn.train.fit_model`, with fresh centres every epoch; :func:`slice_batches`: whole validation slices for networks run densely;
  :func:`dice_optimal_offset` / :func:`calibrate_offset`: the decision threshold (a logit
  offset) chosen on them, :func:`best_dice` the matching validation score;
- what the plugins share: :class:`PatchCNNParams` (their common parameters),
  :func:`known_slices` (training slices at the working size), :func:`normalise_intensity`
  (per-slice brightness), :func:`maps_for` (maps back at each slice's size);
- :func:`position_features`: normalised (row, column, radius) of centres, or of every pixel of a
  slice (the multi-scale CNN's location input);
- streamed training (memory by the batch, not the data set, the same windows bit for bit):
  :func:`prepare_slices` writes the prepared slices to a scratch file (:class:`SlicesOnDisk`)
  and keeps only their bool masks and regions, a batch of centres reads the slices it touches
  (:meth:`SlicesOnDisk.take`), and :func:`val_slice_batches` reads only the validation slices
  kept; :func:`map_slices` writes a network's maps of the slices as a further channel (an input
  cascade) and :func:`head_statistics` is a per-channel mean and standard deviation of their
  head pixels, both a batch at a time.

Sampling as nnU-Net's: balanced sampling is the patch CNNs' foreground oversampling
(``positive_fraction`` of the centres on tumour pixels; 0.5 by default, nnU-Net forces a third
of its patches onto foreground), and ``patches_per_epoch`` their fixed number of iterations
per epoch.

Window convention: the window of size ``k`` around pixel ``(y, x)`` covers rows
``y - k // 2 .. y - k // 2 + k - 1`` (centred for odd ``k``; one more row above than below for
even ``k``), columns likewise; pixels outside the slice read as 0 (MRI background). The dense,
fully convolutional inference of the plugins follows the same convention, so a network gives
the same answer patch by patch and on a whole slice (tested).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from mribench.api.export import load_step, resize_step
from mribench.api.overlap import dice_from_counts
from mribench.api.params import FLAG, Interval, OrNone
from mribench.api.types import Sample
from mribench.blocks.nn.data import images_to_tensor, maps_for, masks_to_tensor, scored_indices
from mribench.blocks.nn.train import TrainParams
from mribench.blocks.preprocess import brain_mask

__all__ = ["Centres", "PatchLoader", "PatchSource", "head_regions", "position_features",
           "position_map", "sample_centres", "slice_batches", "dice_optimal_offset",
           "best_dice", "calibrate_offset", "PatchCNNParams", "known_slices", "maps_for",
           "normalise_intensity", "slice_images", "SlicesOnDisk", "prepare_slices",
           "val_slice_batches", "map_slices", "head_statistics"]


@dataclass(frozen=True)
class Centres:
    """Window centres: slice index, row, column and the centre pixel's 0/1 label, each (N,)."""

    index: np.ndarray
    y: np.ndarray
    x: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def take(self, order: np.ndarray | slice) -> Centres:
        return Centres(self.index[order], self.y[order], self.x[order], self.label[order])


def head_regions(images: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
    """Bool (n, H, W): the head of each slice (Otsu-based, no skull erosion), plus its tumour."""
    images = np.asarray(images, dtype=np.float32)
    regions = np.stack([brain_mask(im, erosion=0.0) for im in images]) if len(images) else \
        np.zeros(images.shape, bool)
    if masks is not None:
        regions |= np.asarray(masks, dtype=bool)
    # A slice where thresholding finds nothing keeps every pixel eligible.
    empty = ~regions.reshape(len(regions), -1).any(axis=1)
    regions[empty] = True
    return regions


def _draw(flags: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` flat indices drawn uniformly, with replacement, among the True entries of ``flags``.

    Dense flags are drawn by vectorised rejection (no index list of the whole stack); sparse
    ones from their index list.
    """
    flat = flags.reshape(-1)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    density = np.count_nonzero(flat) / max(flat.size, 1)
    if density == 0:
        raise ValueError("no eligible pixel to draw from")
    if density < 0.05:
        return rng.choice(np.flatnonzero(flat), size=k, replace=True)
    out = np.empty(0, dtype=np.int64)
    while out.size < k:
        trial = rng.integers(0, flat.size, size=int(1.3 * (k - out.size) / density) + 16)
        out = np.concatenate([out, trial[flat[trial]]])
    return out[:k]


def sample_centres(masks: np.ndarray, regions: np.ndarray, n: int, *,
                   positive_fraction: float | None = 0.5,
                   rng: np.random.Generator | int = 0) -> Centres:
    """Draw ``n`` window centres from a stack of slices.

    Args:
        masks: bool (m, H, W) tumour masks.
        regions: bool (m, H, W) where centres may fall (e.g. :func:`head_regions`).
        n: how many centres.
        positive_fraction: share of centres on tumour pixels (balanced sampling: 0.5), the rest
            on non-tumour pixels of ``regions``; None draws uniformly over ``regions``
            (the natural class distribution). With no tumour pixel at all, every centre is
            negative.
        rng: a numpy Generator or a seed.

    Returns:
        :class:`Centres`, shuffled.
    """
    masks = np.asarray(masks, dtype=bool)
    regions = np.asarray(regions, dtype=bool)
    if masks.shape != regions.shape or masks.ndim != 3:
        raise ValueError(f"masks {masks.shape} and regions {regions.shape} must be (m, H, W)")
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    if positive_fraction is None:
        flat = _draw(regions | masks, n, rng)
    else:
        if not 0.0 <= positive_fraction <= 1.0:
            raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
        n_pos = int(round(n * positive_fraction)) if masks.any() else 0
        negatives = np.greater(regions, masks)  # regions & ~masks, without a ~masks copy
        if not negatives.any():
            n_pos = n
        flat = np.concatenate([_draw(masks, n_pos, rng), _draw(negatives, n - n_pos, rng)])
        flat = flat[rng.permutation(flat.size)]
    index, y, x = np.unravel_index(flat, masks.shape)
    return Centres(index.astype(np.int64), y.astype(np.int64), x.astype(np.int64),
                   masks.reshape(-1)[flat].astype(np.float32))


class PatchSource:
    """A stack of slices from which windows are cut in one gather.

    The stack is not padded (that would cost up to (1 + 2 size / H)^2 times its memory for the
    large context windows): indices outside the slice are clamped and the pixels they read
    are zeroed. A down-sampled scale ``s`` reads a box-filtered copy of the stack (s x s block
    means, computed once per scale), so its window costs a ``size x size`` gather, not
    ``(size s)^2``.

    Args:
        images: float (m, H, W) or (m, C, H, W).
    """

    def __init__(self, images: np.ndarray | torch.Tensor) -> None:
        x = torch.as_tensor(np.asarray(images, dtype=np.float32))
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4:
            raise ValueError(f"images must be (m, H, W) or (m, C, H, W), got {tuple(x.shape)}")
        self.shape = tuple(x.shape)
        # Planes in (m, H', W', C) layout (one gather per pixel), by scale; plane s holds the
        # s x s block mean whose top-left pixel is (row - s + 1, column - s + 1).
        self._planes = {1: x.permute(0, 2, 3, 1).contiguous()}

    def _plane(self, scale: int) -> torch.Tensor:
        if scale not in self._planes:
            x = self._planes[1].permute(0, 3, 1, 2)
            boxed = F.avg_pool2d(F.pad(x, [scale - 1] * 4), scale, stride=1)
            self._planes[scale] = boxed.permute(0, 2, 3, 1).contiguous()
        return self._planes[scale]

    def take(self, centres: Centres) -> tuple[PatchSource, Centres]:
        """The source holding ``centres``' slices and the centres in it: itself (a streamed
        source, :class:`SlicesOnDisk`, returns the few slices a batch touches)."""
        return self, centres

    def extract(self, centres: Centres, size: int, scale: int = 1) -> torch.Tensor:
        """Windows ``(N, C, size, size)`` around ``centres``.

        With ``scale`` s > 1 the window of side ``size * s`` is averaged over s x s blocks
        down to ``size`` (the down-sampled context scales of the multi-scale CNN).
        """
        if scale < 1:
            raise ValueError(f"scale must be >= 1, got {scale}")
        plane = self._plane(scale)
        hp, wp = plane.shape[1], plane.shape[2]
        offsets = torch.arange(size) * scale - (size * scale) // 2 + (scale - 1)
        idx = torch.as_tensor(centres.index)
        ys = torch.as_tensor(centres.y)[:, None] + offsets[None]
        xs = torch.as_tensor(centres.x)[:, None] + offsets[None]
        inside = (((ys >= 0) & (ys < hp))[:, :, None] & ((xs >= 0) & (xs < wp))[:, None, :])
        patches = plane[idx[:, None, None], ys.clamp(0, hp - 1)[:, :, None],
                        xs.clamp(0, wp - 1)[:, None, :]]
        return (patches * inside[..., None]).permute(0, 3, 1, 2).contiguous()


class SlicesOnDisk:
    """Prepared training slices streamed from a scratch file: a batch of window centres reads
    only the slices it touches (:meth:`take`), so the stack is never in memory.

    :func:`prepare_slices` writes it: the slices at the working size, normalised, float32, one
    after the other in ``folder / "slices.f32"``; reads are positional (``os.pread``), so the
    pages read stay in the kernel's page cache, not in the process. Windows cut from
    :meth:`take`'s source equal those of a :class:`PatchSource` over the whole stack, bit for
    bit (the box filters of the context scales work slice by slice).

    Each file is one channel: ``more`` adds channels kept in files of the same layout (e.g. the
    input cascade's maps, :func:`map_slices`; :meth:`with_channels` joins two sources).
    """

    def __init__(self, path: Path, count: int, shape: tuple[int, int], *,
                 more: Sequence[Path] = ()) -> None:
        self.path, self.count, self.shape = Path(path), int(count), tuple(shape)
        self.paths = (self.path, *(Path(m) for m in more))
        self._bytes = 4 * self.shape[0] * self.shape[1]
        self._fds: list[int] = []

    @property
    def channels(self) -> int:
        return len(self.paths)

    def with_channels(self, other: SlicesOnDisk) -> SlicesOnDisk:
        """The same slices with ``other``'s channels after this one's (a new reader)."""
        if other.count != self.count or other.shape != self.shape:
            raise ValueError(f"cannot join {other.count} slices of {other.shape} to "
                             f"{self.count} of {self.shape}")
        return SlicesOnDisk(self.path, self.count, self.shape,
                            more=(*self.paths[1:], *other.paths))

    def read(self, indices: np.ndarray) -> torch.Tensor:
        """Slices ``indices`` as ``(k, C, H, W)`` float32."""
        if not self._fds:
            flags = os.O_RDONLY | getattr(os, "O_BINARY", 0)
            self._fds = [os.open(path, flags) for path in self.paths]
        out = np.empty((len(indices), self.channels, *self.shape), np.float32)
        for row, index in enumerate(np.asarray(indices, dtype=np.int64)):
            for c, fd in enumerate(self._fds):
                raw = os.pread(fd, self._bytes, int(index) * self._bytes)
                out[row, c] = np.frombuffer(raw, np.float32).reshape(self.shape)
        return torch.from_numpy(out)

    def batches(self, size: int) -> Iterator[tuple[int, torch.Tensor]]:
        """Every slice in order, ``size`` at a time: ``(first index, (k, C, H, W))``."""
        for start in range(0, self.count, size):
            yield start, self.read(np.arange(start, min(start + size, self.count)))

    def take(self, centres: Centres) -> tuple[PatchSource, Centres]:
        """A :class:`PatchSource` of the slices ``centres`` fall in, and the centres
        renumbered into it."""
        unique, local = np.unique(centres.index, return_inverse=True)
        return (PatchSource(self.read(unique)),
                Centres(local.astype(np.int64), centres.y, centres.x, centres.label))

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []


def map_slices(source: SlicesOnDisk, fn: Callable[[torch.Tensor], torch.Tensor], path: Path,
               batch_size: int) -> SlicesOnDisk:
    """``fn`` of every slice of ``source``, ``batch_size`` slices at a time (consecutive, from
    the first: the batches of a pass over the stack), written to ``path`` as a one-channel
    :class:`SlicesOnDisk` (e.g. a network's probability maps, the input cascade's second
    channel). ``fn`` maps ``(k, C, H, W)`` to ``(k, 1, H, W)``."""
    with open(path, "wb") as out:
        for _, x in source.batches(batch_size):
            y = fn(x)
            if tuple(y.shape) != (len(x), 1, *source.shape):
                raise ValueError(f"map of shape {tuple(y.shape)} for slices {tuple(x.shape)}")
            out.write(np.ascontiguousarray(y.numpy(), dtype=np.float32).tobytes())
    return SlicesOnDisk(path, source.count, source.shape)


def head_statistics(slices: SlicesOnDisk | torch.Tensor, regions: np.ndarray, *,
                    chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation (with Bessel's correction) of the pixels of
    ``regions`` (bool ``(n, H, W)``) over slices ``(n, C, H, W)``, a stack or streamed from
    disk a ``chunk`` at a time: float64 ``(C,)`` each.

    Accumulated in float64 (each chunk's mean and sum of squared deviations, merged with Chan
    et al.'s pairwise update), so the result does not depend on the chunks, the thread count
    or the CPU's vector width; rounded to float32 it is the correctly rounded mean and the
    same standard deviation as torch's ``std`` (which accumulates in double too). torch's
    float32 ``mean`` of the stacked pixels may be an ulp away, and which ulp depends on its
    thread count (on the quick-synthetic training slices: 0.99999988 on one thread, 1.0 on
    two).
    """
    regions = np.asarray(regions, dtype=bool)
    parts = (slices.batches(chunk) if isinstance(slices, SlicesOnDisk) else
             ((start, slices[start:start + chunk]) for start in range(0, len(slices), chunk)))
    count, mean, m2 = 0, np.zeros(0), np.zeros(0)
    for start, x in parts:
        inside = regions[start:start + len(x)]
        values = np.stack([c[inside] for c in x.numpy().transpose(1, 0, 2, 3)]
                          ).astype(np.float64)
        k = values.shape[1]
        if k == 0:
            continue
        part_mean = values.mean(axis=1)
        part_m2 = ((values - part_mean[:, None]) ** 2).sum(axis=1)
        if count == 0:
            mean, m2 = part_mean, part_m2
        else:
            delta, total = part_mean - mean, count + k
            mean = mean + delta * (k / total)
            m2 = m2 + part_m2 + delta ** 2 * (count * k / total)
        count += k
    if count == 0:
        raise ValueError("no pixel inside the regions")
    return mean, np.sqrt(m2 / max(count - 1, 1))


def prepare_slices(samples: Sequence[Sample], size: int | None, folder: Path, *,
                   normalise: bool = False, chunk: int = 64
                   ) -> tuple[SlicesOnDisk, np.ndarray, np.ndarray]:
    """Stream the samples (all with a known mask) through the preparation of
    :func:`known_slices` a ``chunk`` at a time: the slices go to a :class:`SlicesOnDisk` in
    ``folder``; their masks and :func:`head_regions` stay in memory as bool ``(n, S, S)``
    stacks (what :func:`sample_centres` draws from). The same slices, masks and regions as
    :func:`known_slices` and :func:`head_regions` on the whole stack, bit for bit (every step
    works slice by slice)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    masks: np.ndarray | None = None
    regions: np.ndarray | None = None
    path = folder / "slices.f32"
    with open(path, "wb") as out:
        for start in range(0, len(samples), chunk):
            part = samples[start:start + chunk]
            images = slice_images(part, size, normalise)
            part_masks = masks_to_tensor(part, size)[:, 0].numpy() > 0.5
            if masks is None:
                masks = np.zeros((len(samples), *part_masks.shape[1:]), bool)
                regions = np.zeros(masks.shape, bool)
            masks[start:start + len(part)] = part_masks
            regions[start:start + len(part)] = head_regions(images[:, 0].numpy(), part_masks)
            out.write(np.ascontiguousarray(images.numpy(), dtype=np.float32).tobytes())
    if masks is None or regions is None:
        raise ValueError("no slice to prepare")
    return SlicesOnDisk(path, len(samples), masks.shape[1:]), masks, regions


def val_slice_batches(samples: Sequence[Sample], size: int | None, batch_size: int, *,
                      normalise: bool = False, margin: int = 0, limit: int | None = None,
                      seed: int = 0) -> tuple[list[Sample], list[tuple[torch.Tensor,
                                                                       torch.Tensor]]]:
    """The validation slices of :func:`known_slices` (``scored``) and their
    :func:`slice_batches`, the same batches, reading only the ``limit`` slices kept."""
    kept = [samples[i] for i in scored_indices(samples)]
    if not kept:
        return kept, []
    order = np.arange(len(kept))
    if limit is not None and limit < len(order):
        order = np.sort(np.random.default_rng(seed).permutation(len(order))[:limit])
    chosen = [kept[i] for i in order]
    masks = masks_to_tensor(chosen, size)[:, 0].numpy() > 0.5
    return kept, slice_batches(slice_images(chosen, size, normalise), masks, batch_size,
                               margin=margin)


def position_features(y: np.ndarray | torch.Tensor, x: np.ndarray | torch.Tensor,
                      shape: Sequence[int]) -> torch.Tensor:
    """(N, 3) location of pixels: row and column scaled to [-1, 1] and the radius / sqrt(2)."""
    h, w = int(shape[0]), int(shape[1])
    yn = 2.0 * (torch.as_tensor(y, dtype=torch.float32) + 0.5) / h - 1.0
    xn = 2.0 * (torch.as_tensor(x, dtype=torch.float32) + 0.5) / w - 1.0
    r = torch.sqrt(yn * yn + xn * xn) / np.sqrt(2.0)
    return torch.stack([yn, xn, r], dim=1)


def position_map(shape: Sequence[int]) -> torch.Tensor:
    """(3, H, W): :func:`position_features` of every pixel of an H x W slice."""
    h, w = int(shape[0]), int(shape[1])
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return position_features(yy.reshape(-1), xx.reshape(-1), (h, w)).T.reshape(3, h, w)


class PatchLoader:
    """Batches ``(inputs, labels)`` of windows for :func:`mribench.blocks.nn.train.fit_model`.

    Every pass draws ``n_patches`` new centres with :func:`sample_centres`, seeded from torch's
    global generator (which ``fit_model`` re-seeds at the start of each epoch, so a resumed
    training sees the same patches).

    Args:
        masks, regions: bool (m, H, W) stacks (see :func:`sample_centres`).
        make_input: maps a batch of :class:`Centres` to the network's input tensor
            (e.g. ``lambda c: source.extract(c, 33)``).
        n_patches: centres per pass.
        batch_size: centres per batch.
        positive_fraction: share of tumour centres (None: natural distribution).

    Labels are float32 ``(N,)`` 0/1 tensors (the centre pixels' classes).
    """

    def __init__(self, masks: np.ndarray, regions: np.ndarray,
                 make_input: Callable[[Centres], torch.Tensor], *, n_patches: int,
                 batch_size: int, positive_fraction: float | None = 0.5) -> None:
        if n_patches < 1 or batch_size < 1:
            raise ValueError(f"n_patches and batch_size must be >= 1, got {n_patches}, "
                             f"{batch_size}")
        self.masks, self.regions = masks, regions
        self.make_input = make_input
        self.n_patches, self.batch_size = int(n_patches), int(batch_size)
        self.positive_fraction = positive_fraction

    def __len__(self) -> int:
        return -(-self.n_patches // self.batch_size)

    def centres(self) -> Centres:
        """The centres of the next pass."""
        seed = int(torch.randint(0, 2**62, (1,)).item())
        return sample_centres(self.masks, self.regions, self.n_patches,
                              positive_fraction=self.positive_fraction, rng=seed)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        centres = self.centres()
        for start in range(0, len(centres), self.batch_size):
            batch = centres.take(slice(start, start + self.batch_size))
            yield self.make_input(batch), torch.from_numpy(batch.label)


def slice_batches(inputs: torch.Tensor, masks: np.ndarray | torch.Tensor, batch_size: int, *,
                  margin: int = 0, limit: int | None = None, seed: int = 0
                  ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Whole slices as ``(inputs, masks)`` batches, to validate a fully convolutional patch
    network on what it is scored on (the pooled Dice of whole slices), with ``fit_model``.

    Args:
        inputs: (m, C, H, W) slices.
        masks: (m, H, W) bool targets.
        batch_size: slices per batch.
        margin: zero padding added around each slice (a network whose output is smaller than
            its input by ``2 * margin``).
        limit: keep at most this many slices (a seeded random subset; None keeps all).
        seed: seed of that subset.

    Returns:
        A list of ``(inputs (b, C, H + 2 margin, W + 2 margin), masks (b, 1, H, W) float)``.
    """
    masks = torch.as_tensor(np.asarray(masks, dtype=np.float32))[:, None]
    order = np.arange(len(inputs))
    if limit is not None and limit < len(order):
        order = np.sort(np.random.default_rng(seed).permutation(len(order))[:limit])
    keep = torch.as_tensor(order)
    x = inputs[keep]
    if margin:
        x = F.pad(x, [margin] * 4)
    return [(x[i:i + batch_size], masks[keep][i:i + batch_size])
            for i in range(0, len(keep), batch_size)]


def dice_optimal_offset(logits: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    """The logit threshold with the best pooled Dice, and that Dice.

    Networks trained on re-balanced windows are biased towards (or, after re-training on the
    natural distribution, away from) the rare tumour class; predicting tumour where
    ``logit > offset`` with the offset chosen on validation pixels undoes that. Exact: every
    cut of the sorted logits is tried (one sort, cumulative counts). With no tumour pixel the
    offset is the largest logit (predict nothing) and the Dice 1.

    Returns:
        ``(offset, dice)``; use ``sigmoid(logit - offset)`` as the calibrated probability.
    """
    z = logits.reshape(-1).float()
    y = targets.reshape(-1) >= 0.5
    if z.numel() == 0:
        return 0.0, float("nan")
    order = torch.argsort(z, descending=True)
    zs, ys = z[order], y[order]
    positives = int(ys.sum())
    if positives == 0:
        return float(zs[0]), 1.0
    # Cut after the k highest logits: tp = tumour pixels among them, fp = k - tp. Exact int64
    # counts, Dice in float64, searched in float32 (the rounding the search has always used).
    tp = torch.cumsum(ys.long(), 0).cpu().numpy()
    k = np.arange(1, zs.numel() + 1)
    dice = torch.from_numpy(
        dice_from_counts(tp, k - tp, positives - tp, empty=1.0).astype(np.float32)).to(zs.device)
    # Only cut between distinct values (ties are predicted together).
    distinct = torch.ones_like(dice, dtype=torch.bool)
    distinct[:-1] = zs[:-1] > zs[1:]
    dice = torch.where(distinct, dice, torch.full_like(dice, -1.0))
    best = int(torch.argmax(dice))
    low = float(zs[best + 1]) if best + 1 < zs.numel() else float(zs[best]) - 1.0
    return 0.5 * (float(zs[best]) + low), float(dice[best])


def best_dice(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Validation score for ``fit_model``: pooled Dice at the best threshold
    (:func:`dice_optimal_offset`)."""
    return dice_optimal_offset(logits, targets)[1]


def calibrate_offset(net: torch.nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
                     ctx: Any) -> float:
    """Run a dense network over validation ``batches`` (e.g. :func:`slice_batches`) and return
    its Dice-optimal logit offset (:func:`dice_optimal_offset`), logging it."""
    from mribench.blocks.nn.train import predict_batches

    logits = [predict_batches(net, x, ctx.device, len(x), activation=None) for x, _ in batches]
    targets = [y for _, y in batches]
    z, y = torch.cat(logits), torch.cat(targets)
    offset, dice = dice_optimal_offset(z, y)
    pred, truth = z > 0, y >= 0.5
    tp = int((pred & truth).sum())
    ctx.log("decision threshold chosen on val", logit_offset=offset, val_dice=dice,
            dice_at_zero=dice_from_counts(tp, int(pred.sum()) - tp, int(truth.sum()) - tp,
                                          empty=0.0))
    return offset


# -- what the patch-CNN plugins share ---------------------------------------------------------


@dataclass(frozen=True)
class PatchCNNParams(TrainParams):
    """Parameters every patch CNN plugin has (each plugin's ``Params`` extends these); the
    training knobs are checked by the rules of :class:`mribench.blocks.nn.train.TrainParams`.

    ``work_size``: side the slices are resized to for the network (None: the run's size);
    ``patches_per_epoch``, ``positive_fraction`` (share of tumour window centres),
    ``batch_size``, ``optimizer``, ``lr``, ``weight_decay``, ``patience`` (early stopping),
    ``max_minutes`` (training budget, None: none): training; ``val_slices``: at most this many
    whole validation slices score each epoch (None: all); ``calibrate``: choose the decision
    threshold on them (:func:`dice_optimal_offset`); ``infer_batch``: slices per dense pass;
    ``dropout``, ``batch_norm``: the network; ``normalise``: divide each slice by its head's
    mean intensity (:func:`normalise_intensity`); ``crf_iterations``, ``crf_max_images``: the
    dense CRF of the ``+crf`` row (:class:`mribench.blocks.crf.CRFVariant`).
    """

    constraints: ClassVar[dict[str, Any]] = {
        "work_size": OrNone(Interval(33, None, integer=True)),
        "patches_per_epoch": Interval(1, None, integer=True),
        "positive_fraction": Interval(0, 1, closed="neither"),
        "val_slices": OrNone(Interval(1, None, integer=True)),
        "calibrate": FLAG,
        "batch_norm": FLAG,
        "normalise": FLAG,
        "crf_iterations": Interval(1, 50, integer=True),
        "crf_max_images": Interval(1, None, integer=True),
    }

    work_size: int | None = None
    patches_per_epoch: int = 50_000
    positive_fraction: float = 0.5
    val_slices: int | None = None
    batch_size: int = 128
    optimizer: str = "adam"
    weight_decay: float = 0.0
    patience: int | None = 5
    calibrate: bool = True
    max_minutes: float | None = None
    infer_batch: int = 8
    dropout: float = 0.0
    batch_norm: bool = False
    normalise: bool = True
    crf_iterations: int = 5
    crf_max_images: int = 48


def known_slices(samples: Sequence[Sample], size: int | None, *, scored: bool = False,
                 normalise: bool = False) -> tuple[list[Sample], torch.Tensor, np.ndarray]:
    """The samples whose mask is known, their images ``(n, 1, S, S)`` and masks bool
    ``(n, S, S)`` at ``size``.

    Known: a tumour-free slice counts (its mask is empty), a tumour slice without annotation
    does not. With ``scored``, only the slices whose ``mask`` is given, the population the
    segmentation metrics score (:mod:`mribench.eval.metrics`; on Br35H the annotated tumour slices,
    on synthetic data every slice), unless there is none: model selection on val then aims
    at the test metric. ``normalise``: see :func:`slice_images`.
    """
    kept = ([samples[i] for i in scored_indices(samples)] if scored
            else [s for s in samples if s.mask_or_empty() is not None])
    return (kept, slice_images(kept, size, normalise),
            masks_to_tensor(kept, size)[:, 0].numpy() > 0.5)


def slice_images(samples: Sequence[Sample], size: int | None, normalise: bool = False
                 ) -> torch.Tensor:
    """Images ``(n, 1, S, S)`` at ``size``, optionally :func:`normalise_intensity` d."""
    images = images_to_tensor(samples, size)
    return normalise_intensity(images) if normalise and len(samples) else images


def slice_steps(work_size: int | None, normalise: bool) -> list[dict[str, Any]]:
    """The export recipe's steps of :func:`slice_images` (``bench export`` of a patch CNN)."""
    steps = [load_step(), resize_step(work_size)]
    if normalise:
        steps.append({"step": "normalise",
                      "how": "divide the slice by the mean of its head pixels (head: "
                             "mribench.blocks.nn.patches.head_regions, an Otsu threshold of "
                             "the slice without skull erosion; a slice where it finds nothing "
                             "uses every pixel), the mean clamped to >= 1e-3",
                      "code": "mribench.blocks.nn.patches.normalise_intensity"})
    return steps


def normalise_intensity(images: torch.Tensor) -> torch.Tensor:
    """Divide each slice of ``(n, C, H, W)`` by the mean of its head pixels
    (:func:`head_regions`), so that the head averages 1 and the background stays 0.

    Per-image intensity normalisation (Havaei et al. standardise each MR volume) removes the
    brightness differences between acquisitions: on Br35H the annotated TEST slices are about
    30% darker than the TRAIN and VAL ones, enough to move a network's decision threshold.
    Zero stays zero, so the padding outside a slice is still background.
    """
    regions = torch.as_tensor(head_regions(images[:, 0].numpy()))[:, None]
    inside = regions.expand_as(images).float()
    means = (images * inside).sum(dim=(2, 3), keepdim=True) / inside.sum(dim=(2, 3),
                                                                         keepdim=True)
    return images / means.clamp(min=1e-3)
