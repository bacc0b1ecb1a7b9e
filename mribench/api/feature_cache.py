"""A feature cache shared by every method of a run: each feature of each image is computed once.

Features are keyed by a name (e.g. ``"glcm"``), a dict of parameters, and the sample id plus a
fingerprint of the image, so two methods asking for the same features with the same parameters
share one computation, and a resumed run reuses what an earlier one computed.

Scale: a table never lives in memory whole. The feature function is called on
:data:`CHUNK` missing samples at a time (every feature of a sample depends on that sample
only, so the values do not depend on the chunking), and each chunk's rows are appended to the
table's folder on disk as one *segment* (``<folder>/<table>/<segment>.npy``, the rows, and
``<segment>.keys``, their image keys one a line, written after the rows: a segment counts
once both are complete). Nothing is ever rewritten, so concurrent jobs (processes) sharing
the folder each add their own segments and see each other's, and a run killed in the middle
of a long computation keeps the chunks it finished. Rows are read back with positional reads
(not a memory map: the pages are the kernel's page cache, not the process's memory), either
stacked for the samples asked (:meth:`FeatureCache.features`) or one at a time when a
training loader asks (:meth:`FeatureCache.rows`, e.g. ``fcm-cnn``'s membership maps:
50,000 slices at 64 px are 820 MB as float32).

Each table has a storage dtype (float64 unless the caller asks otherwise; ``fcm-cnn`` asks for
float32, the dtype its memberships are computed in, so nothing is lost). A cache without a
folder keeps its segments in a private temporary folder removed with the cache.

A damaged segment (truncated by a crash or a full disk) is rebuilt with a warning on the
``mribench`` logger naming it, never fatal. Tables of earlier versions (one ``<table>.npz``
rewritten whole after each call) are still read: their rows become the table's first segment
(a damaged one is rebuilt with the same warning).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import shutil
import tempfile
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mribench.api.types import Sample
from mribench.atomic import atomic_save_npy, atomic_write_text

__all__ = ["CHUNK", "FeatureCache", "FeatureRows"]

_log = logging.getLogger("mribench")

#: Samples per call of a feature function (and rows per segment written).
CHUNK = 256

_counter = itertools.count()


def _image_key(sample: Sample) -> str:
    h = hashlib.blake2b(digest_size=8)
    h.update(sample.id.encode("utf-8", "surrogateescape"))  # ids from odd file names
    image = sample.image  # read once (a stored sample reads it from disk on each access)
    h.update(str(image.shape).encode())
    h.update(np.ascontiguousarray(image[::7, ::7]).tobytes())
    return h.hexdigest()


def _warn_damaged(path: Path, exc: BaseException) -> None:
    _log.warning("feature cache %s is damaged (%s: %s); rebuilding it", path,
                 type(exc).__name__, " ".join(str(exc).split())[:120])


def _npy_layout(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, offset of the data)`` of a C-order ``.npy`` file whose size matches."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(handle)
        offset = handle.tell()
    if fortran:
        raise ValueError("rows stored in Fortran order")
    want = offset + int(np.prod(shape)) * dtype.itemsize
    size = path.stat().st_size
    if size != want:
        raise ValueError(f"{size} bytes, expected {want} (truncated?)")
    return tuple(shape), dtype, offset


def _runs(where: np.ndarray, picked: np.ndarray, nbytes: int) -> Iterable[tuple[int, int, int]]:
    """``(first output row, rows, byte offset)`` of the consecutive stretches of ``picked``
    (output rows in order) whose rows lie one after another in the file."""
    start = 0
    for k in range(1, len(picked) + 1):
        if (k == len(picked) or picked[k] != picked[k - 1] + 1
                or where[picked[k], 1] != where[picked[k - 1], 1] + nbytes):
            yield int(picked[start]), k - start, int(where[picked[start], 1])
            start = k


def _read_rows(out: np.ndarray, paths: Sequence[Path], where: np.ndarray) -> None:
    """Fill ``out`` (m, d) with the rows at ``where`` ((m, 2): segment number, byte offset),
    one positional read per stretch of consecutive rows."""
    nbytes = out.shape[1] * out.dtype.itemsize
    if not len(where) or not nbytes:
        return
    flat = out.reshape(len(out), -1).view(np.uint8)
    for seg in np.unique(where[:, 0]):
        fd = os.open(paths[seg], os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            for first, count, offset in _runs(where, np.flatnonzero(where[:, 0] == seg), nbytes):
                size = count * nbytes
                if hasattr(os, "pread"):
                    data = os.pread(fd, size, offset)
                else:  # Windows: no positional read
                    os.lseek(fd, offset, os.SEEK_SET)
                    data = os.read(fd, size)
                if len(data) != size:
                    raise OSError(f"{paths[seg]}: short read at byte {offset}")
                flat[first:first + count] = np.frombuffer(data, np.uint8).reshape(count, nbytes)
        finally:
            os.close(fd)


class FeatureRows(Sequence[np.ndarray]):
    """The feature rows of a list of samples, in their order, read from disk when asked.

    ``rows[i]`` is sample ``i``'s row (shaped ``row_shape``, e.g. ``(S, S)`` for a map);
    :meth:`stack` reads a range of them as one array. Small to pickle (segment paths and
    offsets, no values): a loader's worker process reads its own rows.
    """

    def __init__(self, paths: Sequence[Path], where: np.ndarray, width: int, dtype: np.dtype,
                 row_shape: tuple[int, ...] | None = None, keepalive: Any = None) -> None:
        self.paths, self.where = list(paths), where
        if not width and not len(where) and row_shape is not None:  # no rows of a new table
            width = int(np.prod(row_shape))
        self.width, self.dtype = int(width), np.dtype(dtype)
        self.row_shape = tuple(row_shape) if row_shape is not None else (self.width,)
        if int(np.prod(self.row_shape)) != self.width:
            raise ValueError(f"rows of {self.width} values cannot be shaped {self.row_shape}")
        self._keepalive = keepalive  # the temporary folder of a cache without one

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_keepalive"] = None  # a worker never owns (nor removes) the folder
        return state

    def __len__(self) -> int:
        return len(self.where)

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self.stack(index % len(self), index % len(self) + 1)[0]

    def reshaped(self, *row_shape: int) -> FeatureRows:
        """The same rows, each shaped ``row_shape``."""
        return FeatureRows(self.paths, self.where, self.width, self.dtype, row_shape,
                           self._keepalive)

    def stack(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``[start, stop)`` as one ``(m, *row_shape)`` array."""
        where = self.where[start:stop]
        out = np.empty((len(where), self.width), self.dtype)
        _read_rows(out, self.paths, where)
        return out.reshape(len(where), *self.row_shape)


