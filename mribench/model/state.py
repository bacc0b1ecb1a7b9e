"""Save a fitted method to a ``model/`` folder and load it back, without pickle.

A fitted method is its ``Params`` plus its learned attributes, the ones whose name ends in
``_`` (scikit-learn's convention, which every plugin follows). :func:`save_model` walks those
attributes and stores each value in the safest format that fits it:

=========================================  ==================================================
value                                      stored as
=========================================  ==================================================
None, bool, int, float, str (numpy          JSON, in ``state.json`` (NaN and infinities
scalars become Python ones)                 allowed, as Python's ``json`` writes them)
list, tuple, dict with ``str`` keys         JSON nodes, walked recursively
numpy array (not of objects)                ``arrays.npz`` (loaded with ``allow_pickle=False``)
``torch.nn.Module``                         ``torch/<attr>[.<i>].pt``: its ``state_dict`` only,
                                            loaded with ``torch.load(weights_only=True)``
scikit-learn estimator or pipeline          ``sklearn/<attr>[.<i>].skops`` (skops, loaded
                                            with an explicit list of trusted types)
a plain-data object of :data:`PLAIN_TYPES`  its attributes, walked recursively (the
(thresholds, the dense CRF, TrainResult)    thresholds and post-processing settings)
=========================================  ==================================================

Anything else is refused at save time with one line naming the attribute, so a model folder
never holds a value that could only be restored by unpickling.

**Rebuilding a network.** A ``state_dict`` holds weights, not the architecture. A method that
keeps a torch network defines ``build_network(self, index=0)``, the one place where its
``fit`` builds the network from ``self.params`` (and from learned attributes that are not
networks, e.g. the number of PCA components); :func:`load_model` restores every other
attribute first, calls the hook (``index``: the position in a list of networks, e.g. the
stages of an input cascade; 0 for a lone network) and loads the weights with
``strict=True``. A method holding networks in more than one attribute is refused at save time.

**Layout** of ``model/``::

    params.json     {"method", "profile", "params"}: Method(params, profile=...) again
    state.json      {"attributes": {name: node}}: the learned attributes as JSON nodes
    info.json       {"format", "mribench_version", "info": {...}, "files": {path: sha256},
                     "versions": {torch, scikit-learn, skops, numpy}}
    arrays.npz      numpy arrays (when any)
    torch/*.pt      state_dicts (when any)
    sklearn/*.skops scikit-learn parts (when any)

``info`` is what the caller passes: the runner gives ``image_size``, ``dataset``,
``dataset_fingerprint``, ``split_hash`` and ``seed`` (see :func:`save_model`).

**Loading** treats the folder as untrusted input (:mod:`mribench.model.schema`: the schema of
its JSON files, the names it may set, the sizes it may allocate) and checks, each failure a
:class:`ModelError` of one line naming the file: the folder and its files exist, are regular
files within the size bounds and match their SHA-256; the format is known; the mribench major
version is the same (a different minor version only warns); the method is registered and its
parameters valid; every skops file holds only the trusted types and a scikit-learn estimator of
the saved class; every checkpoint is a plain ``state_dict`` (tensors by name) whose network,
built first on torch's ``meta`` device, is within :data:`~mribench.model.schema.MAX_WEIGHT_BYTES`
and of the same shapes.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mribench.api.errors import MribenchError
from mribench.api.method import Method
from mribench.atomic import atomic_write_json
from mribench.model.schema import (
    PLAIN_TYPES,
    ModelError,
    check_files,
    check_info,
    check_npz,
    check_params,
    check_state,
    check_weights,
    check_zip,
    make_object,
    plain_class,
    read_model_json,
)

__all__ = ["FORMAT", "PLAIN_TYPES", "TRUSTED_SKOPS_TYPES", "ModelError", "check_version",
           "file_sha256", "load_model", "network_indices", "read_info", "replace_folder",
           "save_model", "save_pipeline"]

#: Version of the folder layout; :func:`load_model` refuses others.
FORMAT = 1

#: Types a skops file may hold beyond those skops trusts by default (scikit-learn estimators,
#: numpy arrays and builtins): the helpers the shipped pipelines' estimators keep.
TRUSTED_SKOPS_TYPES: tuple[str, ...] = (
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.metrics._dist_metrics.EuclideanDistance32",
    "sklearn.metrics._dist_metrics.ManhattanDistance64",
    "sklearn.metrics._dist_metrics.MinkowskiDistance64",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.tree._tree.Tree",  # the trees of size-only's random forest
)

_SCALARS = (type(None), bool, int, float, str)


# --------------------------------------------------------------------------- helpers


def _qualname(obj_or_cls: Any) -> str:
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_module(value: Any) -> bool:
    torch = _torch_if_loaded()
    return torch is not None and isinstance(value, torch.nn.Module)


def _torch_if_loaded():
    import sys

    return sys.modules.get("torch")


def _is_estimator(value: Any) -> bool:
    try:
        from sklearn.base import BaseEstimator
    except ImportError:  # pragma: no cover - scikit-learn is a core dependency
        return False
    return isinstance(value, BaseEstimator)


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_sha256 = file_sha256  # the earlier private name


def _version_tuple(text: str) -> tuple[int, int]:
    parts = text.split("+")[0].split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return -1, -1


def check_version(saved: str, current: str | None = None, *, where: str = "model") -> None:
    """Refuse a model saved by another major version of mribench; warn on another minor."""
    if current is None:
        from mribench import __version__ as current
    s, c = _version_tuple(saved), _version_tuple(current)
    if s[0] != c[0]:
        raise ModelError(f"{where}: saved by mribench {saved}, this is mribench {current} "
                         "(another major version); re-train it or install mribench "
                         f"{s[0]}.x")
    if s[1] != c[1]:
        warnings.warn(f"{where}: saved by mribench {saved}, loading with {current} "
                      "(another minor version); check its predictions", stacklevel=3)


# --------------------------------------------------------------------------- saving


class _Writer:
    """Encodes values into JSON nodes, writing arrays, weights and estimators on the side."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.arrays: dict[str, np.ndarray] = {}
        self.network_attrs: set[str] = set()

    def encode(self, value: Any, path: str, attr: str, index: int | None = None) -> dict:
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, _SCALARS):
            return {"type": "value", "value": value}
        if isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                raise ModelError(f"{path}: numpy array of Python objects cannot be saved")
            key = f"a{len(self.arrays)}"
            self.arrays[key] = value
            return {"type": "ndarray", "key": key}
        if _is_module(value):
            return self._torch(value, path, attr, index)
        if _is_estimator(value):
            return self._sklearn(value, path)
        if isinstance(value, (list, tuple)):
            items = [self.encode(v, f"{path}[{i}]", attr, i) for i, v in enumerate(value)]
            return {"type": "list" if isinstance(value, list) else "tuple", "items": items}
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise ModelError(f"{path}: only dicts with string keys can be saved")
            return {"type": "dict",
                    "items": {k: self.encode(v, f"{path}[{k!r}]", attr) for k, v in value.items()}}
        name = _qualname(value)
        if name in PLAIN_TYPES:
            return {"type": "object", "class": name,
                    "state": {k: self.encode(v, f"{path}.{k}", attr)
                              for k, v in vars(value).items()}}
        raise ModelError(f"{path}: cannot save a {name} (supported: numbers, strings, lists, "
                         "dicts, numpy arrays, torch networks, scikit-learn estimators, "
                         f"{', '.join(n.rsplit('.', 1)[1] for n in PLAIN_TYPES)})")

    def _torch(self, module: Any, path: str, attr: str, index: int | None) -> dict:
        import torch

        self.network_attrs.add(attr)
        if len(self.network_attrs) > 1:
            raise ModelError(f"{path}: networks in more than one attribute "
                             f"({', '.join(sorted(self.network_attrs))}); build_network(index) "
                             "can rebuild one attribute's network or list of networks")
        rel = f"torch/{attr}{'' if index is None else f'.{index}'}.pt"
        target = self.folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
        buffer = io.BytesIO()  # written by Python, so a full disk is an OSError (ENOSPC)
        torch.save(state, buffer)
        target.write_bytes(buffer.getbuffer())
        return {"type": "torch", "file": rel, "index": 0 if index is None else index,
                "class": _qualname(module)}

    def _sklearn(self, estimator: Any, path: str) -> dict:
        import skops.io as sio

        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", path.replace("[", ".").replace("]", "")
                      .replace(chr(39), ""))[:180]
        rel, n = f"sklearn/{stem}.skops", 1
        while (self.folder / rel).exists():  # two dict keys that differ only in odd characters
            rel, n = f"sklearn/{stem}.{n}.skops", n + 1
        target = self.folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        sio.dump(estimator, target)
        return {"type": "sklearn", "file": rel, "class": _qualname(estimator)}


