"""Pure-torch versions of the native ops: the fallback and the test oracle.

Each function has the signature and the contract of ``actcam_ext.ops.<op>`` (docs/ops.md)
and is written to be obviously right rather than fast. They are never registered as the op.
"""

import torch
import torch.nn.functional as F

from . import _checks
from ._colormap import jet_rgb_table

# A map whose spread is at most this fraction of its largest magnitude is "constant up to
# float rounding" and normalises to zeros instead of amplifying rounding noise (or 0/0 = NaN).
CONSTANT_MAP_RTOL = 1e-6


def minmax_normalize(maps: torch.Tensor) -> torch.Tensor:
    """Scale each map (last two dims) to [0, 1]: (map - min) / (max - min).

    A constant map becomes zeros: one whose spread max - min is at most CONSTANT_MAP_RTOL
    times its largest magnitude, or subnormal (below ``torch.finfo(dtype).tiny``). A spread
    beyond the dtype's range is taken at half scale, so finite maps always give finite values.
    A map holding any NaN or inf has no meaningful scale and comes out all NaN.

    Differentiable: the gradient reaches the min and max pixels as amin/amax's backward
    spreads it (evenly over ties); a constant or non-finite map, whose output does not depend
    on its values, passes zero gradient (never NaN).
    """
    non_finite = ~torch.isfinite(maps).all(dim=-1, keepdim=True).all(dim=-2, keepdim=True)
    # A non-finite map takes its extremes from zeros instead: amin/amax's backward divides by
    # the number of pixels equal to the extreme, which is 0 for a NaN extreme (0 / 0 = NaN).
    finite_maps = torch.where(non_finite, 0.0, maps)
    lo = finite_maps.amin(dim=(-2, -1), keepdim=True)
    hi = finite_maps.amax(dim=(-2, -1), keepdim=True)
    spread = hi - lo
    finfo = torch.finfo(maps.dtype)
    constant = (spread <= CONSTANT_MAP_RTOL * torch.maximum(lo.abs(), hi.abs())) | (spread < finfo.tiny)
    fixed = constant | non_finite
    scale = torch.where(spread > finfo.max, 0.5, 1.0).to(maps.dtype)
    # Both the numerator and the denominator are replaced (by 0 and 1) where the map is fixed:
    # torch.where passes a zero gradient to the unselected branch, but a division there by a
    # zero or NaN spread would still turn that zero into NaN (0 / 0, 0 * NaN).
    num = torch.where(fixed, 0.0, maps * scale - lo * scale)
    den = torch.where(fixed, 1.0, hi * scale - lo * scale)
    return (num / den).masked_fill(non_finite, float("nan"))


def _finish(maps: torch.Tensor, size, relu: bool, normalize: bool, per_class: bool) -> torch.Tensor:
    """[B,C,h,w] low-resolution maps -> ReLU -> bilinear resize to ``size`` -> per-map min-max."""
    if relu:
        maps = torch.relu(maps)
    # one map per row of a [B*C,1,h,w] batch: interpolate refuses C = 0 maps per image
    B, C, h, w = maps.shape
    maps = F.interpolate(maps.reshape(B * C, 1, h, w), size=tuple(size), mode="bilinear", align_corners=False)
    maps = maps.reshape(B, C, *maps.shape[-2:])
    if normalize:
        maps = minmax_normalize(maps)
    maps = maps.contiguous()
    return maps if per_class else maps[:, 0]


def cam(activations: torch.Tensor, weights: torch.Tensor, size, relu: bool = True,
        normalize: bool = True) -> torch.Tensor:
    """sum_k weights[k] * activations[k] -> ReLU -> bilinear resize -> per-map min-max, in
    float32 (float64 when an input is float64). Differentiable with respect to both inputs."""
    size = _checks.cam(activations, weights, size, relu, normalize)[-2:]
    dtype = _checks.compute_dtype(activations, weights)
    per_class = weights.dim() == 3
    wts = weights.to(dtype) if per_class else weights.to(dtype)[:, None]
    maps = torch.einsum("bck,bkhw->bchw", wts, activations.to(dtype))
    return _finish(maps, size, relu, normalize, per_class)


