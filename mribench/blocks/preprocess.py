"""Classical MRI pre-processing: skull stripping, denoising, histogram equalisation.

These are the first steps of most classical brain-tumour pipelines (and of some deep ones):

- :func:`brain_mask` strips the skull of an axial slice with morphology only (no atlas):
  Otsu threshold of the smoothed slice, largest component, hole filling, then an erosion that
  removes the bright skull ring;
- :func:`denoise` applies a median, Gaussian or non-local-means filter;
- :func:`equalise` spreads the intensities (global histogram equalisation or CLAHE), optionally
  estimated on the brain only;
- :func:`zscore` standardises intensities with the brain's mean and spread;
- :func:`prepare` chains skull stripping, denoising and equalisation.

All functions take float images in [0, 1] (a :class:`~mribench.api.types.Sample`'s ``image``) and
return float32 images in [0, 1] and bool masks; none loops over pixels.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import ndimage as ndi
from skimage import exposure, filters, restoration

from mribench.api.errors import ParamError

__all__ = [
    "DENOISERS",
    "EQUALISERS",
    "brain_mask",
    "denoise",
    "equalise",
    "fill_holes",
    "largest_component",
    "prepare",
    "zscore",
]

DenoiseMethod = Literal["median", "gaussian", "nl-means", "none"]
EqualiseMethod = Literal["hist", "clahe", "none"]

DENOISERS: tuple[str, ...] = ("median", "gaussian", "nl-means", "none")
EQUALISERS: tuple[str, ...] = ("hist", "clahe", "none")
#: The steps :func:`preprocess` knows, in the order it applies them.


def _as_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {image.shape}")
    return image


def largest_component(mask: np.ndarray, connectivity: int = 1) -> np.ndarray:
    """The largest connected component of a bool mask (an empty mask stays empty).

    ``connectivity`` 1 joins pixels sharing an edge, 2 also those sharing a corner.
    """
    mask = np.asarray(mask, dtype=bool)
    structure = ndi.generate_binary_structure(mask.ndim, connectivity)
    labels, n = ndi.label(mask, structure=structure)
    if n <= 1:
        return mask.copy()
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of a bool mask: background pixels not connected to the image border.

    Same result as ``scipy.ndimage.binary_fill_holes`` (4-connected background), computed by
    one labelling of the background instead of an iterated dilation.
    """
    mask = np.asarray(mask, dtype=bool)
    labels, n = ndi.label(~mask)
    if n == 0:
        return mask.copy()
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    outside = np.zeros(n + 1, dtype=bool)
    outside[border] = True
    outside[0] = False
    return ~outside[labels]


def brain_mask(image: np.ndarray, *, erosion: float = 0.06, smoothing: float = 1.0,
               threshold_scale: float = 0.5) -> np.ndarray:
    """Skull-strip an axial slice: a bool mask of the brain (the head minus its outer ring).

    Steps: Gaussian smoothing (``smoothing`` px), Otsu threshold times ``threshold_scale``
    (half of it by default: Otsu alone often splits dark grey matter from bright tissue and
    cuts into the brain) to separate the head from the dark background, the largest connected component, hole
    filling (dark ventricles and tumour cores belong to the brain), then an erosion by a disc
    of radius ``erosion`` x the image side that peels off the scalp and skull ring, and again
    the largest component and hole filling. When the erosion would leave nothing (a tiny or
    tightly cropped slice), the head mask is returned instead.

    Parameters
    ----------
    image : np.ndarray
        float (H, W) in [0, 1].
    erosion : float, default=0.06
        Radius of the skull-removing erosion as a fraction of the image side; 0 keeps the head.
    smoothing : float, default=1.0
        Sigma in pixels of the Gaussian applied before thresholding.
    threshold_scale : float, default=0.5
        Multiplies the Otsu threshold (below 1 keeps darker tissue in the head).

    Returns
    -------
    np.ndarray
        bool (H, W). All False for a constant image.
    """
    image = _as_image(image)
    if not 0 <= erosion < 0.5:
        raise ParamError(f"brain_mask: erosion must be in [0, 0.5), got {erosion!r}")
    smooth = ndi.gaussian_filter(image, smoothing) if smoothing > 0 else image
    if float(smooth.max() - smooth.min()) < 1e-6:
        return np.zeros(image.shape, dtype=bool)
    head = smooth > filters.threshold_otsu(smooth) * threshold_scale
    head = fill_holes(largest_component(head))
    radius = int(round(erosion * min(image.shape)))
    if radius < 1:
        return head
    # Erode through a distance transform: one pass whatever the radius.
    brain = ndi.distance_transform_edt(np.pad(head, 1))[1:-1, 1:-1] > radius
    if not brain.any():
        return head
    return fill_holes(largest_component(brain))


