"""Grey-level co-occurrence (GLCM) texture features (Haralick et al., 1973), vectorised.

Haralick, Shanmugam & Dinstein, "Textural Features for Image Classification", IEEE Trans.
Systems, Man, and Cybernetics SMC-3(6):610-621, 1973, doi:10.1109/TSMC.1973.4309314.

The co-occurrence matrices of a whole stack of images are counted at once with
``np.bincount`` (one call per offset and chunk of images), and the properties are computed on
the (n, distances, angles, L, L) array in numpy, so a few thousand 256 px slices take seconds.
The matrices and properties equal scikit-image's ``graycomatrix`` / ``graycoprops`` (same
offset convention, same formulas; the tests compare them), with one addition: an optional mask
per image, in which case only pixel pairs with *both* pixels inside the mask are counted (the
brain only, say, so the black background does not dominate the texture).

Grey levels: the image (float in [0, 1]) is quantised to ``levels`` bins,
``q = min(floor(I * levels), levels - 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mribench.api.errors import ParamError
from mribench.blocks.features.common import ImageInput, as_masks, as_stack

__all__ = ["GLCM_PROPS", "brain_glcm_features", "glcm_feature_names", "glcm_features", "glcm_matrices", "glcm_props",
           "quantise"]

#: The properties :func:`glcm_props` computes (scikit-image's names).
GLCM_PROPS: tuple[str, ...] = ("contrast", "dissimilarity", "homogeneity", "ASM", "energy",
                               "correlation", "entropy")

_CHUNK_PIXELS = 1 << 22  # images per bincount call: about 4 M pixels
_FEATURE_CHUNK_BYTES = 16 << 20  # co-occurrence matrices held at once by glcm_features
_STREAM_IMAGES = 256  # slices pre-processed at once by brain_glcm_features


def quantise(images: np.ndarray, levels: int) -> np.ndarray:
    """Grey levels 0..levels-1 of float images in [0, 1] (uint8 or uint16)."""
    dtype = np.uint8 if levels <= 256 else np.uint16
    # Truncation is floor for the non-negative clipped values.
    q = (np.clip(images, 0.0, 1.0, dtype=np.float32) * np.float32(levels)).astype(dtype)
    return np.minimum(q, dtype(levels - 1))


def _angles(angles: int | Sequence[float]) -> np.ndarray:
    if isinstance(angles, int):
        return np.arange(angles) * np.pi / angles
    return np.asarray(angles, dtype=float)


def _offsets(distances: Sequence[int], angle_values: np.ndarray) -> list[tuple[int, int]]:
    """The (row, column) offset of every (distance, angle) pair, distance-major."""
    return [(int(round(np.sin(a) * d)), int(round(np.cos(a) * d)))
            for d in distances for a in angle_values]


def _skimage_offsets_agree(distances: Sequence[int], angle_values: np.ndarray) -> bool:
    """Whether scikit-image's loop (C ``round``: halves away from zero) gives the same offsets
    as :func:`_offsets` (Python ``round``: halves to even); they differ only when
    ``sin(a) d`` or ``cos(a) d`` is exactly ``k + 0.5``."""
    def c_round(x: float) -> int:
        return int(np.copysign(np.floor(abs(x) + 0.5), x))

    return all((c_round(np.sin(a) * d), c_round(np.cos(a) * d))
               == (int(round(np.sin(a) * d)), int(round(np.cos(a) * d)))
               for d in distances for a in angle_values)


def _count_bincount(q: np.ndarray, inside: np.ndarray | None, levels: int,
                    offsets: list[tuple[int, int]], out: np.ndarray) -> None:
    """Count pairs with ``np.bincount`` (one call per offset and chunk of images) into the
    (n, n_offsets, L, L) view ``out``: the fallback when scikit-image's offsets differ."""
    n, h, w = q.shape
    q = q.astype(np.int32 if n * levels * levels < 2**31 else np.int64)
    chunk = max(1, _CHUNK_PIXELS // max(1, h * w))
    size = levels * levels
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        m = stop - start
        base = (np.arange(m) * size)[:, None, None]
        for k, (dr, dc) in enumerate(offsets):
            r0, r1 = max(0, -dr), min(h, h - dr)
            c0, c1 = max(0, -dc), min(w, w - dc)
            if r1 <= r0 or c1 <= c0:
                continue
            first = q[start:stop, r0:r1, c0:c1]
            second = q[start:stop, r0 + dr:r1 + dr, c0 + dc:c1 + dc]
            index = base + first * levels + second
            if inside is not None:
                both = (inside[start:stop, r0:r1, c0:c1]
                        & inside[start:stop, r0 + dr:r1 + dr, c0 + dc:c1 + dc])
                counts = np.bincount(index[both], minlength=m * size)
            else:
                counts = np.bincount(index.ravel(), minlength=m * size)
            out[start:stop, k] = counts.reshape(m, levels, levels)


def _count_skimage(q: np.ndarray, inside: np.ndarray | None, levels: int,
                   distances: Sequence[int], angle_values: np.ndarray,
                   out: np.ndarray) -> None:
    """Count pairs with scikit-image's compiled loop, one image at a time, into the
    (n, D, A, L, L) array ``out``. A mask is applied by giving the pixels outside it a spare
    grey level L and dropping row and column L of the (L + 1)-level matrix: a pair is kept
    exactly when both its pixels are inside, as in :func:`_count_bincount`."""
    from skimage.feature import graycomatrix

    counted = levels if inside is None else levels + 1
    if inside is not None:
        q = q.astype(np.uint16) if counted > 256 and q.dtype == np.uint8 else q.copy()
    dist = np.asarray(distances, dtype=np.float64)
    for k in range(len(q)):
        image = q[k]
        if inside is not None:
            image[~inside[k]] = levels
        counts = graycomatrix(image, dist, angle_values, levels=counted, symmetric=False,
                              normed=False)  # (L', L', D, A) uint32
        out[k] = counts[:levels, :levels].transpose(2, 3, 0, 1)


def glcm_matrices(images: ImageInput, *, levels: int = 32, distances: Sequence[int] = (1,),
                  angles: int | Sequence[float] = 4, masks: np.ndarray | None = None,
                  symmetric: bool = True, normed: bool = True) -> np.ndarray:
    """Co-occurrence matrices of every image: float64 (n, len(distances), n_angles, L, L).

    Parameters
    ----------
    images : samples, (H, W) image or (n, H, W) stack
        float in [0, 1]; quantised with :func:`quantise`.
    levels : int, default=32
        Number of grey levels L.
    distances : sequence of int, default=(1,)
        Pixel distances of the pairs.
    angles : int or sequence of float, default=4
        Angles in radians, or a count n meaning ``k * pi / n`` (4: 0, 45, 90, 135 degrees).
        The pixel pair at angle a and distance d is ``(r, c)`` and
        ``(r + round(sin(a) d), c + round(cos(a) d))``, as in scikit-image.
    masks : bool (n, H, W) or None
        Count only pairs whose two pixels are inside the mask.
    symmetric : bool, default=True
        Count each pair in both orders (``P + P.T``).
    normed : bool, default=True
        Divide each matrix by its sum (an empty matrix stays all zero).

    The counting is scikit-image's compiled ``graycomatrix`` loop, one image at a time
    (2.2 times faster than ``np.bincount`` over index arrays on 200 Br35H slices, see
    ``benchmarks/bench_kernels.py``), with out-of-mask pixels given a spare grey level that is
    dropped afterwards; the counts are integers, so the matrices are bit-identical to the
    ``np.bincount`` counting kept as the fallback (used only where scikit-image would round an
    offset differently, i.e. ``sin(a) d`` or ``cos(a) d`` exactly half an integer).
    """
    if not 2 <= levels <= 65536:
        raise ParamError(f"glcm: levels must be in [2, 65536], got {levels!r}")
    stack = as_stack(images)
    n, h, w = stack.shape
    inside = as_masks(masks, stack.shape) if masks is not None else None
    q = quantise(stack, levels)
    angle_values = _angles(angles)
    dist = [int(d) for d in distances]
    out = np.zeros((n, len(dist), len(angle_values), levels, levels), dtype=np.float64)
    if n and dist and len(angle_values):
        if levels < 65536 and _skimage_offsets_agree(dist, angle_values):
            _count_skimage(q, inside, levels, dist, angle_values, out)
        else:
            _count_bincount(q, inside, levels, _offsets(dist, angle_values),
                            out.reshape(n, -1, levels, levels))
    if symmetric:
        out = out + np.swapaxes(out, -1, -2)
    if normed:
        sums = out.sum(axis=(-1, -2), keepdims=True)
        out = np.divide(out, sums, out=np.zeros_like(out), where=sums > 0)
    return out


def glcm_props(matrices: np.ndarray, props: Sequence[str] = GLCM_PROPS) -> np.ndarray:
    """Haralick properties of co-occurrence matrices (..., L, L) -> (..., len(props)).

    Formulas are scikit-image's ``graycoprops`` (each matrix normalised to sum 1 first;
    correlation is 1 where a marginal standard deviation is below 1e-15; entropy uses the
    natural log).
    """
    unknown = [p for p in props if p not in GLCM_PROPS]
    if unknown:
        raise ParamError(f"glcm: unknown propert(ies) {', '.join(unknown)}; "
                         f"known: {', '.join(GLCM_PROPS)}")
    p = np.asarray(matrices, dtype=np.float64)
    sums = p.sum(axis=(-1, -2), keepdims=True)
    p = np.divide(p, sums, out=np.zeros_like(p), where=sums > 0)
    levels = p.shape[-1]
    i = np.arange(levels, dtype=np.float64)[:, None]
    j = np.arange(levels, dtype=np.float64)[None, :]
    results: dict[str, np.ndarray] = {}

    def weighted(weights: np.ndarray) -> np.ndarray:
        return np.tensordot(p, weights, axes=([-2, -1], [0, 1]))

    for name in props:
        if name == "contrast":
            results[name] = weighted((i - j) ** 2)
        elif name == "dissimilarity":
            results[name] = weighted(np.abs(i - j))
        elif name == "homogeneity":
            results[name] = weighted(1.0 / (1.0 + (i - j) ** 2))
        elif name in ("ASM", "energy"):
            asm = np.sum(p * p, axis=(-1, -2))
            results[name] = asm if name == "ASM" else np.sqrt(asm)
        elif name == "correlation":
            grey = np.arange(levels, dtype=np.float64)
            mu_i = p.sum(axis=-1) @ grey  # marginal over j, then its mean
            mu_j = p.sum(axis=-2) @ grey
            di = grey[:, None] - mu_i[..., None, None]
            dj = grey[None, :] - mu_j[..., None, None]
            std_i = np.sqrt(np.sum(p * di ** 2, axis=(-1, -2)))
            std_j = np.sqrt(np.sum(p * dj ** 2, axis=(-1, -2)))
            cov = np.sum(p * di * dj, axis=(-1, -2))
            ok = (std_i >= 1e-15) & (std_j >= 1e-15)
            results[name] = np.where(ok, cov / np.where(ok, std_i * std_j, 1.0), 1.0)
        elif name == "entropy":
            logp = np.log(p, out=np.zeros_like(p), where=p > 0)
            results[name] = -np.sum(p * logp, axis=(-1, -2))
    return np.stack([results[name] for name in props], axis=-1)


def glcm_features(images: ImageInput, *, levels: int = 32, distances: Sequence[int] = (1,),
                  angles: int | Sequence[float] = 4, props: Sequence[str] = GLCM_PROPS,
                  masks: np.ndarray | None = None, average: bool = True) -> np.ndarray:
    """GLCM texture features: float64 (n, d).

    With ``average`` (the usual rotation-invariant choice) the properties are averaged over
    the angles: d = len(distances) * len(props), ordered distance-major. Without it,
    d = len(distances) * n_angles * len(props). See :func:`glcm_matrices` for the options
    and :func:`glcm_feature_names` for the column names.
    """
    stack = as_stack(images)
    inside = as_masks(masks, stack.shape) if masks is not None else None
    parts = []
    # The (n, D, A, L, L) float64 matrices of a few hundred images at a time (each image's
    # features depend on its own matrices only), so memory does not grow with n.
    step = max(1, _FEATURE_CHUNK_BYTES // max(1, 8 * len(distances) * len(_angles(angles))
                                              * levels * levels))
    for start in range(0, max(1, len(stack)), step):
        matrices = glcm_matrices(stack[start:start + step], levels=levels, distances=distances,
                                 angles=angles,
                                 masks=None if inside is None else inside[start:start + step])
        values = glcm_props(matrices, props)  # (m, D, A, P)
        if average:
            values = values.mean(axis=2)
        parts.append(values.reshape(values.shape[0], -1))
    return np.concatenate(parts)


