"""``explain_folder`` / ``actcam batch``: every image once, unreadable files skipped and reported,
resume, and exactly-once sharding under torchrun with 2 gloo CPU ranks. Real model and photos."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

import actcam_ext as ac
from actcam_ext.images import list_images
from actcam_ext.pipeline import ExplainOptions, Explainer, explain_folder

BIN = Path(sys.executable).parent  # the venv's console scripts: actcam, torchrun
FIELDS = {"path", "width", "height", "thumbnail", "predictions"}
PRED_FIELDS = {"class_id", "label", "score", "box", "heatmap", "overlay"}


def _photo(path: Path, name: str, crop=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = getattr(skimage.data, name)()
    if crop:
        img = img[crop]
    assert cv2.imwrite(str(path), img[:, :, ::-1].copy())


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "images"
    _photo(d / "chelsea.jpg", "chelsea")
    _photo(d / "chelsea.png", "chelsea", (slice(0, 200), slice(100, 400)))  # same stem, other extension
    _photo(d / "sub" / "coffee.JPG", "coffee")
    _photo(d / "sub" / "deeper" / "rocket.png", "rocket", (slice(None, None, 2), slice(None, None, 2)))
    (d / "sub" / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (d / "notes.txt").write_text("not an image, not listed")
    return d


@pytest.fixture(scope="module")
def explainer():
    return Explainer.load("gradcam", device="cpu")


def _lines(path: Path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_listing_is_recursive_sorted_and_skips_out(folder):
    (folder / "out").mkdir()
    _photo(folder / "out" / "x.jpg", "chelsea")
    assert list_images(folder, exclude=folder / "out") == [
        "chelsea.jpg", "chelsea.png", "sub/broken.jpg", "sub/coffee.JPG", "sub/deeper/rocket.png"]


@pytest.mark.parametrize("batch", [1, 3])
def test_every_image_once_unreadable_reported_then_resume(folder, explainer, tmp_path, batch):
    """batch 3: the unreadable file falls inside the first chunk, which still fills up with
    the next readable image; images of four sizes share each forward."""
    out = tmp_path / "out"
    logs = []
    s = explain_folder(folder, out, explainer, ExplainOptions(batch=batch), log=logs.append)
    assert (s["explained"], s["errors"], s["total"]) == (4, 1, 4)
    recs = _lines(out / "results.jsonl")
    assert [r["path"] for r in recs] == ["chelsea.jpg", "chelsea.png", "sub/coffee.JPG", "sub/deeper/rocket.png"]
    for r in recs:
        assert set(r) == FIELDS and len(r["predictions"]) == 1
        p = r["predictions"][0]
        assert set(p) == PRED_FIELDS
        img = cv2.imread(str(out / p["overlay"]))
        assert img.shape == (r["height"], r["width"], 3)  # overlay at the image's own size
        x0, y0, x1, y1 = p["box"]
        assert 0 <= x0 < x1 <= r["width"] and 0 <= y0 < y1 <= r["height"]
    assert 281 <= recs[0]["predictions"][0]["class_id"] <= 285  # chelsea is a cat
    assert recs[2]["predictions"][0]["label"].startswith("espresso")
    errors = _lines(out / "errors.jsonl")
    assert [e["path"] for e in errors] == ["sub/broken.jpg"] and "cannot decode image" in errors[0]["error"]
    assert not list(out.glob("*.rank*.jsonl"))

    # Resume: a new image, and one finished record still in a rank part (a run that died
    # before its merge): only the new image is explained, each image appears once.
    overlay = out / recs[0]["predictions"][0]["overlay"]
    stamp = overlay.stat().st_mtime_ns
    lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
    (out / "results.jsonl").write_text("".join(lines[1:]))
    (out / "results.rank1.jsonl").write_text(lines[0] + '{"path": "cut sho')  # + a line cut by a crash
    _photo(folder / "sub" / "astronaut.tif", "astronaut")
    s = explain_folder(folder, out, explainer, ExplainOptions(batch=batch), log=logs.append)
    assert (s["explained"], s["errors"], s["done_before"], s["total"]) == (1, 1, 4, 5)
    paths = [r["path"] for r in _lines(out / "results.jsonl")]
    assert paths == sorted(set(paths)) and len(paths) == 5 and "sub/astronaut.tif" in paths
    assert overlay.stat().st_mtime_ns == stamp  # not redone
    assert len(_lines(out / "errors.jsonl")) == 1  # reported again in the log, listed once


def test_batched_records_equal_one_at_a_time(folder, explainer, tmp_path):
    explain_folder(folder, tmp_path / "one", explainer, ExplainOptions(batch=1), log=lambda m: None)
    explain_folder(folder, tmp_path / "four", explainer, ExplainOptions(batch=4), log=lambda m: None)
    one, four = _lines(tmp_path / "one" / "results.jsonl"), _lines(tmp_path / "four" / "results.jsonl")
    assert [r["path"] for r in one] == [r["path"] for r in four]
    for a, b in zip(one, four):
        pa, pb = a["predictions"][0], b["predictions"][0]
        assert (pa["class_id"], pa["heatmap"], pa["overlay"]) == (pb["class_id"], pb["heatmap"], pb["overlay"])
        assert abs(pa["score"] - pb["score"]) <= 1e-4 and max(abs(u - v) for u, v in zip(pa["box"], pb["box"])) <= 1
        ha = cv2.imread(str(tmp_path / "one" / pa["heatmap"]), cv2.IMREAD_GRAYSCALE).astype(int)
        hb = cv2.imread(str(tmp_path / "four" / pb["heatmap"]), cv2.IMREAD_GRAYSCALE).astype(int)
        assert np.abs(ha - hb).max() <= 1  # floor(255 * map) may flip by one level


def test_refuses_foreign_output_and_missing_dir(folder, explainer, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(ac.UserError, match="not empty"):
        explain_folder(folder, mine, explainer)
    with pytest.raises(ac.UserError, match="does not exist"):
        explain_folder(tmp_path / "nope", tmp_path / "o", explainer)
    assert (mine / "thesis.tex").read_text() == "precious" and not (tmp_path / "o").exists()


def test_torchrun_two_gloo_ranks_exactly_once(folder, explainer, tmp_path):
    out = tmp_path / "out"
    # One image done before by a single process: the 2 ranks resume from it.
    single = tmp_path / "single"
    _photo(single / "chelsea.jpg", "chelsea")
    explain_folder(single, out, explainer, log=lambda m: None)
    for n, name in enumerate(["astronaut", "coffee"]):  # more work so both ranks get images
        _photo(folder / "more" / f"{name}{n}.png", name, (slice(0, 256), slice(0, 300)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "--no-python",
                        str(BIN / "actcam"), "batch", str(folder), "--out", str(out), "--device", "cpu",
                        "--batch", "2"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    recs = _lines(out / "results.jsonl")
    paths = [x["path"] for x in recs]
    want = ["chelsea.jpg", "chelsea.png", "more/astronaut0.png", "more/coffee1.png", "sub/coffee.JPG",
            "sub/deeper/rocket.png"]
    assert paths == want  # every readable image exactly once, sorted
    assert all(set(x) == FIELDS for x in recs)
    # Disjoint shards of the 6 files to do (chelsea.jpg was done), image i to rank i mod 2:
    # rank 0 chelsea.png, more/coffee1.png, sub/coffee.JPG; rank 1 more/astronaut0.png,
    # sub/broken.jpg (unreadable), sub/deeper/rocket.png.
    assert "rank 0/2: 3 images explained, 0 unreadable, 1 done before (of 7)" in r.stderr, r.stderr
    assert "rank 1/2: 2 images explained, 1 unreadable, 1 done before (of 7)" in r.stderr, r.stderr
    assert "results.jsonl has 6 images" in r.stderr
    errs = _lines(out / "errors.jsonl")
    assert [e["path"] for e in errs] == ["sub/broken.jpg"] and "cannot decode image" in errs[0]["error"]
    assert not list(out.glob("*.rank*.jsonl"))
    for x in recs:
        assert (out / x["predictions"][0]["overlay"]).is_file()
