"""The on-disk sample store behind the data cache: slices read one at a time, never all held.

A store is a folder of three files:

- ``images.bin``: the (n, H, W) images, C order, ``uint8`` (k stands for k/255: exact for 8-bit
  sources, a quarter of float32) or ``float32`` when some image is not exactly k/255;
- ``masks.bin``: the bit-packed (m, H, ceil(W/8)) masks of the m samples that have one;
- ``meta.json``: dtype, shape, which samples have a mask, and each sample's id, group, label,
  source and original size.

:class:`StoreWriter` fills a store from any iterable of samples with one slice in memory at a
time and renames it into place when complete (a reader never sees half a store).
:class:`SampleStore` reads it: :meth:`SampleStore.samples` gives
:meth:`mribench.api.types.Sample.stored` samples whose ``image`` and ``mask`` are read with
``os.pread`` on each access. No memory map: the pages read are the kernel's page cache, not
the process's resident memory, so a data set larger than memory streams through a method that
reads it in batches. The reads are positional, so threads share one descriptor; a process
(forked or spawned, or a worker that unpickled the store) opens its own.

The ``.bin`` files are plain arrays: ``np.memmap(folder / "images.bin", dtype, mode="r",
shape=(n, H, W))`` opens them in any tool.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mribench.api.types import Sample

__all__ = ["STORE_VERSION", "SampleStore", "StoreWriter"]

#: Bump when the layout changes.
STORE_VERSION = 1

_SCALE = np.float32(255.0)


def _packed_width(width: int) -> int:
    return (width + 7) // 8


def _as_uint8(image: np.ndarray) -> np.ndarray | None:
    """``image`` as uint8 codes when it is exactly k/255 everywhere, else None."""
    codes = np.round(image * _SCALE).astype(np.uint8)
    return codes if np.array_equal(codes.astype(np.float32) / _SCALE, image) else None


class SampleStore:
    """A written store; raises ValueError when its files are damaged or incomplete."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        try:
            meta = json.loads((self.folder / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"meta.json is unreadable ({exc})") from exc
        if meta.get("version") != STORE_VERSION:
            raise ValueError(f"store version {meta.get('version')!r}, expected {STORE_VERSION}")
        self.dtype = np.dtype(meta["dtype"])
        height, width = (int(v) for v in meta["shape"])
        self.shape: tuple[int, int] = (height, width)
        self.records: list[dict[str, Any]] = meta["samples"]
        self._mask_row = {int(i): row for row, i in enumerate(meta["with_mask"])}
        self._image_bytes = height * width * self.dtype.itemsize
        self._mask_bytes = height * _packed_width(width)
        for name, want in (("images.bin", len(self.records) * self._image_bytes),
                           ("masks.bin", len(self._mask_row) * self._mask_bytes)):
            size = (self.folder / name).stat().st_size if (self.folder / name).exists() else -1
            if size != want:
                raise ValueError(f"{name} holds {size} bytes, expected {want} (truncated?)")
        self._fds: dict[str, int] = {}
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.records)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_fds"], state["_lock"] = {}, None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __del__(self, _getpid: Any = os.getpid, _close: Any = os.close) -> None:
        # os.getpid/os.close bound at definition: at interpreter exit module globals may
        # already be None when the last stores are collected
        if getattr(self, "_pid", None) == _getpid():
            for fd in getattr(self, "_fds", {}).values():
                try:
                    _close(fd)
                except OSError:
                    pass

    def _read(self, name: str, count: int, offset: int) -> bytes:
        with self._lock:
            if self._pid != os.getpid():  # a forked child: its own descriptors
                self._fds, self._pid = {}, os.getpid()
            fd = self._fds.get(name)
            if fd is None:
                flags = os.O_RDONLY | getattr(os, "O_BINARY", 0)
                fd = self._fds[name] = os.open(self.folder / name, flags)
        if hasattr(os, "pread"):
            data = os.pread(fd, count, offset)
        else:  # no positional read (Windows): seek and read under the lock
            with self._lock:
                os.lseek(fd, offset, os.SEEK_SET)
                data = os.read(fd, count)
        if len(data) != count:
            raise OSError(f"{self.folder / name}: short read at byte {offset}; the data cache "
                          "changed under the run (delete it and rerun)")
        return data

    def read_image(self, index: int) -> np.ndarray:
        """float32 (H, W) in [0, 1]: a new array on every call."""
        raw = np.frombuffer(self._read("images.bin", self._image_bytes,
                                       index * self._image_bytes), dtype=self.dtype)
        image = (raw.astype(np.float32) / _SCALE if self.dtype == np.uint8
                 else raw.astype(np.float32, copy=True))
        return image.reshape(self.shape)

    def has_mask(self, index: int) -> bool:
        return index in self._mask_row

    def read_mask(self, index: int) -> np.ndarray | None:
        """bool (H, W), or None for a sample stored without a mask."""
        row = self._mask_row.get(index)
        if row is None:
            return None
        packed = np.frombuffer(self._read("masks.bin", self._mask_bytes, row * self._mask_bytes),
                               dtype=np.uint8).reshape(self.shape[0], -1)
        return np.unpackbits(packed, axis=-1, count=self.shape[1]).view(bool)

    def samples(self) -> list[Sample]:
        """One stored sample per record, in the order they were written."""
        return [Sample.stored(self, i, id=r["id"], group=r["group"], label=int(r["label"]),
                              source=r["source"], original_size=tuple(r["original_size"]))
                for i, r in enumerate(self.records)]


