"""A layer's channel activation maps: what each channel of a feature map responds to.

``activation_maps(model, x)`` runs the model once and returns, per image, the ``top`` channels
of one layer, each map min-max normalised on its own, ranked by

- ``order="mean"``: the channel's mean activation over the map (one forward, autograd off);
- ``order="weight"``: the channel's Grad-CAM weight for a class, w_k = the mean over positions
  of d y_c / d A_k (the cheap path of the gradient methods: one forward, one backward from the
  layer). On a GAP + linear head at the pooled features these weights are the classifier's row
  for the class divided by h*w: the CAM ranking, at any layer;
- ``order="contribution"``: w_k times the sum of the channel's activations over the map, its
  share of the total of sum_k w_k A_k, which is the Grad-CAM map of the class before its ReLU.
  A channel with a large weight that is silent on the image ranks high by weight and low here:
  these are the channels the class map is built from. On a GAP + linear head at the pooled
  features the K contributions sum to the class logit minus its bias.

The layer follows the methods' target-layer rules (``_layers``): None is the input of the
model's last global average pooling (else the last ``nn.Conv2d``), a dotted module name, or
``"NAME:input"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from .. import render, targets as _targets
from .._validate import positive_int
from ..errors import PREFIX, UserError
from . import reshape as _reshape
from ._base import uncompiled, as_inputs
from ._hooks import Capture, gradients, run
from ._layers import resolve_layer

__all__ = ["ActivationMaps", "activation_maps", "ORDERS"]

ORDERS = ("mean", "weight", "contribution")
REPR_IMAGES = 8  # images drawn by the notebook picture; the rest would make it unreadably tall


@dataclass(frozen=True, eq=False)
class ActivationMaps:
    """The top channels of one layer, per image.

    maps: float32 ``[B,top,h,w]``, each channel min-max normalised to [0, 1] on its own (a
        constant channel gives zeros), at the layer's resolution.
    channels: int64 ``[B,top]``, the channel indices, best first.
    scores: float32 ``[B,top]``, the values they are ranked by (mean activation, Grad-CAM
        weight or contribution, after ``order``).
    layer: the layer's name (``"NAME"`` or ``"NAME:input"``).
    order: ``"mean"``, ``"weight"`` or ``"contribution"``.
    class_ids: int64 ``[B]``, the class that ranked each image's channels (the class orders
        with class targets); None otherwise.
    """

    maps: torch.Tensor
    channels: torch.Tensor
    scores: torch.Tensor
    layer: str
    order: str = "mean"
    class_ids: torch.Tensor | None = None

    def labels(self, index: int = 0) -> list[str]:
        """Captions for image ``index``'s tiles: ``"ch 123 · 0.87"`` (channel, score)."""
        return [f"ch {c} · {s:.3g}" for c, s in zip(self.channels[index].tolist(), self.scores[index].tolist())]

    def picture(self, index: int = 0, cols=None, tile: int = 96) -> np.ndarray:
        """Image ``index``'s maps as a captioned grid (``render.activation_grid``), uint8 RGB."""
        return render.activation_grid(self.maps[index], self.labels(index), cols, tile)

    def _repr_png_(self) -> bytes | None:
        """Jupyter: each image's grid (the first REPR_IMAGES images), one row of tiles per image."""
        n = min(self.maps.shape[0], REPR_IMAGES)
        if n == 0 or self.maps.shape[1] == 0:
            return None
        labels = [f"#{i} {t}" for i in range(n) for t in self.labels(i)]
        maps = self.maps[:n].flatten(0, 1)
        return render.png_bytes(render.activation_grid(maps, labels, cols=self.maps.shape[1]))


def _check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise UserError(f"{PREFIX}model must be an nn.Module, got {type(model).__name__}")
    if isinstance(model, torch.jit.ScriptModule):
        raise UserError(f"{PREFIX}a TorchScript model cannot be looked into: activation maps need forward hooks, "
                        "which TorchScript does not support; use the Python module (torch.save(model, path))")


