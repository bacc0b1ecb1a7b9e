"""``bench export``: a trained deep row as an ONNX (or TorchScript) graph plus the spec of
everything around it, verified against torch before it is written.

:func:`export_model` writes into ``out``:

- ``network.onnx`` (``network.<i>.onnx`` for a method with several networks, e.g. the
  two-pathway CNN's input cascade; ``network[.<i>].torchscript.pt`` for TorchScript): each
  network in eval mode, traced on CPU with a dynamic batch axis (the legacy TorchScript-based
  exporter, opset :data:`OPSET`: it needs no package beyond ``onnx``, works offline and
  exports every shipped network); inputs and outputs are float32 logits;
- ``spec.json``: what a deployer needs to reproduce the row's predictions outside mribench:
  the task and labels, the image size and channels, the steps before the network (loading,
  resizing, normalisation, features) and after it (sigmoid, logit offsets, thresholds,
  test-time flips, the area threshold of the label, the dense CRF of a ``+crf`` row), the list
  of parts that run *outside* the exported graph, the source row (method, params, data set,
  seed, split hash) and the measured agreement with torch;
- ``preprocess.npz`` when the steps need learned arrays (dwt-dnn's scaler and PCA);
- ``pipeline/``: the row's model folder without its weights (params, thresholds, scikit-learn
  parts), which ``bench predict --engine onnx`` restores around the exported graph.

**Verification** (before the folder appears): the row's method runs once with torch on
``images`` (the run's own test slices when the caller finds them, else synthetic slices); every
network call's input and logits are recorded; the exported graph and torch then run the same
network on those inputs and the largest absolute difference of their logits must be at most
:data:`TOLERANCE`. (torch runs it as the graph was traced: with the direct convolution where
the row's own inference may convolve through the FFT, whose float rounding differs by up to
about 1e-4 on the two-pathway CNN's 21 x 21 output layer; that difference, graph vs the
logits the row's inference gave, is kept too.) The exported folder is then loaded as
``bench predict --engine`` loads it, and its labels and masks (and those of the exported
variant) must equal the torch model's. A failure is :class:`ExportMismatch`,
one line, and nothing is written. The measured differences are kept in ``spec.json``.

Only deep rows are exported: a classical row's handcrafted features (GLCM, wavelet statistics,
region growing, ...) are not ONNX operators, so its graph would hold only the final estimator
and its spec would have to re-implement the rest; it stays a skops model folder that
``bench predict`` runs.
"""

from __future__ import annotations

import contextlib
import copy
import io
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mribench.api.context import Context
from mribench.api.errors import MribenchError
from mribench.api.method import Method, SegmentationMethod
from mribench.api.types import UNLABELLED, Prediction, Sample
from mribench.model.engines import (
    PIPELINE_DIR,
    SPEC_FILE,
    SPEC_FORMAT,
    SPEC_VERSION,
    ModelRef,
    network_file,
    open_model,
    resolve_model_dir,
)
from mribench.model.state import (
    file_sha256,
    load_model,
    read_info,
    replace_folder,
    save_pipeline,
)

__all__ = ["FORMATS", "OPSET", "TOLERANCE", "ExportMismatch", "ExportResult", "export_model",
           "synthetic_slices"]

#: The formats ``bench export --format`` writes.
FORMATS = ("onnx", "torchscript")
#: ONNX opset of the exported graphs.
OPSET = 17
#: Largest absolute difference of the logits, exported graph vs torch, that passes.
TOLERANCE = 1e-4
#: Synthetic slices used to verify when the row's run has no test slices.
N_SYNTHETIC = 8


class ExportMismatch(MribenchError):
    """The exported graph does not reproduce the torch model (nothing was written)."""


@dataclass
class ExportResult:
    """What :func:`export_model` wrote and measured."""

    out: Path
    method: str
    files: list[str]
    max_abs_diff: float
    n_images: int
    spec: dict[str, Any]


def synthetic_slices(n: int, size: int, seed: int = 0) -> list[Sample]:
    """``n`` synthetic slices (:mod:`mribench.data.phantom`, half with a tumour) at ``size``."""
    from mribench.data.phantom import generate

    return [Sample(id=f"synthetic-{s.index}", group=f"synthetic-{s.index}", label=s.label,
                   image=s.image) for s in generate(n, size, seed=seed, workers=1)]