class StoreWriter:
    """Write samples one by one into ``folder`` (created by :meth:`close`, atomically).

    The images go to disk as they come; only the small per-sample records stay in memory.
    The first image decides the dtype (uint8 when it is exactly k/255); a later image that is
    not turns the file written so far into float32 (read back in chunks) and goes on.
    """

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.folder.with_name(f".{self.folder.name}.{os.getpid()}."
                                          f"{threading.get_ident()}.tmp")
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp.mkdir()
        self._images = open(self._tmp / "images.bin", "wb")  # noqa: SIM115 - closed in close()
        self._masks = open(self._tmp / "masks.bin", "wb")  # noqa: SIM115
        self.records: list[dict[str, Any]] = []
        self._with_mask: list[int] = []
        self._dtype: np.dtype | None = None
        self._shape: tuple[int, int] | None = None

    def add(self, sample: Sample) -> None:
        image = np.asarray(sample.image, dtype=np.float32)
        if self._shape is None:
            self._shape = (int(image.shape[0]), int(image.shape[1])) if image.ndim == 2 else (0, 0)
        if image.shape != self._shape:
            raise ValueError(f"sample {sample.id}: image of shape {image.shape}, the others "
                             f"{self._shape}")
        codes = _as_uint8(image) if self._dtype != np.float32 else None
        if self._dtype is None:
            self._dtype = np.dtype(np.uint8 if codes is not None else np.float32)
        elif self._dtype == np.uint8 and codes is None:
            self._promote()
        self._images.write((codes if self._dtype == np.uint8 else image).tobytes())
        mask = sample.mask
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != self._shape:
                raise ValueError(f"sample {sample.id}: mask of shape {mask.shape}, image "
                                 f"{self._shape}")
            self._masks.write(np.packbits(mask, axis=-1).tobytes())
            self._with_mask.append(len(self.records))
        self.records.append({"id": sample.id, "group": sample.group, "label": int(sample.label),
                             "source": sample.source,
                             "original_size": [int(v) for v in sample.original_size]})

    def _promote(self) -> None:
        """Rewrite the uint8 images written so far as float32 (k -> k/255, exactly)."""
        self._images.close()
        old, new = self._tmp / "images.bin", self._tmp / "images.f32"
        step = 1 << 22
        with open(old, "rb") as src, open(new, "wb") as dst:
            while chunk := src.read(step):
                dst.write((np.frombuffer(chunk, np.uint8).astype(np.float32) / _SCALE).tobytes())
        os.replace(new, old)
        self._images = open(old, "ab")  # noqa: SIM115
        self._dtype = np.dtype(np.float32)

    def set_groups(self, groups: Sequence[tuple[int, str]]) -> None:
        """Set the group of records (index, group) before :meth:`close`."""
        for index, group in groups:
            self.records[index]["group"] = group

    def close(self) -> SampleStore:
        """Finish the store, move it into place and open it. Where another process finished
        the same store first, that one is kept and opened."""
        for handle in (self._images, self._masks):
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        height, width = self._shape or (0, 0)
        meta = {"version": STORE_VERSION, "dtype": (self._dtype or np.dtype(np.uint8)).name,
                "shape": [height, width], "with_mask": self._with_mask,
                "samples": self.records}
        (self._tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        try:
            os.rename(self._tmp, self.folder)
        except OSError:
            if not self.folder.is_dir():
                raise
            shutil.rmtree(self._tmp, ignore_errors=True)  # a concurrent writer won the race
        return SampleStore(self.folder)

    def abort(self) -> None:
        """Drop the partial store."""
        for handle in (self._images, self._masks):
            try:
                handle.close()
            except OSError:
                pass
        shutil.rmtree(self._tmp, ignore_errors=True)
