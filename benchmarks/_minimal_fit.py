"""Stand-in for kamoe_viz.training.fit while that module does not exist: the same training step (Adam, MSE,
shuffled mini-batches sliced from tensors, per-epoch validation loss), without the trainer's bookkeeping."""
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
    optimizer = torch.optim.Adam(model.parameters(), lr=train.lr, fused=True)
    start = time.perf_counter()
    for epoch in range(1, train.epochs + 1):
        model.train()
        order = torch.randperm(X.shape[0])
        total = torch.zeros(())
        for i in range(0, X.shape[0], train.batch_size):
            idx = order[i:i + train.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = F.mse_loss(model(X[idx]).prediction, y[idx])
            loss.backward()
            optimizer.step()
            total += loss.detach() * idx.shape[0]
        model.eval()
        with torch.no_grad():
            val = F.mse_loss(model(Xv).prediction, yv)
        if on_epoch is not None:
            on_epoch(SimpleNamespace(epoch=epoch, train_loss=float(total) / X.shape[0], val_loss=float(val),
                                     seconds_elapsed=time.perf_counter() - start))
    return SimpleNamespace(device="cpu")
