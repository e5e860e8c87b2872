"""Grad-CAM and Grad-CAM++ against pytorch-grad-cam and against the papers' formulas (float64)."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import actcam_ext as ac
from method_oracles import (class_score, hand_cam, hand_gradcam, hand_gradcampp, module, pgc, photos)

# ------------------------------------------------------------------------------------------
# Grad-CAM and Grad-CAM++ against pytorch-grad-cam and Eq. 19
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layer", ["layer4", "layer3", "layer4.1.conv2", "layer2.0.conv2"])
def test_gradcam_equals_pytorch_grad_cam_resnet18(resnet18, photos_small, layer):
    from pytorch_grad_cam import GradCAM as PGC
    targets = [281, 504, 7]  # mixed per-image targets
    ours = ac.GradCAM(resnet18, layer)(photos_small, targets)
    theirs = pgc(PGC, resnet18, module(resnet18, layer), photos_small, targets)
    assert ours.shape == (3, 96, 128) and ours.dtype == torch.float32
    assert (ours - theirs).abs().max() < 1e-4


def test_gradcam_layer_followed_by_inplace_ops(resnet18, photos_small):
    # layer2.0.bn2's output is next modified in place (out += identity; relu_). A is the layer's
    # output as it left the layer (pytorch-grad-cam is no oracle here: docs/methods.md).
    targets = [281, 504, 7]
    layer = resnet18.layer2[0].bn2
    ours = ac.GradCAM(resnet18, "layer2.0.bn2")(photos_small, targets)
    hand = hand_gradcam(resnet18, layer, (photos_small,), class_score(targets), (96, 128))
    assert (ours.double() - hand).abs().max() < 1e-5


@pytest.mark.parametrize("layer", ["_conv_head", "_bn1", "_blocks.15", "_blocks.10._depthwise_conv"])
def test_gradcam_equals_pytorch_grad_cam_efficientnet(effnet, layer):
    x = photos(224, 288)
    targets = [281, 967, 457]
    ours = ac.GradCAM(effnet, layer)(x, targets)
    theirs = pgc(__import__("pytorch_grad_cam").GradCAM, effnet, module(effnet, layer), x, targets)
    assert ours.shape == (3, 224, 288)
    assert (ours - theirs).abs().max() < 1e-4


def test_gradcam_default_layer_is_the_pooled_feature_map(effnet):
    # target_layer None: the input of the last global average pooling, which on EfficientNet is
    # the output of the shared _swish module at its last (head) call.
    x = photos(224, 224)
    with torch.no_grad():
        top1 = effnet(x).argmax(1)
    gc = ac.GradCAM(effnet)
    assert gc.target_layer_name == "_avg_pooling:input"
    ours = gc(x)
    hand = hand_gradcam(effnet, effnet._swish, (x,), class_score(top1), (224, 224))
    assert (ours.double() - hand).abs().max() < 1e-4
    assert torch.equal(ours, ac.GradCAM(effnet, "_avg_pooling:input")(x, top1))


@pytest.mark.parametrize("layer", ["layer4", "layer3.1"])
def test_gradcampp_equals_eq19_resnet18(resnet18, photos_small, layer):
    targets = [3, 100, 999]
    ours = ac.GradCAMPlusPlus(resnet18, layer)(photos_small, targets)
    hand = hand_gradcampp(resnet18, module(resnet18, layer), (photos_small,), class_score(targets), (96, 128))
    assert (ours.double() - hand).abs().max() < 1e-4


def test_gradcampp_equals_eq19_efficientnet(effnet):
    # Small gradients (pretrained EfficientNet): where pytorch-grad-cam's epsilon matters, so the
    # oracle is Eq. 19 by hand (docs/methods.md has the difference to the peer).
    x = photos(224, 224)
    targets = [281, 967, 457]
    ours = ac.GradCAMPlusPlus(effnet, "_blocks.15")(x, targets)
    hand = hand_gradcampp(effnet, effnet._blocks[15], (x,), class_score(targets), (224, 224))
    assert (ours.double() - hand).abs().max() < 1e-4


class _Scaled(nn.Module):
    """Logits times a constant: large gradients make pytorch-grad-cam's 1e-6 negligible."""

    def __init__(self, net, k):
        super().__init__()
        self.net, self.k = net, k

    def forward(self, x):
        return self.net(x) * self.k


def test_gradcampp_equals_pytorch_grad_cam_with_large_gradients(resnet18, photos_small):
    from pytorch_grad_cam import GradCAMPlusPlus as PGCPP
    model = _Scaled(resnet18, 1e4).eval()
    targets = [3, 9, 281]
    ours = ac.GradCAMPlusPlus(model, "net.layer4")(photos_small, targets)
    theirs = pgc(PGCPP, model, resnet18.layer4, photos_small, targets)
    assert (ours - theirs).abs().max() < 1e-4

