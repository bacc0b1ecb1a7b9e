"""What decides a run: :class:`RunConfig`, its checks at start-up, and its identity for resume.

Everything a user can set on ``bench run`` (or in a suite file) is one field here. The fields
that change results (methods and their params, data set, split, profile, image size, seeds,
evaluation sets, bootstrap size) form the run's *identity*, stored in ``run.json``; ``--resume``
with another identity is refused with one line naming what differs (:func:`identity_diff`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mribench.api.errors import MribenchError

#: Largest seed accepted: numpy's SeedSequence takes any int, torch.manual_seed needs < 2**63,
#: and scikit-learn's random_state needs < 2**32.
MAX_SEED = 2**32 - 1


@dataclass
class RunConfig:
    """Everything that decides a run; the CLI's options map onto these fields one to one.

    ``seeds`` lists the training seeds (each method is fitted once per seed on the same split);
    ``seed`` is kept for the single-seed call and is used when ``seeds`` is empty. The split
    itself, when made on the fly, uses the first seed, so every seed sees the same split.
    ``test_on`` lists external evaluation sets (data-set specs); ``test_split`` names a split
    strategy or manifest whose test part is used on them (default: all their labelled samples).
    ``max_workers`` of the executor is ``jobs``.
    """

    methods: str = "all"
    dataset: str = "synthetic"
    data_dir: Path | None = None
    task: str | None = None
    profile: str = "quick"
    device: str = "auto"
    seed: int = 0
    seeds: tuple[int, ...] = ()
    out: Path | None = None
    resume: bool = False
    split: str | None = None
    image_size: int = 256
    jobs: int = 1
    n_boot: int = 1000
    test_on: tuple[str, ...] = ()
    test_split: str | None = None
    executor: str = "local"
    executor_options: dict[str, Any] = field(default_factory=dict)
    show_progress: bool = False
    results_root: Path = field(default_factory=lambda: Path("results"))

    def __post_init__(self) -> None:
        self.seeds = tuple(self.seeds) if self.seeds else (self.seed,)
        for s in self.seeds:
            check_seed(s)
        if len(set(self.seeds)) != len(self.seeds):
            raise MribenchError(f"--seeds lists a seed twice: {format_seeds(self.seeds)}")
        self.seed = self.seeds[0]
        self.test_on = tuple(s for s in self.test_on if s.strip())

    @property
    def split_seed(self) -> int:
        return self.seeds[0]

    def identity(self, methods: dict[str, dict[str, Any]], split_sha256: str,
                 data_fingerprint: str, version: str) -> dict[str, Any]:
        """What must match for ``--resume`` to continue a run (stored in run.json).

        Returned as JSON gives it back (tuples as lists), so it compares equal to the stored one.
        """
        return json.loads(json.dumps({
            "methods": methods,
            "dataset": self.dataset,
            "task": self.task,
            "profile": self.profile,
            "image_size": self.image_size,
            "seeds": list(self.seeds),
            "split_sha256": split_sha256,
            "data_fingerprint": data_fingerprint,
            "test_on": list(self.test_on),
            "test_split": self.test_split,
            "n_boot": self.n_boot,
            "mribench": version,
        }))


def check_seed(seed: Any) -> int:
    """A seed is an integer in [0, 2**32 - 1] (what numpy, torch and scikit-learn all accept)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise MribenchError(f"--seed must be an integer from 0 to {MAX_SEED}, got {seed!r}")
    return seed


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0-4"`` -> (0, 1, 2, 3, 4); ``"0,1,7"`` -> (0, 1, 7); ``"3"`` -> (3,)."""
    seeds: list[int] = []
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        try:
            if "-" in item[1:]:
                lo, hi = item.split("-", 1) if not item.startswith("-") else ("-", item)
                a, b = int(lo), int(hi)
                if b < a or b - a > 1000:
                    raise ValueError
                seeds.extend(range(a, b + 1))
            else:
                seeds.append(int(item))
        except ValueError:
            raise MribenchError(f"--seeds {text!r}: write seeds as 0-4 or 0,1,2 "
                                f"(integers from 0 to {MAX_SEED})") from None
    if not seeds:
        raise MribenchError(f"--seeds {text!r} names no seed; write e.g. 0-4 or 0,1,2")
    if any(not 0 <= s <= MAX_SEED for s in seeds):
        raise MribenchError(f"--seeds {text!r}: every seed must be an integer from 0 to "
                            f"{MAX_SEED}")
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


def as_path(value: Any) -> Path | None:
    return None if value in (None, "") else Path(value)
