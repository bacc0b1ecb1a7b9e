"""Speed of the external data sets' loaders: BraTS volumes to slices, LGG TIF slices, and the
Br35H harmonisation.

Measures, on the real development copies in ``../shared/data`` (each part is skipped when its
folder is absent), with the data cache off (every load decodes):

- ``brats``: seconds per case, the median of ``--repeat`` loads of the BraTS 2021 sample case
  (``BraTS2021_00006``: the four scans' and the seg's headers checked, the FLAIR volume and the
  seg decoded from .nii.gz, brain-normalised, 133 slices selected and resized) with the default
  ``slices=balanced`` and with ``slices=every``; per case when 4 cases load together (cases
  are read in two threads); and the parts of it (reading the two volumes; all five; the
  headers); the goal is <= 1 s per case on two cores;
- ``lgg``: slices per second of a cold load of the 8-patient ``kaggle_3m`` copy (290 RGB TIFs
  and their masks) with the default two threads and with one, and of a warm (cached) load;
- ``br35h``: images per second of reading ``--br35h-images`` Br35H slices plainly and
  harmonised (``br35h[harmonise=true]``: head crop, padding, standardisation).

Usage (takes about half a minute; wrap it so heavy jobs run one at a time)::

    flock /tmp/mribench-heavy.lock python benchmarks/bench_external_data.py
        [--shared ../shared/data] [--image-size 256] [--repeat 3] [--out numbers.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

DEFAULT_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _median_time(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 3), out


def bench_brats(root: Path, size: int, repeat: int) -> dict[str, object]:
    from mribench.data.volumes import read_header, read_volume
    from mribench.datasets.brats import BraTS

    case = root / "BraTS2021_00006"
    out: dict[str, object] = {"case": case.name}
    for slices in ("balanced", "every"):
        ds = BraTS(case, image_size=size, slices=slices)
        seconds, samples = _median_time(ds.load, repeat)
        out[f"seconds_per_case_{slices}"] = seconds
        out[f"slices_{slices}"] = len(samples)  # type: ignore[arg-type]
    # throughput over several cases (the loader reads cases in two threads): 4 links to it
    with tempfile.TemporaryDirectory(prefix="mribench-brats-") as tmp:
        for i in range(4):
            (Path(tmp) / f"{case.name}_copy{i}").symlink_to(case, target_is_directory=True)
        ds = BraTS(tmp, image_size=size)
        seconds, samples = _median_time(ds.load, repeat)
        out["seconds_per_case_4_cases_2_threads"] = round(seconds / 4, 3)
    files = sorted(case.glob("*.nii.gz"))
    out["seconds_read_flair_and_seg"] = _median_time(
        lambda: (read_volume(case / "BraTS2021_00006_flair.nii.gz"),
                 read_volume(case / "BraTS2021_00006_seg.nii.gz", labels=True)), repeat)[0]
    out["seconds_read_all_5_volumes"] = _median_time(
        lambda: [read_volume(p, labels=p.name.endswith("seg.nii.gz")) for p in files], 1)[0]
    out["seconds_headers"] = _median_time(lambda: [read_header(p) for p in files], repeat)[0]
    return out


def bench_lgg(root: Path, size: int, repeat: int) -> dict[str, object]:
    from mribench.data.load import load_dataset

    spec = f"lgg:{root}"
    out: dict[str, object] = {}
    for workers in ("2", "1"):
        os.environ["MRIBENCH_WORKERS"] = workers
        seconds, (_, samples) = _median_time(
            lambda: load_dataset(spec, image_size=size, use_cache=False), repeat)
        out["slices"] = len(samples)
        out[f"slices_per_second_{workers}_threads"] = round(len(samples) / seconds, 1)
    os.environ.pop("MRIBENCH_WORKERS", None)
    load_dataset(spec, image_size=size)  # fill the cache
    seconds, _ = _median_time(lambda: load_dataset(spec, image_size=size), repeat)
    out["slices_per_second_warm_cache"] = round(out["slices"] / seconds, 1)  # type: ignore[operator]
    return out


def bench_br35h(root: Path, size: int, n: int) -> dict[str, object]:
    from mribench.data.head import read_harmonised
    from mribench.data.load import read_images

    paths = sorted((root / "yes").iterdir())[: n // 2] + sorted((root / "no").iterdir())[: n // 2]
    plain, _ = _median_time(lambda: read_images(paths, size), 1)
    harmonised, _ = _median_time(lambda: read_harmonised(paths, size), 1)
    return {"images": len(paths), "images_per_second_plain": round(len(paths) / plain, 1),
            "images_per_second_harmonised": round(len(paths) / harmonised, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED,
                        help=f"the folder holding the dev copies (default: {DEFAULT_SHARED})")
    parser.add_argument("--image-size", type=int, default=256, help="side of the images (256)")
    parser.add_argument("--repeat", type=int, default=3, help="loads per measurement (3)")
    parser.add_argument("--br35h-images", type=int, default=300,
                        help="Br35H images to read plainly and harmonised (300)")
    parser.add_argument("--out", type=Path, default=None, help="also write the numbers as JSON")
    args = parser.parse_args(argv)

    numbers: dict[str, object] = {"image_size": args.image_size, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="mribench-bench-") as cache:
        os.environ["MRIBENCH_CACHE"] = cache
        parts = {"brats": (args.shared / "brats2021-sample",
                           lambda p: bench_brats(p, args.image_size, args.repeat)),
                 "lgg": (args.shared / "lgg-kaggle3m-dev",
                         lambda p: bench_lgg(p, args.image_size, args.repeat)),
                 "br35h": (args.shared / "br35h",
                           lambda p: bench_br35h(p, args.image_size, args.br35h_images))}
        for name, (path, run) in parts.items():
            if not path.is_dir():
                numbers[name] = f"skipped: {path} not found"
                continue
            numbers[name] = run(path)
            print(name, json.dumps(numbers[name]), flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(numbers, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
