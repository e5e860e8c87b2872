"""The training example: a CAM penalty, through maps made differentiable with create_graph=True,
moves a small CNN off a spurious corner cue and onto the objects (docs/training.md has the
three-seed figures; this is one small seeded run)."""

import torch

from actcam_ext.evaluation import right_reasons as rr
from actcam_ext.evaluation.synthetic import generate


def test_the_cue_is_painted_and_flipped():
    data = generate(6, seed=3)
    aligned = rr.add_cue(data["images"], data["labels"])
    flipped = rr.add_cue(data["images"], data["labels"], flipped=True)
    corner = (slice(None), slice(None), slice(0, rr.CUE_SIZE), slice(0, rr.CUE_SIZE))
    assert torch.equal(aligned[corner][:, :, 0, 0], rr.CUE_COLOURS[data["labels"]])
    assert torch.equal(flipped[corner][:, :, 0, 0], rr.CUE_COLOURS[(data["labels"] + 1) % 5])
    assert torch.equal(aligned[:, :, rr.CUE_SIZE:], data["images"][:, :, rr.CUE_SIZE:])  # nothing else changes


def test_the_penalty_makes_the_model_right_for_the_right_reasons():
    config = rr.RightReasonsConfig(n_train=600, n_test=200, epochs=4, width=16)
    plain = rr.evaluate(rr.train(config, 0.0, seed=0), config)
    penalised = rr.evaluate(rr.train(config, config.penalty, seed=0), config)
    assert plain["accuracy_cue_flipped"] < 20  # the cue decides: a flipped cue, a wrong answer
    assert penalised["accuracy_cue_flipped"] > plain["accuracy_cue_flipped"] + 10
    assert penalised["pointing_game"] > plain["pointing_game"] + 20
    assert penalised["outside_share"] < plain["outside_share"]
