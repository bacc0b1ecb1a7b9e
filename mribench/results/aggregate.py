"""Several seeds, one row: the mean over seeds, its spread, and an interval over clusters and
seeds.

With one seed a metric is that seed's value with its bootstrap interval over the test images'
clusters (patients, near-duplicate groups; :func:`mribench.eval.metrics.evaluate`). With
several, ``value`` is the mean over seeds of the set-level metric, ``sd`` its standard
deviation over seeds, and ``ci_low``/``ci_high`` a 95 % percentile interval of a two-level
bootstrap (:func:`mribench.eval.stats.seed_pooled_interval`): each replicate resamples the
clusters of the test images (the same draw for every seed, since every seed is scored on the
same images), computes each seed's metric, then resamples the seeds with replacement and
averages them. The interval covers both the sampling of the test patients/groups and the
seed-to-seed variation of training, with ``n_boot`` replicates (the run's ``--n-boot``). A
metric undefined on the population keeps its null value and its reason (``undefined``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mribench.eval.registry import metric_names, per_image_metric

__all__ = ["aggregate_seeds"]



def aggregate_seeds(seed_metrics: dict[int, dict[str, Any]],
                    per_seed: dict[int, list[dict[str, Any]]], *, n_boot: int = 1000,
                    seed: int = 0, values_from_records: bool = False) -> dict[str, Any]:
    """The ``"tasks"`` dict of metrics.json aggregated over seeds (same layout, plus ``sd``
    and ``seeds`` per metric; the segment task's ``tumour_only`` view likewise).

    ``n_boot`` replicates of the two-level bootstrap (pass the run's ``--n-boot``, run.json's
    ``identity.n_boot``) drawn from ``seed``. Each seed's value is its metrics.json value, or,
    with ``values_from_records``, recomputed from its records (``per_seed``: a population
    that no metrics.json scored as a whole, e.g. the pooled out-of-fold predictions).
    """
    seeds = sorted(seed_metrics)
    first = seed_metrics[seeds[0]]
    out: dict[str, Any] = {}
    for task, block in first.items():
        if not isinstance(block, dict):
            continue
        records = {s: per_seed[s] for s in seeds}
        out[task] = _aggregate_block(task, [(seed_metrics[s].get(task) or {}) for s in seeds],
                                     records, "all", n_boot, seed, values_from_records)
        tumour = [(seed_metrics[s].get(task) or {}).get("tumour_only") for s in seeds]
        if all(isinstance(b, dict) for b in tumour):
            out[task]["tumour_only"] = _aggregate_block(
                task, tumour, records, "tumour_only", n_boot, seed, values_from_records)
    return out


def _aggregate_block(task: str, blocks: list[dict[str, Any]],
                     per_seed: dict[int, list[dict[str, Any]]], view: str, n_boot: int,
                     seed: int, values_from_records: bool = False) -> dict[str, Any]:
    from mribench.eval.metrics import percentile_ci
    from mribench.eval.stats import seed_pooled_bootstrap

    agg = {k: v for k, v in blocks[0].items()
           if k not in ("metrics", "per_image", "tumour_only", "confusion")}
    agg["seeds"] = sorted(per_seed)
    for section in ("metrics", "per_image"):
        entries = blocks[0].get(section)
        if not isinstance(entries, dict):
            continue
        agg[section] = {}
        for name in entries:
            values = [_value(b, section, name) for b in blocks]
            finite = np.isfinite(values)
            entry: dict[str, Any] = {
                "seeds": values, "value": _nanmean(values),
                "sd": float(np.nanstd(values, ddof=1)) if finite.sum() > 1 else float("nan")}
            metric = name
            if section == "per_image":  # "dice" -> the per-image metric "mean_dice"
                per_image = per_image_metric(name)
                metric = per_image.name if per_image is not None else name
            entry.update(ci_low=float("nan"), ci_high=float("nan"))
            undefined = ((blocks[0].get(section) or {}).get(name) or {}).get("undefined")
            if undefined and not values_from_records:
                entry.update(value=None, ci_low=None, ci_high=None, undefined=undefined)
            elif metric in metric_names(task):  # a metric this process does not know: no interval
                try:
                    boot = seed_pooled_bootstrap(per_seed, metric, task, n_boot, seed, view=view)
                except (KeyError, ValueError, TypeError):
                    boot = None
                if boot is not None and values_from_records:
                    _from_points(entry, boot.point, undefined)
                    agg.update(n=boot.n, n_clusters=boot.n_clusters)  # the pooled population
                if boot is not None and boot.replicates.size and entry["value"] is not None:
                    low, high = percentile_ci(boot.replicates)
                    entry.update(ci_low=low, ci_high=high)
            agg[section][name] = entry
    return agg


def _from_points(entry: dict[str, Any], points: np.ndarray, undefined: str | None) -> None:
    """Set an entry's per-seed values, mean and sd from values computed from records."""
    values = [float(v) for v in points]
    finite = np.isfinite(points)
    entry.update(seeds=values, value=_nanmean(values),
                 sd=float(np.nanstd(points, ddof=1)) if finite.sum() > 1 else float("nan"))
    if not finite.any():
        entry.update(value=None, ci_low=None, ci_high=None,
                     undefined=undefined or "undefined on this population")


def _value(block: dict[str, Any], section: str, name: str) -> float:
    entry = (block.get(section) or {}).get(name) or {}
    value = entry.get("value")
    return float("nan") if value is None else float(value)


def _nanmean(values: list[float]) -> float:
    arr = np.asarray(values, dtype=float)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")
