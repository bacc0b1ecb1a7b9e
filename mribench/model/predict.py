"""``bench predict``: apply a saved pipeline to a folder of images.

:func:`predict_folder` reads every image under a folder (recursively; the formats of
:data:`mribench.data.imageio.IMAGE_SUFFIXES`), resizes each one as the training data were
(:func:`mribench.data.imageio.load_image` at the model's ``image_size``, JPEG draft decoding
included), runs the saved method in batches and writes into ``out``:

- ``predictions.csv``: ``file, label, score`` per image (``file`` relative to the images
  folder; ``label`` 1 tumour / 0 none; ``score`` the method's image score, empty when it has
  none);
- ``masks/<file stem>.png`` for methods that segment: the predicted mask (0/255) at the
  image's *original* size (bilinear on 0/1, then >= 0.5);
- ``overlays/<file stem>.png``: the slice at the working size with the mask's contour (red)
  and a frame coloured by the label (red tumour, green none);
- ``index.html``: a self-contained gallery (thumbnails embedded as data URIs, names
  HTML-escaped), at most ``gallery_max`` images;
- ``skipped.csv`` when some files could not be read.

A file that cannot be decoded is reported in one line (``skipped.csv`` and the result's
``skipped``) and the others go on; the CLI then exits non-zero.

Everything that can be checked is checked before the first prediction, each failure one line:
the model folder (:func:`mribench.model.state.load_model`), the images, and ``out``
(:func:`prepare_out`: made and written to once, so ``/proc/x`` or a read-only folder is refused
before any work). A saved method that fails to predict is :class:`MethodFailed` naming the
model folder; a write that fails later (a full disk) is one line too.

``MODEL_DIR`` may be a result row folder (``results/<run>/<row>``, holding ``model/``), the
``model/`` folder itself, or a *variant* row such as ``results/<run>/two-pathway-cnn+crf``:
a variant is a post-processing of its base method's output, so its predictions come from the
base row's model (``results/<run>/two-pathway-cnn/model``) through
``Prediction.variants["crf"]``.
"""

from __future__ import annotations

import base64
import csv
import errno
import html
import io
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mribench.api.context import Context
from mribench.api.errors import MethodFailed, MribenchError
from mribench.api.method import Method
from mribench.api.types import UNLABELLED, Prediction, Sample
from mribench.cpu_kernels import job_kernels, process_mode
from mribench.data.imageio import is_image_file, load_image
from mribench.model.engines import ModelRef, open_model, resolve_model_dir
from mribench.model.state import ModelError

__all__ = ["LoadedFile", "PredictResult", "find_images", "load_files", "overlay_image",
           "ModelRef", "predict_folder", "prepare_out", "resolve_model_dir", "run_method",
           "write_overlay"]

#: Images per predict call (bounds memory; methods vectorise within a batch).
BATCH = 64


@dataclass
class PredictResult:
    """What :func:`predict_folder` wrote."""

    out: Path
    method: str
    variant: str | None
    n_files: int
    labels: dict[str, int] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class LoadedFile:
    """One image file read for prediction (``sample`` None when it could not be read)."""

    path: Path
    rel: str
    sample: Sample | None
    error: str | None = None


