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

**Loading** checks, each failure a :class:`ModelError` of one line: the folder and its files
exist and match their SHA-256; the format is known; the mribench major version is the same (a
different minor version only warns); the method is registered; every skops file holds only
the trusted types and a scikit-learn estimator; every checkpoint is a plain ``state_dict``
(tensors by name) that fits the rebuilt network.
"""

from __future__ import annotations

import hashlib
import importlib
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from mribench.api.errors import MribenchError
from mribench.api.method import Method
from mribench.atomic import atomic_write_json, read_json

__all__ = ["FORMAT", "PLAIN_TYPES", "TRUSTED_SKOPS_TYPES", "ModelError", "check_version",
           "load_model", "read_info", "save_model"]

#: Version of the folder layout; :func:`load_model` refuses others.
FORMAT = 1

#: Plain-data classes whose instances are stored attribute by attribute (no code, no pickle).
#: Qualified names, imported only from this fixed list.
PLAIN_TYPES: tuple[str, ...] = (
    "mribench.api.thresholds.AreaThreshold",
    "mribench.api.thresholds.ScoreThreshold",
    "mribench.blocks.crf.DenseCRF",
    "mribench.blocks.crf.CRFParams",
    "mribench.blocks.nn.train.TrainResult",
)

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
)

_SCALARS = (type(None), bool, int, float, str)


class ModelError(MribenchError):
    """A model folder cannot be written or loaded as it is (one line: what and where)."""


# --------------------------------------------------------------------------- helpers


def _qualname(obj_or_cls: Any) -> str:
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    return f"{cls.__module__}.{cls.__qualname__}"


def _plain_class(name: str) -> type:
    if name not in PLAIN_TYPES:
        raise ModelError(f"unexpected object type {name!r} in state.json; allowed: "
                         f"{', '.join(PLAIN_TYPES)}")
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)


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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
        torch.save(state, target)
        return {"type": "torch", "file": rel, "index": 0 if index is None else index,
                "class": _qualname(module)}

    def _sklearn(self, estimator: Any, path: str) -> dict:
        import skops.io as sio

        rel = f"sklearn/{path.replace('[', '.').replace(']', '').replace(chr(39), '')}.skops"
        target = self.folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        sio.dump(estimator, target)
        return {"type": "sklearn", "file": rel, "class": _qualname(estimator)}


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
        files = {p.relative_to(tmp).as_posix(): _sha256(p)
                 for p in sorted(tmp.rglob("*")) if p.is_file()}
        atomic_write_json(tmp / "info.json", {
            "format": FORMAT, "mribench_version": __version__, "method": method.name,
            "info": dict(info), "files": files, "versions": _versions()})
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
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
    """``info.json`` of a model folder (format, versions, the training ``info``, file hashes)."""
    folder = Path(folder)
    path = folder / "info.json"
    if not path.is_file():
        raise ModelError(f"{folder}: not a model folder (no info.json); pass the folder "
                         "save_model wrote (results/<run>/<row>/model)")
    try:
        data = read_json(path)
    except ValueError as exc:
        raise ModelError(f"{path}: not valid JSON ({exc}); the model folder is damaged") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object; the model folder is damaged")
    return data


class _Reader:
    def __init__(self, folder: Path, files: dict[str, str]) -> None:
        self.folder = folder
        self.files = files
        self._arrays: dict[str, np.ndarray] | None = None

    def path(self, rel: str) -> Path:
        if rel not in self.files or Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise ModelError(f"{self.folder}: {rel!r} is not one of the model's listed files")
        return self.folder / rel

    def arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            with np.load(self.path("arrays.npz"), allow_pickle=False) as data:
                self._arrays = {k: data[k] for k in data.files}
        return self._arrays

    def has_torch(self, node: Any) -> bool:
        if isinstance(node, dict):
            if node.get("type") == "torch":
                return True
            return any(self.has_torch(v) for v in node.values())
        if isinstance(node, list):
            return any(self.has_torch(v) for v in node)
        return False

    def decode(self, node: Any, method: Method, where: str) -> Any:
        if not isinstance(node, dict) or "type" not in node:
            raise ModelError(f"{self.folder}/state.json: {where} is not a state node")
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
                raise ModelError(f"{self.folder}: array {node['key']!r} of {where} is missing "
                                 "from arrays.npz") from None
        if kind == "object":
            cls = _plain_class(node["class"])
            obj = cls.__new__(cls)
            obj.__dict__.update({k: self.decode(v, method, f"{where}.{k}")
                                 for k, v in node["state"].items()})
            return obj
        if kind == "sklearn":
            return load_skops(self.path(node["file"]))
        if kind == "torch":
            return self._network(node, method, where)
        raise ModelError(f"{self.folder}/state.json: unknown node type {kind!r} at {where}")

    def _network(self, node: dict, method: Method, where: str) -> Any:
        state = load_state_dict(self.path(node["file"]))
        build = getattr(method, "build_network", None)
        if not callable(build):
            raise ModelError(f"{method.name}: the model holds a network ({where}) but the "
                             "method defines no build_network() hook")
        net = build(int(node.get("index", 0)))
        if _qualname(net) != node.get("class", _qualname(net)):
            raise ModelError(f"{where}: build_network() gave a {_qualname(net)}, the saved "
                             f"weights are of a {node['class']}")
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{self.path(node['file'])}: the weights do not fit the rebuilt "
                             f"network ({first})") from None
        net.eval()
        return net


def load_state_dict(path: Path) -> dict[str, Any]:
    """A checkpoint that must be a plain ``state_dict`` (tensors by name), else ModelError."""
    import pickle

    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{path}: not a plain state_dict checkpoint, refused ({first[:160]})"
                         ) from None
    if not (isinstance(state, dict) and all(isinstance(k, str) for k in state)
            and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise ModelError(f"{path}: not a plain state_dict (a dict of tensors by name) but a "
                         f"{_qualname(state)}; refused")
    return state


def load_skops(path: Path) -> Any:
    """A scikit-learn estimator from a skops file holding only trusted types, else ModelError."""
    import skops.io as sio

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
        raise ModelError(f"{path}: cannot be loaded ({type(exc).__name__}: {str(exc)[:120]})"
                         ) from None
    if not _is_estimator(estimator):
        raise ModelError(f"{path}: holds a {_qualname(estimator)}, not a scikit-learn "
                         "estimator; refused")
    return estimator


def _params_from_json(cls: type[Method], values: dict[str, Any]) -> Any:
    """The method's ``Params`` from JSON values (lists back to tuples where the field's default
    is a tuple), validated by its constraints."""
    defaults = cls.Params()
    fixed = {}
    for key, value in values.items():
        default = getattr(defaults, key, None)
        fixed[key] = tuple(value) if isinstance(default, tuple) and isinstance(value, list) \
            else value
    return defaults.replace(**fixed)


def load_model(folder: Path | str) -> Method:
    """Rebuild the method saved in ``folder`` by :func:`save_model`, ready to ``predict``.

    Raises :class:`ModelError` (one line) for a missing or damaged folder, a file whose hash
    changed, another major mribench version, an unknown method, or an unexpected object type
    in a skops file or checkpoint. Warns when the minor version differs.
    """
    from mribench.api.registry import get_method

    folder = Path(folder)
    meta = read_info(folder)
    if meta.get("format") != FORMAT:
        raise ModelError(f"{folder}: model format {meta.get('format')!r}, this mribench reads "
                         f"format {FORMAT}; re-train the model")
    check_version(str(meta.get("mribench_version", "0.0.0")), where=str(folder))
    files = meta.get("files") or {}
    for rel, digest in files.items():
        path = folder / rel
        if not path.is_file():
            raise ModelError(f"{path}: missing from the model folder")
        if _sha256(path) != digest:
            raise ModelError(f"{path}: changed since the model was saved (SHA-256 differs); "
                             "refused")
    reader = _Reader(folder, files)
    try:
        spec = read_json(reader.path("params.json"))
        state = read_json(reader.path("state.json"))["attributes"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{folder}: params.json or state.json is damaged ({exc})") from None
    cls = get_method(spec["method"])
    method = cls(_params_from_json(cls, spec.get("params", {})),
                 profile=spec.get("profile", "quick"))
    # Networks last: build_network() may read other learned attributes (e.g. pca_).
    order = sorted(state, key=lambda k: reader.has_torch(state[k]))
    for name in order:
        if not name.endswith("_"):
            raise ModelError(f"{folder}/state.json: {name!r} is not a learned attribute")
        setattr(method, name, reader.decode(state[name], method, name))
    return method


def model_info(folder: Path | str) -> dict[str, Any]:
    """The ``info`` dict the caller passed to :func:`save_model` (image size, data set, ...)."""
    return dict(read_info(folder).get("info") or {})


def describe(folder: Path | str) -> str:
    """One line: method, profile, image size, mribench version (for CLI messages)."""
    meta = read_info(folder)
    info = meta.get("info") or {}
    return (f"{meta.get('method')} (mribench {meta.get('mribench_version')}, image size "
            f"{info.get('image_size', '?')}, data {info.get('dataset', '?')})")
