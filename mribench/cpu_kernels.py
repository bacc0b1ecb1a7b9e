"""Which CPU kernels a process computes with, so that a deep row's numbers do not depend on the
machine's instruction set.

torch picks its CPU kernels by what the processor offers: its vectorised ATen loops (AVX-512 on
one machine, AVX2 on another), its oneDNN convolutions (JIT kernels that also block by the
caches' sizes) and MKL's BLAS each sum in another order, and a network trained a few hundred
steps drifts to other weights. Measured: the same commit, seeds and one thread gave the
quick-synthetic ``cnn`` F1 0.667 on the machine its baseline was made on and 0.618 on an
AVX-512/AMX machine, and moved every deep row of that suite by up to 0.1 recall. numpy
dispatches AVX-512 loops in the same way, and OpenBLAS (numpy's and scipy's BLAS) its
SkylakeX kernels (the classical ``ann`` and ``svm`` scores moved in the last bit).

Two modes, read from ``$MRIBENCH_CPU_KERNELS`` when :mod:`mribench` is first imported (before
numpy and torch load their kernels, which they choose once per process):

- ``portable`` (default): every library at one level that x86-64 servers of the last decade
  share: ATen's AVX2 kernels (``ATEN_CPU_CAPABILITY=avx2``), MKL's conditional numerical
  reproducibility at AVX2 (``MKL_CBWR=AVX2,STRICT``), numpy without its AVX-512 loops
  (``NPY_DISABLE_CPU_FEATURES``), OpenBLAS's Haswell kernels (``OPENBLAS_CORETYPE``), and, per job (:func:`job_kernels`), convolutions through
  ATen and MKL instead of oneDNN. A variable the user already set is left as it is; what the
  process really computes with is recorded with every job (:func:`describe`).
- ``native``: each library takes the machine's fastest kernels (measured: deep training about
  1.6 times faster on an AVX-512 machine); the numbers are then this kind of CPU's only.

Other architectures (aarch64) have no such levels to pin here: ``portable`` there only turns
oneDNN off, and :func:`describe` says the numbers are not portable to x86-64.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from typing import Any

__all__ = ["MODES", "MODE_VAR", "PORTABLE_ENV", "describe", "job_kernels", "pin_process",
           "process_mode"]

#: The environment variable that chooses the mode (read once, at import).
MODE_VAR = "MRIBENCH_CPU_KERNELS"
MODES = ("portable", "native")

#: What ``portable`` sets in the environment before numpy and torch load (x86-64 only).
PORTABLE_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2,STRICT",
    # numpy's dispatch targets above AVX2 (x86-64-v3); unknown names are ignored by numpy
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    # OpenBLAS's AVX2 kernels (its DYNAMIC_ARCH builds read this when they load)
    "OPENBLAS_CORETYPE": "Haswell",
}

_X86 = ("x86_64", "amd64")


def process_mode() -> str:
    """The mode this process was started with (``$MRIBENCH_CPU_KERNELS``, default portable);
    an unknown value is returned as given, for the run's configuration to refuse."""
    return os.environ.get(MODE_VAR, "").strip().lower() or "portable"


def pin_process() -> None:
    """Set :data:`PORTABLE_ENV` in this process's environment when the mode is ``portable``
    (call before numpy or torch is imported; child processes inherit it)."""
    if process_mode() == "portable" and platform.machine().lower() in _X86:
        for name, value in PORTABLE_ENV.items():
            os.environ.setdefault(name, value)


_FLUSHING = False


@contextlib.contextmanager
def job_kernels(mode: str) -> Iterator[None]:
    """Run the block with oneDNN's CPU kernels off (``portable``) or on (``native``), and with
    denormal floats flushed to zero in the calling thread (both modes); the previous settings
    come back after.

    Flushing denormals: weights that weight decay drives towards zero end up below 1.2e-38,
    where x86 arithmetic takes a slow path. Measured: after 4 of 8 quick epochs on 50,000
    slices, 23% of the U-Net's weights were denormal and a training step took 913 ms against
    399 ms with them flushed (and 378-399 ms from fresh weights); its epochs had grown from 15
    to over 30 min. It changes only values below that bound, on every x86-64 CPU alike.
    """
    import torch

    global _FLUSHING
    before = torch.backends.mkldnn.enabled, _FLUSHING
    torch.backends.mkldnn.enabled = mode == "native"
    _FLUSHING = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before[0]
        torch.set_flush_denormal(before[1])
        _FLUSHING = before[1]


def _numpy_top_target() -> str:
    """numpy's highest enabled dispatch target on this machine (e.g. ``X86_V3``)."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    enabled = [t for t in __cpu_dispatch__ if __cpu_features__.get(t)]
    return enabled[-1] if enabled else "baseline"


def _openblas_cores() -> list[str]:
    """The kernel sets of the OpenBLAS libraries loaded in this process (threadpoolctl)."""
    from threadpoolctl import threadpool_info

    return sorted({str(p.get("architecture")) for p in threadpool_info()
                   if p.get("internal_api") == "openblas"})


def describe(mode: str) -> dict[str, Any]:
    """What the calling process computes with, as recorded in a job's ``status.json``: the
    mode, torch's ATen capability, whether oneDNN is on, MKL's reproducibility setting, numpy's
    highest dispatch target, OpenBLAS's kernels, whether denormals are flushed to zero, and
    whether that is the portable set (``portable``)."""
    import torch

    info: dict[str, Any] = {
        "mode": mode,
        "machine": platform.machine(),
        "aten": torch.backends.cpu.get_cpu_capability(),
        "onednn": bool(torch.backends.mkldnn.enabled),
        "mkl_cbwr": os.environ.get("MKL_CBWR"),
        "numpy": _numpy_top_target(),
        "openblas": _openblas_cores(),
        "flush_denormal": _FLUSHING,
    }
    info["portable"] = (mode == "portable" and platform.machine().lower() in _X86
                        and info["aten"] == "AVX2" and not info["onednn"]
                        and info["mkl_cbwr"] == PORTABLE_ENV["MKL_CBWR"]
                        and info["numpy"] in ("X86_V3", "baseline")
                        and all(c.lower() == "haswell" for c in info["openblas"]))
    return info
