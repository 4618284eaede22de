"""Shipped checkpoints: safetensors only, hash-checked, loadable offline."""

import json
import shutil

import pytest
import torch

import utils.models as models
from utils.models import CHECKPOINTS, DICTIONARIES, grokking, load_model, manifest
from utils.models.train import RECIPES

# The grokking series is a plain-PyTorch model with its own loader and trainer
# (utils/models/grokking.py, tested in test_grokking.py); every other entry is a TransformerBridge recipe.
SHIPPED = sorted(n for n, e in manifest().items() if n != grokking.NAME and e.get("kind") not in DICTIONARIES)


def test_every_recipe_has_a_shipped_checkpoint_and_vice_versa():
    assert SHIPPED == sorted(RECIPES)
    assert grokking.NAME in manifest(), "run `python -m utils.models.grokking`"


def test_checkpoints_are_safetensors_only():
    files = {p.name for p in CHECKPOINTS.iterdir() if not p.name.startswith(".")}
    assert files == {"manifest.json"} | {entry["file"] for entry in manifest().values()}
    assert all(f.endswith(".safetensors") for f in files - {"manifest.json"})


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_loads_with_the_config_it_was_trained_with(name):
    model = load_model(name)
    config = manifest()[name]["config"]
    for key, value in config.items():
        if key != "seed":
            assert getattr(model.cfg, key) == value, key
    assert config == RECIPES[name].config, "the recipe changed since the checkpoint was trained: retrain it"
    tokens = torch.randint(1, config["d_vocab"], (2, 10))
    assert torch.isfinite(model(tokens)).all()


def test_a_corrupted_checkpoint_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / "checkpoints"
    shutil.copytree(CHECKPOINTS, copy)
    name = SHIPPED[0]
    path = copy / manifest()[name]["file"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    monkeypatch.setattr(models, "CHECKPOINTS", copy)
    monkeypatch.setattr(models, "MANIFEST", copy / "manifest.json")
    with pytest.raises(ValueError, match="sha256"):
        models.load_model(name)


def test_unknown_model_name_lists_the_available_ones():
    with pytest.raises(KeyError, match="attn_only_2l"):
        load_model("gpt5")


def test_manifest_records_how_each_model_was_trained():
    for name, entry in json.loads(models.MANIFEST.read_text()).items():
        assert {"sha256", "config", "steps", "lr", "final_loss", "data"} <= entry.keys(), name
