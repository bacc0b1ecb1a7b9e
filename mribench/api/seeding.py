"""The one way to seed the global random generators (``random``, numpy's legacy generator and
torch's, CPU and CUDA), used by the runner before each job and by the deep methods before
they build a network."""

from __future__ import annotations

__all__ = ["seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed ``random``, ``numpy.random`` (``seed % 2**32``) and, when it is installed, torch.

    torch is imported here, lazily, so that seeding a classical method does not pay for it;
    without torch only the first two are seeded.
    """
    import random

    import numpy as np

    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)
