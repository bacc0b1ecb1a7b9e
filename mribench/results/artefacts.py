"""How each row holds under MRI artefacts: scores per artefact and severity, corruption errors.

A run with ``--corrupt`` scores every fitted row on its test part corrupted by each artefact at
each severity (evaluation sets ``test~<artefact>@<severity>``,
:func:`mribench.results.layout.corrupted_set`). :func:`artefact_data` gathers, per row,
artefact and severity:

- the ranked metric with its 95 % interval (the rows' own cluster-aware bootstrap, seeds
  included, as every ranked table reads it);
- the *balanced error* of MedMNIST-C (Di Salvo et al., 2024): ``1 - balanced accuracy``
  (the mean of recall and specificity) for ``classify``, ``1 - Dice`` (pooled) for ``segment``;
- a paired test of clean vs corrupted on the same images (the metric's own cluster-aware
  permutation test, :func:`mribench.eval.stats.paired_metric_test`), Holm-adjusted over the
  whole table (every ranked row x artefact x severity: the claims a reader scans at once).

Per row and artefact it adds the corruption error ``CE`` (the balanced error averaged over the
severities), ``CE`` normalised by the reference row's (ImageNet-C's CE, MedMNIST-C's BE) and
the *relative* CE, ``(CE - E_clean) / (CE_ref - E_ref,clean)`` (how much of the reference's
degradation the row suffers; NaN where the reference does not degrade); and over artefacts their
means (``mCE``, mean relative CE). The reference is the run's ``--corrupt-reference`` row, else
the best classical row on clean data by the ranked metric. No-skill rows are listed for the
floor they set, never tested, never the reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mribench.api.specs import NO_SKILL
from mribench.eval.registry import get_metric
from mribench.eval.stats import ALPHA, holm_decisions, holm_levels, paired_metric_test
from mribench.results.read import RowResult, RunResults

__all__ = ["CELL_COLUMNS", "SUMMARY_COLUMNS", "ArtefactData", "artefact_data",
           "balanced_error"]

CELL_COLUMNS = ["row", "kind", "no_skill", "artefact", "severity", "value", "low", "high",
                "error", "delta", "p", "p_holm", "p_se", "decision"]
SUMMARY_COLUMNS = ["row", "kind", "no_skill", "artefact", "clean", "mean", "worst", "ce",
                   "clean_error", "ce_norm", "rel_ce"]


@dataclass
class ArtefactData:
    """The artefact axis of one task, ranked metric ``metric`` (see the module docstring).

    ``clean``: one row per result row (``row, kind, no_skill, value, low, high, error``) in
    clean rank order; ``cells``: :data:`CELL_COLUMNS`, one per row x artefact x severity;
    ``summary``: :data:`SUMMARY_COLUMNS`, one per row x artefact plus ``artefact == "mean"``
    (the means over artefacts: mCE and mean relative CE); ``reference``: the reference row
    (None when the run has none: no classical row and none named).
    """

    task: str
    metric: str
    #: The clean evaluation set the corrupted ones copy ("test": the run's test part).
    base: str
    artefacts: list[str]
    severities: list[int]
    clean: pd.DataFrame
    cells: pd.DataFrame
    summary: pd.DataFrame
    reference: str | None
    reference_note: str
    alpha: float = ALPHA
    #: Seconds each row's jobs spent on the corrupted sets (mean over seeds), by row.
    corrupt_s: dict[str, float] = field(default_factory=dict)


def balanced_error(row: RowResult, task: str) -> float:
    """MedMNIST-C's balanced error: ``1 - (recall + specificity) / 2`` for classify (NaN where
    one class is absent), ``1 - Dice`` (pooled) for segment."""
    if task == "classify":
        recall = row.metric(task, "recall")["value"]
        specificity = row.metric(task, "specificity")["value"]
        return float(1.0 - (recall + specificity) / 2.0)
    return float(1.0 - row.metric(task, "f1")["value"])


def _clean_frame(results: RunResults, task: str, metric: str) -> pd.DataFrame:
    higher = get_metric(metric).higher_is_better
    records = []
    for r in results.done(task):
        m = r.metric(task, metric)
        records.append({"row": r.name, "kind": r.kind, "no_skill": r.kind == NO_SKILL,
                        "value": m["value"], "low": m["ci_low"], "high": m["ci_high"],
                        "error": balanced_error(r, task)})
    frame = pd.DataFrame.from_records(records, columns=["row", "kind", "no_skill", "value",
                                                        "low", "high", "error"])
    return frame.sort_values(["no_skill", "value"], ascending=[True, not higher],
                             na_position="last", kind="stable").reset_index(drop=True)


def _reference(clean: pd.DataFrame, named: str | None) -> tuple[str | None, str]:
    rows = list(clean["row"])
    if named and named in rows:
        return named, f"reference row {named} (--corrupt-reference)"
    classical = clean[(clean["kind"] == "classical") & np.isfinite(clean["value"])]
    fallback = f"; {named!r} is not a finished row of this task" if named else ""
    if classical.empty:
        return None, f"no classical row to normalise by{fallback}"
    best = str(classical["row"].iloc[0])
    return best, f"reference row {best} (the best classical row on clean data{fallback})"


def _cells(results: RunResults, task: str, metric: str, clean: pd.DataFrame,
           sets: dict[tuple[str, int], str]) -> tuple[list[dict[str, Any]], list[Any]]:
    """One record per row x artefact x severity, and the pending paired tests."""
    records, tests = [], []
    test_kind = get_metric(metric).test
    ranked = int((~clean["no_skill"]).sum())
    levels = holm_levels(ALPHA, max(ranked * len(sets), 1))
    for (artefact, severity), name in sets.items():
        view = results.on(name)
        for rec in clean.itertuples():
            row = view.rows.get(rec.row)
            base = {"row": rec.row, "kind": rec.kind, "no_skill": rec.no_skill,
                    "artefact": artefact, "severity": severity}
            if row is None or not row.done or not row.block(task):
                records.append({**base, "value": np.nan, "low": np.nan, "high": np.nan,
                                "error": np.nan, "delta": np.nan})
                continue
            m = row.metric(task, metric)
            records.append({**base, "value": m["value"], "low": m["ci_low"],
                            "high": m["ci_high"], "error": balanced_error(row, task),
                            "delta": m["value"] - rec.value})
            if not rec.no_skill:
                tests.append((len(records) - 1, paired_metric_test(
                    results.rows[rec.row].per_seed, row.per_seed, metric, task,
                    method=test_kind, alpha=levels)))
    return records, tests


def _summary(cells: pd.DataFrame, clean: pd.DataFrame, reference: str | None,
             higher: bool) -> pd.DataFrame:
    """CE, normalised CE and relative CE per row x artefact, then their means per row."""
    records = []
    by_row = clean.set_index("row")
    grouped = cells.groupby(["row", "artefact"], sort=False)
    ce = grouped["error"].mean()
    for (row, artefact), part in grouped:
        values = part["value"].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        clean_error = float(by_row.loc[row, "error"])
        ref_ce = ce.get((reference, artefact), np.nan) if reference else np.nan
        ref_clean = float(by_row.loc[reference, "error"]) if reference else np.nan
        gap = ref_ce - ref_clean
        records.append({
            "row": row, "kind": by_row.loc[row, "kind"],
            "no_skill": bool(by_row.loc[row, "no_skill"]), "artefact": artefact,
            "clean": float(by_row.loc[row, "value"]),
            "mean": float(finite.mean()) if finite.size else np.nan,
            "worst": float((finite.min() if higher else finite.max()) if finite.size
                           else np.nan),
            "ce": float(ce[(row, artefact)]), "clean_error": clean_error,
            "ce_norm": float(ce[(row, artefact)] / ref_ce) if ref_ce and ref_ce > 0
            else np.nan,
            "rel_ce": float((ce[(row, artefact)] - clean_error) / gap) if gap > 0 else np.nan})
    frame = pd.DataFrame.from_records(records, columns=SUMMARY_COLUMNS)
    means = []
    for row, part in frame.groupby("row", sort=False):
        mean = {c: float(np.nanmean(part[c])) if np.isfinite(part[c]).any() else np.nan
                for c in ("clean", "mean", "worst", "ce", "clean_error", "ce_norm", "rel_ce")}
        means.append({"row": row, "kind": part["kind"].iloc[0],
                      "no_skill": bool(part["no_skill"].iloc[0]), "artefact": "mean", **mean})
    return pd.concat([frame, pd.DataFrame.from_records(means, columns=SUMMARY_COLUMNS)],
                     ignore_index=True)


def artefact_data(results: RunResults, task: str, metric: str, *, base: str = "test",
                  reference: str | None = None) -> ArtefactData | None:
    """The artefact axis of ``task`` ranked by ``metric`` on evaluation set ``base`` (its test
    part by default); None without the axis or a finished row. ``reference`` overrides the
    run's ``--corrupt-reference``."""
    sets = results.corrupted_sets(base)
    if not sets:
        return None
    clean_view = results.on(base)
    clean = _clean_frame(clean_view, task, metric)
    if clean.empty:
        return None
    axis = results.artefacts
    ref, note = _reference(clean, reference or axis.get("reference"))
    records, tests = _cells(clean_view, task, metric, clean, sets)
    cells = pd.DataFrame.from_records(records, columns=CELL_COLUMNS[:9])
    for column in ("p", "p_holm", "p_se"):
        cells[column] = np.nan
    cells["decision"] = ""
    if tests:
        adjusted, _, decisions = holm_decisions([t.p_value for _, t in tests],
                                                [t.mc_se for _, t in tests], alpha=ALPHA)
        for (i, test), p_holm, decision in zip(tests, adjusted, decisions, strict=True):
            cells.loc[i, ["p", "p_holm", "p_se"]] = [test.p_value, p_holm, test.mc_se]
            cells.loc[i, "decision"] = decision
    summary = _summary(cells, clean, ref, get_metric(metric).higher_is_better)
    corrupt_s = {r: float(np.mean([t for t in [results.rows[r].timings.get("corrupt_s")]
                                   if isinstance(t, int | float)] or [np.nan]))
                 for r in clean["row"] if r in results.rows}
    return ArtefactData(task, metric, base, list(axis["corrupt"]), list(axis["severities"]), clean,
                        cells, summary, ref, note, corrupt_s=corrupt_s)
