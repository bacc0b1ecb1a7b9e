"""Split manifests: which ids are train, val and test, fixed in a committed JSON file.

Every method of a run uses the same manifest, and its ``sha256`` is recorded in the results.
Manifests live in ``benchmarks/splits/<dataset>-<strategy>.json``.

Strategies (``make_split``):

``stratified``
    Seeded group split, 70/15/15 of the labelled images: near-duplicate groups are kept inside
    one part, and each part's share of tumour images is within about a point of the whole
    set's. For ``synthetic`` and ``folder`` data sets (and any data set without a published
    split).
``official``
    The *unified* Br35H split (docs: DESIGN.md): one partition of every labelled image that
    keeps the published Mask-RCNN TRAIN/VAL/TEST assignment of the annotated images, keeps each
    near-duplicate group in one part, and is stratified by label; the remaining groups are
    split so the parts come out near 70/15/15 overall. Where the published split itself puts
    one group in two parts (Br35H: about 13 TEST images have a near-duplicate in TRAIN or VAL),
    the published assignment wins, and the group's unannotated members go to the earliest of
    its parts (train before val before test), so they add no new leaking test image.
``leak-free``
    ``official`` minus the test images whose group reaches train or val, and minus the val
    images whose group reaches train (both listed under ``dropped``), so no group straddles
    two parts: test scores are not inflated by copies seen in training, and model selection
    on val is not either. The drops are known before the free groups are placed, so the
    parts are balanced without them. The honest default for Br35H (13 test and 33 val images
    dropped at 0.995).

Group assignment is greedy: pinned groups first, then the free groups, largest first (ties in
a seeded random order), each into the part whose per-label counts most need it (the smallest
increase of ``sum_{part,label} (count - target)^2 / target``). That keeps the parts within a
point or two of 70/15/15 and of the overall label balance.

The ``sha256`` of a manifest is taken over its canonical content: the JSON (sorted keys, no
spaces) of dataset, strategy, seed, threshold, options, train, val, test and dropped. The
informational ``stats``, ``notes`` and ``created_with`` fields are not hashed, so the hash
only changes when the split does.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mribench.api.errors import DataError
from mribench.api.types import Sample
from mribench.atomic import atomic_write_json
from mribench.data.duplicates import DEFAULT_THRESHOLD
from mribench.paths import benchmarks_dir

PARTS: tuple[str, str, str] = ("train", "val", "test")
STRATEGIES: tuple[str, ...] = ("stratified", "official", "leak-free")
FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)

__all__ = ["DEFAULT_THRESHOLD", "FRACTIONS", "Manifest", "PARTS", "STRATEGIES", "apply", "audit", "default_strategy",
           "load_manifest", "make_split", "manifest_path", "resolve_manifest",
           "save_manifest", "split_for"]

_HASHED = ("dataset", "strategy", "seed", "threshold", "options", "train", "val", "test",
           "dropped")


def _version() -> str:
    from mribench import __version__

    return f"mribench {__version__}"


@dataclass(frozen=True)
class Manifest:
    """One split of one data set.

    Attributes
    ----------
    dataset : str
        The data set's split name (``br35h``, ``synthetic``, ``folder-<name>``).
    strategy : str
        ``stratified``, ``official`` or ``leak-free`` (or a user's own name).
    seed : int
        Seed of the group assignment.
    threshold : float
        Near-duplicate correlation threshold the groups were built with.
    train, val, test : tuple of str
        Sorted ids of each part.
    dropped : tuple of str
        Labelled ids deliberately left out (``leak-free``'s leaking test images).
    options : dict
        Data-set options the ids and groups depend on (e.g. synthetic ``n``, ``seed``).
    created_with : str
        ``mribench <version>`` that made it (not hashed).
    notes : str
        Free text (not hashed).
    stats : dict
        Counts, label balance and leakage at creation time (not hashed; see :func:`audit`).
    """

    dataset: str
    strategy: str
    seed: int
    threshold: float
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    dropped: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    created_with: str = ""
    notes: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    def parts(self) -> dict[str, tuple[str, ...]]:
        """``{"train": ids, "val": ids, "test": ids}``."""
        return {"train": self.train, "val": self.val, "test": self.test}

    def part_of(self) -> dict[str, str]:
        """Map each id to its part."""
        return {sid: part for part, ids in self.parts().items() for sid in ids}

    def canonical(self) -> str:
        """The hashed content as canonical JSON."""
        data = self.to_dict()
        return json.dumps({k: data[k] for k in _HASHED}, sort_keys=True, separators=(",", ":"))

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical().encode("utf-8")).hexdigest()

    @property
    def counts(self) -> dict[str, int]:
        return {part: len(ids) for part, ids in self.parts().items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset, "strategy": self.strategy, "seed": int(self.seed),
            "threshold": float(self.threshold), "options": dict(self.options),
            "train": sorted(self.train), "val": sorted(self.val), "test": sorted(self.test),
            "dropped": sorted(self.dropped), "created_with": self.created_with,
            "notes": self.notes, "stats": self.stats,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "manifest") -> Manifest:
        """Build a manifest from its JSON form; each field is type-checked, and a bad one is a
        one-line DataError naming ``source`` and the key."""

        def bad(key: str, what: str) -> DataError:
            got = data.get(key)
            shown = type(got).__name__ if isinstance(got, (dict, list)) else repr(got)[:40]
            return DataError(f"{source}: key {key!r} must be {what}, got {shown}; remake the "
                             "split with `bench split make`")

        def field_of(key: str, kinds: type | tuple[type, ...], what: str, default: Any = ...
                     ) -> Any:
            if key not in data:
                if default is ...:
                    raise DataError(f"{source}: not a split manifest (no key {key!r}); remake "
                                    "it with `bench split make`")
                return default
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise bad(key, what)
            return value

        def ids(key: str, default: Any = ...) -> tuple[str, ...]:
            values = field_of(key, list, "a list of ids", default)
            if not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values):
                raise bad(key, "a list of ids (strings)")
            out = [str(v) for v in values]
            if len(set(out)) != len(out):
                dup = next(v for v in out if out.count(v) > 1)
                raise DataError(f"{source}: id {dup!r} is listed twice in {key}; remake the "
                                "split with `bench split make`")
            return tuple(sorted(out))

        threshold = float(field_of("threshold", (int, float), "a number in [0, 1]",
                                   DEFAULT_THRESHOLD))
        if not 0.0 <= threshold <= 1.0:
            raise bad("threshold", "a number in [0, 1]")
        manifest = cls(
            dataset=field_of("dataset", str, "a data set name"),
            strategy=field_of("strategy", str, "a strategy name"),
            seed=field_of("seed", int, "an integer", 0),
            threshold=threshold,
            train=ids("train"), val=ids("val"), test=ids("test"), dropped=ids("dropped", []),
            options=dict(field_of("options", dict, "an object", {})),
            created_with=str(data.get("created_with", "")), notes=str(data.get("notes", "")),
            stats=dict(field_of("stats", dict, "an object", {})),
        )
        seen: dict[str, str] = {}
        for part, part_ids in manifest.parts().items():
            for sid in part_ids:
                if sid in seen:
                    raise DataError(f"{source}: id {sid!r} is in both {seen[sid]} and {part}; "
                                    "remake the split with `bench split make`")
                seen[sid] = part
        recorded = data.get("sha256")
        if recorded and recorded != manifest.sha256:
            raise DataError(f"{source}: content does not match its sha256 (edited by hand?); "
                            "remake it with `bench split make` or delete the sha256 field")
        return manifest


def save_manifest(manifest: Manifest, path: Path | str) -> Path:
    """Write ``manifest`` as sorted-key JSON (with its ``sha256``) atomically; return the path."""
    path = Path(path)
    atomic_write_json(path, {**manifest.to_dict(), "sha256": manifest.sha256})
    return path


def load_manifest(path: Path | str) -> Manifest:
    """Read a manifest; a missing or malformed file is a DataError one-liner."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: split manifest not found; make one with `bench split make`"
                        ) from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DataError(f"{path}: unreadable split manifest ({' '.join(str(exc).split())}); "
                        "remake it with `bench split make`") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: not a split manifest; remake it with `bench split make`")
    return Manifest.from_dict(data, source=str(path))


# --------------------------------------------------------------------------- making splits


def _groups(samples: Sequence[Sample]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        groups[s.group or s.id].append(i)
    return groups


#: What each strategy's manifest says it is (its ``notes``).
_NOTES = {
    "stratified": "seeded stratified group split 70/15/15; near-duplicate groups in one part",
    "official": "unified split: published Mask-RCNN parts kept for the annotated images, "
                "other near-duplicate groups in one part, stratified 70/15/15",
    "leak-free": "the official (unified) split minus test images whose near-duplicate "
                 "group reaches train or val and val images whose group reaches train",
}


def make_split(dataset_name: str, samples: Sequence[Sample],
               official_parts: Mapping[str, str] | None = None, strategy: str = "stratified",
               seed: int = 0, threshold: float = DEFAULT_THRESHOLD,
               options: Mapping[str, Any] | None = None,
               fractions: tuple[float, float, float] = FRACTIONS) -> Manifest:
    """Split the labelled ``samples`` (their ``group`` fields already set) by ``strategy``.

    The steps: check the request and keep the labelled samples; place the groups the
    published split pins (dropping, for ``leak-free``, the members of straddling groups
    outside their earliest part); place the free groups greedily (module docstring); write
    down the manifest and its audit.

    Parameters
    ----------
    dataset_name : str
        Recorded in the manifest (the data set's ``split_name``).
    samples : sequence of Sample
        All samples of the data set; unlabelled ones (label -1) are ignored.
    official_parts : mapping id -> "train" | "val" | "test", optional
        A published assignment (``Dataset.official_parts()``), required by ``official`` and
        ``leak-free``; ids absent from ``samples`` are ignored.
    strategy : str
        ``stratified``, ``official`` or ``leak-free``.
    seed : int
        Seed of the tie-breaking order of the group assignment.
    threshold : float
        The near-duplicate threshold the groups were built with (recorded).
    options : mapping, optional
        Data-set options the ids depend on (recorded, compared by :func:`split_for`).
    fractions : (train, val, test)
        Target shares of the whole labelled set.
    """
    labelled, official = _split_request(dataset_name, samples, official_parts, strategy,
                                        fractions)
    ids = [s.id for s in labelled]
    labels = np.array([s.label for s in labelled], dtype=np.int64)
    assign, dropped_mask, free = _pin_official_groups(labelled, official, strategy)
    kept = ~dropped_mask
    _place_free_groups(free, labels, assign, kept, fractions, seed)

    parts = {p: [ids[i] for i in np.nonzero((assign == k) & kept)[0]]
             for k, p in enumerate(PARTS)}
    dropped = [ids[i] for i in np.nonzero(dropped_mask)[0]]
    manifest = Manifest(
        dataset=dataset_name, strategy=strategy, seed=int(seed), threshold=float(threshold),
        train=tuple(sorted(parts["train"])), val=tuple(sorted(parts["val"])),
        test=tuple(sorted(parts["test"])), dropped=tuple(sorted(dropped)),
        options=dict(options or {}), created_with=_version(), notes=_NOTES[strategy],
    )
    stats = audit(manifest, samples)
    return replace(manifest, stats=stats)


def _split_request(dataset_name: str, samples: Sequence[Sample],
                   official_parts: Mapping[str, str] | None, strategy: str,
                   fractions: tuple[float, float, float]) -> tuple[list[Sample], dict[str, str]]:
    """The labelled samples and the published parts ``strategy`` keeps (none for
    ``stratified``); a DataError for an unknown strategy, bad fractions, a repeated id, fewer
    than 3 labelled images, or a published split that is missing or names another part."""
    if strategy not in STRATEGIES:
        raise DataError(f"unknown split strategy {strategy!r}; choose one of "
                        f"{', '.join(STRATEGIES)}")
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise DataError(f"split fractions must be three shares summing to 1, got {fractions}")
    labelled = [s for s in samples if s.label in (0, 1)]
    ids = [s.id for s in labelled]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"data set {dataset_name!r} has id {dup!r} twice; ids must be unique")
    if len(labelled) < 3:
        raise DataError(f"data set {dataset_name!r} has {len(labelled)} labelled images; "
                        "a split needs at least 3")
    official = dict(official_parts or {})
    if strategy in ("official", "leak-free") and not official:
        raise DataError(f"data set {dataset_name!r} has no published split; "
                        "use the strategy 'stratified'")
    if strategy == "stratified":
        official = {}
    bad = sorted({p for p in official.values() if p not in PARTS})
    if bad:
        raise DataError(f"official parts must be train/val/test, got {', '.join(bad)}")
    return labelled, official


def _pin_official_groups(labelled: Sequence[Sample], official: Mapping[str, str], strategy: str
                         ) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """Place every group holding a published id: its published members where published, the
    others in the group's earliest part (``leak-free`` drops the members outside it).

    Returns the part index of each sample (-1: not placed yet), the dropped mask, and the
    free groups (lists of sample indices) left to place.
    """
    rank = {p: k for k, p in enumerate(PARTS)}
    assign = np.full(len(labelled), -1, dtype=np.int64)
    dropped_mask = np.zeros(len(labelled), dtype=bool)
    free: list[list[int]] = []
    for members in _groups(labelled).values():
        pinned = {i: rank[official[labelled[i].id]] for i in members if labelled[i].id in official}
        if not pinned:
            free.append(members)
            continue
        earliest = min(pinned.values())
        for i in members:
            assign[i] = pinned.get(i, earliest)
            # leak-free: a straddling group keeps only its earliest part's members.
            dropped_mask[i] = strategy == "leak-free" and assign[i] != earliest
    return assign, dropped_mask, free


def _place_free_groups(free: Sequence[list[int]], labels: np.ndarray, assign: np.ndarray,
                       kept: np.ndarray, fractions: tuple[float, float, float],
                       seed: int) -> None:
    """Put each free group (largest first, ties in a seeded order) in the part whose per-label
    counts most need it (the module docstring's cost); writes ``assign`` in place."""
    totals = np.array([(labels[kept] == 0).sum(), (labels[kept] == 1).sum()], dtype=np.float64)
    target = np.outer(np.asarray(fractions, dtype=np.float64), totals)  # (part, label)
    weight = 1.0 / np.maximum(target, 1.0)
    count = np.zeros((3, 2), dtype=np.float64)
    for i in np.nonzero((assign >= 0) & kept)[0]:
        count[assign[i], labels[i]] += 1
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(free))
    order = sorted(order.tolist(), key=lambda k: -len(free[k]))  # stable: random among equals
    for k in order:
        members = free[k]
        add = np.bincount(labels[members], minlength=2).astype(np.float64)
        cost = ((2.0 * add * (count - target) + add**2) * weight).sum(axis=1)
        part = int(np.argmin(cost))
        count[part] += add
        assign[members] = part


