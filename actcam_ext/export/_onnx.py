"""``actcam::cam`` in standard ONNX operators, and the opset-17 form of an exported model.

onnx and onnxscript are optional dependencies: they are imported inside the functions that
use them, and a missing one is a UserError naming the ``export`` extra.

The translation (``cam_translation``) is the op's contract (``actcam_ext.reference.cam``)
written in ONNX:

    Cast(float)                         activations and weights accumulate in float32
    Reshape + MatMul + Reshape          sum_k w[c,k] A[k]  ->  [B, C, h, w]
    Relu                                (relu=True)
    Resize(linear, half_pixel)          = F.interpolate(bilinear, align_corners=False),
                                        up or down, no antialias
    ReduceMin, ReduceMax, Sub, Div      per-map min-max to [0, 1]
    Abs, Max, Mul, LessOrEqual, Where   a map whose spread is <= 1e-6 max(|lo|, |hi|) -> zeros
    IsNaN, IsInf, Or, Cast, ReduceMax,  a map holding NaN or inf after resizing -> all NaN
    Greater, Where
    Squeeze                             [B, 1, H, W] -> [B, H, W] for one map per image

torch.onnx (torch 2.14) builds opset 18 and cannot convert it down to 17 correctly: its
converter leaves opset-18 attributes on Reduce* and Resize nodes and gives up, keeping 18.
``to_opset17`` rewrites the few operators whose definition changed in opset 18 into their
opset-17 form and refuses any other.
"""

from __future__ import annotations

import importlib

import numpy as np

from ..errors import PREFIX, UserError
from ..ops.reference import CONSTANT_MAP_RTOL

__all__ = ["require", "cam_translation", "to_opset17", "TORCHLIB_OPSET"]

# The opset torch.onnx's operator library is written in; other opsets are conversions of it.
TORCHLIB_OPSET = 18

_INSTALL = "pip install actcam_ext[export] (onnx, onnxruntime, onnxscript)"

# Opset-18 operators that differ from their opset-17 form only by having moved ``axes`` from
# an attribute to an input and gained noop_with_empty_axes.
_REDUCE_18 = {"ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
              "ReduceProd", "ReduceSumSquare"}


def require(*names: str) -> None:
    """Import the optional ONNX packages or raise a UserError that says how to install them."""
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise UserError(f"{PREFIX}ONNX export needs {', '.join(missing)}, which this Python lacks; {_INSTALL}")


def cam_translation():
    """The onnxscript function that torch.onnx calls for each ``actcam::cam`` node."""
    import onnx_ir as ir
    from onnxscript import opset18 as op

    FLOAT = 1  # onnx.TensorProto.FLOAT

    def ints(values):
        return op.Constant(value=ir.tensor(np.asarray(values, dtype=np.int64)))

    def scalar(value):
        return op.Constant(value=ir.tensor(np.asarray(value, dtype=np.float32)))

    def actcam_cam(activations, weights, size, relu=True, normalize=True):
        if weights.shape is None or len(weights.shape) not in (2, 3):
            raise UserError(f"{PREFIX}ONNX export: actcam::cam needs weights of known rank 2 or 3, "
                            f"got shape {weights.shape}")
        one_map = len(weights.shape) == 2
        A = op.Cast(activations, to=FLOAT)
        W = op.Cast(weights, to=FLOAT)
        if one_map:
            W = op.Unsqueeze(W, ints([1]))                                    # [B,1,K]
        shape_a = op.Shape(A)
        bk = op.Slice(shape_a, ints([0]), ints([2]))
        hw = op.Slice(shape_a, ints([2]), ints([4]))
        flat = op.Reshape(A, op.Concat(bk, ints([-1]), axis=0))              # [B,K,h*w]
        maps = op.MatMul(W, flat)                                             # [B,C,h*w]
        bc = op.Slice(op.Shape(maps), ints([0]), ints([2]))
        maps = op.Reshape(maps, op.Concat(bc, hw, axis=0))                    # [B,C,h,w]
        if relu:
            maps = op.Relu(maps)
        out_shape = op.Concat(bc, ints([int(size[0]), int(size[1])]), axis=0)
        maps = op.Resize(maps, None, None, out_shape, mode="linear", coordinate_transformation_mode="half_pixel")
        if normalize:
            axes = ints([2, 3])
            lo = op.ReduceMin(maps, axes, keepdims=1)
            hi = op.ReduceMax(maps, axes, keepdims=1)
            spread = op.Sub(hi, lo)
            flat_map = op.LessOrEqual(spread, op.Mul(scalar(CONSTANT_MAP_RTOL), op.Max(op.Abs(lo), op.Abs(hi))))
            scaled = op.Where(flat_map, scalar(0.0), op.Div(op.Sub(maps, lo), spread))
            bad = op.Cast(op.Or(op.IsNaN(maps), op.IsInf(maps)), to=FLOAT)
            any_bad = op.Greater(op.ReduceMax(bad, axes, keepdims=1), scalar(0.0))
            maps = op.Where(any_bad, scalar(float("nan")), scaled)
        if one_map:
            maps = op.Squeeze(maps, ints([1]))                                # [B,H,W]
        return maps

    return actcam_cam


