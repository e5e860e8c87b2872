"""Explanation methods, each a reusable object bound to a model::

    maps = GradCAM(model, target_layer="layer4")(x)          # [B,H,W] in [0, 1]
    e = GradCAM(model).explain(x, top_k=3)                     # Explanation(maps, class_ids, logits)

A reader finds a method by what it needs: ``activation`` (CAM: the classifier's weights, no
gradient), ``gradient`` (Grad-CAM, Grad-CAM++: the target layer's gradients), ``guided``
(input gradients with ReLU backward rules). ``registry`` maps names to classes. Formulas and
rules: docs/methods.md. ``activation_maps`` looks at one layer's channels instead of explaining
a class (docs/seeing.md).
"""

from . import reshape
from ._base import Explanation, LayerMethod, Method, principal_projection
from .activation import CAM, EigenCAM
from .activation_maps import ActivationMaps, activation_maps
from .gradient import EigenGradCAM, GradCAM, GradCAMElementWise, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from .guided import Deconvnet, GuidedBackprop, GuidedGradCAM, Saliency
from .registry import ALIASES, HEATMAP_METHODS, METHODS, TITLES, make_method, method_name

__all__ = ["Explanation", "Method", "LayerMethod", "CAM", "GradCAM", "GradCAMPlusPlus", "XGradCAM", "HiResCAM",
           "GradCAMElementWise", "LayerCAM", "EigenCAM", "EigenGradCAM", "reshape", "principal_projection",
           "Saliency", "Deconvnet", "GuidedBackprop", "GuidedGradCAM", "METHODS", "ALIASES", "TITLES",
           "HEATMAP_METHODS", "method_name", "make_method", "ActivationMaps", "activation_maps"]
