"""Wall time of the README's first command, `bench run --method all --dataset synthetic`.

Usage: python benchmarks/bench_quickstart.py [--out DIR] [extra bench run options]

Prints the total wall time and each method's fit and predict times from the results folder.
The first run also pays the synthetic data set's generation (cached afterwards).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: temp)")
    args, extra = parser.parse_known_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="mribench-quickstart-")) / "run"
    command = ["bench", "run", "--method", "all", "--dataset", "synthetic", "--out", str(out),
               "--quiet", *extra]
    start = time.perf_counter()
    code = subprocess.call(command)
    wall = time.perf_counter() - start
    print(f"\n$ {' '.join(command)}\nexit {code}; wall time {wall:.0f} s ({wall / 60:.1f} min)")
    for status_file in sorted(out.glob("*/seed-*/status.json")):
        status = json.loads(status_file.read_text())
        t = status.get("timings", {})
        print(f"  {status_file.parent.parent.name:22s} {status['status']:8s} fit {t.get('fit_s', 0):7.1f} s"
              f"  predict {t.get('predict_ms_per_image', 0):7.1f} ms/image")
    sys.exit(code)


if __name__ == "__main__":
    main()
