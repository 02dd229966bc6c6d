"""A minimal training loop of the same shape as kamoe_viz.training.fit (Adam, MSE, shuffled mini-batches sliced
from tensors, per-epoch validation loss and gate weights), using kamoe_viz.nn.fast.optim.FastAdam with its on-device
NaN/inf step skipping instead of a per-step gradient-norm check. bench_train.py runs it with ``--ours-path minimal``
to show what the trainer could gain; it was also the stand-in before kamoe_viz.training existed."""

from __future__ import annotations

import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F


def fit(model, dataset, train, on_epoch=None):
    torch.manual_seed(train.seed)
    X = torch.as_tensor(dataset.X_train)
    y = torch.as_tensor(dataset.y_train)
    Xv = torch.as_tensor(dataset.X_val)
    yv = torch.as_tensor(dataset.y_val)
    from kamoe_viz.nn.fast.optim import FastAdam

    optimizer = FastAdam(model.parameters(), lr=train.lr, skip_nonfinite=True)
    start = time.perf_counter()
    for epoch in range(1, train.epochs + 1):
        model.train()
        order = torch.randperm(X.shape[0])
        total = torch.zeros(())
        for i in range(0, X.shape[0], train.batch_size):
            idx = order[i : i + train.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = F.mse_loss(model(X[idx]).prediction, y[idx])
            loss.backward()
            optimizer.step()
            total += loss.detach() * idx.shape[0]
        model.eval()
        with torch.no_grad():
            out = model(Xv)
            val = F.mse_loss(out.prediction, yv)
            out.gate_weights[:512].numpy()
        if on_epoch is not None:
            on_epoch(
                SimpleNamespace(
                    epoch=epoch,
                    train_loss=float(total) / X.shape[0],
                    val_loss=float(val),
                    seconds_elapsed=time.perf_counter() - start,
                )
            )
    return SimpleNamespace(device="cpu")
