"""MRI artefacts at graded severities: the corruptions of the artefact axis, through TorchIO.

Seven artefacts of real scanners (Pérez-García et al., "TorchIO: a Python library for
efficient loading, preprocessing, augmentation and patch-based sampling of medical images in
deep learning", Comput. Methods Programs Biomed. 208, 2021, doi:10.1016/j.cmpb.2021.106236)
at five severities each, in the protocol of ImageNet-C (Hendrycks & Dietterich, ICLR 2019) and
MedMNIST-C (Di Salvo et al., 2024, arXiv:2406.17536): every parameter that sets the strength
is fixed per severity in :data:`SEVERITIES`; severity 0 is the identity.

A 2-D slice is a 1-slice volume (TorchIO's shape ``(1, H, W, 1)``) whose voxels span a
256 mm field of view (``spacing = 256 / H`` mm), so the physical parameters (blur in mm,
motion in mm) mean the same at every image size. What is random about an artefact (the bias
field's polynomial, the direction and timing of the motion, the ghosts' axis and number, the
spike's k-space position, the noise) is drawn from a generator seeded by a SHA-256 of the
sample id and the artefact (:func:`image_seed`), never by Python's salted ``hash``: every
method, run and process sees the same corrupted pixels, and within one image the severities
scale one and the same pattern, so a severity curve measures magnitude alone. Images stay
float32 in [0, 1] (clipped after the artefact); masks are never touched: motion and ghosting
do not move the anatomy's truth.

==========  ====================================  =============================  ============
artefact    parameter (severities 1..5)           values                         source
==========  ====================================  =============================  ============
bias        polynomial coefficient range (order   0.1, 0.2, 0.3, 0.4, 0.5        TorchIO
            3), image max kept                                                   default 0.5
motion      rotation (deg) / translation (mm),    2/2, 4/4, 6/6, 8/8, 10/10      TorchIO
            2 movements                                                          default 10/10
ghosting    ghost intensity (4-10 ghosts,         0.1, 0.25, 0.5, 0.75, 1.0      TorchIO
            restore 0.02)                                                        default 0.5-1
spike       spike intensity (1 spike)             0.25, 0.5, 1, 2, 3             TorchIO
                                                                                 default 1-3
noise       Gaussian sd (image in [0, 1])         0.04, 0.08, 0.12, 0.16, 0.20   MedMNIST-C
                                                                                 OrganMNIST
blur        Gaussian sd (mm, 256 mm field)        1, 2, 3, 4, 6                  ImageNet-C
                                                                                 gaussian_blur
gamma       exponent (I ** gamma)                 1.3, 1.4, 1.6, 1.8, 2.0        MedMNIST-C
                                                                                 OrganMNIST
==========  ====================================  =============================  ============
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mribench.api.errors import MribenchError

__all__ = ["ARTEFACTS", "FIELD_OF_VIEW_MM", "MAX_SEVERITY", "SEVERITIES", "Severity",
           "corrupt", "image_seed", "parse_artefacts", "parse_severities", "random_artefact"]

#: The field of view a slice is taken to span (mm): sets the voxel spacing.
FIELD_OF_VIEW_MM = 256.0
#: The highest severity.
MAX_SEVERITY = 5


@dataclass(frozen=True)
class Severity:
    """One artefact's strength parameter at severities 1..5, and where the values come from."""

    parameter: str
    values: tuple[float, ...]
    source: str


