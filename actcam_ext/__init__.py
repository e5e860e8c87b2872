"""actcam_ext: fast, exact class-activation heatmaps for PyTorch models.

The package reads top to bottom, each layer importing only the ones below it::

    cli                                  the `actcam` command
    pipeline | evaluation | export | compat   images, folders, videos -> pictures and records | metrics
                                         tables | exportable CAM modules | the pytorch-grad-cam API
    methods | metrics | models           CAM, Grad-CAM, ... | the papers' measures | models by name
    targets | localize | images | render what to explain | boxes | image files | pictures
    ops                                  fused native ops (torch.ops.actcam.*) + pure-torch reference
    errors, _validate, _files, _progress the bottom: errors, argument rules, atomic writes, progress

``ops`` imports the compiled extension first, so the ops are registered before anything uses them.
"""

from . import export, metrics, ops, render, targets
from ._version import __version__
from .localize import boxes_from_maps
from .methods import (CAM, ActivationMaps, Deconvnet, EigenCAM, EigenGradCAM, Explanation, GradCAM,
                      GradCAMElementWise, GradCAMPlusPlus, GuidedBackprop, GuidedGradCAM, HiResCAM, LayerCAM,
                      Saliency, XGradCAM, activation_maps, reshape)
from .ops import native_available, reference
from .pipeline import ExplainOptions, Explainer, VideoOptions, demo, explain, explain_folder, explain_video
from .pipeline.activations import save_activations
from .errors import UserError

__all__ = ["__version__", "native_available", "ops", "reference", "metrics", "render", "export", "UserError",
           "CAM", "GradCAM", "GradCAMPlusPlus", "XGradCAM", "HiResCAM", "GradCAMElementWise", "LayerCAM", "EigenCAM",
           "EigenGradCAM", "Saliency", "Deconvnet", "GuidedBackprop", "GuidedGradCAM", "reshape", "targets",
           "Explanation", "Explainer", "ExplainOptions", "VideoOptions", "explain", "demo", "explain_folder",
           "explain_video", "boxes_from_maps", "activation_maps", "ActivationMaps", "save_activations"]
