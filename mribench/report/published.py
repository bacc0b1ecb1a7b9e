"""Published figures (``benchmarks/published.toml``) beside the reproduced ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mribench.api.errors import MribenchError
from mribench.results.folder import RunResults

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
    metric, published, reproduced, ci_low, ci_high, delta, verified, note, status``. Entries
    whose method is not in the run are listed with ``status`` "not in this run".
    """
    run_dataset = str(results.run.get("dataset", {}).get("name", ""))
    out = []
    for e in entries:
        method = str(e.get("method", ""))
        task = str(e.get("task", ""))
        summary = str(e.get("summary", ""))
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
                   "note": e.get("note", ""), "status": "not in this run"}
            if row is not None:
                rec["status"] = row.status
                if row.done and task in row.metrics:
                    m = row.metric(task, name)
                    rec.update(reproduced=m["value"], ci_low=m["ci_low"], ci_high=m["ci_high"],
                               delta=m["value"] - float(published))
            out.append(rec)
    return out
