"""3.1 "Sparse autoencoders": the solved notebook runs and shows what its prose claims.

The notebook is executed once (all its training included, with fixed seeds); each test then
checks one claim against the values the notebook computed.
"""

from __future__ import annotations

import pytest

from utils.notebooks import pipeline

pytestmark = pytest.mark.slow

PATH = pipeline.CHAPTERS / "ch3_sparse_autoencoders" / "sparse_autoencoders.ipynb"

READ = {
    "toy_l1": "TOY_L1.tolist()",
    "default": "DEFAULT",
    "toy_l0": "toy_l0.tolist()",
    "toy_ev": "toy_ev.tolist()",
    "toy_recovered": "toy_recovered.tolist()",
    "true_l0": "N_FEAT * P_FEAT",
    "toy_throughput": "toy_run['activations_per_second']",
    "runs": "runs",
    "toy_cmp": "toy_cmp",
    "held_out_units": "list(held_out_units())",
    "n_acts": "[len(train_acts), len(test_acts)]",
    "sae_windows_in": "[[tokenizer.decode(t) in corpus(split) for t in tokens] for tokens, split in "
                      "[(train_tokens[:64], 'train'), (test_tokens, 'test'), (test_tokens, 'train')]]",
    "lm_l0": "lm_l0",
    "lm_ev": "lm_ev",
    "ce": "[ce_clean.item(), ce_sae.item(), ce_zero.item()]",
    "lm_loss_recovered": "lm_loss_recovered",
    "pca_k": "PCA_K",
    "pca_ev": "pca_ev",
    "pca_recovered": "pca_recovered",
    "sae_recovered_vs_mean": "sae_recovered_vs_mean",
    "pca_recovered_vs_mean": "pca_recovered_vs_mean",
    "ce_mean": "ce_mean.item()",
    "ce_zero": "ce_zero.item()",
    "lm_throughput": "lm_throughput",
    "lm_topk": "[lm_topk_l0, lm_topk_mse, lm_l1_mse, lm_topk_ev]",
    "picker": "type(picker).__name__",
    "dashboard_html": "len(page)",
    "steer": "[share_plain, share_steered, logp_plain, logp_steer]",
    "ablate": "[ablate_on, ablate_off]",
}


# -- toy model -------------------------------------------------------------------------------------

def test_reference_toy_sae_recovers_at_least_90_percent_of_features(values):
    assert values["toy_l1"][values["default"]] == pytest.approx(0.3)
    assert values["toy_recovered"][values["default"]] >= 0.9, values["toy_recovered"]


def test_l1_coefficient_trades_sparsity_against_reconstruction(values):
    l0, ev = values["toy_l0"], values["toy_ev"]
    assert all(a > b for a, b in zip(l0, l0[1:])), l0          # more penalty, fewer latents firing
    assert all(a > b for a, b in zip(ev, ev[1:])), ev          # ... and worse reconstruction
    assert l0[0] > 2 * values["true_l0"] and l0[-1] < values["true_l0"]
    rec = values["toy_recovered"]
    assert rec[values["default"]] > rec[0] and rec[values["default"]] > rec[-1], rec


def test_resampling_reduces_dead_latents_and_improves_recovery(values):
    plain, resampled = values["runs"]["no resampling"], values["runs"]["resampling"]
    assert plain["dead_before"] >= 20 and resampled["dead_before"] >= 20
    assert resampled["dead_after"] < plain["dead_after"], values["runs"]
    assert resampled["recovered"] > plain["recovered"], values["runs"]


def test_toy_topk_at_matched_l0_reconstructs_at_least_as_well(values):
    l1, topk = values["toy_cmp"]["L1"], values["toy_cmp"]["TopK"]
    assert topk["l0"] <= l1["l0"] * 1.1 + 0.5
    assert topk["mse"] <= l1["mse"], values["toy_cmp"]


# -- language model -------------------------------------------------------------------------------

def test_the_sae_trains_on_the_models_training_text_and_is_measured_on_held_out_modules(values):
    in_train, heldout_in_test, heldout_in_train = values["sae_windows_in"]
    assert all(in_train) and all(heldout_in_test) and not any(heldout_in_train)
    assert {"json", "logging"} <= set(values["held_out_units"]), "the prose names them as held out"
    n_train, n_test = values["n_acts"]
    assert 10_000 <= n_train < 100_000 and n_test < n_train, "the prose says tens of thousands"


def test_lm_sae_explains_80_percent_of_variance_at_stated_l0(values):
    assert values["lm_ev"] >= 0.8
    assert 1 <= values["lm_l0"] <= 64, "the prose says a few dozen of 512 latents"


def test_lm_sae_recovers_most_of_the_loss_gap(values):
    clean, sae, zero = values["ce"]
    assert clean < sae < zero
    assert values["lm_loss_recovered"] > 0.8


def test_sae_beats_pca_with_as_many_components_as_its_l0(values):
    assert values["pca_k"] == round(values["lm_l0"])
    assert values["lm_ev"] > values["pca_ev"] + 0.05
    assert values["lm_loss_recovered"] > values["pca_recovered"]
    assert values["sae_recovered_vs_mean"] > values["pca_recovered_vs_mean"]


def test_mean_ablation_is_the_stricter_baseline_and_barely_differs_here(values):
    """The notebook: mean ablation costs less than zero ablation, but both are so far above the clean
    loss that the two loss-recovered columns differ by less than 0.05."""
    clean, sae, zero = values["ce"]
    assert clean + 1.0 < values["ce_mean"] < values["ce_zero"]
    assert values["ce_mean"] - clean > 10 * (sae - clean)
    assert values["sae_recovered_vs_mean"] < values["lm_loss_recovered"]
    assert values["lm_loss_recovered"] - values["sae_recovered_vs_mean"] < 0.05


def test_lm_topk_at_matched_l0_reconstructs_at_least_as_well_as_l1(values):
    topk_l0, topk_mse, l1_mse, _ = values["lm_topk"]
    assert topk_l0 <= round(values["lm_l0"]) + 1e-6
    assert topk_mse <= l1_mse


def test_throughput_is_reported(values):
    assert values["toy_throughput"] > 1000 and values["lm_throughput"] > 1000


# -- reading and using latents ---------------------------------------------------------------------

def test_dashboard_and_picker_build_headless(values):
    assert values["picker"] == "interactive"
    assert values["dashboard_html"] > 200


def test_steering_shifts_output_toward_the_latent(values):
    share_plain, share_steered, logp_plain, logp_steer = values["steer"]
    assert logp_steer > logp_plain
    assert share_steered >= share_plain


def test_ablation_hurts_where_the_latent_fires(values):
    on, off = values["ablate"]
    assert on > 0 and on > abs(off)
