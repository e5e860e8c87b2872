"""Gradients of the ops: gradcheck in float64, the fused CPU backward of cam against autograd
through the reference in float32, opcheck with inputs that require grad, torch.compile of a
forward + backward, and the edge cases (constant and non-finite maps, overlay).
"""

import warnings

import pytest
import torch

import actcam_ext as ac
from actcam_ext import ops
from actcam_ext.ops import reference

FLOATS = [torch.float32, torch.float16, torch.bfloat16]


def _randn(*shape, dtype=torch.float32, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).requires_grad_(requires_grad)


# (B, C or None, K, h, w, H, W): up- and downsampling, identity, 1x1, [B,K] and [B,C,K]
GRAD_SHAPES = [
    (2, None, 4, 5, 6, 11, 13),
    (2, 3, 4, 5, 6, 11, 13),
    (2, None, 3, 9, 8, 4, 3),
    (1, 2, 3, 9, 8, 4, 3),
    (2, None, 3, 4, 5, 4, 5),
    (3, 2, 2, 1, 1, 3, 4),
]


def _shape_id(s):
    B, C, K, h, w, H, W = s
    return f"B{B}C{C}K{K}_{h}x{w}to{H}x{W}"


# ----------------------------------------------------------------------------- gradcheck (float64)

@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("shape", GRAD_SHAPES, ids=_shape_id)
def test_cam_gradcheck(shape, relu, normalize):
    B, C, K, h, w, H, W = shape
    A = _randn(B, K, h, w, dtype=torch.float64, seed=1, requires_grad=True)
    wts = _randn(*((B, K) if C is None else (B, C, K)), dtype=torch.float64, seed=2, requires_grad=True)
    fn = lambda a, b: ops.cam(a, b, (H, W), relu=relu, normalize=normalize)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (A, wts), fast_mode=True)
    # and the reference's own autograd, the path of devices without a fused backward
    ref = lambda a, b: reference.cam(a, b, (H, W), relu=relu, normalize=normalize)  # noqa: E731
    assert torch.autograd.gradcheck(ref, (A, wts), fast_mode=True)


@pytest.mark.parametrize("layout", ["channels_last", "sliced", "expanded"])
def test_cam_gradcheck_strided_inputs(layout):
    """The op reads channels_last, sliced and stride-0 activations (and stride-0 weights)
    through their strides; gradcheck perturbs the dense tensors they are views of."""
    view = {"channels_last": lambda t: t.contiguous(memory_format=torch.channels_last),
            "sliced": lambda t: t[:, ::2, 1:, :-1],
            "expanded": lambda t: t[:1].expand(2, *t.shape[1:])}[layout]
    A = _randn(2, 6, 5, 7, dtype=torch.float64, seed=3, requires_grad=True)
    wts = _randn(1, 3, 1, dtype=torch.float64, seed=4, requires_grad=True)

    def fn(a, b):
        a = view(a)
        return ops.cam(a, b.expand(2, 3, a.shape[1]), (9, 6))

    assert torch.autograd.gradcheck(fn, (A, wts))


def test_cam_gradgradcheck():
    """Second derivatives (autograd through the reference's first derivative)."""
    A = _randn(2, 3, 4, 5, dtype=torch.float64, seed=5, requires_grad=True)
    wts = _randn(2, 2, 3, dtype=torch.float64, seed=6, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda a, b: ops.cam(a, b, (6, 7), relu=False), (A, wts))


@pytest.mark.parametrize("positive", [True, False])
def test_gradcampp_weights_gradcheck(positive):
    A = _randn(2, 3, 4, 5, dtype=torch.float64, seed=7)
    A = (A.abs() if positive else A).detach().requires_grad_()
    g = (_randn(2, 3, 4, 5, dtype=torch.float64, seed=8) * 0.1).requires_grad_()
    assert torch.autograd.gradcheck(ops.gradcampp_weights, (A, g))
    assert torch.autograd.gradgradcheck(ops.gradcampp_weights, (A, g))


# ----------------------------------------------------------------------------- fused backward vs reference

def _assert_grads_close(got, want):
    """The fused kernel and autograd of the reference sum tens of thousands of float32 terms
    in different orders: they agree to 1e-5 of the gradient's scale."""
    assert got.dtype == want.dtype and got.shape == want.shape
    got, want = got.double(), want.double()
    scale = want.abs().max().item()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * scale)


