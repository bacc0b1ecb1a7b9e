"""Load a data set from its ``--dataset`` spec, fast: parallel decoding and an on-disk cache.

``load_dataset("br35h")`` finds the files (:func:`find_data_dir`), decodes and resizes every
image in two threads (:func:`read_images`), sets near-duplicate groups, and writes the result
to the cache folder, so the next load with the same files and image size reads a small index
instead of decoding 3,000 JPEGs.

Cache: ``$MRIBENCH_CACHE`` or ``~/.cache/mribench``; loaded data sets go to ``datasets/`` in
it, keyed by :data:`CACHE_VERSION`, mribench's version, the plugin class and
``Dataset.fingerprint()`` (for files: names, sizes and modification times, plus the image size
and options). Only plugins with a true ``cacheable`` class attribute are cached. Each entry is
a :mod:`mribench.data.store` folder: images as uint8 when every image is exactly k/255 (8-bit
sources), else float32, masks bit-packed, so a cached load returns the same arrays as a fresh
one. The samples returned from the cache are *stored* samples: their pixels stay on disk and
are read on each access, so a run holds only the slices a method is working on, and a data
set whose plugin yields its samples one by one (:meth:`Dataset.iter_load`, e.g.
``synthetic[n=50000]``) is written as it is made, never held whole. Old entries are not
evicted; delete the folder to reclaim the space.

Data folders (:func:`find_data_dir`): ``--data-dir``, then ``$MRIBENCH_DATA`` (the data set's
folder itself or a parent holding it), then ``<cache>/data/<name>``.
"""

from __future__ import annotations

import contextvars
import hashlib
import os
import shutil
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mribench.api.dataset import Dataset
from mribench.api.errors import DataError
from mribench.api.params import Constraint
from mribench.api.specs import DatasetSpec, check_image_size, get_dataset, resolve_image_size
from mribench.api.types import Sample
from mribench.data.duplicates import assign_groups, group_names, thumbnail
from mribench.data.imageio import THUMB_SIZE, ImageBatch, LoadedImage, load_image
from mribench.data.store import SampleStore, StoreWriter
from mribench.data.threads import thread_map

#: Bump when the loaders' output changes, to invalidate every cached data set.
CACHE_VERSION = 2
ENV_CACHE = "MRIBENCH_CACHE"
ENV_DATA = "MRIBENCH_DATA"

__all__ = ["CACHE_VERSION", "ImageBatch", "cache_root", "files_fingerprint", "find_data_dir",
           "load_dataset", "read_images", "resolve_options"]


def cache_root() -> Path:
    """``$MRIBENCH_CACHE``, else ``~/.cache/mribench``."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mribench"


#: How the folder a data set reads was named, for messages: ``--data-dir `` by default,
#: ``lgg:`` when the spec itself held the path (``lgg:PATH``), so an error never blames an
#: option the user did not pass.
_DATA_DIR_OPTION: contextvars.ContextVar[str] = contextvars.ContextVar("data_dir_option",
                                                                       default="--data-dir ")


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
        raise DataError(f"{_DATA_DIR_OPTION.get()}{base}: no {name} data there; {how_to_get}")
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
        # Each decoded image is copied into the one output array as it arrives and dropped:
        # the images are never held twice.
        n = len(tasks)
        images = np.empty((n, size, size), np.float32)
        thumbs = np.empty((n, THUMB_SIZE, THUMB_SIZE), np.float32)
        sizes, masks_out, pixels = [], [], []
        for i, item in enumerate(results):
            images[i] = item.image
            thumbs[i] = item.thumbnail
            sizes.append(item.original_size)
            masks_out.append(item.mask)
            pixels.append(item.mask_pixels)
    return ImageBatch(images, sizes, thumbs, masks_out, pixels)


# --------------------------------------------------------------------------- the sample cache


def _cache_folder(ds: Dataset) -> Path:
    from mribench import __version__

    key = (f"{CACHE_VERSION}|{__version__}|{type(ds).__module__}.{type(ds).__qualname__}|"
           f"{ds.fingerprint()}")
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:20]
    return cache_root() / "datasets" / f"{ds.name}-{ds.image_size}-{digest}"


def _with_groups(samples: list[Sample]) -> list[Sample]:
    """Give the samples their plugin left ungrouped near-duplicate groups (in place)."""
    ungrouped = [s for s in samples if not s.group]
    if ungrouped:
        assign_groups(ungrouped)
    return samples


class _CacheUnwritable(Exception):
    """Writing the data cache failed (full disk, read-only folder): not the data's fault."""


