"""Test-side statements of the cam contract that the reference alone cannot give.

``source_pixels`` names, per output pixel, the low-resolution pixels that the bilinear resize
reads (F.interpolate's formula, align_corners=False, in float32 as ATen computes it),
including a tap whose weight is 0: the contract for non-finite values is stated over them.
"""

import torch


def bilinear_taps(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(i0, i1) per output index: the two source indices of each output pixel along one axis."""
    scale = torch.tensor(in_size, dtype=torch.float32) / torch.tensor(out_size, dtype=torch.float32)
    dst = torch.arange(out_size, dtype=torch.float32)
    src = (scale * (dst + 0.5) - 0.5).clamp_min(0.0)
    i0 = src.floor().long().clamp_max(in_size - 1)
    i1 = torch.where(i0 < in_size - 1, i0 + 1, i0)
    return i0, i1


def low_res_map(activations: torch.Tensor, weights: torch.Tensor, relu: bool) -> torch.Tensor:
    """L = ReLU(sum_k w_k A_k) as [B,C,h,w], accumulated in float32 (float64 for float64 input)."""
    dtype = torch.float64 if torch.float64 in (activations.dtype, weights.dtype) else torch.float32
    w = weights.to(dtype) if weights.dim() == 3 else weights.to(dtype)[:, None]
    L = torch.einsum("bck,bkhw->bchw", w, activations.to(dtype))
    return torch.relu(L) if relu else L


def source_nonfinite(L: torch.Tensor, size) -> torch.Tensor:
    """[B,C,H,W] bool: the output pixel reads (through one of its four taps) a non-finite pixel of L."""
    H, W = size
    yi0, yi1 = bilinear_taps(L.shape[-2], H)
    xi0, xi1 = bilinear_taps(L.shape[-1], W)
    bad = ~L.isfinite()
    out = torch.zeros(*L.shape[:2], H, W, dtype=torch.bool, device=L.device)
    for yi in (yi0, yi1):
        rows = bad[:, :, yi.to(L.device)]
        for xi in (xi0, xi1):
            out |= rows[:, :, :, xi.to(L.device)]
    return out


def low_res_from_grads(activations: torch.Tensor, grads: torch.Tensor, mode: str, relu: bool) -> torch.Tensor:
    """The low-resolution map of cam_from_grads as [B,C,h,w], in float32 (float64 for float64
    input), written out per mode from the papers' formulas."""
    dtype = torch.float64 if activations.dtype == torch.float64 else torch.float32
    A = activations.to(dtype)[:, None]
    g = (grads if grads.dim() == 5 else grads[:, None]).to(dtype)
    if mode == "gradcam":
        L = (g.mean(dim=(-2, -1), keepdim=True) * A).sum(2)
    elif mode == "xgradcam":
        den = A.sum(dim=(-2, -1), keepdim=True)
        w = torch.where(den != 0, (g * A).sum(dim=(-2, -1), keepdim=True) / torch.where(den != 0, den, 1.0), 0.0)
        L = (w * A).sum(2)
    elif mode == "hirescam":
        L = (g * A).sum(2)
    elif mode == "gradcam_elementwise":
        L = torch.relu(g * A).sum(2)
    else:
        L = (torch.relu(g) * A).sum(2)
    return torch.relu(L) if relu else L
