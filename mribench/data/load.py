"""Load a data set from its ``--dataset`` spec, fast: parallel decoding and an on-disk cache.

``load_dataset("br35h")`` finds the files (:func:`find_data_dir`), decodes and resizes every
image in two threads (:func:`read_images`), sets near-duplicate groups, and stores
the result in the cache folder, so the next load with the same files and image size reads one
file instead of decoding 3,000 JPEGs.

Cache: ``$MRIBENCH_CACHE`` or ``~/.cache/mribench``; loaded data sets go to ``datasets/`` in
it, keyed by :data:`CACHE_VERSION`, mribench's version, the plugin class and
``Dataset.fingerprint()`` (for files: names, sizes and modification times, plus the image size
and options). Only plugins with a true ``cacheable`` class attribute are cached. Images are stored as uint8 when every image is
exactly k/255 (8-bit sources), else float32, so a cached load returns the same arrays as a
fresh one. Old entries are not evicted; delete the folder to reclaim the space.

Data folders (:func:`find_data_dir`): ``--data-dir``, then ``$MRIBENCH_DATA`` (the data set's
folder itself or a parent holding it), then ``<cache>/data/<name>``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mribench.api.dataset import DEFAULT_IMAGE_SIZE, Dataset
from mribench.api.errors import DataError
from mribench.api.params import Constraint
from mribench.api.registry import get_dataset
from mribench.api.types import Sample
from mribench.atomic import _atomic_write
from mribench.data.duplicates import assign_groups
from mribench.data.imageio import THUMB_SIZE, LoadedImage, load_image
from mribench.data.threads import thread_map

#: Bump when the loaders' output changes, to invalidate every cached data set.
CACHE_VERSION = 1
ENV_CACHE = "MRIBENCH_CACHE"
ENV_DATA = "MRIBENCH_DATA"

__all__ = ["CACHE_VERSION", "ImageBatch", "cache_root", "files_fingerprint", "find_data_dir",
           "load_dataset", "read_images", "resolve_options"]


def cache_root() -> Path:
    """``$MRIBENCH_CACHE``, else ``~/.cache/mribench``."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mribench"


def find_data_dir(name: str, explicit: Path | str | None, *, looks_like: Callable[[Path], bool],
                  how_to_get: str) -> Path:
    """The folder of data set ``name``: ``explicit``, else ``$MRIBENCH_DATA``, else the cache.

    ``explicit`` and ``$MRIBENCH_DATA`` may name the data set's folder or a parent holding
    ``<name>/``. ``looks_like(path)`` says whether a folder holds the data set. Not found is a
    one-line DataError saying where it looked and ``how_to_get`` the data.
    """
    def candidates(base: Path) -> list[Path]:
        return [base, base / name]

    if explicit is not None:
        base = Path(explicit).expanduser()
        for path in candidates(base):
            if looks_like(path):
                return path
        raise DataError(f"--data-dir {base}: no {name} data there; {how_to_get}")
    tried = []
    env = os.environ.get(ENV_DATA)
    if env:
        base = Path(env).expanduser()
        for path in candidates(base):
            if looks_like(path):
                return path
        tried.append(f"${ENV_DATA}={base}")
    default = cache_root() / "data" / name
    if looks_like(default):
        return default
    tried.append(str(default))
    raise DataError(f"{name} data not found (looked in {', '.join(tried)}); {how_to_get}, "
                    f"then pass --data-dir PATH or set {ENV_DATA}")


