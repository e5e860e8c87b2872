"""``activation_maps``: a layer's channels, exactly, on random-weight ResNet-18 and the real
EfficientNet-Lite0, ranked by mean activation, Grad-CAM weight or contribution.

The oracle of the maps is a plain forward hook: the layer's tensor, its channels sorted by the
ranking (stable, ties to the lower index), each min-max normalised in float32.
"""

import copy
import warnings

import cv2
import numpy as np
import pytest
import torch

import actcam_ext as ac
from actcam_ext.models import load_model
from method_oracles import hand_activation_grads


@pytest.fixture(scope="module")
def lite():
    """The built-in model as ``load_model`` gives it (BatchNorm folded, channels_last on the CPU)."""
    return load_model(None, "cpu")[0]


def hooked(model, module, inputs, use_input=False):
    """The tensor at ``module``'s last call, by a plain hook and an ordinary no-grad forward."""
    store = {}
    if use_input:
        h = module.register_forward_pre_hook(lambda m, args: store.__setitem__("A", args[0].detach().clone()))
    else:
        h = module.register_forward_hook(lambda m, args, out: store.__setitem__("A", out.detach().clone()))
    try:
        with torch.no_grad():
            out = model(inputs)
    finally:
        h.remove()
    return store["A"], out


def normalised(A, channels):
    """Channels [B,top] of A [B,K,h,w], each min-max normalised in float32 (constant -> zeros)."""
    B, K, h, w = A.shape
    chosen = A.float().gather(1, channels[:, :, None, None].expand(-1, -1, h, w))
    lo, hi = chosen.amin(dim=(2, 3), keepdim=True), chosen.amax(dim=(2, 3), keepdim=True)
    return torch.where(hi > lo, (chosen - lo) / (hi - lo), torch.zeros_like(chosen))


def expected(A, scores, top):
    """(maps, channels, scores) the contract gives for the tensor A and ranking scores [B,K]."""
    rank = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :top]
    return normalised(A, rank), rank, scores.gather(1, rank)


def assert_exact(am, maps, channels, scores):
    assert am.maps.dtype == torch.float32 and am.channels.dtype == torch.int64
    assert torch.equal(am.channels, channels)
    assert torch.equal(am.scores, scores)
    assert torch.equal(am.maps, maps)


def no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks for m in model.modules())


# --------------------------------------------------------------------------------------------
# Exactness against a plain hook
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layer, module, use_input", [
    (None, "avgpool", True),            # the default: the features the classifier pools
    ("layer3", "layer3", False),
    ("layer4.1.conv2", "layer4.1.conv2", False),
    ("layer2:input", "layer2", True),
])
def test_maps_are_the_layer_channels_exactly_resnet18(resnet18, photos_small, device, layer, module, use_input):
    model = copy.deepcopy(resnet18).to(device)
    x = photos_small.to(device)
    am = ac.activation_maps(model, x, layer=layer, top=16)
    A, _ = hooked(model, model.get_submodule(module), x, use_input)
    assert_exact(am, *expected(A, A.float().mean(dim=(2, 3)), 16))
    assert am.maps.device.type == device and am.order == "mean" and am.class_ids is None
    assert am.layer == (layer or "avgpool:input")
    assert am.maps.shape == (3, 16, *A.shape[2:])
    assert float(am.maps.amin()) == 0.0 and float(am.maps.amax()) == 1.0


def test_maps_are_the_layer_channels_exactly_efficientnet(lite, photos_small):
    am = ac.activation_maps(lite, photos_small)  # default layer: the head activation the pooling reads
    A, _ = hooked(lite, lite._avg_pooling, photos_small, use_input=True)
    assert am.layer == "_avg_pooling:input"
    assert_exact(am, *expected(A, A.float().mean(dim=(2, 3)), 16))
    am = ac.activation_maps(lite, photos_small, layer="_blocks.10", top=5)
    A, _ = hooked(lite, lite._blocks[10], photos_small)
    assert_exact(am, *expected(A, A.float().mean(dim=(2, 3)), 5))


