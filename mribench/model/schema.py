"""The schema of a model folder, checked before anything in it is used.

A model folder is input like any other: users download them from others. Before
:func:`mribench.model.state.load_model` reads a weight, builds a network or allocates for a
prediction, the folder passes these checks, each failure a :class:`ModelError` of one line
naming the file and what is wrong:

- **Files.** ``info.json``, ``params.json`` and ``state.json`` are regular files of at most
  :data:`MAX_JSON_BYTES`, valid UTF-8 JSON objects. ``info.json``'s ``files`` is a mapping of
  known names (:data:`FILE_NAME`: ``params.json``, ``state.json``, ``arrays.npz``,
  ``torch/<name>.pt``, ``sklearn/<name>.skops``) to SHA-256 hashes (64 lowercase hex digits),
  each a regular file inside the folder (no link); together at most :data:`MAX_MODEL_BYTES`
  on disk.
- **info.json.** ``format`` and ``mribench_version`` are there with their types; ``info`` is
  an object whose ``image_size`` (the side ``bench predict`` resizes to), when given, is an
  integer in :data:`mribench.api.specs.IMAGE_SIZE_RANGE`; ``seed`` a non-negative integer.
- **params.json.** ``method`` a string (the one ``info.json`` names), ``profile`` one of
  :data:`mribench.api.method.PROFILES`, ``params`` an object; working sizes
  (:data:`WORK_SIZE_PARAMS`) at most :data:`MAX_WORK_SIZE`; the method's own constraints
  check the rest.
- **state.json.** ``{"attributes": {name: node}}``. A name is a learned attribute
  (:data:`LEARNED`: a letter first, ``_`` last, no ``__``) that the method's class does not
  define (no dunder, no method or property can be replaced). Nodes are the ones
  :class:`mribench.model.state._Writer` writes, with exactly their keys and types, nested at
  most :data:`MAX_DEPTH` deep; an ``object`` node names a class of
  :data:`PLAIN_TYPES` and only its fields (a dataclass) or its
  constructor's parameters and learned attributes (another class).
- **Sizes before allocation.** ``arrays.npz`` members are read from their headers first (no
  object arrays, at most :data:`MAX_ARRAY_BYTES` together, never more than their member
  holds); torch and skops files are zip archives whose members hold at most
  :data:`MAX_MODEL_BYTES` uncompressed; a network is built on torch's ``meta`` device first
  and refused when its weights would pass :data:`MAX_WEIGHT_BYTES` or its shapes differ from
  the checkpoint's.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import zipfile
from pathlib import Path
from typing import Any

from mribench.api.errors import MribenchError
from mribench.api.specs import IMAGE_SIZE_RANGE

__all__ = ["FILE_NAME", "LEARNED", "PLAIN_TYPES", "MAX_ARRAY_BYTES", "MAX_DEPTH", "MAX_JSON_BYTES",
           "MAX_MODEL_BYTES", "MAX_WEIGHT_BYTES", "MAX_WORK_SIZE", "WORK_SIZE_PARAMS",
           "ModelError", "check_attribute_name", "check_files", "check_info", "check_npz",
           "check_params", "check_state", "check_weights", "check_zip", "read_model_json"]

#: Largest ``info.json``, ``params.json`` or ``state.json`` read (bytes).
MAX_JSON_BYTES = 8 << 20
#: Largest model folder: its listed files together on disk, and the members of one torch or
#: skops archive uncompressed (bytes).
MAX_MODEL_BYTES = 512 << 20
#: Largest ``arrays.npz`` content, its arrays together (bytes).
MAX_ARRAY_BYTES = 512 << 20
#: Largest network rebuilt from a checkpoint: parameters and buffers (bytes).
MAX_WEIGHT_BYTES = 512 << 20
#: Largest working side (pixels) a saved method's parameters may ask for (the largest any
#: shipped method allows, unet's ``image_size``).
MAX_WORK_SIZE = 2048
#: The parameters that set a method's working side in pixels.
WORK_SIZE_PARAMS = ("image_size", "work_size", "map_size")
#: Plain-data classes whose instances are stored attribute by attribute (no code, no pickle).
#: Qualified names, imported only from this fixed list.
PLAIN_TYPES: tuple[str, ...] = (
    "mribench.api.thresholds.AreaThreshold",
    "mribench.api.thresholds.ScoreThreshold",
    "mribench.blocks.crf.DenseCRF",
    "mribench.blocks.crf.CRFParams",
    "mribench.blocks.nn.train.TrainResult",
)
#: Deepest nesting of state nodes.
MAX_DEPTH = 32
#: Most files a model folder may list.
MAX_FILES = 1024

#: The names a model folder's ``files`` may list.
FILE_NAME = re.compile(r"params\.json|state\.json|arrays\.npz"
                       r"|torch/[A-Za-z0-9][A-Za-z0-9_.-]{0,199}\.pt"
                       r"|sklearn/[A-Za-z0-9][A-Za-z0-9_.-]{0,199}\.skops")
#: A learned attribute's name (scikit-learn's convention): a letter first, ``_`` last.
LEARNED = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,99}_")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ARRAY_KEY = re.compile(r"a[0-9]{1,6}")
_INT64 = 1 << 63
_SCALARS = (type(None), bool, int, float, str)


class ModelError(MribenchError):
    """A model folder cannot be written or loaded as it is (one line: what and where)."""


def _damaged(path: Path | str, what: str) -> ModelError:
    return ModelError(f"{path}: {what}; the model folder is damaged or not written by "
                      "mribench (save it again with save_model)")


# --------------------------------------------------------------------------- JSON files


def read_model_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, a regular file of at most :data:`MAX_JSON_BYTES`."""
    if path.is_symlink() or not path.is_file():
        raise _damaged(path, "not a regular file")
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise _damaged(path, f"{size} bytes, more than the {MAX_JSON_BYTES} a model's JSON "
                             "file may hold")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise _damaged(path, f"not valid JSON ({first[:120]})") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not isinstance(data, dict):
        raise _damaged(path, f"a JSON {type(data).__name__}, expected an object")
    return data