def find_images(path: Path | str) -> tuple[Path, list[Path]]:
    """(root, image files) under ``path`` (recursively, sorted; hidden files and folders
    skipped), or ``path`` itself when it is one file."""
    path = Path(path)
    if path.is_file():
        return path.parent, [path]
    if not path.is_dir():
        raise MribenchError(f"{path}: no such file or folder of images")
    files = sorted(p for p in path.rglob("*")
                   if p.is_file() and is_image_file(p)
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise MribenchError(f"{path}: no image files found (looked for "
                            ".jpg .png .bmp .tif .gif .pgm .ppm .webp, recursively)")
    return path, files


def prepare_out(out: Path | str, option: str = "--out") -> Path:
    """``out`` made (with its parents) and written to once (a file created and removed), so an
    output folder that cannot be used is one line before any work; returns it as a Path."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".mribench-write-test-", dir=out)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise unwritable(out, exc, option) from None
    return out


def unwritable(out: Path, exc: OSError, option: str = "--out") -> MribenchError:
    """The one-line error for an output folder (or a file in it) that cannot be written."""
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(out) else ""
    fix = ("free some space and run it again" if exc.errno == errno.ENOSPC else
           f"pass {option} a folder you can write to")
    return MribenchError(f"{option} {out}: cannot write there: "
                         f"{exc.strerror or type(exc).__name__}{where}; {fix}")


def _load_one(task: tuple[Path, str, int]) -> LoadedFile:
    path, rel, size = task
    try:
        loaded = load_image(path, size, draft=True)
    except MribenchError as exc:
        return LoadedFile(path, rel, None, str(exc))
    except Exception as exc:  # any decoder failure: one line, never a crash
        return LoadedFile(path, rel, None, f"{path}: cannot be read ({type(exc).__name__}: "
                                           f"{' '.join(str(exc).split())[:200]})")
    sample = Sample(id=rel, group=rel, label=UNLABELLED, image=loaded.image, source=str(path),
                    original_size=loaded.original_size)
    return LoadedFile(path, rel, sample)


def load_files(root: Path, files: Sequence[Path], size: int) -> list[LoadedFile]:
    """Read ``files`` at ``size`` in the data layer's small thread pool, in order."""
    from mribench.data.threads import thread_map

    tasks = [(p, p.relative_to(root).as_posix(), int(size)) for p in files]
    with thread_map(_load_one, tasks, min_items=8, name="mribench-predict") as results:
        return list(results)


def _device(method: Method, device: str) -> str:
    if device != "auto":
        return device
    if method.kind != "deep":
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_method(method: Method, samples: Sequence[Sample], ctx: Context,
               variant: str | None = None, source: Path | None = None) -> Prediction:
    """``method.predict`` (or its ``variant``'s prediction) for ``samples``.

    A saved method (from the model folder ``source``) that raises is :class:`MethodFailed`,
    one line naming the folder: what it restored does not work.
    """
    pred = predict_or_fail(method, samples, ctx, source)
    if variant is None:
        return pred
    if variant not in pred.variants:
        raise ModelError(f"{method.name} gives no variant {variant!r} (it gives: "
                         f"{', '.join(sorted(pred.variants)) or 'none'})")
    return pred.variants[variant]


def predict_or_fail(method: Method, samples: Sequence[Sample], ctx: Context,
                    source: Path | None = None) -> Prediction:
    """``method.predict(samples)`` with the CPU kernels of a job of this process (oneDNN off
    in the portable mode, as when the row was scored); an exception (other than a
    MribenchError, already one line) becomes :class:`MethodFailed` naming the model folder
    ``source``."""
    try:
        with job_kernels(process_mode()):
            return method.predict(list(samples), ctx)
    except MribenchError:
        raise
    except Exception as exc:
        raise failed(method, source, exc, "predict") from exc


def failed(method: Method, source: Path | None, exc: Exception, what: str) -> MethodFailed:
    """The one line for a restored method that raised while doing ``what``."""
    first = (" ".join(str(exc).split()) or "no message")[:200]
    where = f" (model {source})" if source is not None else ""
    return MethodFailed(f"{method.name}{where}: {what} failed ({type(exc).__name__}: {first}); "
                        "the model folder may be damaged or saved by another mribench: "
                        "save it again")


# --------------------------------------------------------------------------- pictures


def _rgb(image: np.ndarray) -> np.ndarray:
    gray = np.clip(np.asarray(image, dtype=np.float32), 0, 1)
    return np.repeat((gray * 255).round().astype(np.uint8)[..., None], 3, axis=2)


def overlay_image(image: np.ndarray, mask: np.ndarray | None, label: int) -> np.ndarray:
    """RGB uint8: the slice with the mask's contour in red and a 2 px frame (red tumour,
    green none)."""
    rgb = _rgb(image)
    if mask is not None and mask.any():
        m = np.asarray(mask, bool)
        interior = m.copy()  # inner boundary: mask pixels with a 4-neighbour outside
        interior[1:, :] &= m[:-1, :]
        interior[:-1, :] &= m[1:, :]
        interior[:, 1:] &= m[:, :-1]
        interior[:, :-1] &= m[:, 1:]
        rgb[m & ~interior] = (255, 40, 40)
    colour = (230, 40, 40) if label == 1 else (40, 200, 60)
    rgb[:2], rgb[-2:], rgb[:, :2], rgb[:, -2:] = colour, colour, colour, colour
    return rgb


def write_overlay(path: Path, image: np.ndarray, mask: np.ndarray | None, label: int) -> None:
    """Save :func:`overlay_image` as a PNG (fast compression)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay_image(image, mask, label)).save(path, compress_level=1)


def _mask_at(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A working-size mask at (height, width): bilinear on 0/1, then >= 0.5."""
    mask = np.asarray(mask, bool)
    if mask.shape == tuple(size) or 0 in size:
        return mask
    pil = Image.fromarray(mask.astype(np.float32), mode="F")
    return np.asarray(pil.resize((size[1], size[0]), Image.Resampling.BILINEAR)) >= 0.5


def _data_uri(rgb: np.ndarray, side: int = 160) -> str:
    """A PNG thumbnail of an RGB array as a data URI (for the self-contained gallery)."""
    img = Image.fromarray(rgb)
    img.thumbnail((side, side))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _output_names(rels: Sequence[str]) -> dict[str, str]:
    """``rel -> rel with .png`` (the full name + .png where two files share a stem)."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for rel in rels:
        name = str(Path(rel).with_suffix(".png").as_posix())
        if name in taken:
            name = f"{rel}.png"
        taken.add(name)
        names[rel] = name
    return names


def write_gallery(path: Path, title: str, rows: Sequence[dict[str, Any]],
                  skipped: Sequence[tuple[str, str]], limit: int) -> None:
    """A self-contained HTML page: one card per image (embedded overlay thumbnail)."""
    cards = []
    for row in rows[:limit]:
        score = "" if row["score"] is None else f"{row['score']:.4g}"
        verdict = "tumour" if row["label"] == 1 else "no tumour"
        cards.append(
            f'<figure class="{"pos" if row["label"] == 1 else "neg"}">'
            f'<img src="{row["thumb"]}" alt="{html.escape(row["file"])}">'
            f'<figcaption><b>{html.escape(verdict)}</b> {html.escape(score)}<br>'
            f'<span>{html.escape(row["file"])}</span></figcaption></figure>')
    more = (f"<p>Showing {limit} of {len(rows)} images; every prediction is in "
            "predictions.csv.</p>" if len(rows) > limit else "")
    skipped_html = ""
    if skipped:
        items = "".join(f"<li>{html.escape(f)}: {html.escape(r)}</li>" for f, r in skipped)
        skipped_html = f"<h2>Skipped ({len(skipped)})</h2><ul>{items}</ul>"
    n_pos = sum(r["label"] == 1 for r in rows)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
main {{ display: flex; flex-wrap: wrap; gap: 10px; }}
figure {{ margin: 0; width: 170px; padding: 4px; border: 3px solid #ccc; border-radius: 4px; }}
figure.pos {{ border-color: #d33; }} figure.neg {{ border-color: #3a4; }}
figure img {{ width: 160px; height: auto; display: block; }}
figcaption {{ font-size: 12px; word-break: break-all; }}
figcaption span {{ color: #555; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{len(rows)} images: {n_pos} tumour, {len(rows) - n_pos} no tumour.
Red contour: predicted tumour region (methods that segment).</p>
{more}<main>{"".join(cards)}</main>{skipped_html}
</body></html>
"""
    path.write_text(page, encoding="utf-8")


# --------------------------------------------------------------------------- the driver


@dataclass
class _Job:
    """One :func:`predict_folder` call: the saved method, the images and where outputs go."""

    model_folder: Path
    method: Method
    variant: str | None
    name: str            # the row name: method, or method+variant
    info: dict[str, Any]
    version: str         # the mribench that saved the model
    size: int            # the model's working size
    root: Path
    files: list[Path]
    out: Path
    ctx: Context
    segments: bool
    names: dict[str, str]  # rel -> output file name (.png)


def predict_folder(model_dir: Path | str | ModelRef, images: Path | str, out: Path | str, *,
                   device: str = "cpu", batch_size: int = BATCH, show_progress: bool = False,
                   gallery_max: int = 500, write_images: bool = True,
                   log: Callable[[str], None] | None = None,
                   engine: str = "torch") -> PredictResult:
    """Predict every image under ``images`` with the model of ``model_dir``; write ``out``.

    Returns a :class:`PredictResult`; unreadable files are in its ``skipped`` list (and in
    ``skipped.csv``), never an exception. Raises :class:`~mribench.model.state.ModelError`
    for an unusable model folder and :class:`MribenchError` when there are no images or
    ``out`` cannot be written (both before any prediction), :class:`MethodFailed` when the
    saved method raises.

    ``engine`` (:data:`mribench.model.engines.ENGINES`): ``torch`` for a model folder or a
    results row; ``onnx`` or ``torchscript`` for a folder written by ``bench export``, whose
    networks then run as exported (the steps around them are the same code, so the CSV is the
    torch model's).
    """
    job = _open_job(model_dir, images, out, device, engine)
    try:
        return _predict_all(job, batch_size, show_progress, gallery_max, write_images, log)
    except OSError as exc:  # an output that could be written at the start no longer can
        raise unwritable(job.out, exc) from None


def _predict_all(job: _Job, batch_size: int, show_progress: bool, gallery_max: int,
                 write_images: bool, log: Callable[[str], None] | None) -> PredictResult:
    """The batches of :func:`predict_folder`, then its CSV files and gallery."""
    from tqdm.auto import tqdm

    result = PredictResult(out=job.out, method=job.name, variant=job.variant,
                           n_files=len(job.files))
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(job.files), desc=f"predict {job.name}", unit="img", file=sys.stderr,
               disable=not show_progress, dynamic_ncols=True)
    try:
        for start in range(0, len(job.files), batch_size):
            loaded = load_files(job.root, job.files[start:start + batch_size], job.size)
            for item in loaded:
                if item.sample is None:
                    result.skipped.append((item.rel, item.error or "unreadable"))
                    if log is not None:
                        log(f"skipped: {item.error}")
            good = [item for item in loaded if item.sample is not None]
            if good:
                _predict_batch(job, good, result, rows, write_images, gallery_max)
            bar.update(len(loaded))
    finally:
        bar.close()
    _write_csvs(job.out, rows, result.skipped)
    if write_images:
        title = (f"{job.name} on {job.root.name or job.root}: mribench "
                 f"{job.version}, trained on {job.info.get('dataset', '?')} "
                 f"at {job.size} px")
        write_gallery(job.out / "index.html", title, rows, result.skipped, gallery_max)
    return result


