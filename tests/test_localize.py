"""``ac.boxes_from_maps`` (CAM paper, section 3) against an independent connected-component
labelling (scipy.ndimage), on maps built to hit the rule's edges: two blobs, corner-touching
pixels, ties in area, components touching the border, constant and NaN maps."""

import numpy as np
import pytest
import torch
from scipy import ndimage

import actcam_ext as ac


def _reference_box(m, threshold):
    """scipy.ndimage (8-connectivity) labelling: box of the largest component, first on ties."""
    mask = m >= threshold * m.max()
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        return [0, 0, 0, 0]
    areas = ndimage.sum_labels(mask, labels, index=range(1, n + 1))
    sl = ndimage.find_objects(labels)[int(np.argmax(areas))]
    return [sl[1].start, sl[0].start, sl[1].stop, sl[0].stop]


def _blob(h, w, cy, cx, r, peak):
    yy, xx = np.mgrid[:h, :w]
    return peak * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2.0 * r * r))


def _synthetic_maps():
    h, w = 60, 80
    two = np.maximum(_blob(h, w, 15, 15, 4, 1.0), _blob(h, w, 40, 55, 9, 0.8))  # small high, big low
    diag = np.zeros((h, w))
    for i in range(20):
        diag[10 + i, 5 + i] = 1.0  # touching only at corners: one 8-connected component
    diag[50:55, 60:64] = 0.5       # a 5x4 block (20 px) ties the diagonal's 20 px: first in raster order wins
    rng = np.random.default_rng(0)
    noisy = ndimage.gaussian_filter(rng.random((h, w)), 3)
    noisy = (noisy - noisy.min()) / (noisy.max() - noisy.min())
    edge = np.zeros((h, w))
    edge[:, 70:] = 1.0             # component touching the right and bottom borders
    return np.stack([two, diag, noisy, edge]).astype(np.float32)


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.9])
def test_boxes_match_connected_components_references(threshold):
    maps = _synthetic_maps()
    got = ac.boxes_from_maps(torch.from_numpy(maps), threshold)
    assert got.dtype == torch.int64 and got.shape == (len(maps), 4)
    for m, box in zip(maps, got.tolist()):
        assert box == _reference_box(m, threshold)


def test_boxes_two_blobs_picks_the_larger_component():
    maps = _synthetic_maps()[:1]
    x0, y0, x1, y1 = ac.boxes_from_maps(maps, 0.2)[0].tolist()
    assert x0 < 55 < x1 and y0 < 40 < y1  # the big blob (centre 55,40), not the higher small one
    assert not (x0 <= 15 < x1 and y0 <= 15 < y1)


def test_boxes_edge_cases_and_types():
    zero = np.zeros((2, 5, 7), np.float32)
    assert ac.boxes_from_maps(zero).tolist() == [[0, 0, 7, 5]] * 2  # no evidence: the whole image
    nan = np.full((1, 5, 7), np.nan, np.float32)
    assert ac.boxes_from_maps(nan).tolist() == [[0, 0, 0, 0]]      # nothing passes: empty box
    single = np.zeros((1, 5, 7), np.float32)
    single[0, 2, 3] = 1
    out = ac.boxes_from_maps(single)
    assert isinstance(out, np.ndarray) and out.dtype == np.int64 and out.tolist() == [[3, 2, 4, 3]]
    half = torch.from_numpy(_synthetic_maps()).half()
    assert ac.boxes_from_maps(half).tolist() == ac.boxes_from_maps(half.float()).tolist()
    for bad in (np.zeros((5, 7)), ):
        with pytest.raises(ValueError, match=r"\[B,H,W\]"):
            ac.boxes_from_maps(bad)
    with pytest.raises(ValueError, match="threshold"):
        ac.boxes_from_maps(zero, 1.5)
