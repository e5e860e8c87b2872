"""The engine behind the pytorch-grad-cam-compatible method classes.

pytorch-grad-cam 1.5 (``BaseCAM``) computes, for each target layer,

    raw    = the method's map at the layer's resolution (float32)
    cam    = max(raw, 0)
    scaled = scale_cam_image(cam, (W, H)): (cam - min) / (1e-7 + max(cam - min)), then a
             bilinear ``cv2.resize`` to the input size

and then (``aggregate_multi_layers``) ``max(., 0)``, the mean over the layers and
``scale_cam_image`` once more (the same min-max with 1e-7, no resize), also for one layer.

``CAMBase`` runs that sequence in torch on the model's device: the activations and gradients
come from the library's layer methods (autograd only from the target layer, gradients of the
layer's tensor only, no parameter gradient, hooks for one call), the weighted sum and the
resize are ``ops.cam`` calls (its bilinear resize equals ``cv2.resize``'s to float32 rounding),
and nothing is copied to the host except the maps ``__call__`` returns and, for the Eigen
projections, the matrix whose SVD numpy takes (``utils.svd_on_activations``), because the
projection's sign is LAPACK's and the point is to reproduce it.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ... import ops
from ...errors import PREFIX, UserError
from ...methods import LayerMethod
from .utils.svd_on_activations import get_2d_projection

__all__ = ["CAMBase", "minmax", "layer_map", "aggregate", "projection", "weighted_map", "elementwise_map",
           "per_image_scores"]

# pytorch-grad-cam's scale_cam_image: img / (1e-7 + max(img)) after subtracting the minimum.
SCALE_EPS = 1e-7

# BaseCAM's keyword arguments that the method classes may pass on: the value each may take here
# (None: any value). uses_gradients is checked against the method's own.
_OPTIONS = {"use_cuda": (False,), "compute_input_gradient": (False,), "detach": (True,), "tta_transforms": None,
            "uses_gradients": None}
_REFUSED = {
    "use_cuda": "the maps are computed on the model's device: move the model (model.cuda()) instead",
    "compute_input_gradient": "the methods differentiate to the target layer only; use "
                              "actcam_ext.Saliency for input gradients",
    "detach": "maps that stay differentiable are not provided here; use "
              "actcam_ext.GradCAM(...).explain(x, targets, create_graph=True)",
    "uses_gradients": "each class has its own rule (Eigen-CAM alone needs no gradients)",
}


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """scale_cam_image's normalisation of each map (last two dims): ``(m - min) / (1e-7 + max(m - min))``."""
    shifted = maps - maps.amin(dim=(-2, -1), keepdim=True)
    return shifted / (SCALE_EPS + shifted.amax(dim=(-2, -1), keepdim=True))


def layer_map(raw: torch.Tensor, size) -> torch.Tensor:
    """One layer's maps [B,H,W] from its raw maps [B,h,w]: ReLU, min-max at the layer's
    resolution, bilinear resize to ``size`` (compute_cam_per_layer)."""
    m = minmax(raw.float().clamp_min(0))
    return ops.cam(m[:, None], m.new_ones(m.shape[0], 1), size, relu=False, normalize=False)


def aggregate(per_layer: list) -> torch.Tensor:
    """aggregate_multi_layers: ReLU, mean over the layers, min-max again."""
    stacked = torch.stack(per_layer, dim=1).clamp_min(0)
    return minmax(stacked.mean(dim=1))


def projection(E: torch.Tensor) -> torch.Tensor:
    """get_2d_projection of ``E`` [B,K,h,w] (numpy on the host, for LAPACK's sign), back on E's device."""
    return torch.from_numpy(get_2d_projection(E.detach().float().cpu().numpy())).to(E.device)


def weighted_map(A: torch.Tensor, weights: torch.Tensor, eigen_smooth: bool) -> torch.Tensor:
    """BaseCAM.get_cam_image: sum_k w_k A_k [B,h,w] (ops.cam at the layer's own size, no ReLU, no
    normalisation), or with eigen_smooth the projection of the weighted activations."""
    if eigen_smooth:
        return projection(weights[:, :, None, None] * A)
    return ops.cam(A, weights, tuple(A.shape[-2:]), relu=False, normalize=False)


