"""The compat layer's API surface: constructor options, targets, import rules, the model left
clean, guided backprop, and the utils against pytorch-grad-cam's own (same numbers, same bytes)."""

from __future__ import annotations

import copy
import functools
import sys

import cv2
import numpy as np
import pytest
import torch
import torchvision

import actcam_ext as ac
import actcam_ext.compat.pytorch_grad_cam as C
import actcam_ext.compat.pytorch_grad_cam.utils.image as CI
import actcam_ext.compat.pytorch_grad_cam.utils.model_targets as CT
import actcam_ext.compat.pytorch_grad_cam.utils.reshape_transforms as CR
from compat_oracles import METHODS, grads_left, hooks_left, photos, rgb_photos

P = pytest.importorskip("pytorch_grad_cam", reason="pytorch-grad-cam (grad-cam) is the oracle")
import pytorch_grad_cam.utils.image as PI  # noqa: E402
import pytorch_grad_cam.utils.model_targets as PT  # noqa: E402
import pytorch_grad_cam.utils.reshape_transforms as PR  # noqa: E402



@pytest.fixture(scope="module")
def x():
    return photos(64, 64)


def one_line(excinfo) -> str:
    text = str(excinfo.value)
    assert text.startswith("actcam: ") and "\n" not in text, text
    return text


# ------------------------------------------------------------------------------------------
# Constructor, call, targets
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", METHODS)
def test_call_returns_numpy_maps_and_keeps_the_outputs(resnet18, x, name):
    cam = getattr(C, name)(model=resnet18, target_layers=[resnet18.layer4[-1]])
    maps = cam(input_tensor=x, targets=[CT.ClassifierOutputTarget(3), CT.ClassifierOutputTarget(9)])
    assert isinstance(maps, np.ndarray) and maps.dtype == np.float32 and maps.shape == (2, 64, 64)
    assert 0 <= maps.min() and maps.max() <= 1 and maps.max() > 0.99
    with torch.no_grad():
        assert torch.allclose(cam.outputs, resnet18(x), atol=1e-5)  # cam.outputs: this call's output
    assert np.array_equal(cam.forward(x, [CT.ClassifierOutputTarget(3), CT.ClassifierOutputTarget(9)]), maps)


def test_accepted_and_refused_options(resnet18):
    layers = [resnet18.layer4[-1]]
    for options in ({"use_cuda": False}, {"compute_input_gradient": False}, {"detach": True},
                    {"uses_gradients": True}, {"tta_transforms": None}):
        assert C.GradCAM(resnet18, layers, **options).model is resnet18
    assert C.EigenCAM(resnet18, layers, uses_gradients=False).uses_gradients is False
    for options, needle in [({"use_cuda": True}, "model's device"), ({"detach": False}, "create_graph=True"),
                            ({"compute_input_gradient": True}, "Saliency"),
                            ({"uses_gradients": False}, "own rule"), ({"batch_size": 32}, "unexpected keyword")]:
        with pytest.raises(ValueError) as excinfo:
            C.GradCAM(resnet18, layers, **options)
        assert needle in one_line(excinfo), (options, str(excinfo.value))


def test_the_constructor_puts_the_model_in_eval_mode_as_pytorch_grad_cam_does():
    model = torchvision.models.resnet18().train()
    C.GradCAM(model, [model.layer4])
    assert not model.training


def test_target_layers_must_be_a_list(resnet18, x):
    with pytest.raises(ValueError) as excinfo:
        C.GradCAM(resnet18, resnet18.layer4)
    assert "target_layers must be a list of modules, e.g. [model.layer4[-1]]" in one_line(excinfo)
    by_name = C.GradCAM(resnet18, ["layer4.1"])(x, [CT.ClassifierOutputTarget(3)] * 2)
    by_module = C.GradCAM(resnet18, [resnet18.layer4[1]])(x, [CT.ClassifierOutputTarget(3)] * 2)
    twice = C.GradCAM(resnet18, [resnet18.layer4[1], resnet18.layer4[1]])(x, [CT.ClassifierOutputTarget(3)] * 2)
    assert np.array_equal(by_name, by_module) and np.array_equal(by_module, twice)


