"""What every method shares: targets, multi-input models, batching, sizes, the model left as found,
threads, precision and layout, errors, and the same maps on CUDA."""

import threading

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import actcam_ext as ac
from method_oracles import (class_score, hand_cam, hand_gradcam, hand_gradcampp, module, pgc, photos)

# ------------------------------------------------------------------------------------------
# callable targets and multi-input models
# ------------------------------------------------------------------------------------------

class _TinySeg(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                 nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Conv2d(16, classes, 1)

    def forward(self, x):
        return {"out": F.interpolate(self.head(self.enc(x)), size=x.shape[-2:], mode="bilinear",
                                     align_corners=False)}


def test_callable_target_on_segmentation_net():
    torch.manual_seed(2)
    net = _TinySeg().eval()
    x = torch.randn(2, 3, 40, 56)
    mask = torch.zeros(2, 40, 56)
    mask[0, 5:20, 10:30] = 1
    mask[1, 20:40, 30:56] = 1

    def score(out):  # class 1's logits summed inside each image's mask
        return (out["out"][:, 1] * mask).sum(dim=(1, 2))

    for cls, hand_fn in ((ac.GradCAM, hand_gradcam), (ac.GradCAMPlusPlus, hand_gradcampp)):
        ours = cls(net, "enc.2")(x, score)
        hand = hand_fn(net, net.enc[2], (x,), score, (40, 56))
        assert ours.shape == (2, 40, 56)
        assert (ours.double() - hand).abs().max() < 1e-5
    # input gradients with a callable target
    g = ac.Saliency(net)(x, score)
    xr = x.clone().requires_grad_(True)
    (hand,) = torch.autograd.grad(score(net(xr)).sum(), xr)
    assert torch.allclose(g, hand, rtol=1e-5, atol=1e-8)
    # class-index targets on a dict output: a clear error that points at callables
    with pytest.raises(ValueError, match="callable"):
        ac.GradCAM(net, "enc.2")(x, 1)


class _TwoInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
        self.meta = nn.Linear(4, 8)
        self.fc = nn.Linear(8, 6)

    def forward(self, img, meta):
        f = self.conv(img)  # [B,8,h,w]
        return self.fc(torch.relu(f.mean(dim=(2, 3)) * self.meta(meta)))


def test_two_input_model():
    torch.manual_seed(3)
    net = _TwoInput().eval()
    img, meta = torch.randn(3, 3, 20, 24), torch.randn(3, 4)
    t = [0, 5, 2]
    ours = ac.GradCAM(net, "conv.2")((img, meta), t)
    hand = hand_gradcam(net, net.conv[2], (img, meta), class_score(t), (20, 24))
    assert ours.shape == (3, 20, 24)
    assert (ours.double() - hand).abs().max() < 1e-5
    assert ac.GradCAM(net, "conv.2")((img, meta), t, size=(10, 7)).shape == (3, 10, 7)
    g_img, g_meta = ac.Saliency(net)((img, meta), t)
    ir, mr = img.clone().requires_grad_(True), meta.clone().requires_grad_(True)
    hand_img, hand_meta = torch.autograd.grad(class_score(t)(net(ir, mr)).sum(), (ir, mr))
    assert torch.allclose(g_img, hand_img) and torch.allclose(g_meta, hand_meta)


# ------------------------------------------------------------------------------------------
# batching and multi-class
# ------------------------------------------------------------------------------------------

ALL = [ac.CAM, ac.GradCAM, ac.GradCAMPlusPlus, ac.Saliency, ac.Deconvnet, ac.GuidedBackprop,
       ac.GuidedGradCAM]


def _make(cls, model):
    return cls(model, "layer4") if cls in (ac.GradCAM, ac.GradCAMPlusPlus, ac.GuidedGradCAM) else cls(model)


@pytest.mark.parametrize("cls", ALL)
def test_batch_equals_one_at_a_time(resnet18, cls):
    x = photos(64, 72)
    targets = [281, 17, 504]
    method = _make(cls, resnet18)
    batch = method(x, targets)
    for i in range(3):
        one = method(x[i:i + 1], [targets[i]])
        tol = 1e-5 * max(float(one.abs().max()), 1e-30) if cls in ALL[3:] else 1e-5
        assert (batch[i:i + 1] - one).abs().max() <= tol


@pytest.mark.parametrize("cls", ALL)
def test_multiclass_equals_separate_calls(resnet18, cls):
    x = photos(64, 72)
    method = _make(cls, resnet18)
    with torch.no_grad():
        top3 = resnet18(x).topk(3, dim=1).indices
    multi = method(x, top_k=3)
    assert torch.equal(method(x, top3), multi)
    assert multi.shape[:2] == (3, 3)
    for c in range(3):
        one = method(x, top3[:, c])
        tol = 1e-5 * float(one.abs().max()) if cls in ALL[3:] else 1e-5
        assert (multi[:, c] - one).abs().max() <= tol


@pytest.mark.parametrize("cls", [ac.CAM, ac.GradCAM, ac.GradCAMPlusPlus])
def test_per_image_sizes_equal_one_size_calls(resnet18, cls):
    """size=[(H1, W1), ...]: each image's maps at its own size, exactly the one-size call's
    maps for that image (images sharing a size share one op call)."""
    x = photos(64, 72)
    method = _make(cls, resnet18)
    sizes = [(50, 90), (31, 17), (50, 90)]
    for kwargs in ({"targets": [281, 17, 504]}, {"top_k": 2}):
        maps = method(x, size=sizes, **kwargs)
        assert isinstance(maps, list) and len(maps) == 3
        for i, s in enumerate(sizes):
            one = method(x, size=s, **kwargs)[i]
            assert maps[i].shape == one.shape and maps[i].shape[-2:] == s
            assert torch.equal(maps[i], one)
    with pytest.raises(ValueError, match="size has 2 .H, W. entries for a batch of 3"):
        method(x, size=[(8, 8), (9, 9)])
    with pytest.raises(ValueError, match="size must be two positive integers"):
        method(x, size=[(8, 8), (9, 0), (9, 9)])


def test_target_forms(resnet18, photos_small):
    gc = ac.GradCAM(resnet18, "layer4")
    ref = gc(photos_small, torch.tensor([7, 7, 7]))
    assert torch.equal(gc(photos_small, 7), ref)
    assert torch.equal(gc(photos_small, [7, 7, 7]), ref)
    assert torch.equal(gc(photos_small, np.array([7, 7, 7])), ref)
    assert torch.equal(gc(photos_small, lambda out: out[:, 7]), ref)
    assert torch.equal(gc(photos_small, [[7, 8]] * 3)[:, 0], ref)
    top1 = resnet18(photos_small).argmax(1)
    assert torch.equal(gc(photos_small), gc(photos_small, top1))
    assert torch.equal(gc(photos_small, top_k=1)[:, 0], gc(photos_small))


# ------------------------------------------------------------------------------------------
# the model is left as found
# ------------------------------------------------------------------------------------------

def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())


