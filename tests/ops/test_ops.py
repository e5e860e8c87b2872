"""The native ops against their pure-torch references (actcam_ext.reference) and OpenCV.

Every sample runs through the native kernel, the reference and torch.library.opcheck;
samples cover shapes (1x1 maps, non-square, up- and downsampling, several classes),
dtypes and memory layouts (contiguous, channels_last, sliced, transposed).
"""

import cv2
import numpy as np
import pytest
import torch

import actcam_ext as ac
from actcam_ext.ops import _colormap, reference

FLOATS = [torch.float32, torch.float16, torch.bfloat16]


def _layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values as ``t`` [B,K,h,w] in another memory layout."""
    if layout == "contiguous":
        return t.contiguous()
    if layout == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    if layout == "sliced":  # every other channel and a cropped border of a larger tensor
        big = torch.zeros(t.shape[0], 2 * t.shape[1], t.shape[2] + 2, t.shape[3] + 3, dtype=t.dtype, device=t.device)
        view = big[:, ::2, 1:-1, 2:-1]
        view.copy_(t)
        return view
    if layout == "transposed":  # spatial dims swapped in memory
        return t.transpose(2, 3).contiguous().transpose(2, 3)
    raise ValueError(layout)


def _randn(*shape, dtype=torch.float32, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(dtype=dtype, device=device)


def cam_samples(device):
    """(name, args, kwargs) for actcam.cam."""
    samples = []
    shapes = [  # (B, C or None, K, h, w, H, W)
        (2, None, 16, 7, 7, 224, 224),   # the classic case, upsampling
        (3, None, 8, 7, 5, 33, 50),      # non-square, odd factors
        (2, None, 8, 1, 1, 9, 11),       # a 1x1 map upsampled: constant -> zeros
        (2, None, 8, 20, 24, 7, 5),      # downsampling
        (1, None, 2048, 7, 7, 224, 224), # ResNet-50's last block
        (2, 3, 32, 14, 14, 64, 48),      # C classes per image
        (1, None, 4, 120, 110, 130, 100),# a large low-res map (CUDA: not in shared memory)
    ]
    for i, (B, C, K, h, w, H, W) in enumerate(shapes):
        for dtype in FLOATS:
            for layout in ("contiguous", "channels_last", "sliced", "transposed"):
                if dtype != torch.float32 and layout in ("sliced", "transposed"):
                    continue
                A = _layout(_randn(B, K, h, w, dtype=dtype, device=device, seed=i), layout)
                wshape = (B, K) if C is None else (B, C, K)
                wts = _randn(*wshape, device=device, seed=100 + i).to(dtype)
                name = f"B{B}C{C}K{K}_{h}x{w}to{H}x{W}_{str(dtype)[6:]}_{layout}"
                samples.append((name, (A, wts, [H, W]), {}))
    A = _randn(2, 8, 6, 5, device=device, seed=7)
    wts = _randn(2, 8, device=device, seed=8)
    for relu in (True, False):
        for normalize in (True, False):
            samples.append((f"relu{relu}_norm{normalize}", (A, wts, [17, 13]), dict(relu=relu, normalize=normalize)))
    return samples


def gradcampp_samples(device):
    samples = []
    for i, (B, K, h, w) in enumerate([(2, 16, 7, 7), (3, 8, 14, 10), (1, 4, 1, 1), (32, 64, 14, 14)]):
        for dtype in FLOATS:
            for layout in ("contiguous", "channels_last", "sliced"):
                if dtype != torch.float32 and layout == "sliced":
                    continue
                A = _layout(torch.relu(_randn(B, K, h, w, dtype=dtype, device=device, seed=i)), layout)
                g = _layout(_randn(B, K, h, w, dtype=dtype, device=device, seed=50 + i) * 1e-2, layout)
                samples.append((f"B{B}K{K}_{h}x{w}_{str(dtype)[6:]}_{layout}", (A, g), {}))
    return samples


def overlay_samples(device):
    samples = []
    for i, (B, H, W) in enumerate([(2, 16, 24), (1, 1, 1), (3, 37, 29)]):
        for dtype in FLOATS:
            g = torch.Generator().manual_seed(i)
            maps = torch.rand(B, H, W, generator=g).to(dtype=dtype, device=device)
            images = torch.randint(0, 256, (B, H, W, 3), generator=g, dtype=torch.uint8).to(device)
            samples.append((f"B{B}_{H}x{W}_{str(dtype)[6:]}", (maps, images), dict(image_weight=0.3)))
    # an image given as a channels-first tensor permuted to [B,H,W,3]: non-contiguous
    chw = torch.randint(0, 256, (2, 3, 20, 30), dtype=torch.uint8).to(device)
    maps = torch.rand(2, 30, 20).to(device).transpose(1, 2)
    samples.append(("permuted_inputs", (maps, chw.permute(0, 2, 3, 1)), dict(image_weight=0.6)))
    return samples


def _ids(samples):
    return [s[0] for s in samples]


CAM_SAMPLES = cam_samples("cpu")
GRADCAMPP_SAMPLES = gradcampp_samples("cpu")
OVERLAY_SAMPLES = overlay_samples("cpu")


def _to(args, device):
    return tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in args)


# ----------------------------------------------------------------------------- cam

@pytest.mark.parametrize("name,args,kwargs", CAM_SAMPLES, ids=_ids(CAM_SAMPLES))
def test_cam_matches_reference(device, name, args, kwargs):
    args = _to(args, device)
    got = ac.ops.cam(*args, **kwargs)
    want = reference.cam(*args, **kwargs)
    assert got.dtype == torch.float32 and got.device.type == device
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    if kwargs.get("normalize", True):
        assert got.min() >= 0 and got.max() <= 1


@pytest.mark.parametrize("name,args,kwargs", CAM_SAMPLES, ids=_ids(CAM_SAMPLES))
def test_cam_opcheck(device, name, args, kwargs):
    torch.library.opcheck(torch.ops.actcam.cam.default, _to(args, device), kwargs)


def test_cam_reference_is_the_tutorial_chain():
    """The reference equals the tutorial's Grad-CAM lines (weights * A, sum, ReLU, interpolate, min-max)."""
    A = _randn(1, 64, 7, 7, seed=3).relu()
    grads = _randn(1, 64, 7, 7, seed=4)
    weights = grads.view(1, 64, -1).mean(2)
    m = torch.relu((weights.view(1, 64, 1, 1) * A).sum(1, keepdim=True))
    m = torch.nn.functional.interpolate(m, size=(224, 224), mode="bilinear", align_corners=False)
    m = (m - m.min()).div(m.max() - m.min())
    torch.testing.assert_close(reference.cam(A, weights, (224, 224)), m[:, 0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ac.ops.cam(A, weights, (224, 224)), m[:, 0], rtol=1e-5, atol=1e-6)


def test_cam_constant_map_gives_zeros(device):
    A = torch.ones(2, 4, 7, 7, device=device)
    w = torch.tensor([[1.0, -1.0, 0.5, -0.5], [0.0, 0.0, 0.0, 0.0]], device=device)  # both maps constant
    out = ac.ops.cam(A, w, (32, 32))
    assert torch.equal(out, torch.zeros_like(out))
    # a map negative everywhere is all zero after ReLU: zeros again, not NaN
    out = ac.ops.cam(A, -torch.ones(2, 4, device=device), (8, 8))
    assert torch.equal(out, torch.zeros_like(out))


# Maps whose spread is at the edges of the float32 range: a subnormal spread (1 / spread
# overflows to inf), the smallest normal spread, and a spread beyond the float32 range.
EXTREME_SPREADS = [
    ("subnormal_spread_at_zero", [[0.0, 1e-40], [0.0, 0.0]]),
    ("smallest_subnormal", [[0.0, 1.4e-45], [1.4e-45, 0.0]]),
    ("subnormal_spread_of_normals", [[1e-38, 1.0000001e-38], [1e-38, 1e-38]]),
    ("just_normal_spread", [[0.0, 2e-38], [1e-38, 0.0]]),
    ("spread_beyond_float32", [[-3e38, 3e38], [0.0, 1e38]]),
    ("spread_beyond_float32_at_the_limits", [[-3.4e38, 3.4e38], [-3.4e38, 3.4e38]]),
]


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("size", [(2, 2), (5, 7), (1, 1)])
@pytest.mark.parametrize("name,values", EXTREME_SPREADS, ids=[e[0] for e in EXTREME_SPREADS])
def test_cam_extreme_spread_stays_finite(device, name, values, size, relu):
    """Finite input never gives NaN: a subnormal spread counts as a constant map (zeros), and a
    spread beyond the float32 range still normalises to [0, 1]."""
    A = torch.tensor(values, device=device).view(1, 1, 2, 2)
    w = torch.ones(1, 1, device=device)
    got = ac.ops.cam(A, w, size, relu=relu)
    want = reference.cam(A, w, size, relu=relu)
    assert want.isfinite().all(), want
    assert got.isfinite().all(), got
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert got.min() >= 0 and got.max() <= 1


def test_cam_subnormal_maps_are_constant(device):
    """Every map of subnormal values has a subnormal spread: zeros, on every path."""
    A = _randn(3, 4, 6, 5, device=device, seed=11) * 1e-41
    w = _randn(3, 2, 4, device=device, seed=12).abs()
    for relu in (True, False):
        got = ac.ops.cam(A, w, (9, 4), relu=relu)
        assert torch.equal(got, torch.zeros_like(got))
        assert torch.equal(reference.cam(A, w, (9, 4), relu=relu), got)


def test_cam_nan_and_inf_follow_the_reference(device):
    """Documented behaviour: a NaN or inf in a map's inputs makes that normalised map all NaN."""
    A = _randn(3, 4, 5, 5, device=device, seed=9)
    A[0, 1, 2, 2] = float("nan")
    A[1, 2, 1, 3] = float("inf")
    w = torch.ones(3, 4, device=device)
    got = ac.ops.cam(A, w, (10, 10))
    want = reference.cam(A, w, (10, 10))
    torch.testing.assert_close(got, want, equal_nan=True)
    assert got[0].isnan().all()
    assert got[1].isnan().all()
    assert got[2].isfinite().all()
    raw = ac.ops.cam(A, w, (10, 10), normalize=False)  # without normalisation: as computed
    torch.testing.assert_close(raw, reference.cam(A, w, (10, 10), normalize=False), equal_nan=True)


NON_FINITE_SHAPES = [  # (h, w, H, W)
    (4, 4, 4, 8),     # rows kept at their size (F.interpolate copies such an axis)
    (4, 4, 4, 4),     # no resize at all
    (4, 4, 12, 12),   # factor 3: interior taps of weight 0
    (5, 7, 11, 13),
    (8, 6, 3, 2),     # downsampling: some low-res pixels are read by no output pixel
    (1, 1, 3, 5),
    (3, 1, 1, 4),
]


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("h,w,H,W", NON_FINITE_SHAPES)
def test_cam_non_finite_contract(device, h, w, H, W, relu):
    """The documented non-finite rule: with normalize=False an output pixel is non-finite exactly
    when one of the low-resolution pixels its bilinear taps read (weight 0 included) is
    non-finite, and every other pixel is finite and equals the reference; with normalize=True a
    map is all NaN exactly when it has such a pixel."""
    from _oracle import low_res_map, source_nonfinite

    g = torch.Generator().manual_seed(h * 1000 + w * 100 + H * 10 + W)
    B, K = 6, 3
    A = torch.randn(B, K, h, w, generator=g)
    for b, value in enumerate([float("nan"), float("inf"), -float("inf"), float("nan"), float("inf")]):
        A[b, b % K, torch.randint(h, (1,), generator=g), torch.randint(w, (1,), generator=g)] = value
    weights = torch.rand(B, 2, K, generator=g) + 0.5
    weights[4, 1, 1] = 0.0  # 0 * inf in the channel sum
    A, weights = A.to(device), weights.to(device)
    nbhd = source_nonfinite(low_res_map(A, weights, relu), (H, W))
    assert nbhd.any() and not nbhd.all()

    got = ac.ops.cam(A, weights, (H, W), relu=relu, normalize=False)
    want = reference.cam(A, weights, (H, W), relu=relu, normalize=False)
    assert torch.equal(~got.isfinite(), nbhd)
    assert not (~want.isfinite() & ~nbhd).any()
    torch.testing.assert_close(got[~nbhd], want[~nbhd], rtol=1e-5, atol=1e-5)

    got = ac.ops.cam(A, weights, (H, W), relu=relu)
    all_nan = nbhd.flatten(2).any(-1)
    assert torch.equal(got.isnan().flatten(2).all(-1), all_nan)
    assert got[~all_nan].isfinite().all()
    torch.testing.assert_close(got, reference.cam(A, weights, (H, W), relu=relu), rtol=1e-5, atol=1e-5,
                               equal_nan=True)


def test_cam_empty_batch(device):
    out = ac.ops.cam(torch.zeros(0, 8, 7, 7, device=device), torch.zeros(0, 8, device=device), (10, 12))
    assert out.shape == (0, 10, 12)
    out = ac.ops.cam(torch.zeros(0, 8, 7, 7, device=device), torch.zeros(0, 3, 8, device=device), (10, 12))
    assert out.shape == (0, 3, 10, 12)


# ----------------------------------------------------------------------------- gradcampp_weights

@pytest.mark.parametrize("name,args,kwargs", GRADCAMPP_SAMPLES, ids=_ids(GRADCAMPP_SAMPLES))
def test_gradcampp_weights_matches_reference(device, name, args, kwargs):
    args = _to(args, device)
    got = ac.ops.gradcampp_weights(*args)
    want = reference.gradcampp_weights(*args)
    assert got.dtype == torch.float32 and got.shape == args[0].shape[:2]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name,args,kwargs", GRADCAMPP_SAMPLES, ids=_ids(GRADCAMPP_SAMPLES))
def test_gradcampp_weights_opcheck(device, name, args, kwargs):
    torch.library.opcheck(torch.ops.actcam.gradcampp_weights.default, _to(args, device))


def test_gradcampp_weights_hand_computed(device):
    """Eq. 19 worked by hand, including a zero denominator (alpha = 0 there, never inf)."""
    A = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[-1.0, -1.0], [-1.0, -1.0]]]], device=device)
    g = torch.tensor([[[[0.5, -0.5], [0.0, 1.0]], [[0.5, 0.25], [0.5, 0.5]]]], device=device)
    # channel 0: S = 10; alpha = 1 / (2 + 10 g) for g != 0: g=0.5 -> 1/7, g=1 -> 1/12;
    #   w = 0.5/7 + 1/12 (g=-0.5 and g=0 contribute nothing)
    # channel 1: S = -4; g=0.5 -> 2 + (-4)(0.5) = 0: zero denominator, alpha = 0;
    #   g=0.25 -> alpha = 1 / (2 - 1) = 1, w = 0.25
    want = torch.tensor([[0.5 / 7 + 1 / 12, 0.25]], device=device)
    torch.testing.assert_close(ac.ops.gradcampp_weights(A, g), want)
    torch.testing.assert_close(reference.gradcampp_weights(A, g), want)


