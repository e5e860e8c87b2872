"""Reshapes: from what a target layer outputs to the ``[B, C, h, w]`` feature map the methods weight.

CNN layers output ``[B, C, h, w]`` already. Transformers do not: ViT/DeiT blocks output tokens
``[B, N, C]`` (class, distillation or register tokens first, then the h*w patch tokens row by
row), torchvision's and timm's Swin stages output ``[B, h, w, C]``, and detectors' FPN backbones a
dict of feature maps. A reshape maps the captured value to ``[B, C, h, w]``; the methods apply the
same mapping to the gradient (it must be a re-indexing, or at least act on both alike).

``reshape=`` of every layer method takes ``None`` (the layer outputs ``[B, C, h, w]``), a name
(``"vit"``, ``"swin"``, ``"fpn"``), one of the objects below, or any callable ``f(value) -> [B, C, h, w]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import PREFIX, UserError

__all__ = ["Reshape", "vit", "swin", "fpn", "resolve", "NAMES"]

# Class, distillation and register tokens come before the patch tokens: no model has more.
MAX_PREFIX_TOKENS = 16


class Reshape:
    """A reshape that may use the size of the model's input (``input_size=(H, W)``)."""

    def __call__(self, value, input_size=None) -> torch.Tensor:
        raise NotImplementedError


class _Tokens(Reshape):
    """``[B, N, C]`` tokens -> ``[B, C, h, w]``: the last h*w tokens are the patches, row by row."""

    def __init__(self, grid=None, prefix=None):
        self.grid = None if grid is None else (int(grid[0]), int(grid[1]))
        self.prefix = None if prefix is None else int(prefix)

    def __repr__(self) -> str:
        return f"vit(grid={self.grid}, prefix={self.prefix})"

    def _grid(self, n: int, input_size) -> tuple[int, int, int]:
        if self.grid is not None:
            h, w = self.grid
            prefix = n - h * w if self.prefix is None else self.prefix
            if prefix < 0 or prefix + h * w != n or (self.prefix is None and prefix > MAX_PREFIX_TOKENS):
                raise UserError(f"{PREFIX}reshape: {n} tokens do not hold a {h}x{w} grid after {prefix} prefix tokens"
                                f"{'; pass prefix=k if the model has that many' if self.prefix is None else ''}")
            return prefix, h, w
        if input_size is None:
            raise UserError(f"{PREFIX}reshape: cannot infer the token grid of {n} tokens without the input size; "
                            "pass reshape=actcam_ext.reshape.vit(grid=(h, w))")
        H, W = input_size
        prefixes = [self.prefix] if self.prefix is not None else range(0, MAX_PREFIX_TOKENS + 1)
        found = []
        for p in prefixes:
            m = n - p
            if m <= 0:
                continue
            # square patches tiling the input exactly: h = H / s, w = W / s
            for h in range(1, m + 1):
                if m % h:
                    continue
                w = m // h
                # prefix tokens are few next to the patches they summarise
                if h * W == w * H and H % h == 0 and W % w == 0 and p < h * w:
                    found.append((p, h, w))
        if len(found) != 1:
            what = "no" if not found else f"{len(found)} ({', '.join(f'{h}x{w} after {p}' for p, h, w in found)})"
            raise UserError(f"{PREFIX}reshape: {n} tokens for a {H}x{W} input fit {what} grids of square patches; "
                            "pass reshape=actcam_ext.reshape.vit(grid=(h, w), prefix=k) with the patch grid and the "
                            "number of class/register tokens")
        return found[0]

    def __call__(self, value, input_size=None) -> torch.Tensor:
        if not isinstance(value, torch.Tensor) or value.dim() != 3:
            got = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise UserError(f"{PREFIX}reshape 'vit' takes tokens [B, N, C], got {got}")
        B, N, C = value.shape
        prefix, h, w = self._grid(N, input_size)
        return value[:, prefix:].reshape(B, h, w, C).permute(0, 3, 1, 2)


class _ChannelsLast(Reshape):
    """``[B, h, w, C]`` -> ``[B, C, h, w]`` (Swin stages); ``[B, N, C]`` tokens of a square grid too."""

    def __repr__(self) -> str:
        return "swin()"

    def __call__(self, value, input_size=None) -> torch.Tensor:
        if isinstance(value, torch.Tensor) and value.dim() == 4:
            return value.permute(0, 3, 1, 2)
        if isinstance(value, torch.Tensor) and value.dim() == 3:
            B, N, C = value.shape
            s = math.isqrt(N)
            if s * s == N:
                return value.reshape(B, s, s, C).permute(0, 3, 1, 2)
        got = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise UserError(f"{PREFIX}reshape 'swin' takes [B, h, w, C] (or a square grid of tokens [B, N, C]), got {got}")


class _FPN(Reshape):
    """A dict of FPN levels -> one map: every level resized (bilinear) to the ``level`` one's size,
    then concatenated along channels."""

    def __init__(self, level=None):
        self.level = level

    def __repr__(self) -> str:
        return f"fpn(level={self.level!r})"

    def __call__(self, value, input_size=None) -> torch.Tensor:
        if not isinstance(value, dict) or not value or not all(isinstance(v, torch.Tensor) and v.dim() == 4
                                                                for v in value.values()):
            raise UserError(f"{PREFIX}reshape 'fpn' takes a dict of feature maps [B, C, h, w] (an FPN backbone's "
                            f"output), got {type(value).__name__}")
        keys = list(value)
        ref = keys[-1] if self.level is None else self.level
        if ref not in value:
            raise UserError(f"{PREFIX}reshape 'fpn': no level {ref!r}; the levels are {keys}")
        size = value[ref].shape[-2:]
        return torch.cat([v if v.shape[-2:] == size else
                          F.interpolate(v, size=size, mode="bilinear", align_corners=False) for v in value.values()],
                         dim=1)


def vit(grid=None, prefix=None) -> Reshape:
    """Tokens ``[B, N, C]`` -> ``[B, C, h, w]``. grid: (h, w) of the patch grid; prefix: the number
    of class/distillation/register tokens before the patches. Without them, the grid is inferred
    from the input size when exactly one grid fits: square patches tiling the input exactly, after
    at most 16 prefix tokens, fewer than the patches."""
    return _Tokens(grid, prefix)


def swin() -> Reshape:
    """Channels-last ``[B, h, w, C]`` -> ``[B, C, h, w]`` (torchvision and timm Swin stages)."""
    return _ChannelsLast()


def fpn(level=None) -> Reshape:
    """An FPN dict of ``[B, C_l, h_l, w_l]`` levels -> ``[B, sum C_l, h, w]`` at the size of
    ``level`` (default: the last, coarsest level)."""
    return _FPN(level)


NAMES = {"vit": vit, "swin": swin, "fpn": fpn}


def resolve(reshape):
    """None, a name of NAMES, a Reshape or any callable -> a callable ``(value, input_size) -> tensor``
    (or None)."""
    if reshape is None:
        return None
    if isinstance(reshape, str):
        if reshape not in NAMES:
            raise UserError(f"{PREFIX}unknown reshape {reshape!r}; choose one of: {', '.join(NAMES)}, or pass a "
                            "callable")
        return NAMES[reshape]()
    if isinstance(reshape, Reshape):
        return reshape
    if callable(reshape):
        return lambda value, input_size=None: reshape(value)
    raise UserError(f"{PREFIX}reshape must be None, a name ({', '.join(NAMES)}) or a callable, got "
                    f"{type(reshape).__name__}")
