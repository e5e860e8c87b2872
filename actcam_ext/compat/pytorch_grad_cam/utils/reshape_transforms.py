"""pytorch-grad-cam's reshape transforms (utils.reshape_transforms): a target layer's output ->
[B, C, h, w]. ``actcam_ext.methods.reshape`` has the library's own (``"vit"`` infers the grid)."""

import torch

from .._missing import missing

__all__ = ["fasterrcnn_reshape_transform", "swinT_reshape_transform", "vit_reshape_transform"]


def fasterrcnn_reshape_transform(x):
    """An FPN dict -> the absolute values of every level resized (bilinear) to the ``'pool'``
    level's size, concatenated along channels."""
    target_size = x["pool"].size()[-2:]
    activations = [torch.nn.functional.interpolate(torch.abs(value), target_size, mode="bilinear")
                   for value in x.values()]
    return torch.cat(activations, dim=1)


def swinT_reshape_transform(tensor, height=7, width=7):
    """Tokens [B, h*w, C] -> [B, C, height, width]."""
    result = tensor.reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


def vit_reshape_transform(tensor, height=14, width=14):
    """Tokens [B, 1 + h*w, C] (the class token first) -> [B, C, height, width]."""
    result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


def __getattr__(name: str):
    return missing(__name__, name, __all__)
