"""S seeds of one configuration trained together as one model with a leading seed dimension.

Each seed's model is built exactly as :func:`~kamoe_viz.training.train_run` builds it (``torch.manual_seed(seed)``
then ``build_model``), its parameters are stacked into tensors of shape (S, ...), and one forward/backward runs
all seeds at once through :func:`kamoe_viz.nn.stacked.stacked_forward` (one batched matmul per layer for all
seeds) with autograd for the gradients. Per seed, as the single-run :class:`~kamoe_viz.training.Trainer` does it:
batch order (a generator seeded by the seed), Adam (one Adam over the stacked weights with per-seed step counts
and learning rates is exactly S independent Adams), gradient-norm clipping and the divergence guard, validation
loss, best weights, early stopping and plateau LR reduction. A seed that stops leaves the stack. The result is S
ordinary :class:`~kamoe_viz.training.TrainedRun` objects (models on the CPU, best weights, metrics), equal to
training each seed alone to float tolerance (tests/test_batched.py): the single-run trainer's closed-form
gradients and C kernels give the same values as autograd to rounding, not bit for bit.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from kamoe_viz.config import SEQUENTIAL_EXPERTS, RunConfig, TrainConfig
from kamoe_viz.errors import ValidationError
from kamoe_viz.nn import fast
from kamoe_viz.nn.fast import native
from kamoe_viz.nn.fast.direct_grad import SWITCH_ENV as DIRECT_SWITCH_ENV
from kamoe_viz.nn.fast.stacked_grad import StackedGradients
from kamoe_viz.nn.fast.stacked_grad import unsupported_reason as direct_unsupported
from kamoe_viz.nn.routers import RouterOutput, balance_loss, z_loss
from kamoe_viz.nn.stacked import STACKED_ROUTINGS, stacked_forward
from kamoe_viz.nn.stacked import unsupported_reason as model_unsupported
from kamoe_viz.training.evaluation import check_input, evaluate, input_tensor, target_tensor
from kamoe_viz.training.objectives import AUX_LOSSES
from kamoe_viz.training.param_stack import FUSED_ADAM, ParameterStack
from kamoe_viz.training.results import HISTORY_COLUMNS, TrainedRun, TrainResult
from kamoe_viz.training.schedule import Schedule
from kamoe_viz.training.step import GRAD_NORM_LIMIT
from kamoe_viz.training.trainer import divergence_message

if TYPE_CHECKING:
    from kamoe_viz.data.base import Dataset
    from kamoe_viz.nn.moe import KAMoE

CLIP_EPS = 1e-6  # as torch.nn.utils.clip_grads_with_norm_
BatchEpochCallback = Callable[[int, list[float], bool], Any]  # (epoch, each seed's val loss, all stopped)


def unsupported_reason(config: RunConfig) -> str | None:
    """Why this configuration trains one seed at a time, or None when its seeds can train batched."""
    m, t = config.model, config.train
    if m.expert in SEQUENTIAL_EXPERTS:
        return "LSTM/GRU experts train one seed at a time (their cuDNN/MKL kernels do not batch over seeds)"
    if m.kind == "moe" and m.routing not in STACKED_ROUTINGS:
        return f"routing {m.routing!r} trains one seed at a time (batched: {', '.join(STACKED_ROUTINGS)})"
    if m.kind == "moe" and m.shared_experts:
        return "shared experts train one seed at a time"
    if m.dropout > 0:
        return "dropout draws its masks per run; such runs train one seed at a time"
    for name in ("balance_loss", "z_loss"):
        if float(getattr(t, name, 0.0) or 0.0) > 0:
            return f"train.{name} > 0 trains one seed at a time"
    if int(getattr(t, "restarts", 1)) > 1:
        return "restarts train one seed at a time"
    if getattr(t, "objective", "mse") != "mse" or float(getattr(t, "gate_lr_scale", 1.0)) != 1.0:
        return "this objective / gate learning-rate scale trains one seed at a time"
    if t.device not in ("cpu", "cuda", "auto"):
        return f"device {t.device!r} trains one seed at a time"
    return None


def _seed_key(config: RunConfig) -> str:
    d = config.to_dict()
    d["train"].pop("seed")
    return repr(d)


class _SeedState:
    """Book-keeping of one seed (what the single-run Trainer keeps on itself)."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.generator = torch.Generator().manual_seed(config.train.seed)
        self.lr = float(config.train.lr)
        self.epoch = 0
        self.rows: list[dict[str, float]] = []
        self.schedule = Schedule(config.train)  # best epoch, early stopping, plateau: as the Trainer's
        self.best_state: dict[str, torch.Tensor] = {}
        self.stopped_reason: str | None = None
        self.message: str | None = None
        self.seconds = 0.0

    @property
    def best_epoch(self) -> int | None:
        return self.schedule.best_epoch

    @property
    def best_val(self) -> float:
        return self.schedule.best_val


