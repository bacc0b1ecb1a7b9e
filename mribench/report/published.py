"""Published figures (``benchmarks/published.toml``) beside the reproduced ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mribench.api.errors import MribenchError
from mribench.results.read import RunResults

__all__ = ["DEFAULT_PUBLISHED", "compare_published", "load_published"]

#: The table shipped in the source tree (benchmarks/published.toml).
DEFAULT_PUBLISHED = Path(__file__).resolve().parents[2] / "benchmarks" / "published.toml"
PER_IMAGE_NAMES = {"f1": "mean_dice", "dice": "mean_dice", "iou": "mean_iou"}


def load_published(path: Path | None = None) -> list[dict[str, Any]]:
    """The ``[[result]]`` entries of a published-figures TOML file ([] when it is absent)."""
    path = DEFAULT_PUBLISHED if path is None else Path(path)
    if not path.is_file():
        return []
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise MribenchError(f"{path} is not valid TOML ({err}); fix the file") from err
    return list(data.get("result", []))


def compare_published(results: RunResults, entries: list[dict[str, Any]]
                      ) -> list[dict[str, Any]]:
    """One row per published metric of a method present in the run.

    Each row: ``method, citation, paper_dataset, run_dataset, same_dataset, task, summary,
    metric, published, reproduced, ci_low, ci_high, delta, verified, note, status, measures,
    counterpart, verdict``. Entries whose method is not in the run are listed with ``status``
    "not in this run".

    Like with like: ``measures`` says what the published figure measures (as far as the paper
    tells), ``counterpart`` which of this run's numbers it is set against (the entry's
    ``view``: ``tumour_only`` for figures on annotated tumour slices), and ``verdict`` is
    "above the published figure" / "below" only when the quantity matches (same data set and
    split strategy, a defined aggregation, figures that can come from one set of counts) and
    the 95 % interval lies wholly above / below it; otherwise it says why they are not
    comparable.
    """
    run_dataset = str(results.run.get("dataset", {}).get("name", ""))
    run_split = str((results.run.get("split") or {}).get("strategy", ""))
    out = []
    for e in entries:
        method = str(e.get("method", ""))
        task = str(e.get("task", ""))
        summary = str(e.get("summary", ""))
        view = str(e.get("view", "all"))
        inconsistent = _inconsistent(e.get("metrics") or {}, summary)
        row = results.rows.get(method) if method else None
        for metric, published in (e.get("metrics") or {}).items():
            name = metric
            if task == "segment" and summary == "per-image":
                name = PER_IMAGE_NAMES.get(metric, metric)
            rec = {"method": method or "—", "citation": e.get("citation", ""),
                   "doi": e.get("doi", ""), "where": e.get("where", ""),
                   "paper_dataset": e.get("dataset", ""), "run_dataset": run_dataset,
                   "same_dataset": e.get("dataset", "") == run_dataset, "task": task,
                   "summary": summary, "metric": name, "published": float(published),
                   "reproduced": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                   "delta": np.nan, "verified": bool(e.get("verified", False)),
                   "note": e.get("note", ""), "status": "not in this run",
                   "measures": e.get("measures", summary or "unspecified"),
                   "counterpart": _counterpart(task, name, view),
                   "verdict": "not in this run"}
            if row is not None:
                rec["status"] = row.status
                if row.done and task in row.metrics:
                    m = row.metric(task, name, view)
                    rec.update(reproduced=m["value"], ci_low=m["ci_low"], ci_high=m["ci_high"],
                               delta=m["value"] - float(published))
            rec["verdict"] = _verdict(rec, e, run_split, inconsistent)
            out.append(rec)
    return out


def _counterpart(task: str, metric: str, view: str) -> str:
    where = {"all": "all test slices with a known mask",
             "tumour_only": "annotated tumour test slices only"}.get(view, view)
    return f"{task} {metric}" + (f" on {where}" if task == "segment" else " on test images")


def _inconsistent(metrics: dict[str, Any], summary: str) -> str:
    """Why the figures cannot come from one set of pooled counts ("" when they can)."""
    try:
        p, r, f1 = (float(metrics[k]) for k in ("precision", "recall", "f1"))
    except (KeyError, TypeError, ValueError):
        return ""
    if summary == "pooled" and p + r > 0 and abs(2 * p * r / (p + r) - f1) > 0.005:
        return (f"the paper's F1 {f1:.3f} is not 2PR/(P+R) = {2 * p * r / (p + r):.3f} of its "
                "own precision and recall, so its figures do not come from one set of pooled "
                "counts")
    return ""


def _verdict(rec: dict[str, Any], entry: dict[str, Any], run_split: str,
             inconsistent: str) -> str:
    if rec["status"] != "done" or not np.isfinite(rec["reproduced"]):
        return rec["status"] if rec["status"] != "done" else "not measured in this run"
    if not rec["same_dataset"]:
        return "not comparable: another data set"
    if rec["summary"] in ("", "unspecified"):
        return "not comparable: the paper does not say how it aggregates"
    split = str(entry.get("split_strategy", ""))
    if split and run_split and split != run_split:
        return f"not comparable: the paper's split is {split}, this run's {run_split}"
    if inconsistent:
        return f"not comparable: {inconsistent}"
    if np.isfinite(rec["ci_low"]) and rec["ci_low"] > rec["published"]:
        return "above the published figure (95% interval wholly above)"
    if np.isfinite(rec["ci_high"]) and rec["ci_high"] < rec["published"]:
        return "below the published figure (95% interval wholly below)"
    return "consistent with the published figure (it lies inside the 95% interval)"
