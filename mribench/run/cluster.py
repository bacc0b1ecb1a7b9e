"""Scale-out executors: ``--executor dask`` (dask.distributed) and ``--executor slurm``
(SLURM job arrays through submitit).

Both run the same :func:`~mribench.run.execute.run_job` as the local executors: a job names its
method, params, seed and run folder and loads its data from the shared data cache, so the run
folder and the data cache (``$MRIBENCH_CACHE``) must be on a file system the workers share.

- ``dask``: ``scheduler=ADDRESS`` joins a running cluster (``Client(ADDRESS)``); without it a
  ``LocalCluster`` of ``--jobs`` single-threaded worker processes is started (and closed at the
  end). Options: ``scheduler`` (``tcp://HOST:PORT``), ``timeout`` (seconds the scheduler has
  to answer, default 30), ``dashboard`` (address, e.g. ``:8787``; off by default),
  ``memory_limit`` (per worker, e.g. ``4GB``, ``0.5`` of the machine, ``auto``; dask's default
  otherwise). Every option is checked, and a ``tcp://`` scheduler is probed (it must send
  dask's handshake within the timeout), when the executor is made: before the run folder.
- ``slurm``: one job array per kind of job (deep jobs on ``--device cuda`` ask for a GPU each),
  its files in ``<run>/.submitit/``. Options (:func:`slurm_parameters`): ``partition``,
  ``time`` (minutes), ``cpus`` (per job), ``gpus`` (per job), ``mem_gb``,
  ``array_parallelism`` (default ``--jobs`` when above 1), ``account``, ``qos`` and
  ``cluster=slurm|local|debug`` (``local``/``debug`` run the array on this machine, for tests).

Every job pins BLAS/OpenMP and torch to its configured threads (``--threads``, part of the
run's identity, so a node with more cores gives the same numbers) in the thread that runs it.
A job whose worker died (killed, out of memory, time limit) comes back as a failed row with
the reason; its folder has no ``status.json``, so ``--resume`` reruns it.

Faults: workers started here (a LocalCluster, submitit's local jobs) never see the terminal's
Ctrl-C; the driver gets it and cancels its jobs (kills the local ones), so no worker prints a
traceback. A job writes its final files only under the run's lease (:mod:`mribench.results.lock`),
and a SLURM task ends itself when the lease is lost: the jobs of a killed driver write nothing.

dask and submitit are optional (``pip install "mribench[cluster]"``); this module imports
them only when an executor is made.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shutil
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from mribench.api.errors import MribenchError
from mribench.results.lock import lease_holds, read_owner
from mribench.run.execute import RowOutcome, run_job
from mribench.run.executor_base import THREAD_VARS, no_ctrl_c_in_children, pin_threads
from mribench.run.jobs import Job

__all__ = ["DASK_OPTIONS", "SLURM_OPTIONS", "DaskExecutor", "SlurmExecutor", "make_dask",
           "make_slurm", "probe_scheduler", "run_leased", "run_pinned", "slurm_parameters"]

log = logging.getLogger("mribench")

#: ``--executor-option`` keys of ``--executor dask``.
DASK_OPTIONS = ("dashboard", "memory_limit", "scheduler", "timeout")
#: Seconds a dask scheduler has to answer (``--executor-option timeout=``).
DASK_TIMEOUT_S = 30.0
#: Schemes of a dask scheduler address; ``tcp`` (the default) is probed before dask connects.
DASK_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")
_HOST = r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)"
_ADDRESS = re.compile(rf"(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?{_HOST}:(?P<port>[0-9]{{1,5}})")
_DASHBOARD = re.compile(rf"(?:{_HOST})?:(?P<port>[0-9]{{1,5}})")
#: The most bytes a scheduler's first message (its handshake, ~60 bytes) may announce.
_HELLO_MAX = 1 << 16
#: ``--executor-option`` keys of ``--executor slurm`` and the submitit parameter each sets
#: (``cluster`` picks submitit's executor instead).
SLURM_OPTIONS = {
    "partition": "slurm_partition",
    "time": "timeout_min",
    "cpus": "cpus_per_task",
    "gpus": "gpus_per_node",
    "mem_gb": "mem_gb",
    "array_parallelism": "slurm_array_parallelism",
    "account": "slurm_account",
    "qos": "slurm_qos",
    "cluster": None,
}
SLURM_CLUSTERS = ("slurm", "local", "debug")
INSTALL = 'pip install "mribench[cluster]"'


def run_pinned(job: Job) -> list[RowOutcome]:
    """:func:`run_job` with BLAS/OpenMP and torch pinned to the job's threads in the calling
    thread (what a dask worker thread or a SLURM task runs)."""
    pin_threads(job.threads)
    return run_job(job)


def _died(job: Job, exc: BaseException, what: str = "worker died") -> list[RowOutcome]:
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if len(detail) > 300:
        detail = detail[:297] + "..."
    return [RowOutcome(job.row, "failed", f"{what}: {detail}", job.seed)]


def _unknown(executor: str, options: dict[str, Any], allowed: Sequence[str]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise MribenchError(f"--executor {executor}: unknown --executor-option "
                            f"{', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _positive_int(executor: str, key: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MribenchError(f"--executor {executor}: option {key} must be an integer of at "
                            f"least {minimum}, got {value!r}")
    return value


# --------------------------------------------------------------------------- dask


def _dask_option_error(key: str, want: str, value: Any) -> MribenchError:
    return MribenchError(f"--executor dask: option {key} must be {want}, got {value!r}")


def _scheduler_address(value: Any) -> tuple[str, str, str, int]:
    """(address, scheme, host, port) of a ``scheduler=`` value, or a one-line error."""
    want = "an address such as tcp://HOST:8786"
    match = _ADDRESS.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise _dask_option_error("scheduler", want, value)
    scheme = (match["scheme"] or "tcp").lower()
    port = int(match["port"])
    if scheme not in DASK_SCHEMES or not 0 < port < 65536:
        raise _dask_option_error("scheduler", f"{want} (schemes: {', '.join(DASK_SCHEMES)}; "
                                              "port 1 to 65535)", value)
    return f"{scheme}://{match['host']}:{port}", scheme, match["host"].strip("[]"), port


def _memory_limit(value: Any) -> str | int | float | None:
    """A ``memory_limit=`` value dask accepts (``4GB``, a fraction such as 0.5, 0: none,
    ``auto``), checked here rather than by a traceback in dask."""
    want = "a size such as 4GB, a fraction of this machine's memory such as 0.5, 0 or auto"
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            raise _dask_option_error("memory_limit", want, value)
        return value
    if not isinstance(value, str) or not value.strip():
        raise _dask_option_error("memory_limit", want, value)
    if value.strip().lower() == "auto":
        return "auto"
    from dask.utils import parse_bytes

    try:
        size = parse_bytes(value.strip())
    except (ValueError, TypeError):
        raise _dask_option_error("memory_limit", want, value) from None
    if size < 0:
        raise _dask_option_error("memory_limit", want, value)
    return value.strip()


def _dashboard(value: Any) -> str | None:
    """A ``dashboard=`` address (``:8787``, ``HOST:8787`` or a port); off when absent/false."""
    if value in (None, "", False) or str(value).lower() in ("off", "none", "false"):
        return None
    text = f":{value}" if isinstance(value, int) and not isinstance(value, bool) else value
    match = _DASHBOARD.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or not 0 <= int(match["port"]) < 65536:
        raise _dask_option_error("dashboard", "an address such as :8787", value)
    return text.strip()


def _timeout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and 0 < value <= 3600):
        raise _dask_option_error("timeout", "a number of seconds above 0 (at most 3600)",
                                 value)
    return float(value)


def _recv(sock: socket.socket, n: int, deadline: float) -> bytes | None:
    """Up to ``n`` bytes before ``deadline`` (fewer: the peer closed); None: none in time."""
    data = b""
    while len(data) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            chunk = sock.recv(min(n - len(data), 1 << 16))
        except TimeoutError:
            return None
        if not chunk:
            break
        data += chunk
    return data


def probe_scheduler(address: str, timeout: float = DASK_TIMEOUT_S) -> None:
    """Check that a ``tcp://`` address is a dask scheduler before dask connects to it.

    A dask server sends its handshake first: 8 bytes giving the message's size, then a
    few frames (a count, their sizes, msgpack). The probe connects, reads that much within
    ``timeout`` seconds and checks it; it sends nothing. An address that accepts and stays
    silent (or an HTTP server, which waits for a request) is refused after ``timeout``; one
    that sends anything else at once, before dask reads a size from it and tries to allocate
    it. Other schemes (``tls://``...) are left to dask's own timeout. Raises a one-line
    :class:`MribenchError`.
    """
    _, scheme, host, port = _scheduler_address(address)
    if scheme != "tcp":
        return
    where = f"--executor dask: the scheduler at {address}"
    slow = (f"{where} does not answer within {timeout:g} s; check it runs there, or give it "
            "longer with --executor-option timeout=SECONDS")
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except TimeoutError:
        raise MribenchError(slow) from None
    except OSError as exc:
        raise MribenchError(f"--executor dask: cannot reach the scheduler at {address} "
                            f"({exc.strerror or exc}); start it, or drop scheduler= to use a "
                            "local cluster") from None
    with sock:
        head = _recv(sock, 8, deadline)
        size = int.from_bytes(head, "little") if head is not None and len(head) == 8 else 0
        body = _recv(sock, size, deadline) if 16 <= size <= _HELLO_MAX else b""
    if head is None or body is None:
        raise MribenchError(slow)
    if not _is_dask_hello(body, size):
        seen = repr(head[:8]) if head else "nothing, and closed the connection"
        raise MribenchError(f"{where} is not a dask scheduler (it answered {seen}); check "
                            "the address and port (a scheduler listens on 8786 by default)")


def _is_dask_hello(body: bytes, size: int) -> bool:
    """Whether ``body`` (``size`` bytes announced) is framed as dask frames its messages."""
    if len(body) != size or size < 16:
        return False
    count = int.from_bytes(body[:8], "little")
    if not 0 < count <= 64 or size < 8 * (count + 1):
        return False
    lengths = [int.from_bytes(body[8 * i:8 * i + 8], "little") for i in range(1, count + 1)]
    first = body[8 * (count + 1):8 * (count + 1) + 1]
    return sum(lengths) == size - 8 * (count + 1) and (
        first[:1] in (b"\xde", b"\xdf") or (first and 0x80 <= first[0] <= 0x8F))


class DaskExecutor:
    """Jobs on a dask.distributed cluster: an existing one (``scheduler``) or a LocalCluster
    of ``workers`` single-threaded processes started for this run."""

    def __init__(self, workers: int, scheduler: str | None = None,
                 dashboard: str | None = None, memory_limit: str | int | None = None,
                 timeout: float = DASK_TIMEOUT_S) -> None:
        self.workers = workers
        self.scheduler = scheduler
        self.dashboard = dashboard
        self.memory_limit = memory_limit
        self.timeout = timeout

    def _connect(self) -> tuple[Any, Any]:
        import dask
        from distributed import Client, LocalCluster

        if self.scheduler:
            probe_scheduler(self.scheduler, self.timeout)
            try:
                return Client(self.scheduler, timeout=self.timeout), None
            except (OSError, TimeoutError) as exc:
                raise MribenchError(f"--executor dask: cannot reach the scheduler at "
                                    f"{self.scheduler} ({exc}); start it, or drop "
                                    "scheduler= to use a local cluster") from None
        # Thread limits reach the workers through their environment, set before they start
        # (and again whenever the nanny restarts one), before numpy loads its BLAS.
        env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
        env.update({k: "1" for k in THREAD_VARS})
        cluster = None
        try:
            # workers (and the loop thread whose nannies restart them) never see Ctrl-C
            with dask.config.set({"distributed.nanny.pre-spawn-environ": env}), \
                    no_ctrl_c_in_children():
                cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1,
                                       processes=True, dashboard_address=self.dashboard,
                                       memory_limit=self.memory_limit or "auto",
                                       silence_logs=logging.CRITICAL)
            return Client(cluster), cluster
        except BaseException:
            if cluster is not None:
                _close_dask(None, cluster, [])
            raise

    def map_jobs(self, jobs: Sequence[Job]) -> Iterator[tuple[Job, list[RowOutcome]]]:
        if not jobs:
            return
        from distributed import as_completed

        saved = {k: os.environ.get(k) for k in THREAD_VARS}
        client, cluster = self._connect()
        futures: dict[Any, Job] = {}
        try:
            tag = uuid.uuid4().hex[:8]
            for job in jobs:
                future = client.submit(run_pinned, job, pure=False,
                                       key=f"mribench-{job.key}-{tag}")
                futures[future] = job
            for future in as_completed(futures):
                job = futures.pop(future)
                try:
                    outcomes = future.result()
                except Exception as exc:  # KilledWorker, a lost cluster, ...
                    outcomes = _died(job, exc)
                future.release()
                yield job, outcomes
        finally:
            _close_dask(client, cluster, list(futures))
            for k, v in saved.items():  # dask sets the workers' variables here too
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _close_dask(client: Any, cluster: Any, pending: list[Any]) -> None:
    """Cancel what is still pending, close the client and the cluster this run started;
    quietly (an interrupted run's workers are killed mid-job: nothing to report)."""
    quiet = logging.getLogger("distributed")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        if client is not None:
            with contextlib.suppress(Exception):
                if pending:
                    client.cancel(pending)
            with contextlib.suppress(Exception):
                client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()
    finally:
        quiet.setLevel(level)


def make_dask(jobs: int, **options: Any) -> DaskExecutor:
    """``--executor dask`` (entry point): every option checked and, for a ``tcp://``
    scheduler, the scheduler probed (:func:`probe_scheduler`) here, before anything is
    submitted or a run folder made; dask.distributed present."""
    _unknown("dask", options, DASK_OPTIONS)
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise MribenchError(f"--executor dask needs dask.distributed: {INSTALL}") from None
    timeout = _timeout(options.get("timeout", DASK_TIMEOUT_S))
    memory_limit = _memory_limit(options.get("memory_limit"))
    dashboard = _dashboard(options.get("dashboard"))
    scheduler = None
    if options.get("scheduler") is not None:
        scheduler = _scheduler_address(options["scheduler"])[0]
        probe_scheduler(scheduler, timeout)
    return DaskExecutor(jobs, scheduler=scheduler, dashboard=dashboard,
                        memory_limit=memory_limit, timeout=timeout)


# --------------------------------------------------------------------------- slurm


def _needs_gpu(job: Job) -> bool:
    """A deep method's job on ``--device cuda`` asks for a GPU (``auto`` asks for none and
    uses one only where the node has it; the device is resolved on the node)."""
    if job.device != "cuda":
        return False
    from mribench.api import registry

    cls = job.method_cls or registry.get_method(job.method)
    return getattr(cls, "kind", "classical") == "deep"


def slurm_parameters(options: dict[str, Any], jobs: Sequence[Job] = (),
                     parallel: int = 1) -> dict[str, Any]:
    """submitit's ``update_parameters`` keywords for ``--executor-option`` ``options``.

    ``partition`` -> ``slurm_partition``, ``time`` (minutes) -> ``timeout_min``, ``cpus`` ->
    ``cpus_per_task`` (default: the jobs' ``--threads``), ``gpus`` -> ``gpus_per_node``, ``mem_gb`` -> ``mem_gb``,
    ``array_parallelism`` -> ``slurm_array_parallelism`` (default ``parallel``, the run's
    ``--jobs``, when above 1), ``account``/``qos`` -> ``slurm_account``/``slurm_qos``.
    ``cluster`` is checked (slurm, local or debug) but is no parameter. When ``gpus`` is not
    set, an array of deep jobs on ``cuda`` (``jobs``) asks for one GPU per job. Unknown keys
    and bad values are a one-line :class:`MribenchError`.
    """
    _unknown("slurm", options, SLURM_OPTIONS)
    out: dict[str, Any] = {"name": "mribench"}
    cluster = options.get("cluster", "slurm")
    if cluster not in SLURM_CLUSTERS:
        raise MribenchError(f"--executor slurm: option cluster must be one of "
                            f"{', '.join(SLURM_CLUSTERS)}, got {cluster!r}")
    for key in ("partition", "account", "qos"):
        if key in options:
            value = options[key]
            if value is None or isinstance(value, bool | dict | list) or not str(value).strip():
                raise MribenchError(f"--executor slurm: option {key} must be a name, got "
                                    f"{value!r}")
            out[SLURM_OPTIONS[key]] = str(value).strip()
    if "time" in options:
        out["timeout_min"] = _positive_int("slurm", "time", options["time"])
    threads = max((job.threads for job in jobs), default=1)
    out["cpus_per_task"] = _positive_int("slurm", "cpus", options.get("cpus", threads))
    if "gpus" in options:
        gpus = _positive_int("slurm", "gpus", options["gpus"], minimum=0)
        if gpus:
            out["gpus_per_node"] = gpus
    elif any(_needs_gpu(job) for job in jobs):
        out["gpus_per_node"] = 1
    if "mem_gb" in options:
        mem = options["mem_gb"]
        if isinstance(mem, bool) or not isinstance(mem, int | float) or mem <= 0:
            raise MribenchError(f"--executor slurm: option mem_gb must be a positive number, "
                                f"got {mem!r}")
        out["mem_gb"] = mem
    if "array_parallelism" in options:
        out["slurm_array_parallelism"] = _positive_int("slurm", "array_parallelism",
                                                       options["array_parallelism"])
    elif parallel > 1:
        out["slurm_array_parallelism"] = parallel
    return out


def run_leased(job: Job) -> list[RowOutcome]:
    """What a SLURM task runs: :func:`run_pinned`, in a process that ends itself as soon as
    the run's lease is lost (its driver killed or stopped, or the run taken over by another
    driver), so an orphan neither writes into the run nor computes on."""
    owner = read_owner(job.layout.lock_file)
    if job.lease is not None and owner is not None and owner.pid != os.getpid():
        threading.Thread(target=_end_when_orphaned, args=(job,), daemon=True).start()
    return run_pinned(job)


def _end_when_orphaned(job: Job, every_s: float = 1.0) -> None:
    while lease_holds(job.layout, str(job.lease)):
        time.sleep(every_s)
    os._exit(3)  # the task is this job's alone: its driver is gone, nothing waits for it


def _end_local_job(handle: Any) -> None:
    """Kill a job of submitit's local executor: its tasks, then its controller (they ignore
    Ctrl-C and submitit's cancel, a SIGINT; a killed job has no ``status.json``)."""
    process = getattr(handle, "_process", None)  # the job's controller, when we started it
    if process is None or process.poll() is not None:
        return
    try:
        import psutil

        tasks = psutil.Process(process.pid).children(recursive=True)
    except Exception:  # no psutil: the tasks end themselves once the lease is released
        tasks = []
    for task in tasks:
        with contextlib.suppress(Exception):
            task.send_signal(signal.SIGKILL)
    with contextlib.suppress(OSError):
        process.kill()
        process.wait(timeout=5)


class SlurmExecutor:
    """Jobs as SLURM job arrays through submitit (``cluster=local|debug``: on this machine)."""

    def __init__(self, options: dict[str, Any], parallel: int = 1,
                 poll_s: float | None = None) -> None:
        self.options = dict(options)
        self.parallel = parallel
        self.cluster = str(self.options.get("cluster", "slurm"))
        self.poll_s = poll_s if poll_s is not None else (5.0 if self.cluster == "slurm"
                                                         else 0.5)

    def _submit(self, jobs: Sequence[Job], submitted: list[tuple[Job, Any]]) -> None:
        """Submit one array per kind of job, adding each (job, handle) to ``submitted``."""
        import submitit

        folder = jobs[0].layout.submitit_dir
        # the debug executor runs jobs in this process: no task of its own to end
        task = run_pinned if self.cluster == "debug" else run_leased
        groups = [[j for j in jobs if _needs_gpu(j)], [j for j in jobs if not _needs_gpu(j)]]
        for group in groups:
            if not group:
                continue
            params = slurm_parameters(self.options, group, self.parallel)
            executor = submitit.AutoExecutor(folder=folder, cluster=self.cluster)
            if self.cluster != "slurm":  # slurm_* keys mean nothing on this machine
                params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
            executor.update_parameters(**params)
            try:
                handles = executor.map_array(task, list(group))
            except Exception as exc:  # sbatch missing or refused the array
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise MribenchError(f"--executor slurm: cannot submit the job array "
                                    f"({type(exc).__name__}: {first})") from None
            submitted.extend(zip(group, handles, strict=True))

    def _stop(self, pending: list[tuple[Job, Any]]) -> None:
        """The driver stopped (Ctrl-C, an error): stop what it started."""
        for _, handle in pending:
            with contextlib.suppress(Exception):
                if self.cluster == "local":
                    _end_local_job(handle)
                else:
                    handle.cancel(check=False)

    def map_jobs(self, jobs: Sequence[Job]) -> Iterator[tuple[Job, list[RowOutcome]]]:
        if not jobs:
            return
        pending: list[tuple[Job, Any]] = []
        try:
            # local jobs start as processes of this terminal: keep Ctrl-C to the driver
            shield = no_ctrl_c_in_children if self.cluster == "local" else contextlib.nullcontext
            with shield():
                self._submit(jobs, pending)
            log.info("submitted %d job(s) to %s (files in %s)", len(pending), self.cluster,
                     jobs[0].layout.submitit_dir)
            while pending:
                # the debug executor runs a job in this process when its result is asked for
                finished = [p for p in pending if self.cluster == "debug" or p[1].done()]
                for item in finished:
                    pending.remove(item)
                    job, handle = item
                    try:
                        outcomes = handle.result()
                    except Exception as exc:  # killed, out of memory, time limit, cancelled
                        outcomes = _died(job, exc, "SLURM job failed")
                    yield job, outcomes
                if pending and not finished:
                    time.sleep(self.poll_s)
        finally:
            self._stop(pending)


def make_slurm(jobs: int, **options: Any) -> SlurmExecutor:
    """``--executor slurm`` (entry point): its options checked, submitit (and, on a real
    cluster, sbatch) present."""
    slurm_parameters(options, (), jobs)  # checks every option
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise MribenchError(f"--executor slurm needs submitit: {INSTALL}") from None
    cluster = options.get("cluster", "slurm")
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise MribenchError("--executor slurm: sbatch is not on PATH (run on a SLURM login "
                            "node, or try it here with --executor-option cluster=local)")
    return SlurmExecutor(options, parallel=jobs)

