"""Explanation methods: CAM, Grad-CAM, Grad-CAM++ and the guided-gradient family.

Every method is a reusable callable bound to a model::

    maps = GradCAM(model, target_layer="layer4")(x, targets=None)

The activation methods (CAM, Grad-CAM, Grad-CAM++) return float32 ``[B,H,W]`` maps in [0, 1]
(``[B,C,H,W]`` for C classes per image); the guided family returns raw input gradients
``[B,3,H,W]`` (``[B,C,3,H,W]``). Formulas and the rules for ``target_layer`` and ``targets``
are in docs/methods.md.

How the gradient methods stay at the cost of one inference: the forward runs with autograd
off; a forward hook on the target layer swaps the layer's output for a fresh leaf that
requires grad and switches autograd on, so only the head after the target layer is recorded.
``torch.autograd.grad`` then differentiates the chosen scores with respect to that leaf
alone: no parameter gradient is computed or stored, and the model is never touched beyond
hooks that are removed in ``finally``.
"""

from __future__ import annotations

import difflib
import warnings
from typing import Sequence

import torch
import torch.nn as nn

from . import ops

__all__ = ["CAM", "GradCAM", "GradCAMPlusPlus", "Saliency", "Deconvnet", "GuidedBackprop",
           "GuidedGradCAM"]


# --------------------------------------------------------------------------------------------
# Argument handling shared by all methods
# --------------------------------------------------------------------------------------------

def _as_inputs(x) -> tuple:
    if isinstance(x, torch.Tensor):
        return (x,)
    if isinstance(x, (tuple, list)) and x and all(isinstance(t, torch.Tensor) for t in x):
        return tuple(x)
    raise ValueError("actcam: x must be a tensor [B,3,H,W] or a non-empty tuple of tensors "
                     f"(one per model input), got {type(x).__name__}")


def _one_size(size) -> tuple[int, int]:
    try:
        if len(size) != 2:
            raise TypeError
        out = (int(size[0]), int(size[1]))
    except (TypeError, IndexError, ValueError):
        raise ValueError(f"actcam: size must be two positive integers (H, W), got {size!r}") from None
    if out[0] <= 0 or out[1] <= 0:
        raise ValueError(f"actcam: size must be two positive integers (H, W), got {size!r}")
    return out


def _batch_and_size(inputs: tuple, size) -> tuple[int, tuple[int, int] | list]:
    """(B, size): size is one (H, W) for every map, or a list of B (H, W), one per image."""
    first = inputs[0]
    if first.dim() == 0:
        raise ValueError(f"actcam: the first input must have a batch dimension, got shape {list(first.shape)}")
    B = first.shape[0]
    if size is None:
        if first.dim() < 3:
            raise ValueError("actcam: cannot infer the map size from the first input of shape "
                             f"{list(first.shape)}; pass size=(H, W)")
        return B, tuple(first.shape[-2:])
    if isinstance(size, list) and size and not isinstance(size[0], (int, float)):
        if len(size) != B:
            raise ValueError(f"actcam: size has {len(size)} (H, W) entries for a batch of {B} images")
        return B, [_one_size(s) for s in size]
    return B, _one_size(size)


def _cam(A: torch.Tensor, weights: torch.Tensor, size):
    """ops.cam at one size for the batch, or a list of per-image maps for a list of sizes.

    Images that share a size share one op call (a folder of camera photos: usually one call).
    """
    if not isinstance(size, list):
        return ops.cam(A, weights, size)
    maps = [None] * len(size)
    for s in dict.fromkeys(size):
        rows = [i for i, si in enumerate(size) if si == s]
        if len(rows) == len(size):
            return list(ops.cam(A, weights, s).unbind(0))
        idx = torch.tensor(rows, device=A.device)
        for i, m in zip(rows, ops.cam(A.index_select(0, idx), weights.index_select(0, idx), s).unbind(0)):
            maps[i] = m
    return maps


def _check_top_k(top_k, targets) -> None:
    if top_k is None:
        return
    if targets is not None:
        raise ValueError("actcam: pass either targets or top_k, not both (top_k picks the top classes itself)")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"actcam: top_k must be a positive int, got {top_k!r}")


