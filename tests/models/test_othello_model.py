"""The shipped Othello model (Chapter 6) plays legal moves on games it never saw, and holds the board
linearly in the mine/theirs frame, not in the black/white frame.

The probes here are the chapter's reference solutions, trained on fewer samples than the notebook's
(tests/notebooks/ch6_linear_representations checks the notebook's own numbers)."""

import pytest
import torch

from solutions.ch6_linear_representations import linear_representations as sol
from utils.data import othello
from utils.models import load_model, manifest


@pytest.fixture(scope="module")
def model():
    return load_model("othello_4l")


@pytest.fixture(scope="module")
def heldout(model):
    games = othello.random_games(500, generator=torch.Generator().manual_seed(othello.HELDOUT_SEED))
    with torch.no_grad():
        return games, model(games.moves)


def test_top_move_is_legal_on_held_out_games(heldout):
    games, logits = heldout
    assert sol.top1_legal_rate(logits, games.legal) >= 0.95


def test_manifest_records_the_held_out_legal_rate():
    assert manifest()["othello_4l"]["heldout_top1_legal"] >= 0.95


def test_most_probability_goes_to_legal_moves(heldout):
    """The model's probability on legal moves, against the share of empty squares that are legal."""
    games, logits = heldout
    keep = games.predictable
    on_legal = (logits.softmax(-1) * games.legal).sum(-1)[keep].mean()
    by_chance = (games.legal.sum(-1) / (games.boards == othello.EMPTY).sum(-1).clamp(min=1))[keep].float().mean()
    assert on_legal > 0.8 and by_chance < 0.5, (on_legal, by_chance)


def test_middle_layer_probes_read_mine_theirs_much_better_than_black_white(model):
    train = othello.random_games(200, generator=torch.Generator().manual_seed(1))
    test = othello.random_games(100, generator=torch.Generator().manual_seed(2))
    name = "blocks.1.hook_resid_post"
    with torch.no_grad():
        resid = [model.run_with_cache(g.moves, names_filter=name)[1][name][g.valid] for g in (train, test)]
    accuracy = {}
    for frame, convert in (("black/white", lambda b: b), ("mine/theirs", sol.to_mine_theirs)):
        labels = [sol.state_classes(convert(g.boards)[g.valid]) for g in (train, test)]
        W, b = sol.train_probe(resid[0], labels[0], steps=150, lr=0.05)
        accuracy[frame] = sol.probe_accuracy(sol.probe_logits(resid[1], W, b), labels[1]).mean().item()
    assert accuracy["mine/theirs"] >= 0.85, accuracy
    assert accuracy["mine/theirs"] - accuracy["black/white"] >= 0.1, accuracy