def replace_folder(tmp: Path, folder: Path) -> None:
    """Put the finished folder ``tmp`` in the place of ``folder`` (renames, so a reader sees
    the old folder or the new one, never half of one)."""
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(folder)


def save_model(method: Method, folder: Path | str, *, info: dict[str, Any]) -> None:
    """Write the fitted ``method`` to ``folder`` (a ``model/`` folder), replacing it atomically.

    Parameters
    ----------
    method : Method
        A fitted plugin instance (its learned attributes end in ``_``).
    folder : Path
        The folder to write, normally ``<row folder>/model``; written into a temporary sibling
        first and renamed, so a reader never sees half a model.
    info : dict
        JSON-serialisable facts about the training, stored in ``info.json``. The runner passes
        ``image_size`` (int: side the slices were resized to; ``bench predict`` resizes the same
        way), ``dataset`` (the data-set spec), ``dataset_fingerprint``, ``split_hash`` and
        ``seed``; any other keys are kept too.

    Raises
    ------
    ModelError
        A learned attribute holds a value that cannot be stored without pickle, or the method
        holds a network but defines no ``build_network`` hook.
    """
    from mribench import __version__

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        writer = _Writer(tmp)
        learned = {k: v for k, v in vars(method).items() if k.endswith("_")
                   and not k.startswith("_")}
        nodes = {k: writer.encode(v, k, k) for k, v in sorted(learned.items())}
        if writer.network_attrs and not callable(getattr(method, "build_network", None)):
            raise ModelError(f"{method.name}: holds a torch network in "
                             f"{', '.join(sorted(writer.network_attrs))} but defines no "
                             "build_network() hook to rebuild it")
        if writer.arrays:
            with open(tmp / "arrays.npz", "wb") as handle:
                np.savez(handle, **writer.arrays)
        atomic_write_json(tmp / "params.json", {"method": method.name,
                                                "profile": method.profile,
                                                "params": method.params.as_dict()})
        atomic_write_json(tmp / "state.json", {"attributes": nodes})
        files = {p.relative_to(tmp).as_posix(): file_sha256(p)
                 for p in sorted(tmp.rglob("*")) if p.is_file()}
        atomic_write_json(tmp / "info.json", {
            "format": FORMAT, "mribench_version": __version__, "method": method.name,
            "info": dict(info), "files": files, "versions": _versions()})
        replace_folder(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "scikit-learn", "skops", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


# --------------------------------------------------------------------------- loading


def read_info(folder: Path | str) -> dict[str, Any]:
    """``info.json`` of a model folder (format, versions, the training ``info``, file hashes),
    checked against the schema (:func:`mribench.model.schema.check_info`)."""
    folder = Path(folder)
    path = folder / "info.json"
    if not path.exists() and not path.is_symlink():
        raise ModelError(f"{folder}: not a model folder (no info.json); pass the folder "
                         "save_model wrote (results/<run>/<row>/model)")
    return check_info(read_model_json(path), path)


class _Reader:
    def __init__(self, folder: Path, files: dict[str, str],
                 networks: Callable[[int], Any] | None = None) -> None:
        self.folder = folder
        self.files = files
        self.networks = networks
        self._arrays: dict[str, np.ndarray] | None = None

    def path(self, rel: str) -> Path:
        if rel not in self.files or Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise ModelError(f"{self.folder}/state.json: {rel!r} is not one of the model's "
                             "listed files")
        return self.folder / rel

    def arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            path = self.path("arrays.npz")
            check_npz(path)  # headers first: sizes and dtypes before any allocation
            try:
                with np.load(path, allow_pickle=False) as data:
                    self._arrays = {k: data[k] for k in data.files}
            except (ValueError, OSError, EOFError) as exc:
                raise ModelError(f"{path}: not a readable arrays.npz ({type(exc).__name__}: "
                                 f"{' '.join(str(exc).split())[:120]})") from None
        return self._arrays

    def has_torch(self, node: Any) -> bool:
        if isinstance(node, dict):
            if node.get("type") == "torch":
                return True
            return any(self.has_torch(v) for v in node.values())
        if isinstance(node, list):
            return any(self.has_torch(v) for v in node)
        return False

    def decode(self, node: dict, method: Method, where: str) -> Any:
        """The value of a state node (checked by :func:`mribench.model.schema.check_node`)."""
        kind = node["type"]
        if kind == "value":
            return node["value"]
        if kind in ("list", "tuple"):
            items = [self.decode(v, method, f"{where}[{i}]") for i, v in enumerate(node["items"])]
            return items if kind == "list" else tuple(items)
        if kind == "dict":
            return {k: self.decode(v, method, f"{where}[{k!r}]") for k, v in node["items"].items()}
        if kind == "ndarray":
            try:
                return self.arrays()[node["key"]]
            except KeyError:
                raise ModelError(f"{self.folder}/arrays.npz: array {node['key']!r} of {where} "
                                 "is missing") from None
        if kind == "object":
            cls = plain_class(node["class"], self.folder / "state.json")
            state = {k: self.decode(v, method, f"{where}.{k}") for k, v in node["state"].items()}
            return make_object(cls, state, self.folder / "state.json", where)
        if kind == "sklearn":
            path = self.path(node["file"])
            estimator = load_skops(path)
            if _qualname(estimator) != node["class"]:
                raise ModelError(f"{path}: holds a {_qualname(estimator)}, state.json says "
                                 f"{node['class']} ({where}); refused")
            return estimator
        if self.networks is not None:  # an exported model: the networks come from elsewhere
            return self.networks(node["index"])
        return self._network(node, method, where)

    def _network(self, node: dict, method: Method, where: str) -> Any:
        path = self.path(node["file"])
        state = load_state_dict(path)
        build = getattr(method, "build_network", None)
        if not callable(build):
            raise ModelError(f"{method.name}: the model holds a network ({where}) but the "
                             "method defines no build_network() hook")
        built = check_weights(build, node["index"], state, path, where)  # on "meta" first
        if built != node["class"]:
            raise ModelError(f"{path}: build_network() gives a {built}, the saved weights are "
                             f"of a {node['class']} ({where})")
        net = build(node["index"])
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{path}: the weights do not fit the rebuilt network ({first})"
                             ) from None
        net.eval()
        return net


