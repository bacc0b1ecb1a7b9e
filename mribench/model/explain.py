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
  ``sum(max(m, 0)[mask]) / sum(max(m, 0))`` (NaN when the map has no positive value);
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
from mribench.api.feature_cache import FeatureCache
from mribench.api.method import Method
from mribench.api.types import Sample

__all__ = ["GRADCAM_METHODS", "ExplainResult", "attribution_summary", "baseline_maps",
           "bootstrap_ci", "centre_prior",
           "explain_folder", "explain_samples", "grad_cam", "method_scorer", "occlusion_map",
           "occlusion_maps", "placements", "pointing_score", "positive_share",
           "write_montage"]

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
    """Grad-CAM maps ``(n, H, W)`` of a method of :data:`GRADCAM_METHODS` (else None)."""
    adapter = GRADCAM_METHODS.get(method.name)
    if adapter is None or not samples:
        return None
    out = []
    for start in range(0, len(samples), batch_size):
        chunk = list(samples[start:start + batch_size])
        model, inputs, target = adapter(method, chunk, ctx)
        out.append(grad_cam(model, inputs, target, size=chunk[0].image.shape,
                            device=ctx.device))
    return np.concatenate(out)


# --------------------------------------------------------------------------- scoring maps


def positive_share(attribution: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's positive attribution inside ``mask`` (NaN: no positive value)."""
    positive = np.clip(np.asarray(attribution, dtype=np.float64), 0, None)
    total = positive.sum()
    if total <= 0:
        return float("nan")
    return float(positive[np.asarray(mask, bool)].sum() / total)


def pointing_score(attribution: np.ndarray, mask: np.ndarray, rtol: float = 1e-6) -> float:
    """Pointing game: 1 when the map's maximum is inside ``mask``, 0 when outside; the share
    of tied maxima inside when several pixels share it (within ``rtol`` of the range)."""
    values = np.asarray(attribution, dtype=np.float64)
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

    def entry(values: list[float]) -> dict[str, float]:
        mean, low, high = bootstrap_ci(values, n_boot=n_boot, seed=seed)
        return {"mean": mean, "ci_low": low, "ci_high": high}

    baselines: dict[str, dict[str, Any]] = {
        "random": {"positive_share": entry(area), "pointing": entry(area)}}
    if images is not None:
        for name, base in baseline_maps(images).items():
            baselines[name] = {
                "positive_share": entry([positive_share(base[i], masks[i]) for i in keep]),
                "pointing": entry([pointing_score(base[i], masks[i]) for i in keep])}
    return {
        "n_slices": len(keep),
        "positive_share": entry(share),
        "pointing": entry(pointing),
        "random_baseline": entry(area),
        "baselines": baselines,
        "per_slice": [{"index": i, "positive_share": s, "pointing": p, "mask_fraction": a}
                      for i, s, p, a in zip(keep, share, pointing, area, strict=True)],
    }


# --------------------------------------------------------------------------- the driver


@dataclass
class ExplainResult:
    """Maps by kind (``"occlusion"``, ``"gradcam"``) and their scores against the masks."""

    maps: dict[str, np.ndarray] = field(default_factory=dict)
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def explain_samples(method: Method, samples: Sequence[Sample], ctx: Context, *,
                    kinds: Sequence[str] = ("occlusion", "gradcam"), patch: int = 32,
                    stride: int = 16, fill: float | str = "mean", n_boot: int = 1000,
                    progress: Callable[[Any], Any] | None = None) -> ExplainResult:
    """Maps of each kind for ``samples``, scored on those whose ``mask`` is known."""
    import time

    result = ExplainResult()
    for kind in kinds:
        start = time.perf_counter()
        if kind == "occlusion":
            maps = occlusion_maps(method, samples, ctx, patch=patch, stride=stride, fill=fill,
                                  progress=progress)
        elif kind == "gradcam":
            maps = gradcam_maps(method, samples, ctx)
            if maps is None:
                continue
        else:
            raise ValueError(f"unknown explanation kind {kind!r}: occlusion or gradcam")
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
                  limit: int = 16) -> None:
    """A PNG grid: each slice in grey, its map on top (jet, half transparent), the tumour
    mask's contour in white where known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(len(samples), limit)
    if n == 0:
        return
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


def _mask_files(root: Path) -> dict[str, Path]:
    from mribench.data.imageio import is_image_file

    out: dict[str, Path] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and is_image_file(p):
            stem = p.stem
            for ending in ("_mask", "-mask", "_seg", "_label"):
                if stem.endswith(ending):
                    stem = stem[: -len(ending)]
            out.setdefault(stem, p)
    return out


def explain_folder(model_dir: Any, images: Path | str, out: Path | str, *,
                   masks: Path | str | None = None, kinds: Sequence[str] = ("occlusion",
                                                                            "gradcam"),
                   patch: int = 32, stride: int = 16, fill: float | str = "mean",
                   device: str = "cpu", n_boot: int = 1000, show_progress: bool = False,
                   log: Callable[[str], None] | None = None) -> tuple[ExplainResult, list]:
    """``bench explain``: maps for every image under ``images``; scored where ``masks`` (a
    folder of mask files named like the images, optionally ending in ``_mask``) has one.

    Writes ``maps.npz`` (one ``(n, H, W)`` stack per kind, and the ``files``),
    ``attribution.json`` (the scores, with 95 % intervals, beside the random baseline),
    ``attribution.csv`` (per slice) and ``montage-<kind>.png``. Returns the result and the
    skipped files.
    """
    import sys

    from tqdm.auto import tqdm

    from mribench.data.imageio import read_mask, resize_mask
    from mribench.model.predict import _device, find_images, load_files, resolve_model_dir
    from mribench.model.state import load_model, model_info

    model_folder, variant = resolve_model_dir(model_dir)
    if variant is not None and log is not None:
        log(f"explaining the base method of variant {variant!r} (maps of its own scores)")
    method = load_model(model_folder)
    info = model_info(model_folder)
    size = int(info.get("image_size") or 256)
    root, files = find_images(images)
    loaded = load_files(root, files, size)
    skipped = [(f.rel, f.error or "unreadable") for f in loaded if f.sample is None]
    for _, reason in skipped:
        if log is not None:
            log(f"skipped: {reason}")
    samples = [f.sample for f in loaded if f.sample is not None]
    mask_of = _mask_files(Path(masks)) if masks is not None else {}
    for s in samples:
        found = mask_of.get(Path(s.id).stem)
        if found is not None:
            try:
                s.mask = resize_mask(read_mask(found, shape=s.original_size), size)
            except Exception as exc:  # a bad mask file: reported, the slice stays unscored
                if log is not None:
                    log(f"mask ignored: {' '.join(str(exc).split())[:200]}")
    ctx = Context(device=_device(method, device), seed=int(info.get("seed", 0) or 0),
                  profile=method.profile, workdir=Path(out), method_name=method.name,
                  cache=FeatureCache(None))

    def progress(items: Any) -> Any:
        return tqdm(items, desc=f"occlusion {method.name}", unit="img", file=sys.stderr,
                    disable=not show_progress, dynamic_ncols=True)

    result = explain_samples(method, samples, ctx, kinds=kinds, patch=patch, stride=stride,
                             fill=fill, n_boot=n_boot, progress=progress)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "maps.npz", files=np.array([s.id for s in samples]),
                        **{k: v.astype(np.float32) for k, v in result.maps.items()})
    report = {"method": method.name, "model": str(model_folder), "image_size": size,
              "patch": patch, "stride": stride, "fill": fill, "kinds": list(result.maps),
              "seconds": result.seconds, "n_images": len(samples),
              "n_with_mask": sum(s.mask is not None for s in samples),
              "scores": {k: {kk: vv for kk, vv in v.items() if kk != "per_slice"}
                         for k, v in result.scores.items()},
              "skipped": [f for f, _ in skipped]}
    (out / "attribution.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    lines = ["kind,file,positive_share,pointing,mask_fraction"]
    for kind, summary in result.scores.items():
        for row in summary["per_slice"]:
            lines.append(f"{kind},{json.dumps(row['id'])},{row['positive_share']:.6g},"
                         f"{row['pointing']:.6g},{row['mask_fraction']:.6g}")
    (out / "attribution.csv").write_text("\n".join(lines) + "\n")
    for kind, maps in result.maps.items():
        write_montage(out / f"montage-{kind}.png", samples, maps,
                      f"{method.name}: {kind} (patch {patch}, stride {stride})"
                      if kind == "occlusion" else f"{method.name}: Grad-CAM")
    return result, skipped
