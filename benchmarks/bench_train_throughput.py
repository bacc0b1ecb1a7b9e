"""Training throughput of mribench's loop against a minimal hand-written torch loop (issue 22).

For each deep method (``cnn``, ``dwt-dnn``, ``fcm-cnn``, ``two-pathway-cnn``,
``multiscale-cnn``, ``unet``: the plugins trained by
:func:`mribench.blocks.nn.train.fit_model`), the plugin's own ``fit`` runs on the data until it
calls ``fit_model``; that call is intercepted, so the network (freshly initialised), the
training loader, the loss and the :class:`~mribench.blocks.nn.train.TrainConfig` are exactly
what the plugin builds (its profile's batch, working size, augmentation, optimiser). Then two
loops train copies of that network from the same initial weights for the same number of
epochs:

- **mribench**: ``fit_model`` itself, as the plugin calls it (checkpoints written every epoch
  to a temporary folder, model selection, history), without the validation pass (the plain
  loop has none; validation is not training);
- **plain**: ``zero_grad / forward / loss / backward / step`` with the same optimiser
  (``adam``/``adamw``/``sgd`` from the config), loss, augmentation (applied on the device as
  mribench does; it is the recipe's work, not the loop's) and AMP gradient scaling; its
  batches are drawn by slicing a random permutation of the same tensors (a
  ``TensorDataset``/``SampleDataset`` loader: what a hand-written loop does), or, for the patch
  CNNs, from the same :class:`~mribench.blocks.nn.patches.PatchLoader` (drawing windows is the
  method's data, not the loop). No learning-rate schedule (one cheap call per step).

Throughput is training items per second: images (``cnn``, ``fcm-cnn``, ``unet``), images as
DWT/PCA feature vectors (``dwt-dnn``) or patches (the patch CNNs). After a one-epoch warm-up
of each loop, ``--repeats`` timed repeats alternate between the two loops (ABBA order), so a
background load slows both alike. A repeat is a whole ``fit_model`` call of at least
``--steps`` batches (whole epochs), and, for a network whose epoch takes milliseconds
(``dwt-dnn``), as many epochs as its plugin trains, so a training's fixed costs (optimiser,
final checkpoint) weigh as in a real run; ``--epochs`` fixes it. The table gives the median
throughput of each loop and the median of the per-repeat ratios mribench/plain (target
>= 0.9). On the CPU the clock is the process's CPU time (``time.process_time``): on a shared
machine the waits for a core are not the loop's cost, and with one thread CPU time is the
work done; the wall-clock ratio is printed beside it. On a GPU the clock is the wall clock
(after ``torch.cuda.synchronize``).

Threads are pinned (``--threads``, default 1) and torch's deterministic algorithms are on (cuDNN
deterministic, its autotuner off) as under every executor of ``bench run``
(:func:`mribench.run.execute.compute_threads`); ``--no-deterministic`` turns them off (and
cuDNN's autotuner on) to measure what determinism costs on a GPU.

Run on the CPU (about four minutes of CPU time)::

    python benchmarks/bench_train_throughput.py --threads 1 --out throughput-cpu.json

On a GPU, paper profiles (U-Net 256 px batch 50, the patch CNNs' full patches per epoch), one
call::

    python benchmarks/bench_train_throughput.py --device cuda --amp --out throughput-gpu.json

(``--device cuda`` defaults to ``--profile paper``, ``synthetic[n=400]`` loaded at 256 px and
repeats of at least 100 steps; add ``--no-deterministic`` for the cost of determinism.)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

DEEP = ("cnn", "dwt-dnn", "fcm-cnn", "two-pathway-cnn", "multiscale-cnn", "unet")
UNITS = {"cnn": "images", "dwt-dnn": "images", "fcm-cnn": "images", "unet": "images",
         "two-pathway-cnn": "patches", "multiscale-cnn": "patches"}


class _Captured(Exception):
    """Raised in place of ``fit_model``: what the plugin was about to train."""

    def __init__(self, model: Any, loader: Any, loss_fn: Any, config: Any) -> None:
        super().__init__("captured")
        self.model, self.loader, self.loss_fn, self.config = model, loader, loss_fn, config


@contextlib.contextmanager
def _intercept_fit_model() -> Iterator[None]:
    """Replace ``fit_model`` in every loaded module that imported it by one raising
    :class:`_Captured`."""
    import mribench.blocks.nn.train as train_module

    original = train_module.fit_model

    def fake(model, train_loader, val_loader, loss_fn, ctx, config, **_: Any):
        raise _Captured(model, train_loader, loss_fn, config)

    patched = [m for m in list(sys.modules.values())
               if getattr(m, "fit_model", None) is original]
    for module in patched:
        module.fit_model = fake
    try:
        yield
    finally:
        for module in patched:
            module.fit_model = original


def capture(name: str, profile: str, train: list, val: list, device: str) -> _Captured:
    """The network, loader, loss and config the plugin ``name`` trains on ``train``."""
    from mribench.api.context import Context
    from mribench.api.registry import get_method

    method = get_method(name)(profile=profile)
    with tempfile.TemporaryDirectory() as tmp, _intercept_fit_model():
        ctx = Context(device=device, seed=0, profile=profile, workdir=Path(tmp),
                      method_name=name)
        try:
            method.fit(train, val, ctx)
        except _Captured as got:
            return got
    raise RuntimeError(f"{name}: fit finished without calling fit_model")


def _plain_batches(loader: Any, generator: Any) -> Callable[[], Iterable]:
    """A hand-written loop's batches over the loader's tensors (see the module docstring)."""
    import torch

    dataset = getattr(loader, "dataset", None)
    tensors = getattr(dataset, "tensors", None)
    if tensors is None and dataset is not None and hasattr(dataset, "inputs"):
        tensors = (dataset.inputs, dataset.targets)
    if tensors is None:
        return lambda: loader  # a PatchLoader: the same windows as mribench draws
    x_all, y_all = tensors
    sampler = loader.batch_sampler or loader.sampler  # make_loader's: a BatchSampler
    batch, drop_last = sampler.batch_size, sampler.drop_last

    def batches() -> Iterator:
        order = torch.randperm(len(x_all), generator=generator)
        stop = len(order) - len(order) % batch if drop_last else len(order)
        for start in range(0, stop, batch):
            index = order[start:start + batch]
            yield x_all[index], y_all[index]

    return batches


def plain_loop(model: Any, batches: Callable[[], Iterable], loss_fn: Any, config: Any,
               device: str, amp: bool, epochs: int) -> int:
    """Train ``model`` ``epochs`` times over ``batches()``; the items seen."""
    import torch

    params = model.parameters()
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9,
                              weight_decay=config.weight_decay)
    else:
        cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        opt = cls(params, lr=config.lr, weight_decay=config.weight_decay)
    cuda = device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=amp and cuda)
    dtype = torch.float16 if cuda else torch.bfloat16
    model.train()
    seen = 0
    for _ in range(epochs):
        for x, y in batches():
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if config.augment is not None:
                x, y = config.augment(x, y)
            if config.channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.split(":")[0], dtype=dtype, enabled=amp):
                logits = model(x)
            loss = loss_fn(logits.float().reshape(y.shape), y.float())
            scaler.scale(loss).backward()
            if config.grad_clip is not None:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(opt)
            scaler.update()
            seen += x.shape[0]
    return seen


def mribench_loop(model: Any, loader: Any, loss_fn: Any, config: Any, device: str,
                  amp: bool, epochs: int) -> None:
    """``fit_model`` as the plugin calls it, without validation, for ``epochs`` epochs."""
    from mribench.api.context import Context
    from mribench.blocks.nn.train import fit_model

    recipe = dataclasses.replace(config, epochs=epochs, patience=None, max_minutes=None,
                                 amp=amp)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(device=device, seed=0, workdir=Path(tmp), method_name="bench")
        fit_model(model, loader, None, loss_fn, ctx, recipe,
                  checkpoint_dir=ctx.subdir("checkpoints"), fingerprint="throughput")


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


#: A repeat of a network this fast (seconds per epoch) trains as many epochs as its plugin.
SHORT_REPEAT_S = 2.0


def _repeat_epochs(got: _Captured, steps: int, epoch_seconds: float) -> int:
    """Epochs per repeat: enough for ``steps`` batches, and, when that takes under
    :data:`SHORT_REPEAT_S` seconds, as many as the plugin's own training (so one training's
    fixed costs, e.g. its final checkpoint, weigh as in a real run)."""
    by_steps = max(1, -(-steps // max(1, len(got.loader))))
    by_time = min(got.config.epochs, int(SHORT_REPEAT_S / max(epoch_seconds, 1e-6)))
    return max(by_steps, by_time)


def measure(got: _Captured, device: str, amp: bool, steps: int, repeats: int,
            epochs: int | None = None) -> dict[str, Any]:
    """Interleaved timings of both loops on copies of the captured network, each repeat
    ``epochs`` epochs (None: :func:`_repeat_epochs`)."""
    import torch

    initial = copy.deepcopy(got.model.state_dict())
    nets = {"mribench": copy.deepcopy(got.model).to(device),
            "plain": copy.deepcopy(got.model).to(device)}
    if got.config.channels_last:
        nets["plain"].to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(0)
    batches = _plain_batches(got.loader, generator)
    items = plain_loop(nets["plain"], batches, got.loss_fn, got.config, device, amp, 1)

    def run(which: str, n_epochs: int) -> tuple[float, float]:
        nets[which].load_state_dict(initial)
        _sync(device)
        start, cpu = time.perf_counter(), time.process_time()
        if which == "plain":
            plain_loop(nets[which], batches, got.loss_fn, got.config, device, amp, n_epochs)
        else:
            mribench_loop(nets[which], got.loader, got.loss_fn, got.config, device, amp,
                          n_epochs)
        _sync(device)
        return time.perf_counter() - start, time.process_time() - cpu

    epochs = epochs or _repeat_epochs(got, steps,
                                      run("plain", 1)[0 if device.startswith("cuda") else 1])  # a second warm-up
    run("mribench", 1)  # warm-up
    wall: dict[str, list[float]] = {"mribench": [], "plain": []}
    cpu: dict[str, list[float]] = {"mribench": [], "plain": []}
    for r in range(repeats):
        for which in (("mribench", "plain") if r % 2 == 0 else ("plain", "mribench")):
            w, c = run(which, epochs)
            wall[which].append(w)
            cpu[which].append(c)
    n = items * epochs
    out = {"items_per_epoch": items, "steps_per_epoch": len(got.loader),
           "batch_size": _batch_size(got.loader), "epochs": epochs, "repeats": repeats}
    for clock, times in (("wall", wall), ("cpu", cpu)):
        ratios = [p / m for m, p in zip(times["mribench"], times["plain"], strict=True)]
        out[clock] = {"mribench_s": times["mribench"], "plain_s": times["plain"],
                      "mribench_per_s": n / statistics.median(times["mribench"]),
                      "plain_per_s": n / statistics.median(times["plain"]),
                      "ratio": statistics.median(ratios), "ratios": ratios}
    # on a shared CPU the process's CPU time is what the loop costs (waits for the cores
    # are not); on a GPU the wall clock (the host waits for the device)
    out["clock"] = "wall" if device.startswith("cuda") else "cpu"
    out["ratio"] = out[out["clock"]]["ratio"]
    return out


def _batch_size(loader: Any) -> int:
    sampler = getattr(loader, "batch_sampler", None) or getattr(loader, "sampler", loader)
    return int(getattr(sampler, "batch_size", 0) or 0)


def _threads(threads: int, deterministic: bool) -> contextlib.AbstractContextManager:
    """``bench run``'s per-job settings, or the same threads with the autotuner on."""
    if deterministic:
        from mribench.run.execute import compute_threads

        return compute_threads(threads)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    torch.backends.cudnn.benchmark = True
    return threadpool_limits(threads)


