"""Peak memory (max RSS) and throughput of one method's run on a data set, cold and warm cache.

Two measurements, each in a fresh process:

- ``--mode bench`` (default): the real command in a child process, its peak from
  ``os.wait4`` (the child's own ``ru_maxrss``)::

      python -m mribench.cli run --method METHOD[PARAMS] --dataset SPEC --data-dir DATA \\
          --out OUT --no-report --quiet

- ``--mode direct``: the same work without the runner (``load_dataset`` + the default split +
  the method's fit and predict), its peak from ``getrusage``, with the seconds of loading,
  fitting and predicting apart, and the peak so far after loading and after fitting (the peak
  of the fit alone, when prediction peaks higher); use it while the runner changes.

Data sets: ``--dataset br35h`` (default, ``--data-dir``), ``"synthetic[n=50000,image_size=128]"``
(a data set larger than its float32 images would fit in: 3.3 GB at 128 px; issue 12's and issue
22's goal is a peak under 2 GB), ``brats:DIR`` (BraTS NIfTI cases, e.g. 200 generated ones), or
any ``--dataset`` spec of ``bench run``.

``--params epochs=1``: method overrides (``name[k=v]``), e.g. to keep a deep row's measurement
to a few minutes: the memory peak of a streamed training does not depend on the epochs.

Each is run *cold* (an empty data cache: ``$MRIBENCH_CACHE`` points at a fresh temporary
folder, so every image is decoded or generated and the cache written) and then *warm* (the
cache just written is read); ``--cache DIR`` uses (and fills) a cache folder of its own instead,
and ``--states warm`` measures only the warm run (with a filled ``--cache``, no generation).

Prints one line per run: mode, data set, method, cold/warm, max RSS in MB, wall seconds,
slices/s (direct: training slices x epochs / fit seconds and predicted slices / predict
seconds; bench: samples / wall seconds), exit status. ``--timeout S`` (bench mode) kills a
run after S seconds (exit 137): its max RSS so far is then a lower bound of its peak, e.g. for
a run whose stacked tensors are built in its first minutes but whose full run takes hours.

The scripts runs the code of the Python that runs it: ``/path/to/main/.venv/bin/python
benchmarks/bench_memory.py ...`` measures another checkout (before/after comparisons).

Run: ``python benchmarks/bench_memory.py [--mode direct] [--data-dir PATH] [--dataset SPEC]
[--method NAME] [--params k=v,...] [--cache DIR] [--states cold,warm]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "br35h"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(data: Path, method_spec: str, spec: str) -> None:
    """The direct run, in this process; prints a JSON line with its peak RSS and timings."""
    from mribench.api.context import Context
    from mribench.api.params import parse_spec
    from mribench.api.registry import get_method
    from mribench.data.load import load_dataset
    from mribench.split.choose import choose_split

    start = time.perf_counter()
    dataset, samples = load_dataset(spec, data_dir=data)
    loaded_rss, loaded = _rss_mb(), time.perf_counter()
    train, val, test = choose_split(dataset, samples, None, seed=0).parts
    name, overrides = parse_spec(method_spec)
    cls = get_method(name)
    method = cls(cls.params_for("quick", **overrides), profile="quick")
    with tempfile.TemporaryDirectory(prefix="mribench-mem-ctx-") as tmp:
        ctx = Context(method_name=name, workdir=Path(tmp), scratch=Path(tmp) / "scratch")
        method.fit(train, val, ctx)
        fitted, fitted_rss = time.perf_counter(), _rss_mb()
        method.predict(test, ctx)
    done = time.perf_counter()
    epochs = max(1, len(getattr(getattr(method, "train_result_", None), "history", []) or [1]))
    print(json.dumps({"max_rss_mb": _rss_mb(), "after_load_mb": loaded_rss,
                      "after_fit_mb": fitted_rss,
                      "seconds": done - start, "load_s": loaded - start,
                      "fit_s": fitted - loaded, "predict_s": done - fitted,
                      "n_train": len(train), "n_val": len(val), "n_test": len(test),
                      "epochs": epochs,
                      "train_slices_per_s": len(train) * epochs / max(fitted - loaded, 1e-9),
                      "predict_slices_per_s": len(test) / max(done - fitted, 1e-9)}))


def _method_spec(method: str, params: str | None) -> str:
    return f"{method}[{params}]" if params else method


def run_bench(data: Path, out: Path, env: dict[str, str], method: str, spec: str,
              timeout: int | None = None) -> tuple[float, float, int, str]:
    """The ``bench run`` command in a child process; its peak RSS from ``os.wait4`` (the
    child's own resource usage, also when ``timeout`` killed it)."""
    cmd = [sys.executable, "-m", "mribench.cli", "run", "--method", method, "--dataset", spec,
           "--data-dir", str(data), "--out", str(out), "--no-report", "--quiet"]
    start = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        timer = threading.Timer(timeout, proc.kill) if timeout else None
        if timer is not None:
            timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if timer is not None:
            timer.cancel()
        if proc.returncode:
            err.seek(0)
            print(err.read()[-3000:], file=sys.stderr)
    seconds = time.perf_counter() - start
    rc = 137 if proc.returncode == -9 else proc.returncode
    n = _samples_in(out)
    rate = f"{n / seconds:7.1f} samples/s" if n else "   -"
    return usage.ru_maxrss / 1024, seconds, rc, rate


def _samples_in(out: Path) -> int:
    """How many samples the run's split holds (0 when unknown)."""
    try:
        split = json.loads((out / "split.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    return sum(len(v) for k, v in split.items() if k in ("train", "val", "test")
               and isinstance(v, list))


def run_direct(data: Path, method: str, env: dict[str, str], spec: str
               ) -> tuple[float, float, int, str]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", "--data-dir", str(data),
                           "--method", method, "--dataset", spec], env=env, capture_output=True,
                          text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        print(proc.stderr[-2000:], file=sys.stderr)
        return float("nan"), time.perf_counter() - start, proc.returncode or 1, "-"
    got = json.loads(lines[-1])
    rate = (f"train {got['train_slices_per_s']:.1f} slices/s ({got['n_train']} x "
            f"{got['epochs']} epochs in {got['fit_s']:.0f} s), predict "
            f"{got['predict_slices_per_s']:.1f} slices/s ({got['n_test']} in "
            f"{got['predict_s']:.0f} s), load {got['load_s']:.0f} s, peak "
            f"{got['after_load_mb']:.0f} MB after loading, {got['after_fit_mb']:.0f} MB "
            "after fitting")
    return got["max_rss_mb"], time.perf_counter() - start, proc.returncode, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--mode", choices=("bench", "direct"), default="bench")
    parser.add_argument("--method", default="glcm-knn")
    parser.add_argument("--params", default=None,
                        help="method overrides k=v,... (e.g. epochs=1)")
    parser.add_argument("--dataset", default="br35h",
                        help="a --dataset spec (default br35h; brats:DIR, synthetic[...])")
    parser.add_argument("--cache", type=Path, default=None,
                        help="data cache folder to use and keep (default: a fresh one)")
    parser.add_argument("--states", default="cold,warm",
                        help="which runs: cold,warm (default), cold or warm")
    parser.add_argument("--out", type=Path, default=None,
                        help="bench mode: keep the results folders under this folder")
    parser.add_argument("--timeout", type=int, default=None,
                        help="bench mode: kill the run after this many seconds (exit 137); "
                             "its max RSS so far is a lower bound of the peak")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.data_dir, args.method, args.dataset)
        return
    method = _method_spec(args.method, args.params)
    with tempfile.TemporaryDirectory(prefix="mribench-mem-") as tmp:
        cache = args.cache or Path(tmp) / "cache"
        env = {**os.environ, "MRIBENCH_CACHE": str(cache)}
        for state in [s.strip() for s in args.states.split(",") if s.strip()]:
            if args.mode == "bench":
                rss, secs, rc, rate = run_bench(args.data_dir,
                                                (args.out or Path(tmp)) / f"out-{state}", env,
                                                method, args.dataset, args.timeout)
            else:
                rss, secs, rc, rate = run_direct(args.data_dir, method, env, args.dataset)
            print(f"{args.mode:6s} {args.dataset} {method} {state}: max RSS {rss:7.0f} MB, "
                  f"{secs:6.1f} s, {rate}, exit {rc}", flush=True)


if __name__ == "__main__":
    main()
