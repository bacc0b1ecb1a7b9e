"""Speed of ``bench predict`` and ``bench explain`` on two CPU cores.

Measures, on synthetic 256 px slices (the methods are trained quickly on synthetic data inside
the benchmark: speed does not depend on how well they learnt):

1. occlusion sensitivity of one 256 px slice with a 32 px patch and stride 16 (225 occluded
   copies + the slice, one predict call) for the ``quick`` cnn; goal <= 1 s;
2. ``predict_folder`` on 1,000 PNG slices (256 px) with ``glcm-knn`` (quick) and with a quick
   ``unet`` (its training cut to a few epochs): total seconds and ms per image, with and
   without writing the overlays/masks/gallery.

Run::

    flock /tmp/mribench-heavy.lock python benchmarks/bench_predict.py [--n 1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mribench.api import Context
from mribench.api.registry import methods
from mribench.data.load import load_dataset
from mribench.model import save_model
from mribench.model.explain import method_scorer, occlusion_map
from mribench.model.predict import predict_folder

SIZE = 256


def fit(name: str, train, val, workdir: Path, **overrides):
    method = methods()[name](profile="quick", **overrides)
    start = time.perf_counter()
    method.fit(train, val, Context(workdir=workdir, method_name=name))
    return method, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="slices to predict")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    out: dict = {"threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    _, samples = load_dataset("synthetic[n=160,seed=1]", image_size=SIZE)
    train, val = samples[:120], samples[120:]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # 1. occlusion of one slice with the quick cnn
        cnn, seconds = fit("cnn", train, val, tmp / "cnn", epochs=2)
        score = method_scorer(cnn, Context())
        image = samples[-1].image
        occlusion_map(score, image, patch=32, stride=16)  # warm-up
        times, cpu = [], []
        for _ in range(5):
            start, start_cpu = time.perf_counter(), time.process_time()
            occlusion_map(score, image, patch=32, stride=16)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        out["occlusion_cnn_256px_s"] = statistics.median(times)
        out["occlusion_cnn_256px_cpu_s"] = statistics.median(cpu)
        out["load_average"] = os.getloadavg()[0]
        print(f"occlusion, quick cnn, 256 px, patch 32 stride 16 (226 scores): "
              f"median {statistics.median(times):.3f} s wall (min {min(times):.3f}), "
              f"{statistics.median(cpu):.3f} CPU-s over {torch.get_num_threads()} threads; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

        # 2. predict 1,000 slices
        _, extra = load_dataset(f"synthetic[n={args.n},seed=7]", image_size=SIZE)
        images = tmp / "images"
        images.mkdir()
        for i, s in enumerate(extra):  # ten subfolders of 100 slices
            folder = images / f"{i // 100:02d}"
            folder.mkdir(exist_ok=True)
            Image.fromarray(np.round(s.image * 255).astype(np.uint8)).save(
                folder / f"slice{i:04d}.png")
        info = {"image_size": SIZE, "dataset": "synthetic[n=160,seed=1]", "seed": 0}
        for name, overrides in (("glcm-knn", {}), ("unet", {"epochs": 2})):
            method, fit_s = fit(name, train, val, tmp / name, **overrides)
            save_model(method, tmp / name / "model", info=info)
            for write in (True, False):
                start = time.perf_counter()
                result = predict_folder(tmp / name / "model", images, tmp / f"out-{name}",
                                        write_images=write)
                total = time.perf_counter() - start
                key = f"predict_{name}_{'with' if write else 'without'}_images"
                out[key + "_s"] = total
                out[key + "_ms_per_image"] = 1000 * total / len(result.labels)
                print(f"predict {len(result.labels)} slices, {name} (fit {fit_s:.0f} s), "
                      f"{'with' if write else 'without'} overlays/gallery: {total:.1f} s "
                      f"({1000 * total / len(result.labels):.1f} ms/image)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