def glcm_feature_names(*, distances: Sequence[int] = (1,), angles: int | Sequence[float] = 4,
                       props: Sequence[str] = GLCM_PROPS, average: bool = True) -> list[str]:
    """Column names of :func:`glcm_features` with the same options."""
    angle_values = _angles(angles)
    if average:
        return [f"glcm_{p}_d{d}" for d in distances for p in props]
    return [f"glcm_{p}_d{d}_a{np.degrees(a):g}" for d in distances for a in angle_values
            for p in props]


def brain_glcm_features(images: ImageInput, *, levels: int = 32,
                        distances: Sequence[int] = (1,), angles: int | Sequence[float] = 4,
                        props: Sequence[str] = GLCM_PROPS, denoise: str = "median",
                        skull_strip: bool = True, erosion: float = 0.06,
                        work_size: int | None = None) -> np.ndarray:
    """GLCM features of pre-processed slices: resized to ``work_size`` (None: as given),
    denoised (:func:`mribench.blocks.preprocess.denoise`), and, with ``skull_strip``, counted over
    the brain only (:func:`mribench.blocks.preprocess.brain_mask`); angles averaged. float64 (n, d)."""
    from mribench.blocks.features.common import shrink_stack
    from mribench.blocks.preprocess import brain_mask
    from mribench.blocks.preprocess import denoise as denoise_image

    items = as_stack(images) if isinstance(images, np.ndarray) else list(images)
    parts = []
    # Streamed: a few hundred slices at a time are stacked, resized, denoised and masked, so
    # the float32 copies of the whole data set (stack, resized, denoised) are never held.
    for start in range(0, max(1, len(items)), _STREAM_IMAGES):
        stack = shrink_stack(as_stack(items[start:start + _STREAM_IMAGES]), work_size)
        smooth = (np.stack([denoise_image(im, denoise) for im in stack]) if len(stack)
                  else stack)
        masks = (np.stack([brain_mask(im, erosion=erosion) for im in stack])
                 if skull_strip and len(stack) else None)
        parts.append(glcm_features(smooth, levels=levels, distances=distances, angles=angles,
                                   props=props, masks=masks))
    return np.concatenate(parts)
