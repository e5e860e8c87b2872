"""pytorch-grad-cam's image helpers (utils.image), the same numbers: numpy and OpenCV as it uses them."""

import cv2
import numpy as np
import torch
from torchvision.transforms import Compose, Normalize, ToTensor

from .._missing import missing

__all__ = ["preprocess_image", "deprocess_image", "show_cam_on_image", "scale_cam_image",
           "scale_accross_batch_and_channels"]


def preprocess_image(img: np.ndarray, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)) -> torch.Tensor:
    """An RGB image [H, W, 3] (float in [0, 1]; uint8 is divided by 255) -> a normalised batch
    [1, 3, H, W] (torchvision's ToTensor and Normalize)."""
    return Compose([ToTensor(), Normalize(mean=list(mean), std=list(std))])(img.copy()).unsqueeze(0)


def deprocess_image(img: np.ndarray) -> np.ndarray:
    """A gradient picture as uint8: centred, divided by its standard deviation (+ 1e-5), times
    0.1, plus 0.5, clipped to [0, 1], times 255 (truncated)."""
    img = img - np.mean(img)
    img = img / (np.std(img) + 1e-5)
    img = img * 0.1
    img = img + 0.5
    img = np.clip(img, 0, 1)
    return np.uint8(img * 255)


def show_cam_on_image(img: np.ndarray, mask: np.ndarray, use_rgb: bool = False, colormap: int = cv2.COLORMAP_JET,
                      image_weight: float = 0.5) -> np.ndarray:
    """The map ``mask`` [H, W] in [0, 1] as an OpenCV colormap (BGR, or RGB with ``use_rgb``) over
    ``img`` (float32 [H, W, 3] in [0, 1]): ``(1 - image_weight) heat + image_weight img``, divided
    by its maximum, times 255, truncated to uint8. Raises, as pytorch-grad-cam does, when ``img``
    exceeds 1 or ``image_weight`` is outside [0, 1]."""
    heatmap = cv2.applyColorMap(np.uint8(255 * mask), colormap)
    if use_rgb:
        heatmap = cv2.cvtColor(heatmap, cv2.COLOR_BGR2RGB)
    heatmap = np.float32(heatmap) / 255
    if np.max(img) > 1:
        raise Exception("The input image should np.float32 in the range [0, 1]")
    if image_weight < 0 or image_weight > 1:
        raise Exception(f"image_weight should be in the range [0, 1]. Got: {image_weight}")
    cam = (1 - image_weight) * heatmap + image_weight * img
    cam = cam / np.max(cam)
    return np.uint8(255 * cam)


def scale_cam_image(cam, target_size=None) -> np.ndarray:
    """Each map min-max scaled, ``(m - min) / (1e-7 + max(m - min))``, then resized to
    ``target_size`` = (W, H) with cv2.resize (bilinear; 3-D maps with scipy's zoom); float32."""
    result = []
    for img in cam:
        img = img - np.min(img)
        img = img / (1e-7 + np.max(img))
        if target_size is not None:
            if len(img.shape) > 2:
                from scipy.ndimage import zoom  # only 3-D maps need it
                img = zoom(np.float32(img), [(t_s / i_s) for i_s, t_s in zip(img.shape, target_size[::-1])])
            else:
                img = cv2.resize(np.float32(img), target_size)
        result.append(img)
    return np.float32(result)


def scale_accross_batch_and_channels(tensor, target_size) -> np.ndarray:
    """scale_cam_image over [B, C, h, w] maps -> [B, C, H, W] with target_size = (W, H)."""
    batch_size, channel_size = tensor.shape[:2]
    reshaped = tensor.reshape(batch_size * channel_size, *tensor.shape[2:])
    result = scale_cam_image(reshaped, target_size)
    return result.reshape(batch_size, channel_size, target_size[1], target_size[0])


def __getattr__(name: str):
    return missing(__name__, name, __all__)
