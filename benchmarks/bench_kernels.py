"""Kernel timings of issue 12 item 4: GLCM counting, near-duplicate grouping, FFT convolution.

Each new kernel is timed against the implementation it replaced (kept in
``tests/test_kernels.py``) and its results compared:

- ``glcm``: co-occurrence matrices (32 levels, distances 1, 2, 4, 4 angles, brain mask) of
  ``--glcm-slices`` Br35H slices at 256 px: old/new time ratio, bit-identical or not;
- ``groups``: Br35H's 3,000 thumbnails (groups and partition, old vs new), then ``--n``
  synthetic image-like thumbnails with 10% planted near-duplicates (new), and the old
  all-pairs float64 product on ``--old-n`` of them, extrapolated to ``--n`` as n^2;
- ``fft``: the two-pathway CNN's dense pass over one 256 px slice (paper size: 64 + 160 maps),
  output convolution direct vs FFT, and the max abs difference of the logits.

Times are the best of ``--repeat`` runs. Run: ``python benchmarks/bench_kernels.py [--only glcm]``
(a few minutes on two cores with the defaults; ``--n 300000`` for the large grouping run).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "br35h"
sys.path.insert(0, str(ROOT / "tests"))


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def bench_glcm(data: Path, n: int, repeat: int) -> None:
    from test_kernels import old_glcm_matrices

    from mribench.blocks.features.glcm import glcm_matrices
    from mribench.blocks.preprocess import brain_mask, denoise
    from mribench.data.imageio import load_image

    paths = sorted((data / "yes").glob("*.jp*g"))[:n // 2] + sorted(
        (data / "no").glob("*.jp*g"))[:n - n // 2]
    slices = np.stack([load_image(p, 256).image for p in paths])
    smooth = np.stack([denoise(s, "median") for s in slices])
    masks = np.stack([brain_mask(s) for s in slices])
    kw = dict(levels=32, distances=(1, 2, 4), masks=masks)
    t_old, old = best(lambda: old_glcm_matrices(smooth, **kw), repeat)
    t_new, new = best(lambda: glcm_matrices(smooth, **kw), repeat)
    print(f"glcm  {len(slices)} Br35H slices 256 px: old {t_old:.2f} s, new {t_new:.2f} s, "
          f"ratio old/new {t_old / t_new:.2f}, bit-identical {np.array_equal(old, new)}",
          flush=True)


def bench_groups(data: Path, n: int, old_n: int, repeat: int) -> None:
    from test_kernels import old_group_labels, same_partition, smooth_thumbnails

    from mribench.data.duplicates import group_labels
    from mribench.data.load import read_images

    if (data / "yes").is_dir():
        paths = [p for p in sorted((data / "yes").iterdir()) + sorted((data / "no").iterdir())
                 if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
        thumbs = read_images(paths, 32).thumbnails
        t_old, old = best(lambda: old_group_labels(thumbs), repeat)
        t_new, new = best(lambda: group_labels(thumbs), repeat)
        print(f"groups Br35H {len(thumbs)} thumbnails: old {t_old:.2f} s, new {t_new:.2f} s, "
              f"groups old {len(set(old.tolist()))} new {len(set(new.tolist()))}, "
              f"same partition {same_partition(old, new)}", flush=True)
    base = n - n // 10
    parts = [smooth_thumbnails(min(50_000, base - s), seed=s) for s in range(0, base, 50_000)]
    thumbs = np.concatenate(parts)
    rng = np.random.default_rng(0)
    src = rng.integers(0, base, n - base)
    copies = (rng.uniform(0.7, 1.3, (len(src), 1)) * thumbs[src]
              + rng.uniform(0.0, 0.02, (len(src), 1)) * rng.standard_normal((len(src), 1024)))
    thumbs = np.concatenate([thumbs, copies.astype(np.float32)])
    t_new, labels = best(lambda: group_labels(thumbs), 1)
    print(f"groups synthetic {n} thumbnails ({n - base} planted copies): new {t_new:.1f} s, "
          f"{len(set(labels.tolist()))} groups", flush=True)
    sub = thumbs[np.sort(rng.choice(n, old_n, replace=False))]
    t_old, old = best(lambda: old_group_labels(sub), 1)
    t_sub, new = best(lambda: group_labels(sub), 1)
    print(f"groups synthetic subset {old_n}: old {t_old:.1f} s, new {t_sub:.2f} s, same "
          f"partition {same_partition(old, new)}; old extrapolated to {n}: "
          f"{t_old * (n / old_n) ** 2 / 60:.0f} min", flush=True)


def bench_fft(size: int, repeat: int) -> None:
    import torch
    import torch.nn.functional as F

    from mribench.methods.two_pathway_cnn import TwoPathCNN

    torch.manual_seed(0)
    net = TwoPathCNN(1, 64, 160).eval()
    x = F.pad(torch.rand(1, 1, size, size), [16] * 4)
    with torch.no_grad():
        t_paths, feats = best(lambda: torch.cat([net.local_path(x), net.global_path(x)], 1),
                              repeat)
        t_direct, direct = best(lambda: F.conv2d(feats, net.output.weight, net.output.bias),
                                repeat)
        t_fft, fft = best(lambda: net.output(feats), repeat)
    diff = (direct - fft).abs().max().item()
    print(f"fft   dense pass {size} px: pathways {t_paths:.2f} s, output conv direct "
          f"{t_direct:.2f} s, FFT {t_fft:.2f} s (x{t_direct / t_fft:.1f}); whole pass "
          f"{t_paths + t_direct:.2f} -> {t_paths + t_fft:.2f} s "
          f"(x{(t_paths + t_direct) / (t_paths + t_fft):.2f}); max abs diff {diff:.2e}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--only", choices=("glcm", "groups", "fft"), default=None)
    parser.add_argument("--glcm-slices", type=int, default=200)
    parser.add_argument("--n", type=int, default=300_000, help="synthetic thumbnails")
    parser.add_argument("--old-n", type=int, default=20_000, help="old grouping's subset")
    parser.add_argument("--size", type=int, default=256, help="FFT slice side")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.only in (None, "glcm"):
        bench_glcm(args.data_dir, args.glcm_slices, args.repeat)
    if args.only in (None, "fft"):
        bench_fft(args.size, args.repeat)
    if args.only in (None, "groups"):
        bench_groups(args.data_dir, args.n, args.old_n, args.repeat)


if __name__ == "__main__":
    main()