def test_model_left_clean():
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    model.layer1.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    x = photos(32, 32)
    for cls in ALL:
        m = _make(cls, model)
        m(x)
        with torch.no_grad():
            m(x, top_k=2)
            assert not torch.is_grad_enabled()
        assert torch.is_grad_enabled()
    assert _hook_count(model) == 0
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert not model.training
    model.train()
    gc = ac.GradCAM(model, "layer4")
    with pytest.warns(RuntimeWarning, match=r"training mode.*model.eval\(\)"):
        gc(x)
    assert model.training and _hook_count(model) == 0


class _Exploding(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = nn.ReLU(inplace=True)
        self.fc = nn.Linear(4, 2)
        self.explode = False

    def forward(self, x):
        f = self.act(self.conv(x))
        if self.explode:
            raise RuntimeError("boom inside the model")
        return self.fc(f.mean(dim=(2, 3)))


@pytest.mark.parametrize("cls", ALL)
def test_exception_inside_model_leaves_no_hooks(cls):
    net = _Exploding().eval()
    # CAM explains what the classifier pools: the in-place ReLU's output, not the conv's.
    method = cls(net, "conv") if cls in (ac.GradCAM, ac.GradCAMPlusPlus, ac.GuidedGradCAM) else \
        cls(net, "act") if cls is ac.CAM else cls(net)
    x = torch.randn(2, 3, 9, 9)
    net.explode = True
    with torch.no_grad():
        with pytest.raises(RuntimeError, match="boom"):
            method(x)
        assert not torch.is_grad_enabled()  # grad mode restored despite the hook turning it on
    assert torch.is_grad_enabled()
    assert _hook_count(net) == 0
    assert torch._C._len_torch_function_stack() == 0  # the parameter mode ended with the forward
    net.explode = False
    assert method(x).shape[0] == 2  # reusable afterwards
    assert all(p.grad is None for p in net.parameters())


class _LinearTail(nn.Module):
    """A target convolution, then linear layers: their backward to their input needs nothing but
    their weights."""

    def __init__(self):
        super().__init__()
        self.target = nn.Conv2d(3, 6, 3)
        self.fc1 = nn.Linear(6 * 7 * 7, 16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(self.fc1(self.target(x).flatten(1)))


class _Passing(torch.overrides.TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


class _ModeLeftOpen(_LinearTail):
    def forward(self, x):
        y = self.target(x).flatten(1)
        _Passing().__enter__()  # entered and never left
        return self.fc2(self.fc1(y))


@pytest.mark.parametrize("cls", [ac.GradCAM, ac.GradCAMPlusPlus, ac.XGradCAM, ac.LayerCAM, ac.Saliency])
def test_the_recorded_forward_keeps_no_layer_input_for_parameter_gradients(cls):
    """No parameter gradient is asked for, so a linear layer keeps only its weight for the
    backward, not its input (ViT-B/16's MLP hidden tensor, at scale)."""
    torch.manual_seed(0)
    net = _LinearTail().eval()
    x = torch.randn(2, 3, 9, 9)
    method = cls(net) if cls is ac.Saliency else cls(net, "target")
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(tuple(t.shape)) or t, lambda t: t):
        maps = method(x)
    assert (294, 16) in saved and (16, 4) in saved  # the weights (transposed), for the gradient to the input
    assert (2, 294) not in saved and (2, 16) not in saved
    # The same maps as with the parameters frozen by hand (what the detached calls amount to).
    net.requires_grad_(False)
    assert torch.equal(maps, method(x))
    net.requires_grad_(True)
    if cls is not ac.Saliency:  # create_graph still records the parameters: the maps train
        method.explain(x, create_graph=True).maps.sum().backward()
        assert net.fc1.weight.grad is not None and net.fc1.weight.grad.abs().sum() > 0
    assert all(p.requires_grad for p in net.parameters())


class _AttentionTail(nn.Module):
    """A target convolution whose 6x6 map becomes 36 tokens for torch's multi-head attention
    (batch first, as torchvision's ViT), then a linear head on the mean token."""

    def __init__(self, cross: bool = False):
        super().__init__()
        self.cross = cross  # a query of its own against a shared key and value
        self.target = nn.Conv2d(3, 16, 3)
        self.attention = nn.MultiheadAttention(16, 4, batch_first=True)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        tokens = self.target(x).flatten(2).transpose(1, 2)
        query = tokens.flip(1) if self.cross else tokens
        y, _ = self.attention(query, tokens, tokens, need_weights=False)
        return self.head((tokens + y).mean(1))


@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
@pytest.mark.parametrize("top_k", [None, 3])
def test_attention_in_the_recorded_part_is_recomputed_not_kept(top_k, cross):
    """torch's attention after the target layer keeps only its input for the backward, which
    runs it again (also under a caller's saved-tensor hooks, which hand the recomputation new
    tensor objects): the maps are those of an ordinary full-graph backward."""
    torch.manual_seed(0)
    net = _AttentionTail(cross).eval()
    x = torch.randn(2, 3, 8, 8)
    method = ac.GradCAM(net, "target")
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(tuple(t.shape)) or t, lambda t: t):
        e = method.explain(x, top_k=top_k)
    # query, key and value ([B, heads, tokens, 4]) and the attention output are not held
    assert saved and not any(len(shape) == 4 and shape[-2:] == (36, 4) for shape in saved)
    classes = e.class_ids if top_k else e.class_ids[:, None]
    for c in range(classes.shape[1]):
        want = hand_gradcam(net, net.target, (x,), class_score(classes[:, c]), (8, 8))
        got = e.maps[:, c] if top_k else e.maps
        torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-5)
    assert torch._C._len_torch_function_stack() == 0


