"""Reshapes (tokens, channels-last, FPN dicts) and the dense-prediction targets, on small inputs;
the matrix against pytorch-grad-cam on real architectures is in tests/compat."""

import numpy as np
import pytest
import torch
import torchvision

import actcam_ext as ac
from method_oracles import hand_activation_grads, minmax64

reshape = ac.reshape


def test_vit_grid_is_inferred_when_one_grid_fits():
    t = torch.arange(2 * 197 * 5, dtype=torch.float32).reshape(2, 197, 5)
    out = reshape.vit()(t, input_size=(224, 224))
    assert out.shape == (2, 5, 14, 14)
    assert torch.equal(out[:, :, 0, 1], t[:, 2])  # the class token is dropped, patches row by row
    assert reshape.vit()(torch.zeros(1, 198, 3), input_size=(224, 224)).shape == (1, 3, 14, 14)  # DeiT: 2 tokens
    assert reshape.vit()(torch.zeros(1, 1 + 8 * 12, 3), input_size=(128, 192)).shape == (1, 3, 8, 12)
    assert reshape.vit(grid=(7, 7), prefix=4)(torch.zeros(1, 53, 3)).shape == (1, 3, 7, 7)
    with pytest.raises(ac.UserError, match=r"fit no grids.*reshape.vit\(grid="):
        reshape.vit()(torch.zeros(1, 150, 3), input_size=(224, 224))
    with pytest.raises(ac.UserError, match="takes tokens"):
        reshape.vit()(torch.zeros(1, 3, 4, 4), input_size=(8, 8))
    with pytest.raises(ac.UserError, match="unknown reshape 'vits'"):
        ac.GradCAM(torchvision.models.resnet18(), "layer4", reshape="vits")


def test_swin_and_fpn():
    t = torch.randn(2, 7, 7, 16)
    assert torch.equal(reshape.swin()(t), t.permute(0, 3, 1, 2))
    feats = {"0": torch.randn(1, 4, 16, 16), "1": torch.randn(1, 4, 8, 8), "pool": torch.randn(1, 4, 4, 4)}
    out = reshape.fpn()(feats)
    assert out.shape == (1, 12, 4, 4) and torch.equal(out[:, 8:], feats["pool"])
    assert reshape.fpn("0")(feats).shape == (1, 12, 16, 16)
    with pytest.raises(ac.UserError, match="no level 'p7'"):
        reshape.fpn("p7")(feats)


def test_gradcam_of_tokens_equals_gradcam_of_the_reshaped_map():
    """A toy ViT-like model: a layer outputs tokens [B, 1+16, C]; Grad-CAM with reshape='vit'
    equals Grad-CAM written out by hand on the reshaped activations and gradients."""
    torch.manual_seed(0)

    class Tokens(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Conv2d(3, 8, 4, stride=4)
            self.block = torch.nn.Linear(8, 8)
            self.head = torch.nn.Linear(8, 5)

        def forward(self, x):
            t = self.embed(x).flatten(2).transpose(1, 2)  # [B,16,8]
            t = torch.cat([t.mean(dim=1, keepdim=True), t], dim=1)  # a class token first
            t = self.block(t).relu()
            return self.head(t[:, 1:].mean(dim=1) + t[:, 0])

    net = Tokens().eval()
    x = torch.randn(2, 3, 16, 16)
    ours = ac.GradCAM(net, "block", reshape="vit")(x, [1, 3])
    T, g = hand_activation_grads(net, net.block, (x,), lambda out: out.gather(1, torch.tensor([[1], [3]]))[:, 0])
    A = T[:, 1:].reshape(2, 4, 4, 8).permute(0, 3, 1, 2)
    G = g[:, 1:].reshape(2, 4, 4, 8).permute(0, 3, 1, 2)
    m = torch.relu(torch.einsum("bk,bkhw->bhw", G.mean(dim=(2, 3)), A))[:, None]
    hand = minmax64(torch.nn.functional.interpolate(m, size=(16, 16), mode="bilinear", align_corners=False)[:, 0])
    assert (ours.double() - hand).abs().max() < 1e-5
    with pytest.raises(ac.UserError, match="pass reshape='vit' for tokens"):
        ac.GradCAM(net, "block")(x)


def test_segmentation_target_scores_the_masked_logits():
    torch.manual_seed(0)
    seg = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None, num_classes=4).eval()
    x = torch.randn(2, 3, 64, 64)
    mask = np.zeros((64, 64), np.float32)
    mask[10:40, 20:50] = 1
    target = ac.targets.segmentation(2, mask)
    with torch.no_grad():
        out = seg(x)
    assert torch.allclose(target(out), (out["out"][:, 2] * torch.from_numpy(mask)).sum(dim=(1, 2)))
    maps = ac.GradCAM(seg, "backbone.layer4")(x, targets=target)
    assert maps.shape == (2, 64, 64)
    with pytest.raises(ac.UserError, match="category 9 is out of range"):
        ac.targets.segmentation(9, mask)(out)
    with pytest.raises(ac.UserError, match="does not fit the output"):
        ac.targets.segmentation(1, mask[:32])(out)
    # one category per image, with one mask per image
    masks = torch.stack([torch.from_numpy(mask), 1 - torch.from_numpy(mask)])
    per_image = ac.targets.segmentation([2, 3], masks)(out)
    assert torch.equal(per_image, torch.stack([ac.targets.segmentation(2, masks)(out)[0],
                                               ac.targets.segmentation(3, masks)(out)[1]]))
    with pytest.raises(ac.UserError, match="3 categories for a batch of 2 images"):
        ac.targets.segmentation([1, 2, 3], mask)(out)
    with pytest.raises(ac.UserError, match="category must be a class id or B class ids"):
        ac.targets.segmentation(1.5, mask)


def test_detection_target_follows_the_best_overlapping_box():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    outputs = [{"boxes": boxes, "labels": torch.tensor([3, 5]), "scores": torch.tensor([0.9, 0.4])},
               {"boxes": boxes[:0], "labels": torch.tensor([], dtype=torch.long), "scores": torch.tensor([])}]
    target = ac.targets.detection([[[0, 0, 10, 9]], [[0, 0, 10, 10]]], [[3], [3]])
    s = target(outputs)
    assert torch.allclose(s, torch.tensor([0.9 + 0.9, 0.0]))  # IoU 0.9 + score 0.9; no detection: 0
    # reference boxes as tensors, even ones with a graph (detections of a forward run with grad)
    ref = torch.tensor([[0.0, 0.0, 10.0, 9.0]], requires_grad=True)
    as_tensors = ac.targets.detection([ref, ref.detach()], [torch.tensor([3]), torch.tensor([3])])
    assert torch.equal(as_tensors(outputs), s)
    wrong_label = ac.targets.detection([[0, 0, 10, 10]], [5])
    assert wrong_label(outputs[:1]).item() == 0.0
    with pytest.raises(ac.UserError, match="a detector's output"):
        target(torch.zeros(2, 5))
