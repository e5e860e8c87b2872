"""CAM: equal to Grad-CAM on GAP+FC networks, no backward at all, and its structure check."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import actcam_ext as ac
from method_oracles import (class_score, hand_cam, hand_gradcam, hand_gradcampp, module, pgc, photos)

# ------------------------------------------------------------------------------------------
# CAM
# ------------------------------------------------------------------------------------------

def test_cam_equals_gradcam_on_gap_fc_resnet18(resnet18, photos_small):
    targets = [1, 2, 3]
    cam = ac.CAM(resnet18)
    assert cam.target_layer_name == "avgpool:input" and cam.fc_layer_name == "fc"  # input of the GAP
    a = cam(photos_small, targets)
    b = ac.GradCAM(resnet18, "layer4")(photos_small, targets)
    c = ac.CAM(resnet18, target_layer="layer4", fc_layer="fc")(photos_small, targets)
    assert a.shape == (3, 96, 128)
    assert (a - b).abs().max() < 1e-5
    assert torch.equal(a, c)


def test_cam_equals_gradcam_on_shared_activation_last_call(effnet):
    # EfficientNet-Lite applies one nn.ReLU6 module (_swish) to the stem and the head: a target
    # module called several times is captured at its last call, the head's features.
    x = photos(224, 224)
    cam = ac.CAM(effnet)(x, top_k=2)
    gc = ac.GradCAM(effnet, "_swish")(x, top_k=2)
    assert cam.shape == (3, 2, 224, 224)
    assert (cam - gc).abs().max() < 1e-4
    hand = hand_gradcam(effnet, effnet._swish, (x,), class_score(effnet(x).argmax(1)), (224, 224))
    assert (ac.GradCAM(effnet, "_swish")(x).double() - hand).abs().max() < 1e-4


def test_cam_runs_no_backward_and_gradcam_records_only_the_head(resnet18, photos_small):
    saved = []

    def pack(t):
        saved.append(t.shape)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        ac.CAM(resnet18)(photos_small)
    assert saved == []  # not one tensor kept for a backward: no graph at all
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        ac.GradCAM(resnet18, "layer4")(photos_small)
    # only avgpool -> flatten -> fc after layer4 is recorded, not the ~60 ops of the body
    assert 0 < len(saved) <= 4, saved


class _FlattenNet(nn.Module):
    """Conv features flattened into a linear layer: no global pooling, so no CAM."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8 * 8 * 8, 5)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


class _MaxPoolNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(self.features(x).amax(dim=(2, 3)))


def test_cam_without_gap_fc_structure_suggests_gradcam():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    for net in (_FlattenNet().eval(), _MaxPoolNet().eval()):
        with pytest.raises(ValueError, match="GradCAM"):
            ac.CAM(net)(x)
    with pytest.raises(ValueError, match="GradCAM"):
        ac.CAM(nn.Sequential(nn.Conv2d(3, 4, 3)))
    with pytest.raises(ValueError, match="callable.*GradCAM"):
        ac.CAM(torchvision.models.resnet18())(x, targets=lambda out: out[:, 0])



def test_cam_sees_the_layer_output_before_in_place_ops():
    """A ResNeXt block adds the identity to bn3's output and applies an in-place ReLU: CAM must
    weight bn3's own output, which the classifier does not pool, and so refuse; a copy, not a
    reference to storage the block rewrites, is what the structure check compares."""
    net = torchvision.models.resnext50_32x4d().eval()
    x = photos(64, 64)[:2]
    with pytest.raises(ac.UserError, match="not the spatial mean of target layer 'layer4.2.bn3'.*GradCAM"):
        ac.CAM(net, "layer4.2.bn3")(x)
    # DenseNet applies F.relu(..., inplace=True) to features.norm5 before pooling: the same.
    dense = torchvision.models.densenet121().eval()
    with pytest.raises(ac.UserError, match="not the spatial mean of target layer 'features.norm5'"):
        ac.CAM(dense, "features.norm5")(x)
    maps = ac.CAM(net, "layer4")(x)  # the block's output is what the pooling reads
    assert torch.equal(maps, ac.CAM(net)(x))
