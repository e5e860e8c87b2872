"""XGrad-CAM as pytorch-grad-cam computes it."""

from ._base import CAMBase, weighted_map

__all__ = ["XGradCAM", "EPS"]

# pytorch-grad-cam adds this to each channel's activation sum; actcam_ext.XGradCAM does not.
EPS = 1e-7


class XGradCAM(CAMBase):
    """pytorch_grad_cam.XGradCAM: w_k = sum_ij g_kij A_kij / (sum_ab A_kab + 1e-7)."""

    @staticmethod
    def raw(A, G, eigen_smooth):
        S = A.sum(dim=(2, 3), keepdim=True)
        return weighted_map(A, (G * A / (S + EPS)).sum(dim=(2, 3)), eigen_smooth)
