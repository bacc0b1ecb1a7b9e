"""Typed specs: what ``--dataset`` / ``--test-on`` and ``--method`` text means, parsed once.

A spec is parsed where it enters (the CLI, a suite file, a Python call) into a frozen value
that carries its options; nothing downstream splits the text again.

- :class:`DatasetSpec`: ``name``, ``name[k=v,...]`` or ``name:PATH`` (optionally
  ``name:PATH[k=v,...]``). ``image_size=`` among the options is lifted into
  :attr:`DatasetSpec.image_size`; the path into :attr:`DatasetSpec.data_dir`.
- :class:`MethodSpec`: ``name`` or ``name[k=v,...]``; :func:`parse_methods` turns ``all`` or a
  comma list into method specs.

The image size has one default (:data:`DEFAULT_IMAGE_SIZE`), one range
(:data:`IMAGE_SIZE_RANGE`) and one rule for which wins (:func:`resolve_image_size`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mribench.api.dataset import DEFAULT_IMAGE_SIZE
from mribench.api.errors import MribenchError
from mribench.api.params import format_spec, int_from_text, parse_spec, split_top_level

__all__ = ["DEFAULT_IMAGE_SIZE", "IMAGE_SIZE_RANGE", "NO_SKILL", "DatasetSpec", "MethodSpec",
           "check_image_size", "get_dataset", "unique_labels", "parse_methods", "resolve_image_size",
           "resolve_methods"]

#: Smallest and largest side (pixels) of the square slices a run works at.
IMAGE_SIZE_RANGE: tuple[int, int] = (8, 1024)

#: The ``kind`` of the reference rows every run carries (never part of ``all``, never ranked).
NO_SKILL = "no-skill"

#: ``name:`` prefix of a data set read from a path (``folder:``, ``lgg:``, ``brats:``).
_PREFIX = re.compile(r"^([a-z][a-z0-9_-]*):(.+)$", re.IGNORECASE)


def check_image_size(value: Any, option: str = "--image-size") -> int:
    """``value`` as an image size in :data:`IMAGE_SIZE_RANGE`, or a one-line error naming
    ``option``."""
    lo, hi = IMAGE_SIZE_RANGE
    value = int_from_text(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise MribenchError(f"{option} must be an integer from {lo} to {hi}, got {value!r}")
    return value


def resolve_image_size(spec_size: int | None, option_size: int | None,
                       spec_text: str = "") -> int:
    """The one rule for the image size: the data-set spec's ``image_size=`` when it gives one,
    else ``--image-size``, else :data:`DEFAULT_IMAGE_SIZE`; both given and different is an
    error (never a silent choice)."""
    if spec_size is not None and option_size is not None and spec_size != option_size:
        raise MribenchError(f"{spec_text or 'the data set'} sets image_size={spec_size} but "
                            f"--image-size is {option_size}; give the size once")
    if spec_size is not None:
        return spec_size
    return DEFAULT_IMAGE_SIZE if option_size is None else option_size


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed data-set spec.

    Attributes
    ----------
    text : str
        What the user wrote (kept for messages and records).
    name : str
        The plugin's name (``br35h``, ``folder``, ``lgg``, ...).
    options : tuple of (key, value)
        The plugin's options, sorted, without ``image_size`` and the path.
    data_dir : str or None
        The path of ``name:PATH``.
    image_size : int or None
        ``image_size=`` when the spec sets it.
    display : str or None
        ``name=``: what tables and folders call the data set.
    """

    text: str
    name: str
    options: tuple[tuple[str, Any], ...] = ()
    data_dir: str | None = None
    image_size: int | None = None
    display: str | None = None

    @classmethod
    def parse(cls, text: str | DatasetSpec, known: tuple[str, ...] | None = None
              ) -> DatasetSpec:
        """Parse ``text``; ``known`` (default: the registry's data sets) decides whether a
        ``name:`` prefix names a plugin."""
        if isinstance(text, DatasetSpec):
            return text
        raw = str(text).strip()
        if not raw:
            raise MribenchError("--dataset is empty; give a name from `bench list` or "
                                "folder:PATH")
        if known is None:
            from mribench.api.registry import datasets

            known = tuple(datasets())
        options: dict[str, Any] = {}
        data_dir: str | None = None
        match = _PREFIX.match(raw)
        if match and "[" not in match.group(1) and match.group(1) in known:
            name, path = match.group(1), match.group(2)
            # name:PATH[k=v]: options in brackets, unless they belong to an existing path
            if path.endswith("]") and "[" in path and not Path(path).exists():
                path, options = parse_spec(path)
            data_dir = path
        else:
            name, options = parse_spec(raw)
            if name not in known:
                raise MribenchError(f"unknown data set {name!r}; known: {', '.join(known)}, "
                                    "or folder:PATH (see `bench list`)")
        size = options.pop("image_size", None)
        if size is not None:
            size = check_image_size(size, f"{raw}: image_size")
        display = options.pop("name", None)
        if display is not None and (not isinstance(display, str) or not _safe(display)):
            raise MribenchError(f"{raw}: name= must be a short name of letters, digits, - or _, "
                                f"got {display!r}")
        return cls(text=raw, name=name, options=tuple(sorted(options.items())),
                   data_dir=data_dir, image_size=size, display=display)

    @property
    def option_dict(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def harmonised(self) -> bool:
        """Whether the spec asks for harmonised slices (``harmonise=true``)."""
        return self.option_dict.get("harmonise") is True

    def preprocessed_like(self, other: DatasetSpec) -> DatasetSpec:
        """This spec with ``other``'s pixel preprocessing (harmonisation): a model trained on
        ``other`` is scored on this set prepared the same way."""
        if self.harmonised == other.harmonised:
            return self
        options = {k: v for k, v in self.option_dict.items() if k != "harmonise"}
        return self._with({**options, "harmonise": True} if other.harmonised else options)

    def with_options(self, **changes: Any) -> DatasetSpec:
        """This spec with options added or replaced (its text rewritten to match)."""
        return self._with({**self.option_dict, **changes})

    def _with(self, options: dict[str, Any]) -> DatasetSpec:
        return replace(self, text=_rewrite(self, options),
                       options=tuple(sorted(options.items())))

    @property
    def label(self) -> str:
        """A short, path-safe name for tables and folders, from what the user wrote: the
        ``name=`` option, else the folder's name for ``folder:PATH``, else the plugin's name
        (:func:`unique_labels` tells apart two sets of one plugin by their folders)."""
        if self.display:
            return self.display
        base = self.folder_name if self.name == "folder" and self.data_dir else self.name
        return _sanitise(base) or "external"

    @property
    def folder_name(self) -> str:
        """The last part of the spec's path (``kaggle_3m`` of ``lgg:PATH/kaggle_3m``)."""
        return _sanitise(Path(self.data_dir).name) if self.data_dir else ""

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class MethodSpec:
    """A method with the parameters the user set: ``name`` or ``name[k=v,...]``."""

    name: str
    overrides: tuple[tuple[str, Any], ...] = field(default=())

    @property
    def override_dict(self) -> dict[str, Any]:
        return dict(self.overrides)

    def with_overrides(self, extra: dict[str, Any]) -> MethodSpec:
        """These overrides updated by ``extra`` (a suite's ``[params]``)."""
        merged = {**self.override_dict, **extra}
        return MethodSpec(self.name, tuple(merged.items()))

    def __str__(self) -> str:
        return format_spec(self.name, self.override_dict)


def _rewrite(spec: DatasetSpec, options: dict[str, Any]) -> str:
    inner = format_spec(spec.name, {**options, **({"name": spec.display}
                                                  if spec.display else {})})
    return inner if spec.data_dir is None else f"{spec.name}:{spec.data_dir}" + inner[
        len(spec.name):]


def _sanitise(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text.strip()).strip("-")


def _safe(text: str) -> bool:
    return bool(text) and len(text) <= 64 and _sanitise(text) == text and text[0] not in "-_"


def unique_labels(specs: Sequence[DatasetSpec], taken: Sequence[str] = ()) -> list[str]:
    """Distinct names for ``specs``: each :attr:`~DatasetSpec.label`; two of one plugin are
    told apart by their folders' names, then by ``-2``, ``-3``; never a name in ``taken``."""
    first = [s.label for s in specs]
    labels = [f"{s.name}-{s.folder_name}" if first.count(first[i]) > 1 and not s.display
              and s.folder_name and s.name != "folder" else first[i]
              for i, s in enumerate(specs)]
    out: list[str] = []
    used = set(taken)
    for label in labels:
        name, k = label, 2
        while name in used:
            name, k = f"{label}-{k}", k + 1
        used.add(name)
        out.append(name)
    return out


def parse_methods(text: str) -> tuple[MethodSpec, ...]:
    """``--method`` text (``all``, a name, or a comma list of ``name[k=v]``) -> method specs,
    each checked against the registry; naming one twice is an error."""
    from mribench.api.registry import get_method, methods

    if str(text).strip() == "all":  # every pipeline; the no-skill rows are added by the runner
        return tuple(MethodSpec(name) for name, cls in methods().items()
                     if cls.kind != NO_SKILL)
    specs: list[MethodSpec] = []
    for item in filter(None, (s.strip() for s in split_top_level(str(text)))):
        name, overrides = parse_spec(item)
        get_method(name)
        spec = MethodSpec(name, tuple(overrides.items()))
        if spec in specs:
            raise MribenchError(f"--method names {item!r} twice; give each method (or variant) "
                                "once")
        specs.append(spec)
    if not specs:
        raise MribenchError("no method given; use --method all or a name from `bench list`")
    return tuple(specs)


def resolve_methods(spec: str) -> list[tuple[str, dict[str, Any]]]:
    """``--method`` text as (name, overrides) pairs (:func:`parse_methods`)."""
    return [(m.name, m.override_dict) for m in parse_methods(spec)]


def get_dataset(spec: str | DatasetSpec) -> tuple[type[Any], dict[str, Any]]:
    """The plugin class of a ``--dataset`` spec and its options (with ``data_dir`` for
    ``name:PATH`` and ``image_size`` when the spec sets them)."""
    from mribench.api.registry import datasets

    parsed = DatasetSpec.parse(spec, tuple(datasets()))
    options = parsed.option_dict
    if parsed.data_dir is not None:
        options["data_dir"] = parsed.data_dir
    if parsed.image_size is not None:
        options["image_size"] = parsed.image_size
    return datasets()[parsed.name], options
