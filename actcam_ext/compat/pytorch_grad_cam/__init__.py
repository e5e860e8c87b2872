"""pytorch-grad-cam 1.5's public API, computed by actcam_ext (docs/compat.md).

    from actcam_ext.compat.pytorch_grad_cam import GradCAM            # was: from pytorch_grad_cam import GradCAM
    from actcam_ext.compat.pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with GradCAM(model=model, target_layers=[model.layer4[-1]]) as cam:
        grayscale_cam = cam(input_tensor=x, targets=[ClassifierOutputTarget(281)])   # numpy [B, H, W]

The same maps as pytorch-grad-cam (its epsilons and order of operations included) for GradCAM,
HiResCAM, GradCAMPlusPlus, XGradCAM, EigenCAM, EigenGradCAM, LayerCAM, GradCAMElementWise and
GuidedBackpropReLUModel; its other methods raise an ImportError that names them.
"""

from . import utils
from ._missing import missing
from .eigen_cam import EigenCAM
from .eigen_grad_cam import EigenGradCAM
from .grad_cam import GradCAM
from .grad_cam_elementwise import GradCAMElementWise
from .grad_cam_plusplus import GradCAMPlusPlus
from .guided_backprop import GuidedBackpropReLUModel
from .hirescam import HiResCAM
from .layer_cam import LayerCAM
from .xgrad_cam import XGradCAM

__all__ = ["GradCAM", "HiResCAM", "GradCAMPlusPlus", "XGradCAM", "EigenCAM", "EigenGradCAM", "LayerCAM",
           "GradCAMElementWise", "GuidedBackpropReLUModel", "utils"]


def __getattr__(name: str):
    return missing(__name__, name, __all__)
