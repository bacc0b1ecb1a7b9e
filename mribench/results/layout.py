"""The layout of a results folder: the one module that knows where each file of a run lives.

``results/<run-id>/``::

    run.json                 command, versions, git revision, device, identity, seeds, status
    split.json               the manifest every job used (always a copy, so jobs need no repo)
    test_images.npz          a few test slices for the report's montage
    .lock                    the pid of the driver writing the run
    .cache/features/         features shared by the run's jobs
    .submitit/               submitit's scripts and logs (``--executor slurm``)
    report/                  the report (``index.html``, ``report.md``, ``figures/``) by default
    folds.json               with ``--folds K``: the K folds (train/val/test ids), hashed;
                             each fold's manifest is ``split-fold-<k>.json``
    <row>/seed-<s>/          one job (:class:`JobKey`): one row fitted under one seed
    <row>/fold-<k>/seed-<s>/ with ``--folds K``: one row, one fold, one seed
        status.json          written last: a job whose status is "done" is complete
        metrics.json         {"method", "tasks": {...}} on the run's own test part
        per_case.json        one record per test image (label, pred, score, pixel counts)
        predictions.npz      ids, labels, scores, bit-packed masks
        history.json, log.txt, traceback.txt (on failure), checkpoints/, model/
        .scratch/            the job's prediction stacks while it runs (disk-backed masks and
                             maps, ``Context.prediction_stack``): emptied once the scores of
                             each evaluation set are written, and when the job ends or fails
        eval/<set>/          metrics, per-case records and predictions on each external set
        eval/<set>~<artefact>@<severity>/
                             the same on a set corrupted by an artefact (``--corrupt``):
                             ``test~bias@3`` is the test part under bias field, severity 3
    .cache/artefacts/<set>~<artefact>@<severity>-<ids>/
                             the corrupted images of a set, made once for every job

With several data sets (``--dataset a,b``) each has its own folder ``<run>/<data set>/`` laid
out as above from ``split.json`` down (:meth:`RunLayout.for_dataset`); ``run.json``, the lock
and the report stay at the run's root. A new axis of a run is a field of :class:`JobKey` and a
level of :meth:`JobKey.parts` (the fold), or a scope of the layout (the data set): nothing else
builds these paths. :mod:`mribench.results.write` is the one
writer and :mod:`mribench.results.read` the one reader; both ask this module for paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["IN_DISTRIBUTION", "JobKey", "RunLayout", "corrupted_set", "parse_corrupted_set"]

#: The evaluation set that is the run's own test part.
IN_DISTRIBUTION = "test"

RUN_FILE = "run.json"
SPLIT_FILE = "split.json"
TEST_IMAGES_FILE = "test_images.npz"
LOCK_FILE = ".lock"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.json"
PER_CASE_FILE = "per_case.json"
PREDICTIONS_FILE = "predictions.npz"
HISTORY_FILE = "history.json"
LOG_FILE = "log.txt"
TRACEBACK_FILE = "traceback.txt"
MODEL_DIR = "model"
SCRATCH_DIR = ".scratch"
EVAL_DIR = "eval"
REPORT_DIR = "report"
_SEED_PREFIX = "seed-"
#: Joins an evaluation set's name to its artefact, and the artefact to its severity.
_CORRUPTED, _SEVERITY = "~", "@"
_FOLD_PREFIX = "fold-"
FOLDS_FILE = "folds.json"


@dataclass(frozen=True, order=True)
class JobKey:
    """Which job: a row (a method with its params, or a variant row such as ``unet+crf``)
    under one seed."""

    row: str
    seed: int
    #: The cross-validation fold (``--folds``), None for a single split.
    fold: int | None = None

    def parts(self) -> tuple[str, ...]:
        """The folder levels of the job below the run (or data-set) folder."""
        fold = () if self.fold is None else (f"{_FOLD_PREFIX}{self.fold}",)
        return (self.row, *fold, f"{_SEED_PREFIX}{self.seed}")

    @property
    def text(self) -> str:
        """``<row>/seed-<s>``: how the job is named in records and messages."""
        return "/".join(self.parts())

    def variant(self, name: str) -> JobKey:
        """The key of this job's variant row ``<row>+<name>`` (written by the same job)."""
        return JobKey(f"{self.row}+{name}", self.seed, self.fold)


def corrupted_set(eval_set: str, artefact: str, severity: int) -> str:
    """The name of ``eval_set`` corrupted by ``artefact`` at ``severity``:
    ``test~bias@3``."""
    return f"{eval_set}{_CORRUPTED}{artefact}{_SEVERITY}{int(severity)}"


def parse_corrupted_set(name: str) -> tuple[str, str, int] | None:
    """``(eval set, artefact, severity)`` of a corrupted set's name, None for a clean set."""
    base, sep, rest = str(name).rpartition(_CORRUPTED)
    artefact, at, severity = rest.partition(_SEVERITY)
    if not (sep and at and base and artefact) or not severity.isdigit():
        return None
    return base, artefact, int(severity)


def _number(name: str, prefix: str) -> int | None:
    if not name.startswith(prefix):
        return None
    try:
        return int(name.removeprefix(prefix))
    except ValueError:
        return None


def seed_of(folder: Path) -> int | None:
    """The seed of a ``seed-<s>`` folder, or None when the name is not one."""
    return _number(Path(folder).name, _SEED_PREFIX)


def is_row_name(name: str) -> bool:
    """A row name is a plain folder name inside the run (never ``..``, a path or hidden)."""
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..") \
        and not name.startswith(".")


