"""The fused ops: thin wrappers over ``torch.ops.actcam.*`` with a pure-torch fallback.

Each op validates its arguments (``_checks``: a ValueError naming the argument), then calls
the native kernel when one is registered for the input's device, else the reference in
``actcam_ext.reference`` (with a one-time RuntimeWarning). The fake kernels
below give output shapes and dtypes without computing, so torch.compile(fullgraph=True)
and torch.export trace through the ops; they run the same argument checks as the kernels.
The autograd formulas below make cam, cam_from_grads and gradcampp_weights differentiable
(docs/ops.md).
"""

import torch

from . import _checks, reference
from ._checks import CAM_FROM_GRADS_MODES
from ._native import (IMPORT_ERROR, cam_from_grads_native, cpu_capability, native_available,
                      native_backward_available, warn_fallback_once)

__all__ = ["cam", "cam_from_grads", "gradcampp_weights", "overlay", "native_available", "native_backward_available",
           "cpu_capability", "CAM_FROM_GRADS_MODES", "reference"]


def _use_native(op: str, device: torch.device, *tensors: torch.Tensor) -> bool:
    # float64 has CPU kernels only; on other devices it takes the reference, by design (no warning)
    if device.type != "cpu" and any(t.dtype == torch.float64 for t in tensors):
        return False
    if native_available(device):
        return True
    warn_fallback_once(op, device)
    return False


def cam(activations: torch.Tensor, weights: torch.Tensor, size, relu: bool = True,
        normalize: bool = True) -> torch.Tensor:
    """Class activation maps in one fused pass.

    activations [B,K,h,w] and weights [B,K] (one map per image) or [B,C,K] (C maps per image),
    float32/float16/bfloat16/float64, any strides. Returns [B,H,W] or [B,C,H,W] with
    ``size=(H, W)``, float32 (float64 when an input is float64): sum_k weights[k] *
    activations[k] accumulated in that dtype, then ReLU (if ``relu``), bilinear resize as
    F.interpolate(mode="bilinear", align_corners=False), then per-map min-max to [0, 1] (if
    ``normalize``); a constant map (spread within 1e-6 of its largest magnitude, or subnormal)
    gives zeros, and finite input never gives NaN.

    Non-finite values: each output pixel reads four pixels of the low-resolution map (after
    ReLU), its two bilinear taps along each axis, a tap of weight 0 included. Without
    ``normalize``, an output pixel is non-finite exactly when one of those four is, and every
    other pixel is finite and equals the torch chain; with ``normalize``, a map with such a
    pixel comes out all NaN (it has no scale).

    Differentiable with respect to activations and weights (docs/ops.md): on the CPU through
    the fused ``actcam::cam_backward`` kernel, elsewhere through autograd of the reference.
    """
    size = list(_checks.cam(activations, weights, size, relu, normalize)[-2:])
    if _use_native("cam", activations.device, activations, weights):
        return torch.ops.actcam.cam.default(activations, weights, size, bool(relu), bool(normalize))
    return reference.cam(activations, weights, size, relu, normalize)


def cam_from_grads(activations: torch.Tensor, grads: torch.Tensor, mode: str, size, relu: bool = True,
                   normalize: bool = True) -> torch.Tensor:
    """Class activation maps straight from gradients, in one fused pass over both tensors.

    activations [B,K,h,w] and grads of the same dtype, [B,K,h,w] (one map per image) or
    [B,C,K,h,w] (C maps per image), float32/float16/bfloat16/float64, any strides. Returns
    [B,H,W] or [B,C,H,W] with ``size=(H, W)``, float32 (float64 for float64 input). ``mode``
    (CAM_FROM_GRADS_MODES) makes the low-resolution map from A_k and g_k:

    - "gradcam": sum_k w_k A_k, w_k = mean_ij g_kij (Grad-CAM);
    - "xgradcam": sum_k w_k A_k, w_k = sum_ij g_kij A_kij / sum_ij A_kij, 0 where that sum is
      0 (XGrad-CAM);
    - "hirescam": sum_k g_k * A_k (HiResCAM);
    - "gradcam_elementwise": sum_k relu(g_k * A_k);
    - "layercam": sum_k relu(g_k) * A_k (LayerCAM);

    then ReLU (if ``relu``), bilinear resize and per-map min-max (if ``normalize``) with the
    rules of ``cam`` (constant maps, non-finite values). Differentiable with respect to both
    inputs, by autograd through the reference. On CUDA it runs the reference.
    """
    size = list(_checks.cam_from_grads(activations, grads, mode, size, relu, normalize)[-2:])
    device = activations.device
    if device.type == "cpu" and cam_from_grads_native(device):
        return torch.ops.actcam.cam_from_grads.default(activations, grads, mode, size, bool(relu), bool(normalize))
    if not native_available(device):
        warn_fallback_once("cam_from_grads", device)
    return reference.cam_from_grads(activations, grads, mode, size, relu, normalize)


