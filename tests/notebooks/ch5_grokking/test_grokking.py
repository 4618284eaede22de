"""5.1 "Grokking and modular addition": the solved notebook runs and shows what its prose claims.

The notebook is executed once, its live training run included (lr 3e-3, fixed seed); each test
then checks one claim against the values the notebook computed.
"""

from __future__ import annotations

import pytest

from tests.models.test_grokking import assert_three_phases
from utils.notebooks import pipeline

pytestmark = pytest.mark.slow

PATH = pipeline.CHAPTERS / "ch5_grokking" / "grokking.ipynb"

READ = {
    "train_acc": "train_acc", "test_acc": "test_acc",
    "orthonormality_error": "orthonormality_error",
    "key_freqs": "key_freqs", "neuron_key_freqs": "neuron_key_freqs", "unembed_key_freqs": "unembed_key_freqs",
    "fraction_explained_neurons": "fraction_explained_neurons",
    "attn_top10": "attn_top10",
    "logit_r2": "logit_r2",
    "acc_key_ablated": "test_acc_key_ablated", "acc_others_ablated": "test_acc_others_ablated",
    "ckpt_steps": "ckpt_steps", "measures": "measures",
    "fast_sps": "fast_sps", "slow_sps": "slow_sps",
    "live_seconds": "live_seconds", "live_final_test_acc": "live_final_test_acc",
    "live_history": "{k: live_history[k] for k in ('step', 'train_acc', 'test_acc')}",
    "live_train_fit": "live_train_fit", "live_test_fit": "live_test_fit",
    "phases": "phases", "train_fit_step": "train_fit_step", "test_fit_step": "test_fit_step",
    "test_peak_step": "test_peak_step",
}


def test_shipped_model_has_grokked(values):
    assert values["train_acc"] >= 0.999 and values["test_acc"] >= 0.999


def test_the_fourier_basis_is_orthonormal(values):
    assert values["orthonormality_error"] < 1e-5


def test_a_handful_of_key_frequencies_shared_by_embedding_neurons_and_unembedding(values):
    keys = values["key_freqs"]
    assert 3 <= len(keys) <= 7, keys
    assert set(values["neuron_key_freqs"]) == set(keys), values["neuron_key_freqs"]
    assert set(values["unembed_key_freqs"]) == set(keys), values["unembed_key_freqs"]


def test_most_neurons_are_explained_by_one_frequency(values):
    assert values["fraction_explained_neurons"] > 0.6


def test_attention_is_a_few_fourier_terms(values):
    assert values["attn_top10"] > 0.9


def test_cos_a_plus_b_minus_c_explains_most_of_the_logits(values):
    assert values["logit_r2"] > 0.8


def test_ablations(values):
    assert values["acc_key_ablated"] < 0.05
    assert values["acc_others_ablated"] > 0.95


def test_checkpoint_series_shows_the_three_phases(values):
    assert_three_phases(values["ckpt_steps"], values["measures"])


def test_printed_phases_are_the_shared_rule(values):
    from utils.models import grokking

    expected = grokking.phases(values["ckpt_steps"], values["measures"])
    assert values["phases"] == {k: list(v) for k, v in expected.items()}


def test_prose_numbers(values):
    """Section 1: the test loss falls thousands of steps after the train loss, sooner than the
    paper's ~8,300 epochs."""
    assert values["test_fit_step"] - values["train_fit_step"] >= 2000
    assert values["test_fit_step"] < 8300
    assert 500 <= values["test_peak_step"] - values["train_fit_step"] <= 2000  # "about a thousand steps later"


def test_fast_loop_is_faster(values):
    assert values["fast_sps"] > 2 * values["slow_sps"], (values["fast_sps"], values["slow_sps"])


def test_live_run_groks(values):
    """Train accuracy near 100% early, test accuracy jumping much later."""
    early, late = values["live_train_fit"], values["live_test_fit"]
    assert early is not None and late is not None, (early, late)
    assert early < 500 and late > 3 * early, (early, late)
    h = values["live_history"]
    at_early = h["step"].index(early)
    assert h["test_acc"][at_early] < 0.2, "test accuracy should still be low when the training set is fitted"
    assert values["live_final_test_acc"] > 0.99