def files_fingerprint(paths: Iterable[Path], root: Path | None = None) -> str:
    """A hash of the files' names (relative to ``root``), sizes and modification times."""
    h = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        st = path.stat()
        rel = path.relative_to(root) if root is not None else path
        # os.fsencode: a file name that is not valid UTF-8 hashes by its bytes
        h.update(os.fsencode(rel.as_posix()) + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def resolve_options(owner: str, given: dict[str, Any], defaults: dict[str, Any],
                    checks: dict[str, Constraint] | None = None) -> dict[str, Any]:
    """Merge a data set's ``name[k=v]`` options into its defaults, rejecting unknown ones.

    ``checks`` maps an option to a :mod:`mribench.api.params` constraint (the methods' own); a
    failing value is a DataError naming the data set, the option, what is allowed and what was
    given.
    """
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise DataError(f"{owner}: unknown option(s) {', '.join(unknown)}; known: "
                        f"{', '.join(sorted(defaults)) or 'none'}")
    merged = {**defaults, **given}
    for key, rule in (checks or {}).items():
        if not rule.check(merged[key]):
            raise DataError(f"{owner}: option {key!r} must be {rule}, got {merged[key]!r}")
    return merged


# --------------------------------------------------------------------------- parallel decoding


@dataclass
class ImageBatch:
    """Images read by :func:`read_images`, in input order."""

    images: np.ndarray                  # float32 (n, size, size) in [0, 1]
    original_sizes: list[tuple[int, int]]
    thumbnails: np.ndarray              # float32 (n, 32, 32)
    masks: list[np.ndarray | None]      # bool (size, size) where a mask was asked for
    mask_pixels: list[int]              # tumour pixels of each mask at the original size


def _load_task(task: tuple[str, int, bool, Any]) -> LoadedImage:
    path, size, draft, mask = task
    if isinstance(mask, list):
        return load_image(path, size, draft=draft, regions=mask)
    return load_image(path, size, draft=draft, mask_path=mask)


def read_images(paths: Sequence[Path | str], size: int, *,
                masks: Sequence[Any] | None = None, draft: bool = True,
                workers: int | None = None, show_progress: bool = False,
                desc: str = "loading") -> ImageBatch:
    """Read and resize many images (and their masks) in a small thread pool.

    Parameters
    ----------
    paths : sequence of paths
        Image files.
    size : int
        Side of the square output.
    masks : sequence, optional
        Per image: None, a mask file path, or a list of VIA regions.
    draft : bool
        Let JPEGs decode at a reduced scale first (see :mod:`mribench.data.imageio`).
    workers : int, optional
        Threads; default ``$MRIBENCH_WORKERS`` or min(2, CPUs). 1 (or fewer than 64 images)
        reads in the calling thread. Threads, not processes: PIL releases the GIL while it
        decodes and resizes, so two threads give most of a process pool's gain without its
        costs (spawned workers re-import the caller's ``__main__``, which breaks scripts
        without an ``if __name__ == "__main__"`` guard; forked ones are unsafe once torch has
        started threads). Measured on Br35H (3,000 JPEGs to 256 px, 2 busy shared cores,
        benchmarks/bench_data.py): 2 threads with draft 4.5 s, 1 thread with draft 5.9 s,
        2 threads without draft 5.1 s. A whole cold ``load_dataset("br35h")`` (plus 801 masks
        rasterised at full size, ~3 s of it in skimage's polygon fill, grouping and the cache
        write) took 11.8 s; a warm one 2.0 s.
    """
    masks = list(masks) if masks is not None else [None] * len(paths)
    tasks = [(str(p), int(size), bool(draft), m if m is None or isinstance(m, list) else str(m))
             for p, m in zip(paths, masks, strict=True)]
    results: Iterable[LoadedImage]
    with thread_map(_load_task, tasks, workers=workers, min_items=64,
                    name="mribench-read") as results:
        if show_progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(tasks), desc=desc, file=sys.stderr, leave=False)
        loaded = list(results)
    n = len(loaded)
    images = np.empty((n, size, size), np.float32)
    thumbs = np.empty((n, THUMB_SIZE, THUMB_SIZE), np.float32)
    for i, item in enumerate(loaded):
        images[i] = item.image
        thumbs[i] = item.thumbnail
    return ImageBatch(images, [item.original_size for item in loaded], thumbs,
                      [item.mask for item in loaded], [item.mask_pixels for item in loaded])


# --------------------------------------------------------------------------- the sample cache


def _cache_file(ds: Dataset) -> Path:
    from mribench import __version__

    key = (f"{CACHE_VERSION}|{__version__}|{type(ds).__module__}.{type(ds).__qualname__}|"
           f"{ds.fingerprint()}")
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:20]
    return cache_root() / "datasets" / f"{ds.name}-{ds.image_size}-{digest}.npz"


def _as_8bit(samples: Sequence[Sample], shape: tuple[int, ...]) -> np.ndarray | None:
    """The images as uint8 when every one is exactly k/255, else None."""
    out = np.empty((len(samples), *shape), np.uint8)
    for i, s in enumerate(samples):
        q = np.round(s.image * np.float32(255.0)).astype(np.uint8)
        if not np.array_equal(q.astype(np.float32) / np.float32(255.0), s.image):
            return None
        out[i] = q
    return out


