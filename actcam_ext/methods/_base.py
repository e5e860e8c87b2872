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
from ._hooks import Capture, gradients, run
from ._layers import LayerRef, resolve_layer

__all__ = ["Explanation", "Method", "LayerMethod", "as_inputs", "batch_and_size", "cam_at_sizes", "detach_output",
           "uncompiled"]


@dataclass(frozen=True, eq=False)
class Explanation:
    """The result of one ``method.explain(x, ...)`` call.

    maps: the method's output (module docstrings of the methods): float32 ``[B,H,W]`` /
        ``[B,C,H,W]`` heatmaps for the activation methods, a list of per-image maps when
        ``size`` was a list; input gradients for the guided family.
    class_ids: int64 ``[B]`` or ``[B,C]``, the classes explained (None for a callable target).
    logits: the model's output for the explained forward pass, detached (a 2-D tensor for a
        classifier; whatever the model returned otherwise, e.g. a dict).
    heatmaps: for GuidedGradCAM, the Grad-CAM maps its gradients were weighted with (at the
        same sizes as ``maps``); None for the other methods.

    In Jupyter an Explanation shows as a picture of its maps (``_repr_png_``/``_repr_html_``);
    ``ac.render.show(e, images)`` draws them over the images.
    """

    maps: Any
    class_ids: torch.Tensor | None
    logits: Any
    heatmaps: Any = None

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


def cam_at_sizes(A: torch.Tensor, weights: torch.Tensor, size):
    """ops.cam at one size for the batch, or a list of per-image maps for a list of sizes.

    Images that share a size share one op call (a folder of camera photos: usually one call).
    """
    if not isinstance(size, list):
        return ops.cam(A, weights, size)
    maps = [None] * len(size)
    for s in dict.fromkeys(size):
        rows = [i for i, si in enumerate(size) if si == s]
        if len(rows) == len(size):
            return list(ops.cam(A, weights, s).unbind(0))
        idx = torch.tensor(rows, device=A.device)
        for i, m in zip(rows, ops.cam(A.index_select(0, idx), weights.index_select(0, idx), s).unbind(0)):
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

    A ``torch.compile``d model is explained through the module it compiled (``uncompiled``)."""

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


class LayerMethod(Method):
    """Channel-weighted maps of one target layer: ``ReLU(sum_k w_k A_k)``, resized, normalised.

    Subclasses set ``needs_gradients`` and implement ``_weights``; CAM also checks its
    structure and scores classes from the classifier (``_class_scores``).
    """

    needs_gradients = True

    def __init__(self, model: nn.Module, target_layer=None):
        super().__init__(model)
        self.layer: LayerRef = resolve_layer(self.model, target_layer)

    @property
    def target_layer(self) -> nn.Module:
        return self.layer.module

    @property
    def target_layer_name(self) -> str:
        return self.layer.name

    def explain(self, x, targets=None, *, top_k: int | None = None, size=None) -> Explanation:
        """Maps float32 [B,H,W] in [0,1] ([B,C,H,W] for top_k / [B,C] targets) on x's device.

        targets: None (top-1 class per image), an int for all images, B ints, a [B,C] array of
        class indices, or a callable mapping the model output to scores [B] (or [B,C]).
        size: output (H, W); default the spatial size of the first input. A list of B (H, W)
        gives each image its own size and a list of B maps [H_i,W_i] ([C,H_i,W_i]).
        """
        inputs = as_inputs(x)
        B, size = batch_and_size(inputs, size)
        _targets.check_top_k(top_k, targets)
        self._check_targets(targets)
        self._check_mode()
        capture = Capture(self.layer, live=self.needs_gradients)
        ctx: dict = {}  # per-call state of the subclass's hooks (a method object may serve threads)
        with torch.inference_mode(False):
            output = run(self.model, inputs, capture.hooks() + self._extra_hooks(ctx), grad=False)
            A = capture.activation()
            with torch.enable_grad():
                scores, idx, logits = self._class_scores(output, targets, top_k, B, A, ctx)
            grads = gradients(scores, (A,))[0] if self.needs_gradients else None
            A = A.detach()
            maps = cam_at_sizes(A, self._weights(A, grads, idx), size)
        return Explanation(maps, idx, detach_output(logits))

    # Hooks for subclasses ------------------------------------------------------------------

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
