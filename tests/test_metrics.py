"""``ac.metrics`` against hand-computed cases (the papers' definitions written out)."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import actcam_ext as ac
from actcam_ext import metrics
from actcam_ext.evaluation import synthetic


def _sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


class _SumModel(nn.Module):
    """logits = [sum of the image, 0]: class-0 confidence = sigmoid(sum), by hand."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x):
        self.calls.append(x.shape[0])
        s = x.sum(dim=(1, 2, 3))
        return torch.stack([s, torch.zeros_like(s)], dim=1)


# --------------------------------------------------------------------------------------------
# confidence_change / win_percent
# --------------------------------------------------------------------------------------------

def test_confidence_change_by_hand():
    x = torch.ones(3, 1, 2, 2)                     # sum 4 per image
    maps = torch.stack([torch.full((2, 2), 0.5),   # E sums to 2
                        torch.ones(2, 2),          # E = x
                        torch.full((2, 2), 0.5)])
    out = metrics.confidence_change(_SumModel(), x, maps, targets=[0, 0, 1])
    Y = [_sig(4), _sig(4), 1 - _sig(4)]
    O = [_sig(2), _sig(4), 1 - _sig(2)]
    drops = [max(0.0, y - o) / y * 100 for y, o in zip(Y, O)]
    assert out["drops"].tolist() == pytest.approx(drops, rel=1e-5)
    assert drops[0] > 0 and drops[1] == 0 and drops[2] == 0
    assert out["average_drop"] == pytest.approx(sum(drops) / 3, rel=1e-5)
    assert out["increased"].tolist() == [False, False, True]
    assert out["increase_in_confidence"] == pytest.approx(100 / 3)
    assert out["confidence"].tolist() == pytest.approx(Y, rel=1e-6)
    assert out["explanation_confidence"].tolist() == pytest.approx(O, rel=1e-6)


def test_confidence_change_default_target_is_top1():
    x = torch.cat([torch.ones(1, 1, 2, 2), -torch.ones(1, 1, 2, 2)])   # top-1: class 0, then class 1
    out = metrics.confidence_change(_SumModel(), x, torch.full((2, 2, 2), 0.25))
    assert out["targets"].tolist() == [0, 1]
    # image 1: Y = 1 - sig(-4), O = 1 - sig(-1): a drop of (sig(4) - sig(1)) / sig(4)
    assert out["drops"][1].item() == pytest.approx((_sig(4) - _sig(1)) / _sig(4) * 100, rel=1e-5)


def test_win_percent_by_hand_and_symmetric():
    a = torch.tensor([0.0, 1.0, 5.0, 3.0])
    b = torch.tensor([1.0, 1.0, 2.0, 4.0])
    # a wins images 0 and 3, ties image 1 (half), loses image 2
    assert metrics.win_percent(a, b) == pytest.approx(62.5)
    assert metrics.win_percent(b, a) == pytest.approx(37.5)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        a = torch.randint(0, 4, (37,), generator=g).float()   # many ties
        b = torch.randint(0, 4, (37,), generator=g).float()
        assert metrics.win_percent(a, b) + metrics.win_percent(b, a) == pytest.approx(100.0)
        assert metrics.win_percent(a, a) == pytest.approx(50.0)
    # atol turns float-rounding differences into ties
    assert metrics.win_percent([1.0, 2.0], [1.0 + 1e-7, 2.0 - 1e-7]) == pytest.approx(50.0)
    assert metrics.win_percent([1.0, 2.0], [1.0 + 1e-7, 2.5], atol=1e-6) == pytest.approx(75.0)


# --------------------------------------------------------------------------------------------
# deletion / insertion
# --------------------------------------------------------------------------------------------

def _rise_gkern(klen=11, nsig=5):
    """RISE's gkern, written as in its reference code (numpy + scipy)."""
    import scipy.stats as st
    interval = (2 * nsig + 1.0) / klen
    x = np.linspace(-nsig - interval / 2.0, nsig + interval / 2.0, klen + 1)
    kern1d = np.diff(st.norm.cdf(x))
    kernel_raw = np.sqrt(np.outer(kern1d, kern1d))
    return kernel_raw / kernel_raw.sum()