def train_batched(
    configs: Sequence[RunConfig], dataset: Dataset | None = None, on_epoch: BatchEpochCallback | None = None
) -> list[TrainedRun]:
    """Train configurations that differ only in ``train.seed`` as one stacked model; one TrainedRun per seed.
    ``on_epoch(epoch, val_losses, finished)`` after every epoch: each seed's latest validation loss (a seed that
    has stopped keeps its last) and whether every seed has now stopped, e.g. to report a trial's progress to a
    scheduler; what it raises ends training."""
    from kamoe_viz.nn import build_model

    configs = [copy.deepcopy(c).validate() for c in configs]
    if not configs:
        raise ValidationError("configs", [], "needs at least one configuration")
    if len({_seed_key(c) for c in configs}) != 1:
        raise ValidationError("configs", "mixed settings", "must differ only in train.seed to train batched")
    reason = unsupported_reason(configs[0])
    if reason is not None:
        raise ValidationError("configs", configs[0].model.expert, reason)
    if dataset is None:
        from kamoe_viz.data import load_dataset

        dataset = load_dataset(configs[0].data)
    if len(dataset.X_train) == 0:
        raise ValidationError("dataset", dataset.name, "has no training rows; it needs at least one")
    from kamoe_viz.training.devices import resolve_device

    device = resolve_device(configs[0].train.device)
    models = []
    for c in configs:
        torch.manual_seed(c.train.seed)
        models.append(build_model(c.model, dataset))
    check_input(models[0], dataset.X_train, "dataset.X_train")
    reason = model_unsupported(models[0])
    if reason is not None:
        raise ValidationError("configs", configs[0].model.expert, reason)
    seeds = [_SeedState(c) for c in configs]
    _fit(models, configs, dataset, device, seeds, on_epoch)
    runs = []
    for model, config, st in zip(models, configs, seeds):
        runs.append(TrainedRun(config=config, dataset=dataset, model=model, result=_finish(model, dataset, st, device)))
    return runs


def _fit(
    models: list[KAMoE],
    configs: list[RunConfig],
    dataset: Dataset,
    device: torch.device,
    seeds: list[_SeedState],
    on_epoch: BatchEpochCallback | None = None,
) -> None:
    cfg = configs[0].train
    task = dataset.task
    template = models[0].to(device)
    names = [n for n, p in template.named_parameters() if p.requires_grad]
    buffers = dict(template.named_buffers())
    for m in models[1:]:  # every seed's buffers (KAN grids) are the same at initialisation
        for n, b in m.named_buffers():
            if not torch.equal(b.to(device), buffers[n]):
                raise ValidationError("model", n, "differs between seeds; they cannot train batched")
    X = input_tensor(dataset.X_train, device)
    y = target_tensor(task, dataset.y_train, device)
    if len(dataset.X_val):
        Xv, yv = input_tensor(dataset.X_val, device), target_tensor(task, dataset.y_val, device)
    else:
        Xv, yv = X, y
    stack = ParameterStack(
        {n: torch.stack([dict(m.named_parameters())[n].detach().to(device) for m in models]) for n in names}
    )
    active = list(range(len(models)))  # seed positions still training, in stack order
    plain = not fast.enabled()  # KAMOE_FAST=0: modules and autograd, as the Trainer then does
    lib = native.library() if device.type == "cpu" and not plain else None  # the KAN path for the whole sweep
    with native.use(lib is not None):
        _loop(
            template, cfg, task, stack, seeds, active, X, y, Xv, yv, _direct_path(template, task, names, lib), on_epoch
        )


