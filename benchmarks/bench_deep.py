"""Benchmark of the deep pipelines on Br35H: accuracy, F1, pooled and per-image Dice, timings.

Runs ``cnn``, ``fcm-cnn`` and ``dwt-dnn`` (or those named with ``--methods``; ``unet`` too, see
``bench_unet.py``) on the real Br35H data. Every method is trained once on the train/val parts
of the first split (the ``official`` and ``leak-free`` manifests share train and val and differ
in test only, which is checked; otherwise it trains once per split) and scored on the test part
of each split named in ``--splits``. One row per (split, method):

    split  method  acc  F1  AUC  segF1  segIoU  segP  segR  meanDice  s/epoch  ms/img  fit_s

``seg*`` are the pooled (micro) pixel metrics of the annotated test slices (Khadra et al.'s
U-Net figures are pooled), ``meanDice`` the per-image mean Dice of those slices;
``s/epoch`` the mean training epoch time and ``ms/img`` the inference time per test image.
The machine's load average is printed before and after: timings taken while other jobs run
are noisy. Heavy (minutes on two cores); run it as::

    flock /tmp/mribench-heavy.lock python benchmarks/bench_deep.py --json /tmp/deep.json

Options: ``--profile quick|paper``, ``--image-size`` (256), ``--splits official,leak-free``,
``--methods a,b``, ``--set name:k=v,k2=v2`` (parameter overrides of one method, repeatable),
``--data-dir`` (default ``../shared/data/br35h`` beside the repository), ``--threads`` (torch
threads, default all cores), ``--seed``, ``--json PATH`` to save the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from mribench.api.context import Context
from mribench.api.feature_cache import FeatureCache
from mribench.api.params import parse_overrides
from mribench.api.registry import get_method
from mribench.data.load import load_dataset
from mribench.eval.metrics import evaluate
from mribench.split.choose import ChosenSplit, choose_split

METHODS = ("cnn", "fcm-cnn", "dwt-dnn")
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "br35h"


def _value(metrics: dict[str, Any], name: str) -> float | None:
    entry = metrics.get(name)
    return None if entry is None else entry["value"]


def parse_args(default_methods: tuple[str, ...] = METHODS,
               doc: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(doc or __doc__).splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA,
                        help="Br35H folder (default: ../shared/data/br35h)")
    parser.add_argument("--profile", default="quick", choices=("quick", "paper"))
    parser.add_argument("--image-size", type=int, default=256, help="run image size (256)")
    parser.add_argument("--splits", default="official,leak-free", help="split strategies")
    parser.add_argument("--methods", default=",".join(default_methods),
                        help="comma-separated names")
    parser.add_argument("--set", action="append", default=[], metavar="NAME:K=V,...",
                        help="parameter overrides of one method (repeatable)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="checkpoints go here (default: a fresh temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="save the rows here")
    return parser.parse_args()


def load_splits(args: argparse.Namespace, workdir: Path) -> dict[str, ChosenSplit]:
    """Load Br35H at ``--image-size`` and cut it by every split of ``--splits`` (printed)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"load average {os.getloadavg()}; torch threads {torch.get_num_threads()}; "
          f"checkpoints in {workdir}", flush=True)
    start = time.perf_counter()
    dataset, samples = load_dataset("br35h", data_dir=args.data_dir, image_size=args.image_size)
    print(f"loaded {len(samples)} slices at {args.image_size} px in "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    splits = {s: choose_split(dataset, samples, s, seed=args.seed) for s in args.splits.split(",")}
    for strategy, split in splits.items():
        train, val, test = split.parts
        print(f"split {strategy}: train {len(train)}, val {len(val)}, test {len(test)} "
              f"({sum(t.mask is not None for t in test)} annotated), sha256 "
              f"{split.sha256[:12]}", flush=True)
    return splits


def fitted_methods(args: argparse.Namespace, splits: dict[str, ChosenSplit], workdir: Path,
                   cache: FeatureCache | None = None
                   ) -> Iterator[tuple[list[str], str, Any, Context, float]]:
    """Train each of ``--methods`` (with its ``--set`` overrides) once per group of splits that
    share train and val, yielding ``(strategies, name, method, ctx, fit seconds)``."""
    overrides: dict[str, dict[str, Any]] = {}
    for item in args.set:
        name, _, text = item.partition(":")
        overrides.setdefault(name, {}).update(parse_overrides(text))
    first = next(iter(splits.values()))
    same = all([s.id for s in sp.parts[0]] == [s.id for s in first.parts[0]]
               and [s.id for s in sp.parts[1]] == [s.id for s in first.parts[1]]
               for sp in splits.values())
    cache = cache if cache is not None else FeatureCache(None)
    for group in [list(splits)] if same else [[s] for s in splits]:
        train, val, _ = splits[group[0]].parts
        for name in args.methods.split(","):
            method = get_method(name)(profile=args.profile, **overrides.get(name, {}))
            ctx = Context(seed=args.seed, profile=args.profile, cache=cache, method_name=name,
                          workdir=workdir / f"{name}-{group[0]}")
            t0 = time.perf_counter()
            method.fit(train, val, ctx)
            yield group, name, method, ctx, time.perf_counter() - t0


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-deep-"))
    splits = load_splits(args, workdir)
    rows: list[dict[str, Any]] = []
    cache = FeatureCache(None)
    header = (f"{'split':10s} {'method':8s} {'acc':>6s} {'F1':>6s} {'AUC':>6s} {'segF1':>6s} "
              f"{'segIoU':>6s} {'segP':>6s} {'segR':>6s} {'mDice':>6s} {'s/ep':>6s} "
              f"{'ms/img':>6s} {'fit_s':>7s}")
    print(header, flush=True)
    for group, name, method, ctx, fit_s in fitted_methods(args, splits, workdir, cache):
        result = getattr(method, "train_result_", None)
        for strategy in group:
            test = splits[strategy].parts[2]
            t1 = time.perf_counter()
            prediction = method.predict(test, ctx)
            predict_s = time.perf_counter() - t1
            tasks, _ = evaluate(prediction, test, list(method.tasks), n_boot=0)
            cls = tasks["classify"]["metrics"]
            seg = tasks.get("segment", {})
            segm = seg.get("metrics", {})
            row = {
                "split": strategy, "method": name, "profile": args.profile,
                "params": method.params.as_dict(),
                "accuracy": _value(cls, "accuracy"), "f1": _value(cls, "f1"),
                "auc": _value(cls, "auc"),
                "pooled_f1": _value(segm, "f1"), "pooled_iou": _value(segm, "iou"),
                "pooled_precision": _value(segm, "precision"),
                "pooled_recall": _value(segm, "recall"),
                "mean_dice": seg.get("per_image", {}).get("dice", {}).get("value"),
                "n_test": len(test), "n_segment": seg.get("n"),
                "fit_s": fit_s, "predict_s": predict_s,
                "ms_per_image": 1000 * predict_s / max(len(test), 1),
                "epochs": None if result is None else result.epochs_run,
                "best_epoch": None if result is None else result.best_epoch,
                "train_s": None if result is None else result.seconds,
                "s_per_epoch": None if result is None else result.seconds_per_epoch,
                "timed_out": None if result is None else result.timed_out,
                "load_average": os.getloadavg(),
            }
            rows.append(row)
            fmt = lambda v: "   -  " if v is None else f"{v:6.3f}"  # noqa: E731
            print(f"{strategy:10s} {name:8s} {fmt(row['accuracy'])} {fmt(row['f1'])} "
                  f"{fmt(row['auc'])} {fmt(row['pooled_f1'])} {fmt(row['pooled_iou'])} "
                  f"{fmt(row['pooled_precision'])} {fmt(row['pooled_recall'])} "
                  f"{fmt(row['mean_dice'])} {row['s_per_epoch'] or 0:6.1f} "
                  f"{row['ms_per_image']:6.1f} {fit_s:7.1f}", flush=True)
    print(f"load average {os.getloadavg()}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=float))
    return rows


if __name__ == "__main__":
    run(parse_args())
