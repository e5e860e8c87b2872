"""Eigen-CAM as pytorch-grad-cam computes it."""

from ._base import CAMBase, projection

__all__ = ["EigenCAM"]


class EigenCAM(CAMBase):
    """pytorch_grad_cam.EigenCAM: the projection of the activations on their first principal
    component, with numpy's SVD sign (utils.svd_on_activations.get_2d_projection); no gradient,
    no score: targets are not evaluated. eigen_smooth changes nothing."""

    uses_gradients = False

    @staticmethod
    def raw(A, G, eigen_smooth):
        return projection(A)
