"""What a model predicts: a class per image, a class per pixel, or boxes.

``task_of(model)`` names it: ``"detection"`` for torchvision's detectors (Faster/Mask/Keypoint
R-CNN, RetinaNet, FCOS, SSD: a list of dicts with ``boxes``, ``labels``, ``scores`` per image),
``"segmentation"`` for its segmenters (FCN, DeepLabV3, LR-ASPP: ``{"out": [B, classes, H, W]}``),
``"classification"`` for everything else. A model of another kind states its task to the
pipeline (``Explainer(task=...)``, ``--task``).

``dense_defaults(model, task)`` is where explaining such a model starts when the user names no
layer: a detector's ``backbone`` (its FPN's feature dict, read with ``reshape="fpn"``), a
segmenter's ``backbone.layer4`` where it has one (the ResNet features every torchvision
segmenter's head reads), else the default layer rule.
"""

from __future__ import annotations

import sys

import torch.nn as nn

from ..errors import PREFIX, UserError

__all__ = ["TASKS", "task_of", "check_task", "require_classifier", "dense_defaults", "task_labels"]

TASKS = ("classification", "segmentation", "detection")


def check_task(task: str) -> str:
    if task not in TASKS:
        raise UserError(f"{PREFIX}task must be one of {', '.join(TASKS)}, got {task!r}")
    return task


def task_of(model: nn.Module) -> str:
    """The model's task (module docstring)."""
    # A model can only be one of torchvision's if torchvision is loaded: do not import it (over
    # a second of start-up) to find out.
    if "torchvision" not in sys.modules:
        return "classification"
    from torchvision.models import detection, segmentation
    detectors = (detection.generalized_rcnn.GeneralizedRCNN, detection.RetinaNet, detection.FCOS, detection.ssd.SSD)
    segmenters = (segmentation.FCN, segmentation.DeepLabV3, segmentation.LRASPP)
    if isinstance(model, detectors):
        return "detection"
    if isinstance(model, segmenters):
        return "segmentation"
    return "classification"


def require_classifier(model: nn.Module, what: str, task: str | None = None) -> None:
    """A UserError when ``what`` (a command, e.g. "video") is asked of a segmenter or detector
    (``task``: the model's task when already known, else ``task_of(model)``)."""
    task = task or task_of(model)
    if task != "classification":
        raise UserError(f"{PREFIX}{what} works with classifiers (one class score per image); this model is a {task} "
                        "model: explain its images with explain or batch")


def dense_defaults(model: nn.Module, task: str) -> tuple[str | None, str | None]:
    """``(layer, reshape)`` to explain ``model`` with when the user gave none (module docstring);
    ``(None, None)`` leaves the default layer rule in charge."""
    names = dict(model.named_modules())
    if task == "detection" and "backbone" in names:
        return "backbone", "fpn"
    if task == "segmentation" and "backbone.layer4" in names:
        return "backbone.layer4", None
    return None, None


def _num_classes(model: nn.Module, task: str) -> int | None:
    """The class count of torchvision's segmenter and detector heads; None for other models."""
    heads = {"segmentation": ("classifier.4", "classifier.high_classifier"),  # FCN/DeepLabV3, LR-ASPP
             "detection": ("roi_heads.box_predictor.cls_score", "head.classification_head")}[task]
    named = dict(model.named_modules())
    for name in heads:
        head = named.get(name)
        for attr in ("out_channels", "out_features", "num_classes"):
            if isinstance(getattr(head, attr, None), int):
                return getattr(head, attr)
    return None


def task_labels(model: nn.Module, task: str) -> tuple[str, ...] | None:
    """Class names of a torchvision segmenter with Pascal VOC's 21 classes (``__background__``
    first) or detector with COCO's 91 category ids; None for any other model (the pipeline then
    says "class N")."""
    if task == "classification" or "torchvision" not in sys.modules:
        return None
    from torchvision.models import detection, segmentation
    meta = (segmentation.DeepLabV3_ResNet50_Weights.DEFAULT.meta if task == "segmentation"
            else detection.FasterRCNN_ResNet50_FPN_Weights.DEFAULT.meta)
    names = tuple(meta["categories"])
    return names if _num_classes(model, task) == len(names) else None