def test_a_constant_channel_gives_zeros(lite, photos_small):
    # After the head's ReLU6 some channels are 0 everywhere on a photo: their maps are zeros, not NaN.
    A, _ = hooked(lite, lite._avg_pooling, photos_small, use_input=True)
    K = A.shape[1]
    constant = A.amax(dim=(2, 3)) == A.amin(dim=(2, 3))
    assert constant.any(), "the photos should silence some head channels"
    am = ac.activation_maps(lite, photos_small, top=K)
    picked = constant.gather(1, am.channels)
    assert torch.equal(am.maps[picked], torch.zeros_like(am.maps[picked]))
    assert not torch.isnan(am.maps).any()


def test_top_beyond_the_channels_gives_all_of_them(resnet18, photos_small):
    am = ac.activation_maps(resnet18, photos_small, layer="conv1", top=100)  # conv1 has 64 channels
    assert am.maps.shape[:2] == (3, 64)
    assert torch.equal(am.channels.sort(dim=1).values, torch.arange(64).expand(3, 64))


# --------------------------------------------------------------------------------------------
# The class orders
# --------------------------------------------------------------------------------------------

def test_weight_order_is_the_mean_gradient(lite, photos_small):
    layer = lite._blocks[12]
    targets = torch.tensor([285, 967, 7])
    am = ac.activation_maps(lite, photos_small, layer="_blocks.12", top=10, order="weight", targets=[285, 967, 7])
    A, g = hand_activation_grads(lite, layer, (photos_small,), lambda out: out.gather(1, targets[:, None])[:, 0])
    w = g.mean(dim=(2, 3))                                                  # Grad-CAM's weights, float64
    assert torch.equal(am.class_ids, targets) and am.order == "weight"
    torch.testing.assert_close(am.scores.double(), w.gather(1, am.channels), rtol=1e-4, atol=1e-7)
    assert (am.scores[:, :-1] >= am.scores[:, 1:]).all()
    rest = w.scatter(1, am.channels, float("-inf")).amax(dim=1)           # best channel not chosen
    assert (rest <= am.scores[:, -1].double() + 1e-7).all()
    A32, _ = hooked(lite, layer, photos_small)
    assert torch.equal(am.maps, normalised(A32, am.channels))                # the chosen channels, exactly


def test_weight_order_on_a_gap_linear_head_is_the_cam_ranking(resnet18, photos_small):
    # At the pooled features the Grad-CAM weight is the classifier's row divided by h*w.
    am = ac.activation_maps(resnet18, photos_small, top=16, order="weight")
    with torch.no_grad():
        logits = resnet18(photos_small)
    top1 = logits.argmax(1)
    assert torch.equal(am.class_ids, top1)                                   # targets=None: each top class
    rows = resnet18.fc.weight.detach()[top1]                                 # [3,512]
    assert torch.equal(am.channels, torch.sort(rows, dim=1, descending=True, stable=True).indices[:, :16])
    Z = am.maps.shape[2] * am.maps.shape[3]                                  # 3 x 4 cells for 96 x 128 photos
    torch.testing.assert_close(am.scores, rows.gather(1, am.channels) / Z, rtol=1e-5, atol=0)


def test_contributions_sum_to_the_logit_minus_bias(resnet18, photos_small):
    A, logits = hooked(resnet18, resnet18.avgpool, photos_small, use_input=True)
    am = ac.activation_maps(resnet18, photos_small, top=512, order="contribution", targets=3)
    assert torch.equal(am.class_ids, torch.full((3,), 3))
    torch.testing.assert_close(am.scores.double().sum(1), (logits[:, 3] - resnet18.fc.bias[3]).double(),
                               rtol=1e-4, atol=1e-4)
    w = resnet18.fc.weight.detach()[3] / (A.shape[2] * A.shape[3])
    torch.testing.assert_close(am.scores, (w * A.sum(dim=(2, 3))).gather(1, am.channels), rtol=1e-4, atol=1e-6)
    assert (am.scores[:, :-1] >= am.scores[:, 1:]).all()