def test_bad_targets_are_named(resnet18, x):
    cam = C.GradCAM(resnet18, [resnet18.layer4[-1]])
    cases = [(CT.ClassifierOutputTarget(3), "targets must be a list with one target per image"),
             ([3, 4], "targets[0] is a int, not a target"),
             ([CT.ClassifierOutputTarget(3)], "targets has 1 entries for a batch of 2 images"),
             ([CT.RawScoresOutputTarget()] * 2, "targets[0] (RawScoresOutputTarget) gave [1000] for one image")]
    for targets, needle in cases:
        with pytest.raises(ValueError) as excinfo:
            cam(x, targets)
        assert needle in one_line(excinfo), str(excinfo.value)


def test_a_dict_output_needs_a_wrapper():
    model = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None, num_classes=3).eval()
    mask = np.ones((64, 64), np.float32)
    with pytest.raises(ValueError) as excinfo:
        C.GradCAM(model, [model.backbone.layer4])(photos(64, 64), [CT.SemanticSegmentationTarget(1, mask)] * 2)
    assert "wrap the model so that it returns a tensor, e.g. lambda x: model(x)['out']" in one_line(excinfo)


def test_eigencam_does_not_evaluate_targets(resnet18, x):
    cam = C.EigenCAM(resnet18, [resnet18.layer4[-1]])
    # a target that would fail if it were called: Eigen-CAM reads no score, in either library
    assert np.array_equal(cam(x, [CT.RawScoresOutputTarget()] * 2), cam(x))


def test_works_under_no_grad_and_inference_mode(resnet18, x):
    targets = [CT.ClassifierOutputTarget(3), CT.ClassifierOutputTarget(9)]
    cam = C.GradCAMPlusPlus(resnet18, [resnet18.layer4[-1]])
    plain = cam(x, targets)
    with torch.no_grad():
        assert np.array_equal(cam(x, targets), plain)
        assert not torch.is_grad_enabled()
    with torch.inference_mode():
        assert np.array_equal(cam(x, targets), plain)


def test_a_reshape_name_is_accepted_as_reshape_transform():
    model = torchvision.models.vit_b_16(image_size=64).eval()
    torch.nn.init.normal_(model.heads.head.weight, std=0.02)
    layer = model.encoder.layers[-1].ln_1
    x = photos(64, 64)
    targets = [CT.ClassifierOutputTarget(3)] * 2
    by_name = C.GradCAM(model, [layer], reshape_transform=ac.reshape.vit(prefix=1))(x, targets)
    by_callable = C.GradCAM(model, [layer], reshape_transform=functools.partial(
        CR.vit_reshape_transform, height=4, width=4))(x, targets)
    assert np.array_equal(by_name, by_callable)


# ------------------------------------------------------------------------------------------
# The model left clean; exceptions propagate
# ------------------------------------------------------------------------------------------

def _state(model):
    return [(p.requires_grad, p.grad) for p in model.parameters()], model.training


@pytest.mark.parametrize("grad_mode", [True, False])
def test_model_left_clean_after_success_and_errors(resnet18, x, grad_mode):
    flags = [p.requires_grad for p in resnet18.parameters()]
    x_before = x.clone()
    cam = C.LayerCAM(resnet18, [resnet18.layer3[-1], resnet18.layer4[-1]])

    def bad_target(out):
        raise RuntimeError("a target that fails half-way")

    calls = [lambda: cam(x, [CT.ClassifierOutputTarget(1), CT.ClassifierOutputTarget(2)]),
             lambda: cam(x, [bad_target, bad_target]),
             lambda: cam(x, [CT.ClassifierOutputTarget(1)]),
             lambda: cam(x, [CT.ClassifierOutputTarget(5000)] * 2)]
    for call in calls:
        with torch.set_grad_enabled(grad_mode):
            try:
                call()
            except (ValueError, RuntimeError, IndexError):
                pass
            assert torch.is_grad_enabled() == grad_mode
        assert hooks_left(resnet18) == 0 and grads_left(resnet18) == 0
        assert [p.requires_grad for p in resnet18.parameters()] == flags and not resnet18.training
        assert torch.equal(x, x_before) and not x.requires_grad and x.grad is None


