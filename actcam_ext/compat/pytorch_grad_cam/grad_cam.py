"""Grad-CAM as pytorch-grad-cam computes it: w_k = the spatial mean of d score / d A_k."""

from ._base import CAMBase, weighted_map

__all__ = ["GradCAM"]


class GradCAM(CAMBase):
    """pytorch_grad_cam.GradCAM on the library's methods (CAMBase): w_k = mean_ij g_kij."""

    @staticmethod
    def raw(A, G, eigen_smooth):
        return weighted_map(A, G.mean(dim=(2, 3)), eigen_smooth)
