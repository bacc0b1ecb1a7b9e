"""Benchmark of the ``unet`` plugin on Br35H beside Khadra et al.'s published figures.

Trains ``unet`` (``quick`` profile by default: at most 10 minutes of training on two CPU
cores) on the train/val parts of the Br35H split manifests and scores the annotated test
slices of the ``official`` and ``leak-free`` splits: pooled (micro) F1 = Dice, IoU, precision,
recall, and per-image mean Dice, with seconds per epoch and inference ms per image. The paper
reports pooled F1 0.826, IoU 0.74, precision 0.934, recall 0.780 on the official TEST.
The quality goal of the ``quick`` profile is pooled F1 >= 0.80 on the official TEST. Run::

    flock /tmp/mribench-heavy.lock python benchmarks/bench_unet.py --json /tmp/unet.json

Options as ``bench_deep.py`` (``--set unet:base_width=16,epochs=10`` etc.).
"""

from __future__ import annotations

import bench_deep  # this folder is on sys.path when a script in it runs

PAPER = {"pooled_f1": 0.826, "pooled_iou": 0.74, "pooled_precision": 0.934,
         "pooled_recall": 0.780}


if __name__ == "__main__":
    rows = bench_deep.run(bench_deep.parse_args(("unet",), __doc__))
    print("\npaper (official TEST): " + ", ".join(f"{k} {v}" for k, v in PAPER.items()))
    for row in rows:
        print(f"{row['split']:10s} pooled F1 {row['pooled_f1']:.3f}  IoU {row['pooled_iou']:.3f}"
              f"  precision {row['pooled_precision']:.3f}  recall {row['pooled_recall']:.3f}"
              f"  mean Dice {row['mean_dice']:.3f}  (n={row['n_segment']}; train "
              f"{row['train_s'] / 60:.1f} min, {row['epochs']} epochs, timed out "
              f"{row['timed_out']})")