def test_rise_blur_matches_the_reference_kernel():
    k = _rise_gkern()
    img = torch.rand(2, 3, 9, 13, generator=torch.Generator().manual_seed(1))
    padded = np.pad(img.double().numpy(), ((0, 0), (0, 0), (5, 5), (5, 5)))
    want = np.zeros(img.shape)
    for dy in range(11):
        for dx in range(11):
            want += k[dy, dx] * padded[:, :, dy:dy + 9, dx:dx + 13]
    np.testing.assert_allclose(metrics._rise_blur(img).numpy(), want, rtol=1e-5, atol=1e-6)


def test_deletion_insertion_by_hand():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])[None, None]           # [1,1,2,2]
    maps = torch.tensor([[0.1, 0.9], [0.5, 0.3]])[None]
    # order: value 2 (0.9), 3 (0.5), 4 (0.3), 1 (0.1); steps=4 moves one pixel a step
    model = _SumModel()
    out = metrics.deletion_insertion(model, x, maps, targets=0, steps=4)
    deletion = [_sig(s) for s in (10, 8, 5, 1, 0)]
    k = _rise_gkern()
    blur = {}  # blurred pixel value at (r, c) = sum_q x[q] * k[5 + q - p]
    for r in range(2):
        for c in range(2):
            blur[r, c] = sum(float(x[0, 0, qr, qc]) * k[5 + qr - r, 5 + qc - c] for qr in range(2) for qc in range(2))
    order = [(0, 1), (1, 0), (1, 1), (0, 0)]
    insertion = []
    for i in range(5):
        s = sum(float(x[0, 0, r, c]) if (r, c) in order[:i] else blur[r, c] for r in range(2) for c in range(2))
        insertion.append(_sig(s))
    auc = lambda p: (sum(p) - p[0] / 2 - p[-1] / 2) / 4
    assert out["deletion_curve"][0].tolist() == pytest.approx(deletion, rel=1e-5)
    assert out["insertion_curve"][0].tolist() == pytest.approx(insertion, rel=1e-5)
    assert out["deletion"] == pytest.approx(auc(deletion), rel=1e-5)
    assert out["insertion"] == pytest.approx(auc(insertion), rel=1e-5)
    # one forward for the targets, then one batch of 2B (deletion + insertion) per step
    assert model.calls == [1] + [2] * 5