def test_gradcampp_weights_empty_batch(device):
    out = ac.ops.gradcampp_weights(torch.zeros(0, 5, 3, 3, device=device), torch.zeros(0, 5, 3, 3, device=device))
    assert out.shape == (0, 5)


# ----------------------------------------------------------------------------- overlay

def _cv2_overlay(maps: torch.Tensor, images: torch.Tensor, image_weight: float) -> np.ndarray:
    """The tutorial's colouring (cv2.applyColorMap of np.uint8(255 * map)) + cv2.addWeighted, in RGB."""
    out = []
    for m, img in zip(maps.float().cpu().numpy(), images.cpu().numpy()):
        heat = cv2.applyColorMap(np.uint8(255 * m), cv2.COLORMAP_JET)[..., ::-1]
        out.append(cv2.addWeighted(np.ascontiguousarray(heat), 1 - image_weight, np.ascontiguousarray(img),
                                   image_weight, 0))
    return np.stack(out)


def test_jet_tables_are_byte_identical_to_opencv(device):
    cv2_table = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_JET)[:, 0, ::-1]
    assert np.array_equal(_colormap.jet_rgb_table().numpy(), cv2_table)
    # the C++/CUDA table, read through the op: image_weight=0 returns the colour itself;
    # (i + 0.5) / 255 lands safely inside colour index i
    maps = ((torch.arange(256, dtype=torch.float32) + 0.5) / 255).view(1, 16, 16).to(device)
    images = torch.full((1, 16, 16, 3), 77, dtype=torch.uint8, device=device)
    colours = ac.ops.overlay(maps, images, image_weight=0.0).reshape(256, 3).cpu().numpy()
    assert np.array_equal(colours, cv2_table)


