"""Which regions of a segmenter's or a detector's output an explanation is about.

The choice is made from the output of the explained forward pass itself, so one forward and
one backward serve a batch, as for classifiers:

- segmentation: each image's classes ranked by the number of pixels the model assigns to them
  (its argmax), the ``top_k`` largest (``__background__`` excluded where the labels name it),
  or the ``targets`` classes (largest first); each one explained through ``targets.segmentation`` over its own
  pixels (pytorch-grad-cam's SemanticSegmentationTarget on the predicted mask). The score
  reported is the class's share of the image's pixels.
- detection: each image's detections scoring at least ``min_score`` (of the ``targets`` labels
  when given), the ``top_k`` best; each one explained through ``targets.detection`` with its
  own box and label as the reference (pytorch-grad-cam's FasterRCNNBoxScoreTarget on the
  model's detections). The score reported is the detector's.

``Choice`` records what was chosen per image (anew at each call: Guided Grad-CAM runs the
model twice); images with fewer regions than the batch's most get zero scores in the spare
columns, whose maps are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .. import targets as _targets
from ..errors import PREFIX, UserError
from .options import ExplainOptions

__all__ = ["Choice", "NothingToExplain", "segmentation_target", "detection_target"]


class NothingToExplain(Exception):
    """No image of the batch has a region to explain (raised from inside the target, before any
    backward; the method removes its hooks on the way out)."""


@dataclass
class Choice:
    """Per image: the class ids, their scores and (detection) boxes in the model input's frame."""

    class_ids: list = field(default_factory=list)
    scores: list = field(default_factory=list)
    boxes: list = field(default_factory=list)


def _columns(per_image: list) -> int:
    C = max((len(c) for c in per_image), default=0)
    if C == 0:
        raise NothingToExplain
    return C


def segmentation_target(options: ExplainOptions, chosen: list, skip_background: bool):
    """A callable target (``targets.scores``) for a segmenter; it fills ``chosen`` with one
    ``Choice`` per image."""

    def score(output):
        chosen.clear()
        logits = _targets.segmentation_logits(output)
        B, K, H, W = logits.shape
        pred = logits.detach().argmax(dim=1)  # [B,H,W]
        if options.targets is not None and max(options.targets) >= K:
            raise UserError(f"{PREFIX}target class {max(options.targets)} is out of range: the model segments "
                            f"{K} classes")
        for i in range(B):
            counts = torch.bincount(pred[i].flatten(), minlength=K).cpu()
            if options.targets is not None:  # the largest first, as the scores are sorted everywhere
                ids = sorted(options.targets, key=lambda c: -int(counts[c]))
            else:
                order = counts.argsort(descending=True, stable=True).tolist()
                ids = [c for c in order if counts[c] > 0 and not (skip_background and c == 0)][:options.top_k]
            chosen.append(Choice(ids, [float(counts[c]) / (H * W) for c in ids]))
        cols = []
        for j in range(_columns([c.class_ids for c in chosen])):
            cats = [c.class_ids[j] if j < len(c.class_ids) else 0 for c in chosen]
            masks = torch.stack([pred[i] == cats[i] if j < len(chosen[i].class_ids) else torch.zeros_like(pred[i],
                                 dtype=torch.bool) for i in range(B)])
            cols.append(_targets.segmentation(cats, masks)(output))
        return torch.stack(cols, dim=1)
    return score


def detection_target(options: ExplainOptions, chosen: list):
    """A callable target for a torchvision detector; it fills ``chosen`` with one ``Choice`` per
    image (boxes in the frame of the model's input)."""

    def score(outputs):
        if not isinstance(outputs, (list, tuple)) or not all(isinstance(o, dict) and {"boxes", "labels", "scores"}
                                                              <= o.keys() for o in outputs):
            raise UserError(f"{PREFIX}a detector must return a list of dicts with boxes, labels and scores, got "
                            f"{type(outputs).__name__}")
        chosen.clear()
        picked = []  # per image: the chosen detections' boxes, where the detector made them
        for o in outputs:
            s, labels = o["scores"].detach(), o["labels"].detach()
            keep = s >= options.min_score
            if options.targets is not None:
                keep &= torch.isin(labels, torch.tensor(options.targets, device=labels.device))
            idx = keep.nonzero()[:, 0]
            idx = idx[s[idx].argsort(descending=True, stable=True)][:options.top_k]
            picked.append(o["boxes"].detach()[idx])
            chosen.append(Choice(labels[idx].tolist(), s[idx].tolist(), picked[-1].tolist()))
        cols = []
        for j in range(_columns([c.class_ids for c in chosen])):
            refs = [boxes[j:j + 1] for boxes in picked]  # [1, 4], or [0, 4] past an image's last detection
            labels = [c.class_ids[j:j + 1] for c in chosen]
            cols.append(_targets.detection(refs, labels)(outputs))
        return torch.stack(cols, dim=1)
    return score
