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
    """
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    hi = maps.amax(dim=(-2, -1), keepdim=True)
    spread = hi - lo
    constant = (spread <= CONSTANT_MAP_RTOL * torch.maximum(lo.abs(), hi.abs())) | (spread < torch.finfo(maps.dtype).tiny)
    scale = torch.where(spread > torch.finfo(maps.dtype).max, 0.5, 1.0).to(maps.dtype)
    out = torch.where(constant, torch.zeros_like(maps), (maps * scale - lo * scale) / (hi * scale - lo * scale))
    non_finite = ~torch.isfinite(maps).all(dim=-1, keepdim=True).all(dim=-2, keepdim=True)
    return out.masked_fill(non_finite, float("nan"))


def cam(activations: torch.Tensor, weights: torch.Tensor, size, relu: bool = True,
        normalize: bool = True) -> torch.Tensor:
    """sum_k weights[k] * activations[k] -> ReLU -> bilinear resize -> per-map min-max, in float32."""
    size = _checks.cam(activations, weights, size, relu, normalize)[-2:]
    per_class = weights.dim() == 3
    w = weights.float() if per_class else weights.float()[:, None]
    maps = torch.einsum("bck,bkhw->bchw", w, activations.float())
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


def gradcampp_weights(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ channel weights, Chattopadhyay et al. 2018, Eq. 19.

    alpha = g^2 / (2 g^2 + (sum_ab A_ab) g^3), zero where that denominator is zero;
    w_k = sum_ij alpha_ij relu(g_ij).
    """
    _checks.gradcampp_weights(activations, grads)
    g = grads.float()
    s = activations.float().sum(dim=(2, 3), keepdim=True)
    g2 = g * g
    denom = 2 * g2 + s * g2 * g
    alpha = torch.where(denom != 0, g2 / denom, torch.zeros_like(g))
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