def test_the_context_manager_lets_exceptions_through(resnet18):
    # pytorch-grad-cam's __exit__ prints IndexError and swallows it; here it propagates
    with pytest.raises(IndexError):
        with C.GradCAM(resnet18, [resnet18.layer4[-1]]):
            raise IndexError("raised in the block")


def test_aug_smooth_without_ttach_says_what_is_missing(resnet18, x, monkeypatch):
    monkeypatch.setitem(sys.modules, "ttach", None)  # what an environment without ttach gives
    with pytest.raises(NotImplementedError) as excinfo:
        C.GradCAM(resnet18, [resnet18.layer4[-1]])(x, None, aug_smooth=True)
    assert "pip install ttach" in one_line(excinfo)


# ------------------------------------------------------------------------------------------
# Import rules
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["ScoreCAM", "AblationCAM", "FullGrad", "KPCA_CAM", "ShapleyCAM", "FinerCAM",
                                  "RandomCAM", "FEM", "SegEigenCAM", "DeepFeatureFactorization"])
def test_methods_not_provided_raise_import_error_naming_them(name):
    assert hasattr(P, name)  # pytorch-grad-cam has it
    with pytest.raises(ImportError) as excinfo:
        exec(f"from actcam_ext.compat.pytorch_grad_cam import {name}", {})
    text = one_line(excinfo)
    assert f"pytorch_grad_cam.{name} is not provided" in text and "GradCAM, HiResCAM" in text


def test_unknown_names_raise_import_error_naming_what_to_change():
    for stmt, needles in [
        ("from actcam_ext.compat.pytorch_grad_cam import GradCam", ["no name 'GradCam'", "GradCAM"]),
        ("from actcam_ext.compat.pytorch_grad_cam import BaseCAM", ["LayerMethod"]),
        ("from actcam_ext.compat.pytorch_grad_cam.utils.image import show_factorization_on_image",
         ["show_cam_on_image"]),
        ("from actcam_ext.compat.pytorch_grad_cam.utils.model_targets import SegmentationTarget",
         ["SemanticSegmentationTarget"]),
        ("from actcam_ext.compat import captum", ["actcam_ext.compat.pytorch_grad_cam"]),
    ]:
        with pytest.raises(ImportError) as excinfo:
            exec(stmt, {})
        text = one_line(excinfo)
        assert all(n in text for n in needles), (stmt, text)
    # Python's own protocols still see plain attribute errors
    assert not hasattr(C, "__wrapped__") and not hasattr(CI, "__path__")


def test_the_provided_surface():
    import actcam_ext.compat.pytorch_grad_cam.utils as CU
    for name in ["GradCAM", "HiResCAM", "GradCAMPlusPlus", "XGradCAM", "EigenCAM", "EigenGradCAM", "LayerCAM",
                 "GradCAMElementWise", "GuidedBackpropReLUModel"]:
        assert getattr(C, name).__name__ == name and name in C.__all__
    for module, names in [(CT, ["ClassifierOutputTarget", "ClassifierOutputSoftmaxTarget",
                                "BinaryClassifierOutputTarget", "RawScoresOutputTarget", "SemanticSegmentationTarget",
                                "FasterRCNNBoxScoreTarget"]),
                          (CI, ["show_cam_on_image", "preprocess_image", "deprocess_image", "scale_cam_image"]),
                          (CR, ["vit_reshape_transform", "swinT_reshape_transform", "fasterrcnn_reshape_transform"])]:
        assert all(callable(getattr(module, n)) for n in names)
    assert CU.deprocess_image is CI.deprocess_image and callable(CU.get_2d_projection)


