"""Performance of the data layer on the real Br35H data, and the audit of its split manifests.

Measures, at the run's image size:

- cold load of the 3,000 labelled images (decode, grayscale, resize, masks, thumbnails,
  grouping; no cache) with the default reader (JPEG draft mode, two threads), and with
  one thread and without draft mode for comparison;
- warm load (the same call again, answered from the on-disk cache);
- near-duplicate grouping of the 3,000 thumbnails alone;
- generation of the default synthetic data set;

and prints the audit (counts, label balance, leakage) of the committed Br35H manifests.

Usage (takes about a minute; wrap it so heavy jobs run one at a time)::

    flock /tmp/mribench-heavy.lock python benchmarks/bench_data.py [--data-dir PATH]
        [--image-size 256] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "br35h"


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, round(time.perf_counter() - start, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA,
                        help=f"the Br35H folder (default: {DEFAULT_DATA})")
    parser.add_argument("--image-size", type=int, default=256, help="side of the images (256)")
    parser.add_argument("--out", type=Path, default=None, help="also write the numbers as JSON")
    parser.add_argument("--quick", action="store_true",
                        help="only the default reader (skip the one-thread and no-draft runs)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mribench-bench-") as cache:
        os.environ["MRIBENCH_CACHE"] = cache
        from mribench.data.duplicates import group_labels
        from mribench.data.load import load_dataset, read_images
        from mribench.datasets.br35h import _images
        from mribench.datasets.synthetic import Synthetic
        from mribench.split.manifest import audit, load_manifest, manifest_path

        size = args.image_size
        numbers: dict[str, object] = {"image_size": size, "cpus": os.cpu_count()}
        (ds, samples), numbers["cold_load_s"] = _timed(
            load_dataset, "br35h", data_dir=args.data_dir, image_size=size)
        (_, again), numbers["warm_load_s"] = _timed(
            load_dataset, "br35h", data_dir=args.data_dir, image_size=size)
        if len(again) != len(samples):
            raise SystemExit("the cached load differs from the fresh one")
        print(f"br35h: {len(samples)} images at {size} px: cold load {numbers['cold_load_s']} s, "
              f"warm (cached) {numbers['warm_load_s']} s", flush=True)

        paths = _images(ds.root / "yes") + _images(ds.root / "no")
        batch, numbers["read_2threads_draft_s"] = _timed(read_images, paths, size, workers=2)
        if not args.quick:
            _, numbers["read_1thread_draft_s"] = _timed(read_images, paths, size, workers=1)
            _, numbers["read_2threads_nodraft_s"] = _timed(
                read_images, paths, size, workers=2, draft=False)
        reads = {k: v for k, v in numbers.items() if k.startswith("read_")}
        print(f"decode+resize only: {reads}", flush=True)

        labels, numbers["grouping_s"] = _timed(group_labels, batch.thumbnails,
                                               float(ds.options["threshold"]))
        numbers["n_groups"] = int(len(np.unique(labels)))
        print(f"grouping {len(paths)} thumbnails: {numbers['grouping_s']} s, "
              f"{numbers['n_groups']} groups", flush=True)

        for n_size in (128, 256):
            _, numbers[f"synthetic_400_at_{n_size}_s"] = _timed(
                Synthetic(image_size=n_size).load)
        print(f"synthetic (400 slices): 128 px {numbers['synthetic_400_at_128_s']} s, "
              f"256 px {numbers['synthetic_400_at_256_s']} s", flush=True)

        audits = {}
        for strategy in ("official", "leak-free"):
            path = manifest_path("br35h", strategy)
            manifest = load_manifest(path)
            audits[strategy] = {"sha256": manifest.sha256, **audit(manifest, samples)}
            a = audits[strategy]
            parts = ", ".join(f"{p} {v['n']} ({100 * v['positive_rate']:.1f}% tumour)"
                              for p, v in a["parts"].items())
            print(f"{path.name}: {parts}; dropped {a['n_dropped']}; groups straddling parts "
                  f"{a['n_groups_straddling']}; leaks {a['leaks']}", flush=True)
        numbers["audit"] = audits
    if args.out:
        args.out.write_text(json.dumps(numbers, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
