"""The compat layer and the native methods against pytorch-grad-cam on the models users explain:
every provided method x {ResNet-50, ViT-B/16, Swin-T, DeepLabV3, Faster R-CNN}, random init.

- compat: ``actcam_ext.compat.pytorch_grad_cam.<Method>`` equals ``pytorch_grad_cam.<Method>``
  (same layer, targets and reshape transform) within TOL where the raw map spans > MIN_RANGE.
- native, where the definitions coincide (one layer, same layer/targets/reshape): GradCAM,
  HiResCAM, XGradCAM, LayerCAM, GradCAMElementWise equal pytorch-grad-cam; EigenCAM and
  EigenGradCAM equal it up to the SVD sign (and their own signed definition by hand);
  GradCAMPlusPlus equals Eq. 19 by hand in float64 (pytorch-grad-cam adds 1e-6: docs/methods.md).
- several layers: compat against pytorch-grad-cam; the native fusion against its documented
  definition written out by hand (per layer ReLU, resize, min-max; mean or max; min-max).

Each comparison records its largest difference (``record_property``: ``--junitxml`` lists them).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import actcam_ext as ac
import actcam_ext.compat.pytorch_grad_cam as C
import actcam_ext.compat.pytorch_grad_cam.utils.model_targets as CT
import actcam_ext.compat.pytorch_grad_cam.utils.reshape_transforms as CR
from compat_oracles import (EIGEN, METHODS, assert_maps_close, assert_maps_close_up_to_sign, capture,
                            minmax64, native_map, native_principal, peer, peer_pipeline, peer_raw, per_image, photos,
                            ranges, rgb_batch)

P = pytest.importorskip("pytorch_grad_cam", reason="pytorch-grad-cam (grad-cam) is the oracle")
import pytorch_grad_cam.utils.model_targets as PT  # noqa: E402
import pytorch_grad_cam.utils.reshape_transforms as PR  # noqa: E402

SIZE = (96, 96)
NATIVE_SAME = ("GradCAM", "HiResCAM", "XGradCAM", "LayerCAM", "GradCAMElementWise")


class SegmentationOutput(nn.Module):
    """pytorch-grad-cam's segmentation tutorial wrapper: its targets take a tensor per image, so
    the model returns the ``'out'`` logits instead of the dict."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]


@dataclass(eq=False)
class Case:
    """One model as both libraries are asked to explain it."""

    name: str
    model: nn.Module               # what the native methods run
    peer_model: nn.Module          # what pytorch-grad-cam and the compat layer run
    x: torch.Tensor
    layers: list                   # target modules
    peer_targets: list             # pytorch_grad_cam.utils.model_targets objects, one per image
    compat_targets: list           # the compat layer's own target classes, the same values
    native_targets: object         # class ids or an actcam_ext.targets callable
    peer_reshape: object = None    # pytorch-grad-cam's reshape_transform (the compat layer gets the same)
    native_reshape: object = None  # the native methods' reshape=
    _peer: dict = field(default_factory=dict)

    def peer_maps(self, method: str) -> np.ndarray:
        if method not in self._peer:
            self._peer[method] = peer(getattr(P, method), self.peer_model, self.layers, self.x, self.peer_targets,
                                      self.peer_reshape)
        return self._peer[method]

    @functools.cached_property
    def captured(self) -> list:
        return capture(self.peer_model, self.layers, self.x, per_image(self.peer_targets), self.peer_reshape)

    def raw(self, method: str, layer: int = 0) -> np.ndarray:
        A, G = self.captured[layer]
        return peer_raw(method, A, G)

    def spread(self, method: str) -> np.ndarray:
        return np.min([ranges(self.raw(method, i)) for i in range(len(self.layers))], axis=0)


def _classes(ids):
    return [PT.ClassifierOutputTarget(c) for c in ids], [CT.ClassifierOutputTarget(c) for c in ids], list(ids)