def denoise(image: np.ndarray, method: DenoiseMethod = "median", *, size: int = 3,
            sigma: float = 1.0, strength: float = 0.8) -> np.ndarray:
    """Denoise a slice.

    Parameters
    ----------
    image : np.ndarray
        float (H, W) in [0, 1].
    method : {"median", "gaussian", "nl-means", "none"}, default="median"
        Median filter (``size`` x ``size``), Gaussian filter (``sigma`` px), or non-local
        means (scikit-image's fast variant, filtering strength ``strength`` times the noise
        level estimated from the image).
    size, sigma, strength
        Settings of the three filters (see ``method``).

    Returns
    -------
    np.ndarray
        float32 (H, W) in [0, 1].
    """
    image = _as_image(image)
    if method == "median":
        out = ndi.median_filter(image, size=size, mode="nearest")
    elif method == "gaussian":
        out = ndi.gaussian_filter(image, sigma)
    elif method == "nl-means":
        noise = float(np.mean(restoration.estimate_sigma(image)))
        out = restoration.denoise_nl_means(image, h=strength * max(noise, 1e-3),
                                           sigma=noise, patch_size=5, patch_distance=6,
                                           fast_mode=True)
    elif method == "none":
        out = image
    else:
        raise ParamError(f"denoise: method must be one of {', '.join(DENOISERS)}, got {method!r}")
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def equalise(image: np.ndarray, mask: np.ndarray | None = None,
             method: EqualiseMethod = "hist", *, clip_limit: float = 0.01,
             nbins: int = 256) -> np.ndarray:
    """Histogram equalisation (global) or CLAHE (contrast-limited, adaptive).

    With a ``mask`` (the brain), the intensity mapping is estimated from the masked pixels
    only, so the black background does not eat half of the output range, and pixels outside
    the mask are set to 0.

    Parameters
    ----------
    image : np.ndarray
        float (H, W) in [0, 1].
    mask : np.ndarray or None
        bool (H, W): where to estimate the histogram; None uses every pixel.
    method : {"hist", "clahe", "none"}, default="hist"
        ``skimage.exposure.equalize_hist`` or ``equalize_adapthist`` (``clip_limit``).

    Returns
    -------
    np.ndarray
        float32 (H, W) in [0, 1].
    """
    image = _as_image(image)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != image.shape:
            raise ValueError(f"mask shape {mask.shape} differs from image shape {image.shape}")
        if not mask.any():
            return np.zeros_like(image)
    if method == "hist":
        out = exposure.equalize_hist(image, nbins=nbins, mask=mask)
    elif method == "clahe":
        if mask is not None:
            # Stretch the brain's own range first, so CLAHE's tiles see brain contrast.
            lo, hi = np.percentile(image[mask], (0.5, 99.5))
            image = np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)
        out = exposure.equalize_adapthist(image, clip_limit=clip_limit, nbins=nbins)
    elif method == "none":
        out = image
    else:
        raise ParamError(
            f"equalise: method must be one of {', '.join(EQUALISERS)}, got {method!r}")
    out = np.asarray(out, dtype=np.float32)
    if mask is not None:
        out = np.where(mask, out, 0.0).astype(np.float32)
    return np.clip(out, 0.0, 1.0)


def zscore(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(image - mean) / std`` with the statistics of the ``mask`` pixels (the brain), 0
    outside the mask: intensities in units of the brain's spread, comparable across slices.
    float32 (H, W); all 0 when the mask has fewer than 2 pixels."""
    image = _as_image(image)
    mask = np.asarray(mask, dtype=bool)
    if mask.sum() < 2:
        return np.zeros(image.shape, np.float32)
    values = image[mask]
    std = max(float(values.std()), 1e-6)
    return np.where(mask, (image - float(values.mean())) / std, 0.0).astype(np.float32)


def prepare(image: np.ndarray, *, denoise_method: DenoiseMethod = "median",
            equalise_method: EqualiseMethod = "hist", erosion: float = 0.06
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The classical chain on one slice: skull stripping, denoising, equalisation on the brain.

    Returns
    -------
    (smooth, equalised, brain) : tuple of np.ndarray
        The denoised float32 image, its equalised version (0 outside the brain) and the bool
        brain mask; pipelines z-score one or the other with :func:`zscore`.
    """
    image = _as_image(image)
    brain = brain_mask(image, erosion=erosion)
    smooth = denoise(image, denoise_method)
    return smooth, equalise(smooth, brain, equalise_method), brain
