"""The shape every method shares: a model bound once, ``explain(x, ...) -> Explanation``.

``method(x, ...)`` is ``method.explain(x, ...).maps``. ``LayerMethod`` is the family that
weights the channels of one target layer (CAM, Grad-CAM, Grad-CAM++): a subclass says whether
it needs the layer's gradients and how it turns them (or the classifier) into channel weights;
everything else — hooks, targets, the fused ``ops.cam`` — lives here, once.
"""

from __future__ import annotations

import base64
import html
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from .. import ops, render, targets as _targets
from ..errors import PREFIX, UserError
from ..ops import reference
from . import reshape as _reshape
from ._hooks import Capture, Persistent, gradients, run
from ._layers import LayerRef, resolve_layer

__all__ = ["Explanation", "Method", "LayerMethod", "as_inputs", "batch_and_size", "cam_at_sizes", "detach_output",
           "uncompiled", "principal_projection", "maps_of_stack", "FUSE"]


@dataclass(frozen=True, eq=False)
class Explanation:
    """The result of one ``method.explain(x, ...)`` call.

    maps: the method's output (module docstrings of the methods): float32 ``[B,H,W]`` /
        ``[B,C,H,W]`` heatmaps for the activation methods, a list of per-image maps when
        ``size`` was a list; input gradients for the guided family.
    class_ids: int64 ``[B]`` or ``[B,C]``, the classes explained (None for a callable target).
    logits: the model's output for the explained forward pass, detached (a 2-D tensor for a
        classifier; whatever the model returned otherwise, e.g. a dict); with ``create_graph=True``
        it keeps its graph, so one forward serves a training loss and the maps.
    heatmaps: for GuidedGradCAM, the Grad-CAM maps its gradients were weighted with (at the
        same sizes as ``maps``); None for the other methods.
    layer_maps: with several target layers, ``{layer name: that layer's maps}`` before fusing;
        None otherwise.

    In Jupyter an Explanation shows as a picture of its maps (``_repr_png_``/``_repr_html_``);
    ``ac.render.show(e, images)`` draws them over the images.
    """

    maps: Any
    class_ids: torch.Tensor | None
    logits: Any
    heatmaps: Any = None
    layer_maps: dict | None = None

    # Jupyter displays an Explanation as a picture. It holds maps but no images, so it draws the
    # maps themselves (render.show without images); ac.render.show(e, images) overlays them.
    REPR_IMAGES = 8  # rows drawn; more would make the picture unreadably tall

    def _first_maps(self):
        """The maps of the first input (the guided family returns a tuple for several inputs)."""
        return self.maps[0] if isinstance(self.maps, tuple) and self.maps else self.maps

    def _count(self) -> int:
        first = self._first_maps()
        if isinstance(first, torch.Tensor):
            return first.shape[0] if first.dim() else 0
        return len(first) if isinstance(first, list) else 0

    def _head(self) -> "Explanation | None":
        """The first REPR_IMAGES images of the explanation, or None when it holds none."""
        n, k = self._count(), self.REPR_IMAGES
        if n <= k:
            return self if n else None
        cut = tuple(m[:k] for m in self.maps) if isinstance(self.maps, tuple) else self.maps[:k]
        return Explanation(cut, self.class_ids[:k] if self.class_ids is not None else None, None)

    def _repr_png_(self) -> bytes | None:
        """The maps as a PNG: a row per image (the first REPR_IMAGES), a column per class, heatmaps
        in JET and input gradients as ``render.guided_picture`` (``render.show`` without images)."""
        head = self._head()
        return None if head is None else render.png_bytes(render.show(head))

    def _repr_html_(self) -> str | None:
        """The ``_repr_png_`` picture inline, with a line saying what it shows."""
        png = self._repr_png_()
        if png is None:
            return None
        first, n = self._first_maps(), self._count()
        shape = list(first.shape) if isinstance(first, torch.Tensor) else f"{n} per-image maps"
        note = f"Explanation: maps {shape}" + (f", the first {self.REPR_IMAGES} images drawn" if n > self.REPR_IMAGES
                                               else "")
        note += "; ac.render.show(e, images) overlays them on the images"
        data = base64.b64encode(png).decode("ascii")
        return (f'<figure style="margin:0"><img src="data:image/png;base64,{data}" alt="{html.escape(note)}">'
                f"<figcaption><small>{html.escape(note)}</small></figcaption></figure>")


