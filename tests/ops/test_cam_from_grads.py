"""cam_from_grads: maps straight from gradients, against the reference, hand-worked values, the
papers' formulas (tests/ops/_oracle.py), opcheck, torch.compile and gradcheck.
(Generated inputs with hostile values: test_properties.py; every CPU capability:
test_cpu_capability.py.)"""

import warnings

import pytest
import torch

import actcam_ext as ac
from actcam_ext import ops
from actcam_ext.ops import reference
from _oracle import low_res_from_grads

MODES = ops.CAM_FROM_GRADS_MODES
FLOATS = [torch.float32, torch.float16, torch.bfloat16]


def _randn(*shape, dtype=torch.float32, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).requires_grad_(requires_grad)


def _layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values as ``t`` (4-D or 5-D) in another memory layout."""
    if layout == "contiguous":
        return t.contiguous()
    if layout == "channels_last":  # channels innermost
        perm = list(range(t.dim()))
        perm = perm[:-3] + perm[-2:] + [perm[-3]]
        inverse = [perm.index(i) for i in range(t.dim())]
        return t.permute(perm).contiguous().permute(inverse)
    if layout == "sliced":  # every other channel and a cropped border of a larger tensor
        big = torch.zeros(*t.shape[:-3], 2 * t.shape[-3], t.shape[-2] + 2, t.shape[-1] + 3, dtype=t.dtype)
        view = big[..., ::2, 1:-1, 2:-1]
        view.copy_(t)
        return view
    if layout == "transposed":
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    raise ValueError(layout)


# (B, C or None, K, h, w, H, W)
SHAPES = [
    (2, None, 16, 7, 7, 224, 224),
    (3, None, 8, 7, 5, 33, 50),
    (2, 3, 32, 14, 14, 64, 48),
    (2, None, 8, 20, 24, 7, 5),
    (1, None, 300, 12, 20, 36, 64),
    (1, 2, 4, 1, 1, 9, 11),
    (2, 17, 5, 6, 5, 8, 8),  # more classes than one pass makes (kClassBlock)
]


def _case(shape, dtype, layout, seed):
    B, C, K, h, w, H, W = shape
    A = torch.relu(_randn(B, K, h, w, seed=seed)).to(dtype)
    G = (_randn(B, K, h, w, seed=seed + 1) if C is None else _randn(B, C, K, h, w, seed=seed + 1)) * 0.1
    return _layout(A, layout), _layout(G.to(dtype), layout), (H, W)


CASES = [(m, s, d, lay) for m in MODES for s in SHAPES for d in FLOATS for lay in
         ("contiguous", "channels_last", "sliced", "transposed") if d == torch.float32 or lay == "contiguous"]


@pytest.mark.parametrize("mode,shape,dtype,layout", CASES,
                         ids=[f"{m}-{i}-{str(d)[6:]}-{lay}" for m, i, d, lay in
                              [(c[0], SHAPES.index(c[1]), c[2], c[3]) for c in CASES]])
def test_matches_reference(mode, shape, dtype, layout):
    A, G, size = _case(shape, dtype, layout, SHAPES.index(shape))
    for relu, normalize in ((True, True), (False, False)):
        got = ops.cam_from_grads(A, G, mode, size, relu=relu, normalize=normalize)
        want = reference.cam_from_grads(A, G, mode, size, relu=relu, normalize=normalize)
        assert got.dtype == torch.float32 and got.shape == want.shape
        scale = 1.0 if normalize else want.abs().max().item()
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * scale)
        if normalize:
            assert got.min() >= 0 and got.max() <= 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("per_class", [False, True])
def test_reference_is_the_papers_formula(mode, per_class):
    """The reference's low-resolution map is the formula written out per mode."""
    A = _randn(2, 5, 4, 6, seed=3, dtype=torch.float64)
    G = _randn(2, 3, 5, 4, 6, seed=4, dtype=torch.float64)
    G = G if per_class else G[:, 0]
    L = low_res_from_grads(A, G, mode, relu=False)
    got = reference.cam_from_grads(A, G, mode, (4, 6), relu=False, normalize=False)  # the identity resize
    torch.testing.assert_close(got, L if per_class else L[:, 0], rtol=1e-12, atol=1e-12)