def load_state_dict(path: Path) -> dict[str, Any]:
    """A checkpoint that must be a plain ``state_dict`` (tensors by name), else ModelError."""
    import torch

    check_zip(path, "torch checkpoint")  # sizes first; a truncated file ends here
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # whatever a damaged or foreign file makes torch raise
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        first = (f"it refers to {found.group(1)}, which only unpickling code could restore"
                 if found else (str(exc).strip().splitlines() or [""])[0][:160])
        raise ModelError(f"{path}: not a plain state_dict checkpoint, refused "
                         f"({type(exc).__name__}: {first})") from None
    if not (isinstance(state, dict) and all(isinstance(k, str) for k in state)
            and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise ModelError(f"{path}: not a plain state_dict (a dict of tensors by name) but a "
                         f"{_qualname(state)}; refused")
    return state


def load_skops(path: Path) -> Any:
    """A scikit-learn estimator from a skops file holding only trusted types, else ModelError."""
    import skops.io as sio

    check_zip(path, "skops file")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # a damaged or foreign file
        raise ModelError(f"{path}: not a readable skops file ({type(exc).__name__}: "
                         f"{str(exc)[:120]})") from None
    unexpected = sorted(set(untrusted) - set(TRUSTED_SKOPS_TYPES))
    if unexpected:
        raise ModelError(f"{path}: holds unexpected object type(s) {', '.join(unexpected)}; "
                         "refused (only scikit-learn estimators are loaded)")
    try:
        estimator = sio.load(path, trusted=list(untrusted))
    except Exception as exc:
        raise ModelError(f"{path}: cannot be loaded ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:120]})") from None
    if not _is_estimator(estimator):
        raise ModelError(f"{path}: holds a {_qualname(estimator)}, not a scikit-learn "
                         "estimator; refused")
    return estimator


def _params_from_json(cls: type[Method], values: dict[str, Any], path: Path) -> Any:
    """The method's ``Params`` from JSON values (lists back to tuples where the field's default
    is a tuple), validated by its constraints."""
    defaults = cls.Params()
    fixed = {}
    for key, value in values.items():
        default = getattr(defaults, key, None)
        fixed[key] = tuple(value) if isinstance(default, tuple) and isinstance(value, list) \
            else value
    try:
        return defaults.replace(**fixed)
    except (MribenchError, TypeError, ValueError) as exc:
        raise ModelError(f"{path}: {' '.join(str(exc).split())[:200]}") from None


def _verify_files(folder: Path, files: dict[str, str]) -> None:
    """Each listed file: a regular file in the folder, within the size bound, same SHA-256."""
    check_files(folder, files)
    for rel, digest in files.items():
        path = folder / rel
        try:
            same = file_sha256(path) == digest
        except OSError as exc:
            raise ModelError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        if not same:
            raise ModelError(f"{path}: changed since the model was saved (SHA-256 differs); "
                             "refused")


def load_model(folder: Path | str, *, networks: Callable[[int], Any] | None = None) -> Method:
    """Rebuild the method saved in ``folder`` by :func:`save_model`, ready to ``predict``.

    ``networks``: for an exported model (:func:`save_pipeline`'s folder, which holds no
    weights), ``networks(index)`` gives the network at each place a ``state_dict`` was saved
    (an onnxruntime or TorchScript module with the same ``forward``).

    Raises :class:`ModelError` (one line, naming the file) for a missing or damaged folder, a
    file that breaks the schema or a size bound (:mod:`mribench.model.schema`), a file whose
    hash changed, another major mribench version, an unknown method or invalid parameters, or
    an unexpected object type in a skops file or checkpoint. Warns when the minor version
    differs.
    """
    from mribench.api.registry import get_method

    folder = Path(folder)
    meta = read_info(folder)
    if meta["format"] != FORMAT:
        raise ModelError(f"{folder / 'info.json'}: model format {meta['format']!r}, this "
                         f"mribench reads format {FORMAT}; re-train the model")
    check_version(meta["mribench_version"], where=str(folder))
    files = meta["files"]
    _verify_files(folder, files)
    reader = _Reader(folder, files, networks)
    params_path, state_path = reader.path("params.json"), reader.path("state.json")
    spec = check_params(read_model_json(params_path), params_path, meta["method"])
    try:
        cls = get_method(spec["method"])
    except MribenchError as exc:
        raise ModelError(f"{params_path}: {exc}") from None
    method = cls(_params_from_json(cls, spec.get("params", {}), params_path),
                 profile=spec.get("profile", "quick"))
    state = check_state(read_model_json(state_path), state_path, cls)
    # Networks last: build_network() may read other learned attributes (e.g. pca_).
    for name in sorted(state, key=lambda k: reader.has_torch(state[k])):
        setattr(method, name, reader.decode(state[name], method, name))
    return method


def network_indices(folder: Path | str) -> list[int]:
    """The indices of the networks a model folder saved (``[0]`` for a lone network, ``[0, 1]``
    for a list of two; ``[]`` for none), from its state.json."""
    folder = Path(folder)
    nodes = read_model_json(folder / "state.json").get("attributes", {})
    found: list[int] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "torch" and isinstance(node.get("index"), int):
                found.append(node["index"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(nodes)
    return sorted(found)


def save_pipeline(folder: Path | str, target: Path | str) -> None:
    """Copy the model folder ``folder`` to ``target`` without its network weights: what an
    exported model keeps of mribench's own pipeline (params, thresholds, scikit-learn parts,
    arrays), loaded back by ``load_model(target, networks=...)``. ``info.json`` lists the
    copied files only (with their hashes), so the copy is checked on load like any model."""
    folder, target = Path(folder), Path(target)
    meta = read_info(folder)
    _verify_files(folder, meta["files"])
    kept = {rel: digest for rel, digest in meta["files"].items() if not rel.startswith("torch/")}
    for rel in kept:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / rel, target / rel)
    atomic_write_json(target / "info.json", {**meta, "files": kept})


def model_info(folder: Path | str) -> dict[str, Any]:
    """The ``info`` dict the caller passed to :func:`save_model` (image size, data set, ...),
    checked against the schema."""
    return dict(read_info(folder)["info"])


def describe(folder: Path | str) -> str:
    """One line: method, profile, image size, mribench version (for CLI messages)."""
    meta = read_info(folder)
    info = meta["info"]
    return (f"{meta.get('method')} (mribench {meta.get('mribench_version')}, image size "
            f"{info.get('image_size', '?')}, data {info.get('dataset', '?')})")
