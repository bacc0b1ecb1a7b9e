"""Cross-validated rows: the pooled out-of-fold score, and the spread over folds.

With ``--folds K`` every labelled sample is predicted exactly once per seed, by the model
that did not see it. A row's score is then the **pooled out-of-fold** score: per seed, the
per-case records of the K folds are joined into one population (each sample once) and the
set-level metric computed on it; the value is its mean over seeds and the 95 % interval the
two-level bootstrap of :func:`mribench.eval.stats.seed_pooled_interval` (clusters: patients,
near-duplicate groups; then seeds). Beside it, each metric carries ``fold_mean`` and
``fold_sd``: the mean and standard deviation over folds of the per-fold values (each fold's
own seed-mean), what papers with K-fold protocols usually report.

On an external set every fold's model scores the same samples, so there is nothing to pool:
folds are combined like seeds (a two-level bootstrap over the set's clusters and the
fold x seed models), and ``fold_mean``/``fold_sd`` are given too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mribench.api.errors import MribenchError
from mribench.results.aggregate import aggregate_seeds

__all__ = ["pool_out_of_fold", "with_fold_spread"]


def pool_out_of_fold(per_fold: dict[int, dict[int, list[dict[str, Any]]]],
                     template: dict[str, Any], *, n_boot: int = 1000) -> dict[str, Any]:
    """The ``"tasks"`` metrics of the pooled out-of-fold population.

    ``per_fold[fold][seed]`` holds the per-case records of that fold's test part; the seeds
    every fold finished are pooled. ``template`` is one fold's metrics (for the layout).
    A sample scored by two folds of one seed is refused: the folds overlap.
    """
    seeds = sorted(set.intersection(*(set(s) for s in per_fold.values())))
    pooled: dict[int, list[dict[str, Any]]] = {}
    for seed in seeds:
        records = [r for fold in sorted(per_fold) for r in per_fold[fold][seed]]
        ids = [r.get("id") for r in records]
        if len(set(ids)) != len(ids):
            twice = next(i for i in ids if ids.count(i) > 1)
            raise MribenchError(f"sample {twice!r} is predicted by two folds of seed {seed}; "
                                "the folds overlap (see folds.json)")
        pooled[seed] = records
    # the template gives the layout (tasks, views, metric names); values come from records
    return aggregate_seeds({seed: template for seed in seeds}, pooled, n_boot=n_boot,
                           values_from_records=True)


def with_fold_spread(metrics: dict[str, Any], per_fold: dict[int, dict[str, Any]]
                     ) -> dict[str, Any]:
    """``metrics`` with ``fold_mean``/``fold_sd`` (over folds) added to every entry."""
    folds = sorted(per_fold)
    for task, block in metrics.items():
        if not isinstance(block, dict):
            continue
        views = [(block, lambda m, t=task: m.get(t) or {})]
        if isinstance(block.get("tumour_only"), dict):
            views.append((block["tumour_only"],
                          lambda m, t=task: (m.get(t) or {}).get("tumour_only") or {}))
        for target, source in views:
            for section in ("metrics", "per_image"):
                for name, entry in (target.get(section) or {}).items():
                    values = [_value(source(per_fold[f]), section, name) for f in folds]
                    arr = np.asarray(values, dtype=float)
                    ok = np.isfinite(arr)
                    entry["fold_values"] = values
                    entry["fold_mean"] = float(arr[ok].mean()) if ok.any() else float("nan")
                    entry["fold_sd"] = float(arr[ok].std(ddof=1)) if ok.sum() > 1 else \
                        float("nan")
        block["folds"] = folds
    return metrics


def _value(block: dict[str, Any], section: str, name: str) -> float:
    entry = (block.get(section) or {}).get(name) or {}
    value = entry.get("value")
    return float("nan") if value is None else float(value)
