"""Saliency, Deconvnet, guided backprop and Guided Grad-CAM against captum and a hand-written backward."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import actcam_ext as ac
from method_oracles import (class_score, hand_cam, hand_gradcam, hand_gradcampp, module, pgc, photos)

# ------------------------------------------------------------------------------------------
# guided family
# ------------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients:UserWarning")
@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU:UserWarning")
@pytest.mark.parametrize("ours_cls, captum_name, kwargs", [
    (ac.Saliency, "Saliency", {"abs": False}),
    (ac.Deconvnet, "Deconvolution", {}),
    (ac.GuidedBackprop, "GuidedBackprop", {}),
])
def test_guided_family_equals_captum(resnet18, ours_cls, captum_name, kwargs):
    import captum.attr
    x = photos(64, 80)
    targets = torch.tensor([281, 5, 999])
    ours = ours_cls(resnet18)(x, targets)  # resnet18: in-place nn.ReLU, one module used twice a block
    theirs = getattr(captum.attr, captum_name)(resnet18).attribute(x, target=targets, **kwargs)
    assert ours.shape == (3, 3, 64, 80) and ours.dtype == torch.float32
    scale = theirs.abs().max()
    assert scale > 0
    assert (ours - theirs).abs().max() <= 1e-5 * scale


class _ReLU6Net(nn.Module):
    def __init__(self, inplace):
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, padding=1)
        self.a1 = nn.ReLU6(inplace=inplace)
        self.c2 = nn.Conv2d(6, 8, 3, padding=1)
        self.a2 = nn.ReLU6(inplace=inplace)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.a2(self.c2(self.a1(self.c1(x)))).mean(dim=(2, 3)))


def _hand_rule_grad(net, x, t, rule):
    """Backward through _ReLU6Net one layer at a time with the papers.md ReLU rule."""
    x = x.detach().requires_grad_(True)
    z1 = net.c1(x)
    a1 = z1.detach().clamp(0, 6).requires_grad_(True)
    z2 = net.c2(a1)
    a2 = z2.detach().clamp(0, 6).requires_grad_(True)
    s = net.fc(a2.mean(dim=(2, 3))).gather(1, t[:, None]).sum()

    def apply(G, z):
        if rule == "plain":
            return G * ((z > 0) & (z < 6))
        if rule == "deconv":
            return G * (G > 0)
        return G * ((z > 0) & (z < 6)) * (G > 0)

    (g,) = torch.autograd.grad(s, a2)
    (g,) = torch.autograd.grad(z2, a1, apply(g, z2))
    (g,) = torch.autograd.grad(z1, x, apply(g, z1))
    return g


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("cls, rule", [(ac.Saliency, "plain"), (ac.Deconvnet, "deconv"),
                                       (ac.GuidedBackprop, "guided")])
def test_relu6_rules_equal_hand_backward(inplace, cls, rule):
    torch.manual_seed(1)
    net = _ReLU6Net(inplace).eval()
    with torch.no_grad():  # push some pre-activations above 6 so the upper bound matters
        net.c1.weight.mul_(8)
    x = torch.randn(3, 3, 12, 10)
    t = torch.tensor([0, 3, 1])
    with torch.no_grad():
        z1 = net.c1(x)
    assert (z1 > 6).any() and (z1 < 0).any()
    ours = cls(net)(x, t)
    hand = _hand_rule_grad(net, x, t, rule)
    assert torch.allclose(ours, hand, rtol=1e-5, atol=1e-7)


def test_guided_gradcam_is_guided_backprop_times_gradcam(resnet18, photos_small):
    targets = [4, 8, 15]
    ggc = ac.GuidedGradCAM(resnet18, "layer4")(photos_small, targets)
    gb = ac.GuidedBackprop(resnet18)(photos_small, targets)
    gc = ac.GradCAM(resnet18, "layer4")(photos_small, targets)
    assert ggc.shape == (3, 3, 96, 128)
    assert torch.allclose(ggc, gb * gc[:, None], rtol=1e-6, atol=0)
    # top-1 default resolves the classes once and uses them in both passes
    top1 = resnet18(photos_small).argmax(1)
    assert torch.allclose(ac.GuidedGradCAM(resnet18, "layer4")(photos_small),
                          ac.GuidedGradCAM(resnet18, "layer4")(photos_small, top1))

