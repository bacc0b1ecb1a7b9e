"""A job computes with the threads its configuration says: the same deep row gives the same
predictions whatever the process's OMP_NUM_THREADS and whatever --jobs (issue: numbers that
depend on the machine's core count)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROW = "multiscale-cnn[epochs=2,patches_per_epoch=512,work_size=48,val_slices=8,crf_max_images=4]"


def _run(out: Path, env_threads: str, jobs: int) -> Path:
    env = {**os.environ, "OMP_NUM_THREADS": env_threads, "MKL_NUM_THREADS": env_threads,
           "OPENBLAS_NUM_THREADS": env_threads, "MPLBACKEND": "Agg"}
    cmd = [sys.executable, "-m", "mribench.cli", "run", "--method", f"{ROW},region-growing",
           "--dataset", "synthetic[n=48]", "--image-size", "48", "--n-boot", "0",
           "--no-baselines", "--no-report", "--quiet", "--jobs", str(jobs), "--out", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.mark.slow
def test_a_deep_row_is_identical_under_any_omp_threads_and_jobs(tmp_path):
    runs = [_run(tmp_path / "omp1", "1", 1), _run(tmp_path / "omp2", "2", 1),
            _run(tmp_path / "jobs2", "2", 2)]
    folders = [r / "multiscale-cnn" / "seed-0" for r in runs]
    arrays = [np.load(f / "predictions.npz") for f in folders]
    for other in arrays[1:]:
        for key in arrays[0].files:
            assert np.array_equal(arrays[0][key], other[key]), key
    status = json.loads((folders[1] / "status.json").read_text())
    assert status["threads"]["torch"] == 1  # the configured threads, not the environment's
    identity = json.loads((runs[0] / "run.json").read_text())["identity"]
    assert identity["threads"] == 1
