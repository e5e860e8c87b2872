"""The ``actcam`` command line end to end on the real model and photos.

The console script runs as a real subprocess where the process matters (exit codes, closed
pipes, ``python -m actcam_ext``); other scenarios call ``actcam_ext.cli.main`` in-process, which
is the console script's entry point, to save a torch import per scenario.
"""

import json
import os
import subprocess
import sys
import warnings

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

import actcam_ext as ac
from actcam_ext import cli
from cli_helpers import run_cli

CAT_IDS = range(281, 286)          # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_IDS = {967, 968}            # espresso, cup
SCHEMA_IMAGE = {"path", "width", "height", "predictions"}
SCHEMA_PRED = {"class_id", "label", "score", "box", "heatmap", "overlay"}


# --------------------------------------------------------------------------------------------
# Helpers and bad files (the photos as files: tests/cli/conftest.py)
# --------------------------------------------------------------------------------------------

def _check_results(result, out_dir, n_preds):
    assert set(result) >= {"model", "method", "layer", "images"}
    for img in result["images"]:
        assert SCHEMA_IMAGE <= set(img)
        w, h = img["width"], img["height"]
        assert len(img["predictions"]) == n_preds
        scores = [p["score"] for p in img["predictions"]]
        assert scores == sorted(scores, reverse=True)
        for p in img["predictions"]:
            assert set(p) == SCHEMA_PRED
            assert isinstance(p["class_id"], int) and isinstance(p["label"], str) and 0 <= p["score"] <= 1
            x0, y0, x1, y1 = p["box"]
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, p["box"]
            for key in ("heatmap", "overlay"):
                assert not os.path.isabs(p[key])
                pic = cv2.imread(os.path.join(out_dir, p[key]), cv2.IMREAD_UNCHANGED)
                assert pic is not None and pic.shape[:2] == (h, w), (p[key], pic.shape)
        assert cv2.imread(os.path.join(out_dir, img["sheet"])) is not None


def _no_leftovers(parent, name):
    # Nothing half-written: neither the output directory nor a temporary sibling remains.
    return not any(e == name or e.startswith(f".{name}.") for e in os.listdir(parent))


# --------------------------------------------------------------------------------------------
# CLI end to end
# --------------------------------------------------------------------------------------------

