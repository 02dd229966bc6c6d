"""Where a sweep's runs train: in this process or a local process pool (``local``), or on a Ray cluster (``ray``).

A sweep is cut into *tasks* of one configuration x a batch of seeds (:func:`split_tasks`); a task trains its seeds
together as one batched model when it can (:func:`execute_task`), so a task is the unit that pays off on a worker.
Both engines hand each finished task's outcomes to ``on_outcome`` as soon as it finishes (the caller streams them
into the results CSV), and a task that fails -- an unexpected exception, a worker process killed -- comes back as
rows saying so (``stopped_reason == "error"``), never as a crash of the sweep.

Ray: without an address a private cluster starts for this sweep only (``ray.init(address="local")``, token auth
on, workers at niceness 0) and stops when it ends; ``"auto"`` joins the cluster running on this machine;
``HOST:PORT`` joins that cluster's GCS (started with ``ray start --head``). Each task asks for 1 CPU. Ray is an
optional dependency, imported only here and only when the Ray engine is used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager, suppress
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kamoe_viz.compare.worker import (
    GATE_SAMPLE_ROWS,
    RunOutcome,
    RunSpec,
    _init_worker,
    data_key,
    error_outcome,
    execute,
    measure,
)
from kamoe_viz.errors import ValidationError

if TYPE_CHECKING:
    from kamoe_viz.data.base import Dataset

ENGINES = ("local", "ray")
RAY_ADDRESS_ENV = "KAMOE_RAY_ADDRESS"  # the Compare page's Ray cluster, set by whoever starts the server
MAX_SEEDS_PER_TASK = 20  # a batched task of more seeds than this is split (keeps tasks short and balanced)
TASK_RETRIES = 1  # Ray re-runs a task whose worker died this many times before it becomes an error row

OutcomeCallback = Callable[[RunOutcome], None]
EpochCallback = Callable[[RunSpec, Any], None]


# ----- tasks ---------------------------------------------------------------------------------------------------------
def task_key(spec: RunSpec) -> str:
    """Specs with equal keys differ only in their training seed: they can train together as one batched task."""
    cfg = spec.config.to_dict()
    cfg["train"] = {k: v for k, v in cfg["train"].items() if k != "seed"}
    return json.dumps({"variant": spec.variant, "labels": spec.labels, "config": cfg}, sort_keys=True, default=str)


def split_tasks(specs: list[RunSpec], seeds_per_task: int) -> list[list[RunSpec]]:
    """Group specs by configuration (first-seen order) and cut each group into batches of ``seeds_per_task``."""
    groups: dict[str, list[RunSpec]] = {}
    for spec in specs:
        groups.setdefault(task_key(spec), []).append(spec)
    size = max(1, int(seeds_per_task))
    return [group[i : i + size] for group in groups.values() for i in range(0, len(group), size)]


def execute_task(
    specs: list[RunSpec],
    dataset: Dataset | None = None,
    sample_rows: int = GATE_SAMPLE_ROWS,
    batch: bool = True,
    on_epoch: EpochCallback | None = None,
) -> list[RunOutcome]:
    """Train one task's seeds (together when ``batch`` and the configuration allows it) and measure each; a seed
    that raises becomes an error row, and so does every seed of a batched task that raises."""
    if batch and len(specs) > 1 and batched_reason(specs[0]) is None:
        ds = _dataset(specs[0], dataset)
        try:
            from kamoe_viz.training.batched import train_batched

            runs = train_batched([s.config for s in specs], ds)
            return [measure(s, ds, run, sample_rows) for s, run in zip(specs, runs)]
        except Exception as exc:
            return [error_outcome(s, ds, _describe(exc)) for s in specs]
    outcomes = []
    for spec in specs:
        cb = (lambda info, s=spec: on_epoch(s, info)) if on_epoch else None
        try:
            outcomes.append(execute(spec, dataset, cb, sample_rows))
        except Exception as exc:
            outcomes.append(error_outcome(spec, _dataset(spec, dataset), _describe(exc)))
    return outcomes


def batched_reason(spec: RunSpec) -> str | None:
    """Why this spec's seeds train one at a time even with batching on (None: they train together)."""
    from kamoe_viz.training.batched import unsupported_reason

    return unsupported_reason(spec.config)


