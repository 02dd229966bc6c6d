"""Which torch device a run uses (``auto`` picks CUDA, then Apple MPS, then the CPU) and how many CPU threads."""

from __future__ import annotations

import ctypes
import os
import sys

import torch

from kamoe_viz.config import DEVICES
from kamoe_viz.errors import ValidationError


def _cuda_ok() -> bool:
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # a broken driver must not break the CPU path
        return False


def _mps_ok() -> bool:
    try:
        backend = getattr(torch.backends, "mps", None)
        return bool(backend is not None and backend.is_available())
    except Exception:
        return False


THREADS_ENV = "KAMOE_THREADS"


LARGE_BATCH = 512  # from this batch size on, one training process gains from more threads


def configure_cpu_threads(threads: int | None = None, batch_size: int | None = None) -> int:
    """Set torch's CPU thread count for training; returns the count in force.

    ``None`` reads ``KAMOE_THREADS`` and otherwise uses 1: the models here are small, and their many small ops
    run faster on one thread than split across cores (measured on 2 cores: the default regimes run 5.9 s with 1
    thread vs 10.6 s with 2; California GRKAN batch 128, 5.7 s vs 8.0 s), and sessions training side by side in
    the app then do not fight over the cores. A single training process (the CLI) that passes a ``batch_size`` of
    at least ``LARGE_BATCH`` gets up to 4 of the machine's cores instead: its matmuls are big enough to split
    (California batch 1024: 0.23 s per epoch with 2 threads vs 0.28 s with 1).
    """
    source = "threads"
    if threads is None:
        raw = os.environ.get(THREADS_ENV, "").strip()
        source, threads = THREADS_ENV, 1
        if not raw and batch_size is not None and batch_size >= LARGE_BATCH:
            threads = max(1, min(4, _usable_cores()))
        if raw:
            try:
                threads = int(raw)
            except ValueError:
                raise ValidationError(THREADS_ENV, raw, "must be a whole number of CPU threads, e.g. 1") from None
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 1024:
        raise ValidationError(source, threads, "must be a whole number from 1 to 1024")
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def available_devices() -> list[str]:
    """Concrete devices present on this machine, best first after the CPU: e.g. ``['cpu', 'cuda']``."""
    found = ["cpu"]
    if _cuda_ok():
        found.append("cuda")
    if _mps_ok():
        found.append("mps")
    return found


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto`` -> cuda if present, else mps if present, else cpu; an absent device is a ValidationError."""
    if isinstance(name, torch.device):
        name = name.type
    name = "auto" if name is None else str(name).strip().lower()
    present = available_devices()
    if name == "auto":
        if "cuda" in present:
            return torch.device("cuda")
        if "mps" in present:
            return torch.device("mps")
        return torch.device("cpu")
    if name not in DEVICES:
        raise ValidationError("train.device", name, f"must be one of {', '.join(DEVICES)}")
    if name not in present:
        raise ValidationError(
            "train.device", name, f"is not available on this machine; available: auto, {', '.join(present)}"
        )
    return torch.device(name)


_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc mallopt parameters


def tune_allocator() -> bool:
    """Let glibc keep freed memory for reuse in a process that trains (the CLI, compare workers, benchmarks).

    A training step frees and re-allocates the same tensors every batch; by default glibc hands the larger ones
    back to the OS and takes them again, paying page faults each time. Measured with ``benchmarks/bench_train.py``
    (California, batch 128): 0.164 s per epoch against 0.174 s. Not used in the app server, a long-lived process
    where holding on to freed memory matters more. ``KAMOE_MALLOC_TUNING=0`` turns it off. Returns whether it
    applied (glibc only).
    """
    if not sys.platform.startswith("linux") or os.environ.get("KAMOE_MALLOC_TUNING", "").strip() == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return all(
            libc.mallopt(option, value) == 1
            for option, value in ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 256 << 20), (_M_TOP_PAD, 16 << 20))
        )
    except (OSError, AttributeError):  # not glibc
        return False