@pytest.mark.parametrize("name,args,kwargs", OVERLAY_SAMPLES, ids=_ids(OVERLAY_SAMPLES))
def test_overlay_matches_opencv(device, name, args, kwargs):
    maps, images = _to(args, device)
    got = ac.ops.overlay(maps, images, **kwargs)
    assert got.dtype == torch.uint8 and got.shape == images.shape and got.device.type == device
    want = _cv2_overlay(maps, images, kwargs["image_weight"])
    diff = np.abs(got.cpu().numpy().astype(int) - want.astype(int))
    assert diff.max() <= 1, f"blend differs from cv2.addWeighted by {diff.max()}"
    # the reference is the same computation: exactly equal
    assert torch.equal(got, reference.overlay(maps, images, **kwargs))


@pytest.mark.parametrize("name,args,kwargs", OVERLAY_SAMPLES, ids=_ids(OVERLAY_SAMPLES))
def test_overlay_opcheck(device, name, args, kwargs):
    torch.library.opcheck(torch.ops.actcam.overlay.default, _to(args, device), kwargs)


def test_overlay_out_of_range_and_nan(device):
    """Documented: values are clamped to the table (below 0 and NaN -> index 0, above 1 -> 255)."""
    maps = torch.tensor([[[-0.5, float("nan"), 1.5, float("inf"), 1.0, 0.0]]], device=device)
    images = torch.zeros(1, 1, 6, 3, dtype=torch.uint8, device=device)
    got = ac.ops.overlay(maps, images, image_weight=0.0)[0, 0].cpu()
    table = _colormap.jet_rgb_table()
    assert torch.equal(got, table[[0, 0, 255, 255, 255, 0]])
    assert torch.equal(got, reference.overlay(maps, images, 0.0)[0, 0].cpu())


