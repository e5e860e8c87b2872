"""actcam_ext: fast, exact class-activation heatmaps for PyTorch CNNs.

``ops`` holds the fused native ops (``torch.ops.actcam.*``) and ``reference`` their
pure-torch twins. The extension module is imported first (in ``_native``) so the ops
are registered before anything uses them.
"""

from .ops import native_available, reference
from . import ops
from .methods import (CAM, Deconvnet, GradCAM, GradCAMPlusPlus, GuidedBackprop, GuidedGradCAM,
                      Saliency)

__version__ = "0.1.0"

from .localize import boxes_from_maps
from .explain import explain
from . import metrics

__all__ = ["native_available", "ops", "reference", "__version__", "metrics",
           "CAM", "GradCAM", "GradCAMPlusPlus", "Saliency", "Deconvnet", "GuidedBackprop", "GuidedGradCAM",
           "explain", "boxes_from_maps"]
