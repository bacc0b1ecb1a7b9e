"""Patient-level K-fold cross-validation: K splits whose test parts cover every sample once.

:func:`make_folds` cuts the labelled samples into ``k`` stratified, grouped folds
(scikit-learn's ``StratifiedGroupKFold``, shuffled with the seed): no cluster (a patient on LGG,
a case on BraTS, a near-duplicate group on Br35H, a folder's groups) is in two folds. Fold
``i`` is a regular :class:`~mribench.split.manifest.Manifest` whose test part is fold ``i``; its
validation part is carved from the other folds, grouped and stratified too (about
``val_fraction`` of them), and the rest trains. So every labelled sample is predicted exactly
once per seed out of fold (:func:`check_folds` refuses manifests that predict one twice or
never), and nnU-Net's / Buda et al.'s protocol can be reproduced.

The folds are saved together as one manifest file (:func:`folds_record`: a list of
``{train, val, test}`` with the seed and K, and its SHA-256, recorded in ``run.json``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from mribench.api.errors import DataError
from mribench.api.types import Sample
from mribench.split.manifest import Manifest, audit

__all__ = ["MAX_FOLDS", "check_folds", "folds_record", "folds_sha256", "make_folds"]

#: Most folds a run may ask for.
MAX_FOLDS = 20
#: Share of each fold's training part kept for validation (model selection).
VAL_FRACTION = 0.15


def _grouped(samples: Sequence[Sample]) -> tuple[list[Sample], np.ndarray, np.ndarray]:
    labelled = [s for s in samples if s.label in (0, 1)]
    labels = np.array([s.label for s in labelled], dtype=np.int64)
    _, groups = np.unique([s.group or s.id for s in labelled], return_inverse=True)
    return labelled, labels, groups


def _check_request(name: str, labels: np.ndarray, groups: np.ndarray, k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= MAX_FOLDS:
        raise DataError(f"--folds must be an integer from 2 to {MAX_FOLDS}, got {k!r}")
    n_groups = int(groups.max()) + 1 if groups.size else 0
    if n_groups < 2:
        raise DataError(f"{name}: cannot cross-validate {n_groups} patient/group(s); folds "
                        "need at least 2 (and at least --folds) independent groups")
    if n_groups < k:
        raise DataError(f"{name}: --folds {k} needs at least {k} patients/groups, the data "
                        f"set has {n_groups}; use --folds {n_groups} or fewer")
    if len(np.unique(labels)) < 2:
        raise DataError(f"{name}: every labelled sample has label {int(labels[0])}; folds "
                        "need both classes")


def _split_off(indices: np.ndarray, labels: np.ndarray, groups: np.ndarray, parts: int,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held) of ``indices``: ``held`` is one grouped, stratified ``1/parts`` of them."""
    from sklearn.model_selection import StratifiedGroupKFold

    sub_groups = groups[indices]
    parts = min(parts, len(np.unique(sub_groups)))
    if parts < 2:
        return indices, indices[:0]
    cv = StratifiedGroupKFold(n_splits=parts, shuffle=True, random_state=seed)
    rest, held = next(cv.split(indices, labels[indices], sub_groups))
    return indices[rest], indices[held]


def make_folds(dataset_name: str, samples: Sequence[Sample], k: int, seed: int = 0, *,
               threshold: float = 0.0, options: dict[str, Any] | None = None,
               val_fraction: float = VAL_FRACTION) -> list[Manifest]:
    """``k`` manifests, fold ``i`` testing on the ``i``-th grouped, stratified fold.

    Raises a one-line DataError for folds that cannot be made: K outside [2, 20], fewer
    groups (patients) than K, one group, one class.
    """
    labelled, labels, groups = _grouped(samples)
    _check_request(dataset_name, labels, groups, k)
    from sklearn.model_selection import StratifiedGroupKFold

    ids = np.array([s.id for s in labelled])
    outer = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = []
    for i, (rest, test) in enumerate(outer.split(ids, labels, groups)):
        train, val = _split_off(rest, labels, groups, max(2, round(1 / val_fraction)),
                                seed + 1 + i)
        manifest = Manifest(
            dataset=dataset_name, strategy=f"fold-{i}-of-{k}", seed=int(seed),
            threshold=float(threshold), train=tuple(sorted(ids[train])),
            val=tuple(sorted(ids[val])), test=tuple(sorted(ids[test])),
            options=dict(options or {}),
            notes=f"patient-level {k}-fold cross-validation, fold {i} (stratified, grouped)")
        folds.append(replace(manifest, stats=audit(manifest, samples)))
    check_folds(folds, [s.id for s in labelled], dataset_name)
    return folds


def check_folds(folds: Sequence[Manifest], labelled_ids: Sequence[str], name: str) -> None:
    """Every labelled sample is in exactly one fold's test part; no fold's parts share a
    sample; no group straddles a fold's parts (the manifests' audits)."""
    seen: dict[str, int] = {}
    for i, fold in enumerate(folds):
        for sid in fold.test:
            if sid in seen:
                raise DataError(f"{name}: folds {seen[sid]} and {i} both test {sid!r}; a "
                                "sample must be predicted exactly once out of fold")
            seen[sid] = i
    missing = sorted(set(labelled_ids) - set(seen))
    if missing:
        raise DataError(f"{name}: {len(missing)} labelled sample(s) are in no fold's test part "
                        f"(e.g. {missing[0]!r}); every sample must be predicted once")


def folds_record(folds: Sequence[Manifest]) -> dict[str, Any]:
    """The folds as one JSON record: K, seed, and each fold's ``{train, val, test}``."""
    first = folds[0]
    return {"dataset": first.dataset, "k": len(folds), "seed": first.seed,
            "folds": [{"train": list(f.train), "val": list(f.val), "test": list(f.test)}
                      for f in folds],
            "sha256": folds_sha256(folds)}


def folds_sha256(folds: Sequence[Manifest]) -> str:
    """SHA-256 of the folds' canonical content (every fold's hashed fields, in order)."""
    text = json.dumps([json.loads(f.canonical()) for f in folds], sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
