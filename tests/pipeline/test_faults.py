"""The fault suite: kill -9, a full disk, SIGINT/SIGTERM and concurrent runs never lose, duplicate
or half-write anything. Whole ``actcam`` processes on real photos, as production runs them."""

import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
import skimage.data

ACTCAM = [sys.executable, "-m", "actcam_ext"]
N_IMAGES = 24


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """24 small distinct photos (crops of the bundled ones) in two folders."""
    d = tmp_path_factory.mktemp("photos")
    names = ("chelsea", "coffee", "astronaut", "rocket")
    for i in range(N_IMAGES):
        img = getattr(skimage.data, names[i % 4])()
        h, w = img.shape[:2]
        crop = img[(i // 4) * 10:, (i // 4) * 12:]
        crop = cv2.resize(crop, (160, max(16, round(160 * crop.shape[0] / crop.shape[1]))))
        sub = d / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        assert cv2.imwrite(str(sub / f"img{i:02d}.jpg"), crop[:, :, ::-1])
    return d


def _batch(folder, out, *extra):
    return ACTCAM + ["batch", str(folder), "--out", str(out), "--device", "cpu", "--quiet", *extra]


def _check_complete(out: Path) -> list:
    """Every image exactly once, every line valid JSON, every picture decodes; no leftovers."""
    lines = (out / "results.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # a torn or glued line would fail here
    paths = [r["path"] for r in records]
    assert len(paths) == N_IMAGES and len(set(paths)) == N_IMAGES and paths == sorted(paths)
    for r in records:
        for p in r["predictions"]:
            for key in ("heatmap", "overlay"):
                assert cv2.imread(str(out / p[key])) is not None, p[key]
    assert not list(out.glob("*.rank*.jsonl")) and not list(out.glob(".*.tmp-*"))
    assert (out / "index.html").is_file()
    return records


def _wait_for(predicate, timeout=120.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _records_on_disk(out: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in out.glob("results*.jsonl"))


def test_resume_after_a_line_cut_short(folder, tmp_path):
    """A part that ends in a partial line (a crash between the writes of a chunk): the rerun cuts
    it back first, so the record it redoes is not glued onto the broken line and lost."""
    out = tmp_path / "out"
    subprocess.run(_batch(folder, out), check=True, timeout=300)
    lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
    (out / "results.jsonl").write_text("".join(lines[2:]))
    (out / "results.rank0.jsonl").write_text(lines[0] + lines[1][: len(lines[1]) // 2])
    subprocess.run(_batch(folder, out), check=True, timeout=300)
    _check_complete(out)


def test_kill_9_at_random_points_then_resume(folder, tmp_path):
    """Chunks of 8 images with 10 classes each (about 20 kB of records, more than one buffer),
    killed at random moments, resumed, killed again: in the end every image exactly once."""
    out = tmp_path / "out"
    rng = random.Random(7)
    kills = 0
    for _ in range(3):
        start = _records_on_disk(out) if out.exists() else 0
        if start >= N_IMAGES:
            break
        proc = subprocess.Popen(_batch(folder, out, "--batch", "8", "--top-k", "10"), stderr=subprocess.DEVNULL)
        _wait_for(lambda: proc.poll() is not None or (out.exists() and _records_on_disk(out) > start), timeout=120)
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        for part in out.glob("results*.jsonl"):  # never more than one torn line, and only the last
            body = part.read_bytes().splitlines(keepends=True)
            for line in body[:-1]:
                json.loads(line)
    assert kills >= 1
    subprocess.run(_batch(folder, out, "--batch", "8", "--top-k", "10"), check=True, timeout=300)
    records = _check_complete(out)
    assert all(len(r["predictions"]) == 10 for r in records)


def _small_disk(path: Path, size: str) -> bool:
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_full_disk_then_resume(folder, tmp_path):
    """ENOSPC part-way (a 96 kB tmpfs: a few images fit): one line on stderr, exit 2, nothing
    torn beyond the last line; with room again the rerun completes. Where tmpfs cannot be mounted
    (not root), RLIMIT_FSIZE makes the writes fail with EFBIG instead: the same path."""
    mnt = tmp_path / "disk"
    mounted = _small_disk(mnt, "96k")
    out = mnt / "out"
    try:
        limit = None if mounted else (lambda: (signal.signal(signal.SIGXFSZ, signal.SIG_IGN),
                                               resource.setrlimit(resource.RLIMIT_FSIZE, (12_000, 12_000))))
        proc = subprocess.run(_batch(folder, out, "--batch", "4"), capture_output=True, text=True, timeout=300,
                              preexec_fn=limit)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert ("No space left on device" if mounted else "File too large") in proc.stderr \
            or "cannot write" in proc.stderr, proc.stderr
        if mounted:
            subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        subprocess.run(_batch(folder, out, "--batch", "4"), check=True, timeout=300)
        _check_complete(out)
    finally:
        if mounted:
            subprocess.run(["umount", str(mnt)], check=False)


def test_a_second_run_on_the_same_out_is_refused(folder, tmp_path):
    out = tmp_path / "out"
    first = subprocess.Popen(_batch(folder, out, "--batch", "1"), stderr=subprocess.PIPE, text=True)
    assert _wait_for(lambda: (out / ".actcam-batch.lock").exists() and _records_on_disk(out) > 0)
    # Paused, the first run holds its lock for as long as the second takes to start, however
    # fast the first would otherwise finish.
    first.send_signal(signal.SIGSTOP)
    try:
        second = subprocess.run(_batch(folder, out), capture_output=True, text=True, timeout=300)
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2
    assert f"is in use by another actcam batch run (process {first.pid})" in second.stderr
    assert second.stderr.count("\n") == 1
    assert first.wait(timeout=300) == 0, first.stderr.read()
    _check_complete(out)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_batch_signal_keeps_finished_records_then_resume(folder, tmp_path, sig, code):
    out = tmp_path / "out"
    proc = subprocess.Popen(_batch(folder, out, "--batch", "2"), stderr=subprocess.PIPE, text=True)
    assert _wait_for(lambda: out.exists() and _records_on_disk(out) >= 2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    for part in out.glob("results*.jsonl"):
        for line in part.read_text().splitlines():
            json.loads(line)
    assert not list(out.glob(".*.tmp-*"))
    subprocess.run(_batch(folder, out), check=True, timeout=300)
    _check_complete(out)


def test_stale_temporary_files_of_dead_runs_are_removed(folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").write_text("")
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = out / f".results.jsonl.tmp-{dead.pid}-0badc0de"
    stale.write_text("half a merge")
    live = out / f".results.jsonl.tmp-{os.getpid()}-0badc0de"  # a writer still running
    live.write_text("someone else's merge in progress")
    subprocess.run(_batch(folder, out), check=True, timeout=300)
    assert not stale.exists() and live.exists()
    live.unlink()
    _check_complete(out)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_explain_signal_leaves_nothing(folder, tmp_path, sig, code):
    """explain's output folder appears complete or not at all, and no temporary sibling stays."""
    images = sorted(str(p) for p in folder.rglob("*.jpg"))
    out = tmp_path / "ex"
    proc = subprocess.Popen(ACTCAM + ["explain", *images, "--out", str(out), "--top-k", "3", "--quiet"],
                            stderr=subprocess.PIPE, text=True)
    assert _wait_for(lambda: any(len(list(p.glob("*.jpg"))) > 2 for p in tmp_path.glob(".ex.tmp-*")))
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == []
