"""What decides a run: :class:`RunConfig`, the one owner of a run's configuration.

A run is configured from the command line, a suite file or Python alike, and every path ends
here: ``RunConfig(**values)`` parses the specs once (:class:`~mribench.api.specs.MethodSpec`,
:class:`~mribench.api.specs.DatasetSpec`), checks every value against :data:`RULES` (the
constraints the CLI used to hold) and raises one line naming the option, what is allowed and
what was given. The CLI passes its options through untyped, so ``--image-size 5`` and a suite's
``image_size = 5`` fail with the same message (a suite's prefixed with its path).

The fields that change results (methods and their params, data set, split, profile, image
size, seeds, evaluation sets, bootstrap size) form the run's *identity*, stored in
``run.json``; ``--resume`` with another identity is refused with one line naming what differs
(:func:`identity_diff`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mribench.api.errors import MribenchError
from mribench.api.params import Interval, OneOf, int_from_text, split_top_level
from mribench.api.specs import (
    DatasetSpec,
    MethodSpec,
    check_image_size,
    parse_methods,
    resolve_image_size,
)
from mribench.cpu_kernels import MODE_VAR, MODES, process_mode

__all__ = ["MAX_SEED", "RULES", "RunConfig", "check_seed", "format_seeds", "identity_diff",
           "parse_seeds"]

#: Largest seed accepted: numpy's SeedSequence takes any int, torch.manual_seed needs < 2**63,
#: and scikit-learn's random_state needs < 2**32.
MAX_SEED = 2**32 - 1
#: Most seeds one run may list.
MAX_SEEDS = 1000


@dataclass(frozen=True)
class Rule:
    """How one field is checked: the option that sets it and what it allows."""

    option: str
    allowed: OneOf | Interval | None = None
    #: Whether ``None`` (the option not given) is allowed.
    optional: bool = False

    def check(self, value: Any) -> Any:
        if value is None and self.optional:
            return None
        if self.allowed is None:
            return value
        if isinstance(self.allowed, Interval):
            value = int_from_text(value)  # the CLI passes numbers as it received them
        if not self.allowed.check(value):
            raise MribenchError(f"{self.option} must be {self._describe()}, got {value!r}")
        return value

    def _describe(self) -> str:
        if isinstance(self.allowed, Interval):
            return f"an integer from {self.allowed.low:g} to {self.allowed.high:g}"
        return str(self.allowed)


#: The constraints of the plain fields; specs, seeds and the image size have their own parsers.
RULES: dict[str, Rule] = {
    "task": Rule("--task", OneOf(("classify", "segment")), optional=True),
    "profile": Rule("--profile", OneOf(("quick", "paper"))),
    "device": Rule("--device", OneOf(("auto", "cpu", "cuda"))),
    "jobs": Rule("--jobs", Interval(1, 64, integer=True)),
    "n_boot": Rule("--n-boot", Interval(0, 100000, integer=True)),
    "threads": Rule("--threads", Interval(1, 256, integer=True)),
    "folds": Rule("--folds", Interval(2, 20, integer=True), optional=True),
    "cpu_kernels": Rule(f"${MODE_VAR}", OneOf(MODES)),
}


@dataclass
class RunConfig:
    """Everything that decides a run; the CLI's options map onto these fields one to one.

    Text is accepted wherever the CLI gives text (``methods="all"``, ``dataset="br35h"``,
    ``seeds="0-4"``, ``test_on="lgg:PATH,brats:PATH"``) and parsed here, once.

    ``seeds`` lists the training seeds (each method is fitted once per seed on the same split);
    ``seed`` is used when ``seeds`` is empty. The split, when made on the fly, uses the first
    seed, so every seed sees the same split. ``image_size`` is resolved by
    :func:`~mribench.api.specs.resolve_image_size` (the data-set spec's ``image_size=``, else
    this field, else 256). ``test_on`` lists external evaluation sets; ``test_split`` names a
    split strategy or manifest whose test part is used on them (default: all their labelled
    samples). ``jobs`` is the executor's number of workers; ``threads`` the BLAS/OpenMP and
    torch intra-op threads *each job* computes with, under every executor: floating-point sums
    in another order give deep rows other weights, so it is part of the run's identity and the
    way to use more cores without changing numbers is ``jobs``. ``cpu_kernels`` names the CPU
    kernels every process of the run computes with (:mod:`mribench.cpu_kernels`: ``portable``
    or ``native``), part of the identity for the same reason; it is set by
    ``$MRIBENCH_CPU_KERNELS`` before Python starts, because numpy and torch choose their
    kernels once per process, and a config that asks for another is refused. ``report_dir`` is
    where the report goes (default: ``report/`` inside the results folder). ``baselines`` adds
    the no-skill rows of every task the run's methods answer.
    """

    methods: tuple[MethodSpec, ...] | str = "all"
    dataset: DatasetSpec | str | tuple[DatasetSpec, ...] = "synthetic"
    data_dir: Path | None = None
    task: str | None = None
    profile: str = "quick"
    device: str = "auto"
    seed: int = 0
    seeds: tuple[int, ...] | str = ()
    out: Path | None = None
    resume: bool = False
    split: str | None = None
    image_size: int | None = None
    jobs: int = 1
    threads: int = 1
    cpu_kernels: str = field(default_factory=process_mode)
    folds: int | None = None
    n_boot: int = 1000
    test_on: tuple[DatasetSpec, ...] | str = ()
    test_split: str | None = None
    executor: str = "local"
    executor_options: dict[str, Any] = field(default_factory=dict)
    show_progress: bool = False
    results_root: Path = field(default_factory=lambda: Path("results"))
    report_dir: Path | None = None
    #: Whether the no-skill reference rows (``methods/no_skill.py``) join the run.
    baselines: bool = True
    #: Artefacts every job is also scored under (``--corrupt``: ``all``, ``none`` or a comma
    #: list of :data:`mribench.blocks.artefacts.ARTEFACTS`); parsed to a tuple.
    corrupt: tuple[str, ...] | str | None = ()
    #: Their severities (``--severities``: ``1-5``, ``1,3,5``); parsed to a tuple.
    severities: tuple[int, ...] | str | None = "1-5"
    #: The row the relative corruption error is measured against (``--corrupt-reference``;
    #: None: the best classical row on clean data).
    corrupt_reference: str | None = None
    #: Whether ``methods`` was ``all`` (methods that do not answer ``task`` are then dropped).
    all_methods: bool = field(default=False, init=False)
    #: Every data set of the run (``dataset`` is the first): each gets its own split (or
    #: folds), every method is trained on each and scored on the others (the transfer matrix).
    datasets: tuple[DatasetSpec, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        for name, rule in RULES.items():
            setattr(self, name, rule.check(getattr(self, name)))
        _check_types(self)
        if self.cpu_kernels != process_mode():
            raise MribenchError(f"this process computes with {process_mode()} CPU kernels, not "
                                f"{self.cpu_kernels}: start it with {MODE_VAR}="
                                f"{self.cpu_kernels} in its environment")
        if isinstance(self.methods, str):
            if not self.methods.strip():
                raise MribenchError("--method is empty; use --method all or names from "
                                    "`bench list`")
            self.all_methods = self.methods.strip() == "all"
            self.methods = parse_methods(self.methods)
        self.methods = tuple(self.methods)
        self.datasets = _parse_datasets(self.dataset)
        self.dataset = self.datasets[0]
        # a model trained harmonised is scored on external sets harmonised the same way (and
        # the identity records the specs it was scored on)
        self.test_on = tuple(spec.preprocessed_like(self.dataset)
                             for spec in _parse_test_on(self.test_on))
        self.seeds = _parse_seed_field(self.seeds, self.seed)
        self.corrupt, self.severities = _parse_corruption(self.corrupt, self.severities)
        self.seed = self.seeds[0]
        size = None if self.image_size is None else check_image_size(self.image_size)
        for spec in self.datasets:  # one run, one size: each spec's own size must agree
            size = resolve_image_size(spec.image_size, size, spec.text)
        self.image_size = resolve_image_size(None, size)
        for spec in self.test_on:
            if spec.image_size not in (None, self.image_size):
                raise MribenchError(f"--test-on {spec.text}: sets image_size={spec.image_size}; "
                                    "external sets are read at the run's image size "
                                    f"({self.image_size}); drop the option")
        self.data_dir = _as_path(self.data_dir)
        self.out = _as_path(self.out)
        self.report_dir = _as_path(self.report_dir)
        self.results_root = Path(self.results_root)
        if not self.executor.strip():
            raise MribenchError("--executor is empty; give a name (local, dask, slurm)")

    @classmethod
    def from_sources(cls, options: dict[str, Any], *, suite: str | None = None,
                     explicit: set[str] | frozenset[str] = frozenset()) -> RunConfig:
        """A config from CLI ``options`` over a suite file: a suite fills only the options
        that were not given explicitly (click's convention); a suite's error names its file."""
        values = dict(options)
        if suite:
            from mribench.run.suite import load_suite

            loaded = load_suite(suite)
            try:  # the suite's own values first, so its errors name its file
                cls(**loaded.values)
            except MribenchError as exc:
                raise MribenchError(f"{loaded.path}: {exc}") from None
            values.update({k: v for k, v in loaded.values.items() if k not in explicit})
        return cls(**values)

    @property
    def split_seed(self) -> int:
        return self.seeds[0]

    def dataset_text(self) -> str:
        """``--dataset`` as text (a comma list for several data sets)."""
        return ",".join(spec.text for spec in self.datasets)

    def method_text(self) -> str:
        """``--method`` as text (``all`` when every method was asked for)."""
        return "all" if self.all_methods else ",".join(str(m) for m in self.methods)

    def as_record(self) -> dict[str, Any]:
        """The configuration as JSON values (for ``run.json``)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "methods":
                value = self.method_text()
            elif isinstance(value, DatasetSpec | Path):
                value = str(value)
            elif f.name in ("test_on", "datasets"):
                value = [s.text for s in value]
            out[f.name] = value
        return json.loads(json.dumps(out, default=str))

    def identity(self, methods: dict[str, dict[str, Any]], split_sha256: str,
                 data_fingerprint: str, version: str) -> dict[str, Any]:
        """What must match for ``--resume`` to continue a run (stored in run.json).

        Returned as JSON gives it back (tuples as lists), so it compares equal to the stored one.
        """
        return json.loads(json.dumps({
            "methods": methods,
            "dataset": self.dataset_text(),
            "folds": self.folds,
            "task": self.task,
            "profile": self.profile,
            "image_size": self.image_size,
            "seeds": list(self.seeds),
            "split_sha256": split_sha256,
            "data_fingerprint": data_fingerprint,
            "test_on": [s.text for s in self.test_on],
            "test_split": self.test_split,
            "n_boot": self.n_boot,
            "threads": self.threads,
            "cpu_kernels": self.cpu_kernels,
            "mribench": version,
            # the artefact axis only where asked: a run without it keeps its identity
            **({"corrupt": list(self.corrupt), "severities": list(self.severities)}
               if self.corrupt else {}),
        }))


#: Fields that hold text (or a path), with the option that sets them and whether None is
#: allowed; specs may also come typed (tuples of MethodSpec, a DatasetSpec).
_TEXT_FIELDS: dict[str, tuple[str, bool, tuple[type, ...]]] = {
    "methods": ("--method", False, (str, tuple, list)),
    "dataset": ("--dataset", False, (str, DatasetSpec, tuple, list)),
    "data_dir": ("--data-dir", True, (str, Path)),
    "out": ("--out", True, (str, Path)),
    "report_dir": ("--report-dir", True, (str, Path)),
    "results_root": ("results root", False, (str, Path)),
    "split": ("--split", True, (str,)),
    "test_split": ("--test-split", True, (str,)),
    "test_on": ("--test-on", True, (str, tuple, list)),
    "executor": ("--executor", False, (str,)),
    "executor_options": ("--executor-option", False, (dict,)),
    "resume": ("--resume", False, (bool,)),
    "show_progress": ("show_progress", False, (bool,)),
    "baselines": ("--baselines", False, (bool,)),
    "corrupt_reference": ("--corrupt-reference", True, (str,)),
}


def _check_types(config: RunConfig) -> None:
    for name, (option, optional, types) in _TEXT_FIELDS.items():
        value = getattr(config, name)
        if value is None and optional:
            continue
        if not isinstance(value, types):
            kinds = " or ".join("text" if t is str else "a path" if t is Path else "a list"
                                if t in (list, tuple) else t.__name__ for t in types
                                if t is not tuple)
            raise MribenchError(f"{option} must be {kinds}, got {value!r}")
    if isinstance(config.methods, tuple | list) and not all(
            isinstance(m, MethodSpec) for m in config.methods):
        raise MribenchError(f"--method must be text ('all' or a comma list), got "
                            f"{config.methods!r}")


def _parse_corruption(corrupt: Any, severities: Any) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """``--corrupt`` and ``--severities`` parsed (one line naming the allowed values)."""
    from mribench.blocks.artefacts import parse_artefacts, parse_severities

    if not isinstance(corrupt, str | tuple | list | type(None)):
        raise MribenchError(f"--corrupt must be text (all, none or a comma list), got "
                            f"{corrupt!r}")
    artefacts = parse_artefacts(corrupt)
    levels = parse_severities(None if severities in (None, "", ()) else severities)
    return artefacts, levels


def _as_path(value: Any) -> Path | None:
    return None if value in (None, "") else Path(value)


def _parse_datasets(value: Any) -> tuple[DatasetSpec, ...]:
    items = split_top_level(value) if isinstance(value, str) else (
        [value] if isinstance(value, DatasetSpec) else list(value))
    if not all(isinstance(v, str | DatasetSpec) for v in items):
        raise MribenchError(f"--dataset must be data-set specs (e.g. br35h,lgg:PATH), got "
                            f"{value!r}")
    specs = tuple(DatasetSpec.parse(v) for v in items if str(v).strip())
    if not specs:
        raise MribenchError("--dataset is empty; give a name from `bench list` or folder:PATH")
    texts = [s.text for s in specs]
    if len(set(texts)) != len(texts):
        raise MribenchError(f"--dataset names a data set twice: {', '.join(texts)}")
    return specs


def _parse_test_on(value: Any) -> tuple[DatasetSpec, ...]:
    if value is None:
        return ()
    items = split_top_level(value) if isinstance(value, str) else list(value)
    if not all(isinstance(v, str | DatasetSpec) for v in items):
        raise MribenchError(f"--test-on must be data-set specs (e.g. lgg:PATH), got {value!r}")
    specs = tuple(DatasetSpec.parse(v) for v in items if str(v).strip())
    texts = [s.text for s in specs]
    if len(set(texts)) != len(texts):
        raise MribenchError(f"--test-on names a data set twice: {', '.join(texts)}")
    return specs


def _parse_seed_field(seeds: Any, seed: Any) -> tuple[int, ...]:
    """``seeds`` as text (``0-4``), a list or an int; else ``(seed,)``."""
    if seeds is None:
        parsed = ()
    elif isinstance(seeds, str):
        parsed = parse_seeds(seeds) if seeds.strip() else ()
    elif isinstance(seeds, int) and not isinstance(seeds, bool):
        parsed = (check_seed(seeds, "--seeds"),)
    elif isinstance(seeds, list | tuple):
        parsed = tuple(check_seed(s, "--seeds") for s in seeds)
    else:
        raise MribenchError(f"--seeds must be written as 0-4 or 0,1,2, got {seeds!r}")
    if not parsed:
        parsed = (check_seed(int_from_text(seed)),)
    if len(parsed) > MAX_SEEDS:
        raise MribenchError(f"--seeds lists {len(parsed)} seeds; at most {MAX_SEEDS} per run")
    if len(set(parsed)) != len(parsed):
        raise MribenchError(f"--seeds lists a seed twice: {format_seeds(parsed)}")
    return parsed


def check_seed(seed: Any, option: str = "--seed") -> int:
    """A seed is an integer in [0, 2**32 - 1] (what numpy, torch and scikit-learn all accept)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise MribenchError(f"{option} must be an integer from 0 to {MAX_SEED}, got {seed!r}")
    return seed


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0-4"`` -> (0, 1, 2, 3, 4); ``"0,1,7"`` -> (0, 1, 7); ``"3"`` -> (3,)."""
    seeds: list[int] = []
    bad = MribenchError(f"--seeds must be written as 0-4 or 0,1,2 (integers from 0 to "
                        f"{MAX_SEED}, at most {MAX_SEEDS}), got {text!r}")
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        try:
            if "-" in item[1:]:
                lo, hi = item.split("-", 1) if not item.startswith("-") else ("-", item)
                a, b = int(lo), int(hi)
                if b < a or b - a >= MAX_SEEDS:
                    raise ValueError
                seeds.extend(range(a, b + 1))
            else:
                seeds.append(int(item))
        except ValueError:
            raise bad from None
    if not seeds or any(not 0 <= s <= MAX_SEED for s in seeds):
        raise bad
    if len(set(seeds)) != len(seeds):
        raise MribenchError(f"--seeds {text!r} lists a seed twice")
    return tuple(seeds)


def format_seeds(seeds: tuple[int, ...] | list[int]) -> str:
    seeds = list(seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(str(s) for s in seeds)


def identity_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The keys whose values differ between two identities, as ``key: old -> new`` lines.

    A resume may *add* rows (methods) to a run: the rows it had keep their results. It may not
    drop a row or change one's parameters.
    """
    out = []
    for key in sorted(set(old) | set(new)):
        if key == "mribench" and str(old.get(key, "")).split("+")[0] == str(
                new.get(key, "")).split("+")[0]:
            continue
        if old.get(key) != new.get(key):
            if key == "methods" and isinstance(old.get(key), dict) and isinstance(
                    new.get(key), dict):
                a, b = old[key], new[key]
                changed = sorted(k for k in a if a.get(k) != b.get(k))
                if changed:
                    out.append(f"methods ({', '.join(changed)})")
            elif key == "data_fingerprint":
                out.append("data_fingerprint (the data files' names, sizes or modification "
                           "times changed)")
            else:
                out.append(f"{key}: {_short(old.get(key))} -> {_short(new.get(key))}")
    return out


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."

