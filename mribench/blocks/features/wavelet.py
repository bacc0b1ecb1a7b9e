"""Multi-level 2-D discrete wavelet transform (DWT) features (PyWavelets ``wavedec2``).

Two kinds of feature vector per image:

- ``"approx"``: the approximation coefficients of the deepest level, flattened, as in
  Mohsen et al. 2018 (3-level Haar on 256 x 256 slices gives 32 x 32 = 1,024 values, reduced
  by PCA afterwards). Their length depends on the image size.
- ``"stats"``: for every sub-band (the approximation, and the horizontal, vertical and
  diagonal details of every level) its energy (mean square), mean and standard deviation:
  ``3 * (1 + 3 * levels)`` values, independent of the image size.

Boundary handling is PyWavelets' ``"periodization"`` mode, so each level halves the size
exactly (Haar on 256 px: 128, 64, 32).

Start-up validation (call from a plugin's ``Params`` constraints or before computing):
:func:`check_wavelet` (a name PyWavelets knows for the discrete transform) and
:func:`check_levels` (no more levels than ``pywt.dwt_max_level`` allows for the image size),
each raising a one-line :class:`~mribench.api.errors.ParamError`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pywt

from mribench.api.errors import ParamError

__all__ = ["FEATURE_KINDS", "check_levels", "check_wavelet", "dwt_features", "dwt_matrix",
           "is_discrete_wavelet", "max_levels"]

FEATURE_KINDS = ("approx", "stats")
MODE = "periodization"


def is_discrete_wavelet(name: object) -> bool:
    """Whether PyWavelets knows ``name`` as a discrete wavelet (e.g. ``haar``, ``db2``)."""
    return isinstance(name, str) and name in pywt.wavelist(kind="discrete")


def check_wavelet(name: object, owner: str = "dwt") -> str:
    """Return ``name`` or raise ParamError naming a few valid choices."""
    if not is_discrete_wavelet(name):
        raise ParamError(
            f"{owner}: wavelet {name!r} is not a discrete wavelet PyWavelets knows; use e.g. "
            "'haar', 'db2', 'sym4', 'coif1', 'bior2.2' (see pywt.wavelist(kind='discrete'))"
        )
    return str(name)


def max_levels(shape: Sequence[int], wavelet: str) -> int:
    """Most decomposition levels ``pywt.dwt_max_level`` allows for an image of ``shape``."""
    return int(pywt.dwt_max_level(int(min(shape)), pywt.Wavelet(wavelet).dec_len))


def check_levels(levels: int, shape: Sequence[int], wavelet: str, owner: str = "dwt") -> int:
    """Return ``levels`` or raise ParamError when the image is too small for them."""
    allowed = max_levels(shape, check_wavelet(wavelet, owner))
    if not (isinstance(levels, (int, np.integer)) and 1 <= levels <= allowed):
        raise ParamError(
            f"{owner}: {levels!r} DWT levels of {wavelet!r} need a larger image than "
            f"{tuple(int(s) for s in shape)}; at most {allowed} level(s) fit (pywt.dwt_max_level)"
        )
    return int(levels)


def dwt_features(image: np.ndarray, wavelet: str = "haar", levels: int = 3,
                 kind: str = "approx") -> np.ndarray:
    """DWT features of one 2-D image as a float64 vector (see the module docstring)."""
    return dwt_matrix([image], wavelet, levels, kind)[0]


def dwt_matrix(images: Sequence[np.ndarray], wavelet: str = "haar", levels: int = 3,
               kind: str = "approx") -> np.ndarray:
    """DWT features of equally sized images as an ``(n, d)`` float64 array.

    The transform runs on the whole ``(n, H, W)`` stack at once (``wavedec2`` over the last
    two axes).
    """
    if len(images) == 0:
        return np.zeros((0, 0))
    stack = np.stack([np.asarray(i, dtype=np.float64) for i in images])
    check_levels(levels, stack.shape[-2:], wavelet)
    if kind not in FEATURE_KINDS:
        raise ParamError(f"dwt: kind must be one of {', '.join(FEATURE_KINDS)}, got {kind!r}")
    coeffs = pywt.wavedec2(stack, wavelet, mode=MODE, level=levels, axes=(-2, -1))
    n = stack.shape[0]
    if kind == "approx":
        return coeffs[0].reshape(n, -1)
    bands = [coeffs[0], *(band for detail in coeffs[1:] for band in detail)]
    cols = []
    for b in bands:
        flat = b.reshape(n, -1)
        cols += [np.mean(flat * flat, axis=1), flat.mean(axis=1), flat.std(axis=1)]
    return np.stack(cols, axis=1)