@dataclass(frozen=True)
class RunLayout:
    """Paths of one results folder, or of one data set's part of it (``dataset``)."""

    root: Path
    #: The data set this view is scoped to in a run of several (None: the run's only one).
    dataset: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def for_dataset(self, name: str | None) -> RunLayout:
        """The view of data set ``name`` (itself for None)."""
        return RunLayout(self.root, name)

    @property
    def base(self) -> Path:
        """Where this view's rows and split live (the run folder, or its data set's)."""
        return self.root if self.dataset is None else self.root / self.dataset

    @property
    def datasets_of_run(self) -> list[str]:
        """Data-set folders of a run of several (those holding a split), sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and is_row_name(p.name)
                      and ((p / SPLIT_FILE).is_file() or (p / FOLDS_FILE).is_file()))

    # ---------------------------------------------------------------- the run's own files
    @property
    def run_file(self) -> Path:
        return self.root / RUN_FILE

    @property
    def split_file(self) -> Path:
        return self.base / SPLIT_FILE

    def split_file_for(self, fold: int | None) -> Path:
        """The manifest a job of ``fold`` reads (``split.json`` without folds)."""
        return self.split_file if fold is None else self.base / f"split-{_FOLD_PREFIX}{fold}.json"

    @property
    def folds_file(self) -> Path:
        return self.base / FOLDS_FILE

    @property
    def test_images_file(self) -> Path:
        return self.base / TEST_IMAGES_FILE

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def feature_cache_dir(self) -> Path:
        """Features shared by the jobs of one data set (ids of two data sets may coincide)."""
        return self.base / ".cache" / "features"

    def corrupted_cache_dir(self, eval_set: str, ids: str) -> Path:
        """Where the corrupted images of ``eval_set`` (a :func:`corrupted_set` name) live
        for the samples whose ids digest to ``ids`` (a fold's test part has its own)."""
        return self.base / ".cache" / "artefacts" / f"{eval_set}-{ids}"

    @property
    def submitit_dir(self) -> Path:
        return self.root / ".submitit"

    @property
    def report_dir(self) -> Path:
        return self.root / REPORT_DIR

    # ---------------------------------------------------------------- rows and jobs
    def row_dir(self, row: str) -> Path:
        return self.base / row

    def job_dir(self, key: JobKey) -> Path:
        return self.base.joinpath(*key.parts())

    def scores_dir(self, key: JobKey, eval_set: str = IN_DISTRIBUTION) -> Path:
        """Where a job's scores on ``eval_set`` live (the job folder for its own test part)."""
        folder = self.job_dir(key)
        return folder if eval_set == IN_DISTRIBUTION else folder / EVAL_DIR / eval_set

    def status_file(self, key: JobKey) -> Path:
        return self.job_dir(key) / STATUS_FILE

    def history_file(self, key: JobKey) -> Path:
        return self.job_dir(key) / HISTORY_FILE

    def log_file(self, key: JobKey) -> Path:
        return self.job_dir(key) / LOG_FILE

    def traceback_file(self, key: JobKey) -> Path:
        return self.job_dir(key) / TRACEBACK_FILE

    def model_dir(self, key: JobKey) -> Path:
        return self.job_dir(key) / MODEL_DIR

    def scratch_dir(self, key: JobKey) -> Path:
        """The job's scratch folder (``Context.scratch``: its disk-backed prediction stacks,
        removed by the runner once scored; never a result)."""
        return self.job_dir(key) / SCRATCH_DIR

    def seeds_of(self, row: str) -> dict[int, Path]:
        """``{seed: job folder}`` of a row, by seed (only folders that exist; without folds)."""
        return seed_folders(self.row_dir(row))

    def jobs_of(self, row: str) -> list[JobKey]:
        """The jobs a row's folder holds (every fold and seed), sorted."""
        row_dir = self.row_dir(row)
        keys = [JobKey(row, seed) for seed in seed_folders(row_dir)]
        if row_dir.is_dir():
            for p in row_dir.iterdir():
                fold = _number(p.name, _FOLD_PREFIX)
                if p.is_dir() and fold is not None:
                    keys += [JobKey(row, seed, fold) for seed in seed_folders(p)]
        return sorted(keys, key=lambda k: (k.fold if k.fold is not None else -1, k.seed))

    def row_names(self) -> list[str]:
        """Folders of this view that hold a row (a job folder inside), sorted."""
        if not self.base.is_dir():
            return []
        return sorted(p.name for p in self.base.iterdir()
                      if p.is_dir() and is_row_name(p.name) and self.jobs_of(p.name))


def seed_folders(row_dir: Path) -> dict[int, Path]:
    """``{seed: <row>/seed-<seed>}`` of a row folder, by seed."""
    found = {}
    row_dir = Path(row_dir)
    if row_dir.is_dir():
        for p in row_dir.iterdir():
            seed = seed_of(p)
            if p.is_dir() and seed is not None:
                found[seed] = p
    return dict(sorted(found.items()))


def job_of(folder: Path) -> tuple[RunLayout, JobKey] | None:
    """The layout and job of a job folder (``<run>/<row>/seed-<s>``, with ``fold-<k>`` and a
    data-set level where the run has them), or None when it is not one."""
    folder = Path(folder)
    seed = seed_of(folder)
    if seed is None:
        return None
    fold = _number(folder.parent.name, _FOLD_PREFIX)
    row_dir = folder.parent if fold is None else folder.parent.parent
    base = row_dir.parent
    layout = RunLayout(base)
    if not (base / RUN_FILE).is_file() and (base.parent / RUN_FILE).is_file():
        layout = RunLayout(base.parent, base.name)
    return layout, JobKey(row_dir.name, seed, fold)