def _networks(method: Method) -> list[Any]:
    """The method's torch networks in ``build_network(index)`` order (one learned attribute
    holds them: a network or a list of networks)."""
    from torch import nn

    for name, value in sorted(vars(method).items()):
        if not name.endswith("_") or name.startswith("_"):
            continue
        if isinstance(value, nn.Module):
            return [value]
        if isinstance(value, (list, tuple)) and value and all(
                isinstance(v, nn.Module) for v in value):
            return list(value)
    return []


def _not_exportable(method: Method, folder: Path) -> MribenchError:
    if method.kind != "deep":
        return MribenchError(
            f"{folder}: {method.name} is a classical pipeline: its handcrafted features are "
            "not ONNX operators, so it is not exported; it stays a skops model folder that "
            "bench predict runs as it is")
    return MribenchError(f"{folder}: {method.name} defines no export recipe (export_recipe); "
                         "it cannot be exported")


def export_model(model: Path | str | ModelRef, out: Path | str, fmt: str = "onnx", *,
                 images: Sequence[Sample] | None = None, images_from: str = "",
                 source: dict[str, Any] | None = None) -> ExportResult:
    """Export the deep row of ``model`` (a model folder or :class:`ModelRef`) to ``out``.

    ``images``: slices to verify on (at any size; resized to the model's image size), e.g.
    the run's ``test_images.npz``, described by ``images_from``; None: :data:`N_SYNTHETIC`
    synthetic slices. ``source``: facts about the row for the spec (its folder, the run).

    Raises :class:`MribenchError` for a classical row or an unusable ``out``,
    :class:`~mribench.model.state.ModelError` for a damaged model folder and
    :class:`ExportMismatch` when the exported graph does not reproduce torch.
    """
    if fmt not in FORMATS:
        raise MribenchError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    folder, variant = resolve_model_dir(model)
    method = load_model(folder)
    meta = read_info(folder)
    size = int(meta["info"].get("image_size") or 256)
    recipe = method.export_recipe(size) if method.kind == "deep" else None
    nets = _networks(method)
    if recipe is None or not nets:
        raise _not_exportable(method, folder)
    if len(nets) != len(recipe.inputs):
        raise MribenchError(f"{folder}: {method.name}'s export recipe gives "
                            f"{len(recipe.inputs)} input(s) for {len(nets)} network(s)")
    if images is None:
        images, images_from = synthetic_slices(N_SYNTHETIC, size), "synthetic slices"
    samples = _at_size(images, size)
    out = Path(out)
    tmp = _staging(out)
    try:
        spec = _write_export(tmp, folder, method, variant, meta, recipe, nets, fmt)
        spec["source"] = {**(source or {}), "model": str(folder), "variant": variant,
                          **{k: meta["info"].get(k) for k in ("dataset", "dataset_fingerprint",
                                                              "split_hash", "seed")}}
        spec["verification"] = _verify(tmp, method, nets, variant, samples, fmt, images_from)
        _write_json(tmp / SPEC_FILE, spec)
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(out, method.name, sorted(p.name for p in out.iterdir()),
                        spec["verification"]["max_abs_diff_logits"], len(samples), spec)


def _at_size(images: Sequence[Sample], size: int) -> list[Sample]:
    from mribench.blocks.resize import resize_image

    return [Sample(id=s.id, group=s.group, label=UNLABELLED,
                   image=resize_image(np.asarray(s.image, np.float32), size)) for s in images]


