"""Dense CRF post-processing of tumour probability maps (pydensecrf), with its parameters
chosen on validation slices.

A fully connected conditional random field (Krähenbühl & Koltun, "Efficient inference in fully
connected CRFs with Gaussian edge potentials", NIPS 2011) refines a network's per-pixel
probabilities: the unary term is ``-log p`` of the map, a Gaussian (smoothness) kernel removes
isolated pixels, and a bilateral (appearance) kernel pulls the boundary onto intensity edges of
the slice. Kamnitsas et al. ("Efficient multi-scale 3D CNN with fully connected CRF for accurate
brain lesion segmentation", Med. Image Anal. 36:61-78, 2017, doi:10.1016/j.media.2016.10.004)
append it to DeepMedic and set its weights by a small search on validation cases; this module
does the same in 2-D with a grid over the bilateral kernel's spatial and intensity widths and
its weight, maximising the Dice of the pixels pooled over the validation slices.

Conventions
-----------
- Probabilities are (H, W) floats in [0, 1] (tumour); images are the matching (H, W) slices in
  [0, 1]. The bilateral kernel sees the intensity in 0..255 units (``bilateral_srgb`` is in those
  units, as in pydensecrf's examples) and spatial widths are in pixels of the run's image size.
- The refined mask is the arg-max of the CRF marginals (tumour when its marginal > 0.5); it always
  has the shape of the input map.
- pydensecrf (the ``pydensecrf2`` distribution) is optional at run time: without it every call
  warns once and returns the raw mask (``prob > 0.5``) and map unchanged.
- :class:`CRFVariant` (the ``+crf`` rows) never holds a whole set of maps: the validation maps
  are read a chunk of slices at a time to count the raw masks' overlap and find the tumour
  slices, the search (:meth:`DenseCRF.search`) then runs on the at most ``crf_max_images``
  slices :meth:`DenseCRF.subset` draws, and the test maps are refined a chunk at a time into
  the context's disk-backed stacks (:mod:`mribench.api.stack`). The chosen weights and the
  refined maps are those of the whole stacks (:meth:`DenseCRF.fit` does it in one go).

Example
-------
>>> crf = DenseCRF().fit(val_probs, val_images, val_masks)        # doctest: +SKIP
>>> masks, probs = crf.refine(test_probs, test_images)           # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import itertools
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mribench.api.errors import MribenchError
from mribench.api.overlap import dice_from_counts, pooled_dice
from mribench.api.stack import chunks, read_rows, write_rows

__all__ = ["CRFParams", "CRFVariant", "DenseCRF", "crf_available", "default_grid", "dense_crf",
           "raw_counts"]

_MISSING = ("pydensecrf is not installed: dense CRF refinement skipped, raw masks returned "
            "(pip install pydensecrf2)")


@dataclass(frozen=True)
class CRFParams:
    """Weights of one dense CRF.

    Attributes
    ----------
    iterations : int
        Mean-field iterations (Kamnitsas et al. use 5 to 10).
    gauss_sxy, gauss_compat : float
        Spatial width (pixels) and weight of the smoothness kernel.
    bilateral_sxy, bilateral_srgb, bilateral_compat : float
        Spatial width (pixels), intensity width (0..255 units) and weight of the appearance
        kernel.
    """

    iterations: int = 5
    gauss_sxy: float = 1.0
    gauss_compat: float = 3.0
    bilateral_sxy: float = 10.0
    bilateral_srgb: float = 13.0
    bilateral_compat: float = 5.0

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise MribenchError(f"crf: iterations must be >= 1, got {self.iterations}")
        for name in ("gauss_sxy", "bilateral_sxy", "bilateral_srgb"):
            if getattr(self, name) <= 0:
                raise MribenchError(f"crf: {name} must be > 0, got {getattr(self, name)}")
        for name in ("gauss_compat", "bilateral_compat"):
            if getattr(self, name) < 0:
                raise MribenchError(f"crf: {name} must be >= 0, got {getattr(self, name)}")

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def _densecrf() -> Any:
    """The pydensecrf module, or None (imported lazily so tests can hide it)."""
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError:
        return None
    return dcrf


def crf_available() -> bool:
    """Whether pydensecrf can be imported."""
    return _densecrf() is not None


def _warn_missing(logger: Any = None) -> None:
    warnings.warn(_MISSING, RuntimeWarning, stacklevel=3)
    if logger is not None:
        logger(_MISSING)


def _check_pair(prob: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prob = np.asarray(prob, dtype=np.float32)
    image = np.asarray(image, dtype=np.float32)
    if prob.ndim != 2 or prob.shape != image.shape:
        raise MribenchError(
            f"crf: probability map {prob.shape} and image {image.shape} must be the same (H, W)"
        )
    return prob, image


def dense_crf(prob: np.ndarray, image: np.ndarray, params: CRFParams | None = None
              ) -> np.ndarray:
    """Refine one tumour probability map; returns the CRF's tumour marginals, float32 (H, W).

    Raises :class:`MribenchError` when pydensecrf is missing (use :meth:`DenseCRF.refine` for
    the warn-and-skip behaviour).
    """
    dcrf = _densecrf()
    if dcrf is None:
        raise MribenchError(_MISSING)
    from pydensecrf.utils import create_pairwise_bilateral, unary_from_softmax

    params = params or CRFParams()
    prob, image = _check_pair(prob, image)
    h, w = prob.shape
    p = np.clip(prob, 0.0, 1.0)
    crf = dcrf.DenseCRF2D(w, h, 2)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(np.stack([1.0 - p, p]),
                                                               clip=1e-5)))
    crf.addPairwiseGaussian(sxy=params.gauss_sxy, compat=params.gauss_compat)
    if params.bilateral_compat > 0:
        feats = create_pairwise_bilateral(
            sdims=(params.bilateral_sxy, params.bilateral_sxy), schan=(params.bilateral_srgb,),
            img=np.ascontiguousarray(np.clip(image, 0, 1)[..., None] * 255.0), chdim=2)
        crf.addPairwiseEnergy(np.ascontiguousarray(feats, dtype=np.float32),
                              compat=params.bilateral_compat)
    q = np.asarray(crf.inference(params.iterations), dtype=np.float32)
    return q[1].reshape(h, w)


def raw_counts(probs: np.ndarray, truths: np.ndarray) -> np.ndarray:
    """Pooled ``(tp, predicted, true, slices)`` of the raw masks ``probs > 0.5`` against
    ``truths`` (stacks of one shape): integer counts, so chunks of slices add up exactly."""
    p = np.asarray(probs) > 0.5
    t = np.asarray(truths, dtype=bool)
    return np.array([np.count_nonzero(p & t), np.count_nonzero(p), np.count_nonzero(t),
                     len(t)], dtype=np.int64)


def default_grid(image_side: int) -> dict[str, tuple[float, ...]]:
    """The search grid: bilateral widths scaled to the image side (10 px at 128 px), intensity
    widths and weights after Kamnitsas et al.'s ranges; 3 x 2 x 2 = 12 settings."""
    scale = max(image_side, 16) / 128.0
    return {
        "bilateral_sxy": tuple(round(v * scale, 2) for v in (5.0, 10.0, 20.0)),
        "bilateral_srgb": (5.0, 13.0),
        "bilateral_compat": (3.0, 10.0),
    }


