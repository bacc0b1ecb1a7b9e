"""Run a benchmark: every chosen method on one data set, under one split, into one folder.

The flow (DESIGN.md): data set -> samples -> split manifest -> ``method.fit(train, val)`` ->
``method.predict(test)`` -> metrics with bootstrap CIs -> results folder -> ranked tables.

Guarantees the runner gives its users:

- **One split for all.** Every method gets the same train/val/test lists from one manifest,
  whose SHA-256 goes into ``run.json``. Methods never see the manifest or the files.
- **Fail early on bad parameters.** Every method is constructed (its ``Params`` validated)
  before anything trains, so a bad value is a one-line error at start-up.
- **One failure stops nothing.** A method that raises is recorded as ``failed`` with its
  traceback in its folder; the others still run; the exit status is non-zero.
- **Atomic, resumable results.** Every file is written atomically; ``status.json`` is written
  last, so a row whose status is ``done`` is complete. ``resume=True`` skips those rows and
  refuses to mix splits (the manifest hash must match).
- **Parallel jobs** (``jobs > 1``) run methods in forked worker processes, each pinned to one
  BLAS/OpenMP thread (threadpoolctl) and one torch thread.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mribench.api import registry
from mribench.api.context import Context
from mribench.api.errors import MribenchError
from mribench.api.method import Method
from mribench.api.types import Prediction, Sample
from mribench.atomic import atomic_save_npz, atomic_write_json, atomic_write_text, read_json
from mribench.eval.metrics import evaluate
from mribench.run.device import resolve_device
from mribench.run.provenance import command_line, git_revision, machine, package_versions

log = logging.getLogger("mribench")

#: Test slices kept in ``test_images.npz`` for the report's montage.
MONTAGE_SLICES = 12


@dataclass
class RunConfig:
    """Everything that decides a run; the CLI's options map onto these fields one to one."""

    methods: str = "all"
    dataset: str = "synthetic"
    data_dir: Path | None = None
    task: str | None = None
    profile: str = "quick"
    device: str = "auto"
    seed: int = 0
    out: Path | None = None
    resume: bool = False
    split: str | None = None
    image_size: int = 256
    jobs: int = 1
    n_boot: int = 1000
    show_progress: bool = False
    results_root: Path = field(default_factory=lambda: Path("results"))


@dataclass
class RowOutcome:
    name: str
    status: str
    reason: str | None = None


@dataclass
class RunOutcome:
    results_dir: Path
    rows: list[RowOutcome]

    @property
    def failed(self) -> list[RowOutcome]:
        return [r for r in self.rows if r.status == "failed"]


# --------------------------------------------------------------------------- set-up


def plan_methods(config: RunConfig) -> list[Method]:
    """Construct every method asked for (validating its parameters) before any training."""
    chosen = registry.resolve_methods(config.methods)
    plan: list[Method] = []
    for name, overrides in chosen:
        cls = registry.get_method(name)
        if config.task and config.task not in cls.tasks:
            if config.methods.strip() == "all":
                continue
            raise MribenchError(f"method {name!r} does not answer task {config.task!r} "
                                f"(it answers {', '.join(cls.tasks)})")
        plan.append(cls(profile=config.profile, **overrides))
    if not plan:
        raise MribenchError(f"no method answers task {config.task!r}; see `bench list`")
    return plan


def row_name(method: Method, overrides_text: str = "") -> str:
    return method.name


