"""Methods without a gradient: CAM (the classifier's weights) and Eigen-CAM (principal components)."""

from __future__ import annotations

import torch
import torch.nn as nn

from .. import targets as _targets
from ..errors import PREFIX, UserError
from ._base import LayerMethod, maps_of_stack, principal_projection
from ._layers import find_module, last_of

__all__ = ["CAM", "EigenCAM"]

_ADVICE = "; use GradCAM, which needs no such structure (on a GAP+FC network it equals CAM)"


class CAM(LayerMethod):
    """Class activation maps: channel weights = the final linear layer's row per class.

    One forward with autograd off, no backward. ``target_layer``: as for every layer method
    (default: the input of the model's last global average pooling, i.e. exactly the features
    CAM weights). ``fc_layer`` None: the model's last ``nn.Linear``. Each call checks that the
    linear layer reads the spatial mean of the target activations (the CAM structure) and
    raises a UserError suggesting GradCAM otherwise; callable targets are refused the same way.
    """

    needs_gradients = False
    multi_layer = False
    class_targets_only = True  # a classifier's class rows: no callable target

    def __init__(self, model: nn.Module, target_layer=None, fc_layer=None, *, reshape=None, compile: bool = False):
        super().__init__(model, target_layer, reshape=reshape, compile=compile)
        if fc_layer is None:
            found = last_of(self.model, nn.Linear)
            if found is None:
                raise UserError(f"{PREFIX}CAM needs a final nn.Linear after global average pooling and the model "
                                "has none; use GradCAM, which works on any architecture")
            self.fc_layer, self.fc_layer_name = found
        else:
            self.fc_layer, self.fc_layer_name = find_module(self.model, fc_layer, "fc_layer")
            if not isinstance(self.fc_layer, nn.Linear):
                raise UserError(f"{PREFIX}fc_layer {self.fc_layer_name!r} must be an nn.Linear, "
                                f"got {type(self.fc_layer).__name__}")

    def _check_targets(self, targets) -> None:
        if callable(targets) and not isinstance(targets, torch.Tensor):
            raise UserError(f"{PREFIX}CAM weights come from the final linear layer's class rows, so it cannot "
                            "explain a callable target; use GradCAM (or GradCAMPlusPlus) instead")

    def _extra_hooks(self, ctx):
        def hook(module, args, output):
            ctx["fc_x"], ctx["fc_y"] = args[0].detach(), output.detach()

        return [(self.fc_layer, "forward", hook)]

    def _class_scores(self, output, targets, top_k, B, A, ctx):
        self._check_structure(A, ctx.get("fc_x"))
        logits = output if isinstance(output, torch.Tensor) and output.dim() == 2 else ctx["fc_y"]
        logits = _targets.logits_of(logits, "CAM explains the classes of the final linear layer")
        return None, _targets.class_indices(targets, top_k, logits), logits

    def _weights(self, A, grads, idx):
        return self.fc_layer.weight.detach()[idx]  # [B,K] or [B,C,K]

    def _check_structure(self, A: torch.Tensor, fc_x: torch.Tensor | None) -> None:
        where = f"target layer {self.target_layer_name!r}"
        if fc_x is None:
            raise UserError(f"{PREFIX}CAM: fc_layer {self.fc_layer_name!r} was not called in the forward pass{_ADVICE}")
        B, K = A.shape[:2]
        fc_x = fc_x.flatten(1)
        if tuple(fc_x.shape) != (B, K):
            raise UserError(f"{PREFIX}CAM needs the final linear layer to read the global average of the target "
                            f"activations: {where} and fc_layer {self.fc_layer_name!r} see {list(A.shape)} and "
                            f"{list(fc_x.shape)}{_ADVICE}")
        if B == 0:  # an empty batch: nothing to compare, nothing to explain
            return
        gap = A.detach().float().mean(dim=(2, 3))
        fc_x = fc_x.detach().float()
        # Low precision (autocast) pools in bf16/fp16: allow their rounding, nothing more.
        rtol = 1e-3 if A.dtype == torch.float32 and fc_x.dtype == torch.float32 else 3e-2
        scale = float(fc_x.abs().max()) + 1e-12
        if float((fc_x - gap).abs().max()) > rtol * scale:
            raise UserError(f"{PREFIX}CAM needs the final linear layer to read the global average of the target "
                            f"activations (GAP -> FC), and the input of {self.fc_layer_name!r} is not the spatial "
                            f"mean of {where}{_ADVICE}")


class EigenCAM(LayerMethod):
    """Eigen-CAM (Muhammad & Yeasin 2020): the projection of the layer's activations on their first
    principal component (``principal_projection``), then ReLU, resize and min-max. No gradient and
    no class: the map is the same for every target; class ids are reported when the model returns
    logits. Several layers, ``reshape`` and ``fuse`` as for every layer method.
    """

    needs_gradients = False

    def _class_scores(self, output, targets, top_k, B, A, ctx):
        if callable(targets) and not isinstance(targets, torch.Tensor):
            return None, None, output  # the map does not depend on the score
        if isinstance(output, torch.Tensor) and output.dim() == 2:
            return None, _targets.class_indices(targets, top_k, output), output
        if targets is None and top_k is None:
            return None, None, output
        _targets.logits_of(output, "Eigen-CAM's map does not depend on the class: pass no targets")

    def _layer_maps(self, A, G, idx, size, eigen_smooth):
        P = principal_projection(A)  # [B,h,w]: the same for every class
        if idx is not None and idx.dim() == 2:
            P = P.unsqueeze(1).expand(-1, idx.shape[1], -1, -1)
        return maps_of_stack(P, size)
