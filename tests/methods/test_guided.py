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
    """Backward through _ReLU6Net one layer at a time with the papers' ReLU rules (docs/methods.md)."""
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



class _FunctionalNet(nn.Module):
    """The same network as _ModuleNet, calling its activations as functions (as DenseNet's last
    ReLU and every GoogLeNet conv do), in place and not, ReLU and ReLU6 alike."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, padding=1)
        self.c2 = nn.Conv2d(6, 8, 3, padding=1)
        self.c3 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = F.relu(self.c1(x), inplace=True)
        x = F.relu6(self.c2(x))
        x = torch.relu(self.c3(x)).mean(dim=(2, 3))
        return self.fc(x)


class _ModuleNet(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f
        self.a1, self.a2, self.a3 = nn.ReLU(inplace=True), nn.ReLU6(), nn.ReLU()

    def forward(self, x):
        f = self.f
        x = self.a3(f.c3(self.a2(f.c2(self.a1(f.c1(x))))))
        return f.fc(x.mean(dim=(2, 3)))


@pytest.mark.parametrize("cls", [ac.Deconvnet, ac.GuidedBackprop])
def test_the_rules_apply_to_functional_relus(cls):
    """Functional relu/relu_/relu6 get the rule exactly as modules do (the module version is the
    one checked against captum and a hand-written backward above)."""
    torch.manual_seed(5)
    f = _FunctionalNet().eval()
    with torch.no_grad():
        f.c2.weight.mul_(6)  # pre-activations above 6: ReLU6's upper bound matters
    x = torch.randn(2, 3, 10, 12)
    t = torch.tensor([0, 3])
    ours = cls(f)(x, t)
    want = cls(_ModuleNet(f).eval())(x, t)
    assert torch.allclose(ours, want, rtol=1e-6, atol=1e-8)
    assert not torch.allclose(ours, ac.Saliency(f)(x, t), atol=1e-6)  # the rule changed something


def test_densenet_guided_backprop_equals_captum_on_the_same_network_with_modules():
    """DenseNet-121 applies F.relu(inplace=True) before pooling: the rule applies there too, so the
    result equals captum's on an equivalent network whose last ReLU is a module."""
    import captum.attr
    torch.manual_seed(0)
    net = torchvision.models.densenet121().eval()
    modular = nn.Sequential(net.features, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), net.classifier).eval()
    x = photos(48, 48)[:2]
    t = torch.tensor([3, 7])
    ours = ac.GuidedBackprop(net)(x, t)
    with pytest.warns(UserWarning):
        theirs = captum.attr.GuidedBackprop(modular).attribute(x, target=t)
    assert (ours - theirs).abs().max() <= 1e-5 * theirs.abs().max()


def test_warns_when_the_rule_cannot_apply():
    gelu = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 2)).eval()
    with pytest.warns(RuntimeWarning, match=r"ReLUs only; its other activations \(gelu\)"):
        ac.GuidedBackprop(gelu)(torch.randn(1, 3, 9, 9))
    none = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    with pytest.warns(RuntimeWarning, match="calls no ReLU or ReLU6"):
        ac.Deconvnet(none)(torch.randn(1, 3, 9, 9))