# ----------------------------------------------------------------------------- bad input

BAD_INPUTS = [
    # (op, args, message pattern)
    ("cam", lambda d: (torch.zeros(2, 8, 7, device=d), torch.zeros(2, 8, device=d), [4, 4]), r"activations must be a 4-D"),
    ("cam", lambda d: (torch.zeros(2, 8, 7, 7, device=d), torch.zeros(2, 5, device=d), [4, 4]), r"weights must have K=8"),
    ("cam", lambda d: (torch.zeros(2, 8, 7, 7, device=d), torch.zeros(3, 8, device=d), [4, 4]), r"batch size of activations"),
    ("cam", lambda d: (torch.zeros(2, 8, 7, 7, device=d), torch.zeros(2, 8, 1, 1, device=d), [4, 4]), r"weights must be a 2-D or 3-D"),
    ("cam", lambda d: (torch.zeros(2, 8, 7, 7, device=d), torch.zeros(2, 8, device=d), [0, 4]), r"size must be positive"),
    ("cam", lambda d: (torch.zeros(2, 8, 7, 7, device=d), torch.zeros(2, 8, device=d), [-3, 4]), r"size must be positive"),
    ("cam", lambda d: (torch.zeros(2, 8, 7, 7, dtype=torch.int64, device=d), torch.zeros(2, 8, device=d), [4, 4]), r"activations must be float32, float16 or bfloat16"),
    ("cam", lambda d: (torch.zeros(2, 8, 7, 7, dtype=torch.complex64, device=d), torch.zeros(2, 8, device=d), [4, 4]), r"activations must be float32"),
    ("cam", lambda d: (torch.zeros(2, 8, 7, 7, device=d), torch.zeros(2, 8, dtype=torch.int32, device=d), [4, 4]), r"weights must be float32"),
    ("cam", lambda d: (torch.zeros(2, 8, 0, 7, device=d), torch.zeros(2, 8, device=d), [4, 4]), r"non-empty spatial size"),
    ("gradcampp_weights", lambda d: (torch.zeros(2, 8, 7, 7, device=d), torch.zeros(2, 8, 7, 6, device=d)), r"grads must have the shape of activations"),
    ("gradcampp_weights", lambda d: (torch.zeros(2, 8, 7, device=d), torch.zeros(2, 8, 7, device=d)), r"activations must be a 4-D"),
    ("gradcampp_weights", lambda d: (torch.zeros(2, 8, 7, 7, dtype=torch.int32, device=d), torch.zeros(2, 8, 7, 7, device=d)), r"activations must be float32"),
    ("gradcampp_weights", lambda d: (torch.zeros(2, 8, 7, 7, device=d), torch.zeros(2, 8, 7, 7, dtype=torch.float16, device=d)), r"dtype of activations"),
    ("overlay", lambda d: (torch.zeros(2, 4, 4, device=d), torch.zeros(2, 4, 4, 3, device=d), 0.5), r"images must be a uint8"),
    ("overlay", lambda d: (torch.zeros(2, 4, 4, device=d), torch.zeros(2, 4, 5, 3, dtype=torch.uint8, device=d), 0.5), r"to match maps"),
    ("overlay", lambda d: (torch.zeros(2, 4, 4, device=d), torch.zeros(2, 4, 4, 4, dtype=torch.uint8, device=d), 0.5), r"to match maps"),
    ("overlay", lambda d: (torch.zeros(2, 1, 4, 4, device=d), torch.zeros(2, 4, 4, 3, dtype=torch.uint8, device=d), 0.5), r"maps must be a 3-D"),
    ("overlay", lambda d: (torch.zeros(2, 4, 4, device=d), torch.zeros(2, 4, 4, 3, dtype=torch.uint8, device=d), 1.5), r"image_weight must be in \[0, 1\]"),
    ("overlay", lambda d: (torch.zeros(2, 4, 4, dtype=torch.uint8, device=d), torch.zeros(2, 4, 4, 3, dtype=torch.uint8, device=d), 0.5), r"maps must be float32"),
]