def _write_cache(folder: Path, samples: Iterable[Sample]) -> list[Sample]:
    """Stream ``samples`` into a store at ``folder``; the stored samples, grouped.

    An OSError of the cache itself becomes :class:`_CacheUnwritable`; one of the data set's own
    files (raised while iterating ``samples``) propagates as it is."""
    try:
        writer = StoreWriter(folder)
    except OSError as exc:
        raise _CacheUnwritable(exc) from exc
    try:
        ungrouped: list[tuple[int, str, np.ndarray]] = []
        for sample in samples:
            if not sample.group:
                ungrouped.append((len(writer.records), sample.id, thumbnail(sample.image)))
            try:
                writer.add(sample)
            except OSError as exc:
                raise _CacheUnwritable(exc) from exc
        if ungrouped:
            names = group_names([sid for _, sid, _ in ungrouped],
                                np.stack([t for _, _, t in ungrouped]))
            writer.set_groups([(i, g) for (i, _, _), g in zip(ungrouped, names, strict=True)])
        try:
            return writer.close().samples()
        except OSError as exc:
            raise _CacheUnwritable(exc) from exc
    except BaseException:
        writer.abort()
        raise


def _harmonise_option(value: Any, spec: str) -> bool:
    if not isinstance(value, bool):
        raise DataError(f"{spec}: option 'harmonise' must be true or false, got {value!r}")
    return value


def load_dataset(spec: str | DatasetSpec, data_dir: Path | str | None = None,
                 image_size: int | None = None, show_progress: bool = False, *,
                 use_cache: bool = True) -> tuple[Dataset, list[Sample]]:
    """Build the data set named by ``spec`` and return it with all its labelled samples.

    ``spec`` is a :class:`~mribench.api.specs.DatasetSpec` or its text: ``name``,
    ``name[k=v,...]`` (options passed to the plugin, e.g. ``synthetic[n=200]``) or
    ``folder:PATH`` (optionally ``folder:PATH[positive=tumour,negative=healthy]``). The image
    size follows :func:`~mribench.api.specs.resolve_image_size` (the spec's ``image_size=``,
    else ``image_size``, else 256). Samples whose plugin left ``group`` empty get
    near-duplicate groups from their images' thumbnails. Cached on disk (see the module
    docstring) unless ``use_cache`` is False.
    """
    parsed = DatasetSpec.parse(spec)
    cls, options = get_dataset(parsed)
    options.pop("image_size", None)
    spec_dir = options.pop("data_dir", None)
    if image_size is not None:
        image_size = check_image_size(image_size)
    size = resolve_image_size(parsed.image_size, image_size, parsed.text)
    # harmonise=true: the plugin's own where it has one (br35h), else the generic transform
    harmonised = "harmonise" not in getattr(cls, "defaults", {}) and _harmonise_option(
        options.pop("harmonise", False), parsed.text)
    token = _DATA_DIR_OPTION.set(f"{parsed.name}:" if spec_dir is not None else "--data-dir ")
    try:
        ds = cls(spec_dir if spec_dir is not None else data_dir, image_size=size,
                 show_progress=show_progress, **options)
    finally:
        _DATA_DIR_OPTION.reset(token)
    if harmonised:
        from mribench.data.harmonised import HarmonisedDataset

        ds = HarmonisedDataset(ds)
        cls = type(ds)
    folder = _cache_folder(ds) if use_cache and getattr(cls, "cacheable", False) else None
    if folder is None:
        return ds, _with_groups(list(ds.load()))
    if folder.exists():
        try:
            return ds, SampleStore(folder).samples()
        except Exception as exc:  # a damaged cache entry is rebuilt, never fatal
            warnings.warn(f"ignoring damaged cache {folder}: {exc}", stacklevel=2)
            shutil.rmtree(folder, ignore_errors=True)
    try:
        return ds, _write_cache(folder, ds.iter_load())
    except _CacheUnwritable as exc:  # a full disk or a read-only cache: load again, in memory
        warnings.warn(f"cannot write the data cache {folder}: {exc.__cause__}", stacklevel=2)
        return ds, _with_groups(list(ds.load()))