def test_attention_is_kept_where_saved_tensor_hooks_are_disabled():
    torch.manual_seed(0)
    net = _AttentionTail().eval()
    x = torch.randn(2, 3, 8, 8)
    want = ac.GradCAM(net, "target")(x)
    with torch.autograd.graph.disable_saved_tensors_hooks("checkpointing needs saved-tensor hooks"):
        got = ac.GradCAM(net, "target")(x)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_a_mode_the_model_leaves_open_ends_with_the_forward():
    torch.manual_seed(0)
    net = _ModeLeftOpen().eval()
    x = torch.randn(2, 3, 9, 9)
    maps = ac.GradCAM(net, "target")(x)
    assert torch._C._len_torch_function_stack() == 0
    plain = _LinearTail().eval()
    plain.load_state_dict(net.state_dict())
    assert torch.equal(maps, ac.GradCAM(plain, "target")(x))


def test_threads_on_different_models():
    torch.manual_seed(4)
    nets = [torchvision.models.resnet18().eval() for _ in range(2)]
    x = photos(48, 64)
    expected = [ac.GradCAM(n, "layer4")(x) for n in nets]
    results = [None, None]

    def work(i):
        m = ac.GradCAM(nets[i], "layer4")
        results[i] = [m(x) for _ in range(3)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        for r in results[i]:
            assert torch.equal(r, expected[i])


# ------------------------------------------------------------------------------------------
# precision and layout
# ------------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients:UserWarning")
@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU:UserWarning")
def test_autocast_bf16_and_channels_last(resnet18):
    photos_small = photos(64, 80)
    targets = [281, 504, 7]
    ref = ac.GradCAM(resnet18, "layer4")(photos_small, targets)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        maps = {cls: _make(cls, resnet18)(photos_small, targets)
                for cls in (ac.GradCAM, ac.GradCAMPlusPlus, ac.CAM, ac.GuidedBackprop)}
    for cls, m in maps.items():
        assert m.dtype == torch.float32 and torch.isfinite(m).all(), cls
    gc = maps[ac.GradCAM]
    assert gc.min() >= 0 and gc.max() <= 1
    assert (gc - ref).abs().mean() < 0.03  # bf16 keeps ~3 digits: same map, small rounding

    model_cl = torchvision.models.resnet18().eval()
    model_cl.load_state_dict(resnet18.state_dict())
    model_cl = model_cl.to(memory_format=torch.channels_last)
    x_cl = photos_small.contiguous(memory_format=torch.channels_last)
    for cls in (ac.GradCAM, ac.GradCAMPlusPlus, ac.CAM):
        a = _make(cls, model_cl)(x_cl, targets)
        b = _make(cls, resnet18)(photos_small, targets)
        assert (a - b).abs().max() < 1e-4, cls
    # Input gradients flip ReLU masks where channels_last rounding differs from contiguous
    # (plain autograd does the same), so the oracle is captum on the same channels_last model.
    import captum.attr
    g = ac.GuidedBackprop(model_cl)(x_cl, targets)
    ref = captum.attr.GuidedBackprop(model_cl).attribute(x_cl, target=torch.tensor(targets))
    assert (g - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_works_under_inference_mode(resnet18):
    x = photos(48, 48)
    ref = ac.GradCAM(resnet18, "layer4")(x)
    ref_gb = ac.GuidedBackprop(resnet18)(x)
    with torch.inference_mode():
        xi = x.clone()
        assert torch.equal(ac.GradCAM(resnet18, "layer4")(xi), ref)
        assert torch.equal(ac.GuidedBackprop(resnet18)(xi), ref_gb)


# ------------------------------------------------------------------------------------------
# bad inputs
# ------------------------------------------------------------------------------------------

class _TupleOut(nn.Module):
    def forward(self, x):
        return x, x


def test_bad_inputs_give_clear_errors(resnet18, photos_small):
    with pytest.raises(ValueError, match=r"'layer5'.*'layer4'"):
        ac.GradCAM(resnet18, "layer5")
    with pytest.raises(ValueError, match="not a submodule"):
        ac.GradCAM(resnet18, nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match="nn.Module"):
        ac.GradCAM("resnet18")
    gc = ac.GradCAM(resnet18, "layer4")
    with pytest.raises(ValueError, match="B=3"):
        gc(photos_small, [1, 2])
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        gc(photos_small, 1000)
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        gc(photos_small, -1)
    with pytest.raises(ValueError, match="integer"):
        gc(photos_small, [1.5, 2.0, 3.0])
    with pytest.raises(ValueError, match="not both"):
        gc(photos_small, 3, top_k=2)
    with pytest.raises(ValueError, match="top_k"):
        gc(photos_small, top_k=0)
    with pytest.raises(ValueError, match="one score per image"):
        gc(photos_small, lambda out: out.sum())
    with pytest.raises(ValueError, match="x must be a tensor"):
        gc("image")
    with pytest.raises(ValueError, match="size"):
        gc(photos_small, size=(0, 4))
    for cls in (ac.GuidedBackprop, ac.CAM):
        with pytest.raises(ValueError, match="B=3"):
            cls(resnet18)(photos_small, [[1], [2]])

    net = nn.Sequential(nn.Conv2d(3, 4, 3), _TupleOut()).eval()
    with pytest.raises(ValueError, match="4-D tensor"):
        ac.GradCAM(net, "1")(torch.randn(1, 3, 8, 8))
    unused = _TwoInput().eval()
    unused.spare = nn.Conv2d(8, 8, 1)  # never called in forward
    with pytest.raises(ValueError, match="'spare' was not called"):
        ac.GradCAM(unused, "spare")((torch.randn(1, 3, 8, 8), torch.randn(1, 4)))


# ------------------------------------------------------------------------------------------
# CUDA: the same maps on the GPU (run by bench/gpu_check.sh on a GPU machine)
# ------------------------------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.parametrize("name", ["CAM", "GradCAM", "GradCAMPlusPlus", "Saliency", "Deconvnet",
                                  "GuidedBackprop", "GuidedGradCAM"])