def _save_samples(path: Path, samples: Sequence[Sample]) -> None:
    size = samples[0].image.shape if samples else (0, 0)
    stored = _as_8bit(samples, size)
    if stored is None:
        stored = np.stack([s.image for s in samples]).astype(np.float32)
    with_mask = [i for i, s in enumerate(samples) if s.mask is not None]
    masks = (np.packbits(np.stack([samples[i].mask for i in with_mask]), axis=-1)
             if with_mask else np.zeros((0, size[0], (size[1] + 7) // 8), np.uint8))
    meta = [{"id": s.id, "group": s.group, "label": int(s.label), "source": s.source,
             "original_size": list(s.original_size)} for s in samples]
    arrays = {"images": stored, "masks": masks, "with_mask": np.asarray(with_mask, np.int64),
              "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    _atomic_write(path, lambda handle: np.savez(handle, **arrays))


def _read_images(data: Any) -> np.ndarray:
    """The cached images as float32 (uint8 ones divided by 255), read from the archive in
    chunks of 4 M values into the one output array: neither the whole stored array nor a
    second float32 copy is held (same values as ``astype(float32) / 255``)."""
    fmt = np.lib.format
    with data.zip.open("images.npy") as handle:
        version = fmt.read_magic(handle)
        header = {(1, 0): fmt.read_array_header_1_0,
                  (2, 0): fmt.read_array_header_2_0}.get(version)
        shape, fortran, dtype = header(handle) if header else ((), True, None)
        if fortran or dtype is None or dtype.hasobject:
            stored = data["images"]  # an unusual layout: read it whole
            return (stored.astype(np.float32) / np.float32(255.0) if stored.dtype == np.uint8
                    else stored.astype(np.float32, copy=False))
        out = np.empty(shape, np.float32)
        flat = out.reshape(-1)
        step = 1 << 22
        for start in range(0, flat.size, step):
            count = min(step, flat.size - start)
            buffer = handle.read(count * dtype.itemsize)
            if len(buffer) != count * dtype.itemsize:
                raise ValueError("images.npy is truncated")
            flat[start:start + count] = np.frombuffer(buffer, dtype=dtype, count=count)
            if dtype == np.uint8:
                flat[start:start + count] /= np.float32(255.0)
    return out


def _load_samples(path: Path) -> list[Sample]:
    with np.load(path) as data:
        images = _read_images(data)
        width = images.shape[2] if images.ndim == 3 else 0
        # unpackbits gives 0/1 bytes: viewed as bool, not copied.
        masks = np.unpackbits(data["masks"], axis=-1, count=width).view(bool)
        with_mask = data["with_mask"].tolist()
        meta = json.loads(data["meta"].tobytes().decode())
    mask_of = dict(zip(with_mask, masks, strict=True))
    return [Sample(id=m["id"], group=m["group"], label=int(m["label"]), image=images[i],
                   mask=mask_of.get(i), source=m["source"],
                   original_size=tuple(m["original_size"]))  # type: ignore[arg-type]
            for i, m in enumerate(meta)]


def load_dataset(spec: str, data_dir: Path | str | None = None,
                 image_size: int = DEFAULT_IMAGE_SIZE, show_progress: bool = False, *,
                 use_cache: bool = True) -> tuple[Dataset, list[Sample]]:
    """Build the data set named by ``spec`` and return it with all its labelled samples.

    ``spec`` is ``name``, ``name[k=v,...]`` (options passed to the plugin, e.g.
    ``synthetic[n=200]``; ``image_size=`` there overrides ``image_size``) or ``folder:PATH``
    (optionally ``folder:PATH[positive=tumour,negative=healthy]``). Samples whose plugin left
    ``group`` empty get near-duplicate groups from their images' thumbnails. Cached on disk
    (see the module docstring) unless ``use_cache`` is False.
    """
    cls, overrides = get_dataset(spec)
    options = dict(overrides)
    spec_dir = options.pop("data_dir", None)
    size = options.pop("image_size", image_size)
    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= 4096:
        raise DataError(f"image size must be an integer in [8, 4096], got {size!r}")
    ds = cls(spec_dir if spec_dir is not None else data_dir, image_size=size,
             show_progress=show_progress, **options)
    cache_file = _cache_file(ds) if use_cache and getattr(cls, "cacheable", False) else None
    samples: list[Sample] | None = None
    if cache_file is not None and cache_file.is_file():
        try:
            samples = _load_samples(cache_file)
        except Exception as exc:  # a damaged cache entry is rebuilt, never fatal
            warnings.warn(f"ignoring damaged cache {cache_file}: {exc}", stacklevel=2)
    if samples is None:
        samples = ds.load()
        ungrouped = [s for s in samples if not s.group]
        if ungrouped:
            assign_groups(ungrouped)
        if cache_file is not None:
            try:
                _save_samples(cache_file, samples)
            except OSError as exc:
                warnings.warn(f"cannot write the data cache {cache_file}: {exc}", stacklevel=2)
    return ds, samples