def gradcampp_weights(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ channel weights [B,K] (Chattopadhyay et al. 2018, Eq. 19) in one pass,
    float32 (float64 for float64 input). Differentiable with respect to both inputs, through
    autograd of the reference formula."""
    _checks.gradcampp_weights(activations, grads)
    if _use_native("gradcampp_weights", activations.device, activations):
        return torch.ops.actcam.gradcampp_weights.default(activations, grads)
    return reference.gradcampp_weights(activations, grads)


def overlay(maps: torch.Tensor, images: torch.Tensor, image_weight: float = 0.5) -> torch.Tensor:
    """JET heatmap of ``maps`` [B,H,W] in [0,1] blended over RGB uint8 ``images`` [B,H,W,3].

    Byte-identical colours to cv2.applyColorMap(COLORMAP_JET) (in RGB order) of
    floor(255 * map) clamped to 0..255 (NaN counts as 0), blended as
    cv2.addWeighted(heat, 1 - image_weight, image, image_weight, 0). Returns uint8 [B,H,W,3].
    Not differentiable: maps that require grad are accepted, and the pictures do not require grad.
    """
    _checks.overlay(maps, images, image_weight)
    if _use_native("overlay", maps.device, maps):
        return torch.ops.actcam.overlay.default(maps, images, float(image_weight))
    return reference.overlay(maps, images, image_weight)


# ----------------------------------------------------------------------------- autograd

def _reference_cam_vjp(grad, activations, weights, size, relu, normalize):
    """(grad_activations, grad_weights) of cam, by autograd through the reference (any device)."""
    _, vjp = torch.func.vjp(lambda a, w: reference.cam(a, w, size, relu, normalize), activations, weights)
    return vjp(grad)


def _cam_vjp(grad, activations, weights, size, relu, normalize):
    if native_backward_available(activations.device):
        return torch.ops.actcam.cam_backward.default(grad, activations, weights, size, relu, normalize)
    return _reference_cam_vjp(grad, activations, weights, size, relu, normalize)


def _cam_setup_context(ctx, inputs, output):
    activations, weights, size, relu, normalize = inputs
    ctx.save_for_backward(activations, weights)
    ctx.cam_args = (list(size), relu, normalize)


def _cam_backward(ctx, grad):
    activations, weights = ctx.saved_tensors
    grad_a, grad_w = _cam_vjp(grad, activations, weights, *ctx.cam_args)
    need_a, need_w = ctx.needs_input_grad[:2]
    return grad_a if need_a else None, grad_w if need_w else None, None, None, None


def _cam_backward_setup_context(ctx, inputs, output):
    grad, activations, weights, size, relu, normalize = inputs
    ctx.save_for_backward(grad, activations, weights)
    ctx.cam_args = (list(size), relu, normalize)


def _cam_double_backward(ctx, grad_grad_a, grad_grad_w):
    # The second derivative, by autograd through the reference's first one.
    grad, activations, weights = ctx.saved_tensors
    size, relu, normalize = ctx.cam_args
    cotangents = (torch.zeros_like(activations) if grad_grad_a is None else grad_grad_a,
                  torch.zeros_like(weights) if grad_grad_w is None else grad_grad_w)
    _, vjp = torch.func.vjp(lambda g, a, w: _reference_cam_vjp(g, a, w, size, relu, normalize),
                            grad, activations, weights)
    return (*vjp(cotangents), None, None, None)


def _cam_from_grads_setup_context(ctx, inputs, output):
    activations, grads, mode, size, relu, normalize = inputs
    ctx.save_for_backward(activations, grads)
    ctx.args = (mode, list(size), relu, normalize)


def _cam_from_grads_backward(ctx, grad):
    activations, grads = ctx.saved_tensors
    mode, size, relu, normalize = ctx.args
    _, vjp = torch.func.vjp(lambda a, g: reference.cam_from_grads(a, g, mode, size, relu, normalize),
                            activations, grads)
    grad_a, grad_g = vjp(grad)
    need_a, need_g = ctx.needs_input_grad[:2]
    return grad_a if need_a else None, grad_g if need_g else None, None, None, None, None


def _gradcampp_setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _gradcampp_backward(ctx, grad):
    activations, grads = ctx.saved_tensors
    _, vjp = torch.func.vjp(reference.gradcampp_weights, activations, grads)
    grad_a, grad_g = vjp(grad)
    need_a, need_g = ctx.needs_input_grad[:2]
    return grad_a if need_a else None, grad_g if need_g else None


if IMPORT_ERROR is None:
    @torch.library.register_fake("actcam::cam")
    def _cam_fake(activations, weights, size, relu=True, normalize=True):
        shape = _checks.cam(activations, weights, size, relu, normalize, native=True)
        return activations.new_empty(shape, dtype=_checks.compute_dtype(activations, weights))

    @torch.library.register_fake("actcam::cam_backward")
    def _cam_backward_fake(grad, activations, weights, size, relu, normalize):
        shape = _checks.cam(activations, weights, size, relu, normalize, native=True)
        _checks.cam_grad(grad, activations, weights, shape)
        return activations.new_empty(activations.shape), weights.new_empty(weights.shape)

    @torch.library.register_fake("actcam::cam_from_grads")
    def _cam_from_grads_fake(activations, grads, mode, size, relu=True, normalize=True):
        shape = _checks.cam_from_grads(activations, grads, mode, size, relu, normalize, native=True)
        return activations.new_empty(shape, dtype=_checks.compute_dtype(activations, grads))

    @torch.library.register_fake("actcam::gradcampp_weights")
    def _gradcampp_weights_fake(activations, grads):
        shape = _checks.gradcampp_weights(activations, grads, native=True)
        return activations.new_empty(shape, dtype=_checks.compute_dtype(activations, grads))

    @torch.library.register_fake("actcam::overlay")
    def _overlay_fake(maps, images, image_weight=0.5):
        shape = _checks.overlay(maps, images, image_weight, native=True)
        return images.new_empty(shape, dtype=torch.uint8)

    torch.library.register_autograd("actcam::cam", _cam_backward, setup_context=_cam_setup_context)
    torch.library.register_autograd("actcam::cam_backward", _cam_double_backward,
                                    setup_context=_cam_backward_setup_context)
    torch.library.register_autograd("actcam::cam_from_grads", _cam_from_grads_backward,
                                    setup_context=_cam_from_grads_setup_context)
    torch.library.register_autograd("actcam::gradcampp_weights", _gradcampp_backward,
                                    setup_context=_gradcampp_setup_context)
