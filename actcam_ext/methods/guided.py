"""Input-gradient methods: saliency, Deconvnet, guided backprop, and Guided Grad-CAM.

ReLU backward rules (forward unchanged; G = gradient arriving at the ReLU output, x = its input):
plain gradient (saliency) G*[x>0]; Deconvnet G*[G>0]; guided backprop G*[x>0]*[G>0].
"""

from __future__ import annotations

import contextlib
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .. import targets as _targets
from ..errors import PREFIX, UserError
from ._base import Explanation, Method, as_inputs, batch_and_size, detach_output
from ._hooks import gradients, run
from .gradient import GradCAM

__all__ = ["Saliency", "Deconvnet", "GuidedBackprop", "GuidedGradCAM"]


class _ReLURule(torch.autograd.Function):
    """ReLU / ReLU6 forward with a replaced backward (the rules in the module docstring).

    Takes the activation's *input* so the backward goes straight to it, bypassing the native
    ReLU backward (which would multiply by the forward mask again: wrong for Deconvnet).
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


# ReLU and ReLU6, however the model calls them: modules (nn.ReLU calls F.relu, nn.ReLU6 calls
# F.hardtanh(x, 0, 6)), functions (F.relu, torch.relu, F.relu6), in place or not, and methods.
_RELU = {F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}
_RELU6 = {F.relu6, torch._C._nn.relu6, torch._C._nn.relu6_} if hasattr(torch._C._nn, "relu6_") else {F.relu6}
_HARDTANH = {F.hardtanh, torch._C._nn.hardtanh, torch._C._nn.hardtanh_}
# Activations for which no ReLU rule exists: the methods say so once per call.
_OTHER = {F.gelu: "gelu", F.silu: "silu", F.mish: "mish", F.hardswish: "hardswish", F.elu: "elu",
          F.leaky_relu: "leaky_relu", F.selu: "selu", F.softplus: "softplus", torch.sigmoid: "sigmoid",
          torch.tanh: "tanh"}


class _ReLURules(TorchFunctionMode):
    """While active (one call, one thread), every ReLU/ReLU6 call of the model runs ``_ReLURule``:
    its backward is replaced, its forward unchanged. An in-place call returns a new tensor holding
    the result (the models use the return value, as torch's own modules do)."""

    def __init__(self, guided: bool):
        super().__init__()
        self.guided = guided
        self.applied = 0
        self.others: set = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        x = args[0] if args else kwargs.get("input")
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            upper = None
            if func in _RELU:
                upper = 0.0
            elif func in _RELU6:
                upper = 6.0
            elif func in _HARDTANH:
                lo = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
                hi = args[2] if len(args) > 2 else kwargs.get("max_val", 1.0)
                if lo == 0.0:
                    upper = float(hi)
            if upper is not None:
                self.applied += 1
                return _ReLURule.apply(x, self.guided, None if upper == 0.0 else upper)
            if func in _OTHER:
                self.others.add(_OTHER[func])
        return func(*args, **kwargs)


class _InputGradient(Method):
    """Gradient of the score with respect to the input, with a ReLU backward rule."""

    _rule: str | None = None  # None: plain autograd; "deconv"; "guided"

    def explain(self, x, targets=None, *, top_k: int | None = None) -> Explanation:
        """Raw input gradients float32 [B,3,H,W] ([B,C,3,H,W] for C classes) on x's device.

        For a tuple x, ``maps`` is a tuple with one gradient per floating-point input.
        """
        tuple_in = not isinstance(x, torch.Tensor)
        inputs = as_inputs(x)
        B, _ = batch_and_size(inputs, (1, 1))
        _targets.check_top_k(top_k, targets)
        self._check_mode()
        rules = _ReLURules(guided=self._rule == "guided") if self._rule is not None else None
        with torch.inference_mode(False):
            # An inference tensor (made under torch.inference_mode) cannot become a leaf that
            # requires grad; a clone made outside inference mode can.
            leaves = tuple((t.clone() if t.is_inference() else t.detach()).requires_grad_(True)
                           if t.is_floating_point() else t for t in inputs)
            wrt = tuple(t for t in leaves if t.requires_grad)
            if not wrt:
                raise UserError(f"{PREFIX}no floating-point input to differentiate")
            with rules if rules is not None else contextlib.nullcontext():
                output = run(self.model, leaves, [], grad=True, lean=True)
            with torch.enable_grad():
                scores, idx = _targets.scores(output, targets, top_k, B)
            grads = tuple(g.float() for g in gradients(scores, wrt))
        if rules is not None:
            self._warn_rules(rules)
        return Explanation(grads if tuple_in else grads[0], idx, detach_output(output))

    def _warn_rules(self, rules: _ReLURules) -> None:
        name = type(self).__name__
        if not rules.applied:
            warnings.warn(f"actcam: {name}: the model calls no ReLU or ReLU6, so no backward rule applies (the "
                          "result is the plain gradient)", RuntimeWarning, stacklevel=4)
        elif rules.others:
            warnings.warn(f"actcam: {name}: the rule applies to the model's ReLUs only; its other activations "
                          f"({', '.join(sorted(rules.others))}) keep their plain backward", RuntimeWarning,
                          stacklevel=4)


class Saliency(_InputGradient):
    """Plain gradient of the score w.r.t. the input (Simonyan et al. 2014): ReLU backward G*[x>0]."""

    _rule = None


class Deconvnet(_InputGradient):
    """Deconvnet (Zeiler & Fergus 2014): every ReLU / ReLU6 backward becomes G*[G>0] (modules and
    functional calls alike).

    The forward sign is ignored, also for ReLU6's upper bound: the rule acts on the gradient only.
    """

    _rule = "deconv"


class GuidedBackprop(_InputGradient):
    """Guided backpropagation (Springenberg et al. 2015): ReLU backward G*[x>0]*[G>0].

    For nn.ReLU6 the forward mask is the one of its own gradient, [0 < x < 6].
    """

    _rule = "guided"


class GuidedGradCAM(Method):
    """Guided Grad-CAM: guided backprop times the bilinearly resized, normalised Grad-CAM.

    Two passes: Grad-CAM with plain gradients (the guided ReLU rule must not change the
    gradient at the target layer), then guided backprop for the same classes. ``maps`` are
    float32 [B,3,H,W] ([B,C,3,H,W]) for the first input; with ``size`` (one (H, W) or one per
    image) the guided gradients are resized bilinearly to it before the product, and
    ``heatmaps`` holds the Grad-CAM maps at the same sizes.
    """

    def __init__(self, model: nn.Module, target_layer=None, *, reshape=None, fuse: str = "mean"):
        super().__init__(model)
        self.gradcam = GradCAM(model, target_layer, reshape=reshape, fuse=fuse)
        self.guided = GuidedBackprop(model)
        # One warning for this object, not one per pass.
        self.gradcam._warned_training = self.guided._warned_training = True

    @property
    def layer(self):
        return self.gradcam.layer

    @property
    def target_layer_name(self) -> str:
        return self.gradcam.target_layer_name

    def explain(self, x, targets=None, *, top_k: int | None = None, size=None) -> Explanation:
        inputs = as_inputs(x)
        first = inputs[0]
        if first.dim() != 4:
            raise UserError(f"{PREFIX}GuidedGradCAM needs a first input [B,C,H,W], got {list(first.shape)}")
        self._check_mode()
        cam = self.gradcam.explain(x, targets, top_k=top_k, size=size)
        gb = self.guided.explain(x, cam.class_ids if cam.class_ids is not None else targets).maps
        if isinstance(gb, tuple):
            gb = gb[0]
        if isinstance(cam.maps, list):
            maps = [_resize(g, m.shape[-2:]) * m.unsqueeze(-3) for g, m in zip(gb.unbind(0), cam.maps)]
        else:
            maps = _resize(gb, cam.maps.shape[-2:]) * cam.maps.unsqueeze(-3)
        return Explanation(maps, cam.class_ids, cam.logits, heatmaps=cam.maps)


def _resize(g: torch.Tensor, size) -> torch.Tensor:
    """Gradients [..., 3, H, W] resized bilinearly to ``size`` (a no-op at their own size)."""
    if tuple(g.shape[-2:]) == tuple(size):
        return g
    lead = g.shape[:-3]
    flat = g.reshape(-1, *g.shape[-3:])
    out = F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False)
    return out.reshape(*lead, *out.shape[-3:])
