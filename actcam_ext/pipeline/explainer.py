"""``Explainer``: a method on a model with its preprocessing and device; images in, predictions out.

Pure compute: it reads no file and writes none. The pipelines (``explain``, ``video``,
``folder``) give it decoded images and turn its ``ImagePrediction``s into pictures and records.
Scores and maps come from one forward (and one backward) per batch: the methods return the
logits of the forward they explain, and a batch's top-k classes go through one vectorised
backward.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from ..errors import PREFIX, UserError, message
from ..localize import boxes_from_maps
from ..methods import METHODS, Method, make_method
from ..models import (DEFAULT_MODEL, Preprocess, check_task, dense_defaults, labels_for, load_model,
                      require_classifier, resolve_device, task_labels, task_of)
from ..targets import segmentation_logits
from .dense import NothingToExplain, detection_target, segmentation_target
from .options import ExplainOptions

__all__ = ["Explainer", "ImagePrediction", "PRECISIONS", "check_precision"]

# The model's forward under autocast: bf16 on CPUs with bfloat16 instructions (AVX512-BF16, AMX)
# and on GPUs, fp16 on GPUs. The maps are made in float32 by the fused ops either way.
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> None:
    """A UserError when ``precision`` is unknown or the device cannot run it fast."""
    if precision not in PRECISIONS:
        raise UserError(f"{PREFIX}precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return
    if device.type == "cpu":
        if precision == "fp16":
            raise UserError(f"{PREFIX}fp16 runs on CUDA GPUs; on the CPU use bf16 (or fp32)")
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            raise UserError(f"{PREFIX}this CPU has no bfloat16 instructions (AVX512-BF16 or AMX), so bf16 would "
                            "be slower than fp32 here; use fp32")
    elif device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise UserError(f"{PREFIX}this GPU does not run bfloat16; use fp16 or fp32")


@dataclass(eq=False)
class ImagePrediction:
    """One image's explained classes, best score first.

    class_ids, labels, scores and boxes (``[x0, y0, x1, y1)`` in image pixels) are lists with one
    entry per class; maps: float32 [C,H,W] in [0, 1] at the image's size, on the explainer's
    device; guided: Guided Grad-CAM pictures [C,3,H,W] or None. Classifiers: scores are softmax
    probabilities and boxes come from the maps (``localize``); segmenters: a class's share of the
    pixels, boxes from the maps; detectors: one entry per detection explained, with the
    detector's score and box (``pipeline.dense``).
    """

    class_ids: list
    labels: list
    scores: list
    boxes: list
    maps: torch.Tensor
    guided: torch.Tensor | None = None


def _method_key(method: Method) -> str:
    for key, cls in METHODS.items():
        if type(method) is cls:
            return key
    return type(method).__name__


class Explainer:
    """A method object (bound to its model) + the model's preprocessing + a device.

    method: a method object such as ``ac.GradCAM(model, "layer4")``; preprocess: how images
    become the model's input (default: 224x224, ImageNet mean/std); device: where the images go
    (default: the model's device); precision: ``"fp32"`` (exact, the default), ``"bf16"`` (CPUs
    with bfloat16 instructions, GPUs) or ``"fp16"`` (GPUs): the model's forward and backward run
    under torch.autocast, faster where the hardware has the instructions, and the maps differ
    from fp32 by the rounding of the model's activations. task: ``"classification"``,
    ``"segmentation"`` or ``"detection"`` (None: ``models.task_of(model)``); what a segmenter's or
    detector's prediction explains is ``pipeline.dense``'s rule. ``Explainer.load`` builds one
    from names.
    """

    def __init__(self, method: Method, preprocess: Preprocess | None = None, device=None, *,
                 model_name: str | None = None, precision: str = "fp32", task: str | None = None):
        if not isinstance(method, Method):
            raise UserError(f"{PREFIX}method must be a method object such as actcam_ext.GradCAM(model), got "
                            f"{type(method).__name__}")
        self.method = method
        self.model = method.model
        self.preprocess = preprocess or Preprocess()
        if device is not None:
            self.device = resolve_device(device)
        else:
            self.device = next(iter(self.model.parameters()), torch.empty(0)).device
        check_precision(precision, self.device)
        self.precision = precision
        self.method_name = _method_key(method)
        self.layer = getattr(method, "target_layer_name", None)
        self.model_name = model_name or type(self.model).__name__
        self.task = check_task(task) if task is not None else task_of(self.model)
        if self.task != "classification" and method.class_targets_only:
            raise UserError(f"{PREFIX}{self.method_name} explains a classifier's class scores only; for a {self.task} "
                            "model use gradcam or another gradient method")
        self._labels: tuple | None = None

    @classmethod
    def load(cls, method: str = "gradcam", model=None, *, layer=None, reshape=None, device=None,
             preprocess: Preprocess | None = None, precision: str = "fp32", compile: bool = False,
             task: str | None = None, **load_kwargs) -> "Explainer":
        """An Explainer for a method name and a model spec (``models.load_model``: None for the
        built-in EfficientNet-Lite0, ``"torchvision:NAME"``, ``"timm:NAME"``, a file;
        ``load_kwargs`` (input_size, mean, std, allow_pickle, weights) as there) or an
        ``nn.Module`` (in eval mode; then ``preprocess`` defaults to 224x224 with the ImageNet
        mean/std). layer: a target layer or a list of them; reshape: as for the methods; compile:
        the method's compiled explain step (``LayerMethod``'s ``compile=True``); task: as for the
        constructor. A segmenter or detector with no layer given gets ``models.dense_defaults``."""
        if model is None or isinstance(model, (str, os.PathLike)):
            spec = os.fspath(model or DEFAULT_MODEL)
            net, pre = load_model(spec, device, **load_kwargs)
            dev = next(iter(net.parameters()), torch.empty(0)).device
        elif isinstance(model, nn.Module):
            net, pre, spec = model, None, type(model).__name__
            dev = resolve_device(device) if device is not None else None
        else:
            raise UserError(f"{PREFIX}model must be None, a model spec string or an nn.Module, got "
                            f"{type(model).__name__}")
        task = check_task(task) if task is not None else task_of(net)
        if layer is None and task != "classification":
            layer, default_reshape = dense_defaults(net, task)
            reshape = reshape if reshape is not None else default_reshape
        kwargs = {"reshape": reshape} if reshape is not None else {}
        return cls(make_method(method, net, layer, compile=compile, **kwargs), preprocess or pre, dev, model_name=spec,
                   precision=precision, task=task)

    def describe(self) -> dict:
        """``{"model", "method", "layer"[, "task"][, "precision"][, "compiled"]}``: what a results
        file records about the run ("task" for segmenters and detectors)."""
        out = {"model": self.model_name, "method": self.method_name, "layer": self.layer}
        if self.task != "classification":
            out["task"] = self.task
        if self.precision != "fp32":
            out["precision"] = self.precision
        if getattr(self.method, "compile", False):
            out["compiled"] = True
        return out

    def _autocast(self):
        dtype = PRECISIONS[self.precision]
        return torch.autocast(self.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    def _explain(self, x: torch.Tensor, targets, top_k, size):
        try:
            with self._autocast():
                return self.method.explain(x, targets, top_k=top_k, size=size)
        except UserError:
            raise
        except ValueError as exc:  # an op's argument check: still the caller's input
            raise UserError(f"{PREFIX}{message(exc)}") from None

    def _logits(self, out, n: int) -> torch.Tensor:
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != n:
            got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise UserError(f"{PREFIX}the model must return class logits [batch, classes], it returned {got}")
        if not bool(torch.isfinite(out).all()):
            bad = int((~torch.isfinite(out)).any(dim=1).nonzero()[0, 0])
            raise UserError(f"{PREFIX}the model returned NaN or infinite logits (image {bad} of the batch); check the "
                            "model and its input normalisation (--mean/--std)")
        if self._labels is None:
            self._labels = labels_for(out.shape[1]) or ()
        return out.float()

    def _label(self, cid: int) -> str:
        return self._labels[cid] if self._labels and 0 <= cid < len(self._labels) else f"class {cid}"

    def predict(self, images: list, options: ExplainOptions = ExplainOptions()) -> list[ImagePrediction]:
        """Explain uint8 RGB images ``[H_i,W_i,3]`` (any sizes) in one batch; one prediction each.

        Each image's classes are its ``options.top_k`` best or ``options.targets``, sorted by
        score; every map is made at its own image's size.
        """
        if self.task != "classification":
            return self._predict_dense(images, options)
        n = len(images)
        x = self.preprocess(list(images), self.device)
        sizes = [tuple(int(s) for s in np.shape(im)[:2]) for im in images]
        if options.targets is not None:
            chosen = torch.tensor([list(options.targets)] * n, dtype=torch.long, device=self.device)
            e = self._explain(x, chosen, None, sizes)
        else:
            e = self._explain(x, None, options.top_k, sizes)
        logits = self._logits(e.logits, n)
        ids = e.class_ids.to(logits.device)
        probs = logits.softmax(1).gather(1, ids)  # [n,C]
        heat = e.heatmaps if e.heatmaps is not None else e.maps
        guided = e.maps if e.heatmaps is not None else [None] * n
        out = []
        for i in range(n):
            order = probs[i].argsort(descending=True, stable=True)
            maps = heat[i][order.to(heat[i].device)]
            g = guided[i][order.to(guided[i].device)] if guided[i] is not None else None
            cids = ids[i][order].tolist()
            boxes = boxes_from_maps(maps, options.threshold).cpu().tolist()
            out.append(ImagePrediction(class_ids=cids, labels=[self._label(c) for c in cids],
                                       scores=probs[i][order].tolist(), boxes=boxes, maps=maps, guided=g))
        return out

    def _predict_dense(self, images: list, options: ExplainOptions) -> list[ImagePrediction]:
        """``predict`` for a segmenter or detector: the regions ``pipeline.dense`` chooses from the
        explained forward pass, one map each."""
        x = self.preprocess(list(images), self.device)
        sizes = [tuple(int(s) for s in np.shape(im)[:2]) for im in images]
        if self._labels is None:
            self._labels = task_labels(self.model, self.task) or ()
        chosen: list = []
        if self.task == "segmentation":
            background = bool(self._labels) and self._labels[0] == "__background__"
            target = segmentation_target(options, chosen, skip_background=background)
        else:
            target = detection_target(options, chosen)
        try:
            e = self._explain(x, target, None, sizes)
            if not chosen:  # a method that reads no score (Eigen-CAM): choose from its forward's output
                target(e.logits)
        except NothingToExplain:
            e = None
        if not self._labels and self.task == "segmentation" and e is not None:
            # A segmenter of ImageNet's classes (a classifier made fully convolutional) has their names.
            self._labels = labels_for(segmentation_logits(e.logits).shape[1]) or ()
        in_h, in_w = (int(v) for v in self.preprocess.size)
        heat = guided = None
        if e is not None:
            heat = e.heatmaps if e.heatmaps is not None else e.maps
            guided = e.maps if e.heatmaps is not None else None
        out = []
        for i, (h, w) in enumerate(sizes):
            c = chosen[i] if i < len(chosen) else None
            n = len(c.class_ids) if c is not None else 0
            if n == 0:
                out.append(ImagePrediction(class_ids=[], labels=[], scores=[], boxes=[],
                                           maps=torch.zeros(0, h, w, device=self.device)))
                continue
            # One map per region; a method that reads no score (Eigen-CAM) made one map per image.
            maps = heat[i][:n] if heat[i].dim() == 3 else heat[i].expand(n, h, w)
            g = guided[i][:n] if guided is not None else None
            if self.task == "detection":
                scale = np.array([w / in_w, h / in_h, w / in_w, h / in_h])
                boxes = [[int(round(v)) for v in np.asarray(b) * scale] for b in c.boxes]
            else:
                boxes = boxes_from_maps(maps, options.threshold).cpu().tolist()
            out.append(ImagePrediction(class_ids=c.class_ids, labels=[self._label(cid) for cid in c.class_ids],
                                       scores=c.scores, boxes=boxes, maps=maps, guided=g))
        return out

    def heatmaps(self, frames: torch.Tensor, target: int | None = None) -> torch.Tensor:
        """Heatmaps [n,H,W] of uint8 RGB frames [n,H,W,3] (one size, on the device) for ``target``
        (None: each frame's top-1 class), at the frames' size; classifiers only."""
        require_classifier(self.model, "video", self.task)
        x = self.preprocess(frames, self.device)
        return self._explain(x, target, None, tuple(frames.shape[1:3])).maps
