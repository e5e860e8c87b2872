"""Grad-CAM++ as pytorch-grad-cam computes it (not Eq. 19 exactly: see GradCAMPlusPlus)."""

import torch

from ._base import CAMBase, weighted_map

__all__ = ["GradCAMPlusPlus", "EPS"]

# pytorch-grad-cam adds this to Eq. 19's denominator; actcam_ext.GradCAMPlusPlus does not.
EPS = 1e-6


class GradCAMPlusPlus(CAMBase):
    """pytorch_grad_cam.GradCAMPlusPlus: alpha = g^2 / (2 g^2 + (sum_ab A_ab) g^3 + 1e-6), 0 where
    g = 0; w_k = sum_ij relu(g_ij) alpha_ij. The epsilon changes the weights wherever |g| is
    small (docs/methods.md); ``actcam_ext.GradCAMPlusPlus`` is Eq. 19 without it."""

    @staticmethod
    def raw(A, G, eigen_smooth):
        g2 = G * G
        g3 = g2 * G
        S = A.sum(dim=(2, 3), keepdim=True)
        alpha = g2 / (2 * g2 + S * g3 + EPS)
        alpha = torch.where(G != 0, alpha, torch.zeros_like(alpha))
        return weighted_map(A, (G.clamp_min(0) * alpha).sum(dim=(2, 3)), eigen_smooth)
