"""Whether hooks are registered: the fast paths that skip calling modules step aside when they are."""

from __future__ import annotations

from torch import nn


def has_hooks(module: nn.Module) -> bool:
    """Whether a forward (pre-)hook or backward hook is registered on the module, one of its submodules, or
    globally; fused paths that skip the modules must then step aside so the hooks fire."""
    from torch.nn.modules import module as module_state

    if (
        module_state._global_forward_hooks
        or module_state._global_forward_pre_hooks
        or module_state._global_backward_hooks
    ):
        return True
    return any(
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks for m in module.modules()
    )
