"""``bench data``: look at a data set before benchmarking on it."""

from __future__ import annotations

from pathlib import Path

import click

from mribench.cli.options import data_dir_option, image_size_option


@click.group()
def data() -> None:
    """Inspect a data set."""


@data.command(epilog="""\b
Example:
  bench data audit br35h --data-dir ../shared/data/br35h
""")
@click.argument("dataset")
@data_dir_option
@image_size_option
def audit(dataset: str, data_dir: Path | None, image_size: int) -> None:
    """Near-duplicate groups of DATASET and the leakage of each of its split manifests.

    For every committed manifest of the data set (benchmarks/splits/<name>-*.json) it prints
    the part sizes, how many test (and val) images have a near-duplicate in train or val, and
    the shortcut audit: the test accuracy of classifiers that never see the tumour, only each
    image's original size ("size acc"), its background and padding ("acquisition acc") or the
    content around the head ("content acc": background outside the head, exact zeros, head
    framing), beside always answering the commonest training label ("majority"). An accuracy
    well above the majority means a method can score high here without looking at the tumour;
    compare br35h with br35h[harmonise=true] to see what harmonising takes away.
    """
    from collections import Counter

    from tabulate import tabulate

    from mribench.data.load import load_dataset
    from mribench.paths import benchmarks_dir
    from mribench.split import manifest as splits
    from mribench.split.shortcuts import shortcut_audit

    ds, samples = load_dataset(dataset, data_dir=data_dir, image_size=image_size)
    sizes = Counter(s.group for s in samples)
    multi = [n for n in sizes.values() if n > 1]
    click.echo(f"{ds.name}: {len(samples)} labelled images in {len(sizes)} near-duplicate groups "
               f"({len(multi)} groups of 2 or more images holding {sum(multi)} images; "
               f"largest {max(sizes.values(), default=0)})")
    rows = []
    warnings = []
    folder = benchmarks_dir() / "splits"
    for path in sorted(folder.glob(f"{ds.split_name}-*.json")):
        manifest = splits.load_manifest(path)
        report = splits.audit(manifest, samples)
        if report["n_missing"]:  # a manifest made for other options of the data set
            rows.append([path.name, "-", "-", "-",
                         f"not for these data: {report['n_missing']} ids missing", "", "", "", "",
                         "", ""])
            continue
        leaks = report["leaks"]
        counts = manifest.counts
        train, _, test = splits.apply(manifest, samples, source=str(path))
        shortcuts = shortcut_audit(train, test)
        if shortcuts["warning"]:
            warnings.append(f"{path.name}: {shortcuts['warning']}")
        rows.append([path.name, counts["train"], counts["val"], counts["test"],
                     leaks["test_in_train_or_val"], leaks["val_in_train"],
                     *(round(shortcuts[probe]["accuracy"], 3)
                       for probe in ("size_only", "acquisition", "content")),
                     round(shortcuts["majority"], 3), manifest.sha256[:12]])
    if rows:
        click.echo(tabulate(rows, headers=["manifest", "train", "val", "test",
                                           "test w/ dup in train/val", "val w/ dup in train",
                                           "size acc", "acquisition acc", "content acc",
                                           "majority", "sha256"],
                            tablefmt="simple"))
        for line in warnings:
            click.echo(f"warning: {line}")
    else:
        click.echo(f"no committed manifest for {ds.split_name} in {folder}; "
                   f"make one with `bench split make {dataset}`")
