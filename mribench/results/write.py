"""The one writer of the results folder (:mod:`mribench.results.read` is the one reader).

Layout of ``results/<run-id>/``::

    run.json                 command, versions, git revision, device, identity, seeds, status
    split.json               the manifest every job used (always a copy, so jobs need no repo)
    test_images.npz          a few test slices for the report's montage
    <row>/seed-<s>/          one job: one method (or variant row) fitted under one seed
        status.json          written last: a row whose status is "done" is complete
        metrics.json         {"method", "tasks": {...}} on the run's own test part
        per_case.json        one record per test image (label, pred, score, pixel counts)
        predictions.npz      ids, labels, scores, bit-packed masks
        history.json, log.txt, traceback.txt (on failure), checkpoints/, model/
        eval/<set>/          the same three files for each external evaluation set

Every file is written atomically (:mod:`mribench.atomic`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mribench.api.types import Prediction, Sample
from mribench.atomic import atomic_save_npz, atomic_write_json
from mribench.eval.metrics import evaluate

__all__ = ["now", "record_scores", "write_prediction", "write_status"]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_prediction(folder: Path, prediction: Prediction) -> None:
    """``predictions.npz``: ids, labels, scores, masks bit-packed along the last axis."""
    arrays: dict[str, np.ndarray] = {"ids": np.array(prediction.ids),
                                     "labels": prediction.labels}
    if prediction.scores is not None:
        arrays["scores"] = prediction.scores
    if prediction.masks is not None:
        arrays["masks"] = np.packbits(prediction.masks, axis=-1)
        arrays["mask_shape"] = np.array(prediction.masks.shape)
    atomic_save_npz(folder / "predictions.npz", **arrays)


def record_scores(folder: Path, row: str, prediction: Prediction, samples: Sequence[Sample],
                  tasks: Sequence[str], *, n_boot: int, seed: int) -> dict[str, Any]:
    """Score ``prediction`` on ``samples`` and write metrics, per-case records and predictions.

    Returns the metrics (the ``"tasks"`` value of ``metrics.json``).
    """
    metrics, per_case = evaluate(prediction, samples, list(tasks), n_boot=n_boot, seed=seed)
    write_prediction(folder, prediction)
    atomic_write_json(folder / "per_case.json", per_case)
    atomic_write_json(folder / "metrics.json", {"method": row, "tasks": metrics})
    return metrics


def write_status(folder: Path, status: str, **fields: Any) -> None:
    """``status.json``: the row's status (done, failed, skipped) and what describes it.

    Written last, so a folder whose status is ``done`` holds every file of the row.
    """
    atomic_write_json(folder / "status.json", {"status": status, "finished": now(), **fields})