def test_hand_worked_values():
    """Two channels of 1 x 2 pixels, no ReLU or normalisation, identity resize:
    A0 = [1, 3], A1 = [2, -2]; g0 = [0.5, -1], g1 = [1, 1].
      gradcam:  w = [mean g0, mean g1] = [-0.25, 1]            -> -0.25 A0 + A1 = [1.75, -2.75]
      xgradcam: w0 = (0.5 - 3) / 4 = -0.625, w1 = (2 - 2) / 0 -> 0 (zero denominator)
                                                               -> -0.625 A0 = [-0.625, -1.875]
      hirescam: g0 A0 + g1 A1 = [0.5 + 2, -3 - 2] = [2.5, -5]
      gradcam_elementwise: relu(g0 A0) + relu(g1 A1) = [0.5 + 2, 0 + 0] = [2.5, 0]
      layercam: relu(g0) A0 + relu(g1) A1 = [0.5 + 2, 0 - 2] = [2.5, -2]"""
    A = torch.tensor([[[[1.0, 3.0]], [[2.0, -2.0]]]])
    G = torch.tensor([[[[0.5, -1.0]], [[1.0, 1.0]]]])
    want = {"gradcam": [1.75, -2.75], "xgradcam": [-0.625, -1.875], "hirescam": [2.5, -5.0],
            "gradcam_elementwise": [2.5, 0.0], "layercam": [2.5, -2.0]}
    for mode, values in want.items():
        for fn in (ops.cam_from_grads, reference.cam_from_grads):
            got = fn(A, G, mode, (1, 2), relu=False, normalize=False)
            torch.testing.assert_close(got, torch.tensor([[values]]), rtol=0, atol=1e-7)
        relu = ops.cam_from_grads(A, G, mode, (1, 2), relu=True, normalize=False)
        torch.testing.assert_close(relu, torch.tensor([[values]]).clamp_min(0), rtol=0, atol=1e-7)


def test_gradcam_is_cam_of_the_mean_gradient():
    A, G, size = _case(SHAPES[2], torch.float32, "contiguous", 5)
    torch.testing.assert_close(ops.cam_from_grads(A, G, "gradcam", size), ops.cam(A, G.mean(dim=(-2, -1)), size),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_float64(mode):
    A, G, size = _case(SHAPES[1], torch.float64, "contiguous", 6)
    got = ops.cam_from_grads(A, G, mode, size)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, reference.cam_from_grads(A, G, mode, size), rtol=1e-12, atol=1e-12)


# One image, big enough for the threads to share it: by its segments of channels (K over
# 64), or, with a single segment, by its channel weights and then its pixels.
SHARED_SHAPES = [(1, 3, 600, 12, 20, 90, 160), (1, None, 2048, 7, 7, 224, 224), (1, None, 1000, 7, 7, 96, 96),
                 (1, None, 64, 28, 28, 112, 112)]


@pytest.mark.parametrize("shape", SHARED_SHAPES, ids=[str(s) for s in SHARED_SHAPES])
@pytest.mark.parametrize("mode", MODES)
def test_same_bits_whatever_the_thread_count(mode, shape):
    """One image shared by the threads (channel segments or pixels, then rows) gives the bits
    one thread gives, and the bits the image has in a batch of its own kind; cam from weights
    likewise."""
    A, G, size = _case(shape, torch.float32, "contiguous", 7)
    weights = G.mean(dim=(-2, -1))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.cam_from_grads(A, G, mode, size), ops.cam(A, weights, size)
        torch.set_num_threads(max(2, threads))
        many = ops.cam_from_grads(A, G, mode, size), ops.cam(A, weights, size)
        # a batch of more images than threads: each thread its own images, none shared
        batch = ops.cam_from_grads(torch.cat([A] * 3), torch.cat([G] * 3), mode, size)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one[0], many[0]) and torch.equal(one[1], many[1])
    assert all(torch.equal(b, many[0][0]) for b in batch)
    torch.testing.assert_close(many[0], reference.cam_from_grads(A, G, mode, size), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_an_output_too_big_for_the_caches_has_the_bits_of_its_maps_alone(dtype, normalize):
    """Outputs of 4 MiB or more are written in streaming stores, from each row's first aligned
    pixel (rows of 501 pixels start anywhere): the same values as each image's small output."""
    A, G, size = _case((4, None, 40, 6, 7, 600, 501), dtype, "contiguous", 8)
    batch = ops.cam_from_grads(A, G, "gradcam", size, normalize=normalize)
    assert batch.numel() * batch.element_size() >= 4 << 20
    for i in range(A.shape[0]):
        alone = ops.cam_from_grads(A[i:i + 1], G[i:i + 1], "gradcam", size, normalize=normalize)
        assert alone.numel() * alone.element_size() < 4 << 20
        assert torch.equal(batch[i:i + 1], alone)
    weights = G.mean(dim=(-2, -1))
    maps = ops.cam(A, weights, size, normalize=normalize)
    assert all(torch.equal(maps[i:i + 1], ops.cam(A[i:i + 1], weights[i:i + 1], size, normalize=normalize))
               for i in range(A.shape[0]))
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    ref = reference.cam_from_grads(A, G, "gradcam", size, normalize=normalize)
    torch.testing.assert_close(batch, ref, rtol=tol, atol=tol * (1 if normalize else ref.abs().max().item()))


def test_non_finite_and_constant_maps():
    A = _randn(4, 3, 5, 5, seed=8).relu()
    G = _randn(4, 3, 5, 5, seed=9)
    G[0, 1, 2, 2] = float("nan")  # gradcam: a NaN weight, so the whole map
    G[1, 0, 0, 0] = float("inf")
    A[3] = 1.0
    G[3] = 1.0  # a constant map: zeros
    for mode in MODES:
        got = ops.cam_from_grads(A, G, mode, (9, 9))
        want = reference.cam_from_grads(A, G, mode, (9, 9))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, equal_nan=True)
        assert got[0].isnan().all() and got[2].isfinite().all()
        assert torch.equal(got[3], torch.zeros_like(got[3]))


