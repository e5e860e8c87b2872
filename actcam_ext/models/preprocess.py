"""Turning uint8 RGB images into a model's input batch."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import PREFIX, UserError

__all__ = ["Preprocess", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# A host image more than this many times the input size is first shrunk as uint8 (area
# averaging) to this multiple: the float copy of a 100-megapixel photo alone would take 1.2 GB,
# and the model input made from 4x differs from the direct one by a few grey levels at most.
PRE_REDUCE = 4


@dataclass(frozen=True)
class Preprocess:
    """Resize + normalise uint8 RGB images into a model's float32 input batch.

    size: (H, W) of the model input; mean/std: per RGB channel on the [0, 1] scale.
    All models take the whole image resized (no centre crop), so a heatmap covers every pixel
    of the original image.
    """

    size: tuple = (224, 224)
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD

    def __call__(self, images, device=None) -> torch.Tensor:
        """images: uint8 arrays/tensors [H,W,3] (a list, any sizes) or one [B,H,W,3] batch.

        Returns float32 [B,3,size] on ``device``. The resize is bilinear with antialiasing
        (a plain bilinear downscale of a large photo aliases), done in torch on the device; a
        numpy image more than PRE_REDUCE times larger than the input is first area-averaged to
        PRE_REDUCE times the input size on the host.
        """
        if isinstance(images, torch.Tensor) and images.dim() == 4:
            images = list(images)
        elif not isinstance(images, (list, tuple)):
            images = [images]
        out = []
        H, W = (int(v) for v in self.size)
        for img in images:
            if isinstance(img, np.ndarray) and img.ndim == 3 and img.dtype == np.uint8 and \
                    (img.shape[0] > PRE_REDUCE * H or img.shape[1] > PRE_REDUCE * W):
                img = cv2.resize(img, (min(img.shape[1], PRE_REDUCE * W), min(img.shape[0], PRE_REDUCE * H)),
                                 interpolation=cv2.INTER_AREA)
            t = torch.as_tensor(img, device=device)
            if t.dtype != torch.uint8 or t.dim() != 3 or t.shape[2] != 3:
                raise UserError(f"{PREFIX}Preprocess expects uint8 RGB images [H,W,3], got {t.dtype} "
                                f"{list(t.shape)}")
            x = t.permute(2, 0, 1)[None].float().div_(255.0)
            x = F.interpolate(x, size=tuple(self.size), mode="bilinear", align_corners=False, antialias=True)
            out.append(x)
        x = torch.cat(out)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std
