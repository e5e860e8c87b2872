"""The evaluation engine behind ``actcam evaluate``: methods scored with the papers' metrics.

``evaluate`` explains every image with each method (all methods explain the same class: the
model's top-1), times the maps, and computes Average Drop, Increase in Confidence, RISE
deletion/insertion AUCs and, when boxes are given, the pointing game and box localisation.
``rows`` turns the per-image values into one summary row per method, ``markdown`` into a table.
Formulas: ``actcam_ext.metrics`` and docs/evaluate.md.
"""

from __future__ import annotations

import time

import torch

from .. import metrics
from .._progress import progress_bar
from .._validate import fraction, positive_int
from ..methods import TITLES, make_method

__all__ = ["evaluate", "rows", "markdown", "WIN_ATOL", "TIMING_PASSES", "COLUMNS"]

# Drops (in %) closer than this are a tie in Win %: CAM and Grad-CAM give the same maps up to
# float rounding on a GAP+FC network, and their ~1e-5 differences must not count as wins.
WIN_ATOL = 1e-3
# The maps are timed on this many passes over the images, keeping the fastest: on a shared
# machine a single pass measures the neighbours' load as much as the method.
TIMING_PASSES = 3


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate(model, x: torch.Tensor, methods: list, *, boxes=None, labels=None, layer=None, reshape=None,
             steps: int = 50, threshold: float = 0.2, batch: int = 32, progress: bool = False) -> tuple[dict, dict]:
    """Score ``methods`` (registry names) on images ``x`` [N,3,H,W] (on the model's device).

    boxes: ground-truth boxes [N,4] (or [N,M,4]) for the pointing game and localisation;
    labels: true classes [N] (then a wrong top-1 class counts as a miss for those two).
    layer: the target layer(s) of every method (None: the default rule); reshape: as for the
    methods. Returns ``(per, info)``:
    per method, per-image tensors (``drops``, ``increased``, ``deletion_auc``,
    ``insertion_auc``, and with boxes ``hits_pg``, ``iou``, ``hits_loc``) plus ``seconds`` (the
    fastest of TIMING_PASSES passes making the maps); info: ``n``, ``targets`` and, with labels,
    ``classification_accuracy``.
    """
    steps = positive_int(steps, "steps")
    batch = positive_int(batch, "batch")
    threshold = fraction(threshold, "threshold")
    device = x.device
    N = x.shape[0]
    batches = [(i, min(i + batch, N)) for i in range(0, N, batch)]
    with torch.no_grad():
        logits = torch.cat([model(x[a:b]) for a, b in batches])
    targets = logits.argmax(1)
    correct = (targets == labels) if labels is not None else None
    bar = progress_bar(len(methods) * N, progress, desc="evaluating")
    per = {}
    try:
        for name in methods:
            method = make_method(name, model, layer, **({"reshape": reshape} if reshape is not None else {}))
            # Warm-up (untimed): first-call costs (allocator, kernels) are not the method's.
            method(x[:min(batch, N)], targets=targets[:min(batch, N)])
            acc = {k: [] for k in ("drops", "increased", "deletion_auc", "insertion_auc", "hits_pg", "iou",
                                   "hits_loc")}
            seconds = 0.0
            for a, b in batches:
                xb, tb = x[a:b], targets[a:b]
                _sync(device)
                t0 = time.perf_counter()
                maps = method(xb, targets=tb)
                _sync(device)
                seconds += time.perf_counter() - t0
                cc = metrics.confidence_change(model, xb, maps, tb)
                di = metrics.deletion_insertion(model, xb, maps, tb, steps=steps)
                acc["drops"].append(cc["drops"])
                acc["increased"].append(cc["increased"])
                acc["deletion_auc"].append(di["deletion_auc"])
                acc["insertion_auc"].append(di["insertion_auc"])
                if boxes is not None:
                    cb = correct[a:b] if correct is not None else None
                    pg = metrics.pointing_game(maps, boxes[a:b], correct=cb)
                    loc = metrics.localisation(maps, boxes[a:b], threshold=threshold, correct=cb)
                    acc["hits_pg"].append(pg["hits"])
                    acc["iou"].append(loc["iou"])
                    acc["hits_loc"].append(loc["hits"])
                if bar is not None:
                    bar.update(b - a)
            for _ in range(TIMING_PASSES - 1):
                _sync(device)
                t0 = time.perf_counter()
                for a, b in batches:
                    method(x[a:b], targets=targets[a:b])
                _sync(device)
                seconds = min(seconds, time.perf_counter() - t0)
            cat = {k: torch.cat(v).cpu() for k, v in acc.items() if v}
            cat["seconds"] = seconds
            per[name] = cat
    finally:
        if bar is not None:
            bar.close()
    info = {"n": N, "targets": targets.cpu().tolist()}
    if correct is not None:
        info["classification_accuracy"] = float(correct.float().mean() * 100)
    return per, info


def rows(per: dict) -> list[dict]:
    """One summary row per method (Win % against Grad-CAM when Grad-CAM was evaluated)."""
    out = []
    for name, r in per.items():
        out.append({
            "method": TITLES.get(name, name),
            "average_drop": float(r["drops"].mean()),
            "increase_in_confidence": float(r["increased"].float().mean() * 100),
            "win_vs_gradcam": metrics.win_percent(r["drops"], per["gradcam"]["drops"], atol=WIN_ATOL)
            if "gradcam" in per else None,
            "deletion_auc": float(r["deletion_auc"].mean()),
            "insertion_auc": float(r["insertion_auc"].mean()),
            "pointing_game": float(r["hits_pg"].float().mean() * 100) if "hits_pg" in r else None,
            "localisation_accuracy": float(r["hits_loc"].float().mean() * 100) if "hits_loc" in r else None,
            "mean_iou": float(r["iou"].mean()) if "iou" in r else None,
            "ms_per_image": r["seconds"] / len(r["drops"]) * 1000})
    return out


COLUMNS = (("method", "method", None), ("average_drop", "Avg Drop % ↓", 2),
           ("increase_in_confidence", "Increase % ↑", 2), ("win_vs_gradcam", "Win % vs Grad-CAM ↑", 2),
           ("deletion_auc", "Deletion AUC ↓", 4), ("insertion_auc", "Insertion AUC ↑", 4),
           ("pointing_game", "Pointing % ↑", 1), ("localisation_accuracy", "Loc. acc % ↑", 1),
           ("mean_iou", "mean IoU ↑", 3), ("ms_per_image", "ms / image (maps)", 2))


def markdown(table_rows: list[dict]) -> str:
    """The rows as a markdown table (– where a column does not apply)."""
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|" + "|".join("---" if key == "method" else "---:" for key, _, _ in COLUMNS) + "|"]
    for row in table_rows:
        cells = []
        for key, _, digits in COLUMNS:
            v = row[key]
            cells.append(v if digits is None else ("–" if v is None else f"{v:.{digits}f}"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
