"""Target layers: naming them, and the one rule for the default.

A target layer is a module of the model whose *output* is explained, or, written
``"NAME:input"``, whose *input* is. The default is the feature map the classifier reads: the
input of the model's last global average pooling (``nn.AdaptiveAvgPool2d`` to 1x1), which is
what CAM weights and what Grad-CAM is meant to explain (a ResNet's ``layer4`` output,
EfficientNet's head activation); a model without such a module defaults to the output of its
last ``nn.Conv2d``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch.nn as nn

from ..errors import PREFIX, UserError

__all__ = ["LayerRef", "find_module", "resolve_layer", "default_layer", "last_of", "global_pool"]

INPUT_SUFFIX = ":input"


@dataclass(frozen=True)
class LayerRef:
    """A resolved target layer: the module, its display name and whether its input is meant."""

    module: nn.Module
    name: str
    use_input: bool = False


def find_module(model: nn.Module, layer, what: str) -> tuple[nn.Module, str]:
    """``(module, dotted name)`` for a module of ``model`` or its name; a UserError listing the
    closest names otherwise."""
    named = dict(model.named_modules())
    if isinstance(layer, str):
        if layer in named:
            return named[layer], layer
        close = difflib.get_close_matches(layer, [n for n in named if n], n=5, cutoff=0.5)
        hint = f"; close matches: {', '.join(repr(c) for c in close)}" if close else ""
        raise UserError(f"{PREFIX}the model has no {what} named {layer!r}{hint}")
    if isinstance(layer, nn.Module):
        for name, module in named.items():
            if module is layer:
                return module, name or "<model>"
        raise UserError(f"{PREFIX}the {what} {type(layer).__name__} is not a submodule of the model")
    raise UserError(f"{PREFIX}{what} must be an nn.Module, a dotted module name or None, "
                    f"got {type(layer).__name__}")


def last_of(model: nn.Module, kinds) -> tuple[nn.Module, str] | None:
    """The last module of the given types in ``named_modules()`` order, with its name."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, kinds):
            found = (module, name)
    return found


def global_pool(model: nn.Module) -> tuple[nn.Module, str] | None:
    """The model's last global average pooling module (``nn.AdaptiveAvgPool2d`` to 1x1)."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.AdaptiveAvgPool2d) and module.output_size in (1, (1, 1)):
            found = (module, name)
    return found


def default_layer(model: nn.Module) -> LayerRef:
    """The default target layer (module docstring)."""
    pool = global_pool(model)
    if pool is not None:
        return LayerRef(pool[0], pool[1] + INPUT_SUFFIX, use_input=True)
    conv = last_of(model, nn.Conv2d)
    if conv is None:
        raise UserError(f"{PREFIX}the model has neither a global average pooling module nor an nn.Conv2d to "
                        "default to; pass target_layer (a module or its dotted name)")
    return LayerRef(conv[0], conv[1])


def resolve_layer(model: nn.Module, layer) -> LayerRef:
    """The LayerRef for ``target_layer``: None (the default), a module, a dotted name, or a
    dotted name + ``":input"``."""
    if layer is None:
        return default_layer(model)
    if isinstance(layer, LayerRef):
        return layer
    if isinstance(layer, str) and layer.endswith(INPUT_SUFFIX):
        module, name = find_module(model, layer[:-len(INPUT_SUFFIX)], "target_layer")
        return LayerRef(module, name + INPUT_SUFFIX, use_input=True)
    module, name = find_module(model, layer, "target_layer")
    return LayerRef(module, name)
