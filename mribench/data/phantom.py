"""Procedural MRI-like axial brain slices with and without tumours, with exact masks.

This is the generator behind the embedded ``synthetic`` data set: it needs no download, is
deterministic per seed, and fast: about 20 ms per 256 px slice and 6 ms per 128 px slice on
one core, in two threads (numpy FFTs for the smooth random fields, no Python loop over pixels;
see benchmarks/bench_data.py).

One slice is built in two stages:

*Anatomy* (a :class:`Scene`, fixed by the scene's seed): a head ellipse with a wobbly outline,
scalp, a dark skull with brighter marrow, a thin CSF rim, grey and white matter separated by a
folded boundary (a smooth random field added to the radius), sulci (the zero lines of another
smooth field), an interhemispheric fissure, deep grey nuclei, two ventricles, a few small bright
vessels, a tissue texture, and, for tumour slices, one tumour and perhaps oedema around it.
Intensities follow one of three sequences (T1, T2, FLAIR) with jitter.

*Acquisition* (:class:`Acquisition`): slight blur (partial volume), a smooth multiplicative bias
field, Rician noise, then windowing to [0, 1] with a gamma; optionally a resolution loss
(down- then up-sampling) and a horizontal flip.

Tumours are the union of a random ellipse warped by smooth noise (``field = d + beta * noise <
1``, from blobby at small ``beta`` to irregular and multi-lobed at large ``beta``) and sometimes
a satellite lobe, clipped to the brain. Their area is drawn log-uniformly between 0.5% and 20%
of the slice (before clipping to the brain, so a few end up smaller). Their appearance is one of

- ``hyper``: clearly brighter than brain (50%),
- ``weak``: only slightly brighter, hard to see (20%),
- ``ring``: a bright enhancing rim around a necrotic core (30%),

with a heterogeneous texture and a soft (partial-volume) edge. Oedema around a tumour changes
the brain's intensity but is *not* part of the mask, as in Br35H's annotations. The mask is
exactly the set of pixels where the tumour's field is below 1 inside the brain; slices without
a tumour have an all-False mask. Small and weak tumours make the task hard enough that no
method scores 100%.

Near-duplicates: with probability ``duplicates`` (when the previous slice has the same label
and is an original; about ``duplicates / (2 + duplicates)`` of all slices, 9% at the default
0.2) a slice is a second acquisition of the previous slice's anatomy (same tumour, same mask,
new noise, slightly other contrast, maybe lower resolution), the way Br35H holds the same
slice several times. Such a pair shares its
``group``, so a split keeps it in one part; it exercises the leakage handling of the splits.

Geometry is defined in normalised coordinates (the image spans [-1, 1] in both axes), so a
slice looks the same at every ``image_size``; below 128 px a slice is rendered at 128 px and
resized the way real images are (anti-aliased image; mask by area >= 0.5, a tumour keeping at
least one pixel).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Literal, NamedTuple

import numpy as np
import scipy.fft
from scipy import ndimage

from mribench.blocks.resize import mask_cover, resize_image
from mribench.data.threads import thread_map

Contrast = Literal["hyper", "weak", "ring"]
Sequence_ = Literal["t1", "t2", "flair"]

#: Tissue intensities before jitter, per sequence.
SEQUENCES: dict[str, dict[str, float]] = {
    "t1": {"scalp": 0.75, "skull": 0.06, "marrow": 0.45, "csf": 0.12, "gm": 0.42, "wm": 0.58},
    "t2": {"scalp": 0.45, "skull": 0.05, "marrow": 0.30, "csf": 0.92, "gm": 0.55, "wm": 0.38},
    "flair": {"scalp": 0.50, "skull": 0.05, "marrow": 0.35, "csf": 0.10, "gm": 0.52, "wm": 0.40},
}
CONTRASTS: tuple[str, ...] = ("hyper", "weak", "ring")
CONTRAST_PROBS = (0.5, 0.2, 0.3)
#: Tumour area as a fraction of the slice, drawn log-uniformly in this range.
AREA_RANGE = (0.005, 0.20)
#: Smaller slices are rendered at this size, then resized like real images (anti-aliased image,
#: mask by area >= 0.5, never emptied), so thin structures do not alias at 32 or 64 px.
MIN_RENDER_SIZE = 128

__all__ = ["Acquisition", "PhantomSlice", "PlannedSlice", "Scene", "draw_acquisition",
           "draw_scene", "generate", "plan", "render", "smooth_noise"]


def smooth_noise(rng: np.random.Generator, size: int, sigmas: np.ndarray | list[float]
                 ) -> np.ndarray:
    """Gaussian random fields, one per sigma, each zero-mean with unit standard deviation.

    ``sigmas`` are correlation lengths in normalised units (the image is 2 wide). Each field is
    synthesised in the Fourier domain: complex white noise times a Gaussian filter, drawn only
    for the frequencies where the filter exceeds 1e-4 (so smooth fields cost one small draw
    and one inverse FFT). Periodic boundaries. Returns float32 of shape (len(sigmas), size, size).
    """
    sig_px = np.maximum(np.asarray(sigmas, dtype=np.float64) * (size / 2.0), 0.3)
    half = size // 2 + 1
    spectrum = np.zeros((len(sig_px), size, half), np.complex64)
    freq = np.fft.fftfreq(size)
    for j, sp in enumerate(sig_px):
        k = int(min(size // 2, np.ceil(0.683 / sp * size)))
        rows = np.r_[0:k + 1, size - k:size] if k > 0 else np.array([0])
        rows = np.unique(rows)
        f2 = freq[rows][:, None] ** 2 + freq[: k + 1][None, :] ** 2
        gain = np.exp(-2.0 * np.pi**2 * sp**2 * f2)
        shape = (len(rows), k + 1)
        coef = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
        spectrum[j, rows, : k + 1] = (coef * gain).astype(np.complex64)
    spectrum[:, 0, 0] = 0.0
    out = scipy.fft.irfft2(spectrum, s=(size, size)).astype(np.float32, copy=False)
    out -= out.mean(axis=(1, 2), keepdims=True)
    out /= out.std(axis=(1, 2), keepdims=True) + 1e-12
    return out


@dataclass(frozen=True)
class Scene:
    """The anatomy of one slice: every random choice that does not depend on the acquisition."""

    seed: int
    label: int
    sequence: str
    tissue: dict[str, float]
    head_center: tuple[float, float]
    head_axes: tuple[float, float]
    head_angle: float
    harmonics: tuple[tuple[float, float], ...]
    layers: tuple[float, float, float]           # scalp, skull, csf thickness (radius units)
    cortex: float                                # grey-matter band depth (brain-radius units)
    fold: float                                  # folding amplitude of the grey/white boundary
    sulci_width: float
    ventricle: tuple[float, float, float, float, float]  # dx, dy, ry, rx, angle (0 = none)
    nuclei: bool
    fissure: bool
    texture: float
    vessels: int
    tumour: dict[str, float | str] | None = None
    oedema: dict[str, float] | None = None


@dataclass(frozen=True)
class Acquisition:
    """How one slice is imaged: blur, bias field, noise, window, gamma, resolution, flip."""

    seed: int
    blur_px: float
    bias: float
    noise: float
    window: float
    gamma: float
    resolution: float = 1.0   # < 1: rendered at this fraction of the size, then up-sampled
    flip: bool = False


@dataclass
class PhantomSlice:
    """One rendered slice: image float32 (H, W) in [0, 1], exact bool mask, and its metadata."""

    index: int
    group: int
    label: int
    image: np.ndarray
    mask: np.ndarray
    meta: dict[str, float | str | int | bool] = field(default_factory=dict)


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def draw_scene(rng: np.random.Generator, label: int) -> Scene:
    """Draw the anatomy of one slice (and its tumour when ``label`` is 1)."""
    sequence = str(rng.choice(list(SEQUENCES)))
    tissue = {k: v * _u(rng, 0.9, 1.1) for k, v in SEQUENCES[sequence].items()}
    ax = _u(rng, 0.62, 0.76)
    ay = min(0.93, ax * _u(rng, 1.1, 1.3))
    harmonics = tuple((float(rng.normal(0, 0.015)), _u(rng, 0, 2 * np.pi)) for _ in range(1, 6))
    level = _u(rng, 0, 1)  # slice level: no ventricles in high or low slices
    if level < 0.2:
        ventricle = (0.0, 0.0, 0.0, 0.0, 0.0)
    else:
        s = 0.5 + level
        ventricle = (_u(rng, 0.05, 0.10), _u(rng, -0.15, 0.05), _u(rng, 0.10, 0.20) * s,
                     _u(rng, 0.035, 0.07) * s, _u(rng, 0.2, 0.5))
    tumour = oedema = None
    if label:
        frac = float(np.exp(rng.uniform(np.log(AREA_RANGE[0]), np.log(AREA_RANGE[1]))))
        radius = float(np.sqrt(frac * 4.0 / np.pi))
        brain_r = min(ax, ay) * 0.85
        reach = max(0.05, 0.8 - radius / brain_r)
        r_c, phi = reach * np.sqrt(_u(rng, 0, 1)), _u(rng, 0, 2 * np.pi)
        contrast = str(rng.choice(CONTRASTS, p=CONTRAST_PROBS))
        tumour = {
            "x": float(r_c * np.cos(phi)), "y": float(r_c * np.sin(phi)), "radius": radius,
            "area": frac, "aspect": _u(rng, 0.6, 1.0), "angle": _u(rng, 0, np.pi),
            "beta": _u(rng, 0.05, 0.45), "scale": _u(rng, 0.25, 0.6),
            "contrast": contrast,
            "delta": {"hyper": _u(rng, 0.2, 0.45), "weak": _u(rng, 0.06, 0.15),
                      "ring": _u(rng, 0.25, 0.5)}[contrast],
            "core": _u(rng, 0.5, 0.75), "core_mix": _u(rng, 0.3, 0.8),
            "hetero": _u(rng, 0.0, 0.25), "edge": _u(rng, 0.05, 0.3),
            "satellite": float(rng.random() < 0.2), "sat_angle": _u(rng, 0, 2 * np.pi),
            "sat_size": _u(rng, 0.3, 0.6),
        }
        if rng.random() < 0.4:
            oedema = {"extent": _u(rng, 0.3, 1.0), "delta": _u(rng, 0.03, 0.12),
                      "beta": _u(rng, 0.1, 0.4)}
    return Scene(
        seed=int(rng.integers(2**31)), label=int(label), sequence=sequence, tissue=tissue,
        head_center=(_u(rng, -0.05, 0.05), _u(rng, -0.05, 0.05)), head_axes=(ax, ay),
        head_angle=float(rng.normal(0, 0.08)), harmonics=harmonics,
        layers=(_u(rng, 0.04, 0.07), _u(rng, 0.03, 0.06), _u(rng, 0.005, 0.02)),
        cortex=_u(rng, 0.12, 0.2), fold=_u(rng, 0.06, 0.12), sulci_width=_u(rng, 0.04, 0.1),
        ventricle=ventricle, nuclei=bool(rng.random() < 0.6), fissure=bool(rng.random() < 0.8),
        texture=_u(rng, 0.015, 0.05), vessels=int(rng.integers(0, 5)),
        tumour=tumour, oedema=oedema,
    )


def draw_acquisition(rng: np.random.Generator) -> Acquisition:
    """Draw the imaging conditions of one slice."""
    return Acquisition(
        seed=int(rng.integers(2**31)), blur_px=_u(rng, 0.4, 1.0), bias=_u(rng, 0.05, 0.3),
        noise=_u(rng, 0.01, 0.05), window=_u(rng, 0.95, 1.2), gamma=_u(rng, 0.8, 1.25),
        flip=bool(rng.random() < 0.5),
    )


def _ellipse_distance(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float,
                      angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    xr = (x - cx) * c + (y - cy) * s
    yr = -(x - cx) * s + (y - cy) * c
    return np.sqrt((xr / rx) ** 2 + (yr / ry) ** 2)


class _Fields(NamedTuple):
    """The smooth random fields of one slice (:func:`smooth_noise`, one per use)."""

    fold: np.ndarray      # folding of the grey/white boundary
    sulci: np.ndarray     # sulci: zero lines of this field
    texture: np.ndarray   # tissue and tumour texture
    fine: np.ndarray      # fissure and ventricle edges
    low: np.ndarray       # (drawn, unused: keeps the draws of the fields after it)
    shape: np.ndarray     # tumour outline
    oedema: np.ndarray    # oedema outline


class _HeadFrame(NamedTuple):
    """Pixel coordinates in the head's frame (rotated; ``ax``, ``ay`` its half axes), ``rho``
    the wobbly head radius (1 at the scalp's outer edge) and ``rb`` the brain radius (1 at the
    brain's edge)."""

    xh: np.ndarray
    yh: np.ndarray
    ax: float
    ay: float
    rho: np.ndarray
    rb: np.ndarray


def _anatomy(scene: Scene, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise-free tissue image, exact tumour mask and head mask at ``size``."""
    rng = np.random.default_rng(scene.seed)
    lin = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    y, x = np.meshgrid(lin, lin, indexing="ij")
    tum = scene.tumour
    sigmas = [0.04, 0.05, 0.012, 0.02, 0.3,
              float(tum["radius"]) * float(tum["scale"]) if tum else 0.1, 0.06]
    fields = _Fields(*smooth_noise(rng, size, sigmas))
    frame = _head_frame(scene, x, y)
    head = frame.rho < 1.0
    brain = frame.rb < 1.0
    img = _tissues(scene, frame, fields, head, brain, size)
    _add_vessels(img, scene, frame, brain)
    mask = np.zeros((size, size), bool)
    if tum is not None:
        img, mask = _add_tumour(img, scene, tum, frame, fields, brain, size)
    return img.astype(np.float32), mask, head


def _head_frame(scene: Scene, x: np.ndarray, y: np.ndarray) -> _HeadFrame:
    """Rotate into the head's frame, then a wobbly ellipse radius."""
    cx, cy = scene.head_center
    ax, ay = scene.head_axes
    c, s = np.cos(scene.head_angle), np.sin(scene.head_angle)
    xh = (x - cx) * c + (y - cy) * s
    yh = -(x - cx) * s + (y - cy) * c
    radius = np.sqrt((xh / ax) ** 2 + (yh / ay) ** 2)
    # Outline wobble: sum_k a_k cos(k phi + p_k), with z^k = exp(i k phi) by repeated products.
    z = (xh / ax + 1j * (yh / ay)) / np.maximum(radius, 1e-6)
    zk = np.ones_like(z)
    wobble = np.ones_like(radius)
    for a, p in scene.harmonics:
        zk = zk * z
        wobble += a * (zk.real * np.cos(p) - zk.imag * np.sin(p))
    rho = radius / wobble
    scalp, skull, csf_rim = scene.layers
    r_brain = (1.0 - scalp) - skull - csf_rim
    return _HeadFrame(xh, yh, ax, ay, rho, rho / r_brain)


def _tissues(scene: Scene, frame: _HeadFrame, fields: _Fields, head: np.ndarray,
             brain: np.ndarray, size: int) -> np.ndarray:
    """Scalp, skull and marrow, CSF, folded grey/white matter, sulci, fissure, nuclei and
    ventricles, then the tissue texture."""
    t = scene.tissue
    xh, yh, ax, ay, rho, rb = frame
    scalp, skull, _ = scene.layers
    r_skull = 1.0 - scalp
    r_marrow_out, r_marrow_in = r_skull - skull * 0.3, r_skull - skull * 0.7
    img = np.zeros((size, size), np.float32)
    img[head] = t["scalp"]
    img[(rho < r_skull)] = t["skull"]
    img[(rho < r_marrow_out) & (rho > r_marrow_in)] = t["marrow"]
    img[rho < r_skull - skull] = t["csf"]
    # Grey/white matter: a folded boundary; sulci are zero lines of a smooth field.
    white = (rb + scene.fold * fields.fold) < (1.0 - scene.cortex)
    img[brain] = t["gm"]
    img[brain & white] = t["wm"]
    sulci = brain & (np.abs(fields.sulci) < scene.sulci_width) & (rb > 0.55)
    img[sulci] = t["csf"]
    if scene.fissure:
        fissure = brain & (np.abs(xh) < 0.008 + 0.004 * fields.fine) & (np.abs(yh) > 0.25 * ay)
        img[fissure] = t["csf"]
    if scene.nuclei:
        for side in (-1, 1):
            d = _ellipse_distance(xh, yh, side * 0.17 * ax, 0.08 * ay, 0.08, 0.11, side * 0.3)
            img[d < 1.0] = 0.5 * (t["gm"] + t["wm"]) * 0.97
    dx, dy, vry, vrx, vang = scene.ventricle
    if vry > 0:
        for side in (-1, 1):
            d = _ellipse_distance(xh, yh, side * dx * ax, dy * ay, vrx * ax, vry * ay,
                                  -side * vang)
            img[(d + 0.15 * fields.fine) < 1.0] = t["csf"]
    img *= 1.0 + scene.texture * fields.texture * (img > 0)
    return img


def _add_vessels(img: np.ndarray, scene: Scene, frame: _HeadFrame, brain: np.ndarray) -> None:
    """Small bright vessels anywhere in the brain (also on tumour-free slices), in place, from
    their own generator (``scene.seed + 1``)."""
    if not scene.vessels:
        return
    xh, yh, ax, ay = frame.xh, frame.yh, frame.ax, frame.ay
    vr = np.random.default_rng(scene.seed + 1)
    for _ in range(scene.vessels):
        r, a = 0.8 * np.sqrt(vr.random()), vr.uniform(0, 2 * np.pi)
        d = np.hypot(xh - r * np.cos(a) * ax * 0.85, yh - r * np.sin(a) * ay * 0.85)
        img[(d < vr.uniform(0.006, 0.015)) & brain] += vr.uniform(0.1, 0.3)


def _add_tumour(img: np.ndarray, scene: Scene, tum: dict[str, float | str], frame: _HeadFrame,
                fields: _Fields, brain: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The tumour (an irregular ellipse, maybe a satellite, a ring or a solid contrast) and its
    oedema blended into ``img`` (which the oedema changes in place); the image and the mask."""
    t = scene.tissue
    brain_level = 0.5 * (t["gm"] + t["wm"])
    d, field_t, mask = _tumour_field(tum, frame, fields.shape, brain, size)
    if scene.oedema is not None:
        oe = scene.oedema
        f_oe = d / (1.0 + oe["extent"]) + oe["beta"] * fields.oedema
        soft = np.clip((1.0 - f_oe) / 0.3, 0.0, 1.0) * brain
        sign = -1.0 if scene.sequence == "t1" else 1.0
        img += sign * oe["delta"] * soft
    delta = float(tum["delta"])
    value = np.full((size, size), brain_level + delta, np.float32)
    if tum["contrast"] == "ring":
        core = field_t < float(tum["core"])
        mix = float(tum["core_mix"])
        value[core] = (1 - mix) * brain_level + mix * t["csf"]
    value *= 1.0 + float(tum["hetero"]) * fields.texture
    alpha = np.clip((1.0 - field_t) / float(tum["edge"]), 0.0, 1.0) * mask
    return img * (1.0 - alpha) + value * alpha, mask


def _tumour_field(tum: dict[str, float | str], frame: _HeadFrame, shape_noise: np.ndarray,
                  brain: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(d, field, mask)``: the ellipse distance of the tumour's centre body, the noisy
    field whose < 1 region is the tumour (with its satellite), and that region in the brain;
    the noise shrinks until the mask has a few pixels, so the tumour is never lost."""
    xh, yh, ax, ay = frame.xh, frame.yh, frame.ax, frame.ay
    tx, ty = float(tum["x"]) * ax, float(tum["y"]) * ay
    radius, q = float(tum["radius"]), float(tum["aspect"])
    d = _ellipse_distance(xh, yh, tx, ty, radius / np.sqrt(q), radius * np.sqrt(q),
                          float(tum["angle"]))
    field_t = d + float(tum["beta"]) * shape_noise
    if tum["satellite"]:
        sr = radius * float(tum["sat_size"])
        sa = float(tum["sat_angle"])
        d2 = _ellipse_distance(xh, yh, tx + radius * np.cos(sa), ty + radius * np.sin(sa),
                               sr, sr, 0.0) + float(tum["beta"]) * shape_noise
        field_t = np.minimum(field_t, d2)
    beta_scale = 1.0
    while True:
        mask = (field_t < 1.0) & brain
        if mask.sum() >= max(4, 0.002 * size * size) or beta_scale < 0.05:
            break
        beta_scale *= 0.5
        field_t = d + float(tum["beta"]) * beta_scale * shape_noise
    if not mask.any():  # a tumour can always be at least its centre pixel's neighbourhood
        mask = (d < 1.0) & brain
        field_t = d
    return d, field_t, mask


def render(scene: Scene, acq: Acquisition, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Image (float32, [0, 1]) and exact mask (bool) of ``scene`` imaged under ``acq``."""
    img, mask, head = _anatomy(scene, size)
    rng = np.random.default_rng(acq.seed)
    img = ndimage.gaussian_filter(img, acq.blur_px * size / 256.0)
    (low,) = smooth_noise(rng, size, [0.5])
    ramp = np.linspace(-1, 1, size, dtype=np.float32)
    g = rng.normal(0, 0.5, 2)
    img *= np.exp(acq.bias * (low + g[0] * ramp[:, None] + g[1] * ramp[None, :]))
    sigma = acq.noise * float(np.percentile(img[head], 95))
    n1, n2 = rng.standard_normal((2, size, size), dtype=np.float32)
    img = np.sqrt((img + sigma * n1) ** 2 + (sigma * n2) ** 2)  # Rician magnitude noise
    if acq.resolution < 1.0:
        small = max(8, int(round(size * acq.resolution)))
        img = ndimage.zoom(ndimage.zoom(img, small / size, order=1), size / small, order=1)
        img = img[:size, :size] if img.shape[0] >= size else np.pad(
            img, ((0, size - img.shape[0]), (0, size - img.shape[1])), mode="edge")
    top = float(np.percentile(img[head], 99.5)) * acq.window
    img = np.clip(img / max(top, 1e-6), 0.0, 1.0) ** acq.gamma
    if acq.flip:
        img, mask = img[:, ::-1], mask[:, ::-1]
    return np.ascontiguousarray(img, dtype=np.float32), np.ascontiguousarray(mask)


def _shrink(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased image and area-thresholded mask at ``size`` (as real data is resized),
    keeping at least the best-covered pixel of a non-empty mask."""
    small = resize_image(image, size)
    cover = mask_cover(mask, size)
    out = cover >= 0.5
    if mask.any() and not out.any():
        out[np.unravel_index(int(np.argmax(cover)), cover.shape)] = True
    return small, out


@dataclass(frozen=True)
class PlannedSlice:
    """Every random choice of one slice, made before any rendering."""

    index: int
    group: int
    label: int
    copy: bool
    scene: Scene
    acquisition: Acquisition


def plan(n: int, seed: int = 0, duplicates: float = 0.2) -> list[PlannedSlice]:
    """The labels, groups, anatomies and acquisitions of ``n`` slices (no pixels yet).

    Labels are a seeded balanced shuffle (exactly ``n // 2`` tumours). Slice ``i`` (``i > 0``)
    is, with probability ``duplicates``, a second acquisition of slice ``i - 1``'s anatomy
    when both have the same label and slice ``i - 1`` is not itself a copy; a copy shares the
    group of its original. Nothing here depends on the image size.
    """
    rng = np.random.default_rng([seed, 0x5EED])
    labels = rng.permutation((np.arange(n) < n // 2).astype(int))
    out: list[PlannedSlice] = []
    for i in range(n):
        r = np.random.default_rng([seed, i])
        label = int(labels[i])
        prev = out[-1] if out else None
        if (prev is not None and not prev.copy and prev.label == label
                and r.random() < duplicates):
            base = prev.acquisition
            acq = replace(base, seed=int(r.integers(2**31)), gamma=base.gamma * _u(r, 0.92, 1.08),
                          window=base.window * _u(r, 0.97, 1.03),
                          resolution=_u(r, 0.5, 0.9) if r.random() < 0.5 else 1.0)
            out.append(PlannedSlice(i, prev.group, label, True, prev.scene, acq))
        else:
            out.append(PlannedSlice(i, i, label, False, draw_scene(r, label), draw_acquisition(r)))
    return out


def generate(n: int, image_size: int = 256, seed: int = 0, duplicates: float = 0.2,
             workers: int | None = None) -> list[PhantomSlice]:
    """Render the ``n`` slices of :func:`plan` at ``image_size``, deterministically.

    Slices are rendered in ``workers`` threads (:func:`mribench.data.threads.thread_map`); the
    output does not depend on ``workers``.
    """
    return list(iter_generate(n, image_size, seed, duplicates, workers))


def iter_generate(n: int, image_size: int = 256, seed: int = 0, duplicates: float = 0.2,
                  workers: int | None = None) -> Iterator[PhantomSlice]:
    """:func:`generate` one slice at a time, in order (a few rendered ahead), so a data set
    larger than memory can be written to disk as it is made."""
    planned = plan(n, seed, duplicates)

    def one(item: PlannedSlice) -> PhantomSlice:
        index, group, is_copy, scene = item.index, item.group, item.copy, item.scene
        image, mask = render(scene, item.acquisition, max(image_size, MIN_RENDER_SIZE))
        if image.shape[0] != image_size:
            image, mask = _shrink(image, mask, image_size)
        meta: dict[str, float | str | int | bool] = {
            "sequence": scene.sequence, "copy": is_copy, "area": float(mask.mean()),
        }
        if scene.tumour is not None:
            meta.update(contrast=str(scene.tumour["contrast"]),
                        delta=float(scene.tumour["delta"]), oedema=scene.oedema is not None)
        return PhantomSlice(index=index, group=group, label=scene.label, image=image, mask=mask,
                            meta=meta)

    with thread_map(one, planned, workers=workers, min_items=8,
                    name="mribench-phantom") as slices:
        yield from slices