def cam_from_grads(activations: torch.Tensor, grads: torch.Tensor, mode: str, size, relu: bool = True,
                   normalize: bool = True) -> torch.Tensor:
    """Class activation maps from activations A [B,K,h,w] and gradients g [B,K,h,w] or
    [B,C,K,h,w], in float32 (float64 for float64 input). The low-resolution map of ``mode``:

    - gradcam: sum_k w_k A_k with w_k = mean_ij g_kij;
    - xgradcam: sum_k w_k A_k with w_k = sum_ij g_kij A_kij / sum_ij A_kij (0 where that sum is 0);
    - hirescam: sum_k g_k * A_k;
    - gradcam_elementwise: sum_k relu(g_k * A_k);
    - layercam: sum_k relu(g_k) * A_k;

    then, as in ``cam``, ReLU -> bilinear resize -> per-map min-max. Differentiable with respect
    to both inputs (a zero XGrad-CAM denominator passes zero gradient).
    """
    size = _checks.cam_from_grads(activations, grads, mode, size, relu, normalize)[-2:]
    dtype = _checks.compute_dtype(activations, grads)
    per_class = grads.dim() == 5
    A = activations.to(dtype)[:, None]  # [B,1,K,h,w]
    g = grads.to(dtype) if per_class else grads.to(dtype)[:, None]  # [B,C,K,h,w]
    if mode == "gradcam":
        maps = torch.einsum("bck,bkhw->bchw", g.mean(dim=(-2, -1)), A[:, 0])
    elif mode == "xgradcam":
        num = (g * A).sum(dim=(-2, -1))
        den = A.sum(dim=(-2, -1))
        nonzero = den != 0
        # a safe denominator where it is zero, so that the unselected branch's gradient is 0, not NaN
        w = torch.where(nonzero, num / torch.where(nonzero, den, 1.0), 0.0)
        maps = torch.einsum("bck,bkhw->bchw", w, A[:, 0])
    elif mode == "hirescam":
        maps = (g * A).sum(dim=2)
    elif mode == "gradcam_elementwise":
        maps = torch.relu(g * A).sum(dim=2)
    else:  # layercam
        maps = (torch.relu(g) * A).sum(dim=2)
    return _finish(maps, size, relu, normalize, per_class)


def gradcampp_weights(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ channel weights, Chattopadhyay et al. 2018, Eq. 19, in float32 (float64 for
    float64 input).

    alpha = g^2 / (2 g^2 + (sum_ab A_ab) g^3), zero where that denominator is zero;
    w_k = sum_ij alpha_ij relu(g_ij). Differentiable with respect to both inputs (a zero
    denominator passes zero gradient).
    """
    _checks.gradcampp_weights(activations, grads)
    dtype = _checks.compute_dtype(activations, grads)
    g = grads.to(dtype)
    s = activations.to(dtype).sum(dim=(2, 3), keepdim=True)
    g2 = g * g
    denom = 2 * g2 + s * g2 * g
    nonzero = denom != 0
    # a safe denominator where it is zero, so that the unselected branch's gradient is 0, not NaN
    alpha = torch.where(nonzero, g2 / torch.where(nonzero, denom, 1.0), 0.0)
    return (alpha * torch.relu(g)).sum(dim=(2, 3))


def overlay(maps: torch.Tensor, images: torch.Tensor, image_weight: float = 0.5) -> torch.Tensor:
    """JET-coloured maps blended over RGB uint8 images, as cv2.applyColorMap + cv2.addWeighted.

    Colour index = floor(255 * map) clamped to 0..255 (NaN -> 0); out = round((1-w) heat + w image).
    """
    _checks.overlay(maps, images, image_weight)
    index = (torch.nan_to_num(maps.float(), nan=0.0) * 255).floor().clamp(0, 255).long()
    heat = jet_rgb_table(maps.device)[index].float()
    w = float(image_weight)
    blend = heat * (1.0 - w) + images.float() * w
    return blend.round().clamp(0, 255).to(torch.uint8)
