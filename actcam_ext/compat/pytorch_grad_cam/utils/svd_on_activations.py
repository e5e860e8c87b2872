"""pytorch-grad-cam's projection on the first principal component, in numpy (its sign is LAPACK's)."""

import numpy as np

from .._missing import missing

__all__ = ["get_2d_projection"]


def get_2d_projection(activation_batch: np.ndarray) -> np.ndarray:
    """[B, K, h, w] -> float32 [B, h, w]: each image's h*w x K matrix (NaN -> 0), centred per
    channel, times the first right singular vector of numpy's SVD; the same numbers as
    pytorch-grad-cam's get_2d_projection, sign included.

    pytorch-grad-cam asks for ``full_matrices=True``; here the thin SVD is taken. Both are the
    same LAPACK driver (gesdd) on the same matrix, and the first right singular vector (its sign
    too) comes from the same bidiagonal solve: the full call only adds the remaining columns of
    U or rows of V^T, at a cost of K x K (4 M numbers for K = 2048 channels) per image.
    """
    activation_batch = np.array(activation_batch, copy=True)
    activation_batch[np.isnan(activation_batch)] = 0
    projections = []
    for activations in activation_batch:
        reshaped = activations.reshape(activations.shape[0], -1).transpose()
        reshaped = reshaped - reshaped.mean(axis=0)
        _, _, vt = np.linalg.svd(reshaped, full_matrices=False)
        projections.append((reshaped @ vt[0, :]).reshape(activations.shape[1:]))
    return np.float32(projections)


def __getattr__(name: str):
    return missing(__name__, name, __all__)