class _TempFolder:
    """A private temporary folder, removed when the last holder lets go of it."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="mribench-features-"))
        weakref.finalize(self, shutil.rmtree, str(self.path), ignore_errors=True)


class _Table:
    """One feature table on disk: its segments and where each image key's row is."""

    def __init__(self, folder: Path, name: str, legacy: Path | None, dtype: np.dtype) -> None:
        self.folder, self.legacy, self.dtype = folder / name, legacy, dtype
        self.paths: list[Path] = []
        self.index: dict[str, tuple[int, int]] = {}
        self.width: int | None = None
        self.seen: set[str] = set()

    def refresh(self) -> None:
        """Take in the segments written since the last look (by this or another process)."""
        names = sorted(p.name[:-5] for p in self.folder.glob("*.keys")) \
            if self.folder.is_dir() else []
        if not names and not self.seen and self.legacy is not None and self.legacy.exists():
            self._import_legacy(self.legacy)
            return
        for name in names:
            if name not in self.seen:
                self.seen.add(name)
                self._load_segment(name)

    def _load_segment(self, name: str) -> None:
        path = self.folder / f"{name}.npy"
        try:
            keys = (self.folder / f"{name}.keys").read_text(encoding="ascii").split()
            shape, dtype, offset = _npy_layout(path)
            if dtype != self.dtype or len(shape) != 2 or shape[0] != len(keys):
                raise ValueError(f"rows {shape} {dtype} for {len(keys)} keys, expected "
                                 f"{self.dtype}")
            if self.width is not None and shape[1] != self.width:
                raise ValueError(f"rows of {shape[1]} values, expected {self.width}")
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            _warn_damaged(path, exc)
            for suffix in (".npy", ".keys"):  # rebuilt: the rows are computed again
                (self.folder / f"{name}{suffix}").unlink(missing_ok=True)
            return
        self._register(path, offset, keys, shape[1])

    def _register(self, path: Path, offset: int, keys: Sequence[str], width: int) -> None:
        self.width = width
        seg = len(self.paths)
        self.paths.append(path)
        row_bytes = width * self.dtype.itemsize
        for row, key in enumerate(keys):
            self.index.setdefault(key, (seg, offset + row * row_bytes))

    def _import_legacy(self, path: Path) -> None:
        """Rows of an earlier version's ``.npz`` table become the first segment."""
        try:
            with np.load(path, allow_pickle=False) as data:
                keys, values = data["keys"], data["values"]
            if values.ndim != 2 or len(keys) != len(values):
                raise ValueError(f"{len(keys)} keys for rows {values.shape}")
        except Exception as exc:  # a damaged entry is rebuilt, never fatal
            _warn_damaged(path, exc)
            path.unlink(missing_ok=True)
            return
        self.append([str(k) for k in keys], values)

    def append(self, keys: Sequence[str], values: np.ndarray) -> None:
        """Write one segment (the rows, then their keys) and take it in."""
        values = np.ascontiguousarray(values, dtype=self.dtype)
        if self.width is not None and values.shape[1] != self.width:
            raise ValueError(f"rows of {values.shape[1]} values, the table has {self.width}")
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{next(_counter):06d}-{uuid.uuid4().hex[:8]}"
        path = self.folder / f"{name}.npy"
        atomic_save_npy(path, values)
        atomic_write_text(self.folder / f"{name}.keys", "\n".join(keys) + "\n")
        self.seen.add(name)
        _, _, offset = _npy_layout(path)
        self._register(path, offset, keys, values.shape[1])

    def rows(self, keys: Sequence[str], keepalive: Any) -> FeatureRows:
        where = np.array([self.index[k] for k in keys], dtype=np.int64).reshape(-1, 2)
        return FeatureRows(self.paths, where, self.width or 0, self.dtype, keepalive=keepalive)