#: The severity table (module docstring): artefact -> its parameter at severities 1..5.
SEVERITIES: dict[str, Severity] = {
    "bias": Severity("coefficient range (order 3)", (0.1, 0.2, 0.3, 0.4, 0.5),
                     "TorchIO RandomBiasField default 0.5 (severity 5)"),
    "motion": Severity("rotation deg = translation mm (2 movements)", (2, 4, 6, 8, 10),
                       "TorchIO RandomMotion default 10 deg / 10 mm (severity 5)"),
    "ghosting": Severity("ghost intensity", (0.1, 0.25, 0.5, 0.75, 1.0),
                         "TorchIO RandomGhosting default 0.5-1 (severities 3-5)"),
    "spike": Severity("spike intensity", (0.25, 0.5, 1.0, 2.0, 3.0),
                      "TorchIO RandomSpike default 1-3 (severities 3-5)"),
    "noise": Severity("Gaussian sd", (0.04, 0.08, 0.12, 0.16, 0.20),
                      "MedMNIST-C gaussian_noise, OrganMNIST"),
    "blur": Severity("Gaussian sd (mm)", (1.0, 2.0, 3.0, 4.0, 6.0),
                     "ImageNet-C gaussian_blur"),
    "gamma": Severity("exponent", (1.3, 1.4, 1.6, 1.8, 2.0),
                      "MedMNIST-C gamma_corr_up, OrganMNIST"),
}
#: The artefacts, in the tables' order.
ARTEFACTS: tuple[str, ...] = tuple(SEVERITIES)


def image_seed(sample_id: str, artefact: str) -> int:
    """The seed of an image's artefact: the first 8 bytes of SHA-256(id, artefact), the same
    in every process (unlike Python's salted ``hash``)."""
    digest = hashlib.sha256(f"{artefact}\0{sample_id}".encode("utf-8", "surrogateescape"))
    return int.from_bytes(digest.digest()[:8], "little")


def _volume(image: np.ndarray):  # noqa: ANN202 - a torchio.ScalarImage (torchio is lazy)
    import torch
    import torchio as tio

    spacing = FIELD_OF_VIEW_MM / max(image.shape)
    affine = np.diag([spacing, spacing, 1.0, 1.0])
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, :, :, None]
    return tio.ScalarImage(tensor=tensor, affine=affine)


def _bias(rng: np.random.Generator, strength: float):  # noqa: ANN202
    import torchio as tio

    order = 3
    n = sum(order + 1 - (x + y) for x in range(order + 1) for y in range(order + 1 - x))
    return tio.BiasField(coefficients=list(strength * rng.uniform(-1, 1, n)), order=order)


def _motion(rng: np.random.Generator, strength: float):  # noqa: ANN202
    import torchio as tio

    moves = 2  # TorchIO's default; times as its RandomMotion draws them (perturbation 0.3)
    degrees, translation = np.zeros((moves, 3)), np.zeros((moves, 3))
    degrees[:, 2] = strength * rng.uniform(-1, 1, moves)  # in-plane rotation only
    translation[:, :2] = strength * rng.uniform(-1, 1, (moves, 2))
    step = 1 / (moves + 1)
    times = np.arange(1, moves + 1) * step + rng.uniform(-0.3 * step, 0.3 * step, moves)
    return tio.Motion(degrees=degrees, translation=translation, times=times,
                      image_interpolation="linear")


def _ghosting(rng: np.random.Generator, strength: float):  # noqa: ANN202
    import torchio as tio

    return tio.Ghosting(num_ghosts=int(rng.integers(4, 11)), axis=int(rng.integers(0, 2)),
                        intensity=strength, restore=0.02)


def _spike(rng: np.random.Generator, strength: float):  # noqa: ANN202
    import torchio as tio

    position = np.array([[rng.uniform(), rng.uniform(), 0.0]])
    return tio.Spike(spikes_positions=position, intensity=strength)


def _noise(rng: np.random.Generator, strength: float):  # noqa: ANN202
    import torchio as tio

    return tio.Noise(mean=0.0, std=strength, seed=int(rng.integers(2**31 - 1)))


def _blur(rng: np.random.Generator, strength: float):  # noqa: ANN202
    import torchio as tio

    return tio.Blur(std=(strength, strength, 0.0))


def _gamma(rng: np.random.Generator, strength: float):  # noqa: ANN202
    import torchio as tio

    return tio.Gamma(gamma=strength)


_MAKERS: dict[str, Callable[[np.random.Generator, float], object]] = {
    "bias": _bias, "motion": _motion, "ghosting": _ghosting, "spike": _spike,
    "noise": _noise, "blur": _blur, "gamma": _gamma,
}


