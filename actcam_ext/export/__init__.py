"""Heatmaps in exported, Python-free deployments: ``torch.export``, AOTInductor ``.pt2`` and ONNX.

::

    import actcam_ext.export as ax

    module = ax.cam_module(model, size=(224, 224))         # x -> (logits [B,N], maps [B,224,224])
    ep = ax.program(model, size=(224, 224), batch=8)       # torch.export.ExportedProgram, actcam::cam inside
    ax.pt2(model, "cam.pt2", size=(224, 224), batch=8)     # AOTInductor package (torch._inductor.aoti_load_package,
                                                           # or torch::inductor::AOTIModelPackageLoader in C++)
    ax.onnx(model, "cam.onnx", size=(224, 224))            # ONNX, opset 17: actcam::cam as standard operators

What is exported is CAM (Zhou et al. 2016): one forward pass, the target layer's activations
weighted by the final linear layer's row of each image's top-1 class (or of fixed ``targets``),
then ``actcam::cam`` (ReLU, bilinear resize, per-map min-max). The maps equal the eager
``actcam_ext.CAM(model, target_layer)(x, size=size)`` up to float rounding, and the logits are
the model's. The target layer and the classifier are the ones ``CAM`` resolves (default: the
input of the model's last global average pooling, and its last ``nn.Linear``).

Grad-CAM and Grad-CAM++ need the gradient at the target layer, and torch.export (torch 2.14)
cannot capture it: ``torch.autograd.grad`` inside the traced forward leaves a fake tensor
constant (the saved weight of the head's ``nn.Linear``), and ``torch.func.vjp``/``grad`` fail
to trace functorch views. Asking for them raises a UserError that points to CAM (equal to
Grad-CAM's maps on a GAP + linear network at the default layer) or to the eager methods.

The ``.pt2`` needs the actcam op at run time: ``import actcam_ext`` in Python, or
``libactcam.so`` (CMakeLists.txt) linked or loaded in C++. The ONNX file needs nothing of
ours. Every writer writes atomically (a temporary sibling renamed into place).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from .. import _validate, ops
from .._files import atomic_write, remove_stale_temps, temp_sibling
from ..errors import PREFIX, UserError
from ..methods import CAM, METHODS, TITLES, method_name
from ._module import CamModule, LayerTap, tapped_copy
from ._onnx import TORCHLIB_OPSET, cam_translation, require, to_opset17

__all__ = ["cam_module", "program", "pt2", "onnx", "onnx_translation_table", "to_opset17", "CamModule",
           "EXPORTABLE_METHODS", "MIN_OPSET"]

EXPORTABLE_METHODS = ("cam",)
MIN_OPSET = 17
# Input size of the one check run at construction when neither input_size nor size is given.
_PROBE_SIZE = (224, 224)
_PROBE_BATCH = 2
# The map of the eager CAM and the exported module's map on the probe must agree to this.
_PROBE_ATOL = 1e-5


def _backward_error(name: str) -> UserError:
    return UserError(
        f"{PREFIX}{TITLES.get(name, name)} cannot be exported: it needs the gradient at the target layer, and "
        f"torch.export (torch {torch.__version__.split('+')[0]}) cannot capture torch.autograd.grad or torch.func.vjp "
        "through the model's head; export method='cam' (on a GAP + linear network it gives Grad-CAM's maps) or run "
        f"actcam_ext.{METHODS[name].__name__} eagerly")


def _size(size, name: str):
    if size is None:
        return None
    if isinstance(size, (str, bytes)) or not hasattr(size, "__len__") or len(size) != 2:
        raise UserError(f"{PREFIX}{name} must be two positive integers (H, W), got {size!r}")
    return tuple(_validate.positive_int(v, name) for v in size)


def _class_ids(targets, num_classes: int):
    if targets is None:
        return None
    single = isinstance(targets, int) and not isinstance(targets, bool)
    ids = _validate.class_ids(targets, "targets")
    bad = [i for i in ids if i >= num_classes]
    if bad:
        raise UserError(f"{PREFIX}target classes must lie in [0, {num_classes - 1}]: class id {bad[0]} is out of "
                        f"range (the classifier has {num_classes} outputs)")
    return torch.tensor(ids[0] if single else ids, dtype=torch.long)


def _input_channels(model: nn.Module) -> int:
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return first.in_channels if first is not None else 3


def _placement(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def cam_module(model: nn.Module, method: str = "cam", target_layer=None, size=None, *, targets=None,
               input_size=None) -> CamModule:
    """An ``nn.Module`` mapping ``x [B,C,H,W] -> (logits [B,N], maps)`` that ``torch.export``
    captures with ``actcam::cam`` in its graph.

    method: "cam" (the only method whose maps need no backward; see the module docstring).
    target_layer: as for ``actcam_ext.CAM`` (a module, a dotted name, "NAME:input", or None
    for the library's default). size: the maps' (H, W); None means the input's (H, W), which
    must then be static when exporting. targets: None (each image's top-1 class: maps
    [B,H,W]), one class id (maps [B,H,W]) or a sequence of C class ids explained for every
    image (maps [B,C,H,W]). input_size: the (H, W) of one check run on the model at
    construction (default: size, else 224x224); it checks the CAM structure with CAM's own
    rule, that the model returns logits [B, N], and that the tapped copy sees what CAM's hooks
    see. The model must be in eval mode; it is shared (weights included), never modified.
    """
    name = method_name(method)
    if name not in EXPORTABLE_METHODS:
        raise _backward_error(name)
    cam = CAM(model, target_layer)
    if model.training:
        raise UserError(f"{PREFIX}the model is in training mode; call model.eval() before exporting (dropout and "
                        "batch statistics would be frozen into the graph)")
    size = _size(size, "size")
    probe_size = _size(input_size, "input_size") or size or _PROBE_SIZE
    device, dtype = _placement(model)
    if not ops.native_available(device):
        raise UserError(f"{PREFIX}exporting needs the native actcam op on {device.type}, which is not built; build the "
                        "extension (pip install --no-build-isolation -e .)")
    class_ids = _class_ids(targets, cam.fc_layer.out_features)
    layer = cam.layer
    tap = LayerTap(layer.module, layer.use_input, layer.name)
    net = tapped_copy(model, layer.module, tap)
    if class_ids is not None:
        class_ids = class_ids.to(device)
    module = CamModule(net, tap, cam.fc_layer_name, size, class_ids,
                       input_shape=(_input_channels(model), *probe_size), input_dtype=dtype)
    _check(cam, module, class_ids, device)
    return module


def _check(cam: CAM, module: CamModule, class_ids, device) -> None:
    """One eager run of CAM and of the module on a fixed random batch: CAM raises its own
    errors (structure, layer), the module its own (logits), and their maps must agree."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(_PROBE_BATCH, *module.input_shape, generator=gen).to(device, module.input_dtype)
    map_size = module.size or module.input_shape[1:]
    if class_ids is not None and class_ids.dim() == 1:
        class_ids = class_ids.expand(len(x), -1)  # eager CAM's [B, C] form: C classes per image
    with torch.no_grad():
        try:
            want = cam.explain(x, class_ids, size=map_size).maps
            _, got = module(x)
        except UserError:
            raise
        except Exception as exc:  # the model itself failed on the probe: say on what
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"{PREFIX}the model failed on a check input of shape {list(x.shape)} ({first}); pass "
                            "input_size=(H, W) that the model accepts") from exc
    if got.shape != want.shape or not torch.allclose(got, want, atol=_PROBE_ATOL, rtol=0, equal_nan=True):
        raise UserError(f"{PREFIX}target layer {cam.target_layer_name!r} is not reached through the model's "
                        "submodules (the tapped copy differs from the model); pick a layer that the forward calls "
                        "as a registered submodule")