def make_case(name: str, request) -> Case:
    x = photos(*SIZE)
    if name == "resnet50":
        m = request.getfixturevalue("resnet50")
        pt, ct, nt = _classes([281, 7])
        return Case(name, m, m, x, [m.layer4[-1]], pt, ct, nt)
    if name == "vit_b16":
        m = request.getfixturevalue("vit_b16")
        pt, ct, nt = _classes([281, 7])
        return Case(name, m, m, x, [m.encoder.layers[-1].ln_1], pt, ct, nt,
                    peer_reshape=functools.partial(PR.vit_reshape_transform, height=6, width=6), native_reshape="vit")
    if name == "swin_t":
        m = request.getfixturevalue("swin_t")
        pt, ct, nt = _classes([281, 7])
        return Case(name, m, m, x, [m.features[-1][-1].norm1], pt, ct, nt,
                    peer_reshape=lambda t: t.permute(0, 3, 1, 2), native_reshape="swin")
    if name == "deeplab":
        m = request.getfixturevalue("deeplab")
        mask = np.zeros(SIZE, np.float32)
        mask[20:70, 10:60] = 1
        return Case(name, m, SegmentationOutput(m), x, [m.backbone.layer4],
                    [PT.SemanticSegmentationTarget(15, mask)] * 2, [CT.SemanticSegmentationTarget(15, mask)] * 2,
                    ac.targets.segmentation(15, mask))
    if name == "frcnn":
        m = request.getfixturevalue("frcnn")
        x = rgb_batch(*SIZE)  # torchvision's detectors normalise [0, 1] images themselves
        with torch.no_grad():
            found = m(x)
        # each image's three best detections are its reference boxes
        boxes = [o["boxes"][:3].numpy() for o in found]
        labels = [o["labels"][:3].numpy() for o in found]
        assert all(len(b) == 3 for b in boxes), "the lowered score threshold must leave detections"
        return Case(name, m, m, x, [m.backbone.body["16"]],
                    [PT.FasterRCNNBoxScoreTarget(lb, bx) for lb, bx in zip(labels, boxes)],
                    [CT.FasterRCNNBoxScoreTarget(lb, bx) for lb, bx in zip(labels, boxes)],
                    ac.targets.detection(boxes, labels))
    raise ValueError(name)


MODELS = ["resnet50", "vit_b16", "swin_t", "deeplab", "frcnn"]


@pytest.fixture(scope="module", params=MODELS)
def case(request):
    return make_case(request.param, request)


@pytest.mark.parametrize("method", METHODS)
def test_compat_equals_pytorch_grad_cam(case, method, record_property):
    theirs = case.peer_maps(method)
    with getattr(C, method)(model=case.peer_model, target_layers=case.layers,
                            reshape_transform=case.peer_reshape) as cam:
        ours = cam(input_tensor=case.x, targets=case.compat_targets)
    assert isinstance(ours, np.ndarray) and ours.dtype == np.float32 and ours.shape == (2, *SIZE)
    assert ours.min() >= 0 and ours.max() <= 1
    record_property("max_diff", assert_maps_close(ours, theirs, case.spread(method), what=f"{case.name} {method}"))


@pytest.mark.parametrize("method", NATIVE_SAME)
def test_native_equals_pytorch_grad_cam(case, method, record_property):
    theirs = case.peer_maps(method)
    ours = getattr(ac, method)(case.model, case.layers[0], reshape=case.native_reshape)(case.x, case.native_targets)
    assert ours.shape == (2, *SIZE) and ours.dtype == torch.float32
    record_property("max_diff", assert_maps_close(ours, theirs, case.spread(method), what=f"{case.name} {method}"))


@pytest.mark.parametrize("method", EIGEN)
def test_native_eigen_equals_pytorch_grad_cam_up_to_sign(case, method, record_property):
    theirs = case.peer_maps(method)
    raw = case.raw(method)
    spread = np.minimum(ranges(raw), ranges(-raw))
    ours = getattr(ac, method)(case.model, case.layers[0], reshape=case.native_reshape)(case.x, case.native_targets)
    d = assert_maps_close_up_to_sign(ours, theirs, peer_pipeline(-raw, SIZE), spread, what=f"{case.name} {method}")
    record_property("max_diff", d)
    # and exactly its own definition: the projection signed so that its largest magnitude is positive
    A, G = case.captured[0]
    hand = native_map(native_principal(A if method == "EigenCAM" else G * A), SIZE)
    assert_maps_close(ours, hand, spread, what=f"{case.name} {method} (own definition)")


def test_native_gradcampp_is_eq19(case, record_property):
    A, G = case.captured[0]
    S = A.sum(axis=(2, 3), keepdims=True)
    den = 2 * G ** 2 + S * G ** 3
    alpha = np.where(den != 0, G ** 2 / np.where(den != 0, den, 1), 0)
    raw = ((np.maximum(G, 0) * alpha).sum(axis=(2, 3))[:, :, None, None] * A).sum(axis=1)
    ours = ac.GradCAMPlusPlus(case.model, case.layers[0], reshape=case.native_reshape)(case.x, case.native_targets)
    record_property("max_diff", assert_maps_close(ours, native_map(raw, SIZE), ranges(raw),
                                                  what=f"{case.name} GradCAMPlusPlus"))


# ------------------------------------------------------------------------------------------
# The same reshape written three ways; several layers; the FPN dict
# ------------------------------------------------------------------------------------------

