"""Patient-level K-fold cross-validation and runs over several data sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mribench.api.errors import MribenchError
from mribench.api.types import Sample
from mribench.split.folds import check_folds, folds_record, make_folds

LGG = Path(__file__).resolve().parents[2] / "shared" / "data" / "lgg-kaggle3m-dev" / "kaggle_3m"


def _patients(n_patients: int, per_patient: int = 6) -> list[Sample]:
    out = []
    for p in range(n_patients):
        for i in range(per_patient):
            label = int(i < per_patient // 2)
            out.append(Sample(f"p{p}/s{i}", f"p{p}", label, np.zeros((4, 4), np.float32)))
    return out


def _groups(samples: list[Sample], ids) -> set[str]:
    wanted = set(ids)
    return {s.group for s in samples if s.id in wanted}


@pytest.fixture(scope="module")
def lgg_samples():
    if not LGG.is_dir():
        pytest.skip(f"LGG sample not found at {LGG}")
    from mribench.data.load import load_dataset

    return load_dataset(f"lgg:{LGG}", image_size=16)[1]


def test_lgg_folds_are_patient_disjoint_stratified_and_cover_every_slice_once(lgg_samples):
    folds = make_folds("lgg", lgg_samples, 4, seed=0)
    tested: list[str] = []
    rate = np.mean([s.label for s in lgg_samples])
    for fold in folds:
        train, val, test = (_groups(lgg_samples, ids) for ids in (fold.train, fold.val,
                                                                   fold.test))
        assert not (train & test) and not (val & test) and not (train & val)
        assert fold.test and fold.train and fold.val
        labels = [s.label for s in lgg_samples if s.id in set(fold.test)]
        assert 0 < np.mean(labels) < 1 and abs(np.mean(labels) - rate) < 0.35
        tested += fold.test
    assert sorted(tested) == sorted(s.id for s in lgg_samples)  # each slice once
    assert folds_record(folds)["sha256"] == folds_record(make_folds("lgg", lgg_samples, 4,
                                                                    seed=0))["sha256"]


def test_bad_fold_requests_are_one_line():
    with pytest.raises(MribenchError, match="--folds 5 needs at least 5 patients/groups, the "
                                            "data set has 4"):
        make_folds("toy", _patients(4), 5)
    with pytest.raises(MribenchError, match="cannot cross-validate 1 patient"):
        make_folds("toy", _patients(1), 2)
    with pytest.raises(MribenchError, match="--folds must be an integer from 2 to 20"):
        make_folds("toy", _patients(6), 1)


def test_a_sample_predicted_twice_or_never_is_refused():
    folds = make_folds("toy", _patients(6), 3)
    ids = [s.id for s in _patients(6)]
    check_folds(folds, ids, "toy")
    from dataclasses import replace

    twice = [folds[0], replace(folds[1], test=folds[1].test + folds[0].test[:1]), folds[2]]
    with pytest.raises(MribenchError, match="both test"):
        check_folds(twice, ids, "toy")
    with pytest.raises(MribenchError, match="in no fold's test part"):
        check_folds(folds[:2], ids, "toy")


@pytest.mark.slow
def test_a_run_over_two_data_sets_with_folds(tmp_path, lgg_samples):
    from mribench.run.config import RunConfig
    from mribench.run.runner import run_benchmark

    out = tmp_path / "run"
    outcome = run_benchmark(RunConfig(
        methods="region-growing", dataset=f"synthetic[n=40],lgg:{LGG}", folds=2, image_size=32,
        n_boot=10, out=out, baselines=False))
    assert not outcome.failed and len(outcome.rows) == 2 * 2  # 2 data sets x 2 folds
    run = json.loads((out / "run.json").read_text())
    assert [d["name"] for d in run["datasets"]] == ["synthetic", "lgg"]
    assert run["identity"]["folds"] == 2
    for name in ("synthetic", "lgg"):
        record = json.loads((out / name / "folds.json").read_text())
        assert record["k"] == 2 and len(record["folds"]) == 2
        other = "lgg" if name == "synthetic" else "synthetic"
        for fold in (0, 1):
            job = out / name / "region-growing" / f"fold-{fold}" / "seed-0"
            assert (job / "metrics.json").is_file()
            assert (job / "eval" / other / "metrics.json").is_file()  # the transfer matrix


def test_data_sets_without_a_shared_task_are_refused(tmp_path):
    from mribench.run.config import RunConfig
    from mribench.run.runner import run_benchmark

    folder = tmp_path / "mine"
    for cls, value in (("yes", 200), ("no", 30)):
        (folder / cls).mkdir(parents=True)
        from PIL import Image

        for i in range(6):
            Image.fromarray(np.full((16, 16), value + i, np.uint8)).save(folder / cls / f"{i}.png")
    with pytest.raises(MribenchError, match="share no task the methods answer"):
        run_benchmark(RunConfig(methods="region-growing", task="segment",
                                dataset=f"synthetic[n=30],folder:{folder}", image_size=16,
                                out=tmp_path / "run", baselines=False))
