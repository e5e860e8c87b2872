"""Method names: the one table the Python pipelines, the command line and ``evaluate`` use."""

from __future__ import annotations

from ..errors import PREFIX, UserError
from ._base import LayerMethod
from .activation import CAM, EigenCAM
from .gradient import EigenGradCAM, GradCAM, GradCAMElementWise, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from .guided import GuidedGradCAM

__all__ = ["METHODS", "ALIASES", "TITLES", "HEATMAP_METHODS", "method_name", "make_method"]

METHODS = {"cam": CAM, "gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "xgradcam": XGradCAM,
           "hirescam": HiResCAM, "gradcam-elementwise": GradCAMElementWise, "layercam": LayerCAM,
           "eigencam": EigenCAM, "eigen-gradcam": EigenGradCAM, "guided-gradcam": GuidedGradCAM}
ALIASES = {"gradcampp": "gradcam++", "grad-cam": "gradcam", "grad-cam++": "gradcam++",
           "guided-grad-cam": "guided-gradcam", "xgrad-cam": "xgradcam", "hires-cam": "hirescam",
           "gradcamelementwise": "gradcam-elementwise", "layer-cam": "layercam", "eigen-cam": "eigencam",
           "eigengradcam": "eigen-gradcam"}
TITLES = {"cam": "CAM", "gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "xgradcam": "XGrad-CAM",
          "hirescam": "HiResCAM", "gradcam-elementwise": "Grad-CAM element-wise", "layercam": "LayerCAM",
          "eigencam": "Eigen-CAM", "eigen-gradcam": "Eigen-Grad-CAM", "guided-gradcam": "Guided Grad-CAM"}
# Methods whose maps are heatmaps in [0, 1] (what an overlay shows); Guided Grad-CAM makes
# gradient pictures.
HEATMAP_METHODS = tuple(k for k in METHODS if k != "guided-gradcam")


def method_name(name, allowed=tuple(METHODS)) -> str:
    """The canonical name of a method name or alias (case-insensitive), among ``allowed``."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in allowed:
        raise UserError(f"{PREFIX}unknown method {name!r}; choose one of: {', '.join(allowed)}")
    return key


def make_method(name, model, layer=None, *, compile: bool = False, **kwargs):
    """The method object for a name (or alias) on ``model`` at target layer ``layer`` (or a list of
    layers); ``kwargs`` (``reshape``, ``fuse``) go to the method. compile: the compiled explain
    step of the layer methods (``LayerMethod``); Guided Grad-CAM has none."""
    key = method_name(name)
    cls = METHODS[key]
    if compile:
        if not issubclass(cls, LayerMethod):
            raise UserError(f"{PREFIX}{TITLES[key]} has no compiled explain step (its backward runs guided rules "
                            "through the whole model); drop --compile / compile=True, or use gradcam")
        kwargs["compile"] = True
    return cls(model, target_layer=layer, **kwargs)
