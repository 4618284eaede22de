"""The shipped gpt2_tiny (1.1, 3.1) was trained on the shipped corpus and predicts held-out text well."""

import re
from pathlib import Path

import pytest

from utils.data import text
from utils.models import load_model, manifest

ENTRY = manifest()["gpt2_tiny"]


@pytest.fixture(scope="module")
def heldout():
    model = load_model("gpt2_tiny")
    train, test = text.corpus("train"), text.corpus("test")
    return {"model": text.model_loss(model, test, model.cfg.n_ctx),
            "unigram": text.unigram_loss(train, test), "bigram": text.bigram_loss(train, test)}


def test_trained_on_the_shipped_corpus():
    assert ENTRY["corpus_sha256"] == text.CORPUS_SHA256
    assert "train split" in ENTRY["data"]


def test_recorded_held_out_losses_are_what_the_shipped_weights_give(heldout):
    recorded = ENTRY["heldout_nats_per_char"]
    assert recorded.keys() == heldout.keys()
    for name, value in heldout.items():
        assert value == pytest.approx(recorded[name], abs=2e-4), name


def test_held_out_loss_is_well_below_both_baselines(heldout):
    assert heldout["model"] < 1.7
    assert heldout["model"] < heldout["bigram"] - 0.8 < heldout["unigram"] - 1.4


def test_held_out_loss_is_near_the_training_loss():
    """Held-out modules are harder than the training text, but not a different language."""
    assert 0 < ENTRY["heldout_nats_per_char"]["model"] - ENTRY["final_loss"] < 0.2


def test_readme_states_the_recorded_numbers():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `gpt2_tiny`"))
    recorded = ENTRY["heldout_nats_per_char"]
    assert re.search(rf"model scores {recorded['model']:.3f} nats per character, against {recorded['bigram']:.3f} "
                     rf"for a bigram and {recorded['unigram']:.3f} for a unigram", row), row
