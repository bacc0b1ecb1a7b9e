"""The split a run uses: a committed manifest (or one made on the fly), applied and audited."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import splits
from .dataset import Dataset
from .types import Sample


@dataclass
class ChosenSplit:
    """A manifest with its parts, file (None when made on the fly) and leakage audit."""

    manifest: splits.Manifest
    path: Path | None
    parts: tuple[list[Sample], list[Sample], list[Sample]]
    audit: dict[str, Any]

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
        }


def choose_split(dataset: Dataset, samples: Sequence[Sample], split: str | None, *,
                 seed: int = 0) -> ChosenSplit:
    """Find (or make) the manifest for ``--split`` and cut ``samples`` into its parts."""
    manifest, path = splits.split_for(
        dataset.split_name, samples, split, official_parts=dataset.official_parts(),
        options=dataset.options, seed=seed)
    parts = splits.apply(manifest, samples, source=str(path) if path else None)
    return ChosenSplit(manifest, path, parts, splits.audit(manifest, samples))
