"""``bench export``: a trained deep row as an ONNX or TorchScript graph plus its spec."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("export", epilog="""\b
Examples:
  bench export results/RUN/unet --format onnx --out deploy/unet
  bench export results/RUN/two-pathway-cnn+crf --format torchscript --out deploy/tp-crf
  bench predict deploy/unet --engine onnx --images scans/ --out preds/""")
@click.argument("row", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["onnx", "torchscript"]), default="onnx",
              show_default=True, help="Graph format of the exported network(s).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write the network file(s), spec.json and pipeline/ to (new, "
                   "empty, or an earlier export, which is replaced).")
@click.option("--synthetic", is_flag=True,
              help="Verify on synthetic slices even when the row's run kept test slices.")
def export(row: Path, fmt: str, out_dir: Path, synthetic: bool) -> None:
    """Export the deep row ROW (results/<run>/<row>, a job folder or a model/ folder).

    The network runs as a graph (dynamic batch axis); spec.json beside it gives every step
    around it (resizing, normalisation, features, thresholds, logit offsets, CRF) and which
    parts run outside the graph. Before anything is written the graph is checked against
    torch on the run's test slices (synthetic slices when the run kept none): logits within
    1e-4 and identical labels and masks, else exit status 1. Classical rows are not exported
    (their handcrafted features are not ONNX operators).
    """
    from mribench.model.export import ExportMismatch, export_model
    from mribench.results.read import find_model, row_test_images

    ref = find_model(row)
    images, where = ([], "") if synthetic else row_test_images(row)
    try:
        result = export_model(ref, out_dir, fmt, images=images or None, images_from=where,
                              source={"row": str(row.resolve())})
    except ExportMismatch as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    check = result.spec["verification"]
    click.echo(f"{result.spec['row']}: exported to {out_dir} ({', '.join(result.files)}); "
               f"on {check['images']} {check['images_from']}: max |logit difference| "
               f"{check['max_abs_diff_logits']:.1e} vs torch, same labels and masks")
