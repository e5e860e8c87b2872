"""timm transformers (ViT, DeiT with two prefix tokens, Swin), random init: the native reshapes
(``reshape="vit"`` with the grid inferred, ``"swin"``) and the compat layer against
pytorch-grad-cam given the equivalent reshape callable; the grid inference and its one-line
refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import actcam_ext as ac
import actcam_ext.compat.pytorch_grad_cam as C
from compat_oracles import (assert_maps_close, assert_maps_close_up_to_sign, capture, peer, peer_pipeline, peer_raw,
                            per_image, photos, ranges)

timm = pytest.importorskip("timm", reason="the timm models are what these tests explain")
P = pytest.importorskip("pytorch_grad_cam", reason="pytorch-grad-cam (grad-cam) is the oracle")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget as PTarget  # noqa: E402

from actcam_ext.compat.pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget as CTarget  # noqa: E402

SIZE = (96, 96)
CLASSES = [281, 7]


def _timm(name, **kw):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return timm.create_model(name, pretrained=False, **kw).eval()


@pytest.fixture(scope="module")
def vit_tiny():
    return _timm("vit_tiny_patch16_224", img_size=96)


@pytest.fixture(scope="module")
def deit_distilled():
    return _timm("deit_tiny_distilled_patch16_224", img_size=96)


@pytest.fixture(scope="module")
def swin_tiny():
    # 96 x 96 with 3 x 3 windows: stages of 24, 12, 6 and 3 patches a side
    return _timm("swin_tiny_patch4_window7_224", img_size=96, window_size=3)


def tokens_to_grid(prefix: int, h: int, w: int):
    """What a pytorch-grad-cam user writes for these models: drop the prefix tokens, lay the rest
    out row by row."""
    return lambda t: t[:, prefix:].reshape(t.shape[0], h, w, t.shape[2]).permute(0, 3, 1, 2)


def channels_last(t):
    return t.permute(0, 3, 1, 2)


CASES = {
    "vit_tiny": (lambda m: m.blocks[-1].norm1, "vit", tokens_to_grid(1, 6, 6)),
    "deit_distilled": (lambda m: m.blocks[-1].norm1, "vit", tokens_to_grid(2, 6, 6)),
    "swin_tiny": (lambda m: m.layers[-1].blocks[-1].norm1, "swin", channels_last),
}


@pytest.mark.parametrize("method", ["GradCAM", "HiResCAM", "LayerCAM", "EigenCAM"])
@pytest.mark.parametrize("name", list(CASES))
def test_timm_native_and_compat_equal_pytorch_grad_cam(name, method, request, record_property):
    model = request.getfixturevalue(name)
    pick, native_reshape, peer_reshape = CASES[name]
    layer = pick(model)
    x = photos(*SIZE)
    theirs = peer(getattr(P, method), model, [layer], x, [PTarget(c) for c in CLASSES], peer_reshape)
    (A, G), = capture(model, [layer], x, per_image([PTarget(c) for c in CLASSES]), peer_reshape)
    raw = peer_raw(method, A, G)
    compat = getattr(C, method)(model, [layer], reshape_transform=peer_reshape)(x, [CTarget(c) for c in CLASSES])
    worst = assert_maps_close(compat, theirs, ranges(raw), what=f"compat {name} {method}")
    native = getattr(ac, method)(model, layer, reshape=native_reshape)(x, CLASSES)
    if method == "EigenCAM":
        spread = np.minimum(ranges(raw), ranges(-raw))
        worst = max(worst, assert_maps_close_up_to_sign(native, theirs, peer_pipeline(-raw, SIZE), spread,
                                                        what=f"native {name} {method}"))
    else:
        worst = max(worst, assert_maps_close(native, theirs, ranges(raw), what=f"native {name} {method}"))
    record_property("max_diff", worst)


@pytest.mark.parametrize("name, prefix", [("vit_tiny", 1), ("deit_distilled", 2)])
def test_grid_inference_finds_the_prefix_tokens(name, prefix, request):
    # 96 x 96 in 16-pixel patches: 36 patch tokens after 1 class token (ViT) or a class and a
    # distillation token (DeiT); the inference finds them from the token count and the input size
    model = request.getfixturevalue(name)
    x = photos(*SIZE)
    inferred = ac.GradCAM(model, "blocks.11.norm1", reshape="vit")(x, CLASSES)
    explicit = ac.GradCAM(model, "blocks.11.norm1", reshape=ac.reshape.vit(grid=(6, 6), prefix=prefix))(x, CLASSES)
    callable_ = ac.GradCAM(model, "blocks.11.norm1", reshape=tokens_to_grid(prefix, 6, 6))(x, CLASSES)
    assert torch.equal(inferred, explicit) and torch.equal(inferred, callable_)
    assert float(inferred.amax()) > 0.9999


def test_grid_inference_on_a_non_square_input():
    model = _timm("vit_tiny_patch16_224", img_size=(64, 96))
    x = photos(64, 96)
    inferred = ac.GradCAM(model, "blocks.11.norm1", reshape="vit")(x, CLASSES)
    explicit = ac.GradCAM(model, "blocks.11.norm1", reshape=ac.reshape.vit(grid=(4, 6), prefix=1))(x, CLASSES)
    assert inferred.shape == (2, 64, 96) and torch.equal(inferred, explicit)


def _one_line_user_error(excinfo) -> str:
    text = str(excinfo.value)
    assert isinstance(excinfo.value, ac.UserError) and text.startswith("actcam: ") and "\n" not in text
    return text


def test_grid_inference_needs_fewer_prefix_tokens_than_patches():
    # 64 x 64: 17 tokens would also fit 2 x 2 patches after 13 tokens and 1 x 1 after 16, but a
    # prefix (class, distillation, register tokens) is fewer tokens than the patches it sums up.
    model = _timm("vit_tiny_patch16_224", img_size=64)
    x = photos(64, 64)
    inferred = ac.GradCAM(model, "blocks.11.norm1", reshape="vit")(x, CLASSES)
    assert torch.equal(inferred, ac.GradCAM(model, "blocks.11.norm1", reshape=ac.reshape.vit(grid=(4, 4)))(x, CLASSES))


def test_grid_inference_refuses_an_ambiguous_token_count():
    # 224 x 224 in 28-pixel patches: 65 tokens fit 8 x 8 patches after 1 prefix token, and 7 x 7
    # (32-pixel patches) after 16
    model = _timm("vit_tiny_patch16_224", img_size=224, patch_size=28)
    x = photos(224, 224)
    with pytest.raises(ValueError) as excinfo:
        ac.GradCAM(model, "blocks.11.norm1", reshape="vit")(x, CLASSES)
    text = _one_line_user_error(excinfo)
    assert "65 tokens for a 224x224 input fit 2 (8x8 after 1, 7x7 after 16) grids" in text
    assert "grid=(h, w)" in text and "prefix=k" in text
    assert model.blocks[-1].norm1._forward_hooks == {}  # refused after the forward: hooks gone
    fixed = ac.GradCAM(model, "blocks.11.norm1", reshape=ac.reshape.vit(prefix=1))(x, CLASSES)
    assert torch.equal(fixed, ac.GradCAM(model, "blocks.11.norm1", reshape=ac.reshape.vit(grid=(8, 8)))(x, CLASSES))


def test_grid_inference_refuses_when_no_grid_fits(vit_tiny):
    with pytest.raises(ValueError) as excinfo:
        ac.GradCAM(vit_tiny, "blocks.11.norm1", reshape=ac.reshape.vit(prefix=3))(photos(*SIZE), CLASSES)
    assert "37 tokens for a 96x96 input fit no grids" in _one_line_user_error(excinfo)
    with pytest.raises(ValueError) as excinfo:
        ac.GradCAM(vit_tiny, "blocks.11.norm1", reshape=ac.reshape.vit(grid=(7, 7)))(photos(*SIZE), CLASSES)
    assert "37 tokens do not hold a 7x7 grid" in _one_line_user_error(excinfo)


def test_reshape_of_the_wrong_kind_is_named(swin_tiny, vit_tiny):
    x = photos(*SIZE)
    with pytest.raises(ValueError) as excinfo:
        ac.GradCAM(swin_tiny, "layers.3.blocks.1.norm1", reshape="vit")(x, CLASSES)
    assert "reshape 'vit' takes tokens [B, N, C], got [2, 3, 3, 768]" in _one_line_user_error(excinfo)
    with pytest.raises(ValueError) as excinfo:
        ac.GradCAM(vit_tiny, "blocks.11.norm1")(x, CLASSES)  # tokens without a reshape
    assert "pass reshape='vit'" in _one_line_user_error(excinfo)


def test_the_last_blocks_output_has_no_patch_gradient(vit_tiny):
    # docs/transformers.md, "Which layer": a class-token classifier reads only the class token
    # after the last block, so Grad-CAM there is all zeros; the last block's norm1 is the target
    x = photos(*SIZE)
    after = ac.GradCAM(vit_tiny, "blocks.11", reshape="vit")(x, CLASSES)
    before = ac.GradCAM(vit_tiny, "blocks.11.norm1", reshape="vit")(x, CLASSES)
    assert float(after.abs().max()) == 0.0 and float(before.amin(dim=(1, 2)).max()) == 0.0
    assert bool((before.amax(dim=(1, 2)) > 0.9999).all())
