"""Benchmark of the classical pipelines on Br35H: accuracy, F1, AUC, pooled F1 and wall time.

Runs ``glcm-knn``, ``svm``, ``ann``, ``ocsvm-immune`` and ``region-growing`` (or those named
with ``--methods``) on the real Br35H data under the ``leak-free`` and ``official`` split
manifests, with one feature cache per split (so ``ann`` and ``ocsvm-immune`` reuse the
features ``svm`` computed, as in a real run), and prints one row per (split, method):

    split  method  acc  F1  AUC  segF1  fit_s  predict_s  total_s

``segF1`` is the pooled (micro) Dice of the annotated test slices, for ``region-growing``.
``total_s`` is fit + predict, including the feature extraction of the first method that
needs each feature family. Heavy (about 5 minutes on two cores, quick profile); run it as::

    flock /tmp/mribench-heavy.lock python benchmarks/bench_classical.py

Options: ``--profile quick|paper``, ``--image-size`` (256), ``--splits leak-free,official``,
``--methods a,b``, ``--data-dir`` (default ``../shared/data/br35h`` beside the repository),
``--json PATH`` to save the rows.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mribench.api.context import Context
from mribench.api.feature_cache import FeatureCache
from mribench.api.registry import get_method
from mribench.data.load import load_dataset
from mribench.eval.metrics import evaluate
from mribench.split.choose import choose_split

METHODS = ("glcm-knn", "svm", "ann", "ocsvm-immune", "region-growing")
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "br35h"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA,
                        help="Br35H folder (default: ../shared/data/br35h)")
    parser.add_argument("--profile", default="quick", choices=("quick", "paper"))
    parser.add_argument("--image-size", type=int, default=256, help="run image size (256)")
    parser.add_argument("--splits", default="leak-free,official", help="split strategies")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated names")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="save the rows here")
    args = parser.parse_args()

    start = time.perf_counter()
    dataset, samples = load_dataset("br35h", data_dir=args.data_dir,
                                    image_size=args.image_size)
    print(f"loaded {len(samples)} slices at {args.image_size} px in "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    rows = []
    header = (f"{'split':10s} {'method':15s} {'acc':>6s} {'F1':>6s} {'AUC':>6s} {'segF1':>6s} "
              f"{'fit_s':>7s} {'pred_s':>7s} {'total_s':>7s}")
    for strategy in args.splits.split(","):
        split = choose_split(dataset, samples, strategy, seed=args.seed)
        train, val, test = split.parts
        print(f"\nsplit {strategy}: train {len(train)}, val {len(val)}, test {len(test)} "
              f"(sha256 {split.sha256[:12]})", flush=True)
        print(header, flush=True)
        cache = FeatureCache(None)
        for name in args.methods.split(","):
            method = get_method(name)(profile=args.profile)
            ctx = Context(seed=args.seed, profile=args.profile, cache=cache, method_name=name)
            t0 = time.perf_counter()
            method.fit(train, val, ctx)
            t1 = time.perf_counter()
            prediction = method.predict(test, ctx)
            t2 = time.perf_counter()
            tasks, _ = evaluate(prediction, test, list(method.tasks), n_boot=0)
            cls = tasks["classify"]["metrics"]
            seg = tasks.get("segment", {}).get("metrics", {}).get("f1", {}).get("value")
            row = {"split": strategy, "method": name, "accuracy": cls["accuracy"]["value"],
                   "f1": cls["f1"]["value"], "auc": cls["auc"]["value"], "pooled_f1": seg,
                   "fit_s": t1 - t0, "predict_s": t2 - t1, "total_s": t2 - t0,
                   "n_test": len(test), "profile": args.profile,
                   "image_size": args.image_size}
            rows.append(row)
            seg_text = f"{seg:6.3f}" if seg is not None else f"{'-':>6s}"
            print(f"{strategy:10s} {name:15s} {row['accuracy']:6.3f} {row['f1']:6.3f} "
                  f"{row['auc']:6.3f} {seg_text} {row['fit_s']:7.1f} {row['predict_s']:7.1f} "
                  f"{row['total_s']:7.1f}", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
