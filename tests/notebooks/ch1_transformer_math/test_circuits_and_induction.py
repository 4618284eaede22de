"""1.2 "Circuits and induction heads": the solved notebook runs and shows what its prose claims.

The notebook is executed once (its live-training cell included); each test then checks
one claim against the values the notebook computed. Thresholds are deliberately loose:
the checkpoint may be retrained, and the claims must hold for any model that really
contains the induction circuit, not for one set of numbers.
"""

from __future__ import annotations

import math

import pytest

from utils.notebooks import pipeline

pytestmark = pytest.mark.slow

PATH = pipeline.CHAPTERS / "ch1_transformer_math" / "circuits_and_induction.ipynb"

READ = {
    "d_vocab": "cfg.d_vocab",
    "n_heads": "cfg.n_heads",
    "first_copy_loss": "first_copy_loss",
    "second_copy_loss": "second_copy_loss",
    "uniform_loss": "uniform_loss",
    "scores": "{name: s.tolist() for name, s in head_scores.items()}",
    "prev_head": "PREV_HEAD",
    "induction_head": "INDUCTION_HEAD",
    "induction_heads": "INDUCTION_HEADS",
    "prev_token_score": "prev_token_score",
    "induction_score": "induction_score",
    "n_components": "len(component_labels)",
    "component_gap": "float((components.sum(0) - final_resid).abs().max())",
    # recomputed here, independently of the notebook's own check
    "dla_gap": "float((dla.sum(0) + model.b_U[tokens[:, 1:]]"
               " - logits[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]).abs().max())",
    "dla_second": "dla_second.tolist()",
    "lens_gap": "float((lens[-1] - correct_token_log_probs(logits, tokens)).abs().max())",
    "lens_second_copy": "lens_second_copy",
    "resid_labels": "resid_labels",
    "ablation_zero": "ablation_losses['zero'].tolist()",
    "ablation_mean": "ablation_losses['mean'].tolist()",
    "loss_without_induction": "loss_without_induction",
    "loss_without_prev": "loss_without_prev",
    "loss_without_other_layer0": "loss_without_other_layer0",
    "positional_prev_score": "positional_prev_score",
    "pos_rows_sum_to_one": "bool(torch.allclose(pos_pattern.sum(-1).cpu(), torch.ones(pos_pattern.shape[0])))",
    "top1_by_head": "top1_by_head",
    "top1_induction": "top1_induction",
    "top1_together": "top1_together",
    "top1_layer0": "top1_layer0",
    "eigen_by_head": "eigen_by_head",
    "eigen_induction": "eigen_induction",
    "k_comp": "k_comp.tolist()",
    "pair_score": "pair_score",
    "baseline_mean": "baseline_mean",
    "baseline_std": "baseline_std",
    "train_yourself": "TRAIN_YOURSELF",
    "train_losses": "train_losses",
    "plateau_loss": "plateau_loss",
    "final_loss": "final_loss",
    "phase_change_step": "phase_change_step",
    "fresh_prev_max": "fresh_prev_max",
    "fresh_induction_max": "fresh_induction_max",
    "fresh_losses": "[x.item() for x in fresh_losses]",
    "reach": "{f'{L},{P}': v for (L, P), v in reach.items()}",
    "repeat_lengths": "REPEAT_LENGTHS",
    "early_bos": "early_bos",
}


# -- section 1: the model copies in context ----------------------------------------------------

def test_first_copy_loss_is_the_uniform_guess_and_second_copy_far_below(values):
    assert values["uniform_loss"] == pytest.approx(math.log(values["d_vocab"] - 1), abs=1e-4)
    assert abs(values["first_copy_loss"] - values["uniform_loss"]) < 0.2
    assert values["second_copy_loss"] < 1.0
    assert values["first_copy_loss"] - values["second_copy_loss"] > 2.5


# -- section 2: attention patterns and head scores -----------------------------------------------

def test_circuitsvis_renders_attention_patterns_as_offline_html(executed):
    nb = executed.nb
    html = [o["data"]["text/html"] for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if "text/html" in o.get("data", {})]
    renders = [h for h in html if "AttentionPatterns" in h]
    assert len(renders) == 2, "one attention-pattern render per layer"
    # offline: no CDN; the bundle is loaded once per page from JupyterLab (utils.vis), not saved in each output
    assert all("<script" in h and "unpkg.com" not in h for h in renders)
    assert all(len(h) < 50_000 and "mechinterp-course-static" in h for h in renders)


def test_layer0_has_a_previous_token_head(values):
    prev = values["scores"]["previous token"]
    assert values["prev_head"] == max(range(values["n_heads"]), key=lambda h: prev[0][h])
    assert values["prev_token_score"] >= 0.8
    assert max(prev[1]) < 0.2, "no layer-1 head attends to the previous token"


def test_layer1_has_an_induction_head(values):
    induction = values["scores"]["induction"]
    assert values["induction_head"] == max(range(values["n_heads"]), key=lambda h: induction[1][h])
    assert values["induction_score"] >= 0.7
    assert values["induction_head"] in values["induction_heads"]
    assert max(induction[0]) < 0.1, "layer 0 cannot do induction on its own"


def test_no_head_is_a_duplicate_token_head(values):
    assert max(max(row) for row in values["scores"]["duplicate token"]) < 0.1


# -- section 3: direct logit attribution and the logit lens -----------------------------------

def test_components_sum_to_the_residual_stream(values):
    assert values["n_components"] == 2 + 2 * values["n_heads"] + 1
    assert values["component_gap"] < 1e-4


def test_dla_components_plus_b_U_equal_the_correct_token_logit(values):
    assert values["dla_gap"] < 1e-4


