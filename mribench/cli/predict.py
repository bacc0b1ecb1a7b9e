"""``bench predict``: apply a saved pipeline to a folder of images."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("predict", epilog="""\b
Examples:
  bench predict results/RUN/glcm-knn --images ../shared/data/br35h/pred --out preds/
  bench predict results/RUN/unet/model --images scans/ --out preds-unet/
  bench predict results/RUN/two-pathway-cnn+crf --images scans/ --out preds-crf/
  bench predict deploy/unet --engine onnx --images scans/ --out preds-onnx/""")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--images", required=True, type=click.Path(exists=True, path_type=Path),
              help="An image file or a folder of images (read recursively).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write predictions.csv, masks/, overlays/ and index.html to.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu",
              show_default=True, help="Where deep methods run.")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=64, show_default=True,
              help="Images per predict call.")
@click.option("--gallery-max", type=click.IntRange(0, 100000), default=500, show_default=True,
              help="At most this many images in index.html.")
@click.option("--engine", type=click.Choice(["torch", "onnx", "torchscript"]), default="torch",
              show_default=True, help="What runs the networks: torch (a results row or model "
                                      "folder) or an exported folder of bench export.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def predict(model_dir: Path, images: Path, out_dir: Path, device: str, batch_size: int,
            gallery_max: int, engine: str, quiet: bool) -> None:
    """Predict every image under --images with the model of MODEL_DIR.

    MODEL_DIR is a result row folder (results/<run>/<row>, holding model/), the model/ folder
    itself, or a variant row such as results/<run>/two-pathway-cnn+crf; with --engine onnx or
    torchscript, a folder written by bench export. Images are resized as at training. Unreadable files are reported and skipped (exit status 1 at the end).
    """
    from mribench.model.predict import predict_folder
    from mribench.results.read import find_model

    model = find_model(model_dir) if engine == "torch" else model_dir
    result = predict_folder(model, images, out_dir, device=device, engine=engine,
                            batch_size=batch_size,
                            show_progress=not quiet and sys.stderr.isatty(),
                            gallery_max=gallery_max,
                            log=lambda line: click.echo(line, err=True))
    n = len(result.labels)
    positives = sum(result.labels.values())
    click.echo(f"{result.method}: {n} images predicted ({positives} tumour, {n - positives} "
               f"none) -> {out_dir / 'predictions.csv'}, gallery {out_dir / 'index.html'}")
    if result.skipped:
        click.echo(f"{len(result.skipped)} file(s) skipped (see {out_dir / 'skipped.csv'}):",
                   err=True)
        for name, _reason in result.skipped:
            click.echo(f"  {name}", err=True)
        sys.exit(1)