def _require(data: dict, key: str, types: type, path: Path, what: str) -> Any:
    value = data.get(key)
    if key not in data or not isinstance(value, types) or (
            isinstance(value, bool) and types is not bool):
        raise _damaged(path, f"{key!r} must be {what}, got {_show(value, key in data)}")
    return value


def _show(value: Any, present: bool = True) -> str:
    if not present:
        return "nothing"
    text = json.dumps(value) if isinstance(value, _SCALARS) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_info(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """``info.json`` (``data``, read from ``path``) against the schema; returns it."""
    _require(data, "format", int, path, "an integer")
    version = _require(data, "mribench_version", str, path, "a version string")
    if not re.fullmatch(r"[0-9]{1,6}(\.[0-9A-Za-z]{1,20}){0,4}([+.-][0-9A-Za-z.+-]{0,60})?",
                        version):
        raise _damaged(path, f"'mribench_version' is not a version, got {_show(version)}")
    _require(data, "method", str, path, "a method name")
    info = _require(data, "info", dict, path, "an object")
    files = _require(data, "files", dict, path, "an object of file names to SHA-256 hashes")
    if "versions" in data and not (isinstance(data["versions"], dict) and all(
            isinstance(v, str) for v in data["versions"].values())):
        raise _damaged(path, "'versions' must be an object of package names to versions")
    if "image_size" in info:
        size, (lo, hi) = info["image_size"], IMAGE_SIZE_RANGE
        if not _is_int(size) or not lo <= size <= hi:
            raise _damaged(path, f"info.image_size must be an integer from {lo} to {hi} "
                                 f"(the image sizes a run allows), got {_show(size)}")
    if "seed" in info and not (_is_int(info["seed"]) and 0 <= info["seed"] < _INT64):
        raise _damaged(path, f"info.seed must be a non-negative integer, got "
                             f"{_show(info['seed'])}")
    _check_file_table(files, path)
    return data


def _check_file_table(files: dict[str, Any], path: Path) -> None:
    if len(files) > MAX_FILES:
        raise _damaged(path, f"lists {len(files)} files, more than {MAX_FILES}")
    for name, digest in files.items():
        if not FILE_NAME.fullmatch(name) or ".." in name:
            raise _damaged(path, f"'files' lists {_show(name)}, not a file of a model "
                                 "folder (params.json, state.json, arrays.npz, torch/*.pt, "
                                 "sklearn/*.skops)")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise _damaged(path, f"'files' gives {name} the hash {_show(digest)}, not a "
                                 "SHA-256 (64 lowercase hex digits)")
    missing = [n for n in ("params.json", "state.json") if n not in files]
    if missing:
        raise _damaged(path, f"'files' does not list {', '.join(missing)}")


def check_files(folder: Path, files: dict[str, str]) -> None:
    """Every listed file is a regular file inside ``folder`` (no link) and together they hold
    at most :data:`MAX_MODEL_BYTES`; checked before any is hashed or read."""
    root = folder.resolve()
    total = 0
    for name in files:
        path = folder / name
        if path.is_symlink():
            raise ModelError(f"{path}: a link; a model folder holds its own files, refused")
        if not path.is_file():
            raise ModelError(f"{path}: missing from the model folder (listed in info.json)")
        if not path.resolve().is_relative_to(root):  # through a linked sub-folder
            raise ModelError(f"{path}: outside the model folder, refused")
        total += path.stat().st_size
        if total > MAX_MODEL_BYTES:
            raise ModelError(f"{folder}: the model's files hold more than {MAX_MODEL_BYTES} "
                             "bytes, the most a model folder may; refused")


# --------------------------------------------------------------------------- params.json


def check_params(data: dict[str, Any], path: Path, method: str) -> dict[str, Any]:
    """``params.json`` against the schema (and ``method``, the name info.json gives)."""
    from mribench.api.method import PROFILES

    name = _require(data, "method", str, path, "a method name")
    if name != method:
        raise _damaged(path, f"names the method {name!r}, info.json {method!r}")
    profile = data.get("profile", "quick")
    if profile not in PROFILES:
        raise _damaged(path, f"'profile' must be one of {', '.join(PROFILES)}, got "
                             f"{_show(profile)}")
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise _damaged(path, f"'params' must be an object, got {_show(params)}")
    for key in WORK_SIZE_PARAMS:
        value = params.get(key)
        if _is_int(value) and value > MAX_WORK_SIZE:
            raise ModelError(f"{path}: {key}={value} asks for a working side over "
                             f"{MAX_WORK_SIZE} px, more than any method allows; refused")
    return data


# --------------------------------------------------------------------------- state.json


#: Each node type and its keys: key -> (types, what).
_NODES: dict[str, dict[str, tuple[tuple[type, ...], str]]] = {
    "value": {"value": (_SCALARS, "a number, string, boolean or null")},
    "list": {"items": ((list,), "a list of nodes")},
    "tuple": {"items": ((list,), "a list of nodes")},
    "dict": {"items": ((dict,), "an object of nodes")},
    "ndarray": {"key": ((str,), "an arrays.npz key")},
    "object": {"class": ((str,), "a class name"), "state": ((dict,), "an object of nodes")},
    "sklearn": {"file": ((str,), "an sklearn/*.skops file"), "class": ((str,), "a class name")},
    "torch": {"file": ((str,), "a torch/*.pt file"), "index": ((int,), "an integer"),
              "class": ((str,), "a class name")},
}


def check_attribute_name(name: Any, owner: type, where: str) -> None:
    """``name`` may be set on an instance of ``owner``: a learned attribute (:data:`LEARNED`,
    no ``__``) that ``owner`` does not define."""
    if not isinstance(name, str) or not LEARNED.fullmatch(name) or "__" in name:
        raise _damaged(where, f"{_show(name)} is not a learned attribute (a name like "
                              "model_: a letter first, '_' last, no '__')")
    if hasattr(owner, name):
        raise _damaged(where, f"{name!r} would replace {owner.__name__}.{name}, refused")


def check_state(data: dict[str, Any], path: Path, owner: type) -> dict[str, Any]:
    """``state.json``'s attributes, checked against the schema for a method of class
    ``owner``; returns ``{name: node}``."""
    attributes = data.get("attributes")
    if not isinstance(attributes, dict):
        raise _damaged(path, f"'attributes' must be an object, got "
                             f"{_show(attributes, 'attributes' in data)}")
    for name, node in attributes.items():
        check_attribute_name(name, owner, str(path))
        check_node(node, path, name, 0)
    return attributes


def check_node(node: Any, path: Path, where: str, depth: int) -> None:
    """One state node (and its children) against :data:`_NODES`."""
    if depth > MAX_DEPTH:
        raise _damaged(path, f"{where} is nested more than {MAX_DEPTH} deep")
    if not isinstance(node, dict) or not isinstance(node.get("type"), str) \
            or node["type"] not in _NODES:
        raise _damaged(path, f"{where} is not a state node (an object whose 'type' is one of "
                             f"{', '.join(_NODES)})")
    spec = _NODES[node["type"]]
    extra = sorted(set(node) - set(spec) - {"type"})
    if extra:
        raise _damaged(path, f"{where}: unexpected key(s) {', '.join(map(repr, extra))}")
    for key, (types, what) in spec.items():
        value = node.get(key)
        if key not in node or not isinstance(value, types) or (
                isinstance(value, bool) and bool not in types):
            raise _damaged(path, f"{where}: {key!r} must be {what}, got "
                                 f"{_show(value, key in node)}")
    _check_node_values(node, path, where, depth)


def _check_node_values(node: dict, path: Path, where: str, depth: int) -> None:
    kind = node["type"]
    if kind == "value" and _is_int(node["value"]) and not -_INT64 <= node["value"] < _INT64:
        raise _damaged(path, f"{where}: integer out of the 64-bit range")
    elif kind in ("list", "tuple"):
        for i, item in enumerate(node["items"]):
            check_node(item, path, f"{where}[{i}]", depth + 1)
    elif kind == "dict":
        for key, item in node["items"].items():
            check_node(item, path, f"{where}[{key!r}]", depth + 1)
    elif kind == "ndarray" and not _ARRAY_KEY.fullmatch(node["key"]):
        raise _damaged(path, f"{where}: {_show(node['key'])} is not an arrays.npz key")
    elif kind in ("torch", "sklearn"):
        prefix = "torch/" if kind == "torch" else "sklearn/"
        if not FILE_NAME.fullmatch(node["file"]) or not node["file"].startswith(prefix):
            raise _damaged(path, f"{where}: {_show(node['file'])} is not a {prefix}* file")
        if kind == "torch" and not 0 <= node["index"] < MAX_FILES:
            raise _damaged(path, f"{where}: network index {node['index']} out of range")
    elif kind == "object":
        cls = plain_class(node["class"], path)
        allowed = _object_fields(cls)
        for key, item in node["state"].items():
            if key not in allowed:
                check_attribute_name(key, cls, f"{path}: {where}")
            check_node(item, path, f"{where}.{key}", depth + 1)


def plain_class(name: str, path: Path | str) -> type:
    """The class of :data:`PLAIN_TYPES` named ``name`` (else
    ModelError); imported only from that fixed list."""
    import importlib

    if name not in PLAIN_TYPES:
        raise _damaged(path, f"unexpected object type {name!r} in state.json; allowed: "
                             f"{', '.join(PLAIN_TYPES)}")
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def _object_fields(cls: type) -> set[str]:
    """Names an object of a plain type may set besides learned attributes: a dataclass's
    fields, else its constructor's parameters."""
    if dataclasses.is_dataclass(cls):
        return {f.name for f in dataclasses.fields(cls)}
    if cls.__init__ is object.__init__:
        return set()
    parameters = inspect.signature(cls.__init__).parameters.values()
    return {p.name for p in parameters if p.name != "self" and not p.name.startswith("_")
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def make_object(cls: type, state: dict[str, Any], path: Path | str, where: str) -> Any:
    """An instance of the plain type ``cls`` from its decoded ``state``: a dataclass through
    its constructor (its checks run), another class attribute by attribute."""
    if dataclasses.is_dataclass(cls):
        missing = sorted(f.name for f in dataclasses.fields(cls) if f.name not in state
                         and f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)
        if missing:
            raise _damaged(path, f"{where}: {cls.__name__} lacks {', '.join(missing)}")
        try:
            return cls(**state)
        except (TypeError, ValueError, MribenchError) as exc:
            raise _damaged(path, f"{where}: not a valid {cls.__name__} "
                                 f"({' '.join(str(exc).split())[:120]})") from None
    obj = cls.__new__(cls)
    for key, value in state.items():
        setattr(obj, key, value)
    return obj


# --------------------------------------------------------------------------- binary files


def check_zip(path: Path, what: str) -> None:
    """``path`` is a zip archive (torch and skops files are) whose members hold at most
    :data:`MAX_MODEL_BYTES` uncompressed; read from its directory, nothing extracted."""
    try:
        with zipfile.ZipFile(path) as archive:
            total = sum(max(info.file_size, 0) for info in archive.infolist())
    except Exception as exc:  # zipfile raises many kinds on a damaged archive
        raise _damaged(path, f"not a readable {what} (truncated or not a zip archive: "
                             f"{' '.join(str(exc).split())[:100]})") from None
    if total > MAX_MODEL_BYTES:
        raise ModelError(f"{path}: would unpack to {total} bytes, more than the "
                         f"{MAX_MODEL_BYTES} a model file may; refused")


def check_npz(path: Path) -> None:
    """``arrays.npz``: every member an ``.npy`` whose header (read first) gives a plain
    dtype and a size its member holds, at most :data:`MAX_ARRAY_BYTES` together."""
    import numpy as np
    from numpy.lib import format as npy

    readers = {(1, 0): "read_array_header_1_0", (2, 0): "read_array_header_2_0"}
    check_zip(path, "arrays.npz")
    total = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                with archive.open(info) as member:
                    version = npy.read_magic(member)
                    if version not in readers:
                        raise _damaged(path, f"{info.filename}: .npy format {version}, "
                                             "expected 1.0 or 2.0")
                    shape, _, dtype = getattr(npy, readers[version])(member)
                    if dtype.hasobject:
                        raise _damaged(path, f"{info.filename} holds Python objects")
                    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
                    if nbytes > info.file_size:
                        raise _damaged(path, f"{info.filename} claims {nbytes} bytes but "
                                             f"holds {info.file_size}")
                    total += nbytes
    except ModelError:
        raise
    except Exception as exc:  # a damaged archive or header: whatever numpy raises
        raise _damaged(path, f"not a readable arrays.npz ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:100]})") from None
    if total > MAX_ARRAY_BYTES:
        raise ModelError(f"{path}: arrays of {total} bytes, more than the {MAX_ARRAY_BYTES} "
                         "a model may hold; refused")


def check_weights(build: Any, index: int, state: dict[str, Any], path: Path,
                  where: str) -> str:
    """Build network ``index`` on torch's ``meta`` device (no memory) and compare it with the
    checkpoint ``state``: refused when its weights pass :data:`MAX_WEIGHT_BYTES` or a name or
    shape differs. Returns the network's class name."""
    import torch

    try:
        with torch.device("meta"):
            probe = build(index)
    except Exception as exc:  # the saved parameters do not make a network
        raise ModelError(f"{path}: build_network() fails on the saved parameters "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
                         ) from None
    if not isinstance(probe, torch.nn.Module):
        raise ModelError(f"{where}: build_network() gave a {type(probe).__name__}, not a "
                         "torch network")
    expected = probe.state_dict()
    nbytes = sum(t.numel() * t.element_size() for t in expected.values())
    if nbytes > MAX_WEIGHT_BYTES:
        raise ModelError(f"{path}: the saved parameters make a network of {nbytes} bytes, "
                         f"more than the {MAX_WEIGHT_BYTES} a model may; refused")
    if set(expected) != set(state):
        diff = sorted(set(expected) ^ set(state))
        raise ModelError(f"{path}: the weights do not fit the rebuilt network (names differ: "
                         f"{', '.join(diff[:4])}{' ...' if len(diff) > 4 else ''})")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ModelError(f"{path}: the weights do not fit the rebuilt network ({key}: "
                             f"{tuple(state[key].shape)} saved, {tuple(tensor.shape)} "
                             "expected)")
    cls = type(probe)
    return f"{cls.__module__}.{cls.__qualname__}"
