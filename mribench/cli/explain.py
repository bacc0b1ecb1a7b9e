"""``bench explain``: explanation maps of a saved model, scored against tumour masks."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("explain", epilog="""\b
Examples:
  bench explain results/RUN/cnn --images slices/ --masks masks/ --out explain-cnn/
  bench explain results/RUN/glcm-knn --images slices/ --out explain-knn/ --patch 24 --stride 12""")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--images", required=True, type=click.Path(exists=True, path_type=Path),
              help="An image file or a folder of images (read recursively).")
@click.option("--masks", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Folder of tumour masks named like the images (optionally "
                                 "ending in _mask): the maps are scored on those slices.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for maps.npz, attribution.json/.csv and montage-<kind>.png.")
@click.option("--kind", "kinds", type=click.Choice(["occlusion", "gradcam"]), multiple=True,
              help="Maps to compute (repeat for both); default: every kind the method has "
                   "(Grad-CAM only for cnn, fcm-cnn and unet; asking it of another method is "
                   "an error).")
@click.option("--patch", type=click.IntRange(1, 4096), default=32, show_default=True,
              help="Occlusion patch side in pixels (at the model's image size).")
@click.option("--stride", type=click.IntRange(1, 4096), default=16, show_default=True,
              help="Occlusion stride in pixels.")
@click.option("--fill", default="mean", show_default=True,
              help="Occluding value: a number in [0, 1] or 'mean' (the slice's mean).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu",
              show_default=True, help="Where deep methods run.")
@click.option("--n-boot", type=click.IntRange(0, 100000), default=1000, show_default=True,
              help="Bootstrap resamples of the 95% intervals.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def explain(model_dir: Path, images: Path, masks: Path | None, out_dir: Path, kinds: tuple,
            patch: int, stride: int, fill: str, device: str, n_boot: int, quiet: bool) -> None:
    """Occlusion (every method) and Grad-CAM (CNNs) maps of the model of MODEL_DIR.

    With --masks, each map is scored on the slices with a tumour: the share of its positive
    attribution inside the tumour and the pointing game, with 95% bootstrap intervals, beside
    a random map's expected values (the tumour's area fraction). How many images matched a
    mask is reported; none matching is an error. A score that is NaN says why.
    """
    from mribench.api.errors import MribenchError
    from mribench.model.explain import explain_folder
    from mribench.results.read import find_model

    try:
        fill_value: float | str = fill if fill == "mean" else float(fill)
    except ValueError:
        raise MribenchError(f"--fill must be a number or 'mean', got {fill!r}") from None
    if fill_value != "mean" and not 0 <= fill_value <= 1:
        raise MribenchError(f"--fill must be a number in [0, 1] or 'mean', got {fill!r}")
    result, skipped = explain_folder(
        find_model(model_dir), images, out_dir, masks=masks, kinds=kinds or None, patch=patch,
        stride=stride, fill=fill_value, device=device, n_boot=n_boot,
        show_progress=not quiet and sys.stderr.isatty(),
        log=lambda line: click.echo(line, err=True))
    for kind in result.maps:
        click.echo(_summary_line(kind, result))
    click.echo(f"written: {', '.join(str(out_dir / name) for name in result.written)}")
    if skipped:
        click.echo(f"{len(skipped)} file(s) skipped:", err=True)
        for name, _ in skipped:
            click.echo(f"  {name}", err=True)
        sys.exit(1)


def _interval(entry: dict) -> str:
    """``mean [low, high]`` of a score entry, with its reason when some slices are NaN."""
    text = (f"{entry['mean']:.3f} [{entry['ci_low']:.3f}, {entry['ci_high']:.3f}]"
            if entry["mean"] == entry["mean"] else "nan")
    return text + (f" ({entry['reason']})" if entry.get("reason") else "")


def _summary_line(kind: str, result) -> str:
    """One line per kind: maps made, and their scores against the masks when there are any."""
    line = f"{kind}: {len(result.maps[kind])} maps ({result.seconds[kind]:.1f} s)"
    scores = result.scores.get(kind)
    if scores is None:
        return line
    if not scores["n_slices"]:
        return line + "; no tumour in the matched masks: nothing to score"
    s, p, r = (scores[k] for k in ("positive_share", "pointing", "random_baseline"))
    line += (f"; on {scores['n_slices']} tumour slices: share inside {_interval(s)}, "
             f"pointing {_interval(p)}, random map {r['mean']:.3f}")
    for name, base in (scores.get("baselines") or {}).items():
        if name != "random":
            line += (f"; {name} map: share {_interval(base['positive_share'])}, "
                     f"pointing {_interval(base['pointing'])}")
    return line
