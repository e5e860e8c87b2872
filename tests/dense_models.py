"""Detectors and segmenters for the tests: torchvision's architectures with seeded random weights
(nothing is downloaded), adjusted where a test needs them to behave like trained ones."""

import torch
import torchvision


def seeded(make):
    """``make()`` under seed 0 (the caller's RNG untouched), in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return make().eval()


def _frcnn():
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None)
    # torchvision's random init of this backbone shrinks the features by 1e-9 by the last stage
    # (constant detections, gradients near 0); fan-in Kaiming init keeps them of order 1-40.
    for module in model.backbone.body.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
    return model


def frcnn():
    """Faster R-CNN (MobileNetV3, 320) with seeded random weights (its detections score high:
    random features of order 1-40 make confident logits)."""
    return seeded(_frcnn)


def deeplab_with_aux():
    """DeepLabV3-ResNet50 as torchvision builds it for its pretrained weights (21 VOC classes,
    auxiliary head)."""
    return seeded(lambda: torchvision.models.segmentation.deeplabv3_resnet50(
        weights=None, weights_backbone=None, num_classes=21, aux_loss=True))
