"""What a method explains: from the model's output to the scores whose gradient is taken.

``targets`` may be

- ``None``: each image's top-1 class (``top_k=k``: its k best classes, one map each);
- an int: that class for every image; B ints: one class per image; a ``[B,C]`` array: C classes
  per image;
- a callable ``f(output) -> scores [B]`` (or ``[B,C]``) for any model output (a tensor, tuple or
  dict): segmentation, detection, multi-output models.

Class indices need the model to return logits ``[B, num_classes]``. The functions here are the
one place where these rules live; the methods and the metrics both use them.
"""

from __future__ import annotations

import torch

from .errors import PREFIX, UserError

__all__ = ["check_top_k", "logits_of", "class_indices", "scores"]


def check_top_k(top_k, targets) -> None:
    """``top_k`` is None or a positive int, and not combined with ``targets``."""
    if top_k is None:
        return
    if targets is not None:
        raise UserError(f"{PREFIX}pass either targets or top_k, not both (top_k picks the top classes itself)")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise UserError(f"{PREFIX}top_k must be a positive int, got {top_k!r}")


def logits_of(output, hint: str) -> torch.Tensor:
    """``output`` when it is a 2-D tensor of logits ``[B, num_classes]``, else a UserError that
    ends with ``hint`` (what the caller can do instead)."""
    if isinstance(output, torch.Tensor) and output.dim() == 2:
        return output
    shape = list(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
    raise UserError(f"{PREFIX}class-index targets need the model to return logits [B, num_classes], "
                    f"got {shape}; {hint}")


def class_indices(targets, top_k, logits: torch.Tensor) -> torch.Tensor:
    """Resolve class targets to int64 indices ``[B]`` (one map per image) or ``[B,C]``.

    Every index is checked against the number of classes (the logits' width): an id out of
    range is a UserError naming it.
    """
    B, N = logits.shape
    if targets is None:
        if top_k is None:
            return logits.detach().argmax(dim=1)
        if top_k > N:
            raise UserError(f"{PREFIX}top_k={top_k} exceeds the number of classes ({N})")
        return logits.detach().topk(top_k, dim=1).indices
    if isinstance(targets, bool):
        raise UserError(f"{PREFIX}targets must be class indices, got {targets!r}")
    if isinstance(targets, int) or (isinstance(targets, torch.Tensor) and targets.dim() == 0):
        idx = torch.full((B,), int(targets), dtype=torch.long, device=logits.device)
    else:
        try:
            idx = torch.as_tensor(targets, device=logits.device)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise UserError(f"{PREFIX}targets must be None, an int, B ints, a [B,C] array of ints or a "
                            f"callable, got {type(targets).__name__} ({exc})") from None
        if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
            raise UserError(f"{PREFIX}targets must be integer class indices, got dtype {idx.dtype}")
        idx = idx.long()
        if idx.dim() not in (1, 2) or idx.shape[0] != B:
            raise UserError(f"{PREFIX}targets must have shape [B] or [B,C] with B={B} (the batch size), "
                            f"got {list(idx.shape)}")
        if idx.dim() == 2 and idx.shape[1] == 0:
            raise UserError(f"{PREFIX}targets of shape [B,C] need C >= 1")
    if idx.numel() and (idx.min() < 0 or idx.max() >= N):
        bad = int(idx.flatten()[((idx < 0) | (idx >= N)).flatten()][0])
        raise UserError(f"{PREFIX}target classes must lie in [0, {N - 1}]: class id {bad} is out of range "
                        f"(the model has {N} outputs)")
    return idx


def scores(output, targets, top_k, B: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The differentiable scores ``[B]`` or ``[B,C]`` of ``output``, and the class indices when
    the targets were classes (None for a callable)."""
    if callable(targets) and not isinstance(targets, torch.Tensor):
        if top_k is not None:
            raise UserError(f"{PREFIX}top_k cannot be combined with a callable target")
        s = targets(output)
        if not isinstance(s, torch.Tensor) or s.dim() not in (1, 2) or s.shape[0] != B \
                or not s.is_floating_point():
            got = list(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
            raise UserError(f"{PREFIX}a callable target must map the model output to a float tensor of "
                            f"one score per image [B] (or [B,C] for C maps) with B={B}, got {got}")
        return s, None
    logits = logits_of(output, "pass targets as a callable that maps the output to one score per image")
    if logits.shape[0] != B:
        raise UserError(f"{PREFIX}the model returned {logits.shape[0]} rows of logits for a batch of {B}")
    idx = class_indices(targets, top_k, logits)
    if idx.dim() == 1:
        return logits.gather(1, idx[:, None])[:, 0], idx
    return logits.gather(1, idx), idx