def test_vit_reshape_name_equals_the_peer_style_callable(vit_b16):
    x = photos(*SIZE)
    layer = vit_b16.encoder.layers[-1].ln_1
    by_name = ac.GradCAM(vit_b16, layer, reshape="vit")(x, [281, 7])
    by_callable = ac.GradCAM(vit_b16, layer, reshape=functools.partial(CR.vit_reshape_transform, height=6,
                                                                          width=6))(x, [281, 7])
    explicit = ac.GradCAM(vit_b16, layer, reshape=ac.reshape.vit(grid=(6, 6), prefix=1))(x, [281, 7])
    assert torch.equal(by_name, by_callable) and torch.equal(by_name, explicit)
    assert float(by_name.amax()) > 0.9999


@pytest.mark.parametrize("method", METHODS)
def test_compat_several_layers_equals_pytorch_grad_cam(resnet50, method, record_property):
    x = photos(*SIZE)
    layers = [resnet50.layer3[-1], resnet50.layer4[-1]]
    pt, ct, _ = _classes([281, 7])
    theirs = peer(getattr(P, method), resnet50, layers, x, pt)
    ours = getattr(C, method)(resnet50, layers)(x, ct)
    spread = np.min([ranges(peer_raw(method, A, G)) for A, G in capture(resnet50, layers, x, per_image(pt))], axis=0)
    record_property("max_diff", assert_maps_close(ours, theirs, spread, what=f"several layers {method}"))


@pytest.mark.parametrize("fuse", ["mean", "max"])
@pytest.mark.parametrize("method", ["GradCAM", "HiResCAM", "LayerCAM", "GradCAMElementWise"])
def test_native_fusion_is_its_documented_definition(resnet50, method, fuse, record_property):
    # per layer: ReLU, resize, min-max (docs/methods.md); then mean + min-max, or max
    x = photos(*SIZE)
    layers = [resnet50.layer2[-1], resnet50.layer3[-1], resnet50.layer4[-1]]
    per_layer = capture(resnet50, layers, x, lambda out: out[:, [281, 7]].diagonal())
    raws = [peer_raw(method, A, G) for A, G in per_layer]
    maps = torch.stack([native_map(r, SIZE) for r in raws])
    hand = minmax64(maps.mean(dim=0)) if fuse == "mean" else maps.amax(dim=0)
    e = getattr(ac, method)(resnet50, layers, fuse=fuse).explain(x, [281, 7])
    spread = np.min([ranges(r) for r in raws], axis=0)
    record_property("max_diff", assert_maps_close(e.maps, hand, spread, what=f"fusion {method} {fuse}"))
    for layer, r in zip(layers, raws):  # the per-layer maps it reports are each layer's own
        name = next(n for n, m in resnet50.named_modules() if m is layer)
        assert_maps_close(e.layer_maps[name], native_map(r, SIZE), ranges(r), what=f"layer {name}")
    # the fused map is not pytorch-grad-cam's (it normalises each layer before resizing); the
    # compat layer is, and that is tested above


def _fpn_no_abs(levels):
    """The library's reshape='fpn' written as pytorch-grad-cam's transform, without its abs()."""
    size = levels["pool"].shape[-2:]
    return torch.cat([F.interpolate(v, size, mode="bilinear") for v in levels.values()], dim=1)


def test_eigencam_on_the_fpn_backbone(frcnn, record_property):
    # pytorch-grad-cam's Faster R-CNN tutorial: Eigen-CAM of the whole backbone (a dict of FPN
    # levels) with its fasterrcnn_reshape_transform; its targets are not evaluated
    x = rgb_batch(*SIZE)
    with torch.no_grad():
        found = frcnn(x)
    pt = [PT.FasterRCNNBoxScoreTarget(o["labels"][:3].numpy(), o["boxes"][:3].numpy()) for o in found]
    ct = [CT.FasterRCNNBoxScoreTarget(o["labels"][:3].numpy(), o["boxes"][:3].numpy()) for o in found]
    theirs = peer(P.EigenCAM, frcnn, [frcnn.backbone], x, pt, PR.fasterrcnn_reshape_transform)
    cam = C.EigenCAM(frcnn, [frcnn.backbone], reshape_transform=CR.fasterrcnn_reshape_transform)
    ours = cam(x, ct)
    # targets=None works too here (pytorch-grad-cam takes an argmax of the output first, which a
    # list of detections does not have): Eigen-CAM reads no score
    assert np.array_equal(cam(x), ours)
    (A, _), = capture(frcnn, [frcnn.backbone], x, None, PR.fasterrcnn_reshape_transform)
    raw = peer_raw("EigenCAM", A, None)
    record_property("max_diff", assert_maps_close(ours, theirs, ranges(raw), what="frcnn fpn EigenCAM"))
    # the native method, with the same callable and with reshape="fpn" (no abs) up to the sign
    spread = np.minimum(ranges(raw), ranges(-raw))
    native = ac.EigenCAM(frcnn, "backbone", reshape=PR.fasterrcnn_reshape_transform)(x)
    assert_maps_close_up_to_sign(native, theirs, peer_pipeline(-raw, SIZE), spread, what="native, same callable")
    theirs_fpn = peer(P.EigenCAM, frcnn, [frcnn.backbone], x, pt, _fpn_no_abs)
    (A2, _), = capture(frcnn, [frcnn.backbone], x, None, _fpn_no_abs)
    raw2 = peer_raw("EigenCAM", A2, None)
    native_fpn = ac.EigenCAM(frcnn, "backbone", reshape="fpn")(x)
    assert_maps_close_up_to_sign(native_fpn, theirs_fpn, peer_pipeline(-raw2, SIZE),
                                 np.minimum(ranges(raw2), ranges(-raw2)), what="native fpn")


