"""Explanation maps of a saved pipeline and how much of them falls on the tumour.

Two kinds of map, both at the sample's image size (the run's image size), higher = more
evidence for "tumour":

- **Occlusion sensitivity** (Zeiler & Fergus, "Visualizing and understanding convolutional
  networks", ECCV 2014, doi:10.1007/978-3-319-10590-1_53), model-agnostic: a ``patch x patch``
  square, slid with ``stride``, is filled with ``fill`` (default: the slice's mean intensity)
  and the drop of the method's image score is credited to the pixels it covered (averaged over
  the placements covering a pixel). Only scores are needed, so every method has one (for a
  segmenter the score is its predicted tumour area fraction). All occluded copies of a slice
  (plus the slice itself) are scored in *one* predict call. The last placement of a row or
  column is moved flush with the border, so every pixel is covered.
- **Grad-CAM** (Selvaraju et al., "Grad-CAM: visual explanations from deep networks via
  gradient-based localization", ICCV 2017, doi:10.1109/ICCV.2017.74) for the CNNs with an
  image-level network (``cnn``, ``fcm-cnn``; and ``unet``, whose target is the sum of the
  logits of its predicted tumour pixels, or of all pixels when it predicts none): own forward
  and gradient hooks on the activation after the network's last convolution with more than one
  output map; channel weights are the spatial means of the gradients; ``ReLU(sum w_k A_k)``,
  resized (bilinear) to the image and scaled to [0, 1]. The patch-wise CNNs
  (``two-pathway-cnn``, ``multiscale-cnn``) have no single last convolution (two pathways,
  three scales): occlusion only.

Scoring a map against a tumour mask (pure functions, tested against hand-computed values):

- :func:`positive_share`: the share of the map's positive attribution inside the mask,
  ``sum(max(m, 0)[mask]) / sum(max(m, 0))`` (NaN when the map has no positive value, or a
  value that is not finite; :func:`nan_reason` says which, and every NaN carries its reason
  into the summary, the saved JSON and CSV and the printed line);
- :func:`pointing_score`: the pointing game (Zhang et al., "Top-down neural attention by
  excitation backprop", ECCV 2016): 1 when the map's maximum lies in the mask, 0 when not; when
  several pixels tie for the maximum (occlusion maps have plateaus) the share of them in the
  mask, so a flat map is not credited with a hit;
- the **random-map baseline** of both is the mask's area fraction (a map of i.i.d. values puts
  that share of its mass, and its argmax with that probability, inside the mask);
- two **no-skill maps** that know nothing of the method, scored the same way
  (:func:`baseline_maps`): the *image intensity* itself (tumours are often the brightest
  tissue on FLAIR and T2, so a method's map must beat the image to show it looked at more than
  brightness) and a *centre prior* (a Gaussian at the image centre, sigma a quarter of the
  side: tumours of a data set may sit near the centre);
- :func:`bootstrap_ci`: 95 % percentile bootstrap intervals over slices (seeded).

:func:`explain_folder` checks before it computes: the model, the map kinds (one a method cannot
draw, ``gradcam`` for a KNN, is refused: :func:`drawable_kinds`), ``out`` (written to once) and
the ``masks`` folder (matched to the images by name; none matching is refused, and the counts
of matched and unmatched images are logged and saved). It says what it wrote.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mribench.api.context import Context
from mribench.api.errors import MribenchError
from mribench.api.feature_cache import FeatureCache
from mribench.api.method import Method
from mribench.api.types import Sample

__all__ = ["GRADCAM_METHODS", "KINDS", "ExplainResult", "attribution_summary", "baseline_maps",
           "bootstrap_ci", "centre_prior", "check_kinds", "drawable_kinds",
           "explain_folder", "explain_samples", "grad_cam", "method_scorer", "nan_reason",
           "occlusion_map", "occlusion_maps", "placements", "pointing_score", "positive_share",
           "write_montage"]

#: The kinds of map, in the order they are computed.
KINDS = ("occlusion", "gradcam")

ScoreFn = Callable[[np.ndarray], np.ndarray]


# --------------------------------------------------------------------------- occlusion


def placements(length: int, patch: int, stride: int) -> list[int]:
    """Start offsets of a ``patch`` slid by ``stride`` over ``length`` pixels, the last one
    flush with the end (so every pixel is covered)."""
    if patch <= 0 or stride <= 0:
        raise ValueError(f"patch and stride must be > 0, got {patch}, {stride}")
    if patch >= length:
        return [0]
    starts = list(range(0, length - patch + 1, stride))
    if starts[-1] != length - patch:
        starts.append(length - patch)
    return starts


def _fill_value(image: np.ndarray, fill: float | str) -> float:
    if fill == "mean":
        return float(np.mean(image))
    if isinstance(fill, str):
        raise ValueError(f"fill must be a number or 'mean', got {fill!r}")
    return float(fill)


def occluded_copies(image: np.ndarray, patch: int, stride: int, fill: float | str = "mean"
                    ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """All occluded copies ``(k, H, W)`` of ``image`` and the (row, col) of each patch."""
    image = np.asarray(image, dtype=np.float32)
    h, w = image.shape
    boxes = [(y, x) for y in placements(h, patch, stride) for x in placements(w, patch, stride)]
    copies = np.repeat(image[None], len(boxes), axis=0)
    value = np.float32(_fill_value(image, fill))
    for i, (y, x) in enumerate(boxes):
        copies[i, y:y + patch, x:x + patch] = value
    return copies, boxes


def occlusion_map(score_fn: ScoreFn, image: np.ndarray, *, patch: int = 32, stride: int = 16,
                  fill: float | str = "mean") -> np.ndarray:
    """Occlusion sensitivity of one slice: ``(H, W)`` float, score drop per pixel.

    ``score_fn`` maps a stack ``(n, H, W)`` to ``n`` scores; it is called once, on the slice
    followed by all its occluded copies.
    """
    image = np.asarray(image, dtype=np.float32)
    copies, boxes = occluded_copies(image, patch, stride, fill)
    scores = np.asarray(score_fn(np.concatenate([image[None], copies])), dtype=np.float64)
    if scores.shape != (len(boxes) + 1,):
        raise ValueError(f"score function returned shape {scores.shape}, expected "
                         f"({len(boxes) + 1},)")
    total = np.zeros(image.shape, np.float64)
    count = np.zeros(image.shape, np.float64)
    for drop, (y, x) in zip(scores[0] - scores[1:], boxes, strict=True):
        total[y:y + patch, x:x + patch] += drop
        count[y:y + patch, x:x + patch] += 1
    return (total / np.maximum(count, 1)).astype(np.float32)


def method_scorer(method: Method, ctx: Context, prefix: str = "occ") -> ScoreFn:
    """A score function ``(n, H, W) -> (n,)`` from a fitted method's ``predict``.

    Each call gets fresh sample ids (``<prefix><call>/<i>``), so feature caches never confuse
    two occluded copies; a method without scores falls back to its labels.
    """
    calls = iter(range(1 << 62))

    def score(images: np.ndarray) -> np.ndarray:
        call = next(calls)
        samples = [Sample(id=f"{prefix}{call}/{i}", group="", label=-1,
                          image=np.asarray(im, dtype=np.float32))
                   for i, im in enumerate(images)]
        pred = method.predict(samples, ctx)
        values = pred.scores if pred.scores is not None else pred.labels
        return np.asarray(values, dtype=np.float64)

    return score


def occlusion_maps(method: Method, samples: Sequence[Sample], ctx: Context, *, patch: int = 32,
                   stride: int = 16, fill: float | str = "mean",
                   progress: Callable[[Any], Any] | None = None) -> np.ndarray:
    """Occlusion maps ``(n, H, W)`` of ``samples`` (one predict call per slice)."""
    score = method_scorer(method, ctx)
    items = progress(samples) if progress is not None else samples
    maps = [occlusion_map(score, s.image, patch=patch, stride=stride, fill=fill) for s in items]
    return np.stack(maps) if maps else np.zeros((0, 1, 1), np.float32)


# --------------------------------------------------------------------------- Grad-CAM


def _cam_inputs_cnn(method: Any, samples: Sequence[Sample], ctx: Context):
    from mribench.blocks.nn.data import images_to_tensor

    return method.model_, images_to_tensor(samples, method.params.image_size), "logit"


def _cam_inputs_fcm(method: Any, samples: Sequence[Sample], ctx: Context):
    return method.model_, method._inputs(samples, ctx)[0], "logit"


def _cam_inputs_unet(method: Any, samples: Sequence[Sample], ctx: Context):
    from mribench.blocks.nn.data import images_to_tensor

    return (method.model_, images_to_tensor(samples, method.params.image_size),
            ("mask", float(getattr(method, "threshold_", 0.5))))


#: Methods with Grad-CAM: name -> (method, samples, ctx) -> (network, inputs, target).
GRADCAM_METHODS: dict[str, Callable[..., tuple[Any, Any, Any]]] = {
    "cnn": _cam_inputs_cnn,
    "fcm-cnn": _cam_inputs_fcm,
    "unet": _cam_inputs_unet,
}


def _cam_layer(model: Any) -> Any:
    """The activation module after the last convolution with more than one output map (or
    that convolution when no activation follows it)."""
    from torch import nn

    modules = list(model.modules())
    convs = [i for i, m in enumerate(modules) if isinstance(m, nn.Conv2d) and m.out_channels > 1]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no convolution for Grad-CAM")
    last = convs[-1]
    for m in modules[last + 1:]:
        if isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU)):
            return m
        if isinstance(m, nn.Conv2d):
            break
    return modules[last]


@contextlib.contextmanager
def _no_inplace(model: Any) -> Iterator[None]:
    """Turn off in-place activations (their gradients must not overwrite the hooked maps)."""
    changed = [m for m in model.modules() if getattr(m, "inplace", False) is True]
    for m in changed:
        m.inplace = False
    try:
        yield
    finally:
        for m in changed:
            m.inplace = True


def grad_cam(model: Any, inputs: Any, target: Any = "logit", *, layer: Any = None,
             size: tuple[int, int] | None = None, device: str = "cpu") -> np.ndarray:
    """Grad-CAM maps ``(n, H, W)`` in [0, 1] of ``inputs`` ``(n, C, h, w)``.

    ``target``: ``"logit"`` (a network with one logit per image) or ``("mask", t)`` (a
    segmentation network: the sum of the logits of the pixels whose probability is >= t, or
    of every pixel when there is none). ``layer``: the module whose output is explained
    (default: the activation after the last multi-map convolution). ``size``: the (H, W) of
    the maps (default: the input's).
    """
    import torch
    import torch.nn.functional as F

    layer = layer if layer is not None else _cam_layer(model)
    model = model.to(device).eval()
    store: dict[str, Any] = {}

    def forward_hook(_module: Any, _inp: Any, output: Any) -> None:
        store["act"] = output
        output.register_hook(lambda grad: store.__setitem__("grad", grad))

    handle = layer.register_forward_hook(forward_hook)
    try:
        with _no_inplace(model), torch.enable_grad():
            x = inputs.to(device).float().requires_grad_(False)
            logits = model(x)
            if target == "logit":
                objective = logits.reshape(len(x), -1)[:, 0]
            else:
                threshold = float(target[1])
                flat = logits.reshape(len(x), -1)
                inside = (torch.sigmoid(flat) >= threshold).float()
                none = inside.sum(dim=1, keepdim=True) == 0
                weights = torch.where(none, torch.ones_like(inside), inside)
                objective = (flat * weights).sum(dim=1)
            model.zero_grad(set_to_none=True)
            objective.sum().backward()
    finally:
        handle.remove()
    act, grad = store["act"].detach(), store["grad"].detach()
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * act).sum(dim=1, keepdim=True))
    out_size = size or tuple(inputs.shape[-2:])
    cam = F.interpolate(cam, size=out_size, mode="bilinear", align_corners=False)[:, 0]
    top = cam.reshape(len(cam), -1).amax(dim=1).clamp(min=1e-12)[:, None, None]
    return (cam / top).cpu().numpy().astype(np.float32)


def gradcam_maps(method: Method, samples: Sequence[Sample], ctx: Context,
                 batch_size: int = 32) -> np.ndarray | None:
    """Grad-CAM maps ``(n, H, W)`` of a method of :data:`GRADCAM_METHODS` (None for another
    method)."""
    adapter = GRADCAM_METHODS.get(method.name)
    if adapter is None:
        return None
    if not samples:
        return np.zeros((0, 1, 1), np.float32)
    out = []
    for start in range(0, len(samples), batch_size):
        chunk = list(samples[start:start + batch_size])
        model, inputs, target = adapter(method, chunk, ctx)
        out.append(grad_cam(model, inputs, target, size=chunk[0].image.shape,
                            device=ctx.device))
    return np.concatenate(out)


def drawable_kinds(method: Method) -> tuple[str, ...]:
    """The kinds of map ``method`` has: occlusion always, Grad-CAM for
    :data:`GRADCAM_METHODS`."""
    return KINDS if method.name in GRADCAM_METHODS else ("occlusion",)


def check_kinds(method: Method, kinds: Sequence[str] | None) -> tuple[str, ...]:
    """The kinds to compute: ``kinds`` (duplicates dropped) when ``method`` can draw each, every
    kind it can draw when None or empty; a kind it cannot draw is a one-line error."""
    if not kinds:
        return drawable_kinds(method)
    kinds = tuple(dict.fromkeys(kinds))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise MribenchError(f"unknown map kind(s) {', '.join(map(repr, unknown))}; the kinds "
                            f"are {', '.join(KINDS)}")
    if "gradcam" in kinds and "gradcam" not in drawable_kinds(method):
        raise MribenchError(f"--kind gradcam: {method.name} has no Grad-CAM map (Grad-CAM "
                            f"needs a CNN with an image-level output: "
                            f"{', '.join(GRADCAM_METHODS)}); use --kind occlusion")
    return kinds


# --------------------------------------------------------------------------- scoring maps

#: Why a map's scores are NaN.
NO_POSITIVE = "map has no positive value"
NOT_FINITE = "map has values that are not finite"


def nan_reason(attribution: np.ndarray) -> str | None:
    """Why :func:`positive_share` of ``attribution`` is NaN (None when it is not)."""
    values = np.asarray(attribution, dtype=np.float64)
    if not np.isfinite(values).all():
        return NOT_FINITE
    if not (values > 0).any():
        return NO_POSITIVE
    return None



def positive_share(attribution: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's positive attribution inside ``mask`` (NaN when the map has no
    positive value or one that is not finite: :func:`nan_reason`)."""
    if nan_reason(attribution) is not None:
        return float("nan")
    positive = np.clip(np.asarray(attribution, dtype=np.float64), 0, None)
    total = positive.sum()
    return float(positive[np.asarray(mask, bool)].sum() / total)


def pointing_score(attribution: np.ndarray, mask: np.ndarray, rtol: float = 1e-6) -> float:
    """Pointing game: 1 when the map's maximum is inside ``mask``, 0 when outside; the share
    of tied maxima inside when several pixels share it (within ``rtol`` of the range)."""
    values = np.asarray(attribution, dtype=np.float64)
    if not np.isfinite(values).all():
        return float("nan")
    top = values.max()
    span = top - values.min()
    tied = values >= top - rtol * span if span > 0 else np.ones(values.shape, bool)
    return float(np.asarray(mask, bool)[tied].mean())


def bootstrap_ci(values: Sequence[float], n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean of the finite ``values`` and its percentile bootstrap
    interval over them (NaN when there is none)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(x.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def centre_prior(shape: tuple[int, int], sigma: float = 0.25) -> np.ndarray:
    """A Gaussian bump at the image centre, ``sigma`` x the side: the centre-prior map."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    return np.exp(-(((yy - cy) / (sigma * shape[0])) ** 2
                    + ((xx - cx) / (sigma * shape[1])) ** 2) / 2)


def baseline_maps(images: np.ndarray) -> dict[str, np.ndarray]:
    """The no-skill maps of ``images`` (n, H, W): ``intensity`` (the image) and ``centre``."""
    images = np.asarray(images, dtype=np.float64)
    centre = centre_prior(images.shape[1:]) if images.ndim == 3 else np.zeros((0, 0))
    return {"intensity": images, "centre": np.broadcast_to(centre, images.shape)}


def attribution_summary(maps: np.ndarray, masks: np.ndarray, *, n_boot: int = 1000,
                        seed: int = 0, images: np.ndarray | None = None) -> dict[str, Any]:
    """Per-slice and summary scores of ``maps`` against tumour ``masks`` (both ``(n, H, W)``),
    beside the random-map baseline (the masks' area fraction) and, given ``images``, the
    no-skill maps of :func:`baseline_maps` (``baselines``: their share inside and pointing).
    Slices with an empty mask are left out (there is no tumour to point at)."""
    masks = np.asarray(masks, bool)
    keep = [i for i in range(len(masks)) if masks[i].any()]
    share = [positive_share(maps[i], masks[i]) for i in keep]
    pointing = [pointing_score(maps[i], masks[i]) for i in keep]
    area = [float(masks[i].mean()) for i in keep]
    reasons = [nan_reason(maps[i]) for i in keep]

    def entry(values: list[float], why: Sequence[str | None] = ()) -> dict[str, Any]:
        return _entry(values, why, n_boot, seed)

    baselines: dict[str, dict[str, Any]] = {
        "random": {"positive_share": entry(area), "pointing": entry(area)}}
    if images is not None:
        for name, base in baseline_maps(images).items():
            why = [nan_reason(base[i]) for i in keep]
            baselines[name] = {
                "positive_share": entry([positive_share(base[i], masks[i]) for i in keep], why),
                "pointing": entry([pointing_score(base[i], masks[i]) for i in keep], why)}
    return {
        "n_slices": len(keep),
        "positive_share": entry(share, reasons),
        "pointing": entry(pointing, reasons),
        "random_baseline": entry(area),
        "baselines": baselines,
        "per_slice": [{"index": i, "positive_share": s, "pointing": p, "mask_fraction": a,
                       "reason": r if s != s or p != p else None}
                      for i, s, p, a, r in zip(keep, share, pointing, area, reasons,
                                               strict=True)],
    }


def _entry(values: Sequence[float], reasons: Sequence[str | None], n_boot: int,
           seed: int) -> dict[str, Any]:
    """Mean and 95 % interval of the finite ``values``; with a ``reason`` when some are NaN
    (how many of how many slices, and why: ``reasons``, one per value)."""
    mean, low, high = bootstrap_ci(values, n_boot=n_boot, seed=seed)
    out: dict[str, Any] = {"mean": mean, "ci_low": low, "ci_high": high}
    why = [(reasons[i] if i < len(reasons) else None) or "not a number"
           for i, v in enumerate(values) if not np.isfinite(v)]
    if why:
        counts = {r: why.count(r) for r in dict.fromkeys(why)}
        detail = "; ".join(r if n == len(why) else f"{r} ({n})" for r, n in counts.items())
        out["reason"] = f"{len(why)} of {len(values)} slices not scored: {detail}"
    return out


# --------------------------------------------------------------------------- the driver


@dataclass
class ExplainResult:
    """Maps by kind (``"occlusion"``, ``"gradcam"``) and their scores against the masks."""

    maps: dict[str, np.ndarray] = field(default_factory=dict)
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    #: :func:`explain_folder`: how the images matched ``masks`` (folder, images, matched,
    #: unmatched, unreadable, unmatched_examples); empty without masks.
    masks: dict[str, Any] = field(default_factory=dict)
    #: :func:`explain_folder`: the files it wrote, in ``out``.
    written: list[str] = field(default_factory=list)


def explain_samples(method: Method, samples: Sequence[Sample], ctx: Context, *,
                    kinds: Sequence[str] | None = None, patch: int = 32,
                    stride: int = 16, fill: float | str = "mean", n_boot: int = 1000,
                    progress: Callable[[Any], Any] | None = None) -> ExplainResult:
    """Maps of each kind for ``samples``, scored on those whose ``mask`` is known.

    ``kinds``: None for every kind ``method`` can draw; a kind it cannot draw is refused
    (:func:`check_kinds`) before any map is computed.
    """
    import time

    result = ExplainResult()
    for kind in check_kinds(method, kinds):
        start = time.perf_counter()
        if kind == "occlusion":
            maps = occlusion_maps(method, samples, ctx, patch=patch, stride=stride, fill=fill,
                                  progress=progress)
        else:
            maps = gradcam_maps(method, samples, ctx)
        result.seconds[kind] = time.perf_counter() - start
        result.maps[kind] = maps
        with_mask = [i for i, s in enumerate(samples) if s.mask is not None]
        if with_mask:
            summary = attribution_summary(maps[with_mask],
                                          np.stack([samples[i].mask for i in with_mask]),
                                          n_boot=n_boot, seed=ctx.seed,
                                          images=np.stack([samples[i].image
                                                           for i in with_mask]))
            for row in summary["per_slice"]:
                row["id"] = samples[with_mask[row.pop("index")]].id
            result.scores[kind] = summary
    return result


def write_montage(path: Path, samples: Sequence[Sample], maps: np.ndarray, title: str,
                  limit: int = 16) -> bool:
    """A PNG grid: each slice in grey, its map on top (jet, half transparent), the tumour
    mask's contour in white where known. Nothing is written without samples (returns False).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(len(samples), limit)
    if n == 0:
        return False
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        ax = axes.ravel()[i]
        ax.imshow(samples[i].image, cmap="gray", vmin=0, vmax=1)
        m = maps[i]
        span = float(np.abs(m).max()) or 1.0
        ax.imshow(m, cmap="jet", alpha=0.45, vmin=-span if m.min() < 0 else 0, vmax=span)
        if samples[i].mask is not None and samples[i].mask.any():
            ax.contour(samples[i].mask.astype(float), levels=[0.5], colors="white",
                       linewidths=1)
        ax.set_title(samples[i].id[-28:], fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


#: Endings a mask file's name may add to its image's (``s01_mask.png`` for ``s01.png``).
MASK_ENDINGS = ("_mask", "-mask", "_seg", "_label")


def _mask_files(root: Path) -> dict[str, Path]:
    """Mask files under ``root`` by the image stem they belong to."""
    from mribench.data.imageio import is_image_file

    out: dict[str, Path] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and is_image_file(p):
            stem = p.stem
            for ending in MASK_ENDINGS:
                if stem.endswith(ending):
                    stem = stem[: -len(ending)]
            out.setdefault(stem, p)
    return out


def match_masks(masks: Path | str, rels: Sequence[str]) -> tuple[dict[str, Path], dict]:
    """The mask of each image (``rels``: the images' relative names) found in ``masks`` by
    name, and the counts (folder, images, matched, unmatched, a few unmatched names).

    None matching is a one-line error (there would be nothing to score), said before any work.
    """
    masks = Path(masks)
    by_stem = _mask_files(masks)
    found = {rel: by_stem[Path(rel).stem] for rel in rels if Path(rel).stem in by_stem}
    unmatched = [rel for rel in rels if rel not in found]
    counts = {"folder": str(masks), "images": len(rels), "matched": len(found),
              "unmatched": len(unmatched), "unreadable": 0,
              "unmatched_examples": unmatched[:5]}
    if not found:
        example = f"; e.g. {next(iter(by_stem.values())).name}" if by_stem else ""
        raise MribenchError(
            f"--masks {masks}: no mask matches any of the {len(rels)} image(s) (0 matched, "
            f"{len(unmatched)} unmatched; {len(by_stem)} mask file(s) found{example}); a mask "
            f"is named like its image, e.g. {Path(rels[0]).stem}.png or "
            f"{Path(rels[0]).stem}_mask.png")
    return found, counts


def _attach_masks(samples: Sequence[Sample], found: dict[str, Path], counts: dict,
                  size: int, log: Callable[[str], None] | None) -> None:
    """Read each sample's matched mask at ``size``; an unreadable one is counted and logged
    (the slice stays unscored)."""
    from mribench.data.imageio import read_mask, resize_mask

    for s in samples:
        path = found.get(s.id)
        if path is None:
            continue
        try:
            s.mask = resize_mask(read_mask(path, shape=s.original_size), size)
        except Exception as exc:  # a bad mask file: reported, the slice stays unscored
            counts["unreadable"] += 1
            if log is not None:
                log(f"mask ignored: {' '.join(str(exc).split())[:200]}")


@dataclass
class _Explain:
    """One :func:`explain_folder` call, checked: the method, its kinds, images, ``out``."""

    model_folder: Path
    method: Method
    kinds: tuple[str, ...]
    size: int
    seed: int
    samples: list[Sample]
    skipped: list[tuple[str, str]]
    masks: dict[str, Any]
    out: Path


def _open_explain(model_dir: Any, images: Path | str, out: Path | str,
                  masks: Path | str | None, kinds: Sequence[str] | None,
                  log: Callable[[str], None] | None) -> _Explain:
    """Every check before a map is computed: the model, the kinds, the images, the masks'
    names, ``out``; then the images and masks are read."""
    from mribench.model.predict import find_images, load_files, prepare_out, resolve_model_dir
    from mribench.model.state import load_model, model_info

    model_folder, variant = resolve_model_dir(model_dir)
    method = load_model(model_folder)
    kinds = check_kinds(method, kinds)
    if variant is not None and log is not None:
        log(f"explaining the base method of variant {variant!r} (maps of its own scores)")
    info = model_info(model_folder)
    size = int(info.get("image_size") or 256)
    root, files = find_images(images)
    rels = [p.relative_to(root).as_posix() for p in files]
    found, counts = match_masks(masks, rels) if masks is not None else ({}, {})
    out = prepare_out(out)
    loaded = load_files(root, files, size)
    skipped = [(f.rel, f.error or "unreadable") for f in loaded if f.sample is None]
    for _, reason in skipped:
        if log is not None:
            log(f"skipped: {reason}")
    samples = [f.sample for f in loaded if f.sample is not None]
    if not samples:
        raise MribenchError(f"{images}: none of the {len(files)} image file(s) could be read "
                            f"({skipped[0][1]})")
    _attach_masks(samples, found, counts, size, log)
    if counts and log is not None:
        log(f"masks: {counts['matched']} of {counts['images']} images matched a mask in "
            f"{counts['folder']} ({counts['unmatched']} unmatched"
            + (f", {counts['unreadable']} unreadable" if counts["unreadable"] else "") + ")")
    return _Explain(model_folder, method, kinds, size, int(info.get("seed", 0) or 0), samples,
                    skipped, counts, out)


def explain_folder(model_dir: Any, images: Path | str, out: Path | str, *,
                   masks: Path | str | None = None, kinds: Sequence[str] | None = None,
                   patch: int = 32, stride: int = 16, fill: float | str = "mean",
                   device: str = "cpu", n_boot: int = 1000, show_progress: bool = False,
                   log: Callable[[str], None] | None = None) -> tuple[ExplainResult, list]:
    """``bench explain``: maps for every image under ``images``; scored where ``masks`` (a
    folder of mask files named like the images, optionally ending in ``_mask``) has one.

    ``kinds``: None for every kind the method can draw; one it cannot draw is refused. Before
    any map is computed, the model, the kinds, ``out`` (written to once) and the masks' names
    are checked, each failure one line (no mask matching any image is one). Writes
    ``maps.npz`` (one ``(n, H, W)`` stack per kind, and the ``files``), ``attribution.json``
    (the scores, with 95 % intervals, beside the random baseline; the mask counts; a
    ``reason`` beside every NaN), ``attribution.csv`` (per slice) and ``montage-<kind>.png``.
    Returns the result (``written``: the files written) and the skipped files.
    """
    import sys

    from tqdm.auto import tqdm

    from mribench.model.predict import _device, failed, unwritable

    job = _open_explain(model_dir, images, out, masks, kinds, log)
    method = job.method
    ctx = Context(device=_device(method, device), seed=job.seed, profile=method.profile,
                  workdir=job.out, method_name=method.name, cache=FeatureCache(None))

    def progress(items: Any) -> Any:
        return tqdm(items, desc=f"occlusion {method.name}", unit="img", file=sys.stderr,
                    disable=not show_progress, dynamic_ncols=True)

    try:
        result = explain_samples(method, job.samples, ctx, kinds=job.kinds, patch=patch,
                                 stride=stride, fill=fill, n_boot=n_boot, progress=progress)
    except MribenchError:
        raise
    except Exception as exc:  # the restored method does not work: one line naming its folder
        raise failed(method, job.model_folder, exc, "explaining") from exc
    result.masks = job.masks
    try:
        result.written = _write_explain(job, result, patch, stride, fill)
    except OSError as exc:
        raise unwritable(job.out, exc) from None
    return result, job.skipped


def _write_explain(job: _Explain, result: ExplainResult, patch: int, stride: int,
                   fill: float | str) -> list[str]:
    """maps.npz, attribution.json, attribution.csv and the montages; the names written."""
    out, samples, name = job.out, job.samples, job.method.name
    np.savez_compressed(out / "maps.npz", files=np.array([s.id for s in samples]),
                        **{k: v.astype(np.float32) for k, v in result.maps.items()})
    report = {"method": name, "model": str(job.model_folder), "image_size": job.size,
              "patch": patch, "stride": stride, "fill": fill, "kinds": list(result.maps),
              "seconds": result.seconds, "n_images": len(samples),
              "n_with_mask": sum(s.mask is not None for s in samples),
              "masks": result.masks or None,
              "scores": {k: {kk: vv for kk, vv in v.items() if kk != "per_slice"}
                         for k, v in result.scores.items()},
              "skipped": [f for f, _ in job.skipped]}
    (out / "attribution.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    lines = ["kind,file,positive_share,pointing,mask_fraction,reason"]
    for kind, summary in result.scores.items():
        for row in summary["per_slice"]:
            lines.append(f"{kind},{json.dumps(row['id'])},{row['positive_share']:.6g},"
                         f"{row['pointing']:.6g},{row['mask_fraction']:.6g},"
                         f"{json.dumps(row['reason']) if row['reason'] else ''}")
    (out / "attribution.csv").write_text("\n".join(lines) + "\n")
    written = ["attribution.json", "attribution.csv", "maps.npz"]
    for kind, maps in result.maps.items():
        title = (f"{name}: {kind} (patch {patch}, stride {stride})" if kind == "occlusion"
                 else f"{name}: Grad-CAM")
        if write_montage(out / f"montage-{kind}.png", samples, maps, title):
            written.append(f"montage-{kind}.png")
    return written
