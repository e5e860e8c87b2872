"""How good are the maps: faithfulness and localisation metrics, computed the papers' way.

All functions take a batch and work on the device of their tensors (the model's forward runs
on ``x`` as given). Rates are percentages, areas under curves are in [0, 1]. Formulas and the
papers (with sections where they are known) are in each docstring and in docs/evaluate.md.

==========================  =========================================================  ========
function                    what                                                       better
==========================  =========================================================  ========
``confidence_change``       Average Drop %, % Increase in Confidence (Grad-CAM++ 4.1)  low/high
``win_percent``             share of images where one method drops less (Grad-CAM++)   high
``deletion_insertion``      RISE deletion / insertion curves and their AUCs            low/high
``pointing_game``           map's maximum inside a ground-truth box (Zhang et al.)     high
``localisation``            box from the map, IoU >= 0.5 with the truth (CAM sec. 3)   high
==========================  =========================================================  ========
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._validate import fraction, positive_int
from .errors import PREFIX, UserError
from .localize import boxes_from_maps
from .targets import class_indices

__all__ = ["confidence_change", "win_percent", "deletion_insertion", "pointing_game", "localisation",
           "box_iou"]


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------

def _check_maps(maps, what: str = "maps") -> torch.Tensor:
    if not isinstance(maps, torch.Tensor):
        raise UserError(f"{PREFIX}{what} must be a tensor [B,H,W], got {type(maps).__name__}")
    if not maps.is_floating_point():
        raise UserError(f"{PREFIX}{what} must be a floating-point tensor [B,H,W], got dtype {maps.dtype}")
    if maps.dim() != 3:
        raise UserError(f"{PREFIX}{what} must be a 3-D tensor [B,H,W] (one map per image), "
                         f"got shape {list(maps.shape)}")
    if maps.shape[0] == 0:
        raise UserError(f"{PREFIX}empty batch: {what} has shape {list(maps.shape)}")
    if maps.shape[1] == 0 or maps.shape[2] == 0:
        raise UserError(f"{PREFIX}{what} must have a non-empty spatial size, got shape {list(maps.shape)}")
    if not bool(torch.isfinite(maps).all()):
        raise UserError(f"{PREFIX}{what} contains NaN or infinite values")
    return maps


def _check_x_maps(x, maps) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        got = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise UserError(f"{PREFIX}x must be an image batch [B,C,H,W], got {got}")
    if not x.is_floating_point():
        raise UserError(f"{PREFIX}x must be a floating-point tensor, got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise UserError(f"{PREFIX}empty batch: x has shape {list(x.shape)}")
    if not isinstance(maps, torch.Tensor):
        raise UserError(f"{PREFIX}maps must be a tensor [B,H,W], got {type(maps).__name__}")
    B, _, H, W = x.shape
    if tuple(maps.shape) != (B, H, W):
        raise UserError(f"{PREFIX}maps must have shape [B,H,W] = {[B, H, W]} to match x {list(x.shape)}, "
                         f"got {list(maps.shape)} (upsample the maps to the input size, e.g. size=(H, W))")
    if maps.device != x.device:
        raise UserError(f"{PREFIX}maps and x must be on the same device, got {maps.device} and {x.device}")
    _check_maps(maps)


def _resolve_targets(targets, logits: torch.Tensor) -> torch.Tensor:
    # One class per image here: the same rules as the methods' `targets`, minus [B,C] and callables.
    if callable(targets) and not isinstance(targets, torch.Tensor):
        raise UserError(f"{PREFIX}metrics need class-index targets (None, an int or B ints), not a callable")
    idx = class_indices(targets, None, logits)
    if idx.dim() != 1:
        raise UserError(f"{PREFIX}metrics take one target class per image ([B]), got shape {list(idx.shape)}")
    return idx


def _logits(output, B: int) -> torch.Tensor:
    if not isinstance(output, torch.Tensor) or output.dim() != 2 or output.shape[0] != B:
        got = list(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise UserError(f"{PREFIX}the metrics need a classifier returning logits [B, num_classes] "
                         f"with B={B}, got {got}")
    return output


def _check_boxes(boxes, B: int, H: int, W: int, device) -> torch.Tensor:
    """Boxes as int64 [B,M,4] ([x0, y0, x1, y1), pixels, x1/y1 exclusive), validated."""
    try:
        t = torch.as_tensor(boxes)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise UserError(f"{PREFIX}boxes must be a [B,4] or [B,M,4] array of [x0, y0, x1, y1), got "
                         f"{type(boxes).__name__} ({exc})") from None
    if t.dim() == 2:
        t = t[:, None]
    if t.dim() != 3 or t.shape[-1] != 4 or t.shape[1] == 0:
        raise UserError(f"{PREFIX}boxes must have shape [B,4] or [B,M,4] with M >= 1, got "
                        f"{list(torch.as_tensor(boxes).shape)}")
    if t.shape[0] != B:
        raise UserError(f"{PREFIX}boxes must have one row (or row of M boxes) per map: {B} maps, got "
                         f"{t.shape[0]}")
    if t.dtype == torch.bool or t.is_complex():
        raise UserError(f"{PREFIX}boxes must hold integer pixel coordinates, got dtype {t.dtype}")
    if t.is_floating_point():
        if not bool(torch.isfinite(t).all()) or not bool((t == t.round()).all()):
            raise UserError(f"{PREFIX}boxes must hold integer pixel coordinates [x0, y0, x1, y1)")
    t = t.long()
    x0, y0, x1, y1 = t.unbind(-1)
    bad = (x0 < 0) | (y0 < 0) | (x1 > W) | (y1 > H) | (x1 <= x0) | (y1 <= y0)
    if bool(bad.any()):
        i, m = (int(v) for v in bad.nonzero()[0])
        raise UserError(f"{PREFIX}box {t[i, m].tolist()} of image {i} is outside the {W}x{H} image or "
                         "empty; boxes are [x0, y0, x1, y1) with 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H")
    return t.to(device)


def _check_correct(correct, B: int, device) -> torch.Tensor | None:
    if correct is None:
        return None
    c = torch.as_tensor(correct, device=device)
    if c.dtype != torch.bool or tuple(c.shape) != (B,):
        raise UserError(f"{PREFIX}correct must be a bool tensor [B] with B={B}, got "
                         f"{c.dtype} {list(c.shape)}")
    return c


# --------------------------------------------------------------------------------------------
# Faithfulness
# --------------------------------------------------------------------------------------------

def confidence_change(model, x: torch.Tensor, maps: torch.Tensor, targets=None) -> dict:
    """Average Drop % and % Increase in Confidence (Chattopadhyay et al. 2018, section 4.1).

    The explanation input is ``E = x * maps[:, None]`` (x as given to the model, e.g.
    normalised; maps [B,H,W] at x's resolution). With Y_i the softmax confidence of image i's
    target class c on x and O_i the confidence of the same class on E::

        drop_i            = max(0, Y_i - O_i) / Y_i * 100         (0 where Y_i == 0)
        average_drop      = (1/N) sum_i drop_i                    (lower is better)
        increase_in_conf. = (1/N) sum_i 1[Y_i < O_i] * 100        (higher is better)

    targets: None = each image's top-1 class on x, an int, or B ints. Two batched forwards,
    no gradients. Returns a dict: ``average_drop``, ``increase_in_confidence`` (floats, %),
    ``drops`` [B] (%), ``increased`` bool [B], ``confidence`` Y [B], ``explanation_confidence``
    O [B], ``targets`` [B].
    """
    _check_x_maps(x, maps)
    B = x.shape[0]
    with torch.no_grad():
        logits = _logits(model(x), B)
        t = _resolve_targets(targets, logits)
        Y = logits.float().softmax(1).gather(1, t[:, None])[:, 0]
        E = x * maps[:, None].to(x.dtype)
        O = _logits(model(E), B).float().softmax(1).gather(1, t[:, None])[:, 0]
    # Y underflows to 0 only for a hopeless target class; O >= 0 = Y cannot drop from it.
    drops = torch.where(Y > 0, (Y - O).clamp_min(0) / Y.clamp_min(torch.finfo(Y.dtype).tiny), 0.0) * 100
    increased = Y < O
    return {"average_drop": float(drops.mean()), "increase_in_confidence": float(increased.float().mean() * 100),
            "drops": drops, "increased": increased, "confidence": Y, "explanation_confidence": O,
            "targets": t}


def win_percent(drops_a, drops_b, atol: float = 0.0) -> float:
    """Win % of method a over method b (Chattopadhyay et al. 2018, section 4.1, Table 1).

    The percentage of images where a's drop in confidence is smaller than b's::

        win(a, b) = (1/N) sum_i (1[d_a,i < d_b,i] + 0.5 * 1[d_a,i == d_b,i]) * 100

    The paper does not say how it counts ties; its two Win columns sum to 100 (70.72 + 29.28),
    which holds for any data only if a tie counts half to each side. So win(a, b) +
    win(b, a) = 100 exactly. Ties are common: a drop is 0 whenever the explanation raised the
    confidence. drops_a, drops_b: the per-image ``drops`` of ``confidence_change`` for the same
    images and classes. atol: drops within atol of each other count as a tie (default 0, exact
    comparison); use a small atol to compare methods whose maps agree up to float rounding
    (CAM and Grad-CAM on a GAP+FC network), whose drops would otherwise "win" on noise.
    """
    a, b = torch.as_tensor(drops_a), torch.as_tensor(drops_b)
    if a.dim() != 1 or a.shape != b.shape:
        raise UserError(f"{PREFIX}drops_a and drops_b must be 1-D with the same length, got "
                         f"{list(a.shape)} and {list(b.shape)}")
    if a.numel() == 0:
        raise UserError(f"{PREFIX}empty batch: no drops to compare")
    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or not atol >= 0:
        raise UserError(f"{PREFIX}atol must be a number >= 0, got {atol!r}")
    if a.device != b.device:
        b = b.to(a.device)
    a, b = a.double(), b.double()
    tie = (a - b).abs() <= atol
    wins = ((a < b) & ~tie).double() + 0.5 * tie.double()
    return float(wins.mean() * 100)


def _rise_blur(x: torch.Tensor) -> torch.Tensor:
    """RISE's insertion substrate: its ``gkern(klen=11, nsig=5)`` per channel, zero padding.

    The kernel is the reference code's: the square root of the outer product of Gaussian cell
    probabilities (normal CDF differences over 11 cells spanning +-5.5 sigma-units), normalised
    to sum 1. Applied with ``conv2d(padding=5)``, i.e. zeros outside the image, as RISE does.
    """
    klen, nsig = 11, 5.0
    interval = (2 * nsig + 1.0) / klen
    pts = torch.linspace(-nsig - interval / 2.0, nsig + interval / 2.0, klen + 1, dtype=torch.float64)
    k1 = torch.special.ndtr(pts).diff()
    k2 = torch.sqrt(torch.outer(k1, k1))
    k2 = k2 / k2.sum()
    C = x.shape[1]
    kernel = k2.to(device=x.device, dtype=torch.float32).expand(C, 1, klen, klen)
    return F.conv2d(x.float(), kernel, padding=klen // 2, groups=C).to(x.dtype)


def deletion_insertion(model, x: torch.Tensor, maps: torch.Tensor, targets=None, steps: int = 50) -> dict:
    """RISE deletion and insertion curves and their areas (Petsiuk et al. 2018, "causal metrics").

    Pixels are ranked by the map, most important first (ties in index order). With n = steps
    and k_i = floor(i * H*W / n) the number of pixels moved after step i (i = 0..n):

    - deletion: the k_i top pixels of x are set to 0 (all channels); p_i = softmax probability
      of class c. Starts at x, ends at an all-zero image. Lower area is better.
    - insertion: the k_i top pixels of x are put into a blurred copy of x (RISE's Gaussian
      kernel, ``_rise_blur``). Starts at the blurred image, ends at x. Higher area is better.

    Area under the curve with x-axis i/n, trapezoid rule (RISE's ``auc``)::

        AUC = (sum_i p_i - p_0/2 - p_n/2) / n

    x is used as given to the model (RISE also works in the normalised input space, where 0 is
    the mean colour). targets: None = top-1 class on x, an int, or B ints. One batched forward
    of 2B images (deletion and insertion inputs together) per step: n+1 forwards in all, plus one
    on x for the targets.
    Returns a dict: ``deletion``, ``insertion`` (mean AUCs, floats), ``deletion_auc``,
    ``insertion_auc`` [B], ``deletion_curve``, ``insertion_curve`` [B, n+1], ``targets`` [B].
    """
    _check_x_maps(x, maps)
    steps = positive_int(steps, "steps")
    B, _, H, W = x.shape
    HW = H * W
    with torch.no_grad():
        t = _resolve_targets(targets, _logits(model(x), B))
        # rank[b, p] = position of pixel p in image b's importance order (0 = most important).
        order = maps.reshape(B, HW).argsort(dim=1, descending=True, stable=True)
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(HW, device=x.device).expand(B, HW))
        rank = rank.view(B, 1, H, W)
        blurred = _rise_blur(x)
        zeros = torch.zeros((), dtype=x.dtype, device=x.device)
        curves = torch.empty(2 * B, steps + 1, dtype=torch.float32, device=x.device)
        t2 = torch.cat([t, t])
        for i in range(steps + 1):
            moved = rank < (i * HW) // steps
            batch = torch.cat([torch.where(moved, zeros, x), torch.where(moved, x, blurred)])
            probs = _logits(model(batch), 2 * B).float().softmax(1)
            curves[:, i] = probs.gather(1, t2[:, None])[:, 0]
    auc = (curves.sum(1) - curves[:, 0] / 2 - curves[:, -1] / 2) / steps
    return {"deletion": float(auc[:B].mean()), "insertion": float(auc[B:].mean()),
            "deletion_auc": auc[:B], "insertion_auc": auc[B:],
            "deletion_curve": curves[:B], "insertion_curve": curves[B:], "targets": t}


# --------------------------------------------------------------------------------------------
# Localisation
# --------------------------------------------------------------------------------------------

def pointing_game(maps: torch.Tensor, boxes, correct=None) -> dict:
    """Pointing game (Zhang et al. 2016, excitation backprop; used in Selvaraju et al. 2017, Grad-CAM).

    A hit when the map's maximum lies inside a ground-truth box of the explained class::

        (px, py) = argmax_{x,y} map(x, y)         (first in row-major order on ties)
        hit      = exists m: x0_m <= px < x1_m and y0_m <= py < y1_m
        accuracy = (1/N) sum_i hit_i * 100

    boxes: [B,4] or [B,M,4] (M boxes of the class per image) integer [x0, y0, x1, y1) in map
    pixels (x1, y1 exclusive), inside the map. A constant map points nowhere and counts as a
    miss (its argmax would be an arbitrary pixel). correct: optional bool [B], False where the
    explained class is not the image's class (no box of that class exists): a miss.
    Returns a dict: ``accuracy`` (%), ``hits`` bool [B], ``points`` int64 [B,2] as (x, y).
    """
    _check_maps(maps)
    B, H, W = maps.shape
    bx = _check_boxes(boxes, B, H, W, maps.device)
    c = _check_correct(correct, B, maps.device)
    flat = maps.reshape(B, H * W)
    idx = flat.argmax(dim=1)
    px, py = idx % W, idx // W
    inside = (bx[..., 0] <= px[:, None]) & (px[:, None] < bx[..., 2]) & \
             (bx[..., 1] <= py[:, None]) & (py[:, None] < bx[..., 3])
    hits = inside.any(dim=1) & (flat.amax(1) > flat.amin(1))
    if c is not None:
        hits = hits & c
    return {"accuracy": float(hits.float().mean() * 100), "hits": hits, "points": torch.stack([px, py], 1)}


def _area(t: torch.Tensor) -> torch.Tensor:
    return ((t[..., 2] - t[..., 0]).clamp_min(0) * (t[..., 3] - t[..., 1]).clamp_min(0)).double()


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes [..., 4] as [x0, y0, x1, y1) (pixel counts: area = (x1-x0)*(y1-y0))."""
    iw = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp_min(0)
    ih = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp_min(0)
    inter = (iw * ih).double()
    union = _area(a) + _area(b) - inter
    return torch.where(union > 0, inter / union.clamp_min(1), 0.0)


def localisation(maps: torch.Tensor, boxes, threshold: float = 0.2, correct=None) -> dict:
    """Box localisation (Zhou et al. 2016, CAM, section 3; ILSVRC's IoU >= 0.5 criterion).

    The predicted box is ``ac.boxes_from_maps(maps, threshold)``: the box of the largest
    8-connected component of ``map >= threshold * max(map)`` (CAM uses 20%; Grad-CAM 15%).
    With the ground-truth boxes of the class (the best-matching one when there are several)::

        iou_i    = max_m IoU(pred_i, gt_i,m)
        accuracy = (1/N) sum_i 1[iou_i >= 0.5] * 100

    boxes: [B,4] or [B,M,4] integer [x0, y0, x1, y1) in map pixels, inside the map. correct:
    optional bool [B]; when given, an image also needs the right class to count (CAM's top-1
    localisation: class right and IoU >= 0.5). Returns a dict: ``accuracy`` (%), ``mean_iou``
    (float), ``iou`` float64 [B], ``boxes`` int64 [B,4] (predicted), ``hits`` bool [B].
    """
    _check_maps(maps)
    threshold = fraction(threshold, "threshold")
    B, H, W = maps.shape
    gt = _check_boxes(boxes, B, H, W, maps.device)
    c = _check_correct(correct, B, maps.device)
    pred = boxes_from_maps(maps, threshold=threshold).to(maps.device)
    iou = box_iou(pred[:, None, :], gt).amax(dim=1)
    hits = iou >= 0.5
    if c is not None:
        hits = hits & c
    return {"accuracy": float(hits.float().mean() * 100), "mean_iou": float(iou.mean()), "iou": iou,
            "boxes": pred, "hits": hits}
