"""6.1 "Linear representations": the solved notebook runs and shows what its prose claims.

The notebook is executed once on the shipped `othello_4l` model; each test checks one claim
(the prose's numbers and its predict-then-run answers) against the values it computed.
"""

from __future__ import annotations

import pytest

from utils.notebooks import pipeline

pytestmark = pytest.mark.slow

PATH = pipeline.CHAPTERS / "ch6_linear_representations" / "linear_representations.ipynb"

READ = {
    "legal_rate": "legal_rate",
    "chance_rate": "chance_rate",
    "mean_legal": "mean_legal",
    "n_train": "train_resid.shape[1]",
    "n_test": "test_resid.shape[1]",
    "probe_acc": "probe_acc",
    "best": "BEST",
    "control_acc": "control_acc",
    "selectivity": "selectivity",
    "position_acc": "position_acc",
    "random_model_acc": "random_model_acc",
    "n_edits": "len(cases)",
    "edit_result": "edit_result",
    "random_result": "random_result",
    "bw_result": "bw_result",
    "lens_kl": "lens_kl",
    "lens_legal": "lens_legal",
    "curves": "{k: v.tolist() for k, v in curves.items()}",
    "scales": "SCALES",
    "n_steer": "len(steer_moves)",
}


def test_the_model_plays_legal_moves_on_held_out_games(values):
    """Section 1: over 95% (the issue's bar), against about one in five for a random empty square."""
    assert values["legal_rate"] >= 0.95
    assert values["chance_rate"] < 0.5
    assert 4 <= values["mean_legal"] <= 6.5  # "about five legal moves"


def test_probe_samples_match_the_prose(values):
    assert 11_000 <= values["n_train"] <= 13_000 and 5_500 <= values["n_test"] <= 6_500


def test_mine_theirs_probes_beat_black_white_at_every_block(values):
    """Section 2: mine/theirs at the best place at least 90%, clearly above black/white at every block."""
    mt, bw = values["probe_acc"]["mine/theirs"], values["probe_acc"]["black/white"]
    best = values["best"]
    assert mt[best] >= 0.9
    assert all(m - b >= 0.1 for m, b in zip(mt[1:], bw[1:])), (mt, bw)
    assert 1 <= best <= len(mt) - 1 and mt[best] - mt[0] > 0.15


def test_controls_and_baselines_fall_short_of_the_trained_model(values):
    """Section 3: the ladder position baseline < random model < trained model, and selectivity is large."""
    best = values["best"]
    trained = values["probe_acc"]["mine/theirs"][best]
    assert values["position_acc"] > 1 / 3
    assert values["position_acc"] < values["random_model_acc"] < trained - 0.1
    assert values["selectivity"] > 0.1
    assert values["control_acc"] < trained - 0.1


def test_edits_along_mine_theirs_directions_change_the_legal_moves(values):
    """Section 4: the edit moves the model towards the edited board in most cases, about twice as often
    as a random edit; the black/white direction does no better than the random one; by the strict
    top-N score the edit helps less, and the unedited model matches the true board about half the time."""
    assert values["n_edits"] >= 250
    towards = "moved towards the edited board"
    edit, random, bw = values["edit_result"], values["random_result"], values["bw_result"]
    assert edit[towards] >= 0.7, edit
    assert edit[towards] >= 1.7 * random[towards], (edit, random)
    assert bw[towards] < random[towards] + 0.1, (bw, random)
    assert edit["exact top-N, edited board"] > edit["exact top-N, unedited model"]
    assert edit["exact top-N, edited board"] - edit["exact top-N, unedited model"] < 0.2
    assert 0.4 <= edit["exact top-N, unedited model, true board"] <= 0.65


def test_tuned_lens_is_closer_than_the_logit_lens_before_the_last_place(values):
    """Section 5: tuned KL below logit-lens KL at every place but the last (both ~0 there); the tuned
    lens's top move is legal more often early on."""
    logit, tuned = values["lens_kl"]["logit lens"], values["lens_kl"]["tuned lens"]
    assert all(t < l for t, l in zip(tuned[:-1], logit[:-1])), (logit, tuned)
    assert logit[-1] < 1e-6 and tuned[-1] < 1e-6
    assert logit[0] > logit[-2]
    assert values["lens_legal"]["tuned lens"][0] > values["lens_legal"]["logit lens"][0] + 0.1


def test_steering_towards_empty_makes_the_model_play_an_occupied_square(values):
    """Section 6: the probe direction makes the model play the occupied square most of the time at 4x the
    mean difference's length, where the mean difference barely acts; neither does much at 1x."""
    mean_curve, probe_curve = values["curves"]["mean difference"], values["curves"]["probe direction"]
    scales = values["scales"]
    assert scales == [0.0, 1.0, 2.0, 4.0, 8.0]
    assert values["n_steer"] >= 100
    assert mean_curve[0] < 0.01 and probe_curve[0] < 0.01
    assert all(a <= b for a, b in zip(probe_curve, probe_curve[1:])), probe_curve
    assert mean_curve[1] < 0.1 and probe_curve[1] < 0.1
    assert probe_curve[3] > 0.5 and mean_curve[3] < 0.1