def _run_id(config: RunConfig, dataset_name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{dataset_name}-{config.profile}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- one method


def _tasks_of(method: Method, config: RunConfig) -> list[str]:
    return [t for t in method.tasks if config.task in (None, t)]


def _write_prediction(folder: Path, prediction: Prediction, test: Sequence[Sample]) -> None:
    arrays: dict[str, np.ndarray] = {
        "ids": np.array(prediction.ids),
        "labels": prediction.labels,
    }
    if prediction.scores is not None:
        arrays["scores"] = prediction.scores
    if prediction.masks is not None:
        arrays["masks"] = np.packbits(prediction.masks, axis=-1)
        arrays["mask_shape"] = np.array(prediction.masks.shape)
    atomic_save_npz(folder / "predictions.npz", **arrays)


def load_prediction_masks(path: Path) -> tuple[list[str], np.ndarray | None]:
    """Read ``predictions.npz`` back: ids and the unpacked boolean masks (or None)."""
    with np.load(path) as data:
        ids = [str(i) for i in data["ids"]]
        if "masks" not in data:
            return ids, None
        shape = tuple(int(s) for s in data["mask_shape"])
        masks = np.unpackbits(data["masks"], axis=-1, count=shape[-1]).astype(bool)
    return ids, masks.reshape(shape)


def _record_row(folder: Path, row: str, method: Method, tasks: list[str], prediction: Prediction,
                test: Sequence[Sample], timings: dict[str, float], config: RunConfig,
                variant: str | None) -> None:
    metrics, per_case = evaluate(prediction, test, tasks, n_boot=config.n_boot, seed=config.seed)
    _write_prediction(folder, prediction, test)
    atomic_write_json(folder / "per_case.json", per_case)
    atomic_write_json(folder / "metrics.json", {"method": row, "tasks": metrics})
    atomic_write_json(folder / "status.json", {
        **_describe(method, variant), "status": "done", "reason": None, "timings": timings,
        "tasks": tasks, "finished": _now(),
    })


def _describe(method: Method, variant: str | None) -> dict[str, Any]:
    return {"method": method.name, "variant": variant, "kind": method.kind,
            "reference": method.reference, "params": method.params.as_dict(),
            "profile": method.profile}


def _method_logger(name: str, folder: Path) -> tuple[logging.Logger, logging.Handler]:
    logger = logging.getLogger(f"mribench.api.method.{name}")
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(folder / "log.txt", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    return logger, handler


def run_method(method: Method, parts: tuple[list[Sample], list[Sample], list[Sample]],
               run_dir: Path, config: RunConfig, device: str) -> list[RowOutcome]:
    """Fit, predict, score and record one method (and its variants); never raises."""
    from mribench.api.feature_cache import FeatureCache

    train, val, test = parts
    folder = run_dir / method.name
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("traceback.txt",):
        (folder / stale).unlink(missing_ok=True)
    logger, handler = _method_logger(method.name, folder)
    ctx = Context(device=device, seed=config.seed, profile=config.profile, workdir=folder,
                  cache=FeatureCache(run_dir / ".cache" / "features"),
                  show_progress=config.show_progress, method_name=method.name, logger=logger)
    tasks = _tasks_of(method, config)
    try:
        reason = method.skip(ctx)
        if reason:
            atomic_write_json(folder / "status.json", {
                **_describe(method, None), "status": "skipped", "reason": reason,
                "tasks": tasks, "finished": _now()})
            return [RowOutcome(method.name, "skipped", reason)]
        _seed_everything(config.seed)
        ctx.log("fit", n_train=len(train), n_val=len(val), device=device)
        start = time.perf_counter()
        method.fit(train, val, ctx)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        prediction = method.predict(test, ctx)
        predict_s = time.perf_counter() - start
        timings = {"fit_s": fit_s, "predict_s": predict_s,
                   "predict_ms_per_image": 1000 * predict_s / max(len(test), 1)}
        ctx.log("done", **timings)
        atomic_write_json(folder / "history.json", ctx.history)
        outcomes = []
        for variant, pred in prediction.variants.items():
            row = f"{method.name}+{variant}"
            vfolder = run_dir / row
            vfolder.mkdir(parents=True, exist_ok=True)
            _record_row(vfolder, row, method, tasks, pred, test, timings, config, variant)
            outcomes.append(RowOutcome(row, "done"))
        _record_row(folder, method.name, method, tasks, prediction, test, timings, config, None)
        return [RowOutcome(method.name, "done"), *outcomes]
    except Exception as exc:  # one method's failure must not stop the others
        text = traceback.format_exc()
        atomic_write_text(folder / "traceback.txt", text)
        atomic_write_json(folder / "history.json", ctx.history)
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        logger.error("failed: %s", reason)
        atomic_write_json(folder / "status.json", {
            **_describe(method, None), "status": "failed", "reason": reason, "tasks": tasks,
            "finished": _now()})
        return [RowOutcome(method.name, "failed", reason)]
    finally:
        logger.removeHandler(handler)
        handler.close()


def _seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass


# --------------------------------------------------------------------------- workers

_WORKER_STATE: dict[str, Any] = {}


def _worker_init() -> None:
    from threadpoolctl import threadpool_limits

    _WORKER_STATE["limits"] = threadpool_limits(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def _worker_job(index: int) -> list[RowOutcome]:
    state = _WORKER_STATE
    return run_method(state["plan"][index], state["parts"], state["run_dir"], state["config"],
                      state["device"])


# --------------------------------------------------------------------------- the run


def _finished_rows(run_dir: Path, method: Method) -> bool:
    status = run_dir / method.name / "status.json"
    if not status.exists():
        return False
    try:
        return read_json(status).get("status") == "done"
    except (OSError, ValueError):
        return False


def _save_test_images(run_dir: Path, test: Sequence[Sample], seed: int) -> None:
    """Keep a few test slices (masked ones first) for the report's montage."""
    rng = np.random.default_rng(seed)
    masked = [s for s in test if s.mask is not None and s.mask.any()]
    others = [s for s in test if s not in masked]
    order = list(rng.permutation(len(masked)))[:MONTAGE_SLICES]
    chosen = [masked[i] for i in order]
    if len(chosen) < MONTAGE_SLICES and others:
        extra = rng.permutation(len(others))[: MONTAGE_SLICES - len(chosen)]
        chosen += [others[i] for i in extra]
    if not chosen:
        return
    empty = np.zeros_like(chosen[0].image, dtype=bool)
    atomic_save_npz(
        run_dir / "test_images.npz",
        ids=np.array([s.id for s in chosen]),
        images=np.stack([s.image for s in chosen]).astype(np.float16),
        masks=np.stack([s.mask if s.mask is not None else empty for s in chosen]),
        labels=np.array([s.label for s in chosen]),
    )


def run_benchmark(config: RunConfig, *, on_row: Callable[[RowOutcome], None] | None = None
                  ) -> RunOutcome:
    """Run ``config``; returns the results folder and each row's outcome.

    Raises :class:`~mribench.api.errors.MribenchError` for bad input found before training
    (unknown method, bad parameter, missing data, a manifest that does not fit the data).
    """
    from mribench.data.load import load_dataset
    from mribench.split.choose import choose_split

    device = resolve_device(config.device)
    plan = plan_methods(config)
    dataset, samples = load_dataset(config.dataset, data_dir=config.data_dir,
                                    image_size=config.image_size,
                                    show_progress=config.show_progress)
    split = choose_split(dataset, samples, config.split, seed=config.seed)
    train, val, test = split.parts

    run_dir = Path(config.out) if config.out else config.results_root / _run_id(config, dataset.name)
    run_file = run_dir / "run.json"
    previous: dict[str, Any] = {}
    if run_file.exists():
        previous = read_json(run_file)
        if not config.resume:
            raise MribenchError(f"{run_dir} already holds a run; pass --resume to continue it "
                                f"or --out NEW_FOLDER for a new one")
        if previous.get("split", {}).get("sha256") != split.sha256:
            raise MribenchError(
                f"{run_dir} was run with another split (sha256 "
                f"{previous.get('split', {}).get('sha256')}); resume with the same --split "
                f"and data, or use --out NEW_FOLDER")
    run_dir.mkdir(parents=True, exist_ok=True)
    if split.save_copy:
        from mribench.split.manifest import save_manifest

        save_manifest(split.manifest, run_dir / "split.json")
    info = {
        "run_id": run_dir.name,
        "command": command_line(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(config).items()},
        "versions": package_versions(),
        "git_revision": git_revision(),
        "machine": machine(),
        "device": device,
        "seed": config.seed,
        "profile": config.profile,
        "image_size": config.image_size,
        "dataset": {"name": dataset.name, "spec": config.dataset,
                    "data_dir": str(dataset.data_dir) if dataset.data_dir else None,
                    "n_samples": len(samples)},
        "split": split.describe(),
        "methods": [m.name for m in plan],
        "started": previous.get("started", _now()),
        "ended": None,
        "status": "running",
    }
    atomic_write_json(run_file, info)
    _save_test_images(run_dir, test, config.seed)

    outcomes: list[RowOutcome] = []
    todo: list[int] = []
    for i, method in enumerate(plan):
        if config.resume and _finished_rows(run_dir, method):
            row = RowOutcome(method.name, "done", "resumed: finished in an earlier run")
            outcomes.append(row)
            if on_row:
                on_row(row)
        else:
            todo.append(i)

    parts = (train, val, test)
    if config.jobs > 1 and len(todo) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        _WORKER_STATE.update(plan=plan, parts=parts, run_dir=run_dir, config=config,
                             device=device)
        with ProcessPoolExecutor(max_workers=config.jobs, mp_context=mp.get_context("fork"),
                                 initializer=_worker_init) as pool:
            futures = [pool.submit(_worker_job, i) for i in todo]
            for future in as_completed(futures):
                for row in future.result():
                    outcomes.append(row)
                    if on_row:
                        on_row(row)
    else:
        for i in todo:
            for row in run_method(plan[i], parts, run_dir, config, device):
                outcomes.append(row)
                if on_row:
                    on_row(row)

    info["ended"] = _now()
    info["status"] = "failed" if any(r.status == "failed" for r in outcomes) else "done"
    atomic_write_json(run_file, info)
    return RunOutcome(run_dir, outcomes)
