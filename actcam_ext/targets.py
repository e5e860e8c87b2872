"""What a method explains: from the model's output to the scores whose gradient is taken.

``targets`` may be

- ``None``: each image's top-1 class (``top_k=k``: its k best classes, one map each);
- an int: that class for every image; B ints: one class per image; a ``[B,C]`` array: C classes
  per image;
- a callable ``f(output) -> scores [B]`` (or ``[B,C]``) for any model output (a tensor, tuple or
  dict): segmentation, detection, multi-output models.

Class indices need the model to return logits ``[B, num_classes]``. The functions here are the
one place where these rules live; the methods and the metrics both use them.

For other outputs, ``classifier``, ``segmentation`` and ``detection`` make the callables::

    ac.GradCAM(deeplab, "backbone.layer4")(x, targets=ac.targets.segmentation(15, mask))
    ac.EigenCAM(frcnn, "backbone", reshape="fpn")(x, targets=ac.targets.detection(boxes, labels))
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import PREFIX, UserError

__all__ = ["check_top_k", "logits_of", "class_indices", "scores", "classifier", "segmentation_logits", "segmentation",
           "detection"]


def check_top_k(top_k, targets) -> None:
    """``top_k`` is None or a positive int, and not combined with ``targets``."""
    if top_k is None:
        return
    if targets is not None:
        raise UserError(f"{PREFIX}pass either targets or top_k, not both (top_k picks the top classes itself)")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise UserError(f"{PREFIX}top_k must be a positive int, got {top_k!r}")


def logits_of(output, hint: str) -> torch.Tensor:
    """``output`` when it is a 2-D tensor of logits ``[B, num_classes]``, else a UserError that
    ends with ``hint`` (what the caller can do instead)."""
    if isinstance(output, torch.Tensor) and output.dim() == 2:
        return output
    shape = list(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
    raise UserError(f"{PREFIX}class-index targets need the model to return logits [B, num_classes], "
                    f"got {shape}; {hint}")


def class_indices(targets, top_k, logits: torch.Tensor) -> torch.Tensor:
    """Resolve class targets to int64 indices ``[B]`` (one map per image) or ``[B,C]``.

    Every index is checked against the number of classes (the logits' width): an id out of
    range is a UserError naming it.
    """
    B, N = logits.shape
    if targets is None:
        if top_k is None:
            return logits.detach().argmax(dim=1)
        if top_k > N:
            raise UserError(f"{PREFIX}top_k={top_k} exceeds the number of classes ({N})")
        return logits.detach().topk(top_k, dim=1).indices
    if isinstance(targets, bool):
        raise UserError(f"{PREFIX}targets must be class indices, got {targets!r}")
    if isinstance(targets, int) or (isinstance(targets, torch.Tensor) and targets.dim() == 0):
        idx = torch.full((B,), int(targets), dtype=torch.long, device=logits.device)
    else:
        try:
            idx = torch.as_tensor(targets, device=logits.device)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise UserError(f"{PREFIX}targets must be None, an int, B ints, a [B,C] array of ints or a "
                            f"callable, got {type(targets).__name__} ({exc})") from None
        if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
            raise UserError(f"{PREFIX}targets must be integer class indices, got dtype {idx.dtype}")
        idx = idx.long()
        if idx.dim() not in (1, 2) or idx.shape[0] != B:
            raise UserError(f"{PREFIX}targets must have shape [B] or [B,C] with B={B} (the batch size), "
                            f"got {list(idx.shape)}")
        if idx.dim() == 2 and idx.shape[1] == 0:
            raise UserError(f"{PREFIX}targets of shape [B,C] need C >= 1")
    if idx.numel() and (idx.min() < 0 or idx.max() >= N):
        bad = int(idx.flatten()[((idx < 0) | (idx >= N)).flatten()][0])
        raise UserError(f"{PREFIX}target classes must lie in [0, {N - 1}]: class id {bad} is out of range "
                        f"(the model has {N} outputs)")
    return idx


def scores(output, targets, top_k, B: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The differentiable scores ``[B]`` or ``[B,C]`` of ``output``, and the class indices when
    the targets were classes (None for a callable)."""
    if callable(targets) and not isinstance(targets, torch.Tensor):
        if top_k is not None:
            raise UserError(f"{PREFIX}top_k cannot be combined with a callable target")
        s = targets(output)
        if not isinstance(s, torch.Tensor) or s.dim() not in (1, 2) or s.shape[0] != B \
                or not s.is_floating_point():
            got = list(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
            raise UserError(f"{PREFIX}a callable target must map the model output to a float tensor of "
                            f"one score per image [B] (or [B,C] for C maps) with B={B}, got {got}")
        return s, None
    logits = logits_of(output, "pass targets as a callable that maps the output to one score per image")
    if logits.shape[0] != B:
        raise UserError(f"{PREFIX}the model returned {logits.shape[0]} rows of logits for a batch of {B}")
    idx = class_indices(targets, top_k, logits)
    if idx.dim() == 1:
        return logits.gather(1, idx[:, None])[:, 0], idx
    return logits.gather(1, idx), idx


def classifier(category, softmax: bool = False):
    """Target: the logit (or, with ``softmax``, the probability) of ``category`` for every image;
    ``category`` may also be B class ids, one per image. Scores ``[B]``."""
    def score(output):
        logits = logits_of(output, "classifier() targets need logits [B, num_classes]")
        if softmax:
            logits = logits.softmax(dim=1)
        idx = class_indices(category, None, logits)
        return logits.gather(1, idx.view(-1, 1) if idx.dim() == 1 else idx)[:, 0]
    return score


def segmentation_logits(output) -> torch.Tensor:
    """The per-pixel logits ``[B, classes, H, W]`` of a segmenter's output (the tensor, or its
    ``"out"`` entry), or a UserError."""
    if isinstance(output, dict):
        if "out" not in output:
            raise UserError(f"{PREFIX}segmentation(): the model returned a dict without 'out' (keys: {list(output)})")
        output = output["out"]
    if not isinstance(output, torch.Tensor) or output.dim() != 4:
        got = list(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise UserError(f"{PREFIX}segmentation() targets need per-pixel logits [B, classes, H, W] (or a dict with "
                        f"'out', as torchvision's FCN and DeepLabV3 return), got {got}")
    return output


def segmentation(category, mask):
    """Target: the sum of ``category``'s logits over the pixels of ``mask`` ([H, W] for every image
    or [B, H, W], bool or float weights, at the output's resolution), for models returning
    ``[B, classes, H, W]`` or ``{"out": ...}``; ``category`` is one class id or B of them, one per
    image. Scores ``[B]``."""
    mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
    if mask.dim() not in (2, 3):
        raise UserError(f"{PREFIX}segmentation(): mask must be [H, W] or [B, H, W], got {list(mask.shape)}")
    cats = torch.as_tensor(category).reshape(-1)
    if cats.dtype.is_floating_point or cats.dtype == torch.bool or cats.numel() == 0:
        raise UserError(f"{PREFIX}segmentation(): category must be a class id or B class ids, got {category!r}")

    def score(output):
        logits = segmentation_logits(output)
        B, K, H, W = logits.shape
        if cats.numel() not in (1, B):
            raise UserError(f"{PREFIX}segmentation(): {cats.numel()} categories for a batch of {B} images")
        if bool((cats < 0).any() or (cats >= K).any()):
            bad = int(cats[(cats < 0) | (cats >= K)][0])
            raise UserError(f"{PREFIX}segmentation(): category {bad} is out of range: the model has {K} classes")
        if tuple(mask.shape[-2:]) != (H, W) or (mask.dim() == 3 and mask.shape[0] != B):
            raise UserError(f"{PREFIX}segmentation(): mask {list(mask.shape)} does not fit the output "
                            f"[{B}, {K}, {H}, {W}]; give [H, W] or [B, H, W] at the output's resolution")
        m = mask.to(device=logits.device, dtype=logits.dtype)
        idx = cats.to(logits.device).expand(B)[:, None, None, None].expand(B, 1, H, W)
        return (logits.gather(1, idx)[:, 0] * m).sum(dim=(-2, -1))
    return score


def _ndim(x) -> int:
    return x.dim() if isinstance(x, torch.Tensor) else np.ndim(x)


def detection(boxes, labels, iou_threshold: float = 0.5):
    """Target for torchvision detectors (Faster R-CNN, RetinaNet, FCOS: a list of dicts with
    ``boxes``, ``labels``, ``scores``): for each reference box, the detection that overlaps it most;
    when their IoU exceeds ``iou_threshold`` and its label is the reference label, IoU + score
    counts (as pytorch-grad-cam's FasterRCNNBoxScoreTarget). Scores ``[B]``, the sums per image.

    boxes, labels: one image's reference boxes ``[M, 4]`` (x0, y0, x1, y1) and labels ``[M]`` for
    every image, or lists of them, one per image.
    """
    per_image = isinstance(boxes, (list, tuple)) and boxes and not np.isscalar(boxes[0]) and _ndim(boxes[0]) == 2

    def score(outputs):
        import torchvision  # here, not at the top: importing it costs over a second of every start-up
        if not isinstance(outputs, (list, tuple)) or not all(isinstance(o, dict) and "boxes" in o for o in outputs):
            raise UserError(f"{PREFIX}detection() targets need a detector's output: a list of dicts with boxes, "
                            f"labels and scores, got {type(outputs).__name__}")
        B = len(outputs)
        ref_boxes = boxes if per_image else [boxes] * B
        ref_labels = labels if per_image else [labels] * B
        if len(ref_boxes) != B or len(ref_labels) != B:
            raise UserError(f"{PREFIX}detection(): {len(ref_boxes)} lists of reference boxes for {B} images")
        out = []
        for o, rb, rl in zip(outputs, ref_boxes, ref_labels):
            det = o["boxes"]
            total = det.new_zeros(())
            if len(det):
                # torch.as_tensor, not numpy: reference boxes may be tensors on the GPU or with a graph
                rb_t = torch.as_tensor(rb, device=det.device, dtype=det.dtype).detach()
                rb_t = rb_t.reshape(-1, 4)
                ious = torchvision.ops.box_iou(rb_t, det)  # [M, N]
                for m, label in enumerate(torch.as_tensor(rl).reshape(-1).tolist()):
                    j = int(ious[m].argmax())
                    if ious[m, j] > iou_threshold and int(o["labels"][j]) == int(label):
                        total = total + ious[m, j] + o["scores"][j]
            out.append(total)
        return torch.stack(out)
    return score