def detach_output(output):
    if isinstance(output, torch.Tensor):
        return output.detach()
    if isinstance(output, dict):
        return {k: detach_output(v) for k, v in output.items()}
    if isinstance(output, (list, tuple)):
        return type(output)(detach_output(v) for v in output) if not hasattr(output, "_fields") else output
    return output


def as_inputs(x) -> tuple:
    """The model's positional inputs as a tuple: ``x`` itself or its items."""
    if isinstance(x, torch.Tensor):
        return (x,)
    if isinstance(x, (tuple, list)) and x and all(isinstance(t, torch.Tensor) for t in x):
        return tuple(x)
    raise UserError(f"{PREFIX}x must be a tensor [B,3,H,W] or a non-empty tuple of tensors (one per model "
                    f"input), got {type(x).__name__}")


def _one_size(size) -> tuple[int, int]:
    try:
        if isinstance(size, (str, bytes)) or len(size) != 2:
            raise TypeError
        if any(isinstance(s, bool) or not float(s).is_integer() for s in size):
            raise TypeError
        out = (int(size[0]), int(size[1]))
    except (TypeError, IndexError, ValueError):
        raise UserError(f"{PREFIX}size must be two positive integers (H, W), got {size!r}") from None
    if out[0] <= 0 or out[1] <= 0:
        raise UserError(f"{PREFIX}size must be two positive integers (H, W), got {size!r}")
    return out


def batch_and_size(inputs: tuple, size) -> tuple[int, tuple[int, int] | list]:
    """(B, size): size is one (H, W) for every map, or a list of B (H, W), one per image."""
    first = inputs[0]
    if first.dim() == 0:
        raise UserError(f"{PREFIX}the first input must have a batch dimension, got shape {list(first.shape)}")
    B = first.shape[0]
    if size is None:
        if first.dim() < 3:
            raise UserError(f"{PREFIX}cannot infer the map size from the first input of shape "
                            f"{list(first.shape)}; pass size=(H, W)")
        return B, tuple(first.shape[-2:])
    if isinstance(size, list) and size and not isinstance(size[0], (int, float)):
        if len(size) != B:
            raise UserError(f"{PREFIX}size has {len(size)} (H, W) entries for a batch of {B} images")
        return B, [_one_size(s) for s in size]
    return B, _one_size(size)


def cam_at_sizes(A: torch.Tensor, weights: torch.Tensor, size, op=ops.cam):
    """``op(A, weights, size)`` (ops.cam, or an ops.cam_from_grads mode with the gradients as
    ``weights``) at one size for the batch, or a list of per-image maps for a list of sizes.

    Images that share a size share one op call (a folder of camera photos: usually one call).
    """
    if not isinstance(size, list):
        return op(A, weights, size)
    maps = [None] * len(size)
    for s in dict.fromkeys(size):
        rows = [i for i, si in enumerate(size) if si == s]
        if len(rows) == len(size):
            return list(op(A, weights, s).unbind(0))
        idx = torch.tensor(rows, device=A.device)
        for i, m in zip(rows, op(A.index_select(0, idx), weights.index_select(0, idx), s).unbind(0)):
            maps[i] = m
    return maps


def uncompiled(model):
    """The eager module behind a ``torch.compile``d one (itself otherwise).

    A compiled module runs the graph it traced, which does not see forward hooks added after it
    was compiled, and tracing a hook that swaps tensors and turns autograd on would fall back to
    eager anyway. The methods therefore run the original module: the same parameters, the same
    outputs, in either call order (explained first or compiled and run first).
    """
    orig = getattr(model, "_orig_mod", None)
    return orig if isinstance(model, nn.Module) and isinstance(orig, nn.Module) else model


