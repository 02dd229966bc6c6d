"""The Markdown report of a reproduction: settings, machine, the headline table beside the reference, the
per-configuration table and the paired tests."""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING

import numpy as np

from kamoe_viz.compare.worker import cpu_count
from kamoe_viz.labels import EXPERT_LABELS, PAPER_VARIANT_LABELS

if TYPE_CHECKING:
    from kamoe_viz.compare.reproduce import Reproduction


def machine_description() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{cpu}, {cpu_count()} cores available, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, torch {torch.__version__} (CPU threads {torch.get_num_threads()})"
    )


def _pm(mean: float, std: float) -> str:
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.3f} ± {std:.3f}" if np.isfinite(std) else f"{mean:.3f}"


def render_markdown(rep: Reproduction, command: str = "") -> str:
    """Markdown report: settings, the headline table next to the reference, per-configuration table, tests."""
    s = rep.settings
    lines = []
    minutes = rep.wall_seconds / 60
    if command:
        lines.append(f"Command: `{command}`  ")
    lines += [
        f"Date (UTC): {rep.started[:10]} · wall time {minutes:.1f} min · {s['runs']} runs · jobs {s['jobs']}  ",
        f"Machine: {machine_description()}",
        "",
    ]
    if rep.name == "california":
        lines += [
            f"Grid ({s['grid']}): layers {s['layers']} × widths {s['widths']} × seeds {s['seeds']}; "
            f"Adam 1e-3, batch 128, early stopping 10, at most {s['max_epochs']} epochs.",
            "",
        ]
        lines += [
            "| Experts | Variant | Ours: mean ± std R² (all runs) | Reference, same configurations | "
            "Ours − reference | Reference, all 32 | Runs (diverged) |",
            "|---|---|---|---|---|---|---|",
        ]
        for _, r in rep.summary.iterrows():
            lines.append(
                f"| {EXPERT_LABELS.get(r.expert, r.expert)} | {PAPER_VARIANT_LABELS.get(r.variant, r.variant)} | "
                f"{_pm(r['mean'], r['std'])} | {r.reference_same_grid:.3f} | "
                f"{r.difference_same_grid:+.3f} | {r.reference_all_32:.3f} | {int(r.n)} "
                f"({int(r.diverged)}) |"
            )
        lines += [
            "",
            "Per configuration (mean ± std over seeds; reference = the notebook's mean over its 5 runs):",
            "",
            "| Experts | Layers | Width | Variant | Ours | Reference |",
            "|---|---|---|---|---|---|",
        ]
        for _, r in rep.per_config.iterrows():
            lines.append(
                f"| {EXPERT_LABELS.get(r.expert, r.expert)} | {r.layers} | {r.width} | "
                f"{PAPER_VARIANT_LABELS.get(r.variant, r.variant)} | {_pm(r['mean'], r['std'])} | "
                f"{r.reference:.3f} |"
            )
    else:
        lines += [
            f"Series {s['datasets']}, experts {s['experts']}, hidden {s['hidden']}, seeds {s['seeds']}, "
            f"at most {s['max_epochs']} epochs.",
            "",
            "| Series | Experts | Variant | Mean ± std test R² | Runs (diverged) |",
            "|---|---|---|---|---|",
        ]
        for _, r in rep.summary.iterrows():
            lines.append(
                f"| {r.series} | {EXPERT_LABELS.get(r.expert, r.expert)} | "
                f"{PAPER_VARIANT_LABELS.get(r.variant, r.variant)} | {_pm(r['mean'], r['std'])} | {int(r.n)} "
                f"({int(r.diverged)}) |"
            )
    if len(rep.pairs):
        lines += ["", "Paired tests (pairs share configuration and seed):", ""]
        group_cols = [c for c in ("series", "expert") if c in rep.pairs.columns]
        for _, r in rep.pairs.iterrows():
            where = " / ".join(str(EXPERT_LABELS.get(r[c], r[c])) for c in group_cols)
            lines.append(f"- {where}: {r.verdict}")
    if rep.notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in rep.notes]
    return "\n".join(lines) + "\n"


__all__ = ["machine_description", "render_markdown"]
