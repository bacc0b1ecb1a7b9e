"""Atomic file writes: a reader never sees half a file, a crash never leaves one."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def _atomic_write(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda h: h.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=_json_default, allow_nan=True) + "\n"


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` as sorted-key JSON atomically (NaN allowed, numpy values converted)."""
    atomic_write_text(path, to_json(data))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class ArrayChunks:
    """An array :func:`atomic_save_npz` writes piece by piece, never whole in memory: its
    ``shape`` and ``dtype`` and the pieces (consecutive blocks along the first axis, in C
    order) that make it up, produced as they are written."""

    shape: tuple[int, ...]
    dtype: Any
    pieces: Iterable[np.ndarray]


def _write_chunks(handle: Any, value: ArrayChunks) -> None:
    dtype = np.dtype(value.dtype)
    np.lib.format.write_array_header_1_0(handle, {
        "descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
        "shape": tuple(int(s) for s in value.shape)})
    written = 0
    for piece in value.pieces:
        data = np.ascontiguousarray(piece, dtype=dtype)
        handle.write(data.tobytes())
        written += data.nbytes
    expected = int(np.prod(value.shape)) * dtype.itemsize
    if written != expected:
        raise ValueError(f"array pieces hold {written} bytes, shape {value.shape} needs "
                         f"{expected}")


def _save_npz(handle: Any, arrays: dict[str, np.ndarray | ArrayChunks]) -> None:
    """``np.savez_compressed``'s file (a deflated zip of ``.npy`` members), with the
    :class:`ArrayChunks` streamed into their member."""
    with zipfile.ZipFile(handle, mode="w", compression=zipfile.ZIP_DEFLATED,
                         allowZip64=True) as archive:
        for name, value in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                if isinstance(value, ArrayChunks):
                    _write_chunks(member, value)
                else:
                    np.lib.format.write_array(member, np.asanyarray(value))


def atomic_save_npz(path: Path, **arrays: np.ndarray | ArrayChunks) -> None:
    """Save arrays compressed into ``path`` atomically (what ``np.savez_compressed`` writes;
    ``np.load`` reads it). An :class:`ArrayChunks` value is written piece by piece."""
    _atomic_write(path, lambda h: _save_npz(h, arrays))


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """Save one array as ``.npy`` (uncompressed, readable in place) into ``path`` atomically."""
    _atomic_write(path, lambda h: np.save(h, array, allow_pickle=False))
