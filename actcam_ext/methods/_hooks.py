"""Running the model for one explanation: hooks that live for one call, and the gradients.

How the gradient methods stay at the cost of one inference: the forward runs with autograd
off; a hook on the target layer swaps the layer's output (or input) for a fresh leaf that
requires grad and switches autograd on, so only the part of the network after the target
layer is recorded. ``torch.autograd.grad`` then differentiates the chosen scores with respect
to that leaf alone: no parameter gradient is computed or stored, and the model is touched only
by hooks that are removed in ``finally``.

While autograd records, a torch-function mode of this thread alone (``_Recording``) keeps the
recorded part lean. The parameters reach every torch call detached: autograd saves an operand
of a linear layer only for the gradient of the other, so the layer keeps no copy of its input
for a weight gradient nobody asks for (on ViT-B/16 the MLP's 3072-wide hidden tensor; a
convolution keeps its input either way). And torch's multi-head attention runs under
activation checkpointing: its forward keeps only its input, and the backward runs it again for
the query, key, value and attention output it needs, instead of holding them (four tensors the
size of its input) while the rest of the block runs; that costs one attention layer's forward.
"""

from __future__ import annotations

import threading
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map_only

from ..errors import PREFIX, UserError
from ._layers import LayerRef

__all__ = ["Capture", "run", "gradients", "Persistent"]


def _flatten(value) -> tuple[list, callable]:
    """The tensors of a layer's value (a tensor, or a dict/list/tuple of them) and a function that
    rebuilds the same structure from replacement tensors."""
    if isinstance(value, torch.Tensor):
        return [value], lambda ts: ts[0]
    if isinstance(value, dict) and value and all(isinstance(v, torch.Tensor) for v in value.values()):
        keys = list(value)
        return [value[k] for k in keys], lambda ts: type(value)(zip(keys, ts)) if type(value) is not dict \
            else dict(zip(keys, ts))
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, torch.Tensor) for v in value) \
            and not hasattr(value, "_fields"):
        return list(value), lambda ts: type(value)(ts)
    return [], None


def _detached(p: nn.Parameter):
    # An uninitialised (lazy) parameter is materialised in place by its module's first call.
    return p.detach() if p.requires_grad and not isinstance(p, nn.parameter.UninitializedTensorMixin) else p


def _contiguous_query(args: tuple) -> tuple:
    # torch's attention transposes a batch-first query before its packed projection, and torch
    # multiplies a transposed activation by a weight that needs no gradient batch by batch
    # against an expanded weight (3x slower than one matrix product). A contiguous query takes
    # the one product; the copy is the one torch would make to fold it. Self-attention passes
    # the same tensor as query, key and value, and is recognised by that identity.
    q = args[0]
    if not isinstance(q, torch.Tensor) or q.is_contiguous():
        return args
    c = q.contiguous()
    return tuple(c if a is q else a for a in args[:3]) + tuple(args[3:])


