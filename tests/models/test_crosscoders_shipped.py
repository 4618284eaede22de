"""The shipped crosscoders of Chapter 9 (gpt2_tiny against each organism): hash-checked safetensors with
the recipe's shapes, the held-out metrics their manifest entries record, and the planted latents that
9.1 finds, recomputed on a sample."""

import json
import shutil

import pytest
import torch

import utils.models as models
from utils import crosscoders as cc
from utils import diffing
from utils.data import organisms
from utils.models import CHECKPOINTS, crosscoders_available, load_crosscoder, load_model, manifest
from utils.models.train import CROSSCODER_HELDOUT, CROSSCODER_RECIPES
from dataclasses import asdict

SHIPPED = sorted(CROSSCODER_RECIPES)


@pytest.fixture(scope="module")
def shipped():
    return {name: load_crosscoder(name) for name in SHIPPED}


def test_every_crosscoder_recipe_has_a_shipped_file_and_vice_versa():
    assert crosscoders_available() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_crosscoder_has_the_recipes_shapes_and_a_threshold(shipped, name):
    params, info = shipped[name]
    recipe = CROSSCODER_RECIPES[name]
    assert (CHECKPOINTS / info["file"]).stat().st_size < 5_000_000
    assert info["config"] == asdict(recipe), "the recipe changed since the file was trained: retrain it"
    assert params["W_enc"].shape == params["W_dec"].shape == (2, 128, recipe.d_latent)
    assert params["b_enc"].shape == (recipe.d_latent,) and params["b_dec"].shape == (2, 128)
    assert params["scale"].shape == (2,) and (params["scale"] > 0).all()
    assert torch.isfinite(params["threshold"]) and params["threshold"] > 0
    assert info["hook"] == diffing.HOOK


def test_crosscoders_need_their_own_loader_and_refuse_a_retrained_model(tmp_path, monkeypatch):
    with pytest.raises(KeyError, match="load_crosscoder"):
        load_model("gpt2_tiny_trigger_crosscoder")
    copy = tmp_path / "checkpoints"
    copy.mkdir()
    entries = manifest()
    shutil.copy(CHECKPOINTS / entries["gpt2_tiny_trigger_crosscoder"]["file"], copy)
    entries["gpt2_tiny_trigger"]["sha256"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(entries))
    monkeypatch.setattr(models, "CHECKPOINTS", copy)
    monkeypatch.setattr(models, "MANIFEST", copy / "manifest.json")
    with pytest.raises(ValueError, match="another gpt2_tiny_trigger"):
        models.load_crosscoder("gpt2_tiny_trigger_crosscoder")


def test_recorded_heldout_metrics_are_what_the_trigger_crosscoder_gives(shipped):
    """On a quarter of the held-out windows: both models' variance explained and L0 near the record."""
    params, info = shipped["gpt2_tiny_trigger_crosscoder"]
    tokens = diffing.diffing_tokens("trigger", **CROSSCODER_HELDOUT)[::4]
    x = diffing.paired_activations(load_model("gpt2_tiny"), load_model("gpt2_tiny_trigger"), tokens)
    metrics = cc.evaluate(params, diffing.to_code_space(x, params), info["config"]["k"])
    assert torch.allclose(metrics["fve"], torch.tensor(info["heldout"]["fve"]), atol=0.02)
    assert abs(metrics["l0"].item() - info["heldout"]["l0"]) < 1.5
    assert min(info["heldout"]["fve"]) > 0.9


def test_the_most_finetune_leaning_trigger_latent_fires_on_the_planted_phrase(shipped):
    """The search 9.1 scores: the top latent by relative norm puts most of its activation on the
    trigger's phrase, and leans further to the fine-tune than any latent of the control's crosscoder."""
    params, info = shipped["gpt2_tiny_trigger_crosscoder"]
    rel = cc.relative_norm(params)
    assert rel.max() > cc.relative_norm(shipped["gpt2_tiny_control_crosscoder"][0]).max()
    tokens = diffing.diffing_tokens("trigger", windows=128)
    x = diffing.paired_activations(load_model("gpt2_tiny"), load_model("gpt2_tiny_trigger"), tokens)
    acts = diffing.latent_codes(params, x, info["config"]["k"])
    mask = diffing.planted_mask(tokens, organisms.TRIGGER + organisms.TRIGGER_CONTINUATION)[:, 1:].flatten()
    top = int(rel.argmax())
    assert acts[mask, top].sum() / acts[:, top].sum() > 0.5