def test_cuda_maps_match_cpu(resnet18, photos_small, name):
    import copy
    cls = getattr(ac, name)
    layer_args = ("layer4",) if name in ("GradCAM", "GradCAMPlusPlus", "GuidedGradCAM") else ()
    targets = [281, 504, 3][: photos_small.shape[0]]
    # Raw input gradients are compared in float64: in float32 the CPU and cuDNN forwards differ
    # by rounding, which flips a few ReLU masks and max-pool choices near ties and so moves
    # gradient between pixels (0.1% of pixels off by up to 1% of the maximum).
    # The activation maps go through ops.cam, which takes float32/16/bf16 only.
    dtype = torch.float64 if name in ("Saliency", "Deconvnet", "GuidedBackprop") else torch.float32
    model_cpu = copy.deepcopy(resnet18).to(dtype)
    x = photos_small.to(dtype)
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # TF32 convolutions would differ from the CPU by ~1e-3
    try:
        want = cls(model_cpu, *layer_args)(x, targets=targets)
        model = copy.deepcopy(model_cpu).cuda()
        got = cls(model, *layer_args)(x.cuda(), targets=targets)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    assert got.device.type == "cuda" and got.dtype == torch.float32 and got.shape == want.shape
    assert not any(p.grad is not None for p in model.parameters())
    if name == "GuidedGradCAM":
        # float32 guided gradients (see above): the same pattern, up to the few flipped pixels
        scale = want.abs().amax().item()
        close = (got.cpu() - want).abs() <= 1e-3 * scale
        assert close.float().mean() > 0.995
        cos = F.cosine_similarity(got.cpu().flatten(1), want.flatten(1), dim=1)
        assert (cos > 0.999).all(), cos
    elif dtype == torch.float64:
        scale = want.abs().amax().item()
        torch.testing.assert_close(got.cpu(), want, rtol=1e-5, atol=1e-6 * scale)
    else:  # maps in [0, 1]
        torch.testing.assert_close(got.cpu(), want, rtol=1e-3, atol=1e-4)