class Method:
    """A reusable explanation method bound to a model; hooks live for one call only.

    A ``torch.compile``d model is explained through the module it compiled (``uncompiled``).
    ``class_targets_only``: the method explains class indices of a classifier's logits only
    (CAM), not callable targets."""

    class_targets_only = False

    def __init__(self, model: nn.Module):
        model = uncompiled(model)
        if not isinstance(model, nn.Module):
            raise UserError(f"{PREFIX}model must be an nn.Module, got {type(model).__name__}")
        if isinstance(model, torch.jit.ScriptModule):
            # Every method hooks the model's modules, which TorchScript modules refuse: say so up
            # front rather than with the JIT's message.
            raise UserError(f"{PREFIX}a TorchScript model cannot be explained: the methods need forward hooks, "
                            "which TorchScript does not support; save the Python module with "
                            "torch.save(model, path) and use that instead")
        self.model = model
        self._warned_training = False

    def _check_mode(self) -> None:
        """Warn once per method object when the model is in training mode: the methods run it
        as given, so BatchNorm's running statistics change and images in a batch interact."""
        if self.model.training and not self._warned_training:
            self._warned_training = True
            warnings.warn(f"actcam: {type(self).__name__}: the model is in training mode, so its BatchNorm "
                          "statistics change and the images of a batch interact; call model.eval() first",
                          RuntimeWarning, stacklevel=3)

    def __call__(self, x, targets=None, **kwargs):
        """``self.explain(x, targets, ...).maps``."""
        return self.explain(x, targets, **kwargs).maps

    def explain(self, x, targets=None, **kwargs) -> Explanation:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.model).__name__})"


FUSE = ("mean", "max")


def _fuse(per_layer: list, fuse: str):
    """One map per image from the layers' maps (each already in [0, 1] at the output size):
    ``mean`` then min-max again (pytorch-grad-cam's aggregation), or ``max`` (torchcam's)."""
    if isinstance(per_layer[0], list):  # per-image sizes: fuse image by image
        return [_fuse([maps[i] for maps in per_layer], fuse) for i in range(len(per_layer[0]))]
    stacked = torch.stack(per_layer)
    if fuse == "max":
        return stacked.amax(dim=0)
    return reference.minmax_normalize(stacked.mean(dim=0))


def principal_projection(E: torch.Tensor) -> torch.Tensor:
    """Projection of each map's pixels on the first principal component of its channels.

    E ``[..., K, h, w]`` -> ``[..., h, w]``: the ``h*w x K`` matrix of each map, centred per
    channel, times its first right singular vector (Eigen-CAM, Muhammad & Yeasin 2020). An SVD's
    sign is arbitrary; it is fixed so that the projection's largest magnitude is positive (the
    salient region comes out positive), which makes the result deterministic on every device.
    """
    lead, (K, h, w) = E.shape[:-3], E.shape[-3:]
    M = torch.nan_to_num(E.float().reshape(-1, K, h * w).transpose(1, 2))  # [N, hw, K]
    M = M - M.mean(dim=1, keepdim=True)
    if M.shape[0] == 0 or h * w == 0:
        return M.new_zeros(*lead, h, w)
    _, _, vh = torch.linalg.svd(M, full_matrices=False)
    proj = (M @ vh[:, 0, :, None])[..., 0]  # [N, hw]
    flip = proj.amin(dim=1).abs() > proj.amax(dim=1).abs()
    proj = torch.where(flip[:, None], -proj, proj)
    return proj.reshape(*lead, h, w)


def maps_of_stack(S: torch.Tensor, size):
    """ReLU, resize and min-max of low-resolution maps ``S`` [B,h,w] or [B,C,h,w] through ops.cam
    (identity weights), at one size or per-image sizes."""
    if S.dim() == 3:
        return cam_at_sizes(S[:, None], S.new_ones(S.shape[0], 1), size)
    B, C = S.shape[:2]
    eye = torch.eye(C, dtype=S.dtype, device=S.device).expand(B, C, C)
    return cam_at_sizes(S, eye, size)


class _OwnInductor:
    """Inductor (torch.compile's default compiler) under a backend object of its own.

    TorchDynamo keeps the graphs it traced per code object, and by default (config
    ``skip_nnmodule_hook_guards``) does not check a module's hooks before reusing one: a model the
    user compiled and ran before would be served by a graph without our capture hooks. A cached
    graph is reused only under the backend it was compiled for, so a backend object per method
    makes the method trace the model again, hooks included, and leaves the user's graphs alone.
    """

    def __call__(self, gm, example_inputs):
        from torch._inductor.compile_fx import compile_fx
        return compile_fx(gm, example_inputs)


