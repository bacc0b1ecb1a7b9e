"""Write synthetic BraTS-layout cases (issue 22 item 5) and say how long it took and their size.

``python benchmarks/make_brats_cases.py --n 200 --out DIR [--shape 64,64,24] [--seed 0]`` writes
``DIR/BraTS2021_00000/ ... BraTS2021_00199/`` (four int16 modalities and a uint8 seg each, see
:mod:`mribench.data.synthetic_brats`), then prints the wall and CPU seconds, the size on disk
and the voxel count. The folder is then a data set like the challenge's::

    python benchmarks/bench_memory.py --method unet --dataset brats:DIR
    bench run --method unet --dataset brats:DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 8:
        raise argparse.ArgumentTypeError(f"--shape {text!r}: give three sizes >= 8, e.g. 64,64,24")
    return shape  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    from mribench.data.synthetic_brats import write_synthetic_brats

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="number of cases (200)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the cases in")
    parser.add_argument("--shape", type=_shape, default=(64, 64, 24),
                        help="x,y,z voxels per volume (64,64,24; BraTS is 240,240,155)")
    parser.add_argument("--seed", type=int, default=0, help="seed (0)")
    parser.add_argument("--first", type=int, default=0, help="index of the first case (0)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"--n must be at least 1, got {args.n}")
    if args.out.exists() and any(args.out.iterdir()):
        print(f"{args.out}: not empty; give a new or empty folder", file=sys.stderr)
        return 2
    wall, cpu = time.perf_counter(), time.process_time()
    folders = write_synthetic_brats(args.out, args.n, args.shape, args.seed, first=args.first)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    size = sum(p.stat().st_size for f in folders for p in f.iterdir())
    print(json.dumps({"cases": len(folders), "shape": list(args.shape), "seed": args.seed,
                      "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                      "bytes": size, "mb": round(size / 1e6, 1),
                      "out": str(args.out)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
