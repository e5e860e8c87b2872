"""The CAM family against the papers' formulas written out in float64 by hand: XGrad-CAM,
HiResCAM, Grad-CAM element-wise, LayerCAM, Eigen-CAM, Eigen-Grad-CAM, eigen_smooth; several
target layers fused; maps that stay differentiable (create_graph)."""

import pytest
import torch
import torch.nn.functional as F

import actcam_ext as ac
from method_oracles import class_score, hand_activation_grads, hand_gradcam, minmax64, module, photos

TARGETS = [281, 504, 7]


def _resized(m, size):
    return minmax64(F.interpolate(torch.relu(m)[:, None], size=size, mode="bilinear", align_corners=False)[:, 0])


def _hand_projection(E):
    """E [B,K,h,w] float64 -> first principal component projection [B,h,w], salient side positive."""
    out = []
    for e in E:
        K, h, w = e.shape
        M = e.reshape(K, -1).T
        M = M - M.mean(dim=0)
        _, _, vh = torch.linalg.svd(M, full_matrices=False)
        p = M @ vh[0]
        if p.min().abs() > p.max().abs():
            p = -p
        out.append(p.reshape(h, w))
    return torch.stack(out)


def _hand(method, model, layer, x, targets, size):
    A, g = hand_activation_grads(model, module(model, layer), (x,), class_score(targets))
    if method == "xgradcam":
        S = A.sum(dim=(2, 3))
        w = torch.where(S != 0, (g * A).sum(dim=(2, 3)) / torch.where(S != 0, S, torch.ones_like(S)), 0.0)
        m = torch.einsum("bk,bkhw->bhw", w, A)
    elif method == "hirescam":
        m = (g * A).sum(dim=1)
    elif method == "gradcam-elementwise":
        m = torch.relu(g * A).sum(dim=1)
    elif method == "layercam":
        m = (torch.relu(g) * A).sum(dim=1)
    elif method == "eigencam":
        m = _hand_projection(A)
    elif method == "eigen-gradcam":
        m = _hand_projection(g * A)
    return _resized(m, size)


@pytest.mark.parametrize("name", ["xgradcam", "hirescam", "gradcam-elementwise", "layercam", "eigencam",
                                  "eigen-gradcam"])
@pytest.mark.parametrize("layer", ["layer4", "layer3"])
def test_family_equals_the_formula(resnet18, photos_small, name, layer):
    ours = ac.methods.make_method(name, resnet18, layer)(photos_small, TARGETS)
    hand = _hand(name, resnet18, layer, photos_small, TARGETS, (96, 128))
    assert ours.shape == (3, 96, 128) and ours.dtype == torch.float32
    assert (ours.double() - hand).abs().max() < 1e-4


@pytest.mark.parametrize("name", ["gradcam", "xgradcam", "hirescam", "layercam"])
def test_several_classes_in_one_call_equal_separate_calls(resnet18, photos_small, name):
    method = ac.methods.make_method(name, resnet18, "layer4")
    pairs = [[281, 7], [504, 3], [7, 9]]
    both = method(photos_small, pairs)
    for c in range(2):
        one = method(photos_small, [t[c] for t in pairs])
        assert (both[:, c] - one).abs().max() < 1e-5


def test_eigen_smooth_replaces_the_channel_sum_by_the_projection(resnet18, photos_small):
    A, g = hand_activation_grads(resnet18, resnet18.layer4, (photos_small,), class_score(TARGETS))
    w = g.mean(dim=(2, 3))
    hand = _resized(_hand_projection(w[:, :, None, None] * A), (96, 128))
    ours = ac.GradCAM(resnet18, "layer4").explain(photos_small, TARGETS, eigen_smooth=True).maps
    assert (ours.double() - hand).abs().max() < 1e-4
    hand = _resized(_hand_projection(torch.relu(g) * A), (96, 128))
    ours = ac.LayerCAM(resnet18, "layer4").explain(photos_small, TARGETS, eigen_smooth=True).maps
    assert (ours.double() - hand).abs().max() < 1e-4


@pytest.mark.parametrize("fuse", ["mean", "max"])
def test_several_layers_fuse_the_per_layer_maps(resnet18, photos_small, fuse):
    layers = ["layer2", "layer3", "layer4"]
    e = ac.GradCAM(resnet18, layers, fuse=fuse).explain(photos_small, TARGETS)
    per = [hand_gradcam(resnet18, module(resnet18, n), (photos_small,), class_score(TARGETS), (96, 128))
           for n in layers]
    assert list(e.layer_maps) == layers
    for n, p in zip(layers, per):
        assert (e.layer_maps[n].double() - p).abs().max() < 1e-4
    stacked = torch.stack(per)
    hand = minmax64(stacked.mean(dim=0)) if fuse == "mean" else stacked.amax(dim=0)
    assert (e.maps.double() - hand).abs().max() < 1e-4
    assert ac.GradCAM(resnet18, layers).target_layer_name == "layer2,layer3,layer4"
    with pytest.raises(ac.UserError, match="fuse must be one of mean, max"):
        ac.GradCAM(resnet18, layers, fuse="sum")
    with pytest.raises(ac.UserError, match="CAM explains one layer"):
        ac.CAM(resnet18, layers)


def test_create_graph_maps_train(resnet18, photos_small):
    """create_graph=True: the same maps, now differentiable with respect to the parameters."""
    for cls in (ac.CAM, ac.GradCAM, ac.GradCAMPlusPlus, ac.LayerCAM):
        method = cls(resnet18, "layer4")
        plain = method(photos_small, TARGETS)
        maps = method.explain(photos_small, TARGETS, create_graph=True).maps
        assert maps.requires_grad and (maps.detach() - plain).abs().max() < 1e-5, cls
        loss = maps[:, :48].mean()
        grads = torch.autograd.grad(loss, [resnet18.layer4[1].conv2.weight, resnet18.fc.weight], allow_unused=True)
        assert grads[0] is not None and bool(grads[0].abs().sum() > 0), cls
        assert all(p.grad is None for p in resnet18.parameters())
