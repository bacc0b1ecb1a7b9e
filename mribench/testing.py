"""Test helpers: a small fabricated results folder, written by the real writer.

For tests and for previewing the report without running a benchmark:
``make_fake_results(tmp_path / "run")`` writes, through :class:`~mribench.results.write.RunWriter`
(so in the runner's layout), ``run.json``, three finished rows (a classifier, a segmenter with
training curves and its ``+crf`` variant), a failed and a skipped row, and the montage slices.
The numbers are produced by :func:`mribench.eval.metrics.evaluate` on fabricated predictions,
so they are consistent with the per-case records. Nothing here claims to be a real result:
``run.json`` says ``"dataset": {"name": "fake"}``.

:func:`~mribench.data.synthetic_brats.write_synthetic_brats` (re-exported here) writes synthetic
BraTS-layout cases (NIfTI, four modalities and a labelled seg) for the ``brats`` loader.

:class:`TruthSegmenter` is a segmenter that answers the true masks (the runner's bookkeeping
tests subclass it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from mribench.api.context import Context
from mribench.api.method import SegmentationMethod
from mribench.api.types import Prediction, Sample
from mribench.data.synthetic_brats import write_synthetic_brats  # re-exported for tests
from mribench.eval.metrics import evaluate
from mribench.results.layout import JobKey
from mribench.results.write import RunWriter

__all__ = ["TruthSegmenter", "make_fake_results", "write_synthetic_brats"]


class TruthSegmenter(SegmentationMethod):
    """A test segmenter: fits nothing and predicts each slice's true mask (its map: the mask
    as float32), so every segmentation metric of a run is known in advance."""

    name = "truth-segmenter"
    reference = "test fixture"

    def fit_masks(self, train: list[Sample], val: list[Sample], ctx: Context) -> None:
        self.fitted_ = True

    def predict_masks(self, samples: list[Sample], ctx: Context
                      ) -> tuple[np.ndarray, np.ndarray]:
        masks = np.stack([s.mask_or_empty() for s in samples])
        return masks, masks.astype(np.float32)


def _slices(n: int, size: int, rng: np.random.Generator) -> list[Sample]:
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1) * 2 - 1
    samples = []
    for i in range(n):
        label = int(i % 2 == 0)
        head = (xx / 0.8) ** 2 + (yy / 0.9) ** 2 < 1
        image = 0.45 * head + 0.15 * head * np.sin(6 * xx + 4 * yy + i) ** 2
        mask = None
        if label:
            cy, cx = rng.uniform(-0.4, 0.4, 2)
            ry, rx = rng.uniform(0.12, 0.3, 2)
            mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
            image = image + 0.35 * mask
        image = np.clip(image + rng.normal(0, 0.04, image.shape), 0, 1).astype(np.float32)
        sid = f"{'yes' if label else 'no'}/fake{i:03d}"
        samples.append(Sample(sid, sid, label, image, mask, source="fake", original_size=(size,
                                                                                          size)))
    return samples


def _segmenter(samples: list[Sample], rng: np.random.Generator, quality: float,
               ids: list[str]) -> Prediction:
    masks = np.zeros((len(samples), *samples[0].image.shape), bool)
    for k, s in enumerate(samples):
        if s.mask is not None:
            grown = ndi.binary_dilation(s.mask, iterations=int(rng.integers(1, 3)))
            shifted = np.roll(grown, int(rng.integers(-3, 4) * (1 - quality)), axis=1)
            masks[k] = shifted if rng.random() < quality + 0.1 else ndi.binary_erosion(
                shifted, iterations=3)
        elif rng.random() > quality:  # a false positive blob on a healthy slice
            masks[k, 10:16, 20:27] = True
    area = masks.reshape(len(samples), -1).mean(axis=1)
    return Prediction(ids=ids, labels=(area > 0).astype(int), scores=area, masks=masks)


def _status(row: str, status: str, reason: str | None, *, kind: str, tasks: list[str],
            reference: str, fit_s: float | None = None, variant: str | None = None
            ) -> dict[str, Any]:
    timings = {} if fit_s is None else {"fit_s": fit_s, "predict_s": fit_s / 20,
                                        "predict_ms_per_image": fit_s * 2.5}
    return {"status": status, "reason": reason, "method": row.split("+")[0], "variant": variant,
            "kind": kind, "tasks": tasks, "reference": reference, "params": {"seed": 0},
            "timings": timings}


def make_fake_results(path: str | Path, *, n_test: int = 40, size: int = 64,
                      seed: int = 0) -> Path:
    """Write a fabricated results folder at ``path`` and return it."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    samples = _slices(n_test, size, rng)
    ids = [s.id for s in samples]
    labels = np.array([s.label for s in samples])
    rows: dict[str, Prediction] = {}

    truth_score = labels + rng.normal(0, 0.6, n_test)
    rows["glcm-svm"] = Prediction(ids=ids, labels=(truth_score > 0.5).astype(int),
                                  scores=truth_score)
    rows["unet"] = _segmenter(samples, rng, 0.85, ids)
    rows["unet+crf"] = _segmenter(samples, rng, 0.9, ids)

    writer = RunWriter(path)
    path.mkdir(parents=True, exist_ok=True)
    writer.layout.split_file.write_text("fake split\n")
    manifest_hash = hashlib.sha256(b"fake split\n").hexdigest()
    writer.write_run({
        "run_id": path.name, "command": "bench run --method all --dataset fake",
        "argv": ["bench", "run", "--method", "all", "--dataset", "fake"],
        "versions": {"python": "3.11", "mribench": "0.1.0", "numpy": np.__version__},
        "git_revision": "0" * 40, "device": "cpu", "seed": seed, "seeds": [seed],
        "profile": "quick", "image_size": size,
        "dataset": {"name": "fake", "spec": "fake", "data_dir": None, "n_samples": n_test * 5},
        "split": {"name": "fake-unified", "path": str(writer.layout.split_file),
                  "sha256": manifest_hash, "strategy": "unified", "seed": seed,
                  "threshold": 4, "counts": {"train": n_test * 3, "val": n_test, "test": n_test},
                  "audit": {"groups_across_train_test": 0, "near_duplicates_train_test": 0}},
        "methods": ["glcm-svm", "unet", "unet+crf", "two-pathway-cnn", "fcm-cluster"],
        "started": "2024-01-01T00:00:00Z", "ended": "2024-01-01T00:05:00Z", "status": "done",
    })
    writer.write_test_images(ids, np.stack([s.image for s in samples]),
                             np.stack([s.mask_or_empty() for s in samples]), labels,
                             has_mask=np.array([s.mask is not None for s in samples]))

    specs = {
        "glcm-svm": dict(kind="classical", tasks=["classify"], fit_s=1.2,
                         reference="Fake et al., GLCM + SVM, 2020"),
        "unet": dict(kind="deep", tasks=["segment", "classify"], fit_s=42.0,
                     reference="Fake et al., U-Net on fake slices, 2021"),
        "unet+crf": dict(kind="deep", tasks=["segment", "classify"], fit_s=42.0,
                         reference="Fake et al., U-Net on fake slices, 2021", variant="crf"),
    }
    for row, pred in rows.items():
        spec = specs[row]
        key = JobKey(row, seed)
        tasks, per_case = evaluate(pred, samples, spec["tasks"], n_boot=200, seed=seed)
        writer.write_scores(key, row, tasks, per_case, pred)
        writer.write_log(key, f"{row}: fabricated\n")
        if spec["kind"] == "deep":
            epochs = np.arange(1, 13)
            writer.write_history(key, [
                {"epoch": int(e), "train_loss": float(0.9 * np.exp(-e / 4) + 0.1),
                 "val_loss": float(0.85 * np.exp(-e / 5) + 0.18 + 0.004 * e),
                 "val_metric": float(0.8 - 0.6 * np.exp(-e / 3))} for e in epochs])
        fields = _status(row, "done", None, **spec)
        writer.write_status(key, fields.pop("status"), seed=seed, **fields)

    failed = JobKey("two-pathway-cnn", seed)
    writer.write_traceback(failed, "Traceback (most recent call last):\n  ...\n"
                           "RuntimeError: CUDA out of memory\n")
    fields = _status("two-pathway-cnn", "failed", "RuntimeError: CUDA out of memory",
                     kind="deep", tasks=["segment", "classify"],
                     reference="Havaei et al., Medical Image Analysis, 2017")
    writer.write_status(failed, fields.pop("status"), seed=seed, **fields)
    fields = _status("fcm-cluster", "skipped",
                     "needs the Python package 'skfuzzy': pip install scikit-fuzzy",
                     kind="classical", tasks=["segment", "classify"],
                     reference="Fake, FCM, 2019")
    writer.write_status(JobKey("fcm-cluster", seed), fields.pop("status"), seed=seed, **fields)
    return path
