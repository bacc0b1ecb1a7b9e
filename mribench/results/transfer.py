"""The transfer matrix of a run over several data sets: trained on each, scored on each.

Cell (A, B) of a method is its score when trained on data set A and scored on B: the
in-distribution score (A's test part, or its pooled out-of-fold predictions) on the diagonal,
B's labelled samples off it (:mod:`mribench.run.data_plan`). :func:`transfer_matrix` returns the
cells as a long frame (method, train, test, value and interval) and Kendall's tau between the
rankings of every pair of cells (methods scored in both; no-skill rows excluded), so a reader
sees how far a ranking made on one data set holds on another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from mribench.api.specs import NO_SKILL
from mribench.results.rank import ranked_table
from mribench.results.read import RunResults

__all__ = ["TransferMatrix", "transfer_matrix"]


@dataclass
class TransferMatrix:
    """Cells of the transfer matrix and the rank agreement between them."""

    task: str
    metric: str
    #: Columns ``method, kind, train, test, value, low, high``.
    cells: pd.DataFrame
    #: (cell a, cell b) -> (Kendall tau, rows compared); a cell is "train->test".
    taus: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)
    datasets: list[str] = field(default_factory=list)

    def wide(self) -> pd.DataFrame:
        """Methods x cells ("train->test"), values only."""
        if self.cells.empty:
            return pd.DataFrame()
        cells = self.cells.assign(cell=self.cells["train"] + "->" + self.cells["test"])
        return cells.pivot_table(index="method", columns="cell", values="value",
                                 sort=False)


def _cells(results: RunResults, task: str, metric: str) -> list[dict[str, object]]:
    out = []
    for test in [results.dataset_name, *results.eval_sets]:
        view = results if test == results.dataset_name else results.on(test)
        if not view.done(task):
            continue
        table = ranked_table(view, task, metric)
        for _, rec in table.iterrows():
            out.append({"method": rec["method"], "kind": rec["kind"],
                        "train": results.dataset_name, "test": test,
                        "value": rec[metric], "low": rec[f"{metric}_low"],
                        "high": rec[f"{metric}_high"]})
    return out


def transfer_matrix(root: RunResults, task: str, metric: str = "f1") -> TransferMatrix:
    """The transfer matrix of ``task`` by ``metric`` over the run's data sets (its only data
    set and its ``--test-on`` sets for a run of one)."""
    views = [root.of(d) for d in root.datasets] or [root]
    records = [c for view in views for c in _cells(view, task, metric)]
    cells = pd.DataFrame.from_records(records, columns=["method", "kind", "train", "test",
                                                        "value", "low", "high"])
    out = TransferMatrix(task, metric, cells, datasets=[v.dataset_name for v in views])
    ranked = cells[cells["kind"] != NO_SKILL] if not cells.empty else cells
    names = [f"{t}->{s}" for t, s in dict.fromkeys(zip(ranked.get("train", []),
                                                       ranked.get("test", []), strict=True))]
    wide = out.wide()
    for a, b in combinations(names, 2):
        both = wide[[a, b]].dropna() if a in wide and b in wide else pd.DataFrame()
        both = both[both.index.isin(ranked["method"])]
        if len(both) >= 3:
            from mribench.eval.stats import kendall_tau

            out.taus[(a, b)] = (float(kendall_tau(both[a].to_numpy(), both[b].to_numpy())),
                                len(both))
        else:
            out.taus[(a, b)] = (float(np.nan), len(both))
    return out
