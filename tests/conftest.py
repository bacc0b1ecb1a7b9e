"""Shared pytest fixtures: the real Br35H folder (skipped when absent) and tiny synthetic data.

``synthetic_parts`` is a session-wide (train, val, test) split of 120 synthetic 64 x 64 slices
(half with tumour, masks everywhere, a few near-duplicate pairs kept in one part), made with
the same ``stratified`` strategy as real runs; ``tiny_samples(n, size, seed)`` builds a fresh
list of synthetic samples for one test. Both come from :mod:`mribench.data.phantom`, the generator
of the ``synthetic`` data set.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mribench.api.types import Sample

BR35H_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "br35h"


def pytest_report_header(config: pytest.Config) -> str:
    """The CPU kernels of the test process (:mod:`mribench.cpu_kernels`): tests compare its
    numbers with those of ``bench run`` subprocesses, which pin them at start-up."""
    from mribench.cpu_kernels import describe, job_kernels, process_mode

    with job_kernels(process_mode()):  # as in a job (oneDNN's switch is per job)
        info = describe(process_mode())
    return "mribench CPU kernels: " + ", ".join(f"{k}={v}" for k, v in info.items())


def make_samples(n: int = 24, size: int = 64, seed: int = 0,
                 duplicates: float = 0.2) -> list[Sample]:
    """``n`` synthetic samples (``n // 2`` with a tumour) at ``size`` px, deterministic per seed."""
    from mribench.datasets.synthetic import Synthetic

    return Synthetic(image_size=size, n=n, seed=seed, duplicates=duplicates).load()


@pytest.fixture(scope="session")
def br35h_dir() -> Path:
    """The real Br35H folder (../shared/data/br35h); the test is skipped when it is absent."""
    if not (BR35H_DIR / "yes").is_dir() or not (BR35H_DIR / "no").is_dir():
        pytest.skip(f"real Br35H data not found at {BR35H_DIR}")
    return BR35H_DIR


@pytest.fixture(scope="session")
def br35h_samples(br35h_dir: Path, pytestconfig: pytest.Config,
                  tmp_path_factory: pytest.TempPathFactory):
    """(dataset, samples) of the real Br35H at 64 px, decoded once per session.

    The data cache lives in pytest's cache folder (when enabled), so a rerun reads it in
    about a second instead of decoding 3,000 JPEGs again.
    """
    from mribench.data.load import load_dataset

    cache = getattr(pytestconfig, "cache", None)
    folder = (cache.mkdir("mribench-data-cache") if cache is not None
              else tmp_path_factory.mktemp("mribench-data-cache"))
    mp = pytest.MonkeyPatch()
    mp.setenv("MRIBENCH_CACHE", str(folder))
    try:
        yield load_dataset("br35h", data_dir=br35h_dir, image_size=64)
    finally:
        mp.undo()


@pytest.fixture(scope="session")
def synthetic_parts() -> tuple[list[Sample], list[Sample], list[Sample]]:
    """(train, val, test): 120 synthetic 64 x 64 slices, half with tumour, stratified 70/15/15."""
    from mribench.split.manifest import apply, make_split

    samples = make_samples(n=120, size=64, seed=0)
    return apply(make_split("synthetic", samples, strategy="stratified", seed=0), samples)


@pytest.fixture
def tiny_samples() -> Callable[..., list[Sample]]:
    """Factory: ``tiny_samples(n=24, size=64, seed=0)`` -> list of synthetic samples with masks."""
    return make_samples


@pytest.fixture
def torch_one_thread():
    """Tiny models train faster (and reproducibly) on one torch thread on a shared machine."""
    from mribench.blocks.nn.train import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory):
    """A data cache of the test module, shared by the test, its drivers and every worker (set
    in the environment, which spawned workers inherit)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MRIBENCH_CACHE", str(tmp_path_factory.mktemp("data-cache")))
    yield
    mp.undo()