def _logits(output, what: str) -> torch.Tensor:
    if isinstance(output, torch.Tensor) and output.dim() == 2:
        return output
    shape = list(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
    raise ValueError(f"actcam: class-index targets need the model to return logits [B, num_classes], "
                     f"got {shape}; {what}")


def _class_indices(targets, top_k, logits: torch.Tensor) -> torch.Tensor:
    """Resolve targets to int64 class indices [B] (one map per image) or [B,C] (C maps)."""
    B, N = logits.shape
    if targets is None:
        if top_k is None:
            return logits.detach().argmax(dim=1)
        if top_k > N:
            raise ValueError(f"actcam: top_k={top_k} exceeds the number of classes ({N})")
        return logits.detach().topk(top_k, dim=1).indices
    if isinstance(targets, bool):
        raise ValueError(f"actcam: targets must be class indices, got {targets!r}")
    if isinstance(targets, int) or (isinstance(targets, torch.Tensor) and targets.dim() == 0):
        idx = torch.full((B,), int(targets), dtype=torch.long, device=logits.device)
    else:
        try:
            idx = torch.as_tensor(targets, device=logits.device)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError("actcam: targets must be None, an int, B ints, a [B,C] array of ints "
                             f"or a callable, got {type(targets).__name__} ({exc})") from None
        if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
            raise ValueError(f"actcam: targets must be integer class indices, got dtype {idx.dtype}")
        idx = idx.long()
        if idx.dim() not in (1, 2) or idx.shape[0] != B:
            raise ValueError(f"actcam: targets must have shape [B] or [B,C] with B={B} (the batch size), "
                             f"got {list(idx.shape)}")
        if idx.dim() == 2 and idx.shape[1] == 0:
            raise ValueError("actcam: targets of shape [B,C] need C >= 1")
    if idx.numel() and (idx.min() < 0 or idx.max() >= N):
        bad = int(idx.flatten()[((idx < 0) | (idx >= N)).flatten()][0])
        raise ValueError(f"actcam: target classes must lie in [0, {N - 1}]: class id {bad} is out of range "
                         f"(the model has {N} outputs)")
    return idx


def _scores(output, targets, top_k, B: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The differentiable scores [B] or [B,C], and the class indices when targets were classes."""
    if callable(targets) and not isinstance(targets, torch.Tensor):
        if top_k is not None:
            raise ValueError("actcam: top_k cannot be combined with a callable target")
        scores = targets(output)
        if not isinstance(scores, torch.Tensor) or scores.dim() not in (1, 2) or scores.shape[0] != B \
                or not scores.is_floating_point():
            got = list(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            raise ValueError("actcam: a callable target must map the model output to a float tensor of "
                             f"one score per image [B] (or [B,C] for C maps) with B={B}, got {got}")
        return scores, None
    logits = _logits(output, "pass targets as a callable that maps the output to one score per image")
    if logits.shape[0] != B:
        raise ValueError(f"actcam: the model returned {logits.shape[0]} rows of logits for a batch of {B}")
    idx = _class_indices(targets, top_k, logits)
    if idx.dim() == 1:
        return logits.gather(1, idx[:, None])[:, 0], idx
    return logits.gather(1, idx), idx


def _grad(scores: torch.Tensor, wrt: Sequence[torch.Tensor]) -> tuple:
    """d scores / d wrt, one gradient per score column.

    Images never interact in an eval-mode CNN, so the gradient of the batch sum gives every
    image the gradient of its own score. C scores per image go through one vectorised
    backward (``is_grads_batched``) with one-hot grad_outputs instead of C passes; the
    results come back as [B,C,...].
    """
    if scores.grad_fn is None and not scores.requires_grad:
        raise ValueError("actcam: the scores do not depend on the differentiated tensor (is the target "
                         "layer's output detached, or computed under torch.no_grad inside the model?)")
    try:
        if scores.dim() == 1:
            return torch.autograd.grad(scores.sum(), wrt)
        B, C = scores.shape
        onehot = torch.eye(C, dtype=scores.dtype, device=scores.device)[:, None, :].expand(C, B, C)
        grads = torch.autograd.grad(scores, wrt, grad_outputs=onehot, is_grads_batched=True)
        return tuple(g.transpose(0, 1) for g in grads)
    except RuntimeError as exc:
        if "not have been used in the graph" in str(exc):
            raise ValueError("actcam: the scores do not depend on the target layer's output in this "
                             "forward pass; pick a layer on the path to the scored output") from None
        raise


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------

def _find_module(model: nn.Module, layer, what: str) -> tuple[nn.Module, str]:
    named = dict(model.named_modules())
    if isinstance(layer, str):
        if layer in named:
            return named[layer], layer
        close = difflib.get_close_matches(layer, [n for n in named if n], n=5, cutoff=0.5)
        hint = f"; close matches: {', '.join(repr(c) for c in close)}" if close else ""
        raise ValueError(f"actcam: the model has no {what} named {layer!r}{hint}")
    if isinstance(layer, nn.Module):
        for name, module in named.items():
            if module is layer:
                return module, name or "<model>"
        raise ValueError(f"actcam: the {what} {type(layer).__name__} is not a submodule of the model")
    raise ValueError(f"actcam: {what} must be an nn.Module, a dotted module name or None, "
                     f"got {type(layer).__name__}")


def _last_of(model: nn.Module, kinds) -> tuple[nn.Module, str] | None:
    found = None
    for name, module in model.named_modules():
        if isinstance(module, kinds):
            found = (module, name)
    return found


def _resolve_target_layer(model: nn.Module, target_layer) -> tuple[nn.Module, str]:
    if target_layer is None:
        found = _last_of(model, nn.Conv2d)
        if found is None:
            raise ValueError("actcam: the model has no nn.Conv2d to default to; pass target_layer "
                             "(a module or its dotted name)")
        return found
    return _find_module(model, target_layer, "target_layer")


class _Capture:
    """Forward hook state for one call of a method: the target layer's last output as a leaf.

    ``live=True`` is the cheap path: each call of the layer replaces its output by a fresh
    leaf that requires grad and turns autograd on for the rest of the forward. The model
    gets a clone of the leaf, so in-place ops after the layer (``out += identity``, an
    in-place ReLU) neither fail on a leaf nor alter the activations we keep. A layer called
    several times is captured at its last call: each call overwrites the previous one.
    """

    def __init__(self, name: str, live: bool, use_input: bool = False):
        self.name, self.live, self.use_input = name, live, use_input
        self.A: torch.Tensor | None = None

    def __call__(self, module, args, output):
        t = args[0] if self.use_input and args else output
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            which = "input" if self.use_input else "output"
            raise ValueError(f"actcam: the {which} of target layer {self.name!r} must be a 4-D tensor "
                             f"[B,K,h,w], got {got}; pick a layer whose {which} is one feature map")
        if not self.live:
            self.A = t.detach()
            return None
        torch.set_grad_enabled(True)
        self.A = t.detach().requires_grad_(True)
        return self.A.clone()


def _run(model: nn.Module, inputs: tuple, hooks: list, grad: bool):
    """Run the model with hooks, removing them and restoring grad mode whatever happens.

    hooks: (module, kind, fn) with kind "forward" or "pre". ``grad`` is the grad mode to
    start the forward with (a _Capture hook may switch it on part-way).
    """
    handles = []
    prev = torch.is_grad_enabled()
    try:
        for module, kind, fn in hooks:
            handles.append(module.register_forward_pre_hook(fn) if kind == "pre"
                           else module.register_forward_hook(fn))
        torch.set_grad_enabled(grad)
        return model(*inputs)
    finally:
        torch.set_grad_enabled(prev)
        for h in handles:
            h.remove()


# --------------------------------------------------------------------------------------------
# Public classes
# --------------------------------------------------------------------------------------------

class _Method:
    def __init__(self, model: nn.Module):
        if not isinstance(model, nn.Module):
            raise ValueError(f"actcam: model must be an nn.Module, got {type(model).__name__}")
        self.model = model

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.model).__name__})"


class _LayerMethod(_Method):
    """Grad-CAM-style methods: channel weights from the target layer's gradients."""

    def __init__(self, model: nn.Module, target_layer=None):
        super().__init__(model)
        self.target_layer, self.target_layer_name = _resolve_target_layer(model, target_layer)

    def __call__(self, x, targets=None, *, top_k: int | None = None, size=None) -> torch.Tensor:
        """Maps float32 [B,H,W] in [0,1] ([B,C,H,W] for top_k / [B,C] targets) on x's device.

        targets: None (top-1 class per image), an int for all images, B ints, a [B,C] array of
        class indices, or a callable mapping the model output to scores [B] (or [B,C]).
        size: output (H, W); default the spatial size of the first input. A list of B
        (H, W) gives each image its own size and returns a list of B maps [H_i,W_i] ([C,H_i,W_i]).
        """
        return self._explain(x, targets, top_k, size)[0]

    def _explain(self, x, targets, top_k, size):
        """(maps, the class indices or the targets as given, the model's output): the output
        lets callers that also report scores (ac.explain) skip a second forward pass."""
        inputs = _as_inputs(x)
        B, size = _batch_and_size(inputs, size)
        _check_top_k(top_k, targets)
        capture = _Capture(self.target_layer_name, live=True)
        with torch.inference_mode(False):
            output = _run(self.model, inputs, [(self.target_layer, "forward", capture)], grad=False)
            if capture.A is None:
                raise ValueError(f"actcam: target layer {self.target_layer_name!r} was not called "
                                 "in the model's forward pass")
            with torch.enable_grad():
                scores, idx = _scores(output, targets, top_k, B)
            A = capture.A
            (grads,) = _grad(scores, (A,))
            A = A.detach()
            weights = self._weights(A, grads)
            maps = _cam(A, weights, size)
        return maps, (idx if idx is not None else targets), output

    def _weights(self, A: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class GradCAM(_LayerMethod):
    """Grad-CAM (Selvaraju et al. 2017): weights = spatial mean of d score / d A.

    target_layer: a module or its dotted name; None picks the last nn.Conv2d of the model.
    """

    def _weights(self, A, grads):
        return grads.float().mean(dim=(-2, -1))


class GradCAMPlusPlus(_LayerMethod):
    """Grad-CAM++ (Chattopadhyay et al. 2018), Eq. 19 exactly (no epsilon, see docs/methods.md)."""

    def _weights(self, A, grads):
        if grads.dim() == 4:
            return ops.gradcampp_weights(A, grads)
        B, C, K, h, w = grads.shape
        # The op takes one map per row: repeat each image's activations for its C classes.
        A_rep = A.unsqueeze(1).expand(B, C, K, h, w).reshape(B * C, K, h, w)
        return ops.gradcampp_weights(A_rep, grads.reshape(B * C, K, h, w)).view(B, C, K)


def _global_pool(model: nn.Module):
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.AdaptiveAvgPool2d) and module.output_size in (1, (1, 1)):
            found = (module, name)
    return found


class CAM(_Method):
    """Class activation maps (Zhou et al. 2016): weights = the final linear layer's row per class.

    One forward with autograd off, no backward. target_layer None: the input of the model's
    last global average pooling module (nn.AdaptiveAvgPool2d(1)), i.e. exactly the features
    CAM weights, else the last nn.Conv2d. fc_layer None: the model's last nn.Linear. Each call
    checks that the linear layer reads the spatial mean of the target activations (the CAM
    structure) and raises a ValueError suggesting GradCAM otherwise.
    """

    def __init__(self, model: nn.Module, target_layer=None, fc_layer=None):
        super().__init__(model)
        pool = _global_pool(model) if target_layer is None else None
        if pool is not None:
            (self.target_layer, self.target_layer_name), self._use_input = pool, True
        else:
            self.target_layer, self.target_layer_name = _resolve_target_layer(model, target_layer)
            self._use_input = False
        if fc_layer is None:
            found = _last_of(model, nn.Linear)
            if found is None:
                raise ValueError("actcam: CAM needs a final nn.Linear after global average pooling and "
                                 "the model has none; use GradCAM, which works on any architecture")
            self.fc_layer, self.fc_layer_name = found
        else:
            self.fc_layer, self.fc_layer_name = _find_module(model, fc_layer, "fc_layer")
            if not isinstance(self.fc_layer, nn.Linear):
                raise ValueError(f"actcam: fc_layer {self.fc_layer_name!r} must be an nn.Linear, "
                                 f"got {type(self.fc_layer).__name__}")

    def __call__(self, x, targets=None, *, top_k: int | None = None, size=None) -> torch.Tensor:
        """Maps float32 [B,H,W] in [0,1] ([B,C,H,W] for top_k / [B,C] targets) on x's device.

        targets: None (top-1 class), an int, B ints or a [B,C] array of class indices.
        size: as for GradCAM (a list of B (H, W) gives a list of per-image maps).
        """
        return self._explain(x, targets, top_k, size)[0]

    def _explain(self, x, targets, top_k, size):
        """(maps, class indices, logits), as _LayerMethod._explain."""
        if callable(targets) and not isinstance(targets, torch.Tensor):
            raise ValueError("actcam: CAM weights come from the final linear layer's class rows, so it "
                             "cannot explain a callable target; use GradCAM (or GradCAMPlusPlus) instead")
        inputs = _as_inputs(x)
        B, size = _batch_and_size(inputs, size)
        _check_top_k(top_k, targets)
        capture = _Capture(self.target_layer_name, live=False, use_input=self._use_input)
        fc_in = {}

        def fc_hook(module, args, output):
            fc_in["x"], fc_in["y"] = args[0].detach(), output.detach()

        with torch.inference_mode(False):
            output = _run(self.model, inputs,
                          [(self.target_layer, "forward", capture), (self.fc_layer, "forward", fc_hook)],
                          grad=False)
        A = capture.A
        if A is None:
            raise ValueError(f"actcam: target layer {self.target_layer_name!r} was not called in the forward pass")
        self._check_structure(A, fc_in.get("x"))
        logits = output if isinstance(output, torch.Tensor) and output.dim() == 2 else fc_in["y"]
        logits = _logits(logits, "CAM explains the classes of the final linear layer")
        idx = _class_indices(targets, top_k, logits)
        W = self.fc_layer.weight.detach()
        weights = W[idx]  # [B,K] or [B,C,K]
        return _cam(A, weights, size), idx, logits

    def _check_structure(self, A: torch.Tensor, fc_x: torch.Tensor | None) -> None:
        where = (f"target layer {self.target_layer_name!r} ({'input' if self._use_input else 'output'}) "
                 f"and fc_layer {self.fc_layer_name!r}")
        advice = "; use GradCAM, which needs no such structure (on a GAP+FC network it equals CAM)"
        if fc_x is None:
            raise ValueError(f"actcam: CAM: fc_layer {self.fc_layer_name!r} was not called in the forward pass{advice}")
        B, K = A.shape[:2]
        fc_x = fc_x.reshape(fc_x.shape[0], -1)
        if tuple(fc_x.shape) != (B, K):
            raise ValueError(f"actcam: CAM needs the final linear layer to read the global average of the "
                             f"target activations: {where} see {list(A.shape)} and {list(fc_x.shape)}{advice}")
        gap = A.float().mean(dim=(2, 3))
        fc_x = fc_x.float()
        # Low precision (autocast) pools in bf16/fp16: allow their rounding, nothing more.
        rtol = 1e-3 if A.dtype == torch.float32 and fc_x.dtype == torch.float32 else 3e-2
        scale = float(fc_x.abs().max()) + 1e-12
        if float((fc_x - gap).abs().max()) > rtol * scale:
            raise ValueError(f"actcam: CAM needs the final linear layer to read the global average of the "
                             f"target activations (GAP -> FC), and the input of {self.fc_layer_name!r} is "
                             f"not the spatial mean of {where.split(' and ')[0]}{advice}")


# --------------------------------------------------------------------------------------------
# Guided family
# --------------------------------------------------------------------------------------------

class _ReLURule(torch.autograd.Function):
    """ReLU / ReLU6 forward with a replaced backward (papers.md, "ReLU backward rules").

    Takes the activation's *input* so the backward goes straight to it, bypassing the native
    ReLU backward (which would multiply by the forward mask again: wrong for deconvnet).
    """

    @staticmethod
    def forward(ctx, x, guided: bool, upper):
        y = x.clamp(0, upper) if upper is not None else x.clamp_min(0)
        ctx.guided = guided
        if guided:
            # The forward mask [0 < x < upper] is 1 byte a pixel; keep it rather than x.
            mask = (x > 0) & (x < upper) if upper is not None else x > 0
            ctx.save_for_backward(mask)
        return y

    @staticmethod
    def backward(ctx, g):
        g = g.clamp_min(0)
        if ctx.guided:
            (mask,) = ctx.saved_tensors
            g = g * mask
        return g, None, None


class _GuidedHooks:
    """Pre/forward hook pair per nn.ReLU / nn.ReLU6 that routes the call through _ReLURule.

    The pre-hook keeps the real input (with its autograd history) and hands the module a
    detached copy, a clone for in-place modules so the original values survive; the forward
    hook then discards the module's output and returns _ReLURule on the kept input. A stack
    per module handles modules called several times (torchvision's shared ``relu``).
    """

    def __init__(self, model: nn.Module, guided: bool):
        self.guided = guided
        self.modules = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
        self.stack: dict[int, list] = {}

    def hooks(self) -> list:
        out = []
        for m in self.modules:
            out.append((m, "pre", self._pre))
            out.append((m, "forward", self._post))
        return out

    def _pre(self, module, args):
        x = args[0]
        self.stack.setdefault(id(module), []).append(x)
        x_free = x.detach()
        if getattr(module, "inplace", False):
            x_free = x_free.clone()
        return (x_free, *args[1:])

    def _post(self, module, args, output):
        x = self.stack[id(module)].pop()
        upper = float(module.max_val) if isinstance(module, nn.ReLU6) else None
        return _ReLURule.apply(x, self.guided, upper)


class _InputGradient(_Method):
    """Gradient of the score with respect to the input, with a ReLU backward rule."""

    _rule: str | None = None  # None: plain autograd; "deconv"; "guided"

    def __call__(self, x, targets=None, *, top_k: int | None = None):
        """Raw input gradients float32 [B,3,H,W] ([B,C,3,H,W] for C classes) on x's device.

        For a tuple x, returns a tuple with one gradient per floating-point input.
        """
        return self._explain(x, targets, top_k)

    def _explain(self, x, targets, top_k):
        tuple_in = not isinstance(x, torch.Tensor)
        inputs = _as_inputs(x)
        B, _ = _batch_and_size(inputs, (1, 1))
        _check_top_k(top_k, targets)
        hooks = []
        if self._rule is not None:
            rules = _GuidedHooks(self.model, guided=self._rule == "guided")
            if not rules.modules:
                warnings.warn(f"actcam: {type(self).__name__}: the model has no nn.ReLU / nn.ReLU6 modules, "
                              "so no backward rule applies (functional relu calls are not modified)",
                              RuntimeWarning, stacklevel=3)
            hooks = rules.hooks()
        with torch.inference_mode(False):
            # An inference tensor (made under torch.inference_mode) cannot become a leaf that
            # requires grad; a clone made outside inference mode can.
            leaves = tuple((t.clone() if t.is_inference() else t.detach()).requires_grad_(True)
                           if t.is_floating_point() else t for t in inputs)
            wrt = tuple(t for t in leaves if t.requires_grad)
            if not wrt:
                raise ValueError("actcam: no floating-point input to differentiate")
            output = _run(self.model, leaves, hooks, grad=True)
            with torch.enable_grad():
                scores, _ = _scores(output, targets, top_k, B)
            grads = tuple(g.float() for g in _grad(scores, wrt))
        return grads if tuple_in else grads[0]


class Saliency(_InputGradient):
    """Plain gradient of the score w.r.t. the input (Simonyan et al.): ReLU backward G*[x>0]."""

    _rule = None


class Deconvnet(_InputGradient):
    """Deconvnet (Zeiler & Fergus): every nn.ReLU / nn.ReLU6 backward becomes G*[G>0].

    The forward sign is ignored, also for ReLU6's upper bound: the rule acts on the gradient only.
    """

    _rule = "deconv"


class GuidedBackprop(_InputGradient):
    """Guided backpropagation (Springenberg et al.): ReLU backward G*[x>0]*[G>0].

    For nn.ReLU6 the forward mask is the one of its own gradient, [0 < x < 6].
    """

    _rule = "guided"


class GuidedGradCAM(_Method):
    """Guided Grad-CAM: guided backprop times the bilinearly upsampled, normalised Grad-CAM.

    Two passes: Grad-CAM with plain gradients (the guided ReLU rule must not change the
    gradient at the target layer), then guided backprop for the same classes. Returns float32
    [B,3,H,W] ([B,C,3,H,W]) for the first input.
    """

    def __init__(self, model: nn.Module, target_layer=None):
        super().__init__(model)
        self.gradcam = GradCAM(model, target_layer)
        self.guided = GuidedBackprop(model)

    def __call__(self, x, targets=None, *, top_k: int | None = None) -> torch.Tensor:
        inputs = _as_inputs(x)
        first = inputs[0]
        if first.dim() != 4:
            raise ValueError(f"actcam: GuidedGradCAM needs a first input [B,C,H,W], got {list(first.shape)}")
        cam, resolved, _ = self.gradcam._explain(x, targets, top_k, tuple(first.shape[-2:]))
        gb = self.guided._explain(x, resolved, None)
        if isinstance(gb, tuple):
            gb = gb[0]
        return gb * (cam.unsqueeze(-3))
