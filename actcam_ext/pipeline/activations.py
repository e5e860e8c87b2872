"""``save_activations``: a layer's channel maps, the first convolution's filters and how a class
map is built from channels, written as pictures for each image.

Output folder (written whole or not at all, ``_files.atomic_dir``; an earlier output is
recognised by its ``activations.json``), per image (``NAME`` from ``outputs.output_name``):

- ``NAME_activations.png``: the layer's ``top`` channels by mean activation
  (``render.activation_grid``, captions ``"ch K · mean"``);
- ``NAME_sheet.jpg``: the image, the Grad-CAM overlay of its top class at that layer, then the
  ``top`` channels that contribute most to it (``activation_maps(order="contribution")``: Grad-CAM
  weight times the channel's sum), each overlaid on the image (captions ``"ch K · contribution"``):
  the channels the class map is a weighted sum of;

and once ``filters.png``, the first ``nn.Conv2d``'s filters (``render.filter_grid``) when its
filters have 3 input channels, plus ``activations.json``::

    {"model", "layer", "top", "filters": "filters.png" | null, "images": [
        {"path", "width", "height", "layer", "class_id", "label", "score", "activations", "sheet",
         "channels", "scores", "class_channels", "contributions"}, ...]}

``channels``/``scores`` rank by mean activation (the grid), ``class_channels``/``contributions``
by contribution to the Grad-CAM map of ``class_id`` (the sheet); ``score`` is the class's
softmax probability. The built-in model is loaded
without the CPU optimisation (``models.load_model(optimize=False)``), so a convolution's output
and filters are its own and not folded together with the BatchNorm after it.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import render
from .._files import atomic_dir, write_json
from .._progress import progress_bar
from .._validate import positive_int
from ..errors import PREFIX, UserError
from ..images import as_rgb
from ..methods import GradCAM, activation_maps
from ..models import DEFAULT_MODEL, Preprocess, labels_for, load_model, require_classifier
from .outputs import output_name, write_image

__all__ = ["save_activations", "first_conv", "MARKER"]

MARKER = "activations.json"
IMAGE_WEIGHT = 0.5


def first_conv(model: nn.Module) -> nn.Conv2d | None:
    """The model's first ``nn.Conv2d`` in ``named_modules()`` order (None when it has none)."""
    return next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)


def _load(model, device, preprocess, load_kwargs):
    if model is None or isinstance(model, (str, os.PathLike)):
        spec = os.fspath(model or DEFAULT_MODEL)
        net, pre = load_model(spec, device, optimize=False, **load_kwargs)
        require_classifier(net, "activations")  # its sheet adds the top class's Grad-CAM
        return net, preprocess or pre, spec
    if isinstance(model, nn.Module):
        require_classifier(model, "activations")
        return model, preprocess or Preprocess(), type(model).__name__
    raise UserError(f"{PREFIX}model must be None, a model spec string or an nn.Module, got {type(model).__name__}")


def _channel_overlays(maps: torch.Tensor, rgb: np.ndarray) -> np.ndarray:
    """Channel maps ``[N,h,w]`` resized to the image (bilinearly, as ``ops.cam`` resizes) and
    overlaid on it."""
    up = F.interpolate(maps[None], size=rgb.shape[:2], mode="bilinear", align_corners=False)[0]
    return render.overlays(up, rgb, IMAGE_WEIGHT)


def _one_image(gradcam: GradCAM, x: torch.Tensor, rgb: np.ndarray, top: int) -> tuple:
    """(record without file names, activation grid, sheet) of one image, ``x`` its model input."""
    model, layer, reshape = gradcam.model, gradcam.layer, gradcam.reshape
    by_mean = activation_maps(model, x, layer, top, reshape=reshape)
    e = gradcam.explain(x, size=rgb.shape[:2])
    logits = e.logits.float()
    cid = int(e.class_ids[0])
    labels = labels_for(logits.shape[1])
    label = labels[cid] if labels else f"class {cid}"
    score = float(logits.softmax(1)[0, cid])
    by_class = activation_maps(model, x, layer, top, order="contribution", targets=cid, reshape=reshape)
    grid = by_mean.picture(0)
    pictures = [render.overlays(e.maps, rgb, IMAGE_WEIGHT)[0], *_channel_overlays(by_class.maps[0], rgb)]
    captions = [f"Grad-CAM · {label.split(',')[0]} {score:.2f}", *by_class.labels(0)]
    sheet = render.contact_sheet(rgb, pictures, captions)
    record = {"layer": by_mean.layer, "class_id": cid, "label": label, "score": round(score, 6),
              "channels": by_mean.channels[0].tolist(), "scores": [round(v, 6) for v in by_mean.scores[0].tolist()],
              "class_channels": by_class.channels[0].tolist(),
              "contributions": [float(f"{v:.6g}") for v in by_class.scores[0].tolist()]}
    return record, grid, sheet


def save_activations(images, model=None, out_dir="actcam-activations", *, layer=None, top: int = 16, device=None,
                     preprocess: Preprocess | None = None, reshape=None, progress: bool = False,
                     **load_kwargs) -> dict:
    """Write the pictures and ``activations.json`` of the module docstring; returns that record.

    images: a path, a uint8 RGB array [H,W,3], or a list of them; every file is read and
    checked before the model is loaded. model: None (the built-in EfficientNet-Lite0), a spec
    (``models.load_model``) or an eval-mode ``nn.Module`` (then ``preprocess`` defaults to
    224x224 with the ImageNet mean and std); ``load_kwargs`` (input_size, mean, std,
    allow_pickle, weights) as for ``models.load_model``. layer: the target-layer rules (None: the
    default layer); reshape: as for the methods. top: channels per picture (>= 1; at most the
    layer's). Raises UserError for bad input, and then writes nothing.
    """
    top = positive_int(top, "top")
    if isinstance(layer, (list, tuple)):
        raise UserError(f"{PREFIX}activations shows one layer's channels; pass one layer, got {list(layer)}")
    srcs = list(images) if isinstance(images, (list, tuple)) else [images]
    if not srcs:
        raise UserError(f"{PREFIX}no images given")
    items = [as_rgb(s, i) for i, s in enumerate(srcs)]
    net, pre, spec = _load(model, device, preprocess, load_kwargs)
    dev = next(iter(net.parameters()), torch.empty(0)).device
    gradcam = GradCAM(net, layer, reshape=reshape)  # an unknown layer is reported before any image is explained
    conv = first_conv(net)
    filters = conv is not None and conv.weight.shape[1] == 3
    bar = progress_bar(len(items), progress)
    try:
        with atomic_dir(out_dir, marker=MARKER) as tmp:
            records = []
            for i, (rgb, path) in enumerate(items):
                record, grid, sheet = _one_image(gradcam, pre([rgb], dev), rgb, top)
                name = output_name(path if path is not None else f"array:{i}",
                                   path if path is not None else f"array{i:03d}")
                files = {"activations": f"{name}_activations.png", "sheet": f"{name}_sheet.jpg"}
                write_image(tmp / files["activations"], grid)
                write_image(tmp / files["sheet"], sheet)
                records.append({"path": path, "width": rgb.shape[1], "height": rgb.shape[0], **record, **files})
                if bar is not None:
                    bar.update(1)
            if filters:
                write_image(tmp / "filters.png", render.filter_grid(conv))
            result = {"model": spec, "layer": records[0]["layer"], "top": top,
                      "filters": "filters.png" if filters else None, "images": records}
            write_json(tmp / MARKER, result)
        return result
    finally:
        if bar is not None:
            bar.close()
