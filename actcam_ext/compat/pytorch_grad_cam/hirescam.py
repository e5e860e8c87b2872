"""HiResCAM as pytorch-grad-cam computes it."""

from ._base import CAMBase, elementwise_map

__all__ = ["HiResCAM"]


class HiResCAM(CAMBase):
    """pytorch_grad_cam.HiResCAM: map = sum_k g_k * A_k (element-wise), then ReLU."""

    @staticmethod
    def raw(A, G, eigen_smooth):
        return elementwise_map(G * A, eigen_smooth)