def _open_job(model_dir: Path | str | ModelRef, images: Path | str, out: Path | str,
              device: str, engine: str = "torch") -> _Job:
    """Load the saved method, find the images, make ``out`` (and write to it once)."""
    loaded = open_model(model_dir, engine)
    method, variant, info = loaded.method, loaded.variant, loaded.info
    size = int(info.get("image_size") or 256)
    root, files = find_images(images)
    out = prepare_out(out)
    name = method.name + (f"+{variant}" if variant else "")
    ctx = Context(device=_device(method, device), seed=int(info.get("seed", 0) or 0),
                  profile=method.profile, workdir=out, method_name=name)
    return _Job(loaded.folder, method, variant, name, info, loaded.version, size, root, files,
                out, ctx,
                segments="segment" in method.tasks,
                names=_output_names([p.relative_to(root).as_posix() for p in files]))


def _predict_batch(job: _Job, good: Sequence[LoadedFile], result: PredictResult,
                   rows: list[dict[str, Any]], write_images: bool, gallery_max: int) -> None:
    """Predict the read files ``good`` (each with its sample); record each in ``result`` and
    ``rows`` and write its overlay (with a gallery thumbnail while ``rows`` holds under
    ``gallery_max``) and mask."""
    samples = [item.sample for item in good if item.sample is not None]
    pred = run_method(job.method, samples, job.ctx, job.variant, job.model_folder)
    for i, item in enumerate(good):
        sample = samples[i]
        label = int(pred.labels[i])
        score = None if pred.scores is None else float(pred.scores[i])
        mask = pred.masks[i] if (job.segments and pred.masks is not None) else None
        thumb = ""
        if write_images:
            thumb = _write_images(job, item.rel, sample, mask, label,
                                  thumbnail=len(rows) < gallery_max)
        result.labels[item.rel] = label
        if score is not None:
            result.scores[item.rel] = score
        rows.append({"file": item.rel, "label": label, "score": score, "thumb": thumb})