def test_empty():
    for G in (torch.zeros(0, 4, 3, 3), torch.zeros(0, 2, 4, 3, 3)):
        out = ops.cam_from_grads(torch.zeros(0, 4, 3, 3), G, "gradcam", (5, 6))
        assert out.shape == (0, *G.shape[1:-3], 5, 6)
    out = ops.cam_from_grads(torch.rand(2, 4, 3, 3), torch.zeros(2, 0, 4, 3, 3), "layercam", (5, 6))
    assert out.shape == (2, 0, 5, 6)
    out = ops.cam_from_grads(torch.rand(2, 0, 3, 3), torch.zeros(2, 0, 3, 3), "xgradcam", (5, 6))
    assert torch.equal(out, torch.zeros(2, 5, 6))  # no channels: a constant map


# ----------------------------------------------------------------------------- tracing and autograd

def _opcheck_samples():
    samples = []
    for i, mode in enumerate(MODES):
        for dtype in (torch.float32, torch.float64):
            for per_class in (False, True):
                A = _randn(2, 3, 4, 5, dtype=dtype, seed=20 + i)
                # XGrad-CAM divides by the activations' spatial sums: positive activations (as after
                # a ReLU) keep them away from 0, where the gradient is too ill-conditioned for
                # eager and compiled autograd to agree to float32 rounding
                A = (A.abs() + 0.1 if mode == "xgradcam" else A).detach().requires_grad_(i % 2 == 0)
                G = _randn(*((2, 2) if per_class else (2,)), 3, 4, 5, dtype=dtype, seed=30 + i, requires_grad=True)
                samples.append((A, G, mode, [6, 7], i % 2 == 0, per_class))
    return samples


@pytest.mark.parametrize("args", _opcheck_samples(), ids=lambda a: f"{a[2]}-{str(a[0].dtype)[6:]}-C{a[1].dim() == 5}")
def test_opcheck(args):
    torch.library.opcheck(torch.ops.actcam.cam_from_grads.default, args)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("per_class", [False, True])
@pytest.mark.parametrize("relu,normalize", [(True, True), (False, False), (True, False)])
def test_gradcheck(mode, per_class, relu, normalize):
    A = _randn(2, 3, 4, 5, dtype=torch.float64, seed=40)
    A = (A.abs() + 0.1 if mode == "xgradcam" else A).detach().requires_grad_()  # denominators away from 0
    G = _randn(*((2, 2) if per_class else (2,)), 3, 4, 5, dtype=torch.float64, seed=41, requires_grad=True)
    fn = lambda a, g: ops.cam_from_grads(a, g, mode, (7, 6), relu=relu, normalize=normalize)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (A, G), fast_mode=True)


def test_gradgradcheck():
    A = _randn(2, 3, 4, 5, dtype=torch.float64, seed=42, requires_grad=True)
    G = _randn(2, 3, 4, 5, dtype=torch.float64, seed=43, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda a, g: ops.cam_from_grads(a, g, "hirescam", (6, 7), relu=False),
                                        (A, G))


