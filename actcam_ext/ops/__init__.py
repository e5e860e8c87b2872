"""The fused ops: thin wrappers over ``torch.ops.actcam.*`` with a pure-torch fallback.

Each op validates its arguments (``_checks``: a ValueError naming the argument), then calls
the native kernel when one is registered for the input's device, else the reference in
``actcam_ext.reference`` (with a one-time RuntimeWarning). The fake kernels
below give output shapes and dtypes without computing, so torch.compile(fullgraph=True)
and torch.export trace through the ops; they run the same argument checks as the kernels.
"""

import torch

from . import _checks, reference
from ._native import _IMPORT_ERROR, native_available, warn_fallback_once

__all__ = ["cam", "gradcampp_weights", "overlay", "native_available", "reference"]


def _use_native(op: str, device: torch.device) -> bool:
    if native_available(device):
        return True
    warn_fallback_once(op, device)
    return False


def cam(activations: torch.Tensor, weights: torch.Tensor, size, relu: bool = True,
        normalize: bool = True) -> torch.Tensor:
    """Class activation maps in one fused pass.

    activations [B,K,h,w] and weights [B,K] (one map per image) or [B,C,K] (C maps per image),
    float32/float16/bfloat16, any strides. Returns float32 [B,H,W] or [B,C,H,W] with
    ``size=(H, W)``: sum_k weights[k] * activations[k] accumulated in float32, then ReLU (if
    ``relu``), bilinear resize as F.interpolate(mode="bilinear", align_corners=False), then
    per-map min-max to [0, 1] (if ``normalize``); a constant map (spread within 1e-6 of its
    largest magnitude, or subnormal) gives zeros, and finite input never gives NaN.

    Non-finite values: each output pixel reads four pixels of the low-resolution map (after
    ReLU), its two bilinear taps along each axis, a tap of weight 0 included. Without
    ``normalize``, an output pixel is non-finite exactly when one of those four is, and every
    other pixel is finite and equals the torch chain; with ``normalize``, a map with such a
    pixel comes out all NaN (it has no scale).
    """
    size = list(_checks.cam(activations, weights, size, relu, normalize)[-2:])
    if _use_native("cam", activations.device):
        return torch.ops.actcam.cam.default(activations, weights, size, bool(relu), bool(normalize))
    return reference.cam(activations, weights, size, relu, normalize)


def gradcampp_weights(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ channel weights [B,K] float32 (Chattopadhyay et al. 2018, Eq. 19), one pass."""
    _checks.gradcampp_weights(activations, grads)
    if _use_native("gradcampp_weights", activations.device):
        return torch.ops.actcam.gradcampp_weights.default(activations, grads)
    return reference.gradcampp_weights(activations, grads)


def overlay(maps: torch.Tensor, images: torch.Tensor, image_weight: float = 0.5) -> torch.Tensor:
    """JET heatmap of ``maps`` [B,H,W] in [0,1] blended over RGB uint8 ``images`` [B,H,W,3].

    Byte-identical colours to cv2.applyColorMap(COLORMAP_JET) (in RGB order) of
    floor(255 * map) clamped to 0..255 (NaN counts as 0), blended as
    cv2.addWeighted(heat, 1 - image_weight, image, image_weight, 0). Returns uint8 [B,H,W,3].
    """
    _checks.overlay(maps, images, image_weight)
    if _use_native("overlay", maps.device):
        return torch.ops.actcam.overlay.default(maps, images, float(image_weight))
    return reference.overlay(maps, images, image_weight)


if _IMPORT_ERROR is None:
    @torch.library.register_fake("actcam::cam")
    def _cam_fake(activations, weights, size, relu=True, normalize=True):
        shape = _checks.cam(activations, weights, size)
        return activations.new_empty(shape, dtype=torch.float32)

    @torch.library.register_fake("actcam::gradcampp_weights")
    def _gradcampp_weights_fake(activations, grads):
        shape = _checks.gradcampp_weights(activations, grads)
        return activations.new_empty(shape, dtype=torch.float32)

    @torch.library.register_fake("actcam::overlay")
    def _overlay_fake(maps, images, image_weight=0.5):
        shape = _checks.overlay(maps, images, image_weight)
        return images.new_empty(shape, dtype=torch.uint8)
