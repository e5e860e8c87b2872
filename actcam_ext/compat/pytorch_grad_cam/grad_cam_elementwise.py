"""Grad-CAM element-wise as pytorch-grad-cam computes it."""

from ._base import CAMBase, elementwise_map

__all__ = ["GradCAMElementWise"]


class GradCAMElementWise(CAMBase):
    """pytorch_grad_cam.GradCAMElementWise: map = sum_k ReLU(g_k * A_k)."""

    @staticmethod
    def raw(A, G, eigen_smooth):
        return elementwise_map((G * A).clamp_min(0), eigen_smooth)