# ------------------------------------------------------------------------------------------
# Guided backprop
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target_category", [None, 7])
def test_guided_backprop_equals_pytorch_grad_cam(resnet18, target_category):
    x = photos(64, 64)[:1]
    theirs_model = copy.deepcopy(resnet18)  # pytorch-grad-cam swaps the model's ReLU modules
    theirs = P.GuidedBackpropReLUModel(theirs_model, device="cpu")(x.clone(), target_category=target_category)
    modules = list(resnet18.modules())
    ours = C.GuidedBackpropReLUModel(resnet18, device="cpu")(x, target_category=target_category)
    assert ours.shape == (64, 64, 3) and ours.dtype == np.float32
    scale = np.abs(theirs).max()
    assert scale > 0 and np.abs(ours - theirs).max() <= 1e-5 * scale
    # the module tree, the parameters and the input are untouched
    assert list(resnet18.modules()) == modules and hooks_left(resnet18) == 0 and grads_left(resnet18) == 0
    assert not x.requires_grad and x.grad is None
    # the guided rule differs from the plain gradient
    plain = ac.Saliency(resnet18)(x, [int(resnet18(x).argmax()) if target_category is None else 7])[0]
    assert np.abs(plain.permute(1, 2, 0).numpy() - ours).max() > 1e-3 * scale


def test_guided_backprop_refuses_what_it_cannot_explain(resnet18):
    gb = C.GuidedBackpropReLUModel(resnet18)
    with pytest.raises(ValueError) as excinfo:
        gb(torch.zeros(3, 64, 64))
    assert "input_img must be a float image batch [B, C, H, W]" in one_line(excinfo)
    assert hooks_left(resnet18) == 0


# ------------------------------------------------------------------------------------------
# utils: the same numbers and bytes as pytorch-grad-cam's
# ------------------------------------------------------------------------------------------

def test_image_helpers_equal_pytorch_grad_cam():
    rgb = rgb_photos(48, 64)[0]
    rng = np.random.default_rng(0)
    for args in [{}, {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}]:
        assert torch.equal(CI.preprocess_image(rgb, **args), PI.preprocess_image(rgb, **args))
    u8 = (rgb * 255).astype(np.uint8)
    assert torch.equal(CI.preprocess_image(u8), PI.preprocess_image(u8))
    g = rng.standard_normal((48, 64, 3)).astype(np.float32)
    assert np.array_equal(CI.deprocess_image(g), PI.deprocess_image(g))
    mask = rng.random((48, 64)).astype(np.float32)
    for kw in [{}, {"use_rgb": True}, {"use_rgb": True, "image_weight": 0.3},
               {"colormap": cv2.COLORMAP_VIRIDIS, "image_weight": 1.0}]:
        ours, theirs = CI.show_cam_on_image(rgb, mask, **kw), PI.show_cam_on_image(rgb, mask, **kw)
        assert ours.dtype == np.uint8 and np.array_equal(ours, theirs), kw
    for bad in [(rgb * 255, mask, {}), (rgb, mask, {"image_weight": 1.5})]:
        with pytest.raises(Exception) as ours_exc:
            CI.show_cam_on_image(bad[0], bad[1], **bad[2])
        with pytest.raises(Exception) as theirs_exc:
            PI.show_cam_on_image(bad[0], bad[1], **bad[2])
        assert str(ours_exc.value).split()[:4] == str(theirs_exc.value).split()[:4]
    cams = rng.random((3, 7, 5)).astype(np.float32) * 3 - 1
    assert np.array_equal(CI.scale_cam_image(cams), PI.scale_cam_image(cams))
    assert np.array_equal(CI.scale_cam_image(cams, (40, 30)), PI.scale_cam_image(cams, (40, 30)))
    vol = rng.random((2, 4, 5, 6)).astype(np.float32)
    assert np.array_equal(CI.scale_cam_image(vol, (12, 10, 8)), PI.scale_cam_image(vol, (12, 10, 8)))
    stack = rng.random((2, 3, 7, 7)).astype(np.float32)
    assert np.array_equal(CI.scale_accross_batch_and_channels(stack, (14, 21)),
                          PI.scale_accross_batch_and_channels(stack, (14, 21)))