# ------------------------------------------------------------------------------------------
# edges: training mode, empty batches, wrong ranks, bad sizes
# ------------------------------------------------------------------------------------------

def test_training_mode_warns_once_per_method_object():
    import warnings
    model = torchvision.models.resnet18().train()
    x = photos(32, 32)
    for cls in ALL:
        method = _make(cls, model)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            method(x)
            method(x)
        found = [w for w in caught if "training mode" in str(w.message)]
        assert len(found) == 1 and f"{cls.__name__}: the model is in training mode" in str(found[0].message), cls
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ac.GradCAM(model, "layer4")(x)  # eval mode: silent


@pytest.mark.parametrize("cls", ALL)
def test_empty_batch_gives_empty_results(resnet18, cls):
    x = photos(32, 40)[:0]
    method = _make(cls, resnet18)
    out = method(x)
    assert out.shape[0] == 0 and out.shape[-2:] == (32, 40)
    assert method(x, top_k=2).shape[:2] == (0, 2)


@pytest.mark.parametrize("cls", ALL)
def test_wrong_rank_names_x_and_the_expected_shape(resnet18, cls):
    for bad in (torch.randn(3, 32, 32), torch.randn(1, 2, 3, 32, 32)):
        with pytest.raises(ac.UserError, match=r"\[B,C,H,W\]") as exc:
            _make(cls, resnet18)(bad)
        assert str(list(bad.shape)) in str(exc.value)


