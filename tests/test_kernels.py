"""Faster kernels give the same results: GLCM counting through scikit-image, sub-quadratic
near-duplicate grouping, the FFT output convolution of the two-pathway CNN, streamed feature
extraction (issue 12, item 4); the data cache is tested in test_store.py.

The previous implementations are kept here as references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from mribench.api.types import Sample
from mribench.blocks.features import glcm, handcrafted
from mribench.blocks.nn.patch_nets import FFTConv2d, fft_conv2d
from mribench.data import duplicates

BR35H = Path(__file__).resolve().parents[2] / "shared" / "data" / "br35h"
needs_br35h = pytest.mark.skipif(not (BR35H / "yes").is_dir(), reason="no Br35H copy")


# --------------------------------------------------------------------------- references

def old_glcm_matrices(images, *, levels=32, distances=(1,), angles=4, masks=None,
                      symmetric=True, normed=True):
    """glcm_matrices before issue 12 (np.bincount counting)."""
    stack = glcm.as_stack(images)
    n, h, w = stack.shape
    inside = glcm.as_masks(masks, stack.shape) if masks is not None else None
    q = glcm.quantise(stack, levels).astype(np.int32 if n * levels * levels < 2**31 else np.int64)
    angle_values = glcm._angles(angles)
    dist = [int(d) for d in distances]
    out = np.zeros((n, len(dist), len(angle_values), levels, levels), dtype=np.float64)
    chunk = max(1, (1 << 22) // max(1, h * w))
    size = levels * levels
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        m = stop - start
        base = (np.arange(m) * size)[:, None, None]
        for di, d in enumerate(dist):
            for ai, a in enumerate(angle_values):
                dr, dc = int(round(np.sin(a) * d)), int(round(np.cos(a) * d))
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
                out[start:stop, di, ai] = counts.reshape(m, levels, levels)
    if symmetric:
        out = out + np.swapaxes(out, -1, -2)
    if normed:
        sums = out.sum(axis=(-1, -2), keepdims=True)
        out = np.divide(out, sums, out=np.zeros_like(out), where=sums > 0)
    return out


def old_group_labels(thumbs, threshold=duplicates.DEFAULT_THRESHOLD, block=2048):
    """group_labels before issue 12 (float64 all-pairs product)."""
    z = duplicates.normalise(thumbs)
    n = len(z)
    rows, cols = [], []
    for start in range(0, n, block):
        corr = z[start:start + block] @ z.T
        i, j = np.nonzero(corr > threshold)
        i = i + start
        keep = i < j
        rows.append(i[keep])
        cols.append(j[keep])
    i, j = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(np.asarray(a).tolist(), np.asarray(b).tolist(), strict=True))
    return len(pairs) == len(set(np.asarray(a).tolist())) == len(set(np.asarray(b).tolist()))


def smooth_thumbnails(n: int, seed: int = 0, copies: int = 0) -> np.ndarray:
    """Image-like 32 x 32 thumbnails (blurred noise plus a bright disc), with ``copies``
    near-duplicates planted (another contrast plus a little noise)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.standard_normal((n, 32, 32)), (0, 2.5, 2.5))
    yy, xx = np.mgrid[:32, :32]
    centres = rng.uniform(8, 24, (n, 2))
    disc = ((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) < 64
    thumbs = (noise + 0.5 * disc).reshape(n, -1)
    if copies:
        src = rng.integers(0, n, copies)
        extra = (rng.uniform(0.7, 1.3, (copies, 1)) * thumbs[src] + rng.uniform(-1, 1, (copies, 1))
                 + rng.uniform(0.0, 0.02, (copies, 1)) * rng.standard_normal((copies, 1024)))
        thumbs = np.concatenate([thumbs, extra])
    return thumbs.astype(np.float32)


def br35h_slices(n: int, size: int = 128) -> np.ndarray:
    from mribench.data.imageio import load_image

    paths = sorted((BR35H / "yes").glob("*.jp*g"))[:n // 2] + sorted(
        (BR35H / "no").glob("*.jp*g"))[:n - n // 2]
    return np.stack([load_image(p, size).image for p in paths])


# --------------------------------------------------------------------------- GLCM

@pytest.mark.parametrize("levels", [2, 8, 32, 255, 256])
@pytest.mark.parametrize("masked", [False, True])
def test_glcm_matrices_bit_identical_on_random_images(levels: int, masked: bool) -> None:
    rng = np.random.default_rng(levels)
    images = rng.random((5, 23, 31)).astype(np.float32)
    images[0] = 0.0
    images[1, :, :5] = 1.0
    masks = rng.random(images.shape) > 0.3 if masked else None
    if masked:
        masks[2] = False
    for distances, angles in [((1,), 4), ((1, 2, 4), 4), ((3,), [0.0, 0.4, 2.0, np.pi]),
                              ((40,), 4)]:
        new = glcm.glcm_matrices(images, levels=levels, distances=distances, angles=angles,
                                 masks=masks)
        old = old_glcm_matrices(images, levels=levels, distances=distances, angles=angles,
                                masks=masks)
        assert np.array_equal(new, old)
    raw = dict(symmetric=False, normed=False, masks=masks, levels=levels)
    assert np.array_equal(glcm.glcm_matrices(images, **raw), old_glcm_matrices(images, **raw))


def test_glcm_bincount_fallback_is_the_old_counting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(glcm, "_skimage_offsets_agree", lambda *a: False)
    rng = np.random.default_rng(1)
    images, masks = rng.random((3, 20, 20)), rng.random((3, 20, 20)) > 0.2
    kw = dict(levels=16, distances=(1, 2), masks=masks)
    assert np.array_equal(glcm.glcm_matrices(images, **kw), old_glcm_matrices(images, **kw))


def test_offset_rounding_check() -> None:
    assert glcm._skimage_offsets_agree([1, 2, 4], glcm._angles(4))
    assert glcm._skimage_offsets_agree([1, 3, 7], glcm._angles(8))


@needs_br35h
def test_glcm_bit_identical_on_br35h_slices() -> None:
    from mribench.blocks.preprocess import brain_mask, denoise

    slices = br35h_slices(6)
    smooth = np.stack([denoise(s, "median") for s in slices])
    masks = np.stack([brain_mask(s) for s in slices])
    kw = dict(levels=32, distances=(1, 2, 4), masks=masks)
    assert np.array_equal(glcm.glcm_matrices(smooth, **kw), old_glcm_matrices(smooth, **kw))


def test_glcm_features_and_streaming_are_chunk_free(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    images = rng.random((7, 40, 40)).astype(np.float32)
    masks = rng.random(images.shape) > 0.2
    whole = glcm.glcm_features(images, masks=masks, distances=(1, 2))
    ref = glcm.glcm_props(old_glcm_matrices(images, masks=masks, distances=(1, 2)))
    assert np.array_equal(whole, ref.mean(axis=2).reshape(7, -1))
    brain = glcm.brain_glcm_features(images, distances=(1, 2))
    monkeypatch.setattr(glcm, "_FEATURE_CHUNK_BYTES", 1)
    monkeypatch.setattr(glcm, "_STREAM_IMAGES", 3)
    assert np.array_equal(glcm.glcm_features(images, masks=masks, distances=(1, 2)), whole)
    assert np.array_equal(glcm.brain_glcm_features(list(images), distances=(1, 2)), brain)


def test_handcrafted_streaming_is_chunk_free(monkeypatch: pytest.MonkeyPatch) -> None:
    from scipy import ndimage

    rng = np.random.default_rng(3)
    images = np.stack([ndimage.gaussian_filter(rng.random((64, 64)), 3) for _ in range(5)])
    images = ((images - images.min()) / np.ptp(images)).astype(np.float32)
    options = handcrafted.HandcraftedOptions(work_size=48)
    whole = handcrafted.handcrafted_features(images, options)
    monkeypatch.setattr(handcrafted, "_STREAM_IMAGES", 2)
    samples = [Sample(id=str(i), group=str(i), label=0, image=im) for i, im in enumerate(images)]
    assert np.array_equal(handcrafted.handcrafted_features(samples, options), whole)
    assert handcrafted.handcrafted_features([], options).shape == (0, whole.shape[1])


# --------------------------------------------------------------------------- duplicates

def test_grouping_equals_all_pairs_on_image_like_thumbnails() -> None:
    thumbs = smooth_thumbnails(2400, copies=400)
    thumbs[5] = 0.0  # a blank thumbnail stays alone
    new = duplicates.group_labels(thumbs)
    assert same_partition(new, old_group_labels(thumbs))
    assert len(set(new.tolist())) < len(thumbs)
    i, j, corr = duplicates.duplicate_pairs(thumbs)
    assert (i < j).all() and (corr > duplicates.DEFAULT_THRESHOLD).all()
    assert np.all(np.diff(i * len(thumbs) + j) > 0)  # sorted by (i, j)
    for t in (0.98, 0.999):
        assert same_partition(duplicates.group_labels(thumbs, t), old_group_labels(thumbs, t))


def test_grouping_dense_paths_equal_all_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    # i.i.d. noise does not spread in a few directions: the sampled estimate switches to the
    # all-pairs float32 path; and a huge _DENSE_BELOW forces it on image-like thumbnails.
    rng = np.random.default_rng(4)
    base = rng.standard_normal((1500, 1024)).astype(np.float32)
    noise = np.concatenate([base, base + 0.05 * rng.standard_normal(base.shape)])
    assert same_partition(duplicates.group_labels(noise), old_group_labels(noise))
    monkeypatch.setattr(duplicates, "_DENSE_BELOW", 10**9)
    thumbs = smooth_thumbnails(800, seed=5, copies=300)
    assert same_partition(duplicates.group_labels(thumbs), old_group_labels(thumbs))


def test_float32_close_calls_are_decided_in_float64() -> None:
    # Pairs straddling the threshold by less than the float32 margin.
    rng = np.random.default_rng(6)
    base = rng.standard_normal(1024)
    step = rng.standard_normal(1024)
    rows = [base]
    for s in np.linspace(0.0995, 0.1005, 40):
        rows.append(base + s * step)
    thumbs = np.stack(rows)
    i, j, _ = duplicates.duplicate_pairs(thumbs)
    z = duplicates.normalise(thumbs)
    corr = z @ z.T
    want = {(a, b) for a, b in zip(*np.nonzero(corr > duplicates.DEFAULT_THRESHOLD), strict=True)
            if a < b}
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == want


@needs_br35h
def test_grouping_on_br35h_equals_all_pairs() -> None:
    from mribench.data.load import read_images

    paths = sorted((BR35H / "yes").iterdir()) + sorted((BR35H / "no").iterdir())
    paths = [p for p in paths if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    thumbs = read_images(paths, 32).thumbnails
    new, old = duplicates.group_labels(thumbs), old_group_labels(thumbs)
    assert len(set(new.tolist())) == len(set(old.tolist())) == 1563
    assert same_partition(new, old)


# --------------------------------------------------------------------------- FFT convolution

def _pathway_features(size: int) -> tuple[torch.Tensor, torch.nn.Module]:
    from mribench.methods.two_pathway_cnn import TwoPathCNN

    torch.manual_seed(0)
    net = TwoPathCNN(1, 64, 160).eval()
    x = F.pad(torch.rand(2, 1, size, size), [16] * 4)
    with torch.no_grad():
        return torch.cat([net.local_path(x), net.global_path(x)], dim=1), net


def test_fft_conv_equals_direct_conv() -> None:
    feats, net = _pathway_features(48)
    with torch.no_grad():
        direct = F.conv2d(feats, net.output.weight, net.output.bias)
        fft = fft_conv2d(feats, net.output.weight, net.output.bias, max_bytes=1)  # 1 per chunk
        assert fft.shape == direct.shape
        assert (fft - direct).abs().max().item() < 1e-5
        several = torch.randn(4, 3, 30, 41)
        w, b = torch.randn(5, 3, 7, 9), torch.randn(5)
        assert torch.allclose(fft_conv2d(several, w, b), F.conv2d(several, w, b), atol=1e-4)


def test_fft_conv_module_keeps_state_and_training_path() -> None:
    torch.manual_seed(1)
    plain = torch.nn.Conv2d(6, 1, 21)
    fft = FFTConv2d(6, 1, 21)
    assert list(fft.state_dict()) == list(plain.state_dict())
    fft.load_state_dict(plain.state_dict())
    plain.load_state_dict(fft.state_dict())
    x = torch.randn(1, 6, 80, 80)
    fft.train()
    assert torch.equal(fft(x), plain(x))            # training: torch's convolution
    fft.eval()
    assert torch.equal(fft(x), plain(x))            # autograd on: torch's convolution
    with torch.no_grad():
        assert fft._use_fft(x) and not fft._use_fft(x[..., :33, :33])
        assert torch.equal(fft(x[..., :33, :33]), plain(x[..., :33, :33]))  # a window
        assert (fft(x) - plain(x)).abs().max().item() < 1e-5


def test_two_pathway_network_uses_fft_only_for_dense_inference() -> None:
    from mribench.methods.two_pathway_cnn import TwoPathCNN

    net = TwoPathCNN(1, 4, 5)
    assert isinstance(net.output, FFTConv2d)
    assert set(net.state_dict()) == set(TwoPathCNN(1, 4, 5).state_dict())
