"""A feature cache shared by every method of a run: each feature of each image is computed once.

Features are keyed by a name (e.g. ``"glcm"``), a dict of parameters, and the sample id plus a
fingerprint of the image, so two methods asking for the same features with the same parameters
share one computation, and a resumed run reuses what an earlier one computed. A damaged
cache file (truncated by a crash or a full disk) is rebuilt with a warning on the
``mribench`` logger naming it, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mribench.api.types import Sample
from mribench.atomic import atomic_save_npz

_log = logging.getLogger("mribench")


def _image_key(sample: Sample) -> str:
    h = hashlib.blake2b(digest_size=8)
    h.update(sample.id.encode("utf-8", "surrogateescape"))  # ids from odd file names
    image = sample.image  # read once (a stored sample reads it from disk on each access)
    h.update(str(image.shape).encode())
    h.update(np.ascontiguousarray(image[::7, ::7]).tobytes())
    return h.hexdigest()


class FeatureCache:
    """In-memory cache of per-image feature vectors, persisted under ``folder`` when given."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self._memory: dict[str, dict[str, np.ndarray]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _table_key(name: str, params: dict[str, Any]) -> str:
        blob = json.dumps(params, sort_keys=True, default=str).encode()
        return f"{name}-{hashlib.sha256(blob).hexdigest()[:10]}"

    def _load_table(self, key: str) -> dict[str, np.ndarray]:
        if key in self._memory:
            return self._memory[key]
        table: dict[str, np.ndarray] = {}
        if self.folder is not None:
            path = self.folder / f"{key}.npz"
            if path.exists():
                try:
                    with np.load(path, allow_pickle=False) as data:
                        keys = data["keys"]
                        values = data["values"]
                    table = {str(k): v for k, v in zip(keys, values, strict=True)}
                except Exception as exc:  # a damaged entry is rebuilt, never fatal
                    _log.warning("feature cache %s is damaged (%s: %s); rebuilding it", path,
                                 type(exc).__name__, " ".join(str(exc).split())[:120])
                    table = {}
        self._memory[key] = table
        return table

    def features(self, name: str, params: dict[str, Any], samples: Sequence[Sample],
                 compute: Callable[[Sequence[Sample]], np.ndarray]) -> np.ndarray:
        """Return an (n, d) array of features for ``samples``, computing only missing rows.

        ``compute`` takes a list of samples and returns an (m, d) float array.
        """
        with self._lock:
            key = self._table_key(name, params)
            table = self._load_table(key)
            keys = [_image_key(s) for s in samples]
            missing = [i for i, k in enumerate(keys) if k not in table]
            self.hits += len(samples) - len(missing)
            self.misses += len(missing)
            if missing:
                new = np.asarray(compute([samples[i] for i in missing]), dtype=np.float64)
                if new.ndim != 2 or new.shape[0] != len(missing):
                    raise ValueError(f"feature function {name!r} returned shape {new.shape}")
                for i, row in zip(missing, new, strict=True):
                    table[keys[i]] = row
                if self.folder is not None:
                    self.folder.mkdir(parents=True, exist_ok=True)
                    all_keys = np.array(list(table.keys()))
                    all_values = np.stack(list(table.values()))
                    atomic_save_npz(self.folder / f"{key}.npz", keys=all_keys, values=all_values)
            return np.stack([table[k] for k in keys]) if keys else np.zeros((0, 0))