def _check(artefact: str, severity: int) -> None:
    if artefact not in SEVERITIES:
        raise MribenchError(f"unknown artefact {artefact!r}; allowed: {', '.join(ARTEFACTS)}")
    if isinstance(severity, bool) or not isinstance(severity, int | np.integer) or not (
            0 <= severity <= MAX_SEVERITY):
        raise MribenchError(f"severity must be an integer from 0 to {MAX_SEVERITY}, got "
                            f"{severity!r}")


def corrupt(image: np.ndarray, artefact: str, severity: int, sample_id: str, *,
            seed: int | None = None) -> np.ndarray:
    """``image`` (float32 (H, W) in [0, 1]) with ``artefact`` at ``severity`` (0: a copy).

    The random parts come from :func:`image_seed` of ``sample_id`` (or from ``seed`` when
    given: the training augmentation's draw). Returns float32 (H, W) in [0, 1].
    """
    _check(artefact, severity)
    image = np.asarray(image, dtype=np.float32)
    if severity == 0:
        return image.copy()
    rng = np.random.default_rng(image_seed(sample_id, artefact) if seed is None else seed)
    strength = float(SEVERITIES[artefact].values[severity - 1])
    transform = _MAKERS[artefact](rng, strength)
    out = transform(_volume(image)).data[0, :, :, 0].numpy().astype(np.float32)
    if artefact == "bias":  # a scanner's display scaling: the brightest voxel stays as bright
        peak = float(out.max())
        out = out * (float(image.max()) / peak) if peak > 0 else out
    return np.clip(np.nan_to_num(out), 0.0, 1.0).astype(np.float32)


def random_artefact(image: np.ndarray, rng: np.random.Generator,
                    artefacts: Sequence[str] = ARTEFACTS) -> np.ndarray:
    """A training augmentation: one artefact of ``artefacts`` at a severity 1..5, all drawn
    from ``rng`` (the training loop's seeded generator)."""
    artefact = artefacts[int(rng.integers(len(artefacts)))]
    severity = int(rng.integers(1, MAX_SEVERITY + 1))
    return corrupt(image, artefact, severity, "", seed=int(rng.integers(2**63 - 1)))


def parse_artefacts(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``--corrupt``: ``all``, ``none`` or a comma list of :data:`ARTEFACTS` (in table order)."""
    if value is None:
        return ()
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else [
        str(v).strip() for v in value]
    items = [v for v in items if v]
    if items in (["none"], []):
        return ()
    if items == ["all"]:
        return ARTEFACTS
    unknown = [v for v in items if v not in ARTEFACTS]
    if unknown:
        raise MribenchError(f"--corrupt: unknown artefact {unknown[0]!r}; allowed: all, none, "
                            f"{', '.join(ARTEFACTS)}")
    return tuple(a for a in ARTEFACTS if a in items)


def parse_severities(value: str | int | Sequence[int] | None) -> tuple[int, ...]:
    """``--severities``: ``1-5``, ``1,3,5`` or a list of integers from 1 to 5, sorted."""
    bad = MribenchError(f"--severities must be integers from 1 to {MAX_SEVERITY} written as "
                        f"1-5 or 1,3,5, got {value!r}")
    if value is None:
        return tuple(range(1, MAX_SEVERITY + 1))
    items: list[int] = []
    parts = value.split(",") if isinstance(value, str) else (
        [value] if isinstance(value, int) else list(value))
    for part in parts:
        text = str(part).strip()
        if not text:
            continue
        try:
            if "-" in text:
                low, high = (int(t) for t in text.split("-", 1))
                items += list(range(low, high + 1)) if low <= high else [-1]
            else:
                items.append(int(text))
        except ValueError:
            raise bad from None
    if not items or any(isinstance(s, bool) or not 1 <= s <= MAX_SEVERITY for s in items):
        raise bad
    return tuple(sorted(set(items)))
