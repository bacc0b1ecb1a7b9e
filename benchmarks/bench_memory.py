"""Peak memory (max RSS) of a glcm-knn run on Br35H (or any ``--dataset``), cold and warm data cache.

Two measurements, each in a fresh process:

- ``--mode bench`` (default): the real command under ``/usr/bin/time -v``::

      bench run --method glcm-knn --dataset br35h --data-dir DATA --out OUT --no-report --quiet

  ``--dataset "synthetic[n=50000,image_size=128]"`` measures a data set larger than the
  float32 images would fit in (3.3 GB): issue 12's goal is a peak under 2 GB.

- ``--mode direct``: the same work without the runner (``load_dataset`` + the default split +
  ``glcm-knn`` fit and predict), its peak from ``getrusage``; use it while the runner changes.

Each is run *cold* (an empty data cache: ``$MRIBENCH_CACHE`` points at a fresh temporary
folder, so every JPEG is decoded and the cache written) and then *warm* (the cache just
written is read). Prints one line per run: mode, cold/warm, max RSS in MB, wall seconds,
exit status. Run: ``python benchmarks/bench_memory.py [--mode direct] [--data-dir PATH]
[--dataset SPEC] [--method NAME]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "br35h"


def child(data: Path, method_name: str, spec: str) -> None:
    """The direct run, in this process; prints a JSON line with its peak RSS."""
    from mribench.api.context import Context
    from mribench.api.registry import get_method
    from mribench.data.load import load_dataset
    from mribench.split.choose import choose_split

    start = time.perf_counter()
    dataset, samples = load_dataset(spec, data_dir=data)
    loaded_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    train, val, test = choose_split(dataset, samples, None, seed=0).parts
    method = get_method(method_name)(profile="quick")
    ctx = Context(method_name=method_name)
    method.fit(train, val, ctx)
    method.predict(test, ctx)
    print(json.dumps({"max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "after_load_mb": loaded_rss, "seconds": time.perf_counter() - start}))


def run_bench(data: Path, out: Path, env: dict[str, str], method: str, spec: str
              ) -> tuple[float, float, int]:
    cmd = ["/usr/bin/time", "-v", "bench", "run", "--method", method, "--dataset", spec,
           "--data-dir", str(data), "--out", str(out), "--no-report", "--quiet"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    rss = next((float(line.split(":")[1]) / 1024 for line in proc.stderr.splitlines()
                if "Maximum resident set size" in line), float("nan"))
    if proc.returncode:
        print(proc.stderr[-3000:], file=sys.stderr)
    return rss, time.perf_counter() - start, proc.returncode


def run_direct(data: Path, method: str, env: dict[str, str], spec: str
               ) -> tuple[float, float, int]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", "--data-dir", str(data),
                           "--method", method, "--dataset", spec], env=env, capture_output=True,
                          text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    rss = json.loads(lines[-1])["max_rss_mb"] if lines else float("nan")
    if proc.returncode:
        print(proc.stderr[-2000:], file=sys.stderr)
    return rss, time.perf_counter() - start, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--mode", choices=("bench", "direct"), default="bench")
    parser.add_argument("--method", default="glcm-knn")
    parser.add_argument("--dataset", default="br35h", help="a --dataset spec (default br35h)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.data_dir, args.method, args.dataset)
        return
    with tempfile.TemporaryDirectory(prefix="mribench-mem-") as tmp:
        env = {**os.environ, "MRIBENCH_CACHE": str(Path(tmp) / "cache")}
        for state in ("cold", "warm"):
            if args.mode == "bench":
                rss, secs, rc = run_bench(args.data_dir, Path(tmp) / f"out-{state}", env,
                                          args.method, args.dataset)
            else:
                rss, secs, rc = run_direct(args.data_dir, args.method, env, args.dataset)
            print(f"{args.mode:6s} {args.dataset} {args.method} {state}: max RSS {rss:7.0f} MB, "
                  f"{secs:6.1f} s, exit {rc}", flush=True)


if __name__ == "__main__":
    main()