def program(model: nn.Module, method: str = "cam", target_layer=None, size=None, *, batch: int = 1,
            input_size=None, targets=None, dynamic_batch: bool = False) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``cam_module(...)`` on an input ``[batch, C, *input_size]``.

    The graph holds ``actcam::cam`` as a custom-op node. dynamic_batch: the batch dimension is
    symbolic (any size >= 1); height and width are static. Arguments as in ``cam_module``
    (input_size defaults to size; one of them is required).
    """
    return _export(model, method, target_layer, size, batch, input_size, targets, dynamic_batch)[1]


def _export(model, method, target_layer, size, batch, input_size, targets, dynamic_batch):
    """(the CamModule, its ExportedProgram, the metadata describing both)."""
    batch = _validate.positive_int(batch, "batch")
    if size is None and input_size is None:
        raise UserError(f"{PREFIX}pass size=(H, W) (the maps' size, and the input's unless input_size is given)")
    module = cam_module(model, method, target_layer, size, targets=targets, input_size=input_size)
    device, _ = _placement(model)
    # A dimension traced at size 1 is specialised to 1, so a dynamic batch is traced at 2.
    example_batch = max(batch, 2) if dynamic_batch else batch
    x = torch.zeros(example_batch, *module.input_shape, device=device, dtype=module.input_dtype)
    dynamic_shapes = {"x": {0: torch.export.Dim("batch", min=1)}} if dynamic_batch else None
    try:
        ep = torch.export.export(module, (x,), dynamic_shapes=dynamic_shapes, strict=False)
    except UserError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{PREFIX}torch.export cannot capture the model ({type(exc).__name__}: {first}); "
                        "export a model whose forward torch.export supports") from exc
    meta = dict(module.describe(), **{"actcam.batch": "dynamic" if dynamic_batch else str(batch)})
    return module, ep, meta


def _destination(path, suffix: str) -> Path:
    path = Path(path)
    if path.suffix != suffix:
        raise UserError(f"{PREFIX}the output file must end with {suffix}, got {str(path)!r}")
    if not path.parent.is_dir():
        raise UserError(f"{PREFIX}the folder of {str(path)!r} does not exist; create it first")
    remove_stale_temps(path)
    return path


def _with_extra(meta: dict, extra) -> dict[str, str]:
    if extra is not None and not isinstance(extra, dict):
        raise UserError(f"{PREFIX}metadata must be a dict of strings, got {type(extra).__name__}")
    return {**meta, **{str(k): str(v) for k, v in (extra or {}).items()}}


def pt2(model: nn.Module, path, method: str = "cam", target_layer=None, size=None, *, batch: int = 1,
        input_size=None, targets=None, dynamic_batch: bool = False, metadata=None) -> str:
    """Write an AOTInductor package (``.pt2``) of ``program(...)`` to ``path``; returns the path.

    Load it with ``torch._inductor.aoti_load_package(path)`` (after ``import actcam_ext``, which
    registers the op) or in C++ with ``torch::inductor::AOTIModelPackageLoader`` in a program
    linked with libactcam.so. It takes ``[batch, C, H, W]`` inputs on the model's device (any
    batch with dynamic_batch) and returns ``[logits, maps]``. The package's metadata
    (``get_metadata()``) holds ``CamModule.describe()``, ``actcam.batch`` and ``metadata``.
    """
    dest = _destination(path, ".pt2")
    _, ep, meta = _export(model, method, target_layer, size, batch, input_size, targets, dynamic_batch)
    meta = _with_extra(meta, metadata)
    tmp = temp_sibling(dest, keep_suffix=True)  # AOTInductor insists on the .pt2 suffix
    try:
        torch._inductor.aoti_compile_and_package(ep, package_path=str(tmp),
                                                 inductor_configs={"aot_inductor.metadata": meta})
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return str(dest)


def onnx_translation_table() -> dict:
    """``custom_translation_table`` for ``torch.onnx.export(..., dynamo=True)`` of any module
    that calls ``actcam::cam``: the op as standard ONNX operators (opset 18; ``_onnx`` module
    docstring). Needs onnx and onnxscript."""
    require("onnx", "onnxscript")
    return {torch.ops.actcam.cam.default: cam_translation()}


def onnx(model: nn.Module, path, method: str = "cam", target_layer=None, size=None, opset: int = MIN_OPSET, *,
         batch: int = 1, input_size=None, targets=None, dynamic_batch: bool = False, metadata=None) -> str:
    """Write an ONNX model of ``program(...)`` to ``path`` (one file); returns the path.

    ``actcam::cam`` becomes standard ONNX operators (``_onnx`` module docstring), so the file
    runs on any ONNX runtime without actcam. Inputs ``images [batch, C, H, W]`` (the batch
    symbolic with dynamic_batch), outputs ``logits`` and ``maps``; ``metadata_props`` as the
    .pt2's metadata. opset: 17 or later (torch.onnx builds 18; 17 is rewritten from it, later
    ones are converted by torch.onnx). Needs onnx and onnxscript (``pip install
    actcam_ext[export]``).
    """
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise UserError(f"{PREFIX}opset must be an integer >= {MIN_OPSET}, got {opset!r}")
    require("onnx", "onnxscript")
    dest = _destination(path, ".onnx")
    _, ep, meta = _export(model, method, target_layer, size, batch, input_size, targets, dynamic_batch)
    meta = _with_extra(meta, metadata)
    exported = torch.onnx.export(
        ep, dynamo=True, opset_version=max(opset, TORCHLIB_OPSET), external_data=False, verbose=False,
        input_names=["images"], output_names=["logits", "maps"],
        custom_translation_table=onnx_translation_table())
    proto = exported.model_proto
    if opset < TORCHLIB_OPSET:
        to_opset17(proto)
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    data = proto.SerializeToString()
    atomic_write(dest, lambda f: f.write(data))
    return str(dest)