def _chunks(items: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class FeatureCache:
    """Per-image feature tables, on disk under ``folder`` (a private temporary folder when
    None); ``chunk``: samples per call of a feature function."""

    def __init__(self, folder: Path | None, *, chunk: int = CHUNK) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.chunk = int(chunk)
        self._tables: dict[str, _Table] = {}
        self._temp: _TempFolder | None = None
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _table_key(name: str, params: dict[str, Any]) -> str:
        blob = json.dumps(params, sort_keys=True, default=str).encode()
        return f"{name}-{hashlib.sha256(blob).hexdigest()[:10]}"

    def _table(self, name: str, params: dict[str, Any], dtype: np.dtype) -> _Table:
        key = self._table_key(name, params)
        folder_key = key if dtype == np.float64 else f"{key}-{dtype.name}"
        if folder_key not in self._tables:
            if self.folder is None and self._temp is None:
                self._temp = _TempFolder()
            folder = self.folder if self.folder is not None else self._temp.path  # type: ignore[union-attr]
            legacy = folder / f"{key}.npz" if self.folder is not None else None
            self._tables[folder_key] = _Table(folder, folder_key, legacy, dtype)
        return self._tables[folder_key]

    def rows(self, name: str, params: dict[str, Any], samples: Sequence[Sample],
             compute: Callable[[Sequence[Sample]], np.ndarray], *,
             dtype: Any = np.float64) -> FeatureRows:
        """The rows of ``samples`` (computing the missing ones), read from disk when asked.

        ``compute`` takes a list of at most ``chunk`` samples and returns an (m, d) float
        array; the rows are stored as ``dtype``.
        """
        with self._lock:
            table = self._table(name, params, np.dtype(dtype))
            table.refresh()
            keys = [_image_key(s) for s in samples]
            missing = [i for i, k in enumerate(keys) if k not in table.index]
            self.hits += len(samples) - len(missing)
            self.misses += len(missing)
            for part in _chunks(missing, self.chunk):
                new = np.asarray(compute([samples[i] for i in part]), dtype=np.float64)
                if new.ndim != 2 or new.shape[0] != len(part):
                    raise ValueError(f"feature function {name!r} returned shape {new.shape}")
                table.append([keys[i] for i in part], new)
            return table.rows(keys, self._temp)

    def features(self, name: str, params: dict[str, Any], samples: Sequence[Sample],
                 compute: Callable[[Sequence[Sample]], np.ndarray], *,
                 dtype: Any = np.float64) -> np.ndarray:
        """Return an (n, d) array of features for ``samples``, computing only missing rows
        (see :meth:`rows`); only the rows asked are held."""
        if not len(samples):
            return np.zeros((0, 0))
        return self.rows(name, params, samples, compute, dtype=dtype).stack()
