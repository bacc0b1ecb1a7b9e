"""The data audit (``bench data audit``): a data set's near-duplicate groups, and the leakage
and shortcuts of each of its committed split manifests.

:func:`audit_dataset` loads the data set and audits every manifest of
``benchmarks/splits/<split name>-*.json``: its part sizes, how many test (and val) images have
a near-duplicate in train or val (:func:`mribench.split.manifest.audit`), and the shortcut
audit (:func:`mribench.split.shortcuts.shortcut_audit`): the test accuracy of classifiers that
never see the tumour, only each image's original size, its background and padding, or the
content around the head, beside always answering the commonest training label. A manifest
made for other options of the data set (ids it lacks) is listed but not audited.
:func:`format_audit` renders the result as the plain-text table the command prints.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mribench.api.types import Sample
from mribench.data.load import load_dataset
from mribench.paths import benchmarks_dir
from mribench.split import manifest as splits
from mribench.split.shortcuts import shortcut_audit

__all__ = ["PROBES", "DatasetAudit", "ManifestAudit", "audit_dataset", "format_audit"]

#: The shortcut probes the audit reports, in table order.
PROBES: tuple[str, ...] = ("size_only", "acquisition", "content")


@dataclass(frozen=True)
class ManifestAudit:
    """One committed manifest on the data.

    ``n_missing`` > 0: the manifest names ids the data set lacks (made for other options of
    it), and the other fields are None. Otherwise ``counts`` (part -> images),
    ``test_in_train_or_val`` and ``val_in_train`` (images with a near-duplicate there),
    ``shortcut_accuracy`` (probe of :data:`PROBES` -> test accuracy), ``majority`` (accuracy
    of the commonest training label) and ``warning`` (the shortcut audit's, "" if none).
    """

    file: str
    sha256: str
    n_missing: int
    counts: dict[str, int] | None = None
    test_in_train_or_val: int | None = None
    val_in_train: int | None = None
    shortcut_accuracy: dict[str, float] | None = None
    majority: float | None = None
    warning: str = ""


@dataclass(frozen=True)
class DatasetAudit:
    """A data set's near-duplicate groups and the audit of each of its committed manifests
    (sorted by file name, looked for in ``folder``)."""

    spec: str
    name: str
    split_name: str
    n_images: int
    n_groups: int
    n_multi_groups: int       # groups of 2 or more images
    n_in_multi_groups: int    # images in those groups
    largest_group: int
    folder: Path
    manifests: tuple[ManifestAudit, ...]


def audit_dataset(spec: str, *, data_dir: Path | str | None = None,
                  image_size: int) -> DatasetAudit:
    """Audit the data set ``spec`` (loaded from ``data_dir`` at ``image_size``) and its
    committed manifests; see the module docstring."""
    ds, samples = load_dataset(spec, data_dir=data_dir, image_size=image_size)
    sizes = Counter(s.group for s in samples)
    multi = [n for n in sizes.values() if n > 1]
    folder = benchmarks_dir() / "splits"
    manifests = tuple(_audit_manifest(path, samples)
                      for path in sorted(folder.glob(f"{ds.split_name}-*.json")))
    return DatasetAudit(spec=spec, name=ds.name, split_name=ds.split_name,
                        n_images=len(samples), n_groups=len(sizes), n_multi_groups=len(multi),
                        n_in_multi_groups=sum(multi), largest_group=max(sizes.values(), default=0),
                        folder=folder, manifests=manifests)


def _audit_manifest(path: Path, samples: Sequence[Sample]) -> ManifestAudit:
    manifest = splits.load_manifest(path)
    report = splits.audit(manifest, samples)
    if report["n_missing"]:  # a manifest made for other options of the data set
        return ManifestAudit(path.name, manifest.sha256, int(report["n_missing"]))
    leaks = report["leaks"]
    train, _, test = splits.apply(manifest, samples, source=str(path))
    shortcuts = shortcut_audit(train, test)
    return ManifestAudit(
        path.name, manifest.sha256, 0, counts=dict(manifest.counts),
        test_in_train_or_val=leaks["test_in_train_or_val"], val_in_train=leaks["val_in_train"],
        shortcut_accuracy={probe: shortcuts[probe]["accuracy"] for probe in PROBES},
        majority=shortcuts["majority"], warning=shortcuts["warning"] or "")


def format_audit(audit: DatasetAudit) -> str:
    """The audit as plain text: a summary line, then one table row per manifest and the
    shortcut warnings (or how to make a first manifest)."""
    from tabulate import tabulate

    lines = [f"{audit.name}: {audit.n_images} labelled images in {audit.n_groups} near-duplicate "
             f"groups ({audit.n_multi_groups} groups of 2 or more images holding "
             f"{audit.n_in_multi_groups} images; largest {audit.largest_group})"]
    if not audit.manifests:
        lines.append(f"no committed manifest for {audit.split_name} in {audit.folder}; "
                     f"make one with `bench split make {audit.spec}`")
        return "\n".join(lines)
    rows = [_table_row(m) for m in audit.manifests]
    lines.append(tabulate(rows, headers=["manifest", "train", "val", "test",
                                         "test w/ dup in train/val", "val w/ dup in train",
                                         "size acc", "acquisition acc", "content acc",
                                         "majority", "sha256"],
                          tablefmt="simple"))
    lines += [f"warning: {m.file}: {m.warning}" for m in audit.manifests if m.warning]
    return "\n".join(lines)


def _table_row(m: ManifestAudit) -> list[object]:
    if m.n_missing or m.counts is None or m.shortcut_accuracy is None or m.majority is None:
        return [m.file, "-", "-", "-", f"not for these data: {m.n_missing} ids missing",
                "", "", "", "", "", ""]
    return [m.file, m.counts["train"], m.counts["val"], m.counts["test"],
            m.test_in_train_or_val, m.val_in_train,
            *(round(m.shortcut_accuracy[probe], 3) for probe in PROBES),
            round(m.majority, 3), m.sha256[:12]]
