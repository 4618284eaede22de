"""The shipped transcoders of Chapter 8 (per-layer and cross-layer on facts_4l, the comparison SAE, per-layer
on gpt2_tiny): hash-checked safetensors, the layouts utils.transcoders expects, and the metrics their
manifest entries record, recomputed on small samples."""

import json
import shutil

import pytest
import torch

import utils.models as models
from utils import transcoders as tc
from utils.data import facts
from utils.models import CHECKPOINTS, load_model, load_transcoders, manifest, transcoders_available
from utils.models.train import TRANSCODER_RECIPES, text_test_windows, transcoder_config

SHIPPED = sorted(TRANSCODER_RECIPES)
FACTS = [name for name in SHIPPED if TRANSCODER_RECIPES[name].model == "facts_4l"]


@pytest.fixture(scope="module")
def shipped():
    return {name: load_transcoders(name) for name in SHIPPED}


@pytest.fixture(scope="module")
def facts_model():
    return load_model("facts_4l")


def test_every_transcoder_recipe_has_a_shipped_file_and_vice_versa():
    assert transcoders_available() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_file_is_small_safetensors_with_the_recipes_shapes(shipped, name):
    params, info = shipped[name]
    recipe = TRANSCODER_RECIPES[name]
    assert (CHECKPOINTS / info["file"]).suffix == ".safetensors"
    assert (CHECKPOINTS / info["file"]).stat().st_size < 5_000_000
    assert info["config"] == transcoder_config(recipe), "the recipe changed since the file was trained: retrain it"
    n_layers, d_model = models.manifest()[recipe.model]["config"]["n_layers"], 128
    assert params["W_enc"].shape == (n_layers, d_model, recipe.d_latent)
    assert params["b_dec"].shape == (n_layers, d_model)
    expected = (n_layers, n_layers, d_model, recipe.d_latent) if recipe.architecture == "cross_layer" else \
        (n_layers, d_model, recipe.d_latent)
    assert params["W_dec"].shape == expected


def test_shipped_cross_layer_decoder_is_causal_with_unit_norm_latents(shipped):
    params, _ = shipped["facts_4l_clt"]
    assert (params["W_dec"][~tc.causal_mask(4)] == 0).all()
    norms = params["W_dec"].norm(dim=(1, 2))
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-4)


def _checkpoints_copy(tmp_path, monkeypatch, name, edit_manifest=lambda entries: None):
    """The manifest and one file in a scratch checkpoints folder, which utils.models then reads."""
    copy = tmp_path / "checkpoints"
    copy.mkdir()
    entries = manifest()
    shutil.copy(CHECKPOINTS / entries[name]["file"], copy)
    edit_manifest(entries)
    (copy / "manifest.json").write_text(json.dumps(entries))
    monkeypatch.setattr(models, "CHECKPOINTS", copy)
    monkeypatch.setattr(models, "MANIFEST", copy / "manifest.json")
    return copy / entries[name]["file"]


def test_a_corrupted_transcoder_file_is_refused(tmp_path, monkeypatch):
    path = _checkpoints_copy(tmp_path, monkeypatch, "facts_4l_transcoders")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        models.load_transcoders("facts_4l_transcoders")


def test_transcoders_of_a_retrained_model_are_refused(tmp_path, monkeypatch):
    _checkpoints_copy(tmp_path, monkeypatch, "facts_4l_transcoders",
                      lambda entries: entries["facts_4l"].update(sha256="0" * 64))
    with pytest.raises(ValueError, match="another facts_4l"):
        models.load_transcoders("facts_4l_transcoders")


def test_models_and_transcoders_each_need_their_own_loader():
    with pytest.raises(KeyError, match="load_transcoders"):
        load_model("facts_4l_transcoders")
    with pytest.raises(KeyError, match="load_model"):
        load_transcoders("facts_4l")


def test_the_sae_is_trained_like_the_transcoders_it_is_compared_with():
    sae, transcoders = TRANSCODER_RECIPES["facts_4l_sae"], TRANSCODER_RECIPES["facts_4l_transcoders"]
    assert (sae.k, sae.d_latent, sae.steps, sae.lr) == (transcoders.k, transcoders.d_latent, transcoders.steps,
                                                        transcoders.lr)
    assert sae.reads == "mlp_out" and transcoders.reads == "mlp_in"


def test_facts_transcoders_meet_the_chapters_targets():
    """Few active features per token (an attribution graph stays readable) and a replacement model that
    still composes most held-out two-hop facts (the original gets 94%)."""
    entry = manifest()["facts_4l_transcoders"]
    assert entry["config"]["k"] <= 16
    assert entry["replacement"]["heldout_two_hop"]["replacement_accuracy"] >= 0.85
    assert max(entry["per_layer"]["normalised_mse"]) < 0.1


@pytest.fixture(scope="module")
def facts_activations(facts_model):
    """MLP inputs and outputs at every position of 512 random prompts of the fact language."""
    every = facts.all_facts()
    sample = every[torch.randperm(len(every), generator=torch.Generator().manual_seed(0))[:512]]
    return tc.collect_mlp_activations(facts_model, sample.tokens, sample.tokens != 1, range(4))


@pytest.mark.parametrize("name", FACTS)
def test_recorded_facts_metrics_are_what_the_shipped_files_give(shipped, facts_model, facts_activations, name):
    """L0 and normalised MSE per layer on 512 random prompts; two-hop accuracy of the replacement model on
    256 held-out questions, within a few points of the numbers recorded on all of them."""
    params, info = shipped[name]
    k, reads = info["config"]["k"], info["config"]["reads"]
    x_in, x_out = facts_activations
    metrics = tc.evaluate(params, x_out if reads == "mlp_out" else x_in, x_out, k)
    recorded = info["per_layer"]
    assert torch.allclose(metrics["l0"], torch.tensor(recorded["l0"]), atol=0.3)
    assert torch.allclose(metrics["normalised_mse"], torch.tensor(recorded["normalised_mse"]), rtol=0.1, atol=0.002)
    heldout = facts.facts("person_country", "heldout")
    heldout = heldout[torch.randperm(len(heldout), generator=torch.Generator().manual_seed(0))[:256]]
    replaced = tc.facts_replacement_metrics(facts_model, heldout, params, k, reads=reads)
    recorded = info["replacement"]["heldout_two_hop"]
    assert abs(replaced["replacement_accuracy"] - recorded["replacement_accuracy"]) < 0.06, (replaced, recorded)
    assert abs(replaced["accuracy"] - recorded["accuracy"]) < 0.06


def test_recorded_gpt2_tiny_metrics_are_what_the_shipped_file_gives(shipped):
    """Per-layer metrics and the replacement's loss and KL on 32 of the 512 held-out windows."""
    params, info = shipped["gpt2_tiny_transcoders"]
    model, k = load_model("gpt2_tiny"), info["config"]["k"]
    tokens = text_test_windows()[::16]
    x_in, x_out = tc.collect_mlp_activations(model, tokens, torch.ones_like(tokens, dtype=torch.bool), range(2))
    metrics = tc.evaluate(params, x_in, x_out, k)
    recorded = info["per_layer"]
    assert torch.allclose(metrics["normalised_mse"], torch.tensor(recorded["normalised_mse"]), rtol=0.1)
    replaced = tc.replacement_metrics(model, tokens, *tc.next_token_targets(tokens), params, k)
    recorded = info["replacement"]["heldout_text"]
    assert abs(replaced["loss"] - recorded["loss"]) < 0.05
    assert abs(replaced["kl"] - recorded["kl"]) < 0.03
    assert replaced["replacement_loss"] > replaced["loss"]
