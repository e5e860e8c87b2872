"""pytorch-grad-cam's utils: image helpers, targets, reshape transforms, the SVD projection."""

from .._missing import missing
from . import image, model_targets, reshape_transforms, svd_on_activations
from .image import deprocess_image
from .svd_on_activations import get_2d_projection

__all__ = ["image", "model_targets", "reshape_transforms", "svd_on_activations", "deprocess_image",
           "get_2d_projection"]


def __getattr__(name: str):
    return missing(__name__, name, __all__)
