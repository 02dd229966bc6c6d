"""Which torch device a run uses: ``auto`` picks CUDA, then Apple MPS, then the CPU."""
from __future__ import annotations

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
        raise ValidationError("train.device", name, f"is not available on this machine; available: auto, "
                              f"{', '.join(present)}")
    return torch.device(name)