def _data(spec: str, image_size: int) -> tuple[list, list]:
    from mribench.data.load import load_dataset
    from mribench.split.choose import choose_split

    dataset, samples = load_dataset(spec, image_size=image_size)
    train, val, _ = choose_split(dataset, samples, None, seed=0).parts
    return list(train), list(val)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(DEEP),
                        help=f"comma-separated deep methods (default: {','.join(DEEP)})")
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"),
                        help="where both loops train (default: cpu)")
    parser.add_argument("--amp", action="store_true",
                        help="mixed precision in both loops (float16 + scaling on CUDA, "
                             "bfloat16 on the CPU; default: off)")
    parser.add_argument("--threads", type=int, default=1, help="torch/BLAS threads (1)")
    parser.add_argument("--no-deterministic", dest="deterministic", action="store_false",
                        help="torch's deterministic algorithms off, cuDNN autotuner on")
    parser.add_argument("--profile", choices=("quick", "paper"), default=None,
                        help="the plugins' profile (default: quick on cpu, paper on cuda)")
    parser.add_argument("--dataset", default=None,
                        help="data (default: synthetic, 400 slices: CI's quick-synthetic data)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="loading size (default: 128 on cpu, 256 on cuda)")
    parser.add_argument("--steps", type=int, default=None,
                        help="batches per timed repeat, rounded up to whole epochs (default: "
                             "24 on cpu, 100 on cuda)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per timed repeat (overrides --steps)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed repeats of each loop, interleaved (default: 3)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = args.device == "cuda"
    args.profile = args.profile or ("paper" if gpu else "quick")
    args.dataset = args.dataset or "synthetic[n=400]"
    args.image_size = args.image_size or (256 if gpu else 128)
    args.steps = args.steps or (100 if gpu else 24)
    unknown = set(args.methods.split(",")) - set(DEEP)
    if unknown:
        parser.error(f"--methods: {', '.join(sorted(unknown))} not among {', '.join(DEEP)}")
    return args


def main(argv: list[str] | None = None) -> int:
    from tabulate import tabulate

    args = _parse(argv)
    train, val = _data(args.dataset, args.image_size)
    rows, results = [], {}
    for name in args.methods.split(","):
        with _threads(args.threads, args.deterministic):
            got = capture(name, args.profile, train, val, args.device)
            res = measure(got, args.device, args.amp, args.steps, args.repeats, args.epochs)
        results[name] = res
        main_clock, wall = res[res["clock"]], res["wall"]
        rows.append([name, UNITS[name], res["batch_size"], res["steps_per_epoch"], res["epochs"],
                     f"{main_clock['mribench_per_s']:.1f}", f"{main_clock['plain_per_s']:.1f}",
                     f"{res['ratio']:.3f}",
                     f"{min(main_clock['ratios']):.2f}-{max(main_clock['ratios']):.2f}",
                     f"{wall['ratio']:.3f}"])
        print(f"{name}: ratio {res['ratio']:.3f} ({res['clock']} time), wall "
              f"{wall['ratio']:.3f}", file=sys.stderr, flush=True)
    print(f"device {args.device}, profile {args.profile}, {args.dataset} at {args.image_size} "
          f"px, threads {args.threads}, amp {args.amp}, deterministic {args.deterministic}, "
          f"{args.repeats} interleaved repeats per loop")
    clock = "wall" if args.device == "cuda" else "CPU"
    print(tabulate(rows, headers=["method", "unit", "batch", "steps/epoch", "epochs/repeat",
                                  f"mribench /{clock} s", f"plain /{clock} s", "ratio (median)",
                                  "ratio range", "ratio (wall)"]))
    if args.out is not None:
        import torch

        args.out.write_text(json.dumps({
            "device": args.device, "profile": args.profile, "dataset": args.dataset,
            "image_size": args.image_size, "threads": args.threads, "amp": args.amp,
            "command": " ".join(sys.argv),
            "deterministic": args.deterministic, "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
            "methods": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
