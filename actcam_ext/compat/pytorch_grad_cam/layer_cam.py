"""LayerCAM as pytorch-grad-cam computes it."""

from ._base import CAMBase, elementwise_map

__all__ = ["LayerCAM"]


class LayerCAM(CAMBase):
    """pytorch_grad_cam.LayerCAM: map = sum_k ReLU(g_k) * A_k, then ReLU."""

    @staticmethod
    def raw(A, G, eigen_smooth):
        return elementwise_map(G.clamp_min(0) * A, eigen_smooth)