# --------------------------------------------------------------------------- using splits


def apply(manifest: Manifest, samples: Sequence[Sample], *, source: str | None = None
          ) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """The (train, val, test) samples of ``manifest``, in the manifest's (sorted) id order.

    Samples the manifest does not name (dropped or unlabelled ones) are left out. An id the
    data set lacks is a DataError that says to remake the split.
    """
    index = {s.id: s for s in samples}
    missing = [sid for ids in manifest.parts().values() for sid in ids if sid not in index]
    if missing:
        where = source or f"split manifest {manifest.dataset}-{manifest.strategy}"
        raise DataError(
            f"{where} names {len(missing)} id(s) the data set lacks (e.g. {missing[0]!r}); "
            f"remake the split with `{_make_command(manifest)}`"
        )
    train, val, test = ([index[sid] for sid in ids] for ids in manifest.parts().values())
    return train, val, test


def _make_command(manifest: Manifest) -> str:
    """The command lines that make ``manifest``'s kind of split for the data at hand, into a
    file of the user's own (never over a committed manifest), and use it."""
    dataset = manifest.dataset
    spec = "folder:PATH" if dataset.startswith("folder-") else f"{dataset} --data-dir PATH"
    strategy = f" --strategy {manifest.strategy}" if manifest.strategy in STRATEGIES else ""
    return (f"bench split make {spec}{strategy} --out my-split.json`, then run with "
            "`--split my-split.json")