class _Recording(TorchFunctionMode):
    """While grad mode is on, every ``nn.Parameter`` argument of a torch call is passed detached
    (the same storage and values, but no gradient path, so nothing is saved for one), and
    ``F.multi_head_attention_forward`` runs under non-reentrant checkpointing (the module
    docstring says why). Checkpointing recomputes with the same inputs, RNG and autocast state,
    so the gradients are the same bits."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not torch.is_grad_enabled():
            return func(*args, **kwargs)
        attention = func is F.multi_head_attention_forward
        if attention:
            args = _contiguous_query(args)
        args, kwargs = tree_map_only(nn.Parameter, _detached, (args, kwargs))
        # Checkpointing works through saved-tensor hooks; where the caller has disabled them,
        # the attention keeps its tensors as usual.
        if attention and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args[:3]) \
                and torch._C._autograd._saved_tensors_hooks_is_enabled():
            return torch.utils.checkpoint.checkpoint(_attention_again(args), *args, use_reentrant=False, **kwargs)
        return func(*args, **kwargs)


def _attention_again(args: tuple):
    """F.multi_head_attention_forward for checkpointing. It chooses its path (self-attention,
    or a shared key and value) by whether query, key and value are the same object, and the
    recomputation may receive the saved inputs as new objects (under a caller's saved-tensor
    hooks, for one), so the identities of the call are imposed again."""
    first = [next(i for i in range(j + 1) if args[i] is args[j]) for j in range(3)]

    def again(*qkv_rest, **kwargs):
        qkv = qkv_rest[:3]
        return F.multi_head_attention_forward(*(qkv[i] for i in first), *qkv_rest[3:], **kwargs)
    return again


def record(lean: bool) -> None:
    """Turn autograd on for the rest of the forward that ``run`` is running, recorded lean
    (``_Recording``) unless ``lean`` is False; ``run`` undoes both when the forward ends."""
    torch.set_grad_enabled(True)
    if lean:
        _Recording().__enter__()


class Capture:
    """The target layer's value during one call, kept at the layer's last call.

    ``live=True`` (gradient methods): each call of the layer replaces every tensor of its value by
    a fresh leaf that requires grad and turns autograd on for the rest of the forward; the model
    continues with clones of the leaves, so in-place ops after the layer (``out += identity``, an
    in-place ReLU) neither fail on a leaf nor alter the activations kept. ``live=False`` (CAM): a
    copy is kept, for the same reason, and nothing else changes. ``graph=True`` (maps that must
    stay differentiable with respect to the model's parameters): the value stays in the graph, and
    the model continues with clones. ``lean=False`` records the rest of the forward as the model
    runs it, without ``_Recording`` (a compiled model, whose traced graph cannot take the mode).

    ``reshape`` (``reshape.resolve``) maps the value to ``[B, C, h, w]``; ``gradient`` maps the
    gradients of the leaves the same way.
    """

    def __init__(self, layer: LayerRef, live: bool, reshape=None, input_size=None, graph: bool = False,
                 lean: bool = True):
        self.layer, self.live, self.reshape, self.input_size, self.graph = layer, live, reshape, input_size, graph
        self.lean = lean
        self.leaves: list | None = None
        self._rebuild = None

    def hooks(self) -> list:
        if self.layer.use_input:
            return [(self.layer.module, "pre", self._pre)]
        return [(self.layer.module, "forward", self._post)]

    def _take(self, value):
        tensors, rebuild = _flatten(value)
        which = "input" if self.layer.use_input else "output"
        if not tensors:
            raise UserError(f"{PREFIX}the {which} of target layer {self.layer.name!r} is a {type(value).__name__}, "
                            "not a tensor (or a dict/list of tensors); pick another layer")
        self._rebuild = rebuild
        if self.graph or (self.live and any(t.requires_grad for t in tensors)):
            # Recording has begun (create_graph, or an earlier target layer of the same call): the
            # value stays in the graph so the gradient reaches every layer in one backward.
            self.leaves = tensors
            return rebuild([t.clone() for t in tensors])
        if not self.live:
            self.leaves = [t.detach().clone() for t in tensors]
            return None
        record(self.lean)
        self.leaves = [t.detach().requires_grad_(True) for t in tensors]
        return rebuild([t.clone() for t in self.leaves])

    def _pre(self, module, args):
        replacement = self._take(args[0] if args else None)
        return None if replacement is None else (replacement, *args[1:])

    def _post(self, module, args, output):
        return self._take(output)

    def _view(self, tensors, what: str) -> torch.Tensor:
        value = self._rebuild(tensors)
        if self.reshape is not None:
            value = self.reshape(value, self.input_size)
        if not isinstance(value, torch.Tensor) or value.dim() != 4:
            got = list(value.shape) if isinstance(value, torch.Tensor) else \
                f"a {type(value).__name__} of {len(value)} tensors" if isinstance(value, (tuple, list, dict)) else \
                type(value).__name__
            which = "input" if self.layer.use_input else "output"
            hint = ("pass reshape='vit' for tokens [B, N, C], 'swin' for [B, h, w, C], 'fpn' for a dict of feature "
                    "maps, or a callable" if self.reshape is None else "the reshape must return [B, C, h, w]")
            raise UserError(f"{PREFIX}the {which} of target layer {self.layer.name!r} must be a 4-D tensor "
                            f"[B,K,h,w]{' after the reshape' if self.reshape is not None else ''}, got {got}; {hint}")
        return value

    def activation(self) -> torch.Tensor:
        """The layer's activations ``[B, K, h, w]`` (a function of the leaves: differentiable in them)."""
        if self.leaves is None:
            raise UserError(f"{PREFIX}target layer {self.layer.name!r} was not called in the model's forward pass")
        return self._view(self.leaves, "activations")

    def gradient(self, grads: list) -> torch.Tensor:
        """The gradients of the leaves, mapped as the activations: ``[B, K, h, w]``, or
        ``[B, C, K, h, w]`` for gradients with a class dimension after the batch one."""
        first = grads[0]
        if first.dim() == self.leaves[0].dim():
            return self._view(grads, "gradients")
        B, C = first.shape[:2]
        g = self._view([t.flatten(0, 1) for t in grads], "gradients")
        return g.unflatten(0, (B, C))


def run(model: nn.Module, inputs: tuple, hooks: list, grad: bool, lean: bool = False):
    """Run the model with hooks, removing them and restoring grad mode whatever happens.

    hooks: (module, kind, fn) with kind "forward" or "pre". ``grad`` is the grad mode to start
    the forward with (a live Capture may switch it on part-way, through ``record``);
    ``lean`` with ``grad``: record the whole forward lean (``_Recording``).
    """
    handles = []
    prev = torch.is_grad_enabled()
    modes = torch._C._len_torch_function_stack()
    try:
        for module, kind, fn in hooks:
            handles.append(module.register_forward_pre_hook(fn) if kind == "pre"
                           else module.register_forward_hook(fn))
        if grad:
            record(lean)
        else:
            torch.set_grad_enabled(False)
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
        # A mode that ``record`` entered part-way through the forward ends with it. Popping back
        # to the depth at the start also ends one that the model entered and did not leave.
        while torch._C._len_torch_function_stack() > modes:
            torch._C._pop_torch_function_stack()
        torch.set_grad_enabled(prev)
        for h in handles:
            h.remove()


class Persistent:
    """Hooks registered once, before ``torch.compile`` traces the model, for a compiled explain step.

    A compiled module runs the graph it traced, and that graph skips hooks added later; so the
    slots ``(module, kind)`` an explanation needs are hooked once, here, and each hook forwards to
    the function the call in progress installed with ``active`` (none installed: the hook returns
    None and the model runs unchanged). Calls are serialised by a lock, because the installed
    functions are this object's state. ``remove`` takes the hooks off the model.
    """

    def __init__(self, slots: list):
        self.slots = [(module, kind) for module, kind in slots]
        self.fns: list | None = None
        self.lock = threading.Lock()
        self.handles = []
        for i, (module, kind) in enumerate(self.slots):
            if kind == "pre":
                self.handles.append(module.register_forward_pre_hook(self._pre_hook(i)))
            else:
                self.handles.append(module.register_forward_hook(self._post_hook(i)))

    def _pre_hook(self, i: int):
        def hook(module, args):
            return None if self.fns is None else self.fns[i](module, args)
        return hook

    def _post_hook(self, i: int):
        def hook(module, args, output):
            return None if self.fns is None else self.fns[i](module, args, output)
        return hook

    def run(self, compiled, inputs: tuple, hooks: list, grad: bool):
        """``run`` on the compiled module, with ``hooks`` (the same slots, in order) installed."""
        if [(m, k) for m, k, _ in hooks] != [(m, k) for m, k in self.slots]:
            raise RuntimeError("actcam: the hooks of this call differ from those registered for compilation")
        with self.lock:
            self.fns = [fn for _, _, fn in hooks]
            try:
                return run(compiled, inputs, [], grad)
            finally:
                self.fns = None

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


_UNUSED = (f"{PREFIX}the scores do not depend on the target layer's output in this forward pass; pick a layer "
           "on the path to the scored output")


def gradients(scores: torch.Tensor, wrt: Sequence[torch.Tensor], create_graph: bool = False,
              batched: bool = True) -> tuple:
    """d scores / d wrt, one gradient per score column; a tensor the scores do not depend on gets
    zeros (an FPN level the detections do not read), and when none is used, a UserError.

    Images never interact in an eval-mode network, so the gradient of the batch sum gives every
    image the gradient of its own score. C scores per image go through one vectorised backward
    (``is_grads_batched``) with one-hot grad_outputs instead of C passes; the results come back
    as [B,C,...]. ``batched=False`` takes one backward per class instead: a graph recorded by
    torch.compile has a compiled backward, which the vectorised backward cannot map over.
    """
    if scores.grad_fn is None and not scores.requires_grad:
        raise UserError(f"{PREFIX}the scores do not depend on the differentiated tensor (is the target layer's "
                        "output detached, or computed under torch.no_grad inside the model?)")
    wrt = tuple(wrt)
    if scores.dim() == 1:
        grads = torch.autograd.grad(scores.sum(), wrt, create_graph=create_graph, allow_unused=True)
    else:
        B, C = scores.shape
        if create_graph or not batched:  # one pass per class (differentiable with create_graph)
            per_class = [torch.autograd.grad(scores[:, c].sum(), wrt, create_graph=create_graph,
                                             retain_graph=create_graph or c < C - 1, allow_unused=True)
                         for c in range(C)]
            grads = tuple(None if per_class[0][i] is None else torch.stack([g[i] for g in per_class], dim=1)
                          for i in range(len(wrt)))
        else:
            onehot = torch.eye(C, dtype=scores.dtype, device=scores.device)[:, None, :].expand(C, B, C)
            grads = torch.autograd.grad(scores, wrt, grad_outputs=onehot, is_grads_batched=True, allow_unused=True)
            grads = tuple(None if g is None else g.transpose(0, 1) for g in grads)
    if all(g is None for g in grads):
        raise UserError(_UNUSED)
    out = []
    for g, t in zip(grads, wrt):
        if g is None:
            g = t.new_zeros(t.shape) if scores.dim() == 1 else \
                t.new_zeros((t.shape[0], scores.shape[1], *t.shape[1:]))
        out.append(g)
    return tuple(out)