def test_torch_compile_fullgraph_forward_and_backward():
    def loss(A, G):
        total = 0
        for mode in MODES:
            total = total + ops.cam_from_grads(A, G, mode, (20, 24)).square().sum()
        return total

    A = _randn(2, 8, 7, 7, seed=50).relu()
    G = _randn(2, 2, 8, 7, 7, seed=51) * 0.1
    grads = []
    torch._dynamo.reset()
    for fn in (loss, torch.compile(loss, fullgraph=True)):
        a, g = A.clone().requires_grad_(), G.clone().requires_grad_()
        fn(a, g).backward()
        grads.append((a.grad, g.grad))
    torch._dynamo.reset()
    for got, want in zip(grads[1], grads[0]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * want.abs().max().item())


def test_gradients_flow_without_warnings():
    A = _randn(2, 4, 5, 5, seed=60, requires_grad=True)
    G = _randn(2, 4, 5, 5, seed=61, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = ops.cam_from_grads(A, G, "layercam", (8, 8))
        out.square().sum().backward()
    assert A.grad.abs().sum() > 0 and G.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- errors and devices

BAD = [
    (lambda A, G: (A, G, "gradcam++", (4, 4)), r"mode must be one of 'gradcam', 'xgradcam', 'hirescam', "
                                              r"'gradcam_elementwise', 'layercam', got 'gradcam\+\+'"),
    (lambda A, G: (A, G, "GradCAM", (4, 4)), r"mode must be one of"),
    (lambda A, G: (A, G, "gradcam", (0, 4)), r"size must be positive"),
    (lambda A, G: (A, G[:, :2], "gradcam", (4, 4)), r"grads must have shape \[B,K,h,w\] = \[2, 3, 4, 5\]"),
    (lambda A, G: (A, G[None].expand(2, 2, 3, 4, 5)[:, :, :, :3], "gradcam", (4, 4)), r"grads must have shape"),
    (lambda A, G: (A, G.half(), "gradcam", (4, 4)), r"grads must have the dtype of activations"),
    (lambda A, G: (A, G.reshape(2, 3, 20), "gradcam", (4, 4)), r"grads must be a 4-D or 5-D tensor"),
    (lambda A, G: (A.int(), G, "gradcam", (4, 4)), r"activations must be float32"),
    (lambda A, G: (A[:, :, :0], G[:, :, :0], "gradcam", (4, 4)), r"non-empty spatial size"),
]


@pytest.mark.filterwarnings("ignore:actcam. cam_from_grads on meta runs the pure-torch fallback")
@pytest.mark.parametrize("make,pattern", BAD, ids=[b[1][:40] for b in BAD])
def test_bad_arguments_raise_the_same_value_error_on_every_path(make, pattern):
    from torch._subclasses.fake_tensor import FakeTensorMode
    A, G = torch.rand(2, 3, 4, 5), torch.rand(2, 3, 4, 5)
    args = make(A, G)
    messages = []
    for fn in (ops.cam_from_grads, reference.cam_from_grads,
               lambda a, g, *rest: ops.cam_from_grads(a.to("meta"), g.to("meta"), *rest)):
        with pytest.raises(ValueError, match=pattern) as info:
            fn(*args)
        messages.append(str(info.value))
    with FakeTensorMode() as mode, pytest.raises(ValueError, match=pattern) as info:
        ops.cam_from_grads(mode.from_tensor(args[0]), mode.from_tensor(args[1]), *args[2:])
    messages.append(str(info.value))
    assert len(set(messages)) == 1, messages
    # the registered op itself (C++ kernel and fake kernel)
    raw = torch.ops.actcam.cam_from_grads.default
    with pytest.raises(ValueError, match=pattern):
        raw(args[0], args[1], args[2], list(args[3]))
    with FakeTensorMode() as mode, pytest.raises(ValueError, match=pattern):
        raw(mode.from_tensor(args[0]), mode.from_tensor(args[1]), args[2], list(args[3]))


@pytest.mark.parametrize("mode", [None, 3, ["gradcam"]])
def test_mode_must_be_a_string(mode):
    with pytest.raises(ValueError, match=r"mode must be one of .* got " + repr(mode).replace("[", r"\[")):
        ops.cam_from_grads(torch.rand(1, 2, 3, 3), torch.rand(1, 2, 3, 3), mode, (4, 4))


@pytest.mark.cuda
@pytest.mark.parametrize("mode", MODES)
def test_cuda_runs_the_reference_without_warning(mode):
    A, G, size = _case(SHAPES[2], torch.float32, "contiguous", 70)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = ops.cam_from_grads(A.cuda(), G.cuda(), mode, size)
    torch.testing.assert_close(got.cpu(), ops.cam_from_grads(A, G, mode, size), rtol=1e-5, atol=1e-5)
