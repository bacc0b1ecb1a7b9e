"""Benchmark of the patch CNNs on Br35H, with and without their dense CRF.

Trains ``two-pathway-cnn`` (Havaei et al. 2017) and ``multiscale-cnn`` (the multi-scale patch
CNN with location features) once on the train/val parts of the Br35H split manifests (the
``official`` and ``leak-free`` manifests share train and val, which is checked; otherwise a
method is trained once per split) and scores each on the test part of every split named in
``--splits``, raw and refined by the dense CRF whose weights were chosen on val. One row per
(split, method, variant):

    split  row  acc  F1  segF1  segIoU  segP  segR  segSpec  meanDice  s/ep  inf_ms  crf_ms

``acc``/``F1`` are image-level detection (tumour when the predicted area passes the threshold
learnt on val); ``seg*`` the pooled (micro) pixel metrics of the annotated test slices (F1 is
the pooled Dice), ``meanDice`` their per-image mean Dice; ``s/ep`` the mean training epoch
(with its validation), ``inf_ms`` the network's dense inference per test slice (CRF excluded),
``crf_ms`` the CRF per slice. The load average is printed: timings taken while other jobs
run are noisy. Heavy (minutes on two cores); run it as::

    flock /tmp/mribench-heavy.lock python benchmarks/bench_patch_cnn.py --json /tmp/patch.json

Options: ``--profile quick|paper``, ``--image-size`` (256), ``--splits official,leak-free``,
``--methods a,b``, ``--set name:k=v,k2=v2`` (parameter overrides, repeatable), ``--data-dir``
(default ``../shared/data/br35h`` beside the repository), ``--threads``, ``--seed``,
``--workdir``, ``--json PATH`` (the options of ``bench_deep.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_deep  # this folder is on sys.path when a script in it runs
import numpy as np

from mribench.eval.metrics import evaluate

METHODS = ("two-pathway-cnn", "multiscale-cnn")
COLUMNS = ("accuracy", "f1", "pooled_f1", "pooled_iou", "pooled_precision", "pooled_recall",
           "pooled_specificity", "mean_dice")


def parse_args() -> argparse.Namespace:
    """``bench_deep.py``'s options (one set for every deep benchmark), these methods by default."""
    return bench_deep.parse_args(METHODS, __doc__)


def _scores(prediction: Any, test: list, n_boot: int = 0) -> dict[str, float | None]:
    tasks, _ = evaluate(prediction, test, ["classify", "segment"], n_boot=n_boot)
    cls, seg = tasks["classify"]["metrics"], tasks["segment"]
    pooled = seg["metrics"]
    return {
        "accuracy": cls["accuracy"]["value"], "f1": cls["f1"]["value"],
        "pooled_f1": pooled["f1"]["value"], "pooled_iou": pooled["iou"]["value"],
        "pooled_precision": pooled["precision"]["value"],
        "pooled_recall": pooled["recall"]["value"],
        "pooled_specificity": pooled["specificity"]["value"],
        "mean_dice": seg["per_image"]["dice"]["value"], "n_segment": seg["n"],
    }


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-patch-"))
    splits = bench_deep.load_splits(args, workdir)
    rows: list[dict[str, Any]] = []
    fmt = lambda v: "   -  " if v is None else f"{v:6.3f}"  # noqa: E731
    header = (f"{'split':10s} {'row':20s} {'acc':>6s} {'F1':>6s} {'segF1':>6s} {'segIoU':>6s} "
              f"{'segP':>6s} {'segR':>6s} {'segSp':>6s} {'mDice':>6s} {'s/ep':>5s} "
              f"{'inf_ms':>6s} {'crf_ms':>6s}")
    print(header, flush=True)
    for group, name, method, ctx, fit_s in bench_deep.fitted_methods(args, splits, workdir):
        epochs = [r["seconds"] for r in ctx.history if r.get("seconds") is not None]
        for strategy in group:
            test = splits[strategy].parts[2]
            t1 = time.perf_counter()
            prediction = method.predict(test, ctx)
            predict_s = time.perf_counter() - t1
            crf_ms = float(getattr(getattr(method, "crf_", None), "last_ms_per_image_", 0))
            infer_ms = 1000 * predict_s / max(len(test), 1) - crf_ms
            for variant, pred in [(None, prediction), *prediction.variants.items()]:
                row = {"split": strategy, "method": name, "variant": variant,
                       "row": name if variant is None else f"{name}+{variant}",
                       "profile": args.profile, "params": method.params.as_dict(),
                       **_scores(pred, test), "n_test": len(test), "fit_s": fit_s,
                       "epochs": len(epochs),
                       "s_per_epoch": float(np.mean(epochs)) if epochs else None,
                       "infer_ms_per_slice": infer_ms,
                       "crf_ms_per_slice": crf_ms if variant == "crf" else None,
                       "crf_params": (method.crf_.params_.as_dict()
                                      if variant == "crf" else None),
                       "load_average": os.getloadavg()}
                rows.append(row)
                print(f"{strategy:10s} {row['row']:20s} "
                      + " ".join(fmt(row[c]) for c in COLUMNS)
                      + f" {row['s_per_epoch'] or 0:5.1f} {infer_ms:6.1f} "
                      f"{crf_ms if variant else 0:6.1f}", flush=True)
        print(f"  {name}: fit {fit_s:.0f} s, {len(epochs)} epochs", flush=True)
    print(f"load average {os.getloadavg()}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=float))
    return rows


if __name__ == "__main__":
    run(parse_args())