def audit(manifest: Manifest, samples: Sequence[Sample]) -> dict[str, Any]:
    """Counts, label balance and near-duplicate leakage of ``manifest`` on ``samples``.

    Uses the samples' ``group`` fields. Returns a JSON-ready dict::

        {"n_samples", "n_labelled", "n_groups", "n_groups_straddling", "n_unassigned",
         "n_dropped", "positive_rate",
         "parts": {part: {"n", "positives", "positive_rate", "groups"}},
         "leaks": {"test_in_train", "test_in_val", "test_in_train_or_val", "val_in_train"}}

    ``leaks`` counts images (not groups): e.g. ``test_in_train_or_val`` is how many test
    images have a near-duplicate (a member of their group) in train or val. Ids the data set
    lacks are counted under ``n_missing`` and otherwise ignored.
    """
    index = {s.id: s for s in samples}
    part_of = manifest.part_of()
    labelled = [s for s in samples if s.label in (0, 1)]
    group_parts: dict[str, set[str]] = defaultdict(set)
    for sid, part in part_of.items():
        if sid in index:
            group_parts[index[sid].group or sid].add(part)
    parts: dict[str, dict[str, Any]] = {}
    for part, ids in manifest.parts().items():
        present = [index[sid] for sid in ids if sid in index]
        pos = sum(1 for s in present if s.label == 1)
        parts[part] = {
            "n": len(present), "positives": pos,
            "positive_rate": round(pos / len(present), 4) if present else float("nan"),
            "groups": len({s.group or s.id for s in present}),
        }

    def leaking(part: str, others: tuple[str, ...]) -> int:
        return sum(1 for sid in manifest.parts()[part] if sid in index
                   and group_parts[index[sid].group or sid] & set(others))

    n_pos = sum(1 for s in labelled if s.label == 1)
    return {
        "n_samples": len(samples),
        "n_labelled": len(labelled),
        "n_groups": len({s.group or s.id for s in labelled}),
        "n_groups_straddling": sum(1 for p in group_parts.values() if len(p) > 1),
        "n_unassigned": sum(1 for s in labelled if s.id not in part_of),
        "n_dropped": len(manifest.dropped),
        "n_missing": sum(1 for sid in part_of if sid not in index),
        "positive_rate": round(n_pos / len(labelled), 4) if labelled else float("nan"),
        "parts": parts,
        "leaks": {
            "test_in_train": leaking("test", ("train",)),
            "test_in_val": leaking("test", ("val",)),
            "test_in_train_or_val": leaking("test", ("train", "val")),
            "val_in_train": leaking("val", ("train",)),
        },
    }


