"""Disk-backed predictions (:mod:`mribench.api.stack`): a segmenter's masks and maps written to
the job's scratch folder batch by batch, scored and written a chunk at a time with the numbers
of the in-memory stacks, and removed once scored (also when the job fails)."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from mribench.api import registry
from mribench.api import stack as stack_module
from mribench.api.context import Context
from mribench.api.method import SegmentationMethod
from mribench.api.stack import is_on_disk, new_stack, read_rows, write_rows
from mribench.api.thresholds import area_fractions
from mribench.api.types import Prediction, Sample
from mribench.blocks import crf as crf_module
from mribench.blocks.crf import CRFParams, CRFVariant, DenseCRF, crf_available
from mribench.eval.metrics import evaluate
from mribench.results.read import read_predictions
from mribench.results.write import write_prediction
from mribench.run.runner import RunConfig, run_benchmark
from mribench.testing import TruthSegmenter


def _samples(n: int, size: int, seed: int = 0) -> tuple[list[Sample], np.ndarray]:
    """``n`` slices with random masks (every fifth tumour-free without a mask, every seventh
    a tumour slice of unknown truth) and a noisy guess of each mask."""
    rng = np.random.default_rng(seed)
    truths = rng.random((n, size, size)) > 0.8
    samples = []
    for i in range(n):
        label, mask = 1, truths[i]
        if i % 5 == 0:
            label, mask = 0, None
        elif i % 7 == 0:
            mask = None
        samples.append(Sample(id=f"s{i}", group=f"g{i // 3}", label=label,
                              image=np.zeros((size, size), np.float32), mask=mask))
    guesses = truths ^ (rng.random(truths.shape) > 0.9)
    return samples, guesses


def _disk_prediction(folder: Path, ids: list[str], masks: np.ndarray) -> Prediction:
    stack = new_stack(folder, len(masks), masks.shape[1:], bool)
    write_rows(stack, slice(None), masks)
    labels, scores = (area_fractions(stack) > 0.1).astype(int), area_fractions(stack)
    return Prediction(ids=ids, labels=labels, scores=scores, masks=stack)


def test_a_prediction_keeps_a_disk_backed_stack_as_it_is(tmp_path):
    stack = Context(scratch=tmp_path).prediction_stack(3, (4, 5), bool)
    maps = Context(scratch=tmp_path).prediction_stack(3, (4, 5), np.float16)
    write_rows(stack, 1, np.ones((4, 5), bool))
    pred = Prediction(ids=["a", "b", "c"], labels=[0, 1, 0], masks=stack, prob_maps=maps)
    assert pred.masks is stack and pred.prob_maps is maps  # not copied into memory
    assert is_on_disk(pred.masks) and len(list(tmp_path.glob("*.npy"))) == 2
    assert read_rows(pred.masks, [1, 0]).sum() == 20
    # without a scratch folder (tests, bench predict) the stacks are in memory
    assert not is_on_disk(Context().prediction_stack(3, (4, 5), bool))


def test_metrics_and_predictions_from_disk_equal_those_in_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(stack_module, "CHUNK", 7)  # many chunks, one of them partial
    samples, guesses = _samples(60, 12)
    ids = [s.id for s in samples][::-1]  # the prediction's order differs from the samples'
    masks = guesses[::-1].copy()
    in_memory = Prediction(ids=ids, labels=(masks.mean(axis=(1, 2)) > 0.1).astype(int),
                           scores=masks.mean(axis=(1, 2)), masks=masks)
    on_disk = _disk_prediction(tmp_path / "scratch", ids, masks)
    assert is_on_disk(on_disk.masks)
    np.testing.assert_array_equal(on_disk.scores, in_memory.scores)
    tasks = ["classify", "segment"]
    expected = evaluate(in_memory, samples, tasks, n_boot=30, seed=1)
    got = evaluate(on_disk, samples, tasks, n_boot=30, seed=1)
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert got[0]["segment"]["n_empty_by_label"] == 12
    write_prediction(tmp_path / "a", in_memory)
    write_prediction(tmp_path / "b", on_disk)
    a, b = np.load(tmp_path / "a" / "predictions.npz"), np.load(tmp_path / "b" / "predictions.npz")
    assert sorted(a.files) == sorted(b.files)
    for key in a.files:
        assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key
    np.testing.assert_array_equal(b["masks"], np.packbits(masks, axis=-1))
    np.testing.assert_array_equal(read_predictions(tmp_path / "b")[1], masks)


def test_scoring_and_writing_hold_a_chunk_not_the_stack(tmp_path):
    """Scoring and writing 2,000 slices of 64 px from a disk-backed prediction allocate less
    than its masks alone (8 MB; with the maps 41 MB): the truths and guesses are never stacked
    (stacking them, as before, peaked at 24 MB here; chunks of 256 slices take about 4 MB)."""
    n, size = 2000, 64
    samples, guesses = _samples(n, size)
    ids = [s.id for s in samples]
    stack = np.lib.format.open_memmap(tmp_path / "masks.npy", mode="w+", dtype=bool,
                                      shape=guesses.shape)
    stack[:] = guesses
    maps = np.lib.format.open_memmap(tmp_path / "maps.npy", mode="w+", dtype=np.float32,
                                     shape=guesses.shape)
    labels = np.ones(n, int)
    del guesses
    pred = Prediction(ids=ids, labels=labels, masks=stack, prob_maps=maps)
    tracemalloc.start()
    try:
        metrics, per_case = evaluate(pred, samples, ["segment"], n_boot=20, seed=0)
        write_prediction(tmp_path, pred)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    stacked = stack.nbytes + maps.nbytes
    assert metrics["segment"]["n"] == len(per_case) - sum(s.label == 1 and s.mask is None
                                                          for s in samples)
    assert peak < stack.nbytes <= stacked / 5, (peak, stacked)


class DiskOracle(SegmentationMethod):
    """The true masks, written into stacks of the context, with a variant in stacks too;
    records where its stacks were."""

    name = "disk-oracle"
    reference = "test fixture"
    files: ClassVar[list[Path]] = []

    def fit_masks(self, train, val, ctx) -> None:
        self.fitted_ = True

    def predict_masks(self, samples, ctx):
        masks = ctx.prediction_stack(len(samples), samples[0].shape, bool)
        maps = ctx.prediction_stack(len(samples), samples[0].shape, np.float32)
        for i, s in enumerate(samples):
            write_rows(masks, i, s.mask_or_empty())
            write_rows(maps, i, s.mask_or_empty())
        DiskOracle.files += [Path(masks.filename), Path(maps.filename)]
        return masks, maps

    def predict_variants(self, samples, masks, probs, ctx):
        empty = ctx.prediction_stack(len(samples), masks.shape[1:], bool)
        DiskOracle.files.append(Path(empty.filename))
        return {"empty": (empty, None)}


class DiskCrash(DiskOracle):
    name = "disk-crash"

    def predict(self, samples, ctx):
        super().predict(samples, ctx)
        raise RuntimeError("failed after predicting")


class MemoryOracle(TruthSegmenter):
    name = "memory-oracle"


@pytest.fixture
def disk_registry(monkeypatch):
    table = {"disk-oracle": DiskOracle, "disk-crash": DiskCrash, "memory-oracle": MemoryOracle}
    monkeypatch.setattr(registry, "methods", lambda: table)
    DiskOracle.files.clear()
    return table


def test_a_run_scores_disk_stacks_then_removes_them(tmp_path, disk_registry):
    config = dict(methods="disk-oracle,disk-crash,memory-oracle", dataset="synthetic[n=40]",
                  image_size=32, n_boot=20, out=tmp_path / "run", results_root=tmp_path)
    status = {r.name: r.status for r in run_benchmark(RunConfig(**config)).rows}
    assert status == {"disk-oracle": "done", "disk-oracle+empty": "done",
                      "disk-crash": "failed", "memory-oracle": "done"}
    # val (in fit) and test stacks of both jobs were files in the job's scratch folder ...
    assert len(DiskOracle.files) == 12
    assert {p.parent.name for p in DiskOracle.files} == {".scratch"}
    assert {p.parent.parent.parent.name for p in DiskOracle.files} == {"disk-oracle",
                                                                       "disk-crash"}
    # ... all gone, also after the failing job
    run = tmp_path / "run"
    assert not list(run.rglob(".scratch"))
    assert not any(p.exists() for p in DiskOracle.files)
    # a resumed run reruns the failed job in a clean scratch folder: a killed try's leftover
    # is removed before it predicts
    left = run / "disk-crash" / "seed-0" / ".scratch" / "left.npy"
    left.parent.mkdir()
    left.write_bytes(b"a killed try's stack")
    DiskOracle.files.clear()
    rerun = run_benchmark(RunConfig(**config, resume=True))
    assert {r.name: r.status for r in rerun.rows}["disk-crash"] == "failed"
    assert len(DiskOracle.files) == 6 and not left.exists()
    assert not list(run.rglob(".scratch"))
    disk = json.loads((run / "disk-oracle" / "seed-0" / "metrics.json").read_text())
    memory = json.loads((run / "memory-oracle" / "seed-0" / "metrics.json").read_text())
    assert disk["tasks"] == memory["tasks"]
    assert disk["tasks"]["segment"]["metrics"]["f1"]["value"] == pytest.approx(1.0)
    ids, masks = read_predictions(run / "disk-oracle" / "seed-0")
    assert masks is not None and masks.shape == (len(ids), 32, 32) and masks.any()
    ids, masks = read_predictions(run / "disk-oracle+empty" / "seed-0")
    assert masks is not None and not masks.any()


class _NoisyTruth(CRFVariant, SegmentationMethod):
    """A stand-in segmenter with maps: a noisy copy of the truth (seeded per slice)."""

    name = "noisy-truth"
    reference = "test fixture"

    def fit_masks(self, train, val, ctx) -> None:
        self.fitted_ = True

    def predict_masks(self, samples, ctx):
        probs = np.stack([np.clip(0.2 + 0.55 * s.mask_or_empty() + 0.22 * np.random.default_rng(
            int(s.id[1:])).standard_normal(s.shape), 0, 1) for s in samples]).astype(np.float32)
        return probs > 0.5, probs


@pytest.mark.skipif(not crf_available(), reason="pydensecrf is not installed")
def test_the_crf_row_chosen_and_refined_in_chunks_equals_the_stacked_one(tmp_path, monkeypatch):
    monkeypatch.setattr(crf_module, "_CRF_CHUNK", 5)  # val and test in chunks of 5 slices
    size, n = 20, 40  # more val slices than the search takes (crf_max_images, 32)
    yy, xx = np.mgrid[:size, :size]
    rng = np.random.default_rng(2)
    samples = []
    for i in range(n):
        cy, cx = rng.integers(6, 14, 2)
        truth = ((yy - cy) ** 2 + (xx - cx) ** 2 <= 16) & (i % 4 != 0)
        image = (np.where(truth, 0.8, 0.3) + 0.01 * rng.standard_normal((size, size)))
        samples.append(Sample(id=f"s{i}", group=f"g{i}", label=int(i % 4 != 0),
                              image=image.astype(np.float32), mask=truth))
    method = _NoisyTruth()
    method.fit(samples[:4], samples, Context(scratch=tmp_path / "fit"))
    # what fit_variants did with the whole val stack in memory
    _, probs = method.predict_masks(samples, Context())
    images = np.stack([s.image for s in samples])
    truths = np.stack([s.mask for s in samples])
    stacked = DenseCRF(CRFParams(iterations=5), max_images=32, seed=0).fit(probs, images, truths)
    assert method.crf_.params_ == stacked.params_ and len(stacked.search_) == 12
    assert method.crf_.search_ == stacked.search_
    assert method.crf_.raw_dice_ == stacked.raw_dice_
    on_disk = method.predict(samples, Context(scratch=tmp_path / "predict")).variants["crf"]
    in_memory = method.predict(samples, Context()).variants["crf"]
    assert is_on_disk(on_disk.masks) and is_on_disk(on_disk.prob_maps)
    np.testing.assert_array_equal(on_disk.masks, in_memory.masks)
    np.testing.assert_array_equal(on_disk.prob_maps, in_memory.prob_maps)
    np.testing.assert_array_equal(on_disk.scores, in_memory.scores)
    np.testing.assert_array_equal(in_memory.masks, stacked.refine(probs, images)[0])