def _write_images(job: _Job, rel: str, sample: Sample, mask: np.ndarray | None, label: int,
                  thumbnail: bool) -> str:
    """Write ``overlays/<name>`` and, for a mask, ``masks/<name>`` at the image's original
    size; the overlay's thumbnail data URI when ``thumbnail`` (else "")."""
    out_name = job.names[rel]
    overlay = job.out / "overlays" / out_name
    rgb = overlay_image(sample.image, mask, label)
    overlay.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(overlay, compress_level=1)
    thumb = _data_uri(rgb) if thumbnail else ""
    if mask is not None:
        target = job.out / "masks" / out_name
        target.parent.mkdir(parents=True, exist_ok=True)
        full = _mask_at(mask, sample.original_size)
        Image.fromarray(full.astype(np.uint8) * 255).save(target, compress_level=1)
    return thumb


def _write_csvs(out: Path, rows: Sequence[dict[str, Any]],
                skipped: Sequence[tuple[str, str]]) -> None:
    """``predictions.csv`` and, when files were skipped, ``skipped.csv``."""
    with open(out / "predictions.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", "score"])
        for row in rows:
            writer.writerow([row["file"], row["label"],
                             "" if row["score"] is None else repr(row["score"])])
    if skipped:
        with open(out / "skipped.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file", "reason"])
            writer.writerows(skipped)