FUSED_SHAPES = GRAD_SHAPES + [(3, None, 64, 7, 7, 224, 224), (2, 2, 16, 14, 10, 33, 50), (2, None, 8, 20, 24, 7, 5)]


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("shape", FUSED_SHAPES, ids=_shape_id)
def test_cam_fused_backward_matches_reference_autograd(shape, relu, normalize):
    B, C, K, h, w, H, W = shape
    A = _randn(B, K, h, w, seed=11, requires_grad=True)
    wts = _randn(*((B, K) if C is None else (B, C, K)), seed=12, requires_grad=True)
    out = ops.cam(A, wts, (H, W), relu=relu, normalize=normalize)
    grad = _randn(*out.shape, seed=13)
    got = torch.autograd.grad(out, (A, wts), grad)
    ref_out = reference.cam(A, wts, (H, W), relu=relu, normalize=normalize)
    want = torch.autograd.grad(ref_out, (A, wts), grad)
    for g, r in zip(got, want):
        _assert_grads_close(g, r)
    # the kernel is called directly too: the autograd path must not be the reference's
    direct = torch.ops.actcam.cam_backward.default(grad, A.detach(), wts.detach(), [H, W], relu, normalize)
    for g, d in zip(got, direct):
        assert torch.equal(g, d)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "sliced", "expanded"])
def test_cam_fused_backward_dtypes_and_layouts(dtype, layout):
    base = _randn(3, 16, 7, 6, seed=21)
    A = {"contiguous": base, "channels_last": base.contiguous(memory_format=torch.channels_last),
         "sliced": torch.cat([base, base], 1)[:, ::2], "expanded": base[:1].expand(3, 16, 7, 6)}[layout]
    A = A.to(dtype).detach().requires_grad_()
    wts = _randn(3, 2, 16, seed=22).to(dtype).requires_grad_()
    got_out = ops.cam(A, wts, (19, 23))
    grad = _randn(*got_out.shape, seed=23)
    got = torch.autograd.grad(got_out, (A, wts), grad)
    want = torch.autograd.grad(reference.cam(A, wts, (19, 23)), (A, wts), grad)
    for g, r in zip(got, want):
        assert g.dtype == dtype  # gradients come back in each input's dtype
        if dtype == torch.float32:
            _assert_grads_close(g, r)
        else:  # both round the same float32 gradient to the input's dtype: one ulp apart at most
            torch.testing.assert_close(g.float(), r.float(), rtol=2 * torch.finfo(dtype).eps,
                                       atol=1e-4 * r.float().abs().max().item())


def test_cam_gradient_reaches_min_and_max_evenly_among_ties():
    """The min's gradient is shared by every pixel at the min (torch amin's rule): here a
    ReLU map with many zero pixels and a corner block of tied pixels at the max."""
    A = torch.zeros(1, 2, 4, 4)
    A[0, 0, 0, 0] = 3.0  # the max, read alone by a 4 x 4 corner block of the 32 x 32 output
    A[0, 0, 2, 1] = 1.0
    A[0, 0, 3, 3] = -2.0  # ReLU zeros
    A[0, 1, 1, 2] = 1.5
    A.requires_grad_()
    wts = torch.tensor([[1.0, 0.5]], requires_grad=True)
    grad = _randn(1, 32, 32, seed=31)
    out = ops.cam(A, wts, (32, 32))
    assert (out == 1).sum() == 16 and (out == 0).sum() > 16
    got = torch.autograd.grad(out, (A, wts), grad)
    want = torch.autograd.grad(reference.cam(A, wts, (32, 32)), (A, wts), grad)
    for g, r in zip(got, want):
        _assert_grads_close(g, r)
    assert got[0][0, 0, 3, 3] == 0  # behind the ReLU


# ----------------------------------------------------------------------------- degenerate maps

@pytest.mark.parametrize("impl", ["ops", "reference"])
def test_constant_maps_have_zero_gradient(impl):
    """A constant map normalises to zeros whatever its level: zero gradient, never NaN."""
    fn = ops.cam if impl == "ops" else reference.cam
    A = torch.ones(2, 3, 4, 4, requires_grad=True)
    wts = torch.tensor([[1.0, -1.0, 0.5], [0.0, 0.0, 0.0]], requires_grad=True)
    out = fn(A, wts, (8, 8))
    assert torch.equal(out, torch.zeros_like(out))
    ga, gw = torch.autograd.grad(out, (A, wts), torch.ones_like(out))
    assert torch.equal(ga, torch.zeros_like(ga)) and torch.equal(gw, torch.zeros_like(gw))
    # a 1x1 map is constant after any resize, and a map of subnormals has a subnormal spread
    for A in (torch.randn(2, 3, 1, 1), torch.randn(2, 3, 5, 5) * 1e-41):
        A.requires_grad_()
        out = fn(A, torch.ones(2, 3, requires_grad=True), (6, 6), relu=False)
        ga, = torch.autograd.grad(out, (A,), torch.ones_like(out))
        assert torch.equal(ga, torch.zeros_like(ga))


