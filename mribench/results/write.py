"""The one writer of the results folder (:mod:`mribench.results.read` is the one reader).

Where each file goes is :mod:`mribench.results.layout`'s business; this module writes them,
every file atomically (:mod:`mribench.atomic`), and scores nothing: the run layer scores
(:func:`mribench.eval.metrics.evaluate`) and hands the metrics here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mribench.api.stack import chunks, read_rows
from mribench.api.types import Prediction
from mribench.atomic import ArrayChunks, atomic_save_npz, atomic_write_json, atomic_write_text
from mribench.results.layout import (
    IN_DISTRIBUTION,
    METRICS_FILE,
    PER_CASE_FILE,
    PREDICTIONS_FILE,
    JobKey,
    RunLayout,
)

__all__ = ["RunWriter", "now", "write_prediction"]

#: The empty file :meth:`RunWriter.prepare` writes and removes to probe a new folder.
_PROBE = ".write-test"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_prediction(folder: Path, prediction: Prediction) -> None:
    """``predictions.npz``: ids, labels, scores, masks bit-packed along the last axis.

    The masks (possibly a disk-backed stack, :mod:`mribench.api.stack`) are packed and
    written :data:`~mribench.api.stack.CHUNK` slices at a time, so neither they nor their
    packed bits are ever whole in memory; the file holds what packing the whole stack gives.
    """
    arrays: dict[str, np.ndarray | ArrayChunks] = {"ids": np.array(prediction.ids),
                                                   "labels": prediction.labels}
    if prediction.scores is not None:
        arrays["scores"] = prediction.scores
    masks = prediction.masks
    if masks is not None:
        packed = (*masks.shape[:-1], (masks.shape[-1] + 7) // 8)
        arrays["masks"] = ArrayChunks(packed, np.uint8, (
            np.packbits(read_rows(masks, part), axis=-1) for part in chunks(len(masks))))
        arrays["mask_shape"] = np.array(masks.shape)
    atomic_save_npz(folder / PREDICTIONS_FILE, **arrays)


class RunWriter:
    """Writes one results folder (``layout``)."""

    def __init__(self, layout: RunLayout | Path | str) -> None:
        self.layout = layout if isinstance(layout, RunLayout) else RunLayout(Path(layout))

    # ---------------------------------------------------------------- the run
    def write_run(self, info: dict[str, Any]) -> None:
        """``run.json``."""
        atomic_write_json(self.layout.run_file, info)

    def write_run_failed(self, info: dict[str, Any]) -> None:
        """Best effort: ``run.json`` marked failed; never raises (a full disk may refuse even
        this: a tiny in-place write may still fit where a temp file did not)."""
        try:
            self.write_run(info)
        except OSError:
            try:
                atomic_write_text(self.layout.run_file, '{"status": "failed"}\n')
            except OSError:
                pass

    def write_split(self, manifest: Any, fold: int | None = None) -> None:
        """``split.json`` (or fold ``fold``'s manifest): the manifest the jobs read."""
        from mribench.split.manifest import save_manifest

        self.layout.base.mkdir(parents=True, exist_ok=True)
        save_manifest(manifest, self.layout.split_file_for(fold))

    def write_folds(self, record: dict[str, Any]) -> None:
        """``folds.json``: every fold's train/val/test ids and their hash."""
        atomic_write_json(self.layout.folds_file, record)

    def write_test_images(self, ids: Sequence[str], images: np.ndarray, masks: np.ndarray,
                          labels: Sequence[int], **extra: np.ndarray) -> None:
        """``test_images.npz``: a few test slices for the report's montage."""
        self.layout.base.mkdir(parents=True, exist_ok=True)
        atomic_save_npz(self.layout.test_images_file, ids=np.array(list(ids)),
                        images=images.astype(np.float16), masks=masks,
                        labels=np.array(list(labels)), **extra)

    # ---------------------------------------------------------------- one job
    def job_dir(self, key: JobKey) -> Path:
        """The job's folder, made if missing."""
        folder = self.layout.job_dir(key)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def start_job(self, key: JobKey) -> Path:
        """Make the job's folder and clear a traceback left by an earlier try."""
        folder = self.job_dir(key)
        self.layout.traceback_file(key).unlink(missing_ok=True)
        return folder

    def write_scores(self, key: JobKey, row: str, metrics: dict[str, Any],
                     per_case: list[dict[str, Any]], prediction: Prediction,
                     eval_set: str = IN_DISTRIBUTION) -> None:
        """A job's scores on one evaluation set: predictions, per-case records, metrics."""
        folder = self.layout.scores_dir(key, eval_set)
        folder.mkdir(parents=True, exist_ok=True)
        write_prediction(folder, prediction)
        atomic_write_json(folder / PER_CASE_FILE, per_case)
        atomic_write_json(folder / METRICS_FILE, {"method": row, "tasks": metrics})

    def write_history(self, key: JobKey, history: list[dict[str, Any]]) -> None:
        atomic_write_json(self.layout.history_file(key), history)

    def write_traceback(self, key: JobKey, text: str) -> None:
        atomic_write_text(self.layout.traceback_file(key), text)

    def write_log(self, key: JobKey, text: str) -> None:
        atomic_write_text(self.layout.log_file(key), text)

    def write_status(self, key: JobKey, status: str, **fields: Any) -> None:
        """``status.json``: the job's status (done, failed, skipped) and what describes it.

        Written last, so a folder whose status is ``done`` holds every file of the job.
        """
        self.job_dir(key)
        atomic_write_json(self.layout.status_file(key),
                          {"status": status, "finished": now(), **fields})

    # ---------------------------------------------------------------- the folder itself
    def prepare(self, resume: bool) -> dict[str, Any]:
        """Check the folder before anything trains; returns the previous run.json or {}.

        New or empty: fine (made, and probed for writing). Holding a run: needs ``resume``.
        Anything else (an unrelated, non-empty folder): refused, so results are never mixed
        into other files.
        """
        from mribench.api.errors import MribenchError
        from mribench.atomic import read_json

        root, run_file = self.layout.root, self.layout.run_file
        if root.exists() and not root.is_dir():
            raise MribenchError(f"--out {root} is a file; give a folder")
        if run_file.is_file():
            if not resume:
                raise MribenchError(f"{root} already holds a run; pass --resume to continue "
                                    f"it or --out NEW_FOLDER for a new one")
            try:
                previous = read_json(run_file)
            except (OSError, ValueError) as exc:
                raise MribenchError(f"{run_file} is damaged ({exc}); use --out NEW_FOLDER"
                                    ) from exc
            if not isinstance(previous, dict):
                raise MribenchError(f"{run_file} is not a run record; use --out NEW_FOLDER")
            return previous
        if root.is_dir() and not all(_left_by_a_start(p.name, self.layout) for p in
                                     root.iterdir()):
            raise MribenchError(f"--out {root} is not empty and holds no run; give a new or "
                                "empty folder")
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = root / _PROBE
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise writable_error(root, exc) from None
        return {}


def _left_by_a_start(name: str, layout: RunLayout) -> bool:
    """Whether a file of that name is what a driver killed before ``run.json`` may leave in
    a new folder (its lock, the write probe, a half-written file's temporary)."""
    return name in (layout.lock_file.name, _PROBE) or (name.startswith(".") and
                                                     name.endswith(".tmp"))


def writable_error(path: Path, exc: OSError) -> Exception:
    """The one-line error for a results folder that cannot be written."""
    import errno

    from mribench.api.errors import MribenchError

    reason = exc.strerror or str(exc)
    fix = ("free some space, then rerun with --resume" if exc.errno == errno.ENOSPC else
           "choose a folder you can write with --out")
    return MribenchError(f"cannot write {path} ({reason}); {fix}")
