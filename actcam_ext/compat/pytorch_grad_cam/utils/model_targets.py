"""pytorch-grad-cam's targets (utils.model_targets): each is called with ONE image's model
output and returns that image's score; the method classes apply one per image."""

import torch
import torchvision

from .._missing import missing

__all__ = ["ClassifierOutputTarget", "ClassifierOutputSoftmaxTarget", "ClassifierOutputReST",
           "BinaryClassifierOutputTarget", "SoftmaxOutputTarget", "RawScoresOutputTarget",
           "SemanticSegmentationTarget", "FasterRCNNBoxScoreTarget", "FinerWeightedTarget"]


class ClassifierOutputTarget:
    """The logit of ``category``."""

    def __init__(self, category):
        self.category = category

    def __call__(self, model_output):
        if len(model_output.shape) == 1:
            return model_output[self.category]
        return model_output[:, self.category]


class ClassifierOutputSoftmaxTarget:
    """The softmax probability of ``category``."""

    def __init__(self, category):
        self.category = category

    def __call__(self, model_output):
        if len(model_output.shape) == 1:
            return torch.softmax(model_output, dim=-1)[self.category]
        return torch.softmax(model_output, dim=-1)[:, self.category]


class ClassifierOutputReST:
    """The logit of ``category`` minus its cross-entropy (pre- and post-softmax together)."""

    def __init__(self, category):
        self.category = category

    def __call__(self, model_output):
        if len(model_output.shape) == 1:
            target = torch.tensor([self.category], device=model_output.device)
            model_output = model_output.unsqueeze(0)
            return model_output[0][self.category] - torch.nn.functional.cross_entropy(model_output, target)
        target = torch.tensor([self.category] * model_output.shape[0], device=model_output.device)
        ce = torch.nn.functional.cross_entropy(model_output, target, reduction="none")
        return model_output[:, self.category] - ce


class BinaryClassifierOutputTarget:
    """A one-logit classifier's output, negated for ``category`` 0."""

    def __init__(self, category):
        self.category = category

    def __call__(self, model_output):
        sign = 1 if self.category == 1 else -1
        return model_output * sign


class SoftmaxOutputTarget:
    """All softmax probabilities (one score only for a one-output model; the Eigen methods
    ignore targets)."""

    def __call__(self, model_output):
        return torch.softmax(model_output, dim=-1)


class RawScoresOutputTarget:
    """The output itself (one score only for a one-output model; the Eigen methods ignore
    targets)."""

    def __call__(self, model_output):
        return model_output


class SemanticSegmentationTarget:
    """The sum of ``category``'s scores over the pixels of ``mask`` (a numpy [H, W] array) in one
    image's output [classes, H, W]."""

    def __init__(self, category, mask):
        self.category = category
        self.mask = torch.from_numpy(mask)

    def __call__(self, model_output):
        return (model_output[self.category, :, :] * self.mask.to(model_output.device)).sum()


class FasterRCNNBoxScoreTarget:
    """For each reference box (with its label), the detection that overlaps it most: its IoU plus
    its score when the IoU exceeds ``iou_threshold`` and the label matches; the sum over the
    reference boxes (a [1] tensor, 0 without detections)."""

    def __init__(self, labels, bounding_boxes, iou_threshold=0.5):
        self.labels = labels
        self.bounding_boxes = bounding_boxes
        self.iou_threshold = iou_threshold

    def __call__(self, model_outputs):
        boxes = model_outputs["boxes"]
        device, dtype = boxes.device, boxes.dtype
        output = torch.tensor([0.0], device=device, dtype=dtype)
        if len(boxes) == 0:
            return output
        for box, label in zip(self.bounding_boxes, self.labels):
            box = torch.as_tensor(box[None, :], device=device, dtype=dtype)
            ious = torchvision.ops.box_iou(box, boxes)
            index = ious.argmax()
            if ious[0, index] > self.iou_threshold and model_outputs["labels"][index] == label:
                score = ious[0, index] + model_outputs["scores"][index]
                output = output + score
        return output


class FinerWeightedTarget:
    """The main category's score minus ``alpha`` times each comparison category's, weighted by
    the comparison categories' softmax probabilities."""

    def __init__(self, main_category, comparison_categories, alpha):
        self.main_category = main_category
        self.comparison_categories = comparison_categories
        self.alpha = alpha

    def __call__(self, model_output):
        def select(idx):
            return model_output[idx] if model_output.ndim == 1 else model_output[..., idx]

        wn = select(self.main_category)
        prob = torch.softmax(model_output, dim=-1)
        weights = [prob[idx] if model_output.ndim == 1 else prob[..., idx] for idx in self.comparison_categories]
        numerator = sum(w * (wn - self.alpha * select(idx)) for w, idx in zip(weights, self.comparison_categories))
        return numerator / (sum(weights) + 1e-9)


def __getattr__(name: str):
    return missing(__name__, name, __all__)
