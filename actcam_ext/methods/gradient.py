"""Gradient-weighted layer methods: Grad-CAM and Grad-CAM++."""

from __future__ import annotations

from .. import ops
from ._base import LayerMethod

__all__ = ["GradCAM", "GradCAMPlusPlus"]


class GradCAM(LayerMethod):
    """Grad-CAM (Selvaraju et al. 2017): channel weights = spatial mean of d score / d A.

    target_layer: a module, its dotted name, ``"NAME:input"``, or None for the default (the
    input of the model's last global average pooling, else the last nn.Conv2d's output).
    """

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
