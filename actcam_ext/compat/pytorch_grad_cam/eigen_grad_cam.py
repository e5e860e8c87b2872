"""Eigen-Grad-CAM as pytorch-grad-cam computes it."""

from ._base import CAMBase, projection

__all__ = ["EigenGradCAM"]


class EigenGradCAM(CAMBase):
    """pytorch_grad_cam.EigenGradCAM: the projection of g * A on its first principal component,
    with numpy's SVD sign. eigen_smooth changes nothing."""

    @staticmethod
    def raw(A, G, eigen_smooth):
        return projection(G * A)
