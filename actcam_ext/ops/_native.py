"""Loads the compiled extension, which registers the ``torch.ops.actcam`` kernels.

``actcam_ext._C`` is an empty Python module: importing it runs the TORCH_LIBRARY static
initialisers in the shared library. Nothing is called through pybind11, because a pybind
call is opaque to torch.compile while ``torch.ops.actcam.*`` is traceable.
"""

import warnings

import torch

try:
    from .. import _C  # noqa: F401  (import for its side effect: op registration)
    IMPORT_ERROR = None
except ImportError as exc:  # not built (e.g. a source checkout without `pip install -e .`)
    IMPORT_ERROR = exc

_warned: set = set()

# Device types with registered kernels, settled once at import: a plain frozenset lookup is
# also what lets torch.compile trace the ops' dispatch (the dispatcher query is opaque to it).
_NATIVE_DEVICE_TYPES = frozenset(
    device_type
    for device_type, dispatch_key in (("cpu", "CPU"), ("cuda", "CUDA"))
    if IMPORT_ERROR is None and torch._C._dispatch_has_kernel_for_dispatch_key("actcam::cam", dispatch_key)
)


# Device types with a fused cam backward kernel (the CPU's); elsewhere cam's gradient is
# autograd through the reference.
_NATIVE_BACKWARD_DEVICE_TYPES = frozenset(
    device_type
    for device_type, dispatch_key in (("cpu", "CPU"), ("cuda", "CUDA"))
    if device_type in _NATIVE_DEVICE_TYPES
    and torch._C._dispatch_has_kernel_for_dispatch_key("actcam::cam_backward", dispatch_key)
)


# Device types with a cam_from_grads kernel (the CPU's): elsewhere it runs the reference, by
# design and without a warning (docs/ops.md).
_CAM_FROM_GRADS_DEVICE_TYPES = frozenset(
    device_type
    for device_type, dispatch_key in (("cpu", "CPU"), ("cuda", "CUDA"))
    if device_type in _NATIVE_DEVICE_TYPES
    and torch._C._dispatch_has_kernel_for_dispatch_key("actcam::cam_from_grads", dispatch_key)
)


def cam_from_grads_native(device: torch.device) -> bool:
    """True when a cam_from_grads kernel serves tensors on ``device``."""
    return device.type in _CAM_FROM_GRADS_DEVICE_TYPES


def cpu_capability() -> str | None:
    """The instruction set the CPU kernels run with ("default", "avx2" or "avx512"), or None
    when the extension is not built. Chosen once per process from ACTCAM_CPU_CAPABILITY and
    the CPU (docs/ops.md)."""
    if IMPORT_ERROR is not None:
        return None
    return torch.ops.actcam.cpu_capability()


def native_backward_available(device: torch.device | str = "cpu") -> bool:
    """True when the fused cam backward kernel serves tensors on ``device``."""
    return torch.device(device).type in _NATIVE_BACKWARD_DEVICE_TYPES


def native_available(device: torch.device | str = "cpu") -> bool:
    """True when the fused native kernels serve tensors on ``device`` (else the torch fallback runs)."""
    return torch.device(device).type in _NATIVE_DEVICE_TYPES


def warn_fallback_once(op: str, device: torch.device) -> None:
    key = (op, device.type)
    if key in _warned:
        return
    _warned.add(key)
    why = f"the extension is not built ({IMPORT_ERROR})" if IMPORT_ERROR else f"no {device.type} kernel is built"
    warnings.warn(f"actcam: {op} on {device.type} runs the pure-torch fallback because {why}",
                  RuntimeWarning, stacklevel=3)
