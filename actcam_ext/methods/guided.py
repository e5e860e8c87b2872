"""Input-gradient methods: saliency, Deconvnet, guided backprop, and Guided Grad-CAM.

ReLU backward rules (forward unchanged; G = gradient arriving at the ReLU output, x = its input):
plain gradient (saliency) G*[x>0]; Deconvnet G*[G>0]; guided backprop G*[x>0]*[G>0].
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

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
                raise UserError(f"{PREFIX}no floating-point input to differentiate")
            output = run(self.model, leaves, hooks, grad=True)
            with torch.enable_grad():
                scores, idx = _targets.scores(output, targets, top_k, B)
            grads = tuple(g.float() for g in gradients(scores, wrt))
        return Explanation(grads if tuple_in else grads[0], idx, detach_output(output))


class Saliency(_InputGradient):
    """Plain gradient of the score w.r.t. the input (Simonyan et al. 2014): ReLU backward G*[x>0]."""

    _rule = None


class Deconvnet(_InputGradient):
    """Deconvnet (Zeiler & Fergus 2014): every nn.ReLU / nn.ReLU6 backward becomes G*[G>0].

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

    def __init__(self, model: nn.Module, target_layer=None):
        super().__init__(model)
        self.gradcam = GradCAM(model, target_layer)
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
