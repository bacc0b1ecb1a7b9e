"""Where a result came from: package versions, git revision, machine, command line."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

#: Distributions whose versions every result records.
TRACKED = ("mribench", "numpy", "scipy", "scikit-learn", "scikit-image", "pandas", "mahotas",
           "PyWavelets", "pydensecrf2", "torch", "pillow", "click", "tabulate", "matplotlib")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in TRACKED:
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def git_revision(path: Path | None = None) -> str | None:
    """The git commit of the source tree (``+dirty`` when it has uncommitted changes)."""
    root = path or Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("+dirty" if dirty else "")


def machine() -> dict[str, Any]:
    import os

    info: dict[str, Any] = {"platform": platform.platform(), "processor": platform.machine(),
                            "cpus": os.cpu_count()}
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def command_line() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
