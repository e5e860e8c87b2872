"""Argument checks of the ops, run by the op wrappers before they dispatch, by the pure-torch
reference ops and by the fake kernels.

They say the same things as csrc/checks.h (which guards the registered ops when they are
called directly), so a user gets the same ValueError whichever path runs: the native kernel,
the fallback, or torch.compile's tracing.
"""

import numpy as np
import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The dtype the ops compute in and return: float64 when an input is float64, else float32."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _float(name: str, t: torch.Tensor, native: bool) -> None:
    """float32, float16, bfloat16 or float64. ``native``: the registered op's own rule (its fake
    kernel), under which float64 is a CPU dtype only, as in csrc/checks.h."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"actcam: {name} must be a tensor, got {type(t).__name__}")
    float64_ok = not native or t.device.type == "cpu"
    if t.dtype not in FLOAT_DTYPES and not (float64_ok and t.dtype == torch.float64):
        where = "" if float64_ok else " on the CPU"
        raise ValueError(f"actcam: {name} must be float32, float16 or bfloat16 (or float64{where}), got {t.dtype}")


def _rank(name: str, t: torch.Tensor, ranks: tuple, layout: str) -> None:
    if t.dim() not in ranks:
        want = " or ".join(f"{r}-D" for r in ranks)
        raise ValueError(f"actcam: {name} must be a {want} tensor {layout}, got shape {list(t.shape)}")


def _same_device(an: str, a: torch.Tensor, bn: str, b: torch.Tensor) -> None:
    if a.device != b.device:
        raise ValueError(f"actcam: {an} and {bn} must be on the same device, got {a.device} and {b.device}")


def _is_integer(s) -> bool:
    # bool is an int subclass (and np.bool_ is no np.integer): True is not a size
    return (isinstance(s, (int, np.integer, torch.SymInt)) and not isinstance(s, bool))


def cam_size(size) -> tuple:
    """Validate cam's size: a tuple or list (torch.Size too) of two positive integers (Python
    ints, numpy integer scalars or symbolic ints while tracing); return it as a tuple.

    Anything else (a string, floats, bools, a single int, None, an array or tensor) raises a
    ValueError naming size, never a silent conversion.
    """
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise ValueError(f"actcam: size must be two integers (H, W), got {size!r}")
    H, W = size
    # plain ints first: the common case, checked without the slower isinstance tests
    if not ((type(H) is int or _is_integer(H)) and (type(W) is int or _is_integer(W))):
        raise ValueError(f"actcam: size must be two integers (H, W), got {size!r}")
    if type(H) is not int and not isinstance(H, torch.SymInt):
        H = int(H)
    if type(W) is not int and not isinstance(W, torch.SymInt):
        W = int(W)
    if H <= 0 or W <= 0:
        raise ValueError(f"actcam: size must be positive, got {[H, W]}")
    return H, W


def _bool(name: str, v) -> None:
    if not isinstance(v, (bool, np.bool_)):
        raise ValueError(f"actcam: {name} must be a bool, got {v!r}")


def cam(activations, weights, size, relu=True, normalize=True, native=False) -> tuple:
    """Validate cam's arguments, size first (as csrc/checks.h does); return the output shape."""
    H, W = cam_size(size)
    _float("activations", activations, native)
    _float("weights", weights, native)
    _rank("activations", activations, (4,), "[B,K,h,w]")
    _rank("weights", weights, (2, 3), "[B,K] or [B,C,K]")
    _same_device("activations", activations, "weights", weights)
    B, K, h, w = activations.shape
    if h <= 0 or w <= 0:
        raise ValueError(f"actcam: activations must have a non-empty spatial size, got shape {list(activations.shape)}")
    if weights.shape[0] != B:
        raise ValueError(
            f"actcam: weights must have the batch size of activations ({B}), got shape {list(weights.shape)}")
    if weights.shape[-1] != K:
        raise ValueError(
            f"actcam: weights must have K={K} channels in its last dimension (activations is "
            f"{list(activations.shape)}), got shape {list(weights.shape)}")
    _bool("relu", relu)
    _bool("normalize", normalize)
    if weights.dim() == 2:
        return (B, H, W)
    return (B, weights.shape[1], H, W)