def test_gradcam_on_the_fpn_dict_where_pytorch_grad_cam_has_no_gradients(frcnn):
    # pytorch-grad-cam registers its gradient hook only on tensor outputs, so a dict-valued layer
    # gives it no gradients; the library differentiates every level. Checked against the
    # documented definition by hand: the levels concatenated at the coarsest size, Grad-CAM.
    x = rgb_batch(*SIZE)
    with torch.no_grad():
        found = frcnn(x)
    boxes = [o["boxes"][:3].numpy() for o in found]
    labels = [o["labels"][:3].numpy() for o in found]
    pt = [PT.FasterRCNNBoxScoreTarget(lb, bx) for lb, bx in zip(labels, boxes)]
    (A, G), = capture(frcnn, [frcnn.backbone], x, per_image(pt), _fpn_no_abs)
    raw = peer_raw("GradCAM", A, G)
    ours = ac.GradCAM(frcnn, "backbone", reshape="fpn")(x, ac.targets.detection(boxes, labels))
    assert_maps_close(ours, native_map(raw, SIZE), ranges(raw), what="frcnn fpn GradCAM")
    compat = C.GradCAM(frcnn, [frcnn.backbone], reshape_transform=_fpn_no_abs)(
        x, [CT.FasterRCNNBoxScoreTarget(lb, bx) for lb, bx in zip(labels, boxes)])
    assert_maps_close(compat, peer_pipeline(raw, SIZE), ranges(raw), what="compat frcnn fpn GradCAM")


def test_top1_targets_none(resnet50, vit_b16, record_property):
    # targets=None: each image's top class, in both libraries
    x = photos(*SIZE)
    worst = 0.0
    for model, layer, reshape in [(resnet50, resnet50.layer4[-1], None),
                                  (vit_b16, vit_b16.encoder.layers[-1].ln_1,
                                   functools.partial(PR.vit_reshape_transform, height=6, width=6))]:
        theirs = peer(P.GradCAM, model, [layer], x, None, reshape)
        ours = C.GradCAM(model, [layer], reshape_transform=reshape)(x)
        with torch.no_grad():
            top = model(x).argmax(1)
        (A, G), = capture(model, [layer], x, lambda out: out.gather(1, top[:, None])[:, 0], reshape)
        worst = max(worst, assert_maps_close(ours, theirs, ranges(peer_raw("GradCAM", A, G)), what="top-1"))
    record_property("max_diff", worst)


@pytest.mark.parametrize("method", ["GradCAM", "LayerCAM", "XGradCAM"])
def test_eigen_smooth_equals_pytorch_grad_cam(resnet50, method, record_property):
    x = photos(*SIZE)
    pt, ct, _ = _classes([281, 7])
    layers = [resnet50.layer4[-1]]
    theirs = peer(getattr(P, method), resnet50, layers, x, pt, eigen_smooth=True)
    ours = getattr(C, method)(resnet50, layers)(x, ct, eigen_smooth=True)
    (A, G), = capture(resnet50, layers, x, per_image(pt))
    spread = ranges(peer_raw(method, A, G, eigen_smooth=True))
    record_property("max_diff", assert_maps_close(ours, theirs, spread, what=f"eigen_smooth {method}"))


def test_aug_smooth_equals_pytorch_grad_cam(resnet50, record_property):
    pytest.importorskip("ttach", reason="aug_smooth needs ttach")
    x = photos(*SIZE)
    pt, ct, _ = _classes([281, 7])
    layers = [resnet50.layer4[-1]]
    theirs = peer(P.GradCAM, resnet50, layers, x, pt, aug_smooth=True)
    ours = C.GradCAM(resnet50, layers)(x, ct, aug_smooth=True)
    # the raw maps of the un-augmented pass bound the spread (the flips and 0.9/1.1 scalings of a
    # ReLU network scale it by about as much)
    (A, G), = capture(resnet50, layers, x, per_image(pt))
    record_property("max_diff", assert_maps_close(ours, theirs, ranges(peer_raw("GradCAM", A, G)), what="aug_smooth"))
    plain = C.GradCAM(resnet50, layers)(x, ct)
    assert np.abs(ours - plain).max() > 1e-2  # the augmentations did change the map
