"""The native (C) KAN kernel: KANLinear's forward and backward on a uniform grid, for float32 on the CPU.

Why: on the CPU the PyTorch path (spline_ops.UniformKANFunction) spends its time writing a padded feature matrix
and reading it back in skinny matmuls, a dozen ops per layer; ``kan_kernel.c`` does a layer in one pass over
its rows, about 4x faster on the GRKAN gate's 100-input layer (``benchmarks/bench_train.py``). It needs a C
compiler, once: ``python -m kamoe_viz native`` (run by ``scripts/setup.sh``) builds it into a per-user cache
keyed by the source, flags and CPU. Without it everything works, on the PyTorch path.

Nothing ever waits for a compile at run time: the first use in a process loads a cached build or starts one in a
background thread and carries on with the PyTorch path. A training run picks its path once, when it starts
(:func:`use`), so a build finishing mid-run never changes a run's arithmetic. ``KAMOE_NATIVE=0`` turns the
kernel off;
so does ``KAMOE_FAST=0`` (every fast path off, :mod:`kamoe_viz.nn.fast`).
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from kamoe_viz.nn import fast

SOURCE = Path(__file__).with_name("kan_kernel.c")
SWITCH_ENV = "KAMOE_NATIVE"  # "0" turns the kernel off
DIR_ENV = "KAMOE_NATIVE_DIR"  # where builds are cached
_MATH = ["-fno-math-errno", "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math"]
FLAG_SETS = (["-O3", "-march=native", *_MATH], ["-O3", *_MATH])  # the first that compiles is used
BASES = {"silu": 0, "relu": 1, "elu": 2, "identity": 3}


@dataclass(frozen=True)
class Status:
    state: str  # "ready", "building", "unavailable" (no compiler, or the build failed), "off" (KAMOE_NATIVE=0)
    detail: str = ""  # the library's path when ready; why not otherwise

    def __str__(self) -> str:
        return f"native KAN kernel: {self.state}" + (f" ({self.detail})" if self.detail else "")


_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_status = Status("unavailable", "not looked for yet")
_started = False
_choice: contextvars.ContextVar[bool | None] = contextvars.ContextVar("kamoe_native_choice", default=None)


def enabled_by_environment() -> bool:
    return os.environ.get(SWITCH_ENV, "").strip().lower() not in ("0", "off", "false", "no")


def cache_dir() -> Path:
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kamoe_viz"


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


@cache
def _cpu_signature() -> str:
    """The CPU's feature flags (``-march=native`` code must not be loaded on another CPU from a shared home)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _library_path(flags: list[str]) -> Path:
    digest = hashlib.sha256()
    for part in (
        SOURCE.read_bytes(),
        " ".join(flags).encode(),
        platform.machine().encode(),
        _cpu_signature().encode(),
        sys.platform.encode(),
    ):
        digest.update(part)
    return cache_dir() / f"kan_kernel-{digest.hexdigest()[:16]}.so"


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    size, i32, f32, ptr = ctypes.c_longlong, ctypes.c_int, ctypes.c_float, ctypes.c_void_p
    head: list[type[ctypes._SimpleCData[Any]]] = [size, size, size, size, i32, i32, f32]
    lib.kan_forward.argtypes = head + [ptr] * 9
    lib.kan_backward.argtypes = head + [ptr] * 11
    lib.kan_forward.restype = lib.kan_backward.restype = i32
    return lib