def _staging(out: Path) -> Path:
    """A fresh folder beside ``out`` to write into (renamed to ``out`` once verified)."""
    from mribench.model.predict import unwritable

    if out.exists() and (not out.is_dir() or (any(out.iterdir())
                                              and not (out / SPEC_FILE).is_file())):
        raise MribenchError(f"--out {out}: exists and is not an exported model; pass a new "
                            "or empty folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise unwritable(out, exc) from None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from mribench.atomic import atomic_write_json

    atomic_write_json(path, data)


def _write_export(tmp: Path, folder: Path, method: Method, variant: str | None,
                  meta: dict[str, Any], recipe: Any, nets: list[Any], fmt: str
                  ) -> dict[str, Any]:
    """The network files, ``pipeline/``, ``preprocess.npz`` and the spec (without its
    verification, which needs the folder)."""
    from mribench import __version__

    entries = []
    for i, (net, shape) in enumerate(zip(nets, recipe.inputs, strict=True)):
        name = network_file(fmt, i, len(nets))
        _export_network(net, tuple(shape), tmp / name, fmt)
        entries.append({"file": name, "sha256": file_sha256(tmp / name), "format": fmt,
                        **({"opset": OPSET} if fmt == "onnx" else {}),
                        "input": {"name": "input", "shape": ["batch", *map(int, shape)],
                                  "dtype": "float32"},
                        "output": {"name": "logits", "meaning": recipe.output,
                                   "dtype": "float32"}})
    save_pipeline(folder, tmp / PIPELINE_DIR)
    if recipe.arrays:
        np.savez(tmp / "preprocess.npz", **{k: np.asarray(v) for k, v in recipe.arrays.items()})
    params = method.params.as_dict()
    spec = {
        "format": SPEC_FORMAT, "format_version": SPEC_VERSION, "engine": fmt,
        "mribench_version": __version__, "method": method.name, "variant": variant,
        "row": method.name + (f"+{variant}" if variant else ""), "profile": method.profile,
        "params": params, "task": list(method.tasks),
        "labels": {"0": "no tumour", "1": "tumour"},
        "image": {"image_size": int(meta["info"].get("image_size") or 256),
                  "channels": 1, "range": [0.0, 1.0], "dtype": "float32"},
        "networks": entries,
        "preprocess": list(recipe.preprocess),
        "postprocess": list(recipe.postprocess) + _segmenter_steps(method, variant),
        "outside_graph": list(recipe.outside_graph),
        "arrays": ({"file": "preprocess.npz", "sha256": file_sha256(tmp / "preprocess.npz"),
                    "names": sorted(recipe.arrays)} if recipe.arrays else None),
        "pipeline": {"folder": PIPELINE_DIR,
                     "what": "mribench's own state of the steps around the networks (params, "
                             "thresholds, scikit-learn parts): bench predict --engine "
                             f"{fmt} runs them"},
        "versions": _versions(),
    }
    _write_json(tmp / SPEC_FILE, spec)
    return spec


def _segmenter_steps(method: Method, variant: str | None) -> list[dict[str, Any]]:
    """A segmenter's label rule (the area threshold chosen on val) and, for a variant row,
    the variant's post-processing and its own threshold."""
    if not isinstance(method, SegmentationMethod):
        return []
    steps: list[dict[str, Any]] = []
    threshold = method.area_threshold_
    if variant is not None:
        steps.append(_variant_step(method, variant))
        threshold = getattr(method, "variant_thresholds_", {}).get(variant, threshold)
    steps.append({"step": "area_threshold", "threshold": float(threshold.threshold_),
                  "how": "score = fraction of mask pixels (at the slice's loaded size); "
                         "label = 1 (tumour) when score > threshold"})
    return steps


def _variant_step(method: Method, variant: str) -> dict[str, Any]:
    crf = getattr(method, "crf_", None)
    if variant != "crf" or crf is None:
        return {"step": variant, "how": f"the {variant!r} variant of mribench's "
                                         f"{method.name} (see its code)"}
    size = getattr(method.params, "work_size", None)
    return {"step": "dense_crf", "params": crf.params_.as_dict(), "size": size,
            "applied": bool(getattr(crf, "available_", True)),
            "how": "pydensecrf on the probability map and the slice resized to size (the "
                   "slice as 0..255 intensities for the bilateral kernel), mask = marginal "
                   "> 0.5, resized back to the slice's size (bilinear, > 0.5); 'applied' "
                   "false: pydensecrf was missing at training, the raw masks are used",
            "code": "mribench.blocks.crf.CRFVariant.predict_variants"}


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("torch", "onnx", "onnxruntime", "numpy"):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


def _export_network(net: Any, shape: tuple[int, ...], path: Path, fmt: str) -> None:
    """Trace ``net`` (a CPU copy in eval mode) on a batch of two zero inputs of ``shape``."""
    import torch

    model = copy.deepcopy(net).cpu().eval()
    example = torch.zeros((2, *shape))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
        if fmt == "torchscript":
            torch.jit.save(torch.jit.trace(model, example, check_trace=False), str(path))
            return
        _need_onnx()
        buffer = io.BytesIO()
        torch.onnx.export(model, (example,), buffer, dynamo=False, input_names=["input"],
                          output_names=["logits"], opset_version=OPSET,
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        path.write_bytes(buffer.getbuffer())


def _need_onnx() -> None:
    import importlib.util

    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise MribenchError(f"--format onnx needs {' and '.join(missing)}: pip install onnx "
                            "onnxruntime (or pip install 'mribench[export]')")


# --------------------------------------------------------------------------- verification


def _record_calls(nets: Sequence[Any]) -> tuple[dict[int, list[tuple[Any, Any]]], list[Any]]:
    """Forward hooks that keep every (input, logits) pair of each network (CPU float32)."""
    calls: dict[int, list[tuple[Any, Any]]] = {i: [] for i in range(len(nets))}

    def hook(i: int):
        def keep(_module: Any, inputs: tuple[Any, ...], output: Any) -> None:
            calls[i].append((inputs[0].detach().float().cpu().contiguous().clone(),
                             output.detach().float().cpu().clone()))
        return keep

    return calls, [net.register_forward_hook(hook(i)) for i, net in enumerate(nets)]


def _logit_diff(nets: Sequence[Any], calls: dict[int, list[tuple[Any, Any]]],
                exported: Sequence[Any]) -> tuple[float, float]:
    """The largest absolute difference of the exported networks' logits on the recorded
    inputs (a) from torch running the same graph (the direct convolution an exported graph
    holds, :func:`mribench.blocks.nn.patch_nets.direct_convolutions`) and (b) from the logits
    the row's own inference gave (which may convolve through the FFT)."""
    import torch

    from mribench.blocks.nn.patch_nets import direct_convolutions

    graph = row = 0.0
    with torch.no_grad(), direct_convolutions():
        for i, pairs in calls.items():
            for x, y in pairs:
                if y.numel():
                    got = exported[i](x).float().cpu()
                    same = nets[i](x).float().cpu()
                    graph = max(graph, float((got - same).abs().max()))
                    row = max(row, float((got - y).abs().max()))
    return graph, row


def _differences(ref: Prediction, got: Prediction) -> dict[str, Any]:
    """Labels and masks that differ between two predictions; the largest score difference."""
    labels = int(np.sum(np.asarray(ref.labels) != np.asarray(got.labels)))
    masks = None
    if ref.masks is not None and got.masks is not None:
        masks = int(sum(not np.array_equal(a, b) for a, b in zip(ref.masks, got.masks,
                                                                 strict=True)))
    scores = None
    if ref.scores is not None and got.scores is not None and len(ref.scores):
        scores = float(np.max(np.abs(np.asarray(ref.scores, float)
                                     - np.asarray(got.scores, float))))
    return {"labels": labels, "masks": masks, "scores": scores}


def _verify(tmp: Path, method: Method, nets: Sequence[Any], variant: str | None,
            samples: Sequence[Sample], fmt: str, images_from: str) -> dict[str, Any]:
    """Run torch and the exported folder on ``samples``; :class:`ExportMismatch` unless the
    logits agree within :data:`TOLERANCE` and the labels and masks are identical."""
    calls, handles = _record_calls(nets)
    try:
        reference = method.predict(list(samples), Context(method_name=method.name))
    finally:
        for handle in handles:
            handle.remove()
    loaded = open_model(tmp, fmt)
    worst, vs_row = _logit_diff(nets, calls, _networks(loaded.method))
    got = loaded.method.predict(list(samples), Context(method_name=method.name))
    rows = {method.name: _differences(reference, got)}
    if variant is not None:
        rows[f"{method.name}+{variant}"] = _differences(reference.variants[variant],
                                                        got.variants[variant])
    bad_labels = sum(r["labels"] for r in rows.values())
    bad_masks = sum(r["masks"] or 0 for r in rows.values())
    if not worst <= TOLERANCE or bad_labels or bad_masks:
        raise ExportMismatch(
            f"{method.name}: the {fmt} graph does not reproduce torch on {len(samples)} "
            f"{images_from}: max |logit difference| {worst:.2e} (tolerance {TOLERANCE:g}), "
            f"{bad_labels} label(s) and {bad_masks} mask(s) differ; nothing written")
    scores = [r["scores"] for r in rows.values() if r["scores"] is not None]
    return {"images": len(samples), "images_from": images_from,
            "network_calls": sum(len(p) for p in calls.values()),
            "max_abs_diff_logits": worst, "tolerance": TOLERANCE,
            "max_abs_diff_logits_vs_row_inference": vs_row,
            "labels_identical": True,
            "masks_identical": True if method.tasks and "segment" in method.tasks else None,
            "max_abs_diff_scores": max(scores) if scores else None,
            "compared": "logits: the exported graph vs torch running the same network on the "
                        "same inputs (recorded from the row's own inference; "
                        "_vs_row_inference: vs the logits that inference gave, whose patch "
                        "CNNs may convolve through the FFT); labels and masks: the row's "
                        f"torch model vs this folder run as bench predict --engine {fmt} "
                        "runs it"}
