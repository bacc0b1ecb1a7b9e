"""A job computes with the threads and CPU kernels its configuration says: the same deep row
gives the same predictions whatever the process's OMP_NUM_THREADS, whatever --jobs (issue:
numbers that depend on the machine's core count) and whatever instruction set the processor
offers above AVX2 (mribench.cpu_kernels)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROW = "multiscale-cnn[epochs=2,patches_per_epoch=512,work_size=48,val_slices=8,crf_max_images=4]"


#: What a processor with AVX2 and nothing above it gives each library (emulated on a newer one).
AVX2_MACHINE = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                "OPENBLAS_CORETYPE": "Haswell",
                "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}


def _run(out: Path, env_threads: str, jobs: int, extra: dict[str, str] | None = None) -> Path:
    env = {**os.environ, "OMP_NUM_THREADS": env_threads, "MKL_NUM_THREADS": env_threads,
           "OPENBLAS_NUM_THREADS": env_threads, "MPLBACKEND": "Agg", **(extra or {})}
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


def _predictions(run: Path) -> dict[str, np.ndarray]:
    with np.load(run / "multiscale-cnn" / "seed-0" / "predictions.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.mark.slow
def test_portable_kernels_give_an_avx2_machines_numbers(tmp_path):
    """The default (portable) kernels give the predictions a processor with only AVX2 gives
    (its libraries' ISA limits emulated): on an AVX-512 machine this fails when any kernel
    still follows the processor (measured: oneDNN's convolutions alone moved the row)."""
    here = _run(tmp_path / "here", "1", 1, {"MRIBENCH_CPU_KERNELS": "portable"})
    avx2 = _run(tmp_path / "avx2", "1", 1, {"MRIBENCH_CPU_KERNELS": "portable", **AVX2_MACHINE})
    a, b = _predictions(here), _predictions(avx2)
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    kernels = json.loads((here / "multiscale-cnn/seed-0/status.json").read_text())["kernels"]
    assert kernels["mode"] == "portable" and kernels["onednn"] is False
    assert kernels["flush_denormal"] is True
    if kernels["machine"].lower() in ("x86_64", "amd64"):
        assert kernels["portable"] is True, kernels
        assert kernels["aten"] == "AVX2" and kernels["mkl_cbwr"] == "AVX2,STRICT"
    assert json.loads((here / "run.json").read_text())["identity"]["cpu_kernels"] == "portable"


def test_native_kernels_are_recorded_and_a_config_for_other_kernels_is_refused():
    """``native`` is chosen before Python starts and recorded; asking a process for kernels
    it was not started with is one line naming the variable."""
    code = ("import json, mribench; from mribench.cpu_kernels import describe;"
            "from mribench.run.config import RunConfig;"
            "c = RunConfig(methods='cnn'); print(json.dumps([c.cpu_kernels, describe('native')]));"
            "RunConfig(methods='cnn', cpu_kernels='portable')")
    env = {**os.environ, "MRIBENCH_CPU_KERNELS": "native"}
    for name in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "NPY_DISABLE_CPU_FEATURES"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    mode, info = json.loads(done.stdout.splitlines()[0])
    assert mode == "native" and info["mkl_cbwr"] is None and info["portable"] is False
    assert done.returncode != 0
    assert ("computes with native CPU kernels, not portable: start it with "
            "MRIBENCH_CPU_KERNELS=portable") in done.stderr.strip().splitlines()[-1]


def test_a_job_flushes_denormals_to_zero_and_restores_them():
    """Inside a job's kernels a denormal float is zero (the slow path weight decay drove the
    U-Net's weights into); outside, torch's default comes back."""
    import torch

    from mribench.cpu_kernels import job_kernels

    tiny = torch.tensor([1e-40], dtype=torch.float32)
    assert (tiny * 1.0).item() != 0.0
    with job_kernels("portable"):
        assert (tiny * 1.0).item() == 0.0
    assert (tiny * 1.0).item() != 0.0
