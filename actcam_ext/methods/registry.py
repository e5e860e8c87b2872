"""Method names: the one table the Python pipelines, the command line and ``evaluate`` use."""

from __future__ import annotations

from ..errors import PREFIX, UserError
from .activation import CAM
from .gradient import GradCAM, GradCAMPlusPlus
from .guided import GuidedGradCAM

__all__ = ["METHODS", "ALIASES", "TITLES", "HEATMAP_METHODS", "method_name", "make_method"]

METHODS = {"cam": CAM, "gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "guided-gradcam": GuidedGradCAM}
ALIASES = {"gradcampp": "gradcam++", "grad-cam": "gradcam", "grad-cam++": "gradcam++",
           "guided-grad-cam": "guided-gradcam"}
TITLES = {"cam": "CAM", "gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "guided-gradcam": "Guided Grad-CAM"}
# Methods whose maps are heatmaps in [0, 1] (what an overlay shows); Guided Grad-CAM makes
# gradient pictures.
HEATMAP_METHODS = ("cam", "gradcam", "gradcam++")


def method_name(name, allowed=tuple(METHODS)) -> str:
    """The canonical name of a method name or alias (case-insensitive), among ``allowed``."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in allowed:
        raise UserError(f"{PREFIX}unknown method {name!r}; choose one of: {', '.join(allowed)}")
    return key


def make_method(name, model, layer=None):
    """The method object for a name (or alias) on ``model`` at target layer ``layer``."""
    return METHODS[method_name(name)](model, target_layer=layer)
