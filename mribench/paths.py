"""Where things are: the source tree's root (``benchmarks/`` in a checkout) and its folders."""

from __future__ import annotations

from pathlib import Path


def repo_root() -> Path:
    """The source tree's root (where ``benchmarks/`` lives in a checkout)."""
    import mribench

    return Path(mribench.__file__).resolve().parents[1]


def benchmarks_dir() -> Path:
    """``benchmarks/`` of the checkout: suites, split manifests, baselines, published figures."""
    return repo_root() / "benchmarks"