def test_deletion_insertion_uneven_steps_and_batching():
    # steps=3 over 4 pixels: floor(i*4/3) = 0, 1, 2, 4 pixels deleted
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])[None, None]
    maps = torch.tensor([[0.1, 0.9], [0.5, 0.3]])[None]
    out = metrics.deletion_insertion(_SumModel(), x, maps, targets=0, steps=3)
    assert out["deletion_curve"][0].tolist() == pytest.approx([_sig(s) for s in (10, 8, 5, 0)], rel=1e-5)
    # a batch gives each image what it gets alone (no mixing between images)
    torch.manual_seed(0)
    net = synthetic.SmallCNN(width=8).eval()
    xb = torch.rand(3, 3, 32, 32)
    mb = torch.rand(3, 32, 32)
    full = metrics.deletion_insertion(net, xb, mb, steps=8)
    for i in range(3):
        one = metrics.deletion_insertion(net, xb[i:i + 1], mb[i:i + 1], targets=full["targets"][i:i + 1], steps=8)
        torch.testing.assert_close(one["deletion_curve"][0], full["deletion_curve"][i], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(one["insertion_curve"][0], full["insertion_curve"][i], rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------------------------
# pointing game / localisation
# --------------------------------------------------------------------------------------------

def test_pointing_game_by_hand():
    maps = torch.zeros(4, 5, 6)
    maps[0, 2, 3] = 1.0            # (x=3, y=2) inside [2,1,5,4)
    maps[1, 4, 0] = 1.0            # (x=0, y=4) outside [2,1,5,4)
    maps[2, 0, 5] = 1.0            # (x=5, y=0): outside the first box, inside the second
    # map 3 stays constant: points nowhere
    boxes = torch.tensor([[[2, 1, 5, 4], [2, 1, 5, 4]],
                          [[2, 1, 5, 4], [2, 1, 5, 4]],
                          [[0, 1, 2, 2], [5, 0, 6, 1]],
                          [[0, 0, 6, 5], [0, 0, 6, 5]]])
    out = metrics.pointing_game(maps, boxes)
    assert out["hits"].tolist() == [True, False, True, False]
    assert out["accuracy"] == pytest.approx(50.0)
    assert out["points"][:3].tolist() == [[3, 2], [0, 4], [5, 0]]
    # the right edge is exclusive: x1 = 3 no longer holds x = 3
    assert not metrics.pointing_game(maps[:1], [[2, 1, 3, 4]])["hits"][0]
    # a wrong class counts as a miss
    assert metrics.pointing_game(maps[:1], [[2, 1, 5, 4]], correct=torch.tensor([False]))["accuracy"] == 0.0


def test_localisation_by_hand():
    maps = torch.zeros(2, 8, 10)
    maps[:, 1:3, 2:5] = 1.0        # largest component: box [2,1,5,3)
    maps[:, 6, 8] = 0.5            # a smaller, separate component above the threshold
    gt = torch.tensor([[2, 1, 5, 4],     # IoU 6/9
                       [6, 5, 10, 8]])   # no overlap
    out = metrics.localisation(maps, gt, threshold=0.2)
    assert out["boxes"].tolist() == [[2, 1, 5, 3], [2, 1, 5, 3]]
    assert out["iou"].tolist() == pytest.approx([6 / 9, 0.0])
    assert out["hits"].tolist() == [True, False]
    assert out["accuracy"] == pytest.approx(50.0)
    assert out["mean_iou"] == pytest.approx(1 / 3)
    # several ground-truth boxes: the best match counts
    two = metrics.localisation(maps[1:], torch.tensor([[[6, 5, 10, 8], [2, 1, 5, 3]]]))
    assert two["iou"].tolist() == [1.0]
    assert metrics.box_iou(torch.tensor([0, 0, 2, 2]), torch.tensor([1, 1, 3, 3])).item() == pytest.approx(1 / 7)


@pytest.mark.parametrize("fn", ["pointing_game", "localisation"])
def test_localisation_metrics_reject_bad_boxes(fn):
    f = getattr(metrics, fn)
    maps = torch.rand(2, 8, 10)
    ok = torch.tensor([[0, 0, 10, 8], [1, 1, 2, 2]])
    f(maps, ok)
    for bad, msg in [([[0, 0, 11, 8], [1, 1, 2, 2]], "outside"),     # x1 > W
                     ([[0, 0, 10, 9], [1, 1, 2, 2]], "outside"),     # y1 > H
                     ([[-1, 0, 5, 5], [1, 1, 2, 2]], "outside"),     # negative
                     ([[3, 0, 3, 5], [1, 1, 2, 2]], "empty"),        # x1 == x0
                     ([[0, 0, 10, 8]], "one row"),                   # wrong batch
                     ([[0, 0, 10], [1, 1, 2]], "shape"),
                     ([[0.5, 0, 10, 8], [1, 1, 2, 2]], "integer")]:
        with pytest.raises(ValueError, match=msg):
            f(maps, torch.tensor(bad))
    with pytest.raises(ValueError, match="empty batch"):
        f(torch.zeros(0, 8, 10), torch.zeros(0, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[B,H,W\]"):
        f(torch.rand(8, 10), ok)
    with pytest.raises(ValueError, match="NaN"):
        f(torch.full((2, 8, 10), float("nan")), ok)


@pytest.mark.parametrize("fn", ["confidence_change", "deletion_insertion"])
def test_faithfulness_metrics_reject_bad_input(fn):
    f = getattr(metrics, fn)
    model = _SumModel()
    x = torch.rand(2, 1, 4, 6)
    f(model, x, torch.rand(2, 4, 6))
    with pytest.raises(ValueError, match=r"maps must have shape \[B,H,W\] = \[2, 4, 6\]"):
        f(model, x, torch.rand(2, 2, 3))              # map not upsampled to the input size
    with pytest.raises(ValueError, match=r"maps must have shape"):
        f(model, x, torch.rand(3, 4, 6))              # wrong batch
    with pytest.raises(ValueError, match="empty batch"):
        f(model, x[:0], torch.rand(0, 4, 6))
    with pytest.raises(ValueError, match="image batch"):
        f(model, x[0], torch.rand(2, 4, 6))
    with pytest.raises(ValueError, match="target classes must lie"):
        f(model, x, torch.rand(2, 4, 6), targets=5)
    with pytest.raises(ValueError, match="NaN"):
        f(model, x, torch.full((2, 4, 6), float("nan")))


def test_win_percent_rejects_bad_input():
    with pytest.raises(ValueError, match="same length"):
        metrics.win_percent([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="empty batch"):
        metrics.win_percent([], [])
    with pytest.raises(ValueError, match="steps"):
        metrics.deletion_insertion(_SumModel(), torch.rand(1, 1, 2, 2), torch.rand(1, 2, 2), steps=0)