@pytest.mark.parametrize("impl", ["ops", "reference"])
def test_non_finite_maps_pass_zero_gradient_to_finite_inputs(impl):
    """A map that comes out all NaN does not depend on its values: the other maps' gradients
    are unaffected, and a finite weight's gradient through it is zero only where the inputs
    are finite (0 * NaN is NaN, as in any torch chain)."""
    fn = ops.cam if impl == "ops" else reference.cam
    A = _randn(2, 3, 5, 5, seed=41)
    A[0, 1, 2, 2] = float("nan")
    A.requires_grad_()
    wts = _randn(2, 3, seed=42, requires_grad=True)
    out = fn(A, wts, (9, 9))
    assert out[0].isnan().all() and out[1].isfinite().all()
    ga, gw = torch.autograd.grad(out, (A, wts), torch.ones_like(out))
    assert torch.equal(ga[0], torch.zeros_like(ga[0]))  # weights finite: w * 0
    assert gw[0].isnan().any()  # sum_p A * 0 with a NaN in A
    want = torch.autograd.grad(reference.cam(A[1:], wts[1:], (9, 9)), (A, wts), torch.ones(1, 9, 9))
    _assert_grads_close(ga[1], want[0][1])
    _assert_grads_close(gw[1], want[1][1])


# ----------------------------------------------------------------------------- no silent nothing