@pytest.mark.parametrize("impl", ["native", "reference"])
@pytest.mark.parametrize("op,make_args,pattern", BAD_INPUTS, ids=[f"{b[0]}-{b[2][:30]}" for b in BAD_INPUTS])
def test_bad_input_raises_clear_error(device, impl, op, make_args, pattern):
    fn = getattr(ac.ops if impl == "native" else reference, op)
    with pytest.raises(ValueError, match=pattern):
        fn(*make_args(device))


BAD_SIZES = [
    ("12", r"size must be two integers"),
    ((9.7, 9.2), r"size must be two integers"),
    ([9.0, 9], r"size must be two integers"),
    ((True, 4), r"size must be two integers"),
    ((4, np.bool_(True)), r"size must be two integers"),
    (9, r"size must be two integers"),
    (None, r"size must be two integers"),
    (np.array([9, 9]), r"size must be two integers"),
    (torch.tensor([9, 9]), r"size must be two integers"),
    ((torch.tensor(9), 9), r"size must be two integers"),
    ((9, 9, 9), r"size must be two integers"),
    ((9,), r"size must be two integers"),
    ("ab", r"size must be two integers"),
    ((0, 4), r"size must be positive"),
    ([4, -3], r"size must be positive"),
    ((np.int64(-1), 4), r"size must be positive"),
]