def _direct_path(model: KAMoE, task: str, names: list[str], lib: Any) -> StackedGradients | None:
    """Closed-form stacked gradients where they cover the model (every parameter), else None (autograd)."""
    if not fast.enabled() or os.environ.get(DIRECT_SWITCH_ENV, "1").strip() == "0":
        return None
    if direct_unsupported(model, task) is not None:
        return None
    direct = StackedGradients(model, task, lib)
    return direct if direct.names == set(names) else None


def _loop(
    template: KAMoE,
    cfg: TrainConfig,
    task: str,
    stack: ParameterStack,
    seeds: list[_SeedState],
    active: list[int],
    X: torch.Tensor,
    y: torch.Tensor,
    Xv: torch.Tensor,
    yv: torch.Tensor,
    direct: StackedGradients | None,
    on_epoch: BatchEpochCallback | None = None,
) -> None:
    """Epochs until every seed has stopped; each seed's best weights land in its ``best_state``."""
    device = X.device
    clip = float(cfg.max_grad_norm)
    limit = GRAD_NORM_LIMIT if clip <= 0 else math.inf
    n_rows = X.shape[0]
    template.train()
    epoch = 0
    while active:
        started = time.perf_counter()
        orders = [torch.randperm(n_rows, generator=seeds[i].generator).to(device) for i in active]
        Xs = torch.stack([X.index_select(0, o) for o in orders])
        ys = torch.stack([y.index_select(0, o) for o in orders])
        lr_list = [seeds[i].lr for i in active]
        lrs = torch.tensor(lr_list, device=device)
        all_alive = True
        fused = FUSED_ADAM and len(set(lr_list)) == 1
        total = torch.zeros(len(active), device=device)
        alive = torch.ones(len(active), dtype=torch.bool, device=device)
        for start in range(0, n_rows, cfg.batch_size):
            xb, yb = Xs[:, start : start + cfg.batch_size], ys[:, start : start + cfg.batch_size]
            if direct is not None:  # closed form, written into stack.grad
                losses, grad = direct.step(stack.p, stack.g, xb, yb), stack.grad
            else:
                # one leaf per parameter, each a view of the flat buffer (autograd through slices of one flat
                # leaf would build a full-size zero gradient per parameter); their gradients are concatenated once
                leaves = {k: v.detach().requires_grad_(True) for k, v in stack.p.items()}
                losses = _per_seed_loss(task, stacked_forward(template, leaves, xb, stack.S)[0], yb)
                grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses.sum(), list(leaves.values()))])
            norm = stack.sq_norms(grad).sqrt()
            ok = torch.isfinite(losses) & (norm < limit) & alive
            bad = alive & ~ok
            if bool(bad.any()):  # the Trainer stops a run at its first bad step, before taking it
                for j in bad.nonzero().flatten().tolist():
                    st = seeds[active[j]]
                    st.message = divergence_message(
                        st.epoch + 1,
                        float(losses[j].detach()),
                        float(norm[j]),
                        None,
                        st.best_epoch,
                        st.best_val,
                        st.lr,
                        clip,
                    )
                    st.stopped_reason = "diverged"
                alive = alive & ok
                all_alive = False
            scale = (clip / (norm + CLIP_EPS)).clamp(max=1.0) if clip > 0 else None
            if fused and all_alive:
                stack.fused_adam(grad, lr_list[0], scale, float(cfg.weight_decay))
            else:
                stack.adam(grad, lrs, alive.to(grad.dtype), scale, float(cfg.weight_decay))
            total += losses.detach().nan_to_num(0.0) * xb.shape[1]
        with torch.no_grad():
            template.eval()
            pred, weights, logits = stacked_forward(template, stack.p, Xv, stack.S)
            val = _per_seed_loss(task, pred, yv.unsqueeze(0).expand(pred.shape[0], *yv.shape))
            aux = [
                _aux(weights[j], logits[j]) if logits is not None else dict.fromkeys(AUX_LOSSES, math.nan)
                for j in range(stack.S)
            ]
            template.train()
        elapsed = (time.perf_counter() - started) / len(active)
        train_losses, val_losses, alive_host = (total / n_rows).tolist(), val.tolist(), alive.tolist()
        improved = [False] * len(active)
        for j, i in enumerate(active):
            st = seeds[i]
            st.seconds += elapsed
            if not alive_host[j]:
                continue
            if not math.isfinite(val_losses[j]):
                st.message = divergence_message(
                    st.epoch + 1, val_losses[j], None, "validation loss", st.best_epoch, st.best_val, st.lr, clip
                )
                st.stopped_reason = "diverged"
                continue
            st.epoch += 1
            lr_used = st.lr
            improved[j] = _after_epoch(st, val_losses[j])
            st.rows.append(
                {
                    "epoch": st.epoch,
                    "train_loss": train_losses[j],
                    "val_loss": val_losses[j],
                    "lr": lr_used,
                    "seconds": st.seconds,
                    **aux[j],
                }
            )
        epoch += 1
        if on_epoch is not None:
            on_epoch(
                epoch,
                [st.rows[-1]["val_loss"] if st.rows else math.nan for st in seeds],
                all(st.stopped_reason is not None for st in seeds),
            )
        if any(improved):
            stack.mark_best(torch.tensor(improved, device=device))
        keep_pos = [j for j, i in enumerate(active) if seeds[i].stopped_reason is None]
        if len(keep_pos) < len(active):  # finished seeds leave the stack, with their best weights
            for j, i in enumerate(active):
                if seeds[i].stopped_reason is not None:
                    seeds[i].best_state = stack.seed(j, stack.best)
            if keep_pos:
                stack.keep(keep_pos)
            active = [active[j] for j in keep_pos]


