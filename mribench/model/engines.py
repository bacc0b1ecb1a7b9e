"""What runs a saved pipeline's networks: torch (a model folder) or an exported graph.

:func:`open_model` gives ``bench predict`` a ready method whatever the engine:

- ``torch``: a model folder written by :func:`mribench.model.state.save_model` (or a result
  row / variant row resolved to one, :class:`ModelRef`); the networks are rebuilt from their
  ``state_dict``.
- ``onnx`` / ``torchscript``: a folder written by ``bench export``
  (:mod:`mribench.model.export`): ``spec.json``, the network file(s) and ``pipeline/`` (the
  model folder without its weights). The method is restored from ``pipeline/`` and each of
  its networks is replaced by the exported graph (:class:`OnnxNetwork`, an onnxruntime
  session behind a torch module, or a TorchScript module), so every step around the networks
  is mribench's own code and the predictions are the torch model's up to the graph's float
  rounding (checked on export).

An exported folder is untrusted input like a model folder: ``spec.json`` is read under the
same JSON bounds, every network file must match its SHA-256 and the input shape the spec
gives, and each failure is one :class:`ModelError` line naming the file and the fix.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mribench.api.method import Method
from mribench.model.state import (
    ModelError,
    check_version,
    file_sha256,
    load_model,
    network_indices,
    read_info,
    read_model_json,
)

__all__ = ["ENGINES", "PIPELINE_DIR", "SPEC_FILE", "SPEC_FORMAT", "LoadedModel", "ModelRef",
           "network_file", "onnx_session", "open_model", "read_spec", "resolve_model_dir",
           "torchscript_module"]

#: The engines ``bench predict --engine`` knows; the first is the default.
ENGINES = ("torch", "onnx", "torchscript")
SPEC_FILE = "spec.json"
PIPELINE_DIR = "pipeline"
SPEC_FORMAT = "mribench-export"
#: Version of the exported folder's layout; :func:`read_spec` refuses others.
SPEC_VERSION = 1
_SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
_SHA256 = re.compile(r"[0-9a-f]{64}")


def network_file(engine: str, index: int, count: int) -> str:
    """The file name of network ``index`` of ``count`` in an exported folder."""
    return f"network{'' if count == 1 else f'.{index}'}{_SUFFIX[engine]}"


@dataclass(frozen=True)
class ModelRef:
    """A saved model folder and the variant of its output to use (None: the method's own)."""

    folder: Path
    variant: str | None = None


@dataclass
class LoadedModel:
    """A restored pipeline and what ``bench predict`` says about it."""

    method: Method
    folder: Path          # the folder it was loaded from (model folder or exported folder)
    variant: str | None
    info: dict[str, Any]  # the training facts: image_size, dataset, seed, ...
    version: str          # the mribench that saved it
    engine: str


def resolve_model_dir(path: Path | str | ModelRef) -> tuple[Path, str | None]:
    """The model folder and the variant of ``path``: a :class:`ModelRef` (what
    :func:`mribench.results.read.find_model` makes of a results row) or a model folder."""
    if isinstance(path, ModelRef):
        return path.folder, path.variant
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such folder; pass results/<run>/<row> or its model/ folder")
    if (path / "info.json").is_file():
        return path, None
    if (path / SPEC_FILE).is_file():
        raise ModelError(f"{path}: an exported model (spec.json); run it with --engine onnx "
                         "or --engine torchscript, as it was exported")
    raise ModelError(f"{path}: not a model folder (no info.json); pass a model/ folder, or a "
                     "results row to bench predict / bench explain")


def open_model(path: Path | str | ModelRef, engine: str = "torch") -> LoadedModel:
    """The pipeline of ``path`` ready to predict, its networks run by ``engine``."""
    if engine not in ENGINES:
        raise ModelError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "torch":
        folder, variant = resolve_model_dir(path)
        meta = read_info(folder)
        return LoadedModel(load_model(folder), folder, variant, dict(meta["info"]),
                           str(meta["mribench_version"]), engine)
    if isinstance(path, ModelRef):
        path = path.folder
    return _open_export(Path(path), engine)


def _open_export(folder: Path, engine: str) -> LoadedModel:
    spec = read_spec(folder, engine)
    pipeline = folder / PIPELINE_DIR
    meta = read_info(pipeline)
    if meta["method"] != spec["method"]:
        raise ModelError(f"{folder / SPEC_FILE}: names method {spec['method']!r} but "
                         f"{pipeline} holds {meta['method']!r}; export the row again")
    indices = network_indices(pipeline)
    entries = spec["networks"]
    if len(entries) != len(indices):
        raise ModelError(f"{folder / SPEC_FILE}: lists {len(entries)} network(s), the pipeline "
                         f"has {len(indices)}; export the row again")
    nets = {i: _load_network(folder, entry, engine) for i, entry in enumerate(entries)}
    method = load_model(pipeline, networks=nets.__getitem__)
    return LoadedModel(method, folder, spec.get("variant"), dict(meta["info"]),
                       str(spec["mribench_version"]), engine)


def read_spec(folder: Path, engine: str | None = None) -> dict[str, Any]:
    """``spec.json`` of an exported folder, checked: its format, version and engine, and each
    network entry's file name, hash and input shape."""
    path = folder / SPEC_FILE
    if not path.is_file():
        raise ModelError(f"{folder}: not an exported model (no {SPEC_FILE}); make one with "
                         "bench export ROW --format onnx --out DIR")
    spec = read_model_json(path)
    if spec.get("format") != SPEC_FORMAT or spec.get("format_version") != SPEC_VERSION:
        raise ModelError(f"{path}: not a mribench export spec of version {SPEC_VERSION} "
                         f"(format {spec.get('format')!r}, version "
                         f"{spec.get('format_version')!r}); export the row again")
    if not isinstance(spec.get("mribench_version"), str) or not isinstance(
            spec.get("method"), str):
        raise ModelError(f"{path}: 'mribench_version' and 'method' must be strings; export "
                         "the row again")
    check_version(spec["mribench_version"], where=str(path))
    if engine is not None and spec.get("engine") != engine:
        raise ModelError(f"{path}: a {spec.get('engine')!r} export, asked to run with "
                         f"--engine {engine}; pass --engine {spec.get('engine')}")
    networks = spec.get("networks")
    if not isinstance(networks, list) or not networks:
        raise ModelError(f"{path}: 'networks' must be a non-empty list; export the row again")
    for i, entry in enumerate(networks):
        _check_entry(entry, i, len(networks), str(spec.get("engine")), path)
    return spec


def _check_entry(entry: Any, index: int, count: int, engine: str, path: Path) -> None:
    expected = network_file(engine, index, count) if engine in _SUFFIX else None
    given = entry.get("input") if isinstance(entry, dict) else None
    shape = given.get("shape") if isinstance(given, dict) else None
    if not (isinstance(entry, dict) and entry.get("file") == expected
            and isinstance(entry.get("sha256"), str) and _SHA256.fullmatch(entry["sha256"])
            and isinstance(shape, list) and shape and shape[0] == "batch"
            and all(isinstance(v, int) and 0 < v <= 1 << 16 for v in shape[1:])):
        raise ModelError(f"{path}: network entry {index} is not {{'file': {expected!r}, "
                         "'sha256': ..., 'input': {'shape': ['batch', ...]}}; export the row "
                         "again")


def _load_network(folder: Path, entry: dict[str, Any], engine: str) -> Any:
    path = folder / entry["file"]
    if path.is_symlink() or not path.is_file():
        raise ModelError(f"{path}: missing from the exported model (listed in {SPEC_FILE}); "
                         "export the row again")
    if file_sha256(path) != entry["sha256"]:
        raise ModelError(f"{path}: changed since export (SHA-256 differs from {SPEC_FILE}: "
                         "truncated or replaced); export the row again")
    shape = tuple(entry["input"]["shape"][1:])
    if engine == "onnx":
        return OnnxNetwork(onnx_session(path, shape), path)
    return torchscript_module(path)


def onnx_session(path: Path, shape: tuple[int, ...] | None = None) -> Any:
    """An onnxruntime CPU session of the ONNX file ``path`` (one line when it is not one),
    whose single input has the spatial shape ``shape`` (batch axis excluded) when given."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError("the onnx engine needs onnxruntime: pip install onnxruntime "
                         "(or pip install 'mribench[export]')") from None

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # whatever a truncated or foreign file makes onnxruntime raise
        first = (" ".join(str(exc).split()) or type(exc).__name__)[:160]
        raise ModelError(f"{path}: not a readable ONNX model ({first}); export the row again "
                         "with bench export ROW --format onnx") from None
    inputs = session.get_inputs()
    found = tuple(inputs[0].shape[1:]) if len(inputs) == 1 else None
    if shape is not None and found != tuple(shape):
        raise ModelError(f"{path}: its input is {list(found) if found else 'not one tensor'}, "
                         f"{SPEC_FILE} says [batch, {', '.join(map(str, shape))}]; the spec "
                         "and the network do not match: export the row again")
    return session


def torchscript_module(path: Path) -> Any:
    """A TorchScript module from ``path`` on the CPU, in eval mode (one line when it is not
    one)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript's own notice
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        first = (" ".join(str(exc).split()) or type(exc).__name__)[:160]
        raise ModelError(f"{path}: not a readable TorchScript module ({first}); export the row "
                         "again with bench export ROW --format torchscript") from None
    return module.eval()


class OnnxNetwork(nn.Module):
    """An onnxruntime session behind a torch module: ``forward(x)`` runs the graph on
    ``x`` (float32, any device; computed on the CPU) and returns the output as a tensor on
    ``x``'s device, so the method's own inference code runs it unchanged."""

    def __init__(self, session: Any, path: Path) -> None:
        super().__init__()
        self.session = session
        self.path = path
        self.input_name = session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().float().cpu().numpy())
        out = self.session.run(None, {self.input_name: array})[0]
        return torch.from_numpy(np.asarray(out)).to(x.device)