def cam_grad(grad, activations, weights, shape) -> None:
    """Validate cam_backward's grad: the gradient of cam's output (after ``cam``'s checks)."""
    if not isinstance(grad, torch.Tensor):
        raise ValueError(f"actcam: grad must be a tensor, got {type(grad).__name__}")
    _same_device("grad", grad, "activations", activations)
    want = compute_dtype(activations, weights)
    if grad.dtype != want:
        raise ValueError(f"actcam: grad must have the dtype of cam's output ({want}), got {grad.dtype}")
    if tuple(grad.shape) != tuple(shape):
        raise ValueError(f"actcam: grad must have the shape of cam's output {list(shape)}, got {list(grad.shape)}")


CAM_FROM_GRADS_MODES = ("gradcam", "xgradcam", "hirescam", "gradcam_elementwise", "layercam")


def mode(value) -> str:
    """Validate cam_from_grads's mode: one of CAM_FROM_GRADS_MODES."""
    if not isinstance(value, str) or value not in CAM_FROM_GRADS_MODES:
        modes = ", ".join(f"'{m}'" for m in CAM_FROM_GRADS_MODES)
        got = f"'{value}'" if isinstance(value, str) else repr(value)
        raise ValueError(f"actcam: mode must be one of {modes}, got {got}")
    return value


def cam_from_grads(activations, grads, mode_, size, relu=True, normalize=True, native=False) -> tuple:
    """Validate cam_from_grads's arguments in csrc/checks.h's order; return the output shape."""
    H, W = cam_size(size)
    mode(mode_)
    _float("activations", activations, native)
    _float("grads", grads, native)
    _rank("activations", activations, (4,), "[B,K,h,w]")
    _rank("grads", grads, (4, 5), "[B,K,h,w] or [B,C,K,h,w]")
    _same_device("activations", activations, "grads", grads)
    B, K, h, w = activations.shape
    if h <= 0 or w <= 0:
        raise ValueError(f"actcam: activations must have a non-empty spatial size, got shape {list(activations.shape)}")
    if grads.dtype != activations.dtype:
        raise ValueError(
            f"actcam: grads must have the dtype of activations ({activations.dtype}), got {grads.dtype}")
    if grads.shape[0] != B or grads.shape[-3:] != (K, h, w):
        raise ValueError(
            f"actcam: grads must have shape [B,K,h,w] = {[B, K, h, w]} or [B,C,K,h,w] = [{B}, C, {K}, {h}, {w}], "
            f"got shape {list(grads.shape)}")
    _bool("relu", relu)
    _bool("normalize", normalize)
    if grads.dim() == 4:
        return (B, H, W)
    return (B, grads.shape[1], H, W)


def gradcampp_weights(activations, grads, native=False) -> tuple:
    _float("activations", activations, native)
    _float("grads", grads, native)
    _rank("activations", activations, (4,), "[B,K,h,w]")
    _rank("grads", grads, (4,), "[B,K,h,w]")
    _same_device("activations", activations, "grads", grads)
    if grads.shape != activations.shape:
        raise ValueError(
            f"actcam: grads must have the shape of activations {list(activations.shape)}, got {list(grads.shape)}")
    if grads.dtype != activations.dtype:
        raise ValueError(
            f"actcam: grads must have the dtype of activations ({activations.dtype}), got {grads.dtype}")
    return tuple(activations.shape[:2])


def overlay(maps, images, image_weight, native=False) -> tuple:
    _float("maps", maps, native)
    _rank("maps", maps, (3,), "[B,H,W]")
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        got = images.dtype if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"actcam: images must be a uint8 tensor [B,H,W,3] (RGB), got {got}")
    _rank("images", images, (4,), "[B,H,W,3]")
    _same_device("maps", maps, "images", images)
    if tuple(images.shape) != (*maps.shape, 3):
        raise ValueError(
            f"actcam: images must have shape [B,H,W,3] = {[*maps.shape, 3]} to match maps, got {list(images.shape)}")
    if isinstance(image_weight, (bool, np.bool_)) or not isinstance(image_weight, (int, float, np.integer, np.floating)):
        raise ValueError(f"actcam: image_weight must be a number in [0, 1], got {image_weight!r}")
    if not 0.0 <= float(image_weight) <= 1.0:
        raise ValueError(f"actcam: image_weight must be in [0, 1], got {image_weight}")
    return tuple(images.shape)