def test_induction_heads_dominate_the_direct_attribution_on_the_second_copy(values):
    dla = values["dla_second"]
    n = values["n_heads"]
    induction_total = sum(dla[2 + n + h] for h in values["induction_heads"])
    assert dla.index(max(dla)) - 2 - n in values["induction_heads"]
    assert induction_total > 2.0
    assert abs(dla[2 + values["prev_head"]]) < 0.5, "the previous-token head acts through layer 1, not directly"


def test_logit_lens_last_layer_matches_the_model_and_only_layer1_predicts(values):
    assert values["resid_labels"] == ["0_pre", "1_pre", "final_post"]
    assert values["lens_gap"] < 1e-4
    embeddings, after_layer0, final = values["lens_second_copy"]
    assert final == pytest.approx(values["second_copy_loss"], abs=1e-4)
    assert after_layer0 > values["uniform_loss"] - 0.3 and embeddings > values["uniform_loss"] - 0.3
    assert after_layer0 - final > 2.5


# -- section 4: ablations ------------------------------------------------------------------------

def test_ablating_the_induction_heads_together_destroys_copying(values):
    assert values["loss_without_induction"] > values["second_copy_loss"] + 2.5
    assert values["loss_without_induction"] > 0.8 * values["first_copy_loss"]


def test_ablating_the_previous_token_head_destroys_copying(values):
    assert values["loss_without_prev"] > values["second_copy_loss"] + 2.5
    assert values["ablation_zero"][0][values["prev_head"]] == pytest.approx(values["loss_without_prev"])


def test_other_layer0_heads_barely_matter(values):
    assert len(values["loss_without_other_layer0"]) == values["n_heads"] - 1
    for loss in values["loss_without_other_layer0"]:
        assert loss < values["second_copy_loss"] + 0.3


def test_zero_and_mean_ablation_give_the_same_picture(values):
    zero = [x for row in values["ablation_zero"] for x in row]
    mean = [x for row in values["ablation_mean"] for x in row]
    assert zero.index(max(zero)) == mean.index(max(mean))
    assert values["ablation_mean"][0][values["prev_head"]] > values["second_copy_loss"] + 2.5


# -- section 5: QK and OV circuits ---------------------------------------------------------------

def test_previous_token_head_is_positional(values):
    assert values["pos_rows_sum_to_one"]
    assert values["positional_prev_score"] >= 0.6


def test_induction_heads_ov_circuits_copy(values):
    chance = 1 / values["d_vocab"]
    assert values["top1_induction"] >= 0.2 > 10 * chance
    assert values["top1_together"] >= 0.5
    assert values["eigen_induction"] > 0.5
    for h in values["induction_heads"]:
        assert values["eigen_by_head"][h] > 0.5


def test_layer0_direct_paths_do_not_copy(values):
    assert max(values["top1_layer0"]) < 0.15


# -- section 6: composition ------------------------------------------------------------------------

def test_k_composition_of_prev_token_and_induction_head_stands_far_above_random(values):
    assert values["pair_score"] == pytest.approx(values["k_comp"][values["prev_head"]][values["induction_head"]])
    assert values["pair_score"] > values["baseline_mean"] + 5 * values["baseline_std"]
    prev_row = values["k_comp"][values["prev_head"]]
    others = [row for h, row in enumerate(values["k_comp"]) if h != values["prev_head"]]
    assert sum(prev_row) > max(sum(row) for row in others), "the previous-token head's row stands out"


# -- section 7: live training ------------------------------------------------------------------------

def test_training_cell_ran_the_full_recipe(values):
    from utils.models.train import RECIPES
    assert values["train_yourself"] is True
    assert len(values["train_losses"]) == RECIPES["attn_only_2l"].steps


def test_loss_curve_has_a_plateau_then_a_sudden_drop(values):
    losses = values["train_losses"]
    window = 50
    smoothed = [sum(losses[i:i + window]) / window for i in range(len(losses) - window + 1)]
    total_drop = smoothed[0] - smoothed[-1]
    assert total_drop > 0.4
    # plateau: the first quarter of training removes little of the total drop
    assert smoothed[0] - smoothed[len(smoothed) // 4] < 0.25 * total_drop
    # sudden: some 300-step stretch accounts for most of it
    steepest = max(smoothed[i] - smoothed[i + 300] for i in range(len(smoothed) - 300))
    assert steepest > 0.5 * total_drop
    assert values["plateau_loss"] - values["final_loss"] > 0.4
    assert values["phase_change_step"] is not None
    assert 0.1 * len(losses) < values["phase_change_step"] < 0.9 * len(losses)


def test_freshly_trained_model_has_the_induction_circuit(values):
    assert values["fresh_prev_max"] >= 0.8
    assert values["fresh_induction_max"] >= 0.5
    first, second = values["fresh_losses"]
    assert first - second > 2.5


# -- section 8: the reach of induction ------------------------------------------------------------


def test_short_repeats_are_copied_only_some_way_into_the_context(values):
    reach = {tuple(map(int, key.split(","))): v for key, v in values["reach"].items()}
    at_start = [reach[(L, 0)] for L in values["repeat_lengths"]]
    assert at_start == sorted(at_start), "right after BOS, longer repeats score higher"
    assert reach[(5, 0)] < 0.3 and reach[(5, 30)] > 0.6, "a short repeat: poor at the start, good further in"
    assert reach[(20, 0)] > 0.9, "a long repeat is copied even from the start"
    for L in values["repeat_lengths"]:
        later = [v for (length, P), v in reach.items() if length == L and P > 0]
        assert all(v > reach[(L, 0)] for v in later), f"L = {L}: later in the context beats right after BOS"


def test_early_second_copies_attend_to_bos(values):
    assert values["early_bos"] > 0.7
