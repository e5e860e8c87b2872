"""Turning uint8 RGB images into a model's input batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import PREFIX, UserError

__all__ = ["Preprocess", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
        (a plain bilinear downscale of a large photo aliases), done in torch on the device.
        """
        if isinstance(images, torch.Tensor) and images.dim() == 4:
            images = list(images)
        elif not isinstance(images, (list, tuple)):
            images = [images]
        out = []
        for img in images:
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
