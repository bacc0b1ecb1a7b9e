"""``bench split``: make split manifests."""

from __future__ import annotations

from pathlib import Path

import click

from mribench.api.errors import MribenchError
from mribench.cli.options import data_dir_option, image_size_option, seed_option


@click.group()
def split() -> None:
    """Make split manifests (benchmarks/splits/)."""


@split.command(epilog="""\b
Examples:
  bench split make br35h --data-dir ../shared/data/br35h --strategy leak-free
  bench split make folder:~/my-mri --out my-split.json
""")
@click.argument("dataset")
@data_dir_option
@image_size_option
@click.option("--strategy", type=click.Choice(["stratified", "official", "leak-free"]),
              default=None, help="Default: leak-free where the data set has a published split, "
                                 "else stratified.")
@seed_option
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Near-duplicate correlation threshold the groups use (the data set's default).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Where to write (default: benchmarks/splits/<dataset>-<strategy>.json).")
def make(dataset: str, data_dir: Path | None, image_size: int, strategy: str | None, seed: int,
         threshold: float | None, out: Path | None) -> None:
    """Make and save the split manifest of DATASET."""
    from mribench.api.specs import DatasetSpec
    from mribench.data.load import load_dataset
    from mribench.split import manifest as splits
    from mribench.split.choose import check_groups

    spec = DatasetSpec.parse(dataset)
    if threshold is not None:
        spec = spec.with_options(threshold=threshold)
    ds, samples = load_dataset(spec, data_dir=data_dir, image_size=image_size)
    check_groups(ds, samples)
    official = ds.official_parts()
    strategy = strategy or splits.default_strategy(official)
    used_threshold = float(ds.options.get("threshold", splits.DEFAULT_THRESHOLD))
    manifest = splits.make_split(ds.split_name, samples, official, strategy, seed,
                                 used_threshold, ds.options)
    default = splits.manifest_path(ds.split_name, strategy)
    if out is None and default.exists():
        raise MribenchError(f"{default} exists (a committed split other runs are compared "
                            "on); write yours with --out FILE and run with --split FILE")
    path = splits.save_manifest(manifest, out or default)
    leaks = splits.audit(manifest, samples)["leaks"]
    counts = manifest.counts
    click.echo(f"wrote {path}: train {counts['train']}, val {counts['val']}, test "
               f"{counts['test']}, dropped {len(manifest.dropped)}; test images with a "
               f"near-duplicate in train/val: {leaks['test_in_train_or_val']}; "
               f"sha256 {manifest.sha256[:12]}")
