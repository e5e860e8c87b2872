"""Oracles and helpers of the compat tests: real photos, pytorch-grad-cam calls that leave the
model clean, activations and gradients captured by an ordinary full-graph forward, the methods'
raw maps written out in float64 numpy from pytorch-grad-cam's formulas, the library's own
documented map (ReLU, bilinear resize, min-max) by hand, and the comparison rule.

The comparison rule: maps agree within ``TOL`` at every image whose raw map (the method's map at
the layer's resolution, after the ReLU) spans more than ``MIN_RANGE``. Below that, float32
rounding of the weighted sum is amplified by the normalisation in either library; each
comparison must keep at least one image, so no test passes by comparing nothing.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

TOL = 1e-4
MIN_RANGE = 1e-3
METHODS = ("GradCAM", "HiResCAM", "GradCAMPlusPlus", "XGradCAM", "EigenCAM", "EigenGradCAM", "LayerCAM",
           "GradCAMElementWise")
GRADIENT_FREE = ("EigenCAM",)
EIGEN = ("EigenCAM", "EigenGradCAM")

MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


def rgb_photos(h: int, w: int, names=("chelsea", "coffee")) -> np.ndarray:
    """scikit-image photos resized to h x w, float32 RGB in [0, 1], [N, h, w, 3]."""
    import cv2
    import skimage.data as sd
    return np.stack([cv2.resize(getattr(sd, n)(), (w, h), interpolation=cv2.INTER_AREA) for n in names]
                    ).astype(np.float32) / 255


def rgb_batch(h: int, w: int, names=("chelsea", "coffee")) -> torch.Tensor:
    """The photos as a batch [N, 3, h, w] in [0, 1] (what torchvision's detectors take)."""
    return torch.from_numpy(rgb_photos(h, w, names)).permute(0, 3, 1, 2).contiguous()


def photos(h: int, w: int, names=("chelsea", "coffee")) -> torch.Tensor:
    """The photos as an ImageNet-normalised batch [N, 3, h, w]."""
    t = torch.from_numpy(rgb_photos(h, w, names)).permute(0, 3, 1, 2)
    return (t - MEAN) / STD


def peer(cls, model, layers, x, targets, reshape=None, **call):
    """pytorch-grad-cam's maps; its hooks released and the parameter gradients of its
    loss.backward() cleared, so the next test sees the model as it was."""
    cam = cls(model=model, target_layers=layers, reshape_transform=reshape)
    try:
        return cam(input_tensor=x, targets=targets, **call)
    finally:
        cam.activations_and_grads.release()
        model.zero_grad(set_to_none=True)


def per_image(targets):
    """pytorch-grad-cam's per-image targets as one score per image."""
    return lambda out: torch.stack([t(o).reshape(()) for t, o in zip(targets, out)])


def capture(model, layers, x, score_fn=None, reshape=None) -> list:
    """[(A, G)] per layer, float64 numpy [B, K, h, w], by an ordinary full-graph forward: A the
    layer's output (mapped by ``reshape``), G = d sum(scores) / d output, mapped alike (None
    without ``score_fn``)."""
    store = {}

    def hook(i):
        def fn(module, args, out):
            store[i] = out
        return fn

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    try:
        with torch.enable_grad():
            out = model(x)
            scores = score_fn(out) if score_fn is not None else None
    finally:
        for h in handles:
            h.remove()
    result = []
    for i in range(len(layers)):
        value = store[i]
        tensors = list(value.values()) if isinstance(value, dict) else [value]
        A = reshape(value) if reshape is not None else value
        G = None
        if scores is not None:
            grads = torch.autograd.grad(scores.sum(), tensors, retain_graph=True, allow_unused=True)
            grads = [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, grads)]
            gv = type(value)(zip(value.keys(), grads)) if isinstance(value, dict) else grads[0]
            G = (reshape(gv) if reshape is not None else gv).detach().double().numpy()
        result.append((A.detach().double().numpy(), G))
    return result


def peer_raw(method: str, A: np.ndarray, G: np.ndarray | None, eigen_smooth: bool = False) -> np.ndarray:
    """pytorch-grad-cam's map of ``method`` at the layer's resolution, before the ReLU, in float64
    (its formulas, epsilons included; the projection is its own get_2d_projection)."""
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    def project(E):
        return get_2d_projection(np.float32(E)).astype(np.float64)

    def weighted(w):
        E = w[:, :, None, None] * A
        return project(E) if eigen_smooth else E.sum(axis=1)

    def elementwise(E):
        return project(E) if eigen_smooth else E.sum(axis=1)

    if method == "EigenCAM":
        return project(A)
    if method == "EigenGradCAM":
        return project(G * A)
    if method == "GradCAM":
        return weighted(G.mean(axis=(2, 3)))
    if method == "GradCAMPlusPlus":
        S = A.sum(axis=(2, 3), keepdims=True)
        alpha = G ** 2 / (2 * G ** 2 + S * G ** 3 + 1e-6)
        alpha = np.where(G != 0, alpha, 0)
        return weighted((np.maximum(G, 0) * alpha).sum(axis=(2, 3)))
    if method == "XGradCAM":
        S = A.sum(axis=(2, 3), keepdims=True)
        return weighted((G * A / (S + 1e-7)).sum(axis=(2, 3)))
    if method == "HiResCAM":
        return elementwise(G * A)
    if method == "GradCAMElementWise":
        return elementwise(np.maximum(G * A, 0))
    if method == "LayerCAM":
        return elementwise(np.maximum(G, 0) * A)
    raise ValueError(method)