def test_demo_console_script(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "results.json").write_text("{}")  # an earlier actcam output: replaced as a whole
    (out / "stale.txt").write_text("old")
    exe = [sys.executable, "-m", "actcam_ext"]
    proc = subprocess.run(exe + ["demo", "--out", str(out), "--top-k", "2"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr
    assert "chelsea" in proc.stdout and "Egyptian cat" in proc.stdout and "espresso" in proc.stdout
    assert not (out / "stale.txt").exists()
    assert sorted(os.listdir(tmp_path)) == ["demo"]  # no temporary sibling left
    result = json.loads((out / "results.json").read_text())
    assert result["model"] == "efficientnet-lite0"
    assert [r["method"] for r in result["runs"]] == ["cam", "gradcam", "gradcam++"]
    for run in result["runs"]:
        _check_results(run, out, n_preds=2)
        by_name = {img["path"]: img for img in run["images"]}
        assert set(by_name) == {f"skimage.data.{n}" for n in ("chelsea", "coffee", "astronaut", "rocket")}
        assert by_name["skimage.data.chelsea"]["predictions"][0]["class_id"] in CAT_IDS
        assert by_name["skimage.data.coffee"]["predictions"][0]["class_id"] in COFFEE_IDS
        cat = by_name["skimage.data.chelsea"]
        assert (cat["width"], cat["height"]) == (451, 300)
    # CAM and Grad-CAM coincide on a GAP + linear head (same feature map, weights = FC row / hw).
    cam, gradcam = result["runs"][0], result["runs"][1]
    for a, b in zip(cam["images"], gradcam["images"]):
        for pa, pb in zip(a["predictions"], b["predictions"]):
            assert pa["class_id"] == pb["class_id"]
            assert np.abs(np.array(pa["box"]) - np.array(pb["box"])).max() <= 2


def test_closed_stdout_pipe_exits_quietly(photos, tmp_path):
    """`actcam explain ... | head`: the reader is gone before anything is printed; the command
    still writes its files and exits like a tool killed by SIGPIPE, with no traceback."""
    r, w = os.pipe()
    os.close(r)  # closed before the child (seconds of imports) writes a byte
    out = tmp_path / "o"
    with os.fdopen(w, "wb") as wf:
        proc = subprocess.run([sys.executable, "-m", "actcam_ext.cli", "explain", photos["coffee"], "--out",
                               str(out), "--top-k", "1"], stdout=wf, stderr=subprocess.PIPE,
                              text=True, timeout=300)
    assert proc.returncode == 141 and "Traceback" not in proc.stderr and "Exception" not in proc.stderr, proc.stderr
    assert (out / "results.json").is_file()


def test_explain_cli_topk_gradcampp(photos, tmp_path, capsys):
    out = tmp_path / "ex"
    rc, stdout, err = run_cli(["explain", photos["chelsea"], photos["coffee"], "--method", "gradcam++",
                               "--top-k", "2", "--out", str(out), "--json"], capsys)
    assert rc == 0, err
    result = json.loads(stdout)
    assert result == json.loads((out / "results.json").read_text())
    assert result["model"] == "efficientnet-lite0" and result["method"] == "gradcam++"
    assert result["layer"] == "_avg_pooling:input"
    _check_results(result, out, n_preds=2)
    chelsea, coffee = result["images"]
    assert chelsea["path"] == photos["chelsea"] and (chelsea["width"], chelsea["height"]) == (451, 300)
    assert chelsea["predictions"][0]["class_id"] in CAT_IDS
    assert coffee["predictions"][0]["class_id"] in COFFEE_IDS
    assert coffee["predictions"][0]["label"] in ("espresso", "cup")


def test_explain_cli_targets_cam_and_guided(photos, tmp_path, capsys):
    out = tmp_path / "ex"
    rc, _, err = run_cli(["explain", photos["chelsea"], "--method", "cam", "--targets", "967,281",
                          "--out", str(out), "--quiet"], capsys)
    assert rc == 0, err
    result = json.loads((out / "results.json").read_text())
    _check_results(result, out, n_preds=2)
    preds = result["images"][0]["predictions"]
    assert [p["class_id"] for p in preds] == [281, 967]  # sorted by score: the cat class first
    out2 = tmp_path / "guided"
    rc, _, err = run_cli(["explain", photos["coffee"], "--method", "guided-gradcam", "--out", str(out2),
                          "--quiet"], capsys)
    assert rc == 0, err
    result = json.loads((out2 / "results.json").read_text())
    _check_results(result, out2, n_preds=1)
    heat = cv2.imread(str(out2 / result["images"][0]["predictions"][0]["heatmap"]), cv2.IMREAD_UNCHANGED)
    assert heat.ndim == 3  # the guided picture is colour, the plain maps are grey


# --------------------------------------------------------------------------------------------
# Bad input: one line on stderr, exit 2, nothing written
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    import skimage.data
    d = tmp_path_factory.mktemp("bad")
    rgb = skimage.data.chelsea()[:64, :64]
    cv2.imwrite(str(d / "grey.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    cv2.imwrite(str(d / "rgba.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA))
    cv2.imwrite(str(d / "deep.png"), rgb.astype(np.uint16) * 257)
    (d / "text.png").write_text("not an image")
    (d / "folder.jpg").mkdir()
    # A model whose logits are NaN: one line, and no results.json holding NaN (not JSON).
    torch.save(nn.Sequential(nn.Conv2d(3, 4, 8, stride=8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(4, 10), _NaN()).eval(), d / "nan.pt")
    # A whole pickled model without global pooling: CAM cannot apply (Grad-CAM could).
    torch.save(nn.Sequential(nn.Conv2d(3, 4, 8, stride=8), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 28 * 28, 10)),
               d / "nogap.pt")
    torch.save(nn.Linear(2, 2).state_dict(), d / "weights_only.pt")
    gap = nn.Sequential(nn.Conv2d(3, 4, 8, stride=8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 10)).eval()
    with warnings.catch_warnings():  # torch.jit's deprecation notice
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.trace(gap, torch.zeros(1, 3, 224, 224)).save(str(d / "scripted.pt"))
    return d


class _NaN(nn.Module):
    def forward(self, x):
        return x * float("nan")


BAD = [
    # (argv after "explain IMAGE" or a full replacement, substring of the message)
    ("missing", ["{d}/nope.png"], "does not exist"),
    ("directory", ["{d}/folder.jpg"], "is a directory"),
    ("undecodable", ["{d}/text.png"], "cannot decode"),
    ("grey", ["{d}/grey.png"], "greyscale"),
    ("rgba", ["{d}/rgba.png"], "alpha"),
    ("16-bit", ["{d}/deep.png"], "16-bit"),
    ("method", ["{cat}", "--method", "lime"], "unknown method 'lime'"),
    ("model", ["{cat}", "--model", "resnet-9000"], "unknown model 'resnet-9000'"),
    ("torchvision name", ["{cat}", "--model", "torchvision:resnet9000"], "unknown torchvision"),
    ("torchvision uncached", ["{cat}", "--model", "torchvision:resnet18"], "not in the local cache"),
    ("state_dict", ["{cat}", "--model", "{d}/weights_only.pt"], "not a whole nn.Module"),
    ("layer", ["{cat}", "--layer", "_conv_haed"], "no target_layer named '_conv_haed'"),
    ("class id", ["{cat}", "--targets", "5,1000"], "class id 1000 is out of range"),
    ("negative class id", ["{cat}", "--targets", "-1"], "argument --targets: must be class ids >= 0"),
    ("top-k", ["{cat}", "--top-k", "two"], "argument --top-k: must be an integer, got 'two'"),
    ("top-k zero", ["{cat}", "--top-k", "0"], "argument --top-k: must be a positive integer"),
    ("threshold", ["{cat}", "--threshold", "1.5"], "argument --threshold: must be a number in [0, 1]"),
    ("mean nan", ["{cat}", "--mean", "nan,0,0"], "argument --mean: must be 3 finite numbers"),
    ("std zero", ["{cat}", "--std", "1,0,1"], "argument --std: must be 3 finite numbers > 0"),
    ("input size", ["{cat}", "--input-size", "100000"], "argument --input-size: must be at most 4096"),
    ("unknown option", ["{cat}", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    ("torchscript", ["{cat}", "--model", "{d}/scripted.pt"], "TorchScript does not support"),
    ("cam without gap", ["{cat}", "--method", "cam", "--model", "{d}/nogap.pt", "--allow-pickle"], "use GradCAM"),
    ("pickle refused", ["{cat}", "--model", "{d}/nogap.pt"], "is a pickled nn.Module, and unpickling it runs code"),
    ("nan logits", ["{cat}", "--model", "{d}/nan.pt", "--allow-pickle"], "NaN or infinite logits (image 0"),
    ("too many pixels", ["{cat}", "--max-pixels", "1000"], "451x300 = 0.1 megapixels, above the limit"),
    ("compile guided", ["{cat}", "--method", "guided-gradcam", "--compile"], "Guided Grad-CAM has no compiled"),
]


@pytest.mark.parametrize("argv,message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input(argv, message, bad_files, photos, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # an empty weights cache
    argv = [a.format(d=bad_files, cat=photos["chelsea"]) for a in argv]
    out = tmp_path / "out"
    rc, stdout, err = run_cli(["explain", *argv, "--out", str(out)], capsys)
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("actcam explain: error: "), err
    assert message in err and "Traceback" not in err
    assert _no_leftovers(tmp_path, "out")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_cuda_without_gpu(photos, tmp_path, capsys):
    rc, _, err = run_cli(["explain", photos["chelsea"], "--device", "cuda", "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "no CUDA GPU" in err
    assert _no_leftovers(tmp_path, "o")


def test_foreign_output_directory_is_not_overwritten(photos, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    rc, _, err = run_cli(["explain", photos["chelsea"], "--out", str(mine)], capsys)
    assert rc == 2 and "not empty" in err and err.count("\n") == 1
    assert (mine / "thesis.tex").read_text() == "precious" and os.listdir(mine) == ["thesis.tex"]
    assert sorted(os.listdir(tmp_path)) == ["mine"]


def test_torchvision_model_on_the_command_line(photos, tmp_path, capsys, monkeypatch):
    import torchvision
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    url = torchvision.models.get_model_weights("resnet18").DEFAULT.url
    cache = tmp_path / "th" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), cache / os.path.basename(url))
    rc, stdout, err = run_cli(["explain", photos["coffee"], "--model", "torchvision:resnet18", "--layer", "layer4",
                               "--out", str(tmp_path / "o"), "--json", "--quiet"], capsys)
    assert rc == 0, err
    result = json.loads(stdout)
    assert result["model"] == "torchvision:resnet18" and result["layer"] == "layer4"
    _check_results(result, tmp_path / "o", n_preds=1)


def test_compile_on_the_command_line(photos, tmp_path, capsys):
    """--compile: the same predictions and the same maps (within float rounding) as the eager run,
    and the results say the model was compiled."""
    gap = nn.Sequential(nn.Conv2d(3, 4, 8, stride=8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 10)).eval()
    torch.save(gap, tmp_path / "gap.pt")
    results = {}
    for flag in ([], ["--compile"]):
        out = tmp_path / ("compiled" if flag else "eager")
        rc, stdout, err = run_cli(["explain", photos["coffee"], photos["chelsea"], "--model", str(tmp_path / "gap.pt"),
                                   "--allow-pickle", "--top-k", "2", "--out", str(out), "--json", "--quiet", *flag],
                                  capsys)
        assert rc == 0, err
        results[bool(flag)] = json.loads(stdout)
    assert results[True].get("compiled") is True and "compiled" not in results[False]
    for a, b in zip(results[False]["images"], results[True]["images"]):
        assert [p["class_id"] for p in a["predictions"]] == [p["class_id"] for p in b["predictions"]]
        for pa, pb in zip(a["predictions"], b["predictions"]):
            assert abs(pa["score"] - pb["score"]) < 1e-5
            ha = cv2.imread(str(tmp_path / "eager" / pa["heatmap"]), cv2.IMREAD_UNCHANGED).astype(int)
            hb = cv2.imread(str(tmp_path / "compiled" / pb["heatmap"]), cv2.IMREAD_UNCHANGED).astype(int)
            assert np.abs(ha - hb).max() <= 1  # one step of an 8-bit map


def test_info_and_version(capsys):
    rc, out, _ = run_cli(["info"], capsys)
    assert rc == 0 and out.startswith(f"actcam_ext {ac.__version__} (torch {torch.__version__})")
    assert "cpu: native fused kernels for cam, gradcampp_weights, overlay" in out
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"actcam_ext {ac.__version__}"
    proc = subprocess.run([sys.executable, "-m", "actcam_ext", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == f"actcam_ext {ac.__version__}"


def _thp_offered() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[never]" not in f.read()
    except OSError:
        return False


@pytest.mark.skipif(not _thp_offered(), reason="the kernel offers no transparent huge pages")
def test_the_command_allocates_big_tensors_in_huge_pages():
    """The command's own process turns on torch's huge-page allocation before its first tensor
    (the console script and python -m alike), unless the user set the variable."""
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    script = os.path.join(os.path.dirname(sys.executable), "actcam")
    commands = [[sys.executable, "-m", "actcam_ext"], [sys.executable, "-m", "actcam_ext.cli"]]
    if os.path.exists(script):
        commands.append([script])
    for exe in commands:
        for setting, want in ((None, "on"), ("0", "off"), ("1", "on")):
            run_env = env if setting is None else {**env, "THP_MEM_ALLOC_ENABLE": setting}
            proc = subprocess.run(exe + ["info"], capture_output=True, text=True, timeout=120, env=run_env)
            assert proc.returncode == 0, proc.stderr
            assert f"huge pages for tensors of 2 MiB or more: {want}" in proc.stdout, (exe, setting, proc.stdout)
    # in a host process (the library, or main() called in it) nothing is changed
    rc_env = dict(os.environ)
    cli.main(["info"])
    assert dict(os.environ) == rc_env


def test_usage_errors_are_one_line(capsys):
    for argv in (["explain"], ["frobnicate"], ["video", "in.mp4"], ["batch", "dir"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1 and ": error: " in err, (argv, err)


def test_many_classes_lay_the_sheet_out_in_rows(tmp_path, capsys):
    """--top-k 200: a one-row sheet would pass JPEG's 65,500-pixel limit; the sheet wraps."""
    img = tmp_path / "small.png"
    import skimage.data
    cv2.imwrite(str(img), cv2.resize(skimage.data.coffee(), (48, 32))[:, :, ::-1])
    rc, _, err = run_cli(["explain", str(img), "--top-k", "200", "--out", str(tmp_path / "o"), "--quiet"], capsys)
    assert rc == 0, err
    result = json.loads((tmp_path / "o" / "results.json").read_text())
    assert len(result["images"][0]["predictions"]) == 200
    sheet = cv2.imread(str(tmp_path / "o" / result["images"][0]["sheet"]))
    assert sheet is not None and max(sheet.shape[:2]) <= 65500 and sheet.shape[1] <= ac.render.MAX_SHEET_WIDTH
