"""The data side of a run's plan: each data set loaded, split (or cut into folds), and the
sets its jobs are scored on.

A run names one or more data sets (``--dataset br35h,lgg:PATH``). Each gets its own split: a
committed or made manifest (:func:`mribench.split.choose.choose_split`), or with ``--folds K``
K patient-level folds (:func:`mribench.split.folds.make_folds`). A method trained on one data
set is scored on its own test part (or held-out fold), on every *other* data set of the run
(all its labelled samples: the transfer matrix) and on the ``--test-on`` sets. Data sets are
named by what the user wrote (:func:`mribench.api.specs.unique_labels`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mribench.api.errors import MribenchError
from mribench.api.method import Method
from mribench.api.specs import unique_labels
from mribench.api.types import Sample
from mribench.results.layout import IN_DISTRIBUTION
from mribench.run.config import RunConfig
from mribench.run.jobs import DatasetPlan, EvalSet

__all__ = ["PlannedData", "plan_datasets", "run_fingerprint", "run_split_sha256"]


@dataclass
class PlannedData:
    """One data set, ready: its plan (name, folds, evaluation sets), the plugin, its samples
    and its split(s) (one ChosenSplit, or one per fold), and the folds' record."""

    plan: DatasetPlan
    dataset: Any
    samples: list[Sample]
    splits: list[Any]
    folds_record: dict[str, Any] | None = None

    @property
    def sha256(self) -> str:
        return self.folds_record["sha256"] if self.folds_record else self.splits[0].sha256


def _tasks_of_data(samples: Sequence[Sample]) -> set[str]:
    """What a data set can train and score: classify (labels), segment (annotated masks;
    slices whose truth is only inferred empty from a label do not make a segmentation set)."""
    tasks = {"classify"}
    if any(s.has_mask for s in samples):
        tasks.add("segment")
    return tasks


def _load(config: RunConfig, spec: Any) -> tuple[Any, list[Sample]]:
    from mribench.data.load import load_dataset

    # --data-dir serves the data sets named without a path of their own (``br35h``)
    return load_dataset(spec, data_dir=config.data_dir, image_size=config.image_size,
                        show_progress=config.show_progress)


def _split(config: RunConfig, dataset: Any, samples: list[Sample]
           ) -> tuple[list[Any], dict[str, Any] | None]:
    from mribench.split.choose import ChosenSplit, check_groups, check_parts, choose_split

    tasks = {config.task} if config.task else None
    if config.folds is None:
        return [choose_split(dataset, samples, config.split, seed=config.split_seed,
                             tasks=tasks)], None
    from mribench.split.folds import folds_record, make_folds
    from mribench.split.manifest import apply, audit

    check_groups(dataset, samples)
    folds = make_folds(dataset.split_name, samples, config.folds, config.split_seed,
                       threshold=float(dataset.options.get("threshold", 0.0)),
                       options=getattr(dataset, "split_options", dataset.options))
    chosen = []
    for fold in folds:
        parts = apply(fold, samples)
        check_parts(f"{dataset.split_name} {fold.strategy}", parts, tasks)
        chosen.append(ChosenSplit(fold, None, parts, audit(fold, samples)))
    return chosen, folds_record(folds)


def plan_datasets(config: RunConfig, rows: list[tuple[str, Method]]) -> list[PlannedData]:
    """Load and split every data set of the run, and name the sets its jobs score."""
    from mribench.run.execute import load_eval_samples

    several = len(config.datasets) > 1
    names = unique_labels(config.datasets, taken=[IN_DISTRIBUTION])
    external = unique_labels(config.test_on,
                             taken=[IN_DISTRIBUTION, *(names if several else [])])
    test_on = tuple(EvalSet(n, s, config.test_split) for n, s in zip(external, config.test_on,
                                                                    strict=True))
    for eval_set in test_on:  # fail early on a bad --test-on (and warm the data cache)
        load_eval_samples(eval_set.spec, eval_set.split, config.image_size,
                          str(config.data_dir) if config.data_dir else None)
    loaded = [_load(config, spec) for spec in config.datasets]
    if several:
        _check_shared_task(config, rows, names, [samples for _, samples in loaded])
    out = []
    for i, (spec, (dataset, samples)) in enumerate(zip(config.datasets, loaded, strict=True)):
        splits, record = _split(config, dataset, samples)
        # preprocessing that changes pixels travels with the model: the other data sets are
        # scored harmonised exactly when this one trains harmonised
        others = tuple(EvalSet(names[j], other.preprocessed_like(spec))
                       for j, other in enumerate(config.datasets) if j != i)
        external = tuple(EvalSet(e.name, e.spec.preprocessed_like(spec), e.split)
                         for e in test_on)
        folds = tuple(range(len(splits))) if record else (None,)
        plan = DatasetPlan(spec, names[i] if several else None, folds, others + external)
        out.append(PlannedData(plan, dataset, samples, splits, record))
    return out


def _check_shared_task(config: RunConfig, rows: list[tuple[str, Method]], names: list[str],
                       samples: list[list[Sample]]) -> None:
    """Several data sets must share a task that the run's methods answer."""
    shared = set.intersection(*(_tasks_of_data(s) for s in samples))
    answered = {t for _, m in rows for t in m.tasks if config.task in (None, t)}
    if not shared & answered:
        raise MribenchError(f"data sets {', '.join(names)} share no task the methods answer "
                            f"(shared: {', '.join(sorted(shared)) or 'none'}; methods answer "
                            f"{', '.join(sorted(answered))}); give data sets with a common "
                            "task (e.g. all with masks for segment)")


def run_split_sha256(data: Sequence[PlannedData]) -> str:
    """The split hash of the run: the manifest's for one data set and one split (as before
    data sets and folds were axes), else a hash of every data set's split or folds."""
    if len(data) == 1 and data[0].folds_record is None:
        return data[0].sha256
    text = json.dumps({d.plan.spec.text: d.sha256 for d in data}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def run_fingerprint(data: Sequence[PlannedData]) -> str:
    """The data fingerprint of the run (one data set's own, or all of them joined)."""
    prints = [d.dataset.fingerprint() for d in data]
    return prints[0] if len(prints) == 1 else "|".join(prints)
