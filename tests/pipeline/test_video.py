"""``explain_video`` / ``actcam video``: frames/size/fps preserved, each frame its own overlay,
broken inputs, memory, interrupts.

Real model (EfficientNet-Lite0), real content (pan/zoom over scikit-image photos), real
files written and read back by OpenCV; clips are small (160x90) to keep this fast on 2 cores.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import actcam_ext as ac
from actcam_ext import ops
from actcam_ext.pipeline import Explainer, VideoOptions, explain_video
from bench._common import make_clip

W, H, FPS = 160, 90, 15.0
ACTCAM = [sys.executable, "-m", "actcam_ext"]


@pytest.fixture(scope="module")
def explainer():
    return Explainer.load("gradcam", device="cpu")


def _frames(path):
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), path
    fps = cap.get(cv2.CAP_PROP_FPS)
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    return out, fps


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    # AVI: its frames can be read without the index at the end, so a cut copy stays readable.
    return make_clip(tmp_path_factory.mktemp("clip") / "pan.avi", frames=20, size=(W, H), fps=FPS)


def _no_temp_files(folder: Path):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_frames_size_fps_preserved_and_each_frame_its_own_overlay(clip, explainer, tmp_path):
    out = tmp_path / "out.mp4"
    s = explain_video(clip, out, explainer, VideoOptions(batch=8))  # 20 frames: batches of 8, 8 and 4
    src, src_fps = _frames(clip)
    got, fps = _frames(out)
    assert s.frames == len(got) == len(src) == 20 and s.lost == 0 and not s.interrupted
    assert fps == pytest.approx(src_fps) and fps == pytest.approx(FPS)
    assert all(g.shape == (H, W, 3) for g in got)
    assert _no_temp_files(tmp_path) == []
    # Frame i of the output is frame i's own Grad-CAM overlay (same order, own map): compare
    # with explain() on the decoded input frame, up to the mp4v coding error.
    for i in (0, 19):
        rgb = np.ascontiguousarray(src[i][:, :, ::-1])
        m = ac.explain(rgb, explainer, return_maps=True)["images"][0]["predictions"][0]["map"]
        want = ops.overlay(torch.from_numpy(m)[None], torch.from_numpy(rgb)[None], 0.5)[0].numpy()[:, :, ::-1]
        err = np.abs(got[i].astype(int) - want).mean()
        other = np.abs(got[i].astype(int) - src[i]).mean()  # vs the plain frame: clearly different
        assert err < 6 and other > 3 * err, (i, err, other)


def test_every_k_reuses_the_map(clip, explainer, tmp_path):
    s = explain_video(clip, tmp_path / "k.mp4", explainer, VideoOptions(batch=4, every=3, image_weight=0.0))
    got, _ = _frames(tmp_path / "k.mp4")
    assert s.frames == len(got) == 20
    # image_weight 0: the output is the pure heatmap, so frames 3j, 3j+1, 3j+2 are the same
    # picture (up to coding) while the explained frames 0 and 3 differ.
    assert np.abs(got[3].astype(int) - got[4]).mean() < 3
    assert np.abs(got[3].astype(int) - got[5]).mean() < 3


def test_truncated_video_keeps_the_decoded_frames(clip, explainer, tmp_path):
    cut = tmp_path / "cut.avi"
    data = Path(clip).read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    decodable = len(_frames(cut)[0])
    assert 0 < decodable < 20
    s = explain_video(cut, tmp_path / "cut_out.mp4", explainer, VideoOptions(batch=8))
    got, fps = _frames(tmp_path / "cut_out.mp4")  # finalised: OpenCV reads it back
    assert s.frames == len(got) == decodable and fps == pytest.approx(FPS)
    assert s.expected == 20 and s.lost == 20 - decodable
    assert f"{s.lost} frames lost" in s.line()


@pytest.mark.parametrize("kind", ["random", "cut_mp4", "empty", "missing", "directory"])
def test_unreadable_input_gives_error_and_no_output(explainer, tmp_path, kind):
    src = tmp_path / "in.mp4"
    if kind == "random":
        src.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    elif kind == "cut_mp4":  # an mp4 cut short loses its moov index: nothing is decodable
        make_clip(tmp_path / "full.mp4", frames=10, size=(W, H))
        data = (tmp_path / "full.mp4").read_bytes()
        src.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        src.write_bytes(b"")
    elif kind == "directory":
        src.mkdir()
    out = tmp_path / "out" / "o.mp4"
    with pytest.raises(ac.UserError, match="video"):
        explain_video(src, out, explainer)
    assert not out.exists() and (not out.parent.exists() or list(out.parent.iterdir()) == [])


def test_bad_options_and_outputs(clip, explainer, tmp_path):
    for kw, msg in [({"every": 0}, "every"), ({"batch": 0}, "batch"), ({"image_weight": 2}, "image_weight"),
                    ({"target": [1, 2]}, "one class id"), ({"target": -1}, "class ids >= 0")]:
        with pytest.raises(ac.UserError, match=msg):
            VideoOptions(**kw)
    guided = Explainer.load("guided-gradcam", explainer.model, preprocess=explainer.preprocess)
    with pytest.raises(ac.UserError, match="guided"):
        explain_video(clip, tmp_path / "o.mp4", guided)
    # A class id beyond the model's is found on the first batch (no extra forward): no output.
    with pytest.raises(ac.UserError, match="class id 5000 is out of range"):
        explain_video(clip, tmp_path / "o.mp4", explainer, VideoOptions(target=5000))
    with pytest.raises(ac.UserError, match="extension"):
        explain_video(clip, tmp_path / "noext", explainer)
    with pytest.raises(ac.UserError, match="directory"):
        explain_video(clip, tmp_path, explainer)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_cli_summary_and_exit_codes(clip, tmp_path, capsys):
    # In-process (cli.main), as the console script runs it: a subprocess per case costs seconds.
    from actcam_ext.cli import main
    data = Path(clip).read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    (tmp_path / "bad.avi").write_bytes(os.urandom(4096))
    assert main(["video", clip, str(tmp_path / "a.mp4"), "--batch", "4", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "20 frames 160x90 @ 15 fps" in err and "frames/s" in err
    assert main(["video", str(tmp_path / "cut.avi"), str(tmp_path / "b.mp4"), "--quiet", "--device", "cpu"]) == 1
    assert "frames lost" in capsys.readouterr().err and (tmp_path / "b.mp4").exists()
    assert main(["video", str(tmp_path / "bad.avi"), str(tmp_path / "c.mp4"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "actcam video: error: cannot decode video" in err
    assert "Traceback" not in err and not (tmp_path / "c.mp4").exists()
    with pytest.raises(SystemExit) as exc:
        main(["video", clip, str(tmp_path / "d.mp4"), "--every", "x"])
    assert exc.value.code == 2 and "argument --every: must be an integer" in capsys.readouterr().err


_RSS_CHILD = """
import resource, sys
from actcam_ext.pipeline import Explainer, VideoOptions, explain_video
s = explain_video(sys.argv[1], sys.argv[2], Explainer.load("gradcam", device="cpu"), VideoOptions(every=10**6))
print(s.frames, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_memory_stays_flat_on_a_long_video(tmp_path):
    # Peak RSS of the whole process for a 100-frame and a 2000-frame clip: with bounded queues
    # the long one must not keep its frames (2000 x 43 kB = 86 MB if it did). --every 10**6:
    # the model runs once, so this measures the pipeline, not the model, and stays fast.
    peaks = {}
    for n in (100, 2000):
        src = make_clip(tmp_path / f"{n}.avi", frames=n, size=(W, H))
        r = subprocess.run([sys.executable, "-c", _RSS_CHILD, src, str(tmp_path / f"{n}.mp4")],
                           capture_output=True, text=True, check=True)
        frames, kb = map(int, r.stdout.split())
        assert frames == n
        peaks[n] = kb / 1024
    assert peaks[2000] - peaks[100] < 20, peaks


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_finalises_the_output(tmp_path, sig, code):
    src = make_clip(tmp_path / "long.avi", frames=300, size=(W, H))
    out = tmp_path / "int.mp4"
    p = subprocess.Popen(ACTCAM + ["video", src, str(out), "--batch", "4", "--quiet"],
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until some frames are encoded
        tmp = list(tmp_path.glob(f".int.tmp-{p.pid}-*.mp4"))
        if tmp and tmp[0].stat().st_size > 20_000:
            break
        time.sleep(0.05)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code, err
    got, fps = _frames(out)
    assert 0 < len(got) < 300 and fps == pytest.approx(24.0)
    assert f"interrupted: output finalised with the {len(got)} frames done" in err
    assert f"{300 - len(got)} frames not processed" in err
    assert _no_temp_files(tmp_path) == []


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_odd_frame_size_is_kept_or_said(explainer, tmp_path, suffix):
    """mp4v stores even sizes only: an .avi output keeps 151x91 exactly (MJPEG); an .mp4 output
    is 150x90, and the summary and the CLI say what changed."""
    src = tmp_path / "odd_exact.avi"
    writer = cv2.VideoWriter(str(src), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), FPS, (151, 91))
    for i in range(6):
        writer.write(cv2.resize(skimage_frame(i), (151, 91)))
    writer.release()
    assert _frames(src)[0][0].shape == (91, 151, 3)
    out = tmp_path / f"o{suffix}"
    s = explain_video(src, out, explainer, VideoOptions(batch=4))
    got, fps = _frames(out)
    assert len(got) == 6 and fps == pytest.approx(FPS)
    if suffix == ".avi":
        assert got[0].shape == (91, 151, 3) and s.cropped_from is None and (s.width, s.height) == (151, 91)
        assert not s.notable
    else:
        assert got[0].shape == (90, 150, 3) and s.cropped_from == (151, 91)
        assert "the input is 151x91, an odd size" in s.line() and "cropped to 150x90" in s.line()


def skimage_frame(i: int) -> np.ndarray:
    import skimage.data
    img = skimage.data.astronaut()[:, :, ::-1]
    return np.ascontiguousarray(img[i * 10:, i * 12:])


def test_frames_of_another_size_are_resized_and_counted(tmp_path):
    """A stream whose resolution changes: OpenCV's image-sequence reader hands over frames of their
    own sizes; the decoder resizes them to the first frame's, so batches and the writer keep one
    size, and counts them for the summary."""
    import queue
    import threading
    from actcam_ext.pipeline.video import _END, _Decoder
    for i in range(6):
        size = (160, 90) if i < 3 else (200, 120)
        cv2.imwrite(str(tmp_path / f"f{i:03d}.png"), cv2.resize(skimage_frame(i), size))
    cap = cv2.VideoCapture(str(tmp_path / "f%03d.png"), cv2.CAP_IMAGES)
    ok, first = cap.read()
    q = queue.Queue(maxsize=16)
    dec = _Decoder(cap, first, q, threading.Event())
    dec.start()
    dec.join(timeout=30)
    frames = []
    while (item := q.get()) is not _END:
        frames.append(item)
    assert len(frames) == 6 and all(f.shape == (90, 160, 3) for f in frames) and dec.resized == 3


def test_output_is_the_input_or_unwritable(clip, explainer, tmp_path):
    with pytest.raises(ac.UserError, match="is the input video"):
        explain_video(clip, clip, explainer)
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    with pytest.raises(ac.UserError, match="cannot write video .*: (Not a directory|File exists)"):
        explain_video(clip, blocker / "out.mp4", explainer)
    assert os.path.getsize(clip) > 0 and sorted(p.name for p in tmp_path.iterdir()) == ["file"]
