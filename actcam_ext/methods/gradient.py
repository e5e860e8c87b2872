"""Gradient-weighted layer methods: Grad-CAM, Grad-CAM++, XGrad-CAM, and the element-wise family
(HiResCAM, Grad-CAM element-wise, LayerCAM, Eigen-Grad-CAM).

Notation: A the target layer's activations [K,h,w], g = d score / d A, sums over positions ij.
"""

from __future__ import annotations

import torch

from .. import ops
from ._base import LayerMethod, maps_of_stack, principal_projection

__all__ = ["GradCAM", "GradCAMPlusPlus", "XGradCAM", "HiResCAM", "GradCAMElementWise", "LayerCAM", "EigenGradCAM"]


def _per_class(A: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """A [B,K,h,w] aligned with grads [B,K,h,w] or [B,C,K,h,w] (a view, no copy)."""
    return A if grads.dim() == 4 else A.unsqueeze(1)


class GradCAM(LayerMethod):
    """Grad-CAM (Selvaraju et al. 2017): channel weights = spatial mean of d score / d A.

    target_layer: a module, its dotted name, ``"NAME:input"``, or None for the default (the
    input of the model's last global average pooling, else the last nn.Conv2d's output).
    """

    fused_mode = "gradcam"

    def _weights(self, A, grads, idx):
        return grads.float().mean(dim=(-2, -1))


class GradCAMPlusPlus(LayerMethod):
    """Grad-CAM++ (Chattopadhyay et al. 2018), Eq. 19 exactly, with no epsilon:
    alpha = g^2 / (2 g^2 + (sum_ab A_ab) g^3), 0 where the denominator is 0;
    w_k = sum_ij alpha_ij relu(g_ij)."""

    def _weights(self, A, grads, idx):
        if grads.dim() == 4:
            return ops.gradcampp_weights(A, grads)
        B, C, K, h, w = grads.shape
        # The op takes one map per row: repeat each image's activations for its C classes.
        A_rep = A.unsqueeze(1).expand(B, C, K, h, w).reshape(B * C, K, h, w)
        return ops.gradcampp_weights(A_rep, grads.reshape(B * C, K, h, w)).view(B, C, K)


class XGradCAM(LayerMethod):
    """XGrad-CAM (Fu et al. 2020): w_k = sum_ij g_ij A_ij / sum_ij A_ij, 0 where that sum is 0
    (exactly; pytorch-grad-cam adds 1e-7 to the denominator)."""

    fused_mode = "xgradcam"

    def _weights(self, A, grads, idx):
        A_ = _per_class(A, grads).float()
        den = A_.sum(dim=(-2, -1))
        num = (grads.float() * A_).sum(dim=(-2, -1))
        return torch.where(den != 0, num / torch.where(den != 0, den, torch.ones_like(den)), torch.zeros_like(num))


class HiResCAM(LayerMethod):
    """HiResCAM (Draelos & Carin 2020): map = ReLU(sum_k g_k * A_k), element-wise: exact for the
    model's score gradient at each position (no spatial averaging of the gradient)."""

    elementwise = True
    fused_mode = "hirescam"

    def _elementwise(self, A, grads):
        return grads.float() * _per_class(A, grads).float()


class GradCAMElementWise(LayerMethod):
    """Grad-CAM element-wise (pytorch-grad-cam's variant): map = sum_k ReLU(g_k * A_k)."""

    elementwise = True
    fused_mode = "gradcam_elementwise"

    def _elementwise(self, A, grads):
        return torch.relu(grads.float() * _per_class(A, grads).float())


class LayerCAM(LayerMethod):
    """LayerCAM (Jiang et al. 2021): map = ReLU(sum_k ReLU(g_k) * A_k), element-wise."""

    elementwise = True
    fused_mode = "layercam"

    def _elementwise(self, A, grads):
        return torch.relu(grads.float()) * _per_class(A, grads).float()


class EigenGradCAM(LayerMethod):
    """Eigen-Grad-CAM: the projection of g * A on its first principal component
    (``principal_projection``), then ReLU, resize and min-max."""

    elementwise = True

    def _elementwise(self, A, grads):
        return grads.float() * _per_class(A, grads).float()

    def _layer_maps(self, A, G, idx, size, eigen_smooth):
        return maps_of_stack(principal_projection(self._elementwise(A, G)), size)
