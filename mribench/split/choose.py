"""The split a run uses: a committed manifest (or one made on the fly), applied and audited.

Two audits travel with it into run.json's split record: the near-duplicate leakage of the
manifest (:func:`mribench.split.manifest.audit`, key ``audit``) and the shortcut audit of its parts
(:func:`mribench.split.shortcuts.shortcut_audit`, key ``shortcuts``: how well image size or
background alone predicts the test labels).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mribench.api.dataset import Dataset
from mribench.api.errors import DataError
from mribench.api.types import Sample
from mribench.split import manifest as splits
from mribench.split.shortcuts import shortcut_audit


@dataclass
class ChosenSplit:
    """A manifest with its parts, file (None when made on the fly), leakage and shortcut audits."""

    manifest: splits.Manifest
    path: Path | None
    parts: tuple[list[Sample], list[Sample], list[Sample]]
    audit: dict[str, Any]
    shortcuts: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return self.manifest.sha256

    @property
    def save_copy(self) -> bool:
        """A manifest made on the fly is saved beside the results, so the run can be repeated."""
        return self.path is None

    def describe(self) -> dict[str, Any]:
        return {
            "name": f"{self.manifest.dataset}-{self.manifest.strategy}",
            "path": str(self.path) if self.path else "split.json (made for this run)",
            "sha256": self.sha256,
            "strategy": self.manifest.strategy,
            "seed": self.manifest.seed,
            "threshold": self.manifest.threshold,
            "counts": {k: len(v) for k, v in zip(("train", "val", "test"), self.parts,
                                                  strict=True)},
            "dropped": len(self.manifest.dropped),
            "audit": self.audit,
            "shortcuts": self.shortcuts,
        }


def check_parts(name: str, parts: tuple[list[Sample], list[Sample], list[Sample]],
                tasks: Collection[str] | None = None) -> None:
    """Fail at start-up, in one line, on parts no method can train or be scored on.

    Train, val and test must each hold an image. Where the run scores ``segment``, some train
    mask must hold a tumour pixel. Where it scores ``classify`` (segmenters answer it too),
    train and test must each hold both classes. ``tasks=None`` means both tasks, the segment
    check then applying only when a train sample has a mask (a data set of class folders has
    none, and its segmenters are skipped).
    """
    counts = ", ".join(f"{p} {len(s)}" for p, s in zip(splits.PARTS, parts, strict=True))
    for part, members in zip(splits.PARTS, parts, strict=True):
        if not members:
            raise DataError(
                f"data set {name!r}: the split's {part} part is empty ({counts}); add images "
                "(each part needs images of both classes, so at least about 20 labelled "
                "images), or pass --split a manifest whose parts are all non-empty")
    if tasks is None or "segment" in tasks:
        masks = [s.mask for s in parts[0] if s.mask is not None]
        if (masks or tasks is not None) and not any(m.any() for m in masks):
            raise DataError(
                f"data set {name!r}: no train image has a tumour pixel in its mask ({len(masks)} "
                f"of {len(parts[0])} train images have a mask, all empty); segmentation cannot "
                "learn from that: check the mask files (0/1 or 0/255), or run --task classify")
    if tasks is None or "classify" in tasks:
        for part, members in (("train", parts[0]), ("test", parts[2])):
            labels = {s.label for s in members}
            if not {0, 1} <= labels:
                have = "tumour" if 1 in labels else "no-tumour"
                raise DataError(
                    f"data set {name!r}: the split's {part} part holds only {have} images "
                    f"({counts}); classification needs both classes in train and test: add "
                    "images of the other class")


def check_groups(dataset: Dataset, samples: Sequence[Sample]) -> None:
    """Fail in one line when a data set grouped by patient (or case) has a single one.

    Applies to data sets whose class declares ``group_kind`` (``"patient"`` for LGG,
    ``"case"`` for BraTS): their groups are whole volumes, and one volume cannot give a
    train and a test part without putting neighbouring slices of one patient on both sides.
    """
    kind = getattr(dataset, "group_kind", None)
    if kind is None:
        return
    groups = sorted({s.group or s.id for s in samples if s.label in (0, 1)})
    if len(groups) < 2:
        raise DataError(
            f"data set {dataset.split_name!r}: every labelled slice comes from one {kind} "
            f"({groups[0] if groups else 'none'}); a single {kind} cannot be split by patient "
            f"(train and test would share it): give a folder of several {kind}s, or use it "
            "as an evaluation set (--test-on)")


def choose_split(dataset: Dataset, samples: Sequence[Sample], split: str | None, *,
                 seed: int = 0, tasks: Collection[str] | None = None) -> ChosenSplit:
    """Find (or make) the manifest for ``--split`` and cut ``samples`` into its parts.

    The parts are checked by :func:`check_parts` for ``tasks`` (the tasks the run scores;
    None: both), so an empty part or a missing class fails here, not inside a method.
    """
    check_groups(dataset, samples)
    manifest, path = splits.split_for(
        dataset.split_name, samples, split, official_parts=dataset.official_parts(),
        # split_options: the options ids and groups depend on (Br35H leaves harmonise out)
        options=getattr(dataset, "split_options", dataset.options), seed=seed)
    parts = splits.apply(manifest, samples, source=str(path) if path else None)
    check_parts(dataset.split_name, parts, tasks)
    shortcuts = shortcut_audit(parts[0], parts[2], seed=seed)
    return ChosenSplit(manifest, path, parts, splits.audit(manifest, samples), shortcuts)
