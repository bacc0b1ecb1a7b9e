"""The split a run uses: a committed manifest (or one made on the fly), applied and audited.

Two audits travel with it into run.json's split record: the near-duplicate leakage of the
manifest (:func:`mribench.split.manifest.audit`, key ``audit``) and the shortcut audit of its parts
(:func:`mribench.split.shortcuts.shortcut_audit`, key ``shortcuts``: how well image size or
background alone predicts the test labels).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mribench.api.dataset import Dataset
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


def choose_split(dataset: Dataset, samples: Sequence[Sample], split: str | None, *,
                 seed: int = 0) -> ChosenSplit:
    """Find (or make) the manifest for ``--split`` and cut ``samples`` into its parts."""
    manifest, path = splits.split_for(
        dataset.split_name, samples, split, official_parts=dataset.official_parts(),
        options=dataset.options, seed=seed)
    parts = splits.apply(manifest, samples, source=str(path) if path else None)
    shortcuts = shortcut_audit(parts[0], parts[2], seed=seed)
    return ChosenSplit(manifest, path, parts, splits.audit(manifest, samples), shortcuts)