def _dataset(spec: RunSpec, dataset: Dataset | None) -> Dataset:
    from kamoe_viz.compare.worker import _dataset_for

    return _dataset_for(spec.config, dataset)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()[:500]


def _task_outcomes(
    task: list[RunSpec], result: Callable[[], list[RunOutcome]], datasets: dict[str, Dataset]
) -> list[RunOutcome]:
    """The outcomes of a finished task (``result()``: the future's or Ray object's value); a task that failed as a
    whole (a worker process killed, a Ray worker that died twice) gives an error outcome for each of its runs."""
    try:
        return result()
    except Exception as exc:  # any failure of the task itself is reported per run, never raised
        return [error_outcome(s, _dataset(s, datasets.get(data_key(s.config))), _describe(exc)) for s in task]


def _task_in_worker(specs: list[RunSpec], sample_rows: int, batch: bool) -> list[RunOutcome]:
    return execute_task(specs, None, sample_rows, batch)


# ----- engines -------------------------------------------------------------------------------------------------------
class Engine(Protocol):
    name: str
    workers: int

    def run(
        self,
        tasks: list[list[RunSpec]],
        datasets: dict[str, Dataset],
        on_outcome: OutcomeCallback,
        *,
        sample_rows: int = GATE_SAMPLE_ROWS,
        batch: bool = True,
        on_epoch: EpochCallback | None = None,
    ) -> None: ...

    def close(self) -> None: ...


class LocalEngine:
    """Tasks in this process (``jobs == 1``, with per-epoch progress) or in ``jobs`` spawned worker processes."""

    name = "local"

    def __init__(self, jobs: int = 1) -> None:
        self.workers = max(1, int(jobs))

    def run(
        self,
        tasks: list[list[RunSpec]],
        datasets: dict[str, Dataset],
        on_outcome: OutcomeCallback,
        *,
        sample_rows: int = GATE_SAMPLE_ROWS,
        batch: bool = True,
        on_epoch: EpochCallback | None = None,
    ) -> None:
        if self.workers <= 1 or len(tasks) <= 1:
            for task in tasks:
                for out in execute_task(task, datasets.get(data_key(task[0].config)), sample_rows, batch, on_epoch):
                    on_outcome(out)
            return
        ctx = get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=min(self.workers, len(tasks)), mp_context=ctx, initializer=_init_worker, initargs=(datasets,)
        ) as pool:
            pending = {pool.submit(_task_in_worker, task, sample_rows, batch): task for task in tasks}
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        for out in _task_outcomes(pending.pop(fut), fut.result, datasets):
                            on_outcome(out)
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise

    def close(self) -> None:
        return None


def _ray_task(specs: list[RunSpec], dataset: Dataset | None, sample_rows: int, batch: bool) -> list[RunOutcome]:
    """Body of a Ray task: one worker process, one torch thread, ordinary priority."""
    _prepare_ray_worker()
    return execute_task(specs, dataset, sample_rows, batch)


_WORKER_READY = False


def _prepare_ray_worker() -> None:
    global _WORKER_READY
    if _WORKER_READY:
        return
    from kamoe_viz.training import configure_cpu_threads, tune_allocator

    # Ray starts workers at niceness 15; on a shared machine they would starve (needs root or CAP_SYS_NICE)
    with suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    configure_cpu_threads()
    tune_allocator()
    _WORKER_READY = True


def _repo_root() -> str:
    return str(Path(__file__).resolve().parents[2])