def test_gradients_flow_without_autograd_warnings():
    """Every differentiable op records its backward (no 'autograd kernel was not registered'
    warning, no gradient silently missing)."""
    A = _randn(2, 8, 7, 7, seed=51, requires_grad=True)
    g = _randn(2, 8, 7, 7, seed=52, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wts = ops.gradcampp_weights(A, g)
        out = ops.cam(A, wts, (20, 20))
        assert out.requires_grad and wts.requires_grad
        out.square().sum().backward()
    assert A.grad is not None and A.grad.abs().sum() > 0
    assert g.grad is not None and g.grad.abs().sum() > 0


def test_only_the_requested_gradients_are_returned():
    A = _randn(2, 4, 5, 5, seed=53)
    wts = _randn(2, 4, seed=54, requires_grad=True)
    ops.cam(A, wts, (8, 8)).sum().backward()
    assert A.grad is None and wts.grad is not None


def test_overlay_of_maps_that_require_grad():
    """overlay is not differentiable (uint8 pictures): maps that require grad are accepted,
    quietly, and the output does not require grad."""
    maps = torch.rand(2, 6, 5, requires_grad=True)
    images = torch.randint(0, 256, (2, 6, 5, 3), dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = ops.overlay(maps, images, 0.4)
    assert not out.requires_grad and out.grad_fn is None
    assert torch.equal(out, reference.overlay(maps.detach(), images, 0.4))


# ----------------------------------------------------------------------------- opcheck

def _opcheck_samples():
    samples = []
    for i, (B, C, K, h, w, H, W) in enumerate(GRAD_SHAPES[:4]):
        for dtype in (torch.float32, torch.float64):
            A = _randn(B, K, h, w, dtype=dtype, seed=60 + i, requires_grad=True)
            wts = _randn(*((B, K) if C is None else (B, C, K)), dtype=dtype, seed=70 + i, requires_grad=True)
            samples.append(("cam", (A, wts, [H, W]), {"relu": i % 2 == 0, "normalize": i < 2}))
    for dtype in (torch.float32, torch.float64):
        A = _randn(2, 3, 4, 5, dtype=dtype, seed=80).abs().detach().requires_grad_()
        g = _randn(2, 3, 4, 5, dtype=dtype, seed=81, requires_grad=True)
        samples.append(("gradcampp_weights", (A, g), {}))
        maps = torch.rand(2, 4, 5, dtype=dtype, requires_grad=True)
        samples.append(("overlay", (maps, torch.zeros(2, 4, 5, 3, dtype=torch.uint8), 0.5), {}))
    A = _randn(2, 3, 4, 5, seed=90, requires_grad=True)
    wts = _randn(2, 2, 3, seed=91, requires_grad=True)
    grad = _randn(2, 2, 6, 7, seed=92, requires_grad=True)
    samples.append(("cam_backward", (grad, A, wts, [6, 7], True, True), {}))
    return samples


OPCHECK_SAMPLES = _opcheck_samples()


@pytest.mark.parametrize("op,args,kwargs", OPCHECK_SAMPLES,
                         ids=[f"{s[0]}-{i}" for i, s in enumerate(OPCHECK_SAMPLES)])
def test_opcheck_with_requires_grad(op, args, kwargs):
    torch.library.opcheck(getattr(torch.ops.actcam, op).default, args, kwargs)


# ----------------------------------------------------------------------------- torch.compile

def _loss(A, grads, wts):
    maps = ops.cam(A, wts, (20, 24))
    pp = ops.cam(A, ops.gradcampp_weights(A, grads), (20, 24), relu=False)
    return (maps * maps).sum() + (pp * torch.linspace(0, 1, 24)).sum()


def _compiled_grads(fn, *inputs):
    inputs = [t.detach().requires_grad_() for t in inputs]
    fn(*inputs).backward()
    return [t.grad for t in inputs]


def test_torch_compile_forward_and_backward():
    """forward + backward in one compiled graph on the CPU (the fused backward's fake kernel)."""
    A = _randn(2, 8, 7, 7, seed=101).relu()
    grads = _randn(2, 8, 7, 7, seed=102) * 0.1
    wts = _randn(2, 3, 8, seed=103)
    torch._dynamo.reset()
    compiled = torch.compile(_loss, fullgraph=True)
    got = _compiled_grads(compiled, A, grads, wts)
    want = _compiled_grads(_loss, A, grads, wts)
    for g, w in zip(got, want):
        _assert_grads_close(g, w)


def test_reference_backward_route(monkeypatch):
    """Where no fused backward exists (CUDA), cam's gradient is autograd through the
    reference: exercised here on the CPU by hiding the kernel, eagerly and compiled."""
    from actcam_ext.ops import _native
    A = _randn(2, 8, 7, 7, seed=111).relu()
    grads = _randn(2, 8, 7, 7, seed=112) * 0.1
    wts = _randn(2, 3, 8, seed=113)
    want = _compiled_grads(_loss, A, grads, wts)
    monkeypatch.setattr(_native, "_NATIVE_BACKWARD_DEVICE_TYPES", frozenset())
    assert not ops.native_backward_available("cpu")
    for g, w in zip(_compiled_grads(_loss, A, grads, wts), want):
        _assert_grads_close(g, w)
    torch._dynamo.reset()
    for g, w in zip(_compiled_grads(torch.compile(_loss, fullgraph=True), A, grads, wts), want):
        _assert_grads_close(g, w)
    torch._dynamo.reset()


# ----------------------------------------------------------------------------- float64

def test_float64_in_float64_out():
    A = _randn(2, 5, 6, 7, dtype=torch.float64, seed=121)
    for wts in (_randn(2, 5, dtype=torch.float64, seed=122), _randn(2, 3, 5, seed=123)):
        for relu in (True, False):
            for normalize in (True, False):
                got = ops.cam(A, wts, (13, 4), relu=relu, normalize=normalize)
                want = reference.cam(A, wts, (13, 4), relu=relu, normalize=normalize)
                assert got.dtype == torch.float64
                torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # float64 weights make a float32 map float64 too
    assert ops.cam(A.float(), _randn(2, 5, dtype=torch.float64), (3, 3)).dtype == torch.float64
    g = _randn(2, 5, 6, 7, dtype=torch.float64, seed=124) * 0.1
    got = ops.gradcampp_weights(A.abs(), g)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, reference.gradcampp_weights(A.abs(), g), rtol=1e-12, atol=1e-14)
    maps = torch.rand(2, 6, 7, dtype=torch.float64)
    images = torch.randint(0, 256, (2, 6, 7, 3), dtype=torch.uint8)
    assert torch.equal(ops.overlay(maps, images, 0.3), reference.overlay(maps, images, 0.3))


def test_fake_kernels_give_float64():
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode() as mode:
        A = mode.from_tensor(torch.zeros(2, 5, 6, 7, dtype=torch.float64))
        w = mode.from_tensor(torch.zeros(2, 5))
        out = torch.ops.actcam.cam.default(A, w, [3, 4])
        assert out.dtype == torch.float64 and out.shape == (2, 3, 4)
        ga, gw = torch.ops.actcam.cam_backward.default(out, A, w, [3, 4], True, True)
        assert (ga.dtype, gw.dtype) == (torch.float64, torch.float32)


@pytest.mark.cuda
def test_cuda_float64_runs_the_reference():
    A = _randn(2, 5, 6, 7, dtype=torch.float64, seed=131).cuda().requires_grad_()
    wts = _randn(2, 5, dtype=torch.float64, seed=132).cuda().requires_grad_()
    out = ops.cam(A, wts, (9, 8))
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, reference.cam(A, wts, (9, 8)))
    out.sum().backward()
    assert A.grad is not None and wts.grad is not None
    with pytest.raises(ValueError, match=r"float64 on the CPU"):
        torch.ops.actcam.cam.default(A.detach(), wts.detach(), [9, 8])


@pytest.mark.cuda
def test_cuda_backward_matches_cpu():
    A = _randn(2, 16, 7, 7, seed=141)
    wts = _randn(2, 3, 16, seed=142)
    grads = []
    for device in ("cpu", "cuda"):
        a, w = A.to(device).requires_grad_(), wts.to(device).requires_grad_()
        out = ops.cam(a, w, (50, 60))
        out.backward(_randn(*out.shape, seed=143).to(device))
        grads.append((a.grad.cpu(), w.grad.cpu()))
    for g, r in zip(*grads):
        _assert_grads_close(g, r)