def _attr(node, name):
    for a in node.attribute:
        if a.name == name:
            return a
    return None


def _drop_attr(node, name) -> None:
    keep = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(keep)


def _drop_unused(graph) -> None:
    """Remove the initializers and Constant nodes nothing reads any more (the Reduce* axes
    that became attributes), so runtimes do not warn about them."""
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    keep_nodes = [n for n in graph.node if n.op_type != "Constant" or any(o in used for o in n.output)]
    del graph.node[:]
    graph.node.extend(keep_nodes)
    keep_inits = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep_inits)


def to_opset17(model):
    """Rewrite an opset-18 ``onnx.ModelProto`` (in place) as opset 17, or raise a UserError.

    Operators defined the same in 17 and 18 are kept; Reduce* get their axes back as an
    attribute, Resize loses the opset-18 attributes at their defaults (antialias 0, aspect
    policy "stretch", no axes), Pad without axes is unchanged. Anything else new in opset 18
    cannot be expressed and is refused. The result passes the ONNX checker's full check.
    """
    require("onnx")
    import onnx
    from onnx import helper, numpy_helper

    def refuse(why: str):
        raise UserError(f"{PREFIX}ONNX opset 17 cannot express this model ({why}); export with opset=18")

    if model.functions:
        refuse("it has local functions")
    graph = model.graph
    constants = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and _attr(node, "value") is not None:
            constants[node.output[0]] = _attr(node, "value").t
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            refuse(f"operator {node.domain}::{node.op_type}")
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            refuse(f"{node.op_type} has a subgraph")
        if onnx.defs.get_schema(node.op_type, 18, "").since_version < 18:
            continue
        if node.op_type in _REDUCE_18:
            noop = _attr(node, "noop_with_empty_axes")
            if noop is not None and noop.i != 0:
                refuse(f"{node.op_type} with noop_with_empty_axes=1")
            _drop_attr(node, "noop_with_empty_axes")
            if len(node.input) > 1 and node.input[1]:
                if node.input[1] not in constants:
                    refuse(f"{node.op_type} with computed axes")
                axes = numpy_helper.to_array(constants[node.input[1]]).reshape(-1).tolist()
                node.attribute.append(helper.make_attribute("axes", [int(a) for a in axes]))
                del node.input[1:]
        elif node.op_type == "Resize":
            antialias, policy = _attr(node, "antialias"), _attr(node, "keep_aspect_ratio_policy")
            if (antialias is not None and antialias.i != 0) or _attr(node, "axes") is not None or \
                    (policy is not None and policy.s not in (b"", b"stretch")):
                refuse("Resize with antialias, axes or an aspect-ratio policy")
            _drop_attr(node, "antialias")
            _drop_attr(node, "keep_aspect_ratio_policy")
        elif node.op_type == "Pad":
            if len(node.input) > 3 and node.input[3]:
                refuse("Pad with axes")
        else:
            refuse(f"operator {node.op_type} is defined from opset 18 on")
    _drop_unused(graph)
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = 17
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        refuse(str(exc).strip().splitlines()[0])
    return model
