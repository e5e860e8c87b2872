"""``actcam evaluate`` end to end: the synthetic benchmark's table and files, the photos, errors."""

import json

import pytest

from actcam_ext import cli


def test_evaluate_end_to_end(tiny_cache, tiny_config, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tiny_cache))
    out = tmp_path / "ev"
    rc = cli.main(["evaluate", "--dataset", "synthetic", "--n", "16", "--steps", "4", "--batch", "8",
                   "--train-images", str(tiny_config.n_train), "--train-epochs", str(tiny_config.epochs),
                   "--out", str(out), "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| CAM |" in printed and "| Grad-CAM |" in printed and "| Grad-CAM++ |" in printed
    assert (out / "evaluate.md").read_text() == printed
    result = json.loads((out / "evaluate.json").read_text())
    assert result["n"] == 16 and [r["method"] for r in result["rows"]] == ["CAM", "Grad-CAM", "Grad-CAM++"]
    for row in result["rows"]:
        for key in ("average_drop", "increase_in_confidence", "win_vs_gradcam", "pointing_game",
                    "localisation_accuracy"):
            assert 0.0 <= row[key] <= 100.0, key
        assert 0.0 <= row["deletion_auc"] <= 1.0 and 0.0 <= row["insertion_auc"] <= 1.0
        assert row["ms_per_image"] > 0
    gradcam = result["rows"][1]
    assert gradcam["win_vs_gradcam"] == 50.0
    assert len(result["per_image"]["gradcam++"]["drops"]) == 16
    # CAM and Grad-CAM make the same maps on this GAP+FC network: the same scores
    cam = result["rows"][0]
    for key in ("average_drop", "deletion_auc", "insertion_auc", "pointing_game", "localisation_accuracy"):
        assert cam[key] == pytest.approx(gradcam[key], abs=1e-3), key


def _code(argv):
    try:
        return cli.main(argv)
    except SystemExit as exc:  # argparse's usage errors
        return exc.code


def test_evaluate_user_errors(capsys):
    assert _code(["evaluate", "--methods", "lime"]) == 2
    assert "unknown method 'lime'" in capsys.readouterr().err
    assert _code(["evaluate", "--methods", "guided-gradcam"]) == 2
    assert "choose one of: cam, gradcam, gradcam++" in capsys.readouterr().err
    assert _code(["evaluate", "--dataset", "/nonexistent/folder"]) == 2
    assert "neither synthetic, photos nor a directory" in capsys.readouterr().err
    assert _code(["evaluate", "--n", "0"]) == 2
    assert "argument --n: must be a positive integer" in capsys.readouterr().err
    assert _code(["evaluate", "--dataset", "synthetic", "--model", "efficientnet-lite0"]) == 2
    assert "--model applies to --dataset photos" in capsys.readouterr().err


def test_evaluate_photos_honours_the_layer(tmp_path, capsys):
    """--layer applies to every method, CAM included (a layer CAM cannot weight is refused)."""
    out = tmp_path / "ev"
    assert _code(["evaluate", "--dataset", "photos", "--n", "2", "--steps", "2", "--methods", "cam,gradcam",
                  "--layer", "_head_act", "--out", str(out), "--quiet"]) == 0
    result = json.loads((out / "evaluate.json").read_text())
    cam, gradcam = result["rows"]
    assert cam["average_drop"] == pytest.approx(gradcam["average_drop"], abs=1e-3)
    capsys.readouterr()
    assert _code(["evaluate", "--dataset", "photos", "--n", "1", "--steps", "2", "--methods", "cam",
                  "--layer", "_blocks.10", "--out", str(out), "--quiet"]) == 2
    assert "CAM needs the final linear layer" in capsys.readouterr().err
