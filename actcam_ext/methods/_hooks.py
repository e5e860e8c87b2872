"""Running the model for one explanation: hooks that live for one call, and the gradients.

How the gradient methods stay at the cost of one inference: the forward runs with autograd
off; a hook on the target layer swaps the layer's output (or input) for a fresh leaf that
requires grad and switches autograd on, so only the part of the network after the target
layer is recorded. ``torch.autograd.grad`` then differentiates the chosen scores with respect
to that leaf alone: no parameter gradient is computed or stored, and the model is touched only
by hooks that are removed in ``finally``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ..errors import PREFIX, UserError
from ._layers import LayerRef

__all__ = ["Capture", "run", "gradients"]


class Capture:
    """The target layer's tensor during one call, kept at the layer's last call.

    ``live=True`` (gradient methods): each call of the layer replaces the tensor by a fresh leaf
    that requires grad and turns autograd on for the rest of the forward; the model continues
    with a clone of the leaf, so in-place ops after the layer (``out += identity``, an in-place
    ReLU) neither fail on a leaf nor alter the activations kept. ``live=False`` (CAM): a copy
    is kept, for the same reason, and nothing else changes.
    """

    def __init__(self, layer: LayerRef, live: bool):
        self.layer, self.live = layer, live
        self.A: torch.Tensor | None = None

    def hooks(self) -> list:
        if self.layer.use_input:
            return [(self.layer.module, "pre", self._pre)]
        return [(self.layer.module, "forward", self._post)]

    def _take(self, t):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            which = "input" if self.layer.use_input else "output"
            raise UserError(f"{PREFIX}the {which} of target layer {self.layer.name!r} must be a 4-D tensor "
                            f"[B,K,h,w], got {got}; pick a layer whose {which} is one feature map")
        if not self.live:
            self.A = t.detach().clone()
            return None
        torch.set_grad_enabled(True)
        self.A = t.detach().requires_grad_(True)
        return self.A.clone()

    def _pre(self, module, args):
        replacement = self._take(args[0] if args else None)
        return None if replacement is None else (replacement, *args[1:])

    def _post(self, module, args, output):
        return self._take(output)

    def activation(self) -> torch.Tensor:
        if self.A is None:
            raise UserError(f"{PREFIX}target layer {self.layer.name!r} was not called in the model's forward pass")
        return self.A


def run(model: nn.Module, inputs: tuple, hooks: list, grad: bool):
    """Run the model with hooks, removing them and restoring grad mode whatever happens.

    hooks: (module, kind, fn) with kind "forward" or "pre". ``grad`` is the grad mode to start
    the forward with (a live Capture may switch it on part-way).
    """
    handles = []
    prev = torch.is_grad_enabled()
    try:
        for module, kind, fn in hooks:
            handles.append(module.register_forward_pre_hook(fn) if kind == "pre"
                           else module.register_forward_hook(fn))
        torch.set_grad_enabled(grad)
        try:
            return model(*inputs)
        except UserError:
            raise
        except (RuntimeError, ValueError) as exc:
            first = inputs[0] if inputs else None
            if isinstance(first, torch.Tensor) and first.dim() != 4:
                # Most models are image models: a batch of the wrong rank fails deep inside
                # torch; say what was given and what is expected.
                raise UserError(f"{PREFIX}x has shape {list(first.shape)} and the model failed on it "
                                f"({str(exc).strip().splitlines()[0]}); image models take x as [B,C,H,W]") from None
            raise
    finally:
        torch.set_grad_enabled(prev)
        for h in handles:
            h.remove()


def gradients(scores: torch.Tensor, wrt: Sequence[torch.Tensor]) -> tuple:
    """d scores / d wrt, one gradient per score column.

    Images never interact in an eval-mode network, so the gradient of the batch sum gives every
    image the gradient of its own score. C scores per image go through one vectorised backward
    (``is_grads_batched``) with one-hot grad_outputs instead of C passes; the results come back
    as [B,C,...].
    """
    if scores.grad_fn is None and not scores.requires_grad:
        raise UserError(f"{PREFIX}the scores do not depend on the differentiated tensor (is the target layer's "
                        "output detached, or computed under torch.no_grad inside the model?)")
    try:
        if scores.dim() == 1:
            return torch.autograd.grad(scores.sum(), wrt)
        B, C = scores.shape
        onehot = torch.eye(C, dtype=scores.dtype, device=scores.device)[:, None, :].expand(C, B, C)
        grads = torch.autograd.grad(scores, wrt, grad_outputs=onehot, is_grads_batched=True)
        return tuple(g.transpose(0, 1) for g in grads)
    except RuntimeError as exc:
        if "not have been used in the graph" in str(exc):
            raise UserError(f"{PREFIX}the scores do not depend on the target layer's output in this forward "
                            "pass; pick a layer on the path to the scored output") from None
        raise