# --------------------------------------------------------------------------- finding splits


def manifest_path(dataset_name: str, strategy: str) -> Path:
    """Where the committed manifest of (dataset, strategy) lives in the repository."""
    return benchmarks_dir() / "splits" / f"{dataset_name}-{strategy}.json"


def default_strategy(official_parts: Mapping[str, str] | None) -> str:
    """``leak-free`` for a data set with a published split, else ``stratified``."""
    return "leak-free" if official_parts else "stratified"


def _is_explicit(text: str) -> bool:
    """``--split`` names a manifest file rather than a strategy."""
    return text.endswith(".json") or "/" in text or "\\" in text or Path(text).is_file()


def resolve_manifest(dataset_name: str, strategy_or_path: str) -> Path | None:
    """The manifest file for ``--split``: an explicit path (which must exist), else the
    committed ``benchmarks/splits/<dataset>-<strategy>.json`` when present, else None."""
    if _is_explicit(strategy_or_path):
        path = Path(strategy_or_path).expanduser()
        if not path.is_file():
            raise DataError(f"{path}: split manifest not found; give an existing file or a "
                            f"strategy ({', '.join(STRATEGIES)})")
        return path
    path = manifest_path(dataset_name, strategy_or_path)
    return path if path.is_file() else None


def split_for(dataset_name: str, samples: Sequence[Sample], strategy_or_path: str | None = None,
              *, official_parts: Mapping[str, str] | None = None,
              options: Mapping[str, Any] | None = None, seed: int = 0,
              threshold: float = DEFAULT_THRESHOLD) -> tuple[Manifest, Path | None]:
    """The manifest a run uses, and its file (None when made on the fly).

    Order: an explicit path (used as is); else the committed manifest for
    (``dataset_name``, strategy) when it was made with the same data-set ``options``; else a
    fresh one from :func:`make_split` (deterministic for ``seed``), e.g. for
    ``synthetic[n=200]`` or a user's folder. The strategy defaults to
    :func:`default_strategy`. Ids the data set lacks surface later in :func:`apply`.
    """
    strategy_or_path = strategy_or_path or default_strategy(official_parts)
    path = resolve_manifest(dataset_name, strategy_or_path)
    if path is not None:
        manifest = load_manifest(path)
        if _is_explicit(strategy_or_path) or manifest.options == dict(options or {}):
            return manifest, path
    return make_split(dataset_name, samples, official_parts, strategy_or_path, seed, threshold,
                      options), None