def _cam_path(path: str, A, w, size):
    """ac.ops.cam (or the reference) on one of its paths: native kernel, reference, fallback
    (meta tensors, no kernel), and fake tensors (what torch.compile traces with)."""
    if path == "native":
        return ac.ops.cam(A, w, size)
    if path == "reference":
        return reference.cam(A, w, size)
    if path == "fallback":
        return ac.ops.cam(A.to("meta"), w.to("meta"), size)
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode() as mode:
        return ac.ops.cam(mode.from_tensor(A), mode.from_tensor(w), size)


@pytest.mark.filterwarnings("ignore:actcam. cam on meta runs the pure-torch fallback")
@pytest.mark.parametrize("path", ["native", "reference", "fallback", "fake"])
@pytest.mark.parametrize("size,pattern", BAD_SIZES, ids=[repr(b[0]).replace(" ", "") for b in BAD_SIZES])
def test_cam_size_must_be_two_positive_integers(path, size, pattern):
    A, w = torch.zeros(2, 8, 7, 7), torch.zeros(2, 8)
    with pytest.raises(ValueError, match=pattern):
        _cam_path(path, A, w, size)


@pytest.mark.parametrize("size", [[0, 4], [4, -3]])
def test_cam_fake_kernel_checks_size(size):
    """The fake kernel itself (the raw op under fake tensors) names size like the C++ kernel."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    A, w = torch.zeros(2, 8, 7, 7), torch.zeros(2, 8)
    with pytest.raises(ValueError, match=r"actcam: size must be positive"):
        torch.ops.actcam.cam.default(A, w, size)
    with FakeTensorMode() as mode, pytest.raises(ValueError, match=r"actcam: size must be positive"):
        torch.ops.actcam.cam.default(mode.from_tensor(A), mode.from_tensor(w), size)


@pytest.mark.filterwarnings("ignore:actcam. cam on meta runs the pure-torch fallback")
@pytest.mark.parametrize("path", ["native", "reference", "fallback", "fake"])
def test_cam_size_accepts_integer_sequences(path):
    A, w = torch.zeros(2, 8, 7, 7), torch.zeros(2, 8)
    for size in [(5, 6), [5, 6], torch.Size([5, 6]), (np.int64(5), np.int32(6))]:
        assert tuple(_cam_path(path, A, w, size).shape) == (2, 5, 6)


def test_cam_bad_size_under_torch_compile():
    """Traced code raises the same ValueError (without fullgraph, dynamo lets it propagate)."""
    def f(A, w):
        return ac.ops.cam(A, w, (0, 3))

    torch._dynamo.reset()
    with pytest.raises(ValueError, match=r"actcam: size must be positive"):
        torch.compile(f)(torch.zeros(2, 8, 7, 7), torch.zeros(2, 8))
    torch._dynamo.reset()


def test_fake_cuda_float64_is_refused_by_the_registered_op():
    """The registered CUDA op has no float64 kernel: its fake kernel says so as csrc/checks.h
    does (ac.ops sends CUDA float64 to the reference instead)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        A = torch.empty(2, 3, 4, 4, device="cuda", dtype=torch.float64)
        w = torch.empty(2, 3, device="cuda")
        with pytest.raises(ValueError, match=r"activations must be float32, float16 or bfloat16 \(or float64 on the CPU\)"):
            torch.ops.actcam.cam.default(A, w, [3, 3])
        assert torch.ops.actcam.cam.default(A.float(), w, [3, 3]).shape == (2, 3, 3)