class DenseCRF:
    """Dense CRF whose weights are chosen on validation slices (Kamnitsas et al. 2017).

    Parameters
    ----------
    base : CRFParams, optional
        Values of the parameters the grid does not vary.
    grid : mapping of CRFParams field -> values, optional
        The settings tried; default :func:`default_grid` for the slices' size.
    max_images : int
        At most this many validation slices are used for the search (a seeded subset, tumour
        slices first), to bound its cost.
    seed : int
        Seed of that subset.

    Attributes
    ----------
    params_ : CRFParams
        The chosen setting (``base`` when pydensecrf is missing or nothing was searched).
    search_ : list of dict
        One row per setting tried: its values and the pooled validation Dice.
    raw_dice_ : float
        Pooled validation Dice of the raw masks (``prob > 0.5``), for comparison.
    available_ : bool
        Whether pydensecrf was found.
    """

    def __init__(self, base: CRFParams | None = None, *,
                 grid: Mapping[str, Sequence[float]] | None = None, max_images: int = 32,
                 seed: int = 0) -> None:
        self.base = base or CRFParams()
        self.grid = grid
        self.max_images = max_images
        self.seed = seed

    def fit(self, probs: np.ndarray, images: np.ndarray, truths: np.ndarray,
            log: Any = None) -> DenseCRF:
        """Choose the setting of ``grid`` with the best pooled Dice on (probs, images, truths).

        ``log``, if given, is called as ``log(message, **values)`` (e.g. ``ctx.log``). The
        same as :meth:`subset`, then :meth:`search` on the chosen slices with the raw counts
        of all: what :class:`CRFVariant` does a chunk at a time.
        """
        probs = np.asarray(probs, dtype=np.float32)
        images = np.asarray(images, dtype=np.float32)
        truths = np.asarray(truths, dtype=bool)
        if not (probs.shape == images.shape == truths.shape) or probs.ndim != 3:
            raise MribenchError(f"crf: probs {probs.shape}, images {images.shape} and masks "
                                f"{truths.shape} must be the same (n, H, W)")
        keep = self.subset(truths.reshape(len(truths), -1).any(axis=1))
        return self.search(probs[keep], images[keep], truths[keep],
                           raw=raw_counts(probs, truths), log=log)

    def search(self, probs: np.ndarray, images: np.ndarray, truths: np.ndarray, *,
               raw: np.ndarray, log: Any = None) -> DenseCRF:
        """Choose the setting of ``grid`` with the best pooled Dice on the slices
        (probs, images, truths) :meth:`subset` chose; ``raw``: the pooled counts
        (:func:`raw_counts`) of the raw masks over every validation slice, for ``raw_dice_``
        (NaN when there was none)."""
        probs = np.asarray(probs, dtype=np.float32)
        images = np.asarray(images, dtype=np.float32)
        truths = np.asarray(truths, dtype=bool)
        self.params_ = self.base
        self.search_: list[dict[str, float]] = []
        self.available_ = crf_available()
        tp, predicted, true, n = (int(c) for c in raw)
        self.raw_dice_ = (dice_from_counts(tp, predicted - tp, true - tp, empty=1.0) if n
                          else float("nan"))
        if not self.available_:
            _warn_missing(log)
            return self
        if len(probs) == 0:
            return self
        grid = dict(self.grid) if self.grid is not None else default_grid(probs.shape[-1])
        unknown = sorted(set(grid) - {f.name for f in dataclasses.fields(CRFParams)})
        if unknown:
            raise MribenchError(f"crf: unknown grid parameter(s) {', '.join(unknown)}")
        best = -1.0
        names = list(grid)
        for values in itertools.product(*(grid[n] for n in names)):
            candidate = dataclasses.replace(self.base, **dict(zip(names, values, strict=True)))
            refined = np.stack([dense_crf(p, im, candidate) for p, im in zip(probs, images,
                                                                            strict=True)])
            dice = pooled_dice(refined > 0.5, truths, empty=1.0)
            self.search_.append({**dict(zip(names, values, strict=True)), "dice": dice})
            if dice > best + 1e-12:
                best, self.params_ = dice, candidate
        self.val_dice_ = best
        if log is not None:
            log("dense CRF chosen on val", raw_dice=self.raw_dice_, crf_dice=best,
                n_images=int(len(probs)), **self.params_.as_dict())
        return self

    def subset(self, tumour: np.ndarray) -> np.ndarray:
        """The sorted indices of the validation slices the search uses, given which slices
        hold tumour (``tumour``, bool (n,)): all when there are at most ``max_images``, else a
        seeded draw, three quarters tumour slices where there are enough of both kinds."""
        tumour = np.asarray(tumour, dtype=bool)
        n = len(tumour)
        if n <= self.max_images:
            return np.arange(n)
        rng = np.random.default_rng(self.seed)
        positive = np.flatnonzero(tumour)
        negative = np.setdiff1d(np.arange(n), positive)
        n_pos = min(len(positive), max((3 * self.max_images) // 4,
                                       self.max_images - len(negative)))
        chosen = np.concatenate([rng.permutation(positive)[:n_pos],
                                 rng.permutation(negative)[:self.max_images - n_pos]])
        return np.sort(chosen)

    def refine(self, probs: np.ndarray, images: np.ndarray, log: Any = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Refined (masks bool (n, H, W), marginals float32 (n, H, W)) for a stack of maps.

        Without pydensecrf: a warning, and the raw ``probs > 0.5`` with ``probs`` unchanged.
        """
        probs = np.asarray(probs, dtype=np.float32)
        images = np.asarray(images, dtype=np.float32)
        if probs.ndim != 3 or probs.shape != images.shape:
            raise MribenchError(
                f"crf: probs {probs.shape} and images {images.shape} must be the same (n, H, W)")
        if not crf_available():
            _warn_missing(log)
            return probs > 0.5, probs
        params = getattr(self, "params_", self.base)
        start = time.perf_counter()
        refined = (np.stack([dense_crf(p, im, params) for p, im in zip(probs, images,
                                                                       strict=True)])
                   if len(probs) else probs.copy())
        self.last_ms_per_image_ = 1000.0 * (time.perf_counter() - start) / max(len(probs), 1)
        return refined > 0.5, refined


#: Slices read together by :meth:`CRFVariant.fit_variants` and refined together by
#: :meth:`CRFVariant.predict_variants` (each on its own: the chunk only bounds the memory of a
#: large set).
_CRF_CHUNK = 256


class CRFVariant:
    """Mixin for a :class:`~mribench.api.method.SegmentationMethod` with probability maps: adds the
    result row ``<name>+crf`` (the raw masks refined by a :class:`DenseCRF` whose weights are
    chosen on val), through the method's ``fit_variants`` / ``predict_variants`` hooks.

    Put it first among the bases (``class X(CRFVariant, SegmentationMethod)``). It reads from
    ``self.params``, when present: ``crf_iterations`` (5), ``crf_max_images`` (32) and
    ``work_size`` (None): the CRF runs on the maps and slices resized to ``work_size`` (the
    network's working resolution, which bounds its cost), and its marginals are resized back
    to each slice's size (bilinear) and thresholded at 0.5. The weights are chosen on the val
    slices the segmentation metrics score (those whose ``mask`` is given: on Br35H the
    annotated tumour slices), or on every val slice with a known mask when there are none.

    Attributes set in fit: ``crf_`` (the fitted :class:`DenseCRF`; its ``search_`` table and
    ``params_`` are logged).
    """

    def _crf_settings(self) -> tuple[int, int, int | None]:
        params = getattr(self, "params", None)
        return (int(getattr(params, "crf_iterations", 5)),
                int(getattr(params, "crf_max_images", 32)),
                getattr(params, "work_size", None))

    def _crf_maps(self, probs: np.ndarray, size: int | None) -> np.ndarray:
        import torch

        from mribench.blocks.nn.data import resize_tensor

        maps = resize_tensor(torch.as_tensor(np.asarray(probs, dtype=np.float32))[:, None],
                             size)[:, 0].numpy()
        return np.clip(maps, 0.0, 1.0)

    def _crf_inputs(self, samples: Sequence[Any], probs: np.ndarray, size: int | None
                    ) -> tuple[np.ndarray, np.ndarray]:
        from mribench.blocks.nn.data import images_to_tensor

        return images_to_tensor(samples, size)[:, 0].numpy(), self._crf_maps(probs, size)

    def _crf_truths(self, samples: Sequence[Any], size: int | None) -> np.ndarray:
        from mribench.blocks.nn.data import masks_to_tensor

        return masks_to_tensor(samples, size)[:, 0].numpy() > 0.5

    def fit_variants(self, val: Sequence[Any], masks: np.ndarray, probs: np.ndarray | None,
                     ctx: Any) -> None:
        """Choose the CRF's weights on val a chunk of slices at a time: a first pass counts
        the raw masks' overlap and which slices hold tumour, the search then runs on the
        ``crf_max_images`` slices :meth:`DenseCRF.subset` draws (the val maps, possibly a
        disk-backed stack, are never all in memory; the choice is that of the whole stack)."""
        iterations, max_images, size = self._crf_settings()
        self.crf_ = DenseCRF(CRFParams(iterations=iterations), max_images=max_images,
                             seed=int(getattr(ctx, "seed", 0)))
        from mribench.blocks.nn.data import scored_indices

        known = scored_indices(val)  # chosen on the slices the segmentation metrics score
        if probs is None or not known:
            self.crf_.fit(np.zeros((0, 1, 1)), np.zeros((0, 1, 1)), np.zeros((0, 1, 1), bool),
                          log=ctx.log)
            return
        raw, tumour = np.zeros(4, np.int64), []
        for part in chunks(len(known), _CRF_CHUNK):
            rows = known[part]
            chosen = [val[i] for i in rows]
            maps = self._crf_maps(read_rows(probs, rows), size)
            truths = self._crf_truths(chosen, size)
            raw += raw_counts(maps, truths)
            tumour.append(truths.reshape(len(truths), -1).any(axis=1))
        rows = [known[i] for i in self.crf_.subset(np.concatenate(tumour))]
        chosen = [val[i] for i in rows]
        images, maps = self._crf_inputs(chosen, read_rows(probs, rows), size)
        self.crf_.search(maps, images, self._crf_truths(chosen, size), raw=raw, log=ctx.log)
        ctx.log("dense CRF search", table=self.crf_.search_)

    def predict_variants(self, samples: Sequence[Any], masks: np.ndarray,
                         probs: np.ndarray | None, ctx: Any
                         ) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """The ``crf`` row: the test maps refined a chunk of slices at a time into two new
        stacks of the context (disk-backed in a run: :meth:`Context.prediction_stack`)."""
        if probs is None or len(samples) == 0:
            return {}
        from mribench.blocks.nn.data import maps_for

        _, _, size = self._crf_settings()
        shape = tuple(np.shape(probs)[1:])
        masks_out = ctx.prediction_stack(len(samples), shape, bool)
        maps_out = ctx.prediction_stack(len(samples), shape, np.float32)
        for part in chunks(len(samples), _CRF_CHUNK):  # slice by slice: chunks bound memory
            images, maps = self._crf_inputs(samples[part], read_rows(probs, part), size)
            _, refined = self.crf_.refine(maps, images, log=ctx.log)
            refined_masks, refined_maps = maps_for(refined, samples[part])
            write_rows(masks_out, part, refined_masks)
            write_rows(maps_out, part, refined_maps)
        ctx.log("dense CRF applied", ms_per_image=getattr(self.crf_, "last_ms_per_image_", 0.0))
        return {"crf": (masks_out, maps_out)}
