"""Disk-backed stacks of predictions: a segmenter's masks and maps, written batch by batch.

A :class:`~mribench.api.types.Prediction` of a segmenter holds one mask (and often one
probability map) per test slice: at the size of BraTS (39,000 slices at 240 px) that is 2.2 GB
of masks and 4.5 GB of float32 maps, too much to hold. So a method asks its context for an
``(n, H, W)`` stack (:meth:`mribench.api.context.Context.prediction_stack`, which calls
:func:`new_stack`) and fills it batch by batch; where the runner gives the job a scratch
folder (``Context.scratch``, inside the job's results folder, removed once the scores of an
evaluation set are written) the stack is a NumPy memory map of a ``.npy`` file there
(:func:`numpy.lib.format.open_memmap`), else (tests, ``bench predict``) an ordinary zeroed
array. Either way it is an ``np.ndarray``: indexing, slicing and shapes work as usual.

A memory map's pages count in the process's memory once touched, until released. The helpers
that read and write rows (:func:`read_rows`, :func:`write_rows`) release them after each
chunk (:func:`release`: ``madvise(MADV_DONTNEED)`` on the mapping, which drops the pages from
the process; on a shared file mapping their content stays in the file and the page cache and
comes back when touched), so a consumer that goes through :func:`chunks` holds one chunk of a
stack in memory, never the stack: the metrics (:mod:`mribench.eval.metrics`), the writer of
``predictions.npz`` (:mod:`mribench.results.write`), the area threshold of the image label
(:mod:`mribench.api.thresholds`) and the dense CRF row (:mod:`mribench.blocks.crf`) do.
The numbers are those of the in-memory stacks, bit for bit: every consumer computes per slice.
"""

from __future__ import annotations

import errno
import mmap
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CHUNK", "chunks", "is_on_disk", "new_stack", "read_rows", "release", "write_rows"]

#: Slices a chunked consumer reads at a time (a 240 px float32 map is 230 kB: 59 MB a chunk).
CHUNK = 256


def new_stack(folder: Path | None, n: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A zeroed ``(n, *shape)`` array of ``dtype``: a memory map of a new ``.npy`` file in
    ``folder`` (made if missing), or in memory when ``folder`` is None or the stack is empty."""
    full = (int(n), *(int(s) for s in shape))
    if folder is None or int(np.prod(full)) == 0:
        return np.zeros(full, dtype=dtype)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}.npy"
    stack = np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(dtype), shape=full)
    _reserve(path)
    return stack


def _reserve(path: Path) -> None:
    """Allocate the file's blocks now (it is created sparse): a full disk is then an
    ``OSError`` here, not a ``SIGBUS`` when a page of the map is first written."""
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:  # a file system that cannot reserve: stay sparse
            return
        raise
    finally:
        os.close(fd)


def _mapping(array: Any) -> mmap.mmap | None:
    """The memory mapping behind ``array`` (a memory map or a view of one), or None."""
    while isinstance(array, np.ndarray):
        found = getattr(array, "_mmap", None)  # np.memmap keeps its mapping there
        if isinstance(found, mmap.mmap):
            return found
        array = array.base
    return array if isinstance(array, mmap.mmap) else None


def is_on_disk(array: Any) -> bool:
    """Whether ``array`` is (a view of) a memory-mapped file."""
    return _mapping(array) is not None


def release(*arrays: Any) -> None:
    """Drop the touched pages of memory-mapped ``arrays`` from this process (their content
    stays in the file); nothing for in-memory arrays, or where the platform lacks
    ``madvise``."""
    for array in arrays:
        mapping = _mapping(array)
        if mapping is not None and not mapping.closed and hasattr(mmap, "MADV_DONTNEED"):
            mapping.madvise(mmap.MADV_DONTNEED)


def chunks(n: int, size: int | None = None) -> Iterator[slice]:
    """``slice(0, size), slice(size, 2 size), ...`` covering ``range(n)`` (``size``: default
    :data:`CHUNK`)."""
    size = int(size or CHUNK)
    for start in range(0, int(n), size):
        yield slice(start, min(start + size, int(n)))


def read_rows(stack: Any, rows: Any) -> np.ndarray:
    """A copy in memory of ``stack[rows]`` (a slice, an index or an index array); the
    stack's pages are released after."""
    out = np.array(stack[rows])
    release(stack)
    return out


def write_rows(stack: np.ndarray, rows: Any, values: Any) -> None:
    """``stack[rows] = values``, then the stack's pages released (written to its file)."""
    stack[rows] = values
    release(stack)