@pytest.mark.cuda
@pytest.mark.parametrize("op", ["cam", "gradcampp_weights", "overlay"])
def test_tensors_on_different_devices(op):
    args = {
        "cam": (torch.zeros(2, 8, 7, 7, device="cuda"), torch.zeros(2, 8), [4, 4]),
        "gradcampp_weights": (torch.zeros(2, 8, 7, 7, device="cuda"), torch.zeros(2, 8, 7, 7)),
        "overlay": (torch.zeros(2, 4, 4, device="cuda"), torch.zeros(2, 4, 4, 3, dtype=torch.uint8), 0.5),
    }[op]
    with pytest.raises(ValueError, match="same device"):
        getattr(torch.ops.actcam, op)(*args)


def test_device_mismatch_check_in_python_path():
    """The fake kernels / reference name the mismatch too (meta stands in for a second device)."""
    with pytest.raises(ValueError, match="activations and weights must be on the same device"):
        reference.cam(torch.zeros(2, 8, 7, 7), torch.zeros(2, 8, device="meta"), [4, 4])


# ----------------------------------------------------------------------------- tracing and fallback

def test_torch_compile_fullgraph(device):
    """The whole post-processing chain compiles into one graph through the fake kernels."""

    def explain(A, grads, images):
        weights = grads.mean(dim=(2, 3))
        maps = ac.ops.cam(A, weights, images.shape[1:3])
        pp = ac.ops.cam(A, ac.ops.gradcampp_weights(A, grads), images.shape[1:3])
        return maps, ac.ops.overlay(maps, images, 0.5), pp

    A = _randn(2, 32, 7, 7, device=device, seed=1).relu()
    grads = _randn(2, 32, 7, 7, device=device, seed=2)
    images = torch.randint(0, 256, (2, 48, 64, 3), dtype=torch.uint8, device=device)
    compiled = torch.compile(explain, fullgraph=True)
    got = compiled(A, grads, images)
    want = explain(A, grads, images)
    # inductor may sum the mean in another order: maps agree to rounding, and the compiled
    # overlay is exactly the op applied to the compiled maps
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-5)
    assert torch.equal(got[1], ac.ops.overlay(got[0], images, 0.5))
    torch.testing.assert_close(got[2], want[2], rtol=1e-5, atol=1e-5)


def test_native_is_live_on_cpu():
    assert ac.native_available("cpu"), "the extension should be built (pip install --no-build-isolation -e .)"
    assert not ac.native_available("meta")


def test_fallback_runs_reference_and_warns_once():
    """A device without a kernel (meta here) runs the reference, with one RuntimeWarning per op and device."""
    from actcam_ext.ops import _native
    _native._warned.discard(("cam", "meta"))
    A = torch.empty(2, 8, 7, 7, device="meta")
    w = torch.empty(2, 8, device="meta")
    with pytest.warns(RuntimeWarning, match="cam on meta runs the pure-torch fallback"):
        out = ac.ops.cam(A, w, (20, 30))
    assert out.shape == (2, 20, 30) and out.device.type == "meta"
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ac.ops.cam(A, w, (20, 30))  # no second warning