def ranges(raw: np.ndarray) -> np.ndarray:
    """Per image: the spread of the raw map after the ReLU."""
    m = np.maximum(raw, 0)
    return m.max(axis=(1, 2)) - m.min(axis=(1, 2))


def minmax64(m: torch.Tensor) -> torch.Tensor:
    """The library's normalisation: (m - min) / (max - min), zeros for a constant map."""
    lo = m.amin(dim=(-2, -1), keepdim=True)
    hi = m.amax(dim=(-2, -1), keepdim=True)
    return torch.where(hi - lo > 0, (m - lo) / (hi - lo), torch.zeros_like(m))


def native_map(raw: np.ndarray, size) -> torch.Tensor:
    """The library's documented map of a raw map [B, h, w] in float64: ReLU, bilinear resize
    (align_corners=False), min-max."""
    m = torch.relu(torch.from_numpy(raw))[:, None]
    return minmax64(F.interpolate(m, size=tuple(size), mode="bilinear", align_corners=False)[:, 0])


def native_principal(E: np.ndarray) -> np.ndarray:
    """The library's principal_projection by hand in float64: the centred h*w x K matrix times its
    first right singular vector, signed so that the largest magnitude is positive."""
    out = []
    for e in E:
        K = e.shape[0]
        M = e.reshape(K, -1).T
        M = M - M.mean(axis=0)
        _, _, vt = np.linalg.svd(M, full_matrices=False)
        p = M @ vt[0]
        if abs(p.min()) > abs(p.max()):
            p = -p
        out.append(p.reshape(e.shape[1:]))
    return np.stack(out)


def as_numpy(maps) -> np.ndarray:
    return maps.detach().double().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps, np.float64)


def assert_maps_close(ours, theirs, spread, tol: float = TOL, what: str = "") -> float:
    """``ours`` and ``theirs`` [B, H, W] agree within ``tol`` at every image whose raw spread
    exceeds MIN_RANGE; at least one image is compared. Returns the largest difference."""
    ours, theirs = as_numpy(ours), as_numpy(theirs)
    assert ours.shape == theirs.shape, (what, ours.shape, theirs.shape)
    keep = np.asarray(spread) > MIN_RANGE
    assert keep.any(), f"{what}: no image has a raw map spanning more than {MIN_RANGE} (spreads {spread})"
    diff = float(np.abs(ours[keep] - theirs[keep]).max())
    assert diff <= tol, f"{what}: max difference {diff:.3g} > {tol} (spreads {spread})"
    return diff


def assert_maps_close_up_to_sign(ours, plus, minus, spread, what: str = "") -> float:
    """Per image, ``ours`` equals ``plus`` or ``minus`` (the pipeline of the projection with either
    SVD sign) within TOL, where the raw spread exceeds MIN_RANGE."""
    ours, plus, minus = as_numpy(ours), as_numpy(plus), as_numpy(minus)
    keep = np.asarray(spread) > MIN_RANGE
    assert keep.any(), f"{what}: no image has a raw map spanning more than {MIN_RANGE} (spreads {spread})"
    worst = 0.0
    for i in np.flatnonzero(keep):
        d = min(np.abs(ours[i] - plus[i]).max(), np.abs(ours[i] - minus[i]).max())
        assert d <= TOL, f"{what}: image {i} differs by {d:.3g} from either sign"
        worst = max(worst, float(d))
    return worst


def peer_pipeline(raw: np.ndarray, size) -> np.ndarray:
    """pytorch-grad-cam's maps of raw maps [B, h, w] at size (H, W), by its own scale_cam_image:
    ReLU, min-max, cv2 resize, then the one-layer aggregation's min-max."""
    from pytorch_grad_cam.utils.image import scale_cam_image
    scaled = scale_cam_image(np.maximum(np.float32(raw), 0), (size[1], size[0]))
    return scale_cam_image(np.maximum(scaled, 0))


def hooks_left(model) -> int:
    """Forward, pre-forward and backward hooks still registered on any module of the model."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())


def grads_left(model) -> int:
    return sum(p.grad is not None for p in model.parameters())