class RayEngine:
    """Tasks as Ray tasks of 1 CPU each on a private local cluster (no address), the running one (``auto``) or
    the cluster at ``HOST:PORT``. :meth:`close` always shuts this driver's connection down, which stops a private
    cluster."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report, and no prompt
        try:
            import ray
        except ImportError:  # pragma: no cover - ray is in requirements-dev.txt
            raise ValidationError(
                "engine", "ray", "needs the ray package: pip install 'ray[default]==2.60.*'", "or use --engine local"
            ) from None
        self._ray = ray
        self.address = check_address(address)
        if ray.is_initialized():
            raise ValidationError(
                "engine",
                "ray",
                "this process is already connected to a Ray cluster; a sweep opens and closes its own connection",
            )
        if self.address is None:
            # a private cluster's raylet and workers inherit this environment: the package importable, ordinary
            # priority (Ray's default niceness 15 starves them on a shared box), no usage stats
            path = os.environ.get("PYTHONPATH", "")
            if _repo_root() not in path.split(os.pathsep):
                os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_repo_root(), path) if p)
            os.environ.setdefault("RAY_worker_niceness", "0")
            cpus = max(1, int(num_cpus or (os.cpu_count() or 1)))
            ray.init(
                address="local",
                num_cpus=cpus,
                include_dashboard=False,
                log_to_driver=False,
                _node_ip_address="127.0.0.1",
                configure_logging=False,
            )
        else:
            ray.init(address=self.address, log_to_driver=False, configure_logging=False)
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))

    def run(
        self,
        tasks: list[list[RunSpec]],
        datasets: dict[str, Dataset],
        on_outcome: OutcomeCallback,
        *,
        sample_rows: int = GATE_SAMPLE_ROWS,
        batch: bool = True,
        on_epoch: EpochCallback | None = None,
    ) -> None:
        ray = self._ray
        remote = ray.remote(num_cpus=1, max_retries=TASK_RETRIES, retry_exceptions=False)(_ray_task)
        refs = {key: ray.put(ds) for key, ds in datasets.items()}  # each split travels once
        pending = {}
        for task in tasks:
            key = data_key(task[0].config)
            pending[remote.remote(task, refs[key], sample_rows, batch)] = task
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    for out in _task_outcomes(pending.pop(ref), partial(ray.get, ref), datasets):
                        on_outcome(out)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise

    def close(self) -> None:
        self._ray.shutdown()


def check_address(address: str | None) -> str | None:
    """None/'' (a private local cluster), 'auto', or HOST:PORT (``ray://`` client addresses are not supported)."""
    if address is None or not str(address).strip():
        return None
    text = str(address).strip()
    if text == "auto":
        return text
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in host:
        raise ValidationError("address", text, "must be HOST:PORT of a Ray head node (e.g. 10.0.0.5:6379), or auto")
    return text


def check_engine(name: str) -> str:
    text = str(name).strip().lower()
    if text not in ENGINES:
        raise ValidationError("engine", name, f"must be one of {', '.join(ENGINES)}")
    return text


def make_engine(name: str = "local", *, jobs: int | None = None, address: str | None = None) -> Engine:
    """``local`` with ``jobs`` processes (default 1); ``ray`` at ``address`` (a private cluster of ``jobs`` CPUs,
    default every core, when no address is given)."""
    name = check_engine(name)
    if name == "local":
        if address:
            raise ValidationError("address", address, "is for --engine ray only")
        return LocalEngine(jobs or 1)
    return RayEngine(address, num_cpus=jobs)


def server_ray_address() -> str | None:
    """The Ray cluster the Compare page sends sweeps to: ``KAMOE_RAY_ADDRESS`` of the server's environment
    (validated), or None to train in the server's own processes."""
    return check_address(os.environ.get(RAY_ADDRESS_ENV))


@contextmanager
def engine_context(name: str, *, jobs: int | None = None, address: str | None = None) -> Iterator[Engine]:
    """``with`` form of :func:`make_engine` that always closes (a private Ray cluster never outlives its sweep)."""
    engine = make_engine(name, jobs=jobs, address=address)
    try:
        yield engine
    finally:
        engine.close()


__all__ = [
    "ENGINES",
    "MAX_SEEDS_PER_TASK",
    "RAY_ADDRESS_ENV",
    "Engine",
    "LocalEngine",
    "RayEngine",
    "check_address",
    "check_engine",
    "engine_context",
    "execute_task",
    "make_engine",
    "server_ray_address",
    "split_tasks",
    "task_key",
]
