"""A run is a set of jobs; a job is one method, with its params, fitted once under one seed.

A :class:`Job` names everything it needs to run anywhere (a local process, a dask worker, a
SLURM array task): the method and its params, the seed, the training data set and its split
(read from the run folder's ``split.json``), the evaluation sets and where to write. It holds
no images: a worker loads the data from the shared data cache.

Folders are keyed by the job's :class:`~mribench.results.layout.JobKey` (where they live is
:mod:`mribench.results.layout`'s business): ``row`` is the method's name, or ``name[k=v,...]``
when the run holds the same method with several parameter sets (so ``glcm-knn[levels=8]`` and
``glcm-knn[levels=64]`` are two rows, not one overwriting the other). A method's variants
(``two-pathway-cnn+crf``) are rows of their own, written by the same job.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mribench.api import registry
from mribench.api.errors import MribenchError
from mribench.api.method import Method
from mribench.api.specs import NO_SKILL, DatasetSpec
from mribench.results.layout import JobKey, RunLayout
from mribench.run.config import RunConfig


@dataclass(frozen=True)
class EvalSet:
    """An external evaluation set: a data-set spec, scored on all labelled samples or on the
    test part of the manifest ``split``."""

    name: str
    spec: DatasetSpec
    split: str | None = None


@dataclass(frozen=True)
class Job:
    """One method, one param set, one seed: fit on train (+val), score on test and eval sets."""

    row: str
    method: str
    overrides: tuple[tuple[str, Any], ...]
    seed: int
    run_dir: Path
    dataset: DatasetSpec
    data_dir: str | None
    image_size: int
    profile: str
    task: str | None
    device: str
    n_boot: int
    eval_sets: tuple[EvalSet, ...] = ()
    #: BLAS/OpenMP and torch threads the job computes with (part of the run's identity).
    threads: int = 1
    #: The CPU kernels the job computes with (:mod:`mribench.cpu_kernels`; part of the identity).
    cpu_kernels: str = "portable"
    #: The data set's folder in a run of several (None: the run's only data set).
    dataset_name: str | None = None
    #: The cross-validation fold (None: the run's single split).
    fold: int | None = None
    #: Artefacts (``--corrupt``) each evaluation set is also scored under, at ``severities``.
    corrupt: tuple[str, ...] = ()
    severities: tuple[int, ...] = ()
    show_progress: bool = False
    #: Whether the device is checked on the worker (remote executors) rather than the driver.
    resolve_on_worker: bool = False
    #: The plugin class; None means "look it up in the registry by ``method``".
    method_cls: type[Method] | None = field(default=None, compare=False)
    #: The run's lease (its lock's token, :mod:`mribench.results.lock`): the job writes its
    #: final files only while the lock still holds it; None: no check (a job run on its own).
    lease: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dataset", DatasetSpec.parse(self.dataset))

    @property
    def key(self) -> JobKey:
        return JobKey(self.row, self.seed, self.fold)

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.run_dir, self.dataset_name)

    @property
    def folder(self) -> Path:
        return self.layout.job_dir(self.key)

    def build(self) -> Method:
        cls = self.method_cls or registry.get_method(self.method)
        return cls(profile=self.profile, **dict(self.overrides))


def plan_methods(config: RunConfig) -> list[tuple[str, Method]]:
    """(row name, method) for every method asked for, each constructed (params validated)
    before any training; rows of the same method with other params get ``name[k=v]``."""
    plan: list[tuple[str, dict[str, Any], Method]] = []
    for spec in config.methods:
        name, overrides = spec.name, spec.override_dict
        cls = registry.get_method(name)
        if config.task and config.task not in cls.tasks:
            if config.all_methods:
                continue
            raise MribenchError(f"method {name!r} does not answer task {config.task!r} "
                                f"(it answers {', '.join(cls.tasks)})")
        plan.append((name, overrides, cls(profile=config.profile, **overrides)))
    if not plan:
        raise MribenchError(f"no method answers task {config.task!r}; see `bench list`")
    if config.baselines:
        plan += _no_skill_rows(config, {name for name, _, _ in plan},
                               {t for _, _, m in plan for t in m.tasks})
    counts = Counter(name for name, _, _ in plan)
    rows: list[tuple[str, Method]] = []
    for name, overrides, method in plan:
        row = _row_name(name, overrides) if counts[name] > 1 else name
        rows.append((row, method))
    duplicated = [r for r, n in Counter(r for r, _ in rows).items() if n > 1]
    if duplicated:
        raise MribenchError(f"--method names {duplicated[0]!r} twice; list each method "
                            "(with its params) once")
    return rows


def _row_name(name: str, overrides: dict[str, Any]) -> str:
    """``name[k=v,...]`` as the user writes it: a text value bare where it reads back as the
    same text (``unet[augment=mri]``), else as JSON (:func:`mribench.api.params.format_spec`)."""
    from mribench.api.params import parse_overrides

    bare = {k: v for k, v in overrides.items() if isinstance(v, str)}
    row = registry.format_spec(name, {k: v for k, v in overrides.items() if k not in bare})
    for key, value in bare.items():
        text = f"{key}={value}"
        try:
            plain = parse_overrides(text) == {key: value} and "]" not in value
        except Exception:
            plain = False
        part = text if plain else registry.format_spec("", {key: value})[1:-1]
        row = f"{row[:-1]},{part}]" if row.endswith("]") else f"{row}[{part}]"
    return row


def _no_skill_rows(config: RunConfig, chosen: set[str], tasks: set[str]
                   ) -> list[tuple[str, dict[str, Any], Method]]:
    """The no-skill reference rows of the tasks the run answers (not asked for already)."""
    rows = []
    for name, cls in registry.methods().items():
        answers = [t for t in cls.tasks if t in tasks and config.task in (None, t)]
        if cls.kind == NO_SKILL and name not in chosen and answers:
            rows.append((name, {}, cls(profile=config.profile)))
    return rows


@dataclass(frozen=True)
class DatasetPlan:
    """One data set of a run: its spec, its folder name (None for a run's only data set) and
    the folds (None: one split) its jobs are trained on, and the sets they are scored on."""

    spec: DatasetSpec
    folder: str | None
    folds: tuple[int | None, ...]
    eval_sets: tuple[EvalSet, ...]


def plan_jobs(config: RunConfig, rows: list[tuple[str, Method]], run_dir: Path, device: str,
              datasets: tuple[DatasetPlan, ...]) -> list[Job]:
    """One job per (data set, row, fold, seed), in that order (seeds innermost)."""
    jobs = []
    for data in datasets:
        for row, method in rows:
            overrides = tuple(sorted(_overrides(method).items()))
            for fold in data.folds:
                for seed in config.seeds:
                    jobs.append(Job(
                        row=row, method=method.name, overrides=overrides, seed=seed,
                        run_dir=run_dir, dataset=data.spec,
                        data_dir=str(config.data_dir) if config.data_dir else None,
                        image_size=config.image_size, profile=config.profile,
                        task=config.task, device=device, n_boot=config.n_boot,
                        eval_sets=data.eval_sets,
                        threads=config.threads, cpu_kernels=config.cpu_kernels,
                        dataset_name=data.folder, fold=fold,
                        corrupt=tuple(config.corrupt), severities=tuple(config.severities),
                        show_progress=config.show_progress, method_cls=type(method),
                        resolve_on_worker=config.executor != "local"))
    return jobs



def _overrides(method: Method) -> dict[str, Any]:
    """The params that differ from the profile's defaults (what the user set)."""
    base = type(method).params_for(method.profile).as_dict()
    return {k: v for k, v in method.params.as_dict().items() if base.get(k) != v}