def _compile() -> tuple[Path | None, str]:
    """Compiles the kernel with the first flag set that works; (path, "") or (None, why not)."""
    compiler = _compiler()
    if compiler is None:
        return None, "no C compiler found (install gcc, or set CC)"
    errors = []
    for flags in FLAG_SETS:
        target = _library_path(flags)
        if target.exists():
            return target, ""
        temp = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(suffix=".so", dir=target.parent)
            os.close(fd)
            done = subprocess.run(
                [compiler, *flags, "-shared", "-fPIC", str(SOURCE), "-o", temp],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if done.returncode == 0:
                os.replace(temp, target)  # atomic: processes building at once never load half a file
                return target, ""
            errors.append(f"{' '.join(flags)}: {done.stderr.strip()[-300:]}")
        except (OSError, subprocess.SubprocessError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            if temp is not None and os.path.exists(temp):
                os.unlink(temp)
    return None, "the build failed: " + " | ".join(errors)


def _build_and_load(path: Path | None = None) -> Status:
    """Loads ``path``, or the build (compiling it first if needed); records and returns the status."""
    global _library, _status
    started = time.perf_counter()
    why = ""
    if path is None:
        path, why = _compile()
    if path is None:
        status = Status("unavailable", why)
    else:
        try:
            library = _load(path)
        except (OSError, AttributeError) as exc:
            status = Status("unavailable", f"could not load {path}: {exc}")
        else:
            with _lock:
                _library = library
            status = Status("ready", f"{path}, built or found in {time.perf_counter() - started:.1f} s")
    with _lock:
        _status = status
    return status


def build() -> Status:
    """Build (or find) and load the kernel now, waiting for it; for setup scripts and tests."""
    global _started
    if not enabled_by_environment():
        return Status("off", f"{SWITCH_ENV}=0")
    with _lock:
        _started = True
    return _library_status() if _library is not None else _build_and_load()


def _library_status() -> Status:
    with _lock:
        return _status


def library() -> ctypes.CDLL | None:
    """The loaded kernel, or None. The first call in a process loads a cached build at once or starts building
    one in the background (and returns None meanwhile)."""
    global _started, _status
    if _library is not None or not enabled_by_environment():
        return _library
    with _lock:
        if _started:
            return _library
        _started = True
        cached = next((p for p in map(_library_path, FLAG_SETS) if p.exists()), None)
    if cached is not None:
        _build_and_load(cached)
        return _library
    with _lock:
        _status = Status("building", "in the background; the PyTorch path is used meanwhile")
    threading.Thread(target=_build_and_load, name="kamoe-native-build", daemon=True).start()
    return None


def status() -> Status:
    if not enabled_by_environment():
        return Status("off", f"{SWITCH_ENV}=0")
    return _library_status()


@contextlib.contextmanager
def use(enabled: bool):
    """Within the block (this thread or task only), KAN layers use the kernel only if ``enabled``."""
    token = _choice.set(bool(enabled))
    try:
        yield
    finally:
        _choice.reset(token)


def active() -> ctypes.CDLL | None:
    """The kernel if KAN layers should use it here and now (not inside ``native.use(False)``, nor with the fast
    paths off: :func:`kamoe_viz.nn.fast.enabled`)."""
    if _choice.get() is False or not fast.enabled():
        return None
    return library()


@cache
def _tables(order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Piece coefficients P_r(u) = sum_p coef[r, p] u^p and their u-derivatives, float32 (k+1, k+1)."""
    from kamoe_viz.nn.spline_ops import _piece_coefficients

    coef = torch.tensor(_piece_coefficients(order), dtype=torch.float64)
    dcoef = torch.zeros_like(coef)
    dcoef[:, :order] = coef[:, 1:] * torch.arange(1, order + 1, dtype=torch.float64)
    return coef.float().contiguous(), dcoef.float().contiguous()


def supports(x: torch.Tensor, base_weight: torch.Tensor, spline_weight: torch.Tensor, order: int, base: str) -> bool:
    """Whether the kernel computes this layer call: CPU float32 with contiguous weights, order <= 7."""
    return (
        x.device.type == "cpu"
        and x.dtype == base_weight.dtype == spline_weight.dtype == torch.float32
        and base_weight.is_contiguous()
        and spline_weight.is_contiguous()
        and 0 <= order < 8
        and base in BASES
    )


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _check(code: int) -> None:
    if code:
        raise RuntimeError(f"native KAN kernel failed (code {code}); set {SWITCH_ENV}=0 to use the PyTorch path")


def kan_forward(lib, x, base_weight, spline_weight, bias, shift, inv_step, order: int, base: str) -> torch.Tensor:
    """A KAN layer's output for a contiguous float32 x (N, in), without autograd."""
    x = x.contiguous()
    n, in_features = x.shape
    out_features, _, n_basis = spline_weight.shape
    coef, dcoef = _tables(order)
    out = x.new_empty(n, out_features)
    _check(
        lib.kan_forward(
            n,
            in_features,
            out_features,
            n_basis,
            order,
            BASES[base],
            float(n_basis + order + 1),
            x.data_ptr(),
            shift.data_ptr(),
            inv_step.data_ptr(),
            base_weight.data_ptr(),
            spline_weight.data_ptr(),
            _ptr(bias),
            coef.data_ptr(),
            dcoef.data_ptr(),
            out.data_ptr(),
        )
    )
    return out


def kan_backward(
    lib,
    x,
    base_weight,
    spline_weight,
    shift,
    inv_step,
    order: int,
    base: str,
    grad_out,
    need_x: bool = True,
    need_weights: bool = True,
    weight_grads: tuple | None = None,
):
    """(grad_x, grad_base_weight, grad_spline_weight) of a KAN layer for a contiguous grad_out (N, out); the ones
    not needed are None. ``weight_grads``: (grad_base, grad_spline) tensors to overwrite with the weight gradients,
    e.g. the parameters' ``.grad`` (the kernel writes into them directly when they are contiguous float32)."""
    x, grad_out = x.contiguous(), grad_out.contiguous()
    grad_x = torch.empty_like(x) if need_x else None
    targets = weight_grads if need_weights else None
    in_place = targets is not None and all(g.is_contiguous() and g.dtype == torch.float32 for g in targets)
    if in_place and targets is not None:
        grad_base, grad_spline = targets
    else:
        grad_base = torch.empty_like(base_weight) if need_weights else None
        grad_spline = torch.empty_like(spline_weight) if need_weights else None
    if need_x or need_weights:
        n, in_features = x.shape
        out_features, _, n_basis = spline_weight.shape
        coef, dcoef = _tables(order)
        _check(
            lib.kan_backward(
                n,
                in_features,
                out_features,
                n_basis,
                order,
                BASES[base],
                float(n_basis + order + 1),
                x.data_ptr(),
                shift.data_ptr(),
                inv_step.data_ptr(),
                base_weight.data_ptr(),
                spline_weight.data_ptr(),
                coef.data_ptr(),
                dcoef.data_ptr(),
                grad_out.data_ptr(),
                _ptr(grad_x),
                _ptr(grad_base),
                _ptr(grad_spline),
            )
        )
    if targets is not None and not in_place:
        grad_base, grad_spline = targets[0].copy_(grad_base), targets[1].copy_(grad_spline)
    return grad_x, grad_base, grad_spline


class NativeKANFunction(torch.autograd.Function):
    """Same contract as spline_ops.UniformKANFunction, computed by the C kernel (CPU, float32, contiguous)."""

    @staticmethod
    def forward(ctx, lib, x, base_weight, spline_weight, bias, shift, inv_step, order: int, base: str):
        x = x.contiguous()
        out = kan_forward(lib, x, base_weight, spline_weight, bias, shift, inv_step, order, base)
        ctx.save_for_backward(x, base_weight, spline_weight, shift, inv_step)
        ctx.lib, ctx.order, ctx.base = lib, order, base
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, base_weight, spline_weight, shift, inv_step = ctx.saved_tensors
        needs = ctx.needs_input_grad  # (lib, x, base_weight, spline_weight, bias, ...)
        grad_out = grad_out.contiguous()
        grad_x, grad_base, grad_spline = kan_backward(
            ctx.lib,
            x,
            base_weight,
            spline_weight,
            shift,
            inv_step,
            ctx.order,
            ctx.base,
            grad_out,
            needs[1],
            needs[2] or needs[3],
        )
        grad_bias = grad_out.sum(0) if needs[4] else None
        return None, grad_x, grad_base, grad_spline, grad_bias, None, None, None, None