def test_a_callable_target(resnet18, photos_small):
    am = ac.activation_maps(resnet18, photos_small, "layer4", top=4, order="weight",
                            targets=lambda out: out[:, 10] - out[:, 20])
    ref = ac.activation_maps(resnet18, photos_small, "layer4", top=4, order="weight", targets=10)
    assert am.class_ids is None and am.maps.shape == (3, 4, 3, 4)
    assert not torch.equal(am.scores, ref.scores)


# --------------------------------------------------------------------------------------------
# The model is left as it was found
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("order", ["mean", "weight", "contribution"])
def test_model_left_as_found(resnet18, photos_small, order):
    model = copy.deepcopy(resnet18)
    flags = [p.requires_grad for p in model.parameters()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for ctx in (torch.enable_grad, torch.no_grad, torch.inference_mode):
        with ctx():
            grad_mode = torch.is_grad_enabled()
            am = ac.activation_maps(model, photos_small, "layer3", top=3, order=order)
            assert torch.is_grad_enabled() == grad_mode
        assert not am.maps.requires_grad and am.maps.grad_fn is None
    assert no_hooks(model) and not model.training
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_hooks_removed_when_the_call_fails(resnet18, photos_small):
    with pytest.raises(ac.UserError, match="4-D tensor"):
        ac.activation_maps(resnet18, photos_small, layer="fc")
    with pytest.raises(ac.UserError, match="class ids|classes must lie"):
        ac.activation_maps(resnet18, photos_small, order="weight", targets=5000)
    assert no_hooks(resnet18)


# --------------------------------------------------------------------------------------------
# Errors: one line, saying what to change
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, needle", [
    (dict(layer="layer9"), "the model has no target_layer named 'layer9'; close matches: 'layer4'"),
    (dict(layer="fc"), "the output of target layer 'fc' must be a 4-D tensor [B,K,h,w], got [3, 1000]"),
    (dict(top=0), "top must be a positive integer, got 0"),
    (dict(top=True), "top must be a positive integer, got True"),
    (dict(order="max"), "order must be 'mean', 'weight' or 'contribution', got 'max'"),
    (dict(targets=3), "pass order='weight' or order='contribution' with them"),
    (dict(order="weight", targets=[[1, 2], [3, 4], [5, 6]]), "one class per image"),
    (dict(order="weight", targets=1000), "class id 1000 is out of range"),
])
def test_errors(resnet18, photos_small, kwargs, needle):
    with pytest.raises(ac.UserError) as info:
        ac.activation_maps(resnet18, photos_small, **kwargs)
    text = str(info.value)
    assert text.startswith("actcam: ") and "\n" not in text
    assert needle in text, text


def test_models_it_cannot_look_into(resnet18, photos_small):
    with pytest.raises(ac.UserError, match="must be an nn.Module"):
        ac.activation_maps("resnet18", photos_small)
    with warnings.catch_warnings():  # torch.jit's deprecation notice
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(copy.deepcopy(resnet18))
    with pytest.raises(ac.UserError, match="TorchScript model cannot be looked into"):
        ac.activation_maps(scripted, photos_small)


# --------------------------------------------------------------------------------------------
# Pictures of the result
# --------------------------------------------------------------------------------------------

def test_labels_picture_and_notebook_png(lite, photos_small):
    am = ac.activation_maps(lite, photos_small, top=6)
    labels = am.labels(1)
    assert len(labels) == 6
    assert labels[0] == f"ch {int(am.channels[1, 0])} · {float(am.scores[1, 0]):.3g}"
    pic = am.picture(1, cols=3, tile=40)
    tw = round(40 * am.maps.shape[3] / am.maps.shape[2])                     # 3 x 4 cells: tiles 40 x 53
    assert pic.dtype == np.uint8 and pic.shape == (2 * (40 + 26) + 6, 3 * tw + 2 * 6, 3)
    assert np.array_equal(pic, ac.render.activation_grid(am.maps[1], labels, 3, 40))
    png = cv2.imdecode(np.frombuffer(am._repr_png_(), np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    grid = ac.render.activation_grid(am.maps.flatten(0, 1), [f"#{i} {t}" for i in range(3) for t in am.labels(i)],
                                     cols=6)
    assert np.array_equal(png, grid)                                          # a row of tiles per image