def _check_order(order, targets) -> None:
    if not isinstance(order, str) or order not in ORDERS:
        raise UserError(f"{PREFIX}order must be 'mean', 'weight' or 'contribution', got {order!r}")
    if order == "mean" and targets is not None:
        raise UserError(f"{PREFIX}targets choose the class that ranks the channels: pass order='weight' or "
                        "order='contribution' with them (order='mean' ranks by mean activation, for no class)")


def _class_weights(output, targets, capture: Capture, B: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Grad-CAM weights ``[B,K]`` of one class per image, and the class ids (None for a callable)."""
    with torch.enable_grad():
        scores, idx = _targets.scores(output, targets, None, B)
    if scores.dim() != 1:
        raise UserError(f"{PREFIX}the class orders rank the channels for one class per image: targets must be None "
                        f"(the top class), an int, B ints or a callable giving one score per image, got "
                        f"{list(scores.shape)} scores")
    grads = capture.gradient(list(gradients(scores, capture.leaves)))
    return grads.float().mean(dim=(2, 3)), idx


def activation_maps(model: nn.Module, x, layer=None, top: int = 16, order: str = "mean",
                    targets=None, *, reshape=None) -> ActivationMaps:
    """The ``top`` channels of ``layer`` for each image of ``x`` (module docstring).

    x: a tensor ``[B,3,H,W]`` (or a tuple of model inputs), preprocessed for the model.
    layer: None (the default target layer), a module, a dotted name or ``"NAME:input"``; its
        output (input) must be one tensor ``[B,K,h,w]``, or become one through ``reshape`` (as
        for the methods: ``"vit"``, ``"swin"``, ``"fpn"`` or a callable).
    top: how many channels (>= 1); more than the layer has gives all K of them.
    order: ``"mean"``, ``"weight"`` or ``"contribution"``; targets (the class orders only): None
        for each image's top class, an int, B ints, or a callable mapping the output to one score
        per image.

    maps[b, j] is channel ``channels[b, j]`` of the layer's tensor for image b, exactly,
    min-max normalised: ``(A - min) / (max - min)`` in float32. Ties in the ranking go to the
    lower channel index. Hooks are removed and grad mode restored whatever happens; no
    parameter gradient is computed and the model's mode and flags are left as they were.
    """
    model = uncompiled(model)
    _check_model(model)
    top = positive_int(top, "top")
    _check_order(order, targets)
    ref = resolve_layer(model, layer)
    inputs = as_inputs(x)
    if inputs[0].dim() == 0:
        raise UserError(f"{PREFIX}the first input must have a batch dimension, got a scalar")
    first = inputs[0]
    capture = Capture(ref, live=order != "mean", reshape=_reshape.resolve(reshape),
                      input_size=tuple(first.shape[-2:]) if first.dim() >= 3 else None)
    with torch.inference_mode(False):
        output = run(model, inputs, capture.hooks(), grad=False)
        A = capture.activation()
        class_ids = None
        if order != "mean":
            weights, class_ids = _class_weights(output, targets, capture, A.shape[0])
        A = A.detach()
    if order == "mean":
        scores = A.float().mean(dim=(2, 3))
    else:
        scores = weights if order == "weight" else weights * A.float().sum(dim=(2, 3))
    B, K, h, w = A.shape
    rank = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :min(top, K)]
    chosen = A.float().gather(1, rank[:, :, None, None].expand(-1, -1, h, w))
    lo = chosen.amin(dim=(2, 3), keepdim=True)
    hi = chosen.amax(dim=(2, 3), keepdim=True)
    maps = torch.where(hi > lo, (chosen - lo) / (hi - lo), torch.zeros_like(chosen))
    return ActivationMaps(maps=maps, channels=rank, scores=scores.gather(1, rank), layer=ref.name, order=order,
                          class_ids=class_ids)
