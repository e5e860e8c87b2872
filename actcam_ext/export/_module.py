"""The exportable CAM: the model with its target layer tapped, and the fused op on top.

Hooks do not survive ``torch.export``, so the target layer's tensor is captured by structure
instead: ``tapped_copy`` makes a shallow copy of the model (copies of the modules on the way
down to the target layer, everything else shared, weights included) in which every reference
to the target layer is a ``LayerTap`` that runs the layer and keeps a copy of its output (or
input). ``CamModule.forward`` runs that copy, takes the kept tensor and calls
``torch.ops.actcam.cam`` on it, so the exported graph holds the custom op itself. The user's
model is never modified.
"""

from __future__ import annotations

import copy
import threading

import torch
import torch.nn as nn

from ..errors import PREFIX, UserError

__all__ = ["LayerTap", "CamModule", "tapped_copy"]


class LayerTap(nn.Module):
    """Runs the wrapped layer and keeps a copy of the tensor it sees (its output, or with
    ``use_input`` its first input) until ``take()``.

    A layer called several times per forward (a shared activation module) is kept at its last
    call, as the eager methods do. The copy is what left the layer: in-place operations
    further on (``out += identity``) do not change it.
    """

    def __init__(self, layer: nn.Module, use_input: bool, name: str):
        super().__init__()
        self.layer = layer
        self.use_input = use_input
        self.layer_name = name
        # One slot per thread: two threads calling the same module each get their own tensor.
        self._slot = threading.local()

    def __getstate__(self):
        # A thread-local cannot be copied or pickled; a copy starts with an empty slot.
        return {k: v for k, v in self.__dict__.items() if k != "_slot"}

    def __setstate__(self, state):
        super().__setstate__(state)
        self._slot = threading.local()

    def forward(self, *args, **kwargs):
        if self.use_input:
            self._keep(args[0] if args else None)
            return self.layer(*args, **kwargs)
        out = self.layer(*args, **kwargs)
        self._keep(out)
        return out

    def _keep(self, t) -> None:
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            which = "input" if self.use_input else "output"
            raise UserError(f"{PREFIX}the {which} of target layer {self.layer_name!r} must be a 4-D tensor "
                            f"[B,K,h,w], got {got}; pick a layer whose {which} is one feature map")
        self._slot.value = t.clone()

    def take(self) -> torch.Tensor:
        """The tensor kept in this thread's last forward (and forget it)."""
        value = getattr(self._slot, "value", None)
        self._slot.value = None
        if value is None:
            raise UserError(f"{PREFIX}target layer {self.layer_name!r} was not called in the model's forward pass")
        return value


def tapped_copy(model: nn.Module, layer: nn.Module, tap: LayerTap) -> nn.Module:
    """A shallow copy of ``model`` in which every reference to ``layer`` is ``tap``.

    Modules on a path to ``layer`` are copied (their own child tables replaced); all other
    modules, parameters and buffers are the model's own objects.
    """
    if model is layer:
        return tap
    done: dict[int, nn.Module] = {}

    def rebuild(module: nn.Module) -> nn.Module:
        if module is layer:
            return tap
        if id(module) in done:
            return done[id(module)]
        children = {name: (rebuild(child) if child is not None else None)
                    for name, child in module._modules.items()}
        if all(children[name] is child for name, child in module._modules.items()):
            done[id(module)] = module
            return module
        clone = copy.copy(module)
        # copy.copy shares the child table; the clone gets its own, with the tapped children.
        clone.__dict__["_modules"] = type(module._modules)(children)
        done[id(module)] = clone
        return clone

    return rebuild(model)


class CamModule(nn.Module):
    """``x -> (logits, maps)``: the model's logits ``[B, classes]`` and CAM maps in [0, 1].

    maps: float32 ``[B, H, W]`` for the top-1 class of each image or one fixed class,
    ``[B, C, H, W]`` for C fixed classes; ``size=None`` means the input's (H, W), which must
    then be static (the op's output size is a constant of the graph). Built by
    ``actcam_ext.export.cam_module``, which checks the model first.
    """

    def __init__(self, net: nn.Module, tap: LayerTap, fc_name: str, size, class_ids, input_shape: tuple,
                 input_dtype: torch.dtype):
        super().__init__()
        # The (C, H, W) and dtype of the inputs it was checked with: the example shape for export.
        self.input_shape = tuple(int(v) for v in input_shape)
        self.input_dtype = input_dtype
        self.net = net
        self.tap = tap
        self.fc_name = fc_name
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.single_class = class_ids is not None and class_ids.dim() == 0
        self.fixed_classes = class_ids is not None
        # Non-persistent: a constant of the graph, not a weight a state_dict should carry.
        self.register_buffer("class_ids", class_ids.reshape(-1) if class_ids is not None else None,
                             persistent=False)

    def describe(self) -> dict[str, str]:
        """What the module computes, as strings (written into exported files' metadata)."""
        if self.class_ids is None:
            classes = "top-1"
        else:
            classes = ",".join(str(int(c)) for c in self.class_ids)
        return {"actcam.method": "cam", "actcam.target_layer": self.tap.layer_name, "actcam.fc_layer": self.fc_name,
                "actcam.input_shape": ",".join(map(str, self.input_shape)),
                "actcam.map_size": "input" if self.size is None else f"{self.size[0]},{self.size[1]}",
                "actcam.targets": classes, "actcam.outputs": "logits,maps"}

    def forward(self, x: torch.Tensor):
        logits = self.net(x)
        A = self.tap.take()
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            got = list(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise UserError(f"{PREFIX}CAM export needs the model to return logits [B, classes], got {got}; "
                            "wrap the model so that its forward returns the classifier's logits")
        weight = self.net.get_submodule(self.fc_name).weight.detach()
        B, K = A.shape[0], A.shape[1]
        if not self.fixed_classes:
            w = weight[logits.argmax(dim=1)]                                   # [B,K]
        elif self.single_class:
            w = weight.index_select(0, self.class_ids).expand(B, K)           # [B,K]
        else:
            rows = weight.index_select(0, self.class_ids)                     # [C,K]
            w = rows.unsqueeze(0).expand(B, rows.shape[0], K)                 # [B,C,K]
        maps = torch.ops.actcam.cam.default(A, w, list(self._map_size(x)), True, True)
        return logits, maps

    def _map_size(self, x: torch.Tensor) -> tuple[int, int]:
        if self.size is not None:
            return self.size
        h, w = x.shape[-2], x.shape[-1]
        if not isinstance(h, int) or not isinstance(w, int):
            raise UserError(f"{PREFIX}the map size is a constant of the exported graph (actcam::cam takes a fixed "
                            "(H, W)), so maps cannot follow a dynamic input height or width; pass size=(H, W), "
                            "or export one module per input size")
        return int(h), int(w)
