"""How far a ranking holds (issue 21, items 4-6): bootstrap rank intervals, the mean-rank
consensus and Kendall's W, critical-difference cliques, accuracy on the line, ``bench rank``
and the figures of "Which pipeline holds up?"."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from mribench.cli import main
from mribench.results.ranking import (
    Block,
    cliques,
    consensus,
    kendall_w,
    nemenyi_cd,
    rank_scores,
    rank_stability,
)
from mribench.results.read import RowResult, RunResults
from mribench.results.robustness import accuracy_on_the_line, fit_on_the_line
from mribench.results.transfer import TransferMatrix
from mribench.testing import make_fake_results

LGG = Path(__file__).resolve().parents[2] / "shared" / "data" / "lgg-kaggle3m-dev" / "kaggle_3m"


# --------------------------------------------------------------------------- toy results


def _records(n_pos: int, n_neg: int, fn: int = 0, fp: int = 0) -> list[dict]:
    """Per-case classify records: ``fn`` positives missed, ``fp`` negatives called tumour;
    every image its own cluster."""
    out = []
    for i in range(n_pos):
        out.append({"id": f"p{i}", "group": f"p{i}", "label": 1, "pred": int(i >= fn),
                    "score": float(i >= fn)})
    for i in range(n_neg):
        out.append({"id": f"n{i}", "group": f"n{i}", "label": 0, "pred": int(i < fp),
                    "score": float(i < fp)})
    return out


def _results(name: str, rows: dict[str, list[dict]], *, no_skill: tuple[str, ...] = (),
             n_boot: int = 300) -> RunResults:
    """A RunResults of finished classify rows built from per-case records (one seed)."""
    made = {m: RowResult(name=m, path=Path(m), status="done",
                         kind="no-skill" if m in no_skill else "classical",
                         tasks=["classify"], metrics={"classify": {"n": len(recs)}},
                         per_case=recs, per_seed={0: recs}) for m, recs in rows.items()}
    run = {"dataset": {"name": name}, "identity": {"n_boot": n_boot}}
    return RunResults(path=Path(f"/nowhere/{name}"), run=run, rows=made)


# --------------------------------------------------------------------------- rank stability


def test_a_method_that_wins_every_resample_has_the_rank_interval_1_1() -> None:
    view = _results("toy", {
        "perfect": _records(20, 20),
        "sloppy": _records(20, 20, fn=6, fp=5),
        "twin": _records(20, 20, fn=6, fp=5),          # the same predictions as sloppy
        "worse": _records(20, 20, fn=10, fp=8),
        "oracle": _records(20, 20),                    # a no-skill row: never ranked
    }, no_skill=("oracle",))
    s = rank_stability(view, "classify", "f1")
    assert s.methods[0] == "perfect" and "oracle" not in s.methods
    frame = s.frame().set_index("method")
    assert (frame.loc["perfect", ["rank_low", "rank_high", "median_rank"]] == 1).all()
    assert frame.loc["perfect", "first"] == 1.0
    assert s.ranks.shape == (300, 4)
    # every method sees the same cluster draw: identical predictions rank alike on every draw
    i, j = s.methods.index("sloppy"), s.methods.index("twin")
    assert (s.ranks[:, i] == s.ranks[:, j]).all()
    assert np.allclose(s.frequency().sum(axis=1), 1.0)


def test_rank_scores_share_the_better_rank_and_put_nan_last() -> None:
    assert rank_scores([0.5, 0.9, 0.5, np.nan]).tolist() == [2, 1, 2, 4]
    assert rank_scores([0.1, 0.3], higher_is_better=False).tolist() == [1, 2]
    assert rank_scores([[1, 2], [2, 1]]).tolist() == [[2, 1], [1, 2]]


# --------------------------------------------------------------------------- consensus


def test_kendall_w_of_known_rank_matrices() -> None:
    # methods x data sets; rank sums 2, 5, 5 -> S = 6; W = 12 S / (m^2 (n^3 - n)) = 72 / 96
    assert kendall_w([[1, 1], [2, 3], [3, 2]]) == pytest.approx(0.75)
    # a tie in the second data set: T = 2^3 - 2 = 6; S = 6.5; W = 78 / (4 * 24 - 2 * 6)
    assert kendall_w([[1, 1.5], [2, 1.5], [3, 3]]) == pytest.approx(78 / 84)
    assert kendall_w([[1, 1, 1], [2, 2, 2], [3, 3, 3]]) == pytest.approx(1.0)
    assert np.isnan(kendall_w([[1], [2]]))  # one data set: no agreement to measure


def test_mean_rank_consensus_of_a_toy_pair_of_data_sets() -> None:
    # F1 on 10 tumour / 10 healthy images: 0 misses 1.0, 2 misses 16/18, 4 misses 12/16
    one = _results("one", {"A": _records(10, 10), "B": _records(10, 10, fn=2),
                           "C": _records(10, 10, fn=4)}, n_boot=100)
    two = _results("two", {"A": _records(10, 10, fn=4), "B": _records(10, 10),
                           "C": _records(10, 10, fn=2)}, n_boot=100)
    c = consensus([Block("one", one), Block("two", two)], "classify", "f1")
    assert c.values.loc["A", "one"] == pytest.approx(1.0)
    assert c.values.loc["C", "two"] == pytest.approx(16 / 18)
    # ranks: one A1 B2 C3, two B1 C2 A3 -> mean ranks B 1.5, A 2.0, C 2.5
    assert c.methods == ["B", "A", "C"]
    assert c.mean_rank.to_dict() == {"B": 1.5, "A": 2.0, "C": 2.5}
    assert c.rank_matrix.loc["A"].tolist() == [1.0, 3.0]
    assert c.kendall_w == pytest.approx(0.25)  # rank sums 3, 4, 5: S = 2, W = 24 / 96
    assert c.friedman is None and c.nemenyi_cd == pytest.approx(2.3437, abs=1e-3)
    assert c.cliques == [["B", "A", "C"]]  # no order holds on both data sets


def test_nemenyi_critical_difference_and_cliques() -> None:
    assert nemenyi_cd(10, 4) == pytest.approx(6.77, abs=0.01)  # the 6.8 ranks
    assert nemenyi_cd(2, 5) == pytest.approx(1.96 * np.sqrt(6 / 30), abs=1e-3)
    linked = np.array([[1, 1, 0, 0],
                       [1, 1, 1, 1],
                       [0, 1, 1, 1],
                       [0, 1, 1, 1]], dtype=bool)
    assert cliques(list("abcd"), linked) == [["a", "b"], ["b", "c", "d"]]
    linked[1, 3] = linked[3, 1] = False  # b and d differ: two overlapping runs
    assert cliques(list("abcd"), linked) == [["a", "b"], ["b", "c"], ["c", "d"]]
    assert cliques(list("abc"), np.eye(3, dtype=bool)) == []


# --------------------------------------------------------------------------- on the line


def test_effective_robustness_of_toy_points() -> None:
    # probit(x) = 0, 1, 2 and probit(y) = 0.5, 1, 2.5: slope 1, intercept 1/3
    x, y = norm.cdf([0.0, 1.0, 2.0]), norm.cdf([0.5, 1.0, 2.5])
    line = fit_on_the_line(["a", "b", "c", "nothing"], [*x, 0.5], [*y, 0.9],
                           kinds=["classical"] * 3 + ["no-skill"])
    assert line.slope == pytest.approx(1.0) and line.intercept == pytest.approx(1 / 3)
    assert line.r2 == pytest.approx(12 / 13)  # 1 - (6/36) / (78/36)
    assert line.n == 3
    p = line.points.set_index("method")
    assert p["residual_probit"].iloc[:3].tolist() == pytest.approx([1 / 6, -1 / 3, 1 / 6])
    assert p.loc["a", "residual"] == pytest.approx(norm.cdf(0.5) - norm.cdf(1 / 3))
    assert not p.loc["nothing", "in_fit"]  # shown, not fitted
    assert p.loc["nothing", "residual_probit"] == pytest.approx(norm.ppf(0.9) - 1 / 3)
    few = fit_on_the_line(["a", "b"], x[:2], y[:2])
    assert np.isnan(few.slope) and np.isnan(few.points["residual"]).all()


def test_accuracy_on_the_line_pairs_each_external_cell_with_the_diagonal() -> None:
    x, y = norm.cdf([0.0, 1.0, 2.0]), norm.cdf([0.5, 1.0, 2.5])
    rows = [(m, "classical", "A", "A", v) for m, v in zip("abc", x, strict=True)]
    rows += [(m, "classical", "A", "B", v) for m, v in zip("abc", y, strict=True)]
    cells = pd.DataFrame(rows, columns=["method", "kind", "train", "test", "value"]).assign(
        low=np.nan, high=np.nan)
    (line,) = accuracy_on_the_line(TransferMatrix("classify", "f1", cells, datasets=["A"]))
    assert (line.train, line.external) == ("A", "B")
    assert line.slope == pytest.approx(1.0)


# --------------------------------------------------------------------------- bench rank


def _with_rows(path: Path, params: dict) -> Path:
    run = json.loads((path / "run.json").read_text())
    run["rows"] = {"glcm-svm": {"method": "glcm-svm", "params": params}}
    (path / "run.json").write_text(json.dumps(run))
    return path


def _run_main(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_bench_rank_refuses_runs_with_different_params(tmp_path, capsys) -> None:
    a = _with_rows(make_fake_results(tmp_path / "a"), {"C": 1.0, "levels": 32})
    b = _with_rows(make_fake_results(tmp_path / "b"), {"C": 10.0, "levels": 32})
    code, _, err = _run_main(["rank", str(a), str(b)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: glcm-svm ran with other params")
    assert "(C differ)" in lines[0]
    code, _, err = _run_main(["rank", str(a), str(a)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "given twice" in err


# --------------------------------------------------------------------------- the small run


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """glcm-knn, svm and region-growing on synthetic and the LGG sample, 2 folds, 32 px."""
    if not LGG.is_dir():
        pytest.skip(f"LGG sample not found at {LGG}")
    from mribench.run.config import RunConfig
    from mribench.run.runner import run_benchmark

    out = tmp_path_factory.mktemp("rank") / "run"
    outcome = run_benchmark(RunConfig(
        methods="glcm-knn,svm,region-growing", dataset=f"synthetic[n=40],lgg:{LGG}", folds=2,
        image_size=32, n_boot=50, out=out))
    assert not outcome.failed
    return out


@pytest.mark.slow
def test_bench_rank_and_the_report_write_the_figures(small_run, tmp_path, capsys) -> None:
    from mribench.report import build_report

    figures = tmp_path / "figures"
    main(["rank", str(small_run), "--task", "classify", "--n-boot", "100", "--out",
          str(figures)])
    text = capsys.readouterr().out
    assert "rank stability on synthetic" in text and "rank stability on lgg" in text
    assert "Kendall's W" in text and "would need a mean-rank gap" in text
    assert "accuracy on the line, synthetic -> lgg" in text
    names = {f"holdup_{k}_classify.png" for k in ("blob", "cd", "transfer", "line")}
    assert {p.name for p in figures.iterdir()} == names
    assert all((figures / n).stat().st_size > 1000 for n in names)
    index = build_report(small_run, tmp_path / "report")
    page = index.read_text()
    assert "Which pipeline holds up?" in page and "id='fig-holdup_blob_classify'" in page
    for name in names:
        assert (tmp_path / "report" / "figures" / name).stat().st_size > 1000
    assert "holdup_line_classify.png" in (tmp_path / "report" / "report.md").read_text()