def test_reshape_transforms_equal_pytorch_grad_cam():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(2, 197, 8, generator=g)
    assert torch.equal(CR.vit_reshape_transform(tokens), PR.vit_reshape_transform(tokens))
    square = torch.randn(2, 49, 8, generator=g)
    assert torch.equal(CR.swinT_reshape_transform(square), PR.swinT_reshape_transform(square))
    levels = {"0": torch.randn(2, 4, 20, 20, generator=g), "1": torch.randn(2, 4, 10, 10, generator=g),
              "pool": torch.randn(2, 4, 5, 5, generator=g)}
    assert torch.equal(CR.fasterrcnn_reshape_transform(levels), PR.fasterrcnn_reshape_transform(levels))


def test_model_targets_equal_pytorch_grad_cam():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(10, generator=g)
    batch = torch.randn(3, 10, generator=g)
    one = torch.randn(1, generator=g)
    for name, args in [("ClassifierOutputTarget", (4,)), ("ClassifierOutputSoftmaxTarget", (4,)),
                       ("ClassifierOutputReST", (4,)), ("SoftmaxOutputTarget", ()), ("RawScoresOutputTarget", ()),
                       ("FinerWeightedTarget", (4, [1, 2], 0.6))]:
        for out in (logits, batch):
            assert torch.equal(getattr(CT, name)(*args)(out), getattr(PT, name)(*args)(out)), (name, out.shape)
    for category in (0, 1):
        ours = CT.BinaryClassifierOutputTarget(category)(one)
        assert torch.equal(ours, PT.BinaryClassifierOutputTarget(category)(one))
    seg = torch.randn(3, 8, 8, generator=g)
    mask = (np.arange(64).reshape(8, 8) % 3 == 0).astype(np.float32)
    assert torch.equal(CT.SemanticSegmentationTarget(2, mask)(seg), PT.SemanticSegmentationTarget(2, mask)(seg))
    det = {"boxes": torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 20], [30, 30, 40, 40]]),
           "labels": torch.tensor([1, 2, 1]), "scores": torch.tensor([0.9, 0.8, 0.7])}
    ref_boxes, ref_labels = np.array([[1.0, 1, 10, 10], [30, 31, 40, 40], [5, 5, 20, 20]]), [1, 1, 3]
    for d in (det, {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0), "scores": torch.zeros(0)}):
        ours = CT.FasterRCNNBoxScoreTarget(ref_labels, ref_boxes)(d)
        assert torch.equal(ours, PT.FasterRCNNBoxScoreTarget(ref_labels, ref_boxes)(d))
    assert float(CT.FasterRCNNBoxScoreTarget(ref_labels, ref_boxes)(det)) > 1.5  # two boxes matched


def test_projection_equals_pytorch_grad_cam_sign_included():
    # the thin SVD here and pytorch-grad-cam's full one give the same first singular vector
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection as theirs

    from actcam_ext.compat.pytorch_grad_cam.utils.svd_on_activations import get_2d_projection as ours
    rng = np.random.default_rng(0)
    for K, h, w in [(2048, 3, 3), (768, 6, 6), (64, 16, 16), (3, 4, 4), (40, 7, 1)]:
        A = rng.standard_normal((2, K, h, w)).astype(np.float32)
        A[0] = np.maximum(A[0], 0)
        A[1, 0, 0, 0] = np.nan
        a, b = ours(A), theirs(A)
        assert b.dtype == a.dtype == np.float32
        assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max()
