"""Read one channel of a multi-channel slice (e.g. the sequences stacked in LGG's RGB TIFs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mribench.api.errors import DataError
from mribench.data.imageio import _one_line, _open

__all__ = ["read_channel"]


def read_channel(path: Path | str, channel: int, *, what: str = "an RGB image") -> np.ndarray:
    """Channel ``channel`` of the RGB image ``path`` as float32 in [0, 1] (value / 255).

    A file that is missing, empty, unreadable, truncated or not RGB is a one-line DataError
    naming it; ``what`` says what the file should have been (for that message).
    """
    path = Path(path)
    img = _open(path)
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: corrupt or truncated image ({_one_line(exc)}); "
                        "re-download or replace it") from exc
    if img.mode != "RGB":
        raise DataError(f"{path}: a {img.mode} image, expected {what}; re-download or "
                        "replace it")
    return np.asarray(img)[:, :, channel].astype(np.float32) / np.float32(255.0)