def _aux(weights: torch.Tensor, logits: torch.Tensor) -> dict[str, float]:
    """The unweighted balance and z losses on the validation split, as the Trainer records them per epoch."""
    out = RouterOutput(weights, logits, {})
    return {"balance_loss": float(balance_loss(out)), "z_loss": float(z_loss(out))}


def _per_seed_loss(task: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """task_loss of each seed: (S, B, ...) predictions and targets -> (S,)."""
    S = pred.shape[0]
    if task == "classification":
        return (
            F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), reduction="none").view(S, -1).mean(1)
        )
    return (pred - target).square().reshape(S, -1).mean(1)


def _after_epoch(st: _SeedState, val_loss: float) -> bool:
    """Early stopping and plateau LR reduction, as the Trainer's (the same Schedule); True if this epoch's weights
    are the seed's best so far (the caller keeps them)."""
    decision = st.schedule.observe(st.epoch, val_loss, st.lr)
    st.lr = decision.lr
    if decision.stopped_reason is not None:
        st.stopped_reason = decision.stopped_reason
    return decision.improved


def _finish(model: KAMoE, dataset: Dataset, st: _SeedState, device: torch.device) -> TrainResult:
    """The seed's best weights into its own ordinary model, scored as Trainer.finish scores a run."""
    import pandas as pd

    started = time.perf_counter()
    with torch.no_grad():
        named = dict(model.named_parameters())
        for k, v in st.best_state.items():
            named[k].copy_(v.to(named[k].device))
    model.to(device).eval()
    test = evaluate(model, dataset, "test")
    val = evaluate(model, dataset, "val")
    test.pop("loss", None)
    params = int(sum(p.numel() for p in model.parameters() if p.requires_grad))
    metrics = {**test, **{f"val_{k}": v for k, v in val.items()}, "params": params}
    model.cpu().eval()
    st.seconds += time.perf_counter() - started
    return TrainResult(
        history=pd.DataFrame(st.rows, columns=HISTORY_COLUMNS),
        metrics=metrics,
        best_epoch=st.best_epoch,
        epochs_run=st.epoch,
        stopped_reason=st.stopped_reason or "completed",
        message=st.message,
        seconds=st.seconds,
        device=str(device),
        params=params,
    )


__all__ = ["train_batched", "unsupported_reason"]
