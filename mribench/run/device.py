"""Device choice for deep methods: CUDA when present (``auto``), the CPU otherwise."""

from __future__ import annotations

from mribench.api.errors import MribenchError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(spec: str = "auto") -> str:
    """Turn ``auto|cpu|cuda`` into ``cpu`` or ``cuda``; ``cuda`` without a GPU is an error."""
    if spec not in DEVICES:
        raise MribenchError(f"--device must be one of {', '.join(DEVICES)}, got {spec!r}")
    if spec == "cpu":
        return "cpu"
    try:
        import torch
    except ImportError:
        if spec == "cuda":
            raise MribenchError("--device cuda needs PyTorch with CUDA: pip install torch") from None
        return "cpu"
    available = torch.cuda.is_available()
    if spec == "cuda" and not available:
        raise MribenchError(
            "--device cuda asked for, but PyTorch sees no CUDA GPU; use --device cpu or auto"
        )
    return "cuda" if available else "cpu"