@pytest.mark.parametrize("cls", [ac.CAM, ac.GradCAM, ac.GradCAMPlusPlus, ac.GuidedGradCAM])
def test_size_must_be_two_positive_integers(resnet18, cls):
    x = photos(32, 32)[:1]
    method = _make(cls, resnet18)
    for bad in ("12", (9.7, 9.2), (True, 4), 9, (0, 4), (4, -1), (1, 2, 3), np.array([4.5, 4.0])):
        with pytest.raises(ac.UserError, match="size must be two positive integers"):
            method(x, size=bad)
    assert method(x, size=(np.int64(9), 7.0)).shape[-2:] == (9, 7)
    assert method(x, size=torch.tensor([5, 6])).shape[-2:] == (5, 6)


@pytest.mark.parametrize("order", ["compiled model run first", "explained first"])
def test_compiled_models_are_explained_in_either_call_order(resnet18, order):
    """torch.compile'd models: the methods run the module that was compiled (hooks added to a
    compiled graph afterwards would be skipped), so the maps equal the eager model's."""
    x = photos(48, 64)
    # Dynamo decides what a compiled module runs; the eager backend keeps the compile short.
    compiled = torch.compile(resnet18, backend="eager")
    if order == "compiled model run first":
        with torch.no_grad():
            assert torch.allclose(compiled(x), resnet18(x), atol=1e-4)
    for cls in (ac.CAM, ac.GradCAM, ac.GradCAMPlusPlus, ac.GuidedBackprop):
        method, eager = _make(cls, compiled), _make(cls, resnet18)
        assert method.model is resnet18
        assert torch.allclose(method(x, [1, 2, 3]), eager(x, [1, 2, 3]), atol=1e-6)
    assert ac.GradCAM(compiled, "layer4").target_layer_name == "layer4"


class _SmallNet(nn.Module):
    """Small enough that Inductor compiles it in seconds; the CAM structure (GAP + linear)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True),
                                      nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def test_compiled_explain_step_equals_the_eager_method_whatever_was_compiled_before():
    """compile=True: the model runs through torch.compile (Inductor) with the capture hooks traced
    in. The user's own compiled graph of the same model, run before, has no hooks and must not
    be reused: the maps equal the eager method's, call after call, and close() leaves the model
    as it was."""
    torch.manual_seed(3)
    net = _SmallNet().eval()
    x = torch.randn(3, 3, 20, 24)
    users = torch.compile(net)
    with torch.no_grad():
        before = users(x)
    for cls in (ac.GradCAM, ac.CAM, ac.LayerCAM):
        method, eager = cls(net, compile=True), cls(net)
        want = eager.explain(x, [0, 4, 2])
        for _ in range(2):
            got = method.explain(x, [0, 4, 2])
            assert torch.allclose(got.maps, want.maps, atol=1e-5)
            assert torch.equal(got.class_ids, want.class_ids)
            assert torch.allclose(got.logits, want.logits, atol=1e-5)
        top1 = method.explain(x)
        assert torch.equal(top1.class_ids, eager.explain(x).class_ids)
        # Several classes per image: one backward per class (a compiled backward cannot be vmapped).
        assert torch.allclose(method(x, top_k=2), eager(x, top_k=2), atol=1e-5)
        assert method.target_layer.__dict__["_forward_hooks"] or method.target_layer.__dict__["_forward_pre_hooks"]
        method.close()
        assert not net.pool._forward_pre_hooks and not net.fc._forward_hooks
    with torch.no_grad():
        assert torch.allclose(users(x), before) and torch.allclose(net(x), before, atol=1e-5)


def test_compiled_explain_step_options_are_checked():
    net = _SmallNet().eval()
    with pytest.raises(ac.UserError, match="compile must be True or False"):
        ac.GradCAM(net, compile="yes")
    with pytest.raises(ac.UserError, match="Guided Grad-CAM has no compiled explain step"):
        ac.methods.registry.make_method("guided-gradcam", net, compile=True)
    assert isinstance(ac.methods.registry.make_method("gradcam", net, compile=True), ac.GradCAM)
