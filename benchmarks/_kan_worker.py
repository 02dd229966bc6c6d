"""One side of bench_kan.py, run by that side's python: ``ours`` (kamoe_viz KANLinear, main venv) or ``pykan``
(pykan's KAN, benchmarks/.envs/pykan). Prints one JSON line.

Usage: python _kan_worker.py SIDE DATA.npz WIDTH GRID ORDER STEPS SEED

Measured, for a KAN of widths [8, WIDTH, 1] (two layers, grid GRID, order ORDER, SiLU base) on the same
standardised California rows: Adam training steps per second at batch 32 (random contiguous batches, MSE), and
forward+backward time at batch 1024, both as the median over several timed blocks after a warm-up.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build(side: str, width: int, grid: int, order: int, seed: int):
    import torch

    torch.manual_seed(seed)
    if side == "ours":
        from kamoe_viz.nn import KANLinear

        net = torch.nn.Sequential(
            KANLinear(8, width, grid_size=grid, spline_order=order, base_activation="silu"),
            KANLinear(width, 1, grid_size=grid, spline_order=order, base_activation="silu"),
        )
        return net, lambda x: net(x)
    from kan import KAN

    net = KAN(
        width=[8, width, 1],
        grid=grid,
        k=order,
        seed=seed,
        auto_save=False,
        symbolic_enabled=False,
        save_act=False,
        ckpt_path=tempfile.mkdtemp(prefix="pykan-"),
    )
    net = net.speed() if hasattr(net, "speed") else net
    return net, lambda x: net(x)


def timed_blocks(fn, blocks: int, per_block: int) -> list[float]:
    times = []
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(per_block):
            fn()
        times.append((time.perf_counter() - start) / per_block)
    return times


def main() -> None:
    side, data_path = sys.argv[1], sys.argv[2]
    width, grid, order, steps, seed = (int(v) for v in sys.argv[3:8])
    import numpy as np
    import torch

    data = np.load(data_path)
    X = torch.as_tensor(data["X"])
    y = torch.as_tensor(data["y"])
    net, forward = build(side, width, grid, order, seed)
    params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    n = X.shape[0]
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, n - 32, (steps * 8,), generator=gen).tolist()
    cursor = iter(starts)

    def train_step() -> None:
        s = next(cursor)
        loss = torch.nn.functional.mse_loss(forward(X[s : s + 32]), y[s : s + 32])
        opt.zero_grad()
        loss.backward()
        opt.step()

    xb, yb = X[:1024], y[:1024]

    def fwd_bwd() -> None:
        loss = torch.nn.functional.mse_loss(forward(xb), yb)
        net.zero_grad()
        loss.backward()

    for _ in range(10):  # warm-up
        train_step()
        fwd_bwd()
    per_block = max(1, steps // 5)
    step_times = timed_blocks(train_step, 5, per_block)
    fb_times = timed_blocks(fwd_bwd, 5, max(1, per_block // 4))
    print(
        json.dumps(
            {
                "side": side,
                "width": width,
                "grid": grid,
                "order": order,
                "params": int(params),
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "train_steps_per_second_b32": 1.0 / statistics.median(step_times),
                "fwd_bwd_ms_b1024": 1e3 * statistics.median(fb_times),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
