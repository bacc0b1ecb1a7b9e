"""Do the Br35H classifiers look at the tumour? Occlusion (and Grad-CAM) maps scored on the
annotated test slices of the leak-free split.

Each classifier (``quick`` profile) is fitted on the train/val parts of the committed
``leak-free`` manifest (benchmarks/splits/br35h-leak-free.json); its occlusion maps (patch 32,
stride 16 at the run's 256 px, filled with the slice mean) of the annotated test slices (at
most ``--max-slices``, a seeded draw) are scored against the Mask-RCNN polygons: the share of
positive attribution inside the tumour and the pointing game, with 95 % bootstrap intervals,
beside the random-map baseline (the tumour's area fraction). The CNNs also get Grad-CAM.
Features of the occluded copies are shared between svm, ann and ocsvm-immune through one
feature cache (same copies, same ids), so the second and third cost little.

Run::

    flock /tmp/mribench-heavy.lock python benchmarks/bench_explain_br35h.py \\
        --max-slices 40 --json /tmp/explain-br35h.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from mribench.api import Context, FeatureCache
from mribench.api.registry import methods
from mribench.data.load import load_dataset
from mribench.model import save_model
from mribench.model.explain import explain_samples
from mribench.split.choose import choose_split

DEFAULT = "glcm-knn,svm,ann,ocsvm-immune,dwt-dnn,cnn"
BR35H = Path(__file__).resolve().parents[2] / "shared" / "data" / "br35h"


def fmt(entry: dict) -> str:
    return f"{entry['mean']:.3f} [{entry['ci_low']:.3f}, {entry['ci_high']:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=DEFAULT,
                        help=f"comma list (default {DEFAULT}; fcm-cnn, unet if time permits)")
    parser.add_argument("--data-dir", type=Path, default=BR35H)
    parser.add_argument("--max-slices", type=int, default=40)
    parser.add_argument("--patch", type=int, default=32)
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--save-models", type=Path, default=None,
                        help="also save each fitted model to DIR/<method>/model (for "
                             "`bench predict DIR/<method> --images .../pred`)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    ds, samples = load_dataset("br35h", data_dir=args.data_dir, image_size=256)
    chosen = choose_split(ds, samples, "leak-free", seed=0)
    train, val, test = chosen.parts
    annotated = [s for s in test if s.mask is not None and s.mask.any()]
    if len(annotated) > args.max_slices:
        pick = np.random.default_rng(0).choice(len(annotated), args.max_slices, replace=False)
        annotated = [annotated[i] for i in sorted(pick)]
    print(f"split {chosen.path}: train {len(train)}, val {len(val)}, test {len(test)}; "
          f"explaining {len(annotated)} annotated test slices (patch {args.patch}, stride "
          f"{args.stride})")
    cache = FeatureCache(None)  # training features and occluded copies shared by methods
    rows = []
    for name in args.methods.split(","):
        method = methods()[name](profile="quick")
        ctx = Context(seed=0, method_name=name, cache=cache,
                      workdir=Path("/tmp/mribench-explain-br35h") / name)
        start = time.perf_counter()
        method.fit(train, val, ctx)
        fit_s = time.perf_counter() - start
        if args.save_models is not None:
            save_model(method, args.save_models / name / "model", info={
                "image_size": 256, "dataset": "br35h", "dataset_fingerprint": ds.fingerprint(),
                "split_hash": chosen.manifest.sha256, "seed": 0})
        pred = method.predict(annotated, ctx)
        result = explain_samples(method, annotated, ctx, patch=args.patch, stride=args.stride,
                                 n_boot=args.n_boot)
        for kind, scores in result.scores.items():
            row = {"method": name, "kind": kind, "n": scores["n_slices"],
                   "detected": float(np.mean(pred.labels == 1)), "fit_s": fit_s,
                   "explain_s": result.seconds[kind],
                   **{k: scores[k] for k in ("positive_share", "pointing", "random_baseline")}}
            rows.append(row)
            print(f"{name:13s} {kind:9s} n={row['n']:3d}  share inside "
                  f"{fmt(row['positive_share'])}  pointing {fmt(row['pointing'])}  random "
                  f"{fmt(row['random_baseline'])}  (called tumour {row['detected']:.2f}; fit "
                  f"{fit_s:.0f} s, maps {row['explain_s']:.0f} s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"slices": [s.id for s in annotated], "rows": rows},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