class LayerMethod(Method):
    """Maps of target layers from their activations A (and gradients G): ``ReLU(sum_k w_k A_k)``
    for channel-weight methods, ``ReLU(sum_k E_k)`` for element-wise ones, resized and normalised.

    target_layer: a module, a dotted name, ``"NAME:input"``, None (the default rule), or a list of
    them (one map per image, fused across the layers with ``fuse``: "mean" or "max"; one backward
    for all layers). reshape: how the layer's value becomes ``[B, C, h, w]`` (``methods.reshape``).
    compile: run the forward through ``torch.compile`` (compiled at the first call, with the
    capture hooks registered on the model before tracing, where they stay, inert outside this
    method's calls, until ``close()``); the maps are those of the eager method within float
    rounding. ``create_graph`` explanations always run eagerly.
    Subclasses set ``needs_gradients`` and implement ``_weights`` (channel weights) or, with
    ``elementwise = True``, ``_elementwise`` (per-pixel contributions).
    """

    needs_gradients = True
    elementwise = False
    multi_layer = True
    fused_mode: str | None = None  # the ops.cam_from_grads mode computing the same maps, if any

    def __init__(self, model: nn.Module, target_layer=None, *, reshape=None, fuse: str = "mean",
                 compile: bool = False):
        super().__init__(model)
        if not isinstance(compile, bool):
            raise UserError(f"{PREFIX}compile must be True or False, got {compile!r}")
        self.compile = compile
        self._persistent: Persistent | None = None
        self._compiled = None
        layers = list(target_layer) if isinstance(target_layer, (list, tuple)) else [target_layer]
        if not layers:
            raise UserError(f"{PREFIX}target_layer is an empty list; pass at least one layer")
        if len(layers) > 1 and not self.multi_layer:
            raise UserError(f"{PREFIX}{type(self).__name__} explains one layer; pass one target_layer")
        if fuse not in FUSE:
            raise UserError(f"{PREFIX}fuse must be one of {', '.join(FUSE)}, got {fuse!r}")
        self.layers: list[LayerRef] = [resolve_layer(self.model, layer) for layer in layers]
        self.layer: LayerRef = self.layers[0]
        self.reshape = _reshape.resolve(reshape)
        self.fuse = fuse

    @property
    def target_layer(self) -> nn.Module:
        return self.layer.module

    @property
    def target_layer_name(self) -> str:
        return ",".join(layer.name for layer in self.layers)

    def explain(self, x, targets=None, *, top_k: int | None = None, size=None, eigen_smooth: bool = False,
                create_graph: bool = False) -> Explanation:
        """Maps float32 [B,H,W] in [0,1] ([B,C,H,W] for top_k / [B,C] targets) on x's device.

        targets: None (top-1 class per image), an int for all images, B ints, a [B,C] array of
        class indices, or a callable mapping the model output to scores [B] (or [B,C]).
        size: output (H, W); default the spatial size of the first input. A list of B (H, W)
        gives each image its own size and a list of B maps [H_i,W_i] ([C,H_i,W_i]).
        eigen_smooth: replace the sum over channels by the projection on their first principal
        component (``principal_projection``). create_graph: maps differentiable with respect to
        the model's parameters (the forward is recorded from the input, the gradient at the layer
        taken with ``create_graph=True``); the default records only what the maps need.
        """
        inputs = as_inputs(x)
        B, size = batch_and_size(inputs, size)
        _targets.check_top_k(top_k, targets)
        self._check_targets(targets)
        self._check_mode()
        first = inputs[0]
        input_size = tuple(first.shape[-2:]) if first.dim() >= 3 else None
        captures = [Capture(layer, live=self.needs_gradients and not create_graph, reshape=self.reshape,
                            input_size=input_size, graph=create_graph, lean=not self.compile)
                    for layer in self.layers]
        ctx: dict = {}  # per-call state of the subclass's hooks (a method object may serve threads)
        with torch.inference_mode(False):
            hooks = [h for c in captures for h in c.hooks()] + self._extra_hooks(ctx)
            if self.compile and not create_graph:
                output = self._compiled_step(hooks).run(self._compiled, inputs, hooks, grad=False)
            else:
                output = run(self.model, inputs, hooks, grad=create_graph)
            As = [c.activation() for c in captures]
            with torch.enable_grad():
                scores, idx, logits = self._class_scores(output, targets, top_k, B, As[0], ctx)
            Gs = [None] * len(captures)
            if self.needs_gradients:
                leaves = [leaf for c in captures for leaf in c.leaves]
                grads = gradients(scores, leaves, create_graph=create_graph, batched=not self.compile)
                start = 0
                for i, c in enumerate(captures):
                    part = list(grads[start:start + len(c.leaves)])
                    if len(captures) > 1 and not any(bool(g.any()) for g in part):
                        raise UserError(f"{PREFIX}the scores do not depend on target layer {c.layer.name!r} in this "
                                        "forward pass; pick layers on the path to the scored output")
                    Gs[i] = c.gradient(part)
                    start += len(c.leaves)
            if not create_graph:
                As = [A.detach() for A in As]
                Gs = [G.detach() if G is not None else None for G in Gs]
            per_layer = [self._layer_maps(A, G, idx, size, eigen_smooth) for A, G in zip(As, Gs)]
        maps = per_layer[0] if len(per_layer) == 1 else _fuse(per_layer, self.fuse)
        layer_maps = {layer.name: m for layer, m in zip(self.layers, per_layer)} if len(per_layer) > 1 else None
        # With create_graph the logits keep their graph too: a training loss can use the same forward.
        return Explanation(maps, idx, logits if create_graph else detach_output(logits), layer_maps=layer_maps)

    def _compiled_step(self, hooks: list) -> Persistent:
        if self._persistent is None:
            # The hooks go on before torch.compile traces the model, so its graph calls them.
            self._persistent = Persistent([(module, kind) for module, kind, _ in hooks])
            self._compiled = torch.compile(self.model, backend=_OwnInductor())
        return self._persistent

    def close(self) -> None:
        """Remove the hooks that ``compile=True`` left on the model (the method then compiles
        again at its next call); nothing to do otherwise."""
        if self._persistent is not None:
            self._persistent.remove()
            self._persistent, self._compiled = None, None

    def _layer_maps(self, A, G, idx, size, eigen_smooth: bool):
        if self.fused_mode is not None and not eigen_smooth:
            # One fused pass from the gradients (weights, or per-pixel products, included).
            mode = self.fused_mode
            return cam_at_sizes(A, G.to(A.dtype), size, lambda a, g, s: ops.cam_from_grads(a, g, mode, s))
        if self.elementwise:
            E = self._elementwise(A, G)  # [B,K,h,w] or [B,C,K,h,w]
            if eigen_smooth:
                return maps_of_stack(principal_projection(E), size)
            if E.dim() == 4:
                return cam_at_sizes(E, E.new_ones(E.shape[:2]), size)
            return maps_of_stack(E.sum(dim=2), size)
        w = self._weights(A, G, idx)  # [B,K] or [B,C,K]
        if eigen_smooth:
            E = w[..., None, None] * (A if w.dim() == 2 else A.unsqueeze(1))
            return maps_of_stack(principal_projection(E), size)
        return cam_at_sizes(A, w, size)

    # Hooks for subclasses ------------------------------------------------------------------
    # _check_targets, _extra_hooks, _class_scores, _weights / _elementwise, and _layer_maps
    # (A, G, class ids, size, eigen_smooth -> the layer's maps) may be overridden; the compat
    # layer's pytorch-grad-cam engine overrides _class_scores and _layer_maps.

    def _check_targets(self, targets) -> None:
        """Refuse targets the method cannot explain, before any work."""

    def _extra_hooks(self, ctx: dict) -> list:
        """More (module, kind, fn) hooks for the call (CAM watches its linear layer); they may
        leave what they see in ``ctx``."""
        return []

    def _class_scores(self, output, targets, top_k, B: int, A: torch.Tensor, ctx: dict):
        """(scores to differentiate or None, class indices or None, the output to report)."""
        scores, idx = _targets.scores(output, targets, top_k, B)
        return scores, idx, output

    def _weights(self, A: torch.Tensor, grads: torch.Tensor | None, idx: torch.Tensor | None) -> torch.Tensor:
        """Channel weights [B,K] (or [B,C,K]) for ops.cam."""
        raise NotImplementedError

    def _elementwise(self, A: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        """Per-pixel contributions [B,K,h,w] (or [B,C,K,h,w]) whose channel sum is the map."""
        raise NotImplementedError
