"""Output names: unique and deterministic for every input path, in explain and batch alike."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

import actcam_ext as ac
from actcam_ext.pipeline import ExplainOptions, Explainer, explain_folder
from actcam_ext.pipeline.outputs import STEM_CHARS, output_name

# Names that the old rule (replace odd characters, cut to 60) turned into one.
CLASHING = ["a.1.jpg", "a_1.jpg", "a 1.jpg", "a-1.jpg", "x" * 70 + "_one.jpg", "x" * 70 + "_two.jpg"]


def test_names_are_unique_deterministic_and_readable():
    names = [output_name(k) for k in CLASHING]
    assert len(set(names)) == len(names)
    assert names == [output_name(k) for k in CLASHING]  # resume finds its files again
    assert output_name("sub/a.1.jpg") != output_name("a.1.jpg")
    assert output_name("photos/cat.png").startswith("cat_")
    assert output_name("skimage.data.chelsea").startswith("skimage.data.chelsea_")
    for n in names + [output_name("../../etc/passwd"), output_name("é ü/ß.jpg"), output_name("...")]:
        stem, digest = n.rsplit("_", 1)
        assert len(stem) <= STEM_CHARS and len(digest) == 8 and "/" not in n and not n.startswith(".")


@pytest.fixture(scope="module")
def explainer():
    return Explainer.load("gradcam", device="cpu")


def _clashing_folder(root: Path) -> dict:
    """Different photos under names that used to collide; returns name -> photo."""
    photos = {}
    for name, photo in zip(CLASHING, ["chelsea", "coffee", "astronaut", "rocket", "chelsea", "coffee"]):
        img = getattr(skimage.data, photo)()
        if name.endswith("two.jpg"):
            img = img[::-1].copy()  # the same photo upside down: a different picture
        cv2.imwrite(str(root / name), img[:, :, ::-1])
        photos[name] = img
    return photos


def _own_picture(out: Path, record: dict) -> bool:
    """The record's overlay is of its own image (size and content), not another's."""
    pic = cv2.imread(str(out / record["predictions"][0]["overlay"]))
    return pic is not None and pic.shape[:2] == (record["height"], record["width"])


def test_explain_and_batch_keep_every_image_s_pictures(explainer, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    photos = _clashing_folder(src)
    out = tmp_path / "batch"
    explain_folder(src, out, explainer, ExplainOptions(batch=3), log=lambda m: None)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["path"] for r in records) == sorted(CLASHING)
    overlays = [r["predictions"][0]["overlay"] for r in records]
    assert len(set(overlays)) == len(overlays)
    for r in records:
        assert _own_picture(out, r), r["path"]
    # the two x...x photos have the same size but different content: their heat pictures differ
    heat = {r["path"]: cv2.imread(str(out / r["predictions"][0]["heatmap"]), cv2.IMREAD_GRAYSCALE) for r in records}
    assert not np.array_equal(heat[CLASHING[4]], heat[CLASHING[5]])

    result = ac.explain([str(src / n) for n in CLASHING], explainer, out_dir=tmp_path / "explain")
    files = [p["overlay"] for img in result["images"] for p in img["predictions"]]
    assert len(set(files)) == len(files)
    for img in result["images"]:
        assert _own_picture(tmp_path / "explain", img)
        assert (tmp_path / "explain" / img["sheet"]).is_file()
