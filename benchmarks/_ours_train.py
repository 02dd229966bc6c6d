"""Our side of bench_train.py: the California configuration trained through kamoe_viz's own training path
(``kamoe_viz.training.fit``), timed per epoch. Prints one JSON line.

Usage: python _ours_train.py DATA.npz BATCH EPOCHS SEED [DEVICE]
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

T_START = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(1, str(Path(__file__).resolve().parent))


def main() -> None:
    data_path, batch_size, epochs, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    device = sys.argv[5] if len(sys.argv) > 5 else "cpu"
    import numpy as np
    import torch

    from kamoe_viz.config import ModelConfig, TrainConfig
    from kamoe_viz.data.base import Dataset
    from kamoe_viz.nn import build_model
    from kamoe_viz.training import configure_cpu_threads, tune_allocator

    configure_cpu_threads(batch_size=batch_size)  # as the CLI: KAMOE_THREADS, else 1 (more cores from batch 512)
    tune_allocator()  # as the CLI
    try:
        from kamoe_viz.training import fit

        path = "kamoe_viz.training.fit"
    except ImportError:  # the trainer is not written yet: a minimal loop of the same shape stands in
        fit, path = None, ""
    if fit is None or os.environ.get("KAMOE_BENCH_PATH") == "minimal":
        from _minimal_fit import fit

        path = "benchmarks/_minimal_fit.py (FastAdam, no per-step sync)"

    t_import = time.perf_counter()
    data = np.load(data_path)
    dataset = Dataset(
        name="california",
        task="regression",
        feature_names=[f"x{i}" for i in range(data["X"].shape[1])],
        target_name="MedHouseVal",
        X_train=data["X"],
        y_train=data["y"],
        X_val=data["X_val"],
        y_val=data["y_val"],
        X_test=data["X_val"],
        y_test=data["y_val"],
        x_mean=data["x_mean"],
        x_std=data["x_std"],
        y_mean=float(data["y_mean"]),
        y_std=float(data["y_std"]),
    )
    torch.manual_seed(seed)
    model = build_model(ModelConfig(), dataset)  # defaults = the reference California configuration
    train = TrainConfig(epochs=epochs, batch_size=batch_size, lr=1e-3, seed=seed, device=device)
    epoch_ends: list[float] = []
    losses: list[float] = []

    def on_epoch(info) -> None:
        epoch_ends.append(time.perf_counter())
        losses.append(float(info.train_loss))

    t_fit = time.perf_counter()
    result = fit(model, dataset, train.validate(), on_epoch=on_epoch)
    starts = [t_fit] + epoch_ends[:-1]
    from kamoe_viz.nn.fast import native
    from kamoe_viz.nn.fast.direct_grad import unsupported_reason

    on_cpu = str(result.device) == "cpu"
    why_autograd = unsupported_reason(model, dataset.task, native.library()) if on_cpu else str(result.device)
    print(
        json.dumps(
            {
                "side": "ours",
                "path": path,
                "gradients": "direct" if why_autograd is None else f"autograd ({why_autograd})",
                "device": str(result.device),
                "versions": {"torch": torch.__version__},
                "threads": torch.get_num_threads(),
                "batch_size": batch_size,
                "epochs": epochs,
                "rows": int(dataset.X_train.shape[0]),
                "params": int(model.parameter_count()),
                "import_seconds": t_import - T_START,
                "first_epoch_end_seconds": epoch_ends[0] - t_import,  # data + build + first epoch (+ its validation)
                "epoch_seconds": [end - start for start, end in zip(starts, epoch_ends)],
                "final_loss": losses[-1],
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20
                if str(result.device).startswith("cuda")
                else None,
            }
        )
    )


if __name__ == "__main__":
    main()