def elementwise_map(E: torch.Tensor, eigen_smooth: bool) -> torch.Tensor:
    """The element-wise methods' get_cam_image: the channel sum of E, or its projection."""
    return projection(E) if eigen_smooth else E.sum(dim=1)


def per_image_scores(targets):
    """pytorch-grad-cam's targets (one callable per image, applied to that image's output) as
    one callable ``output -> scores [B]`` for the library's methods."""
    targets = list(targets)
    for i, t in enumerate(targets):
        if not callable(t):
            raise UserError(f"{PREFIX}targets[{i}] is a {type(t).__name__}, not a target: pass one target per "
                            "image, e.g. [ClassifierOutputTarget(281)] (utils.model_targets)")

    def scores(output):
        if isinstance(output, dict):
            raise UserError(f"{PREFIX}the model returns a dict (keys {list(output)}) and pytorch-grad-cam's targets "
                            "take one image's output: wrap the model so that it returns a tensor, e.g. "
                            "lambda x: model(x)['out']")
        rows = list(output)
        if len(rows) != len(targets):
            raise UserError(f"{PREFIX}targets has {len(targets)} entries for a batch of {len(rows)} images; pass one "
                            "target per image (or targets=None for each image's top class)")
        values = []
        for i, (target, row) in enumerate(zip(targets, rows)):
            s = target(row)
            if not isinstance(s, torch.Tensor) or s.numel() != 1:
                got = list(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
                raise UserError(f"{PREFIX}targets[{i}] ({type(target).__name__}) gave {got} for one image; a target "
                                "must give one score per image")
            values.append(s.reshape(()))
        return torch.stack(values)
    return scores


class _Engine(LayerMethod):
    """The library's layer method with pytorch-grad-cam's per-layer maps (``layer_map`` of the
    method's raw map) in place of its own."""

    def __init__(self, model: nn.Module, layers: list, reshape, raw, needs_gradients: bool):
        self.needs_gradients = needs_gradients
        super().__init__(model, layers, reshape=reshape)
        self.raw = raw

    def _class_scores(self, output, targets, top_k, B, A, ctx):
        if not self.needs_gradients:
            # Eigen-CAM's map depends on no score, and pytorch-grad-cam never evaluates its targets.
            return None, None, output
        return super()._class_scores(output, targets, top_k, B, A, ctx)

    def _layer_maps(self, A, G, idx, size, eigen_smooth):
        return layer_map(self.raw(A.float(), None if G is None else G.float(), eigen_smooth), size)


def _check_options(name: str, options: dict, uses_gradients: bool) -> None:
    for key, value in options.items():
        if key not in _OPTIONS:
            raise UserError(f"{PREFIX}{name}() got an unexpected keyword argument {key!r}; it takes model, "
                            f"target_layers, reshape_transform (and {', '.join(_OPTIONS)})")
        allowed = (uses_gradients,) if key == "uses_gradients" else _OPTIONS[key]
        if allowed is not None and value not in allowed:
            raise UserError(f"{PREFIX}{name}({key}={value!r}) is not supported: {_REFUSED[key]}")


def _layer_list(target_layers) -> list:
    if isinstance(target_layers, nn.Module) or not isinstance(target_layers, (list, tuple)):
        raise UserError(f"{PREFIX}target_layers must be a list of modules, e.g. [model.layer4[-1]], got "
                        f"{type(target_layers).__name__}")
    # A layer listed twice gives the same map twice, whose mean is that map: keep it once.
    unique = {id(layer): layer for layer in target_layers}
    return list(unique.values())


class CAMBase:
    """pytorch-grad-cam's ``BaseCAM`` interface on the library's methods.

    ``Method(model, target_layers, reshape_transform=None)``; ``method(input_tensor, targets=None,
    aug_smooth=False, eigen_smooth=False)`` -> numpy float32 ``[B, H, W]`` in [0, 1].

    model: puts it in eval mode (as pytorch-grad-cam does); the input is moved to the device of
        its parameters. target_layers: a list of modules (or dotted names) of the model; several
        layers are combined as pytorch-grad-cam does. reshape_transform: a callable from the
        layer's output to [B, C, h, w], applied to the activations and their gradients (a name
        of ``actcam_ext.methods.reshape`` is also accepted). targets: one callable per image,
        applied to that image's output (``utils.model_targets``), or None for each image's top
        class. Keyword arguments of pytorch-grad-cam's BaseCAM are accepted where they change
        nothing here (use_cuda=False, compute_input_gradient=False, detach=True, tta_transforms,
        the method's own uses_gradients) and refused otherwise.

    Subclasses set ``uses_gradients`` and ``raw(A, G, eigen_smooth) -> [B, h, w]``, the method's
    map before the ReLU (float32 tensors; G is None without gradients).
    """

    uses_gradients = True

    @staticmethod
    def raw(A: torch.Tensor, G: torch.Tensor | None, eigen_smooth: bool) -> torch.Tensor:
        raise NotImplementedError

    def __init__(self, model: nn.Module, target_layers, reshape_transform=None, **options):
        name = type(self).__name__
        _check_options(name, options, self.uses_gradients)
        if not isinstance(model, nn.Module):
            raise UserError(f"{PREFIX}model must be an nn.Module, got {type(model).__name__}")
        self.model = model
        self.model.eval()
        self.target_layers = target_layers
        self.reshape_transform = reshape_transform
        self.compute_input_gradient = False
        self.detach = True
        self.tta_transforms = options.get("tta_transforms")
        param = next(model.parameters(), None)
        self.device = param.device if param is not None else None
        self.outputs = None
        self._engine = _Engine(model, _layer_list(target_layers), reshape_transform, type(self).raw,
                               self.uses_gradients)

    def forward(self, input_tensor: torch.Tensor, targets=None, eigen_smooth: bool = False):
        """The maps of one (un-augmented) pass, numpy float32 [B, H, W]."""
        return self._maps(input_tensor, targets, eigen_smooth).cpu().numpy()

    def __call__(self, input_tensor: torch.Tensor, targets=None, aug_smooth: bool = False,
                 eigen_smooth: bool = False):
        if aug_smooth is True:
            maps = self._augmented(input_tensor, targets, eigen_smooth)
        else:
            maps = self._maps(input_tensor, targets, eigen_smooth)
        return maps.cpu().numpy()

    def _maps(self, x: torch.Tensor, targets, eigen_smooth: bool) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            got = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise UserError(f"{PREFIX}input_tensor must be an image batch [B, C, H, W], got {got}")
        if self.device is not None:
            x = x.to(self.device)
        if targets is not None:
            if callable(targets) or not isinstance(targets, (list, tuple)):
                raise UserError(f"{PREFIX}targets must be a list with one target per image, e.g. "
                                f"[ClassifierOutputTarget(281)], or None; got {type(targets).__name__}")
            targets = per_image_scores(targets)
        e = self._engine.explain(x, targets, eigen_smooth=bool(eigen_smooth))
        self.outputs = e.logits
        if e.layer_maps is None:
            return aggregate([e.maps])
        return aggregate([e.layer_maps[layer.name] for layer in self._engine.layers])

    def _augmented(self, x: torch.Tensor, targets, eigen_smooth: bool) -> torch.Tensor:
        """forward_augmentation_smoothing: the mean of the maps of ttach's augmentations, each
        map mapped back (ttach is pytorch-grad-cam's dependency, optional here)."""
        try:
            import ttach
        except ImportError:
            raise NotImplementedError("actcam: aug_smooth=True needs ttach, as in pytorch-grad-cam: "
                                      "pip install ttach") from None
        transforms = self.tta_transforms
        if transforms is None:
            transforms = ttach.Compose([ttach.HorizontalFlip(), ttach.Multiply(factors=[0.9, 1, 1.1])])
        cams = []
        for transform in transforms:
            cam = self._maps(transform.augment_image(x), targets, eigen_smooth)
            cams.append(transform.deaugment_mask(cam[:, None])[:, 0])
        return torch.stack(cams).mean(dim=0)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        # Hooks live for one call here, so there is nothing to release; exceptions propagate
        # (pytorch-grad-cam's __exit__ prints and swallows IndexError).
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.model).__name__}, {self._engine.target_layer_name})"
