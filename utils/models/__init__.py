"""The small models the course trains itself, and the one way to load them.

Weights ship as safetensors in `checkpoints/` next to `manifest.json`, which
records each file's sha256 and the model's config. `load_model(name)` checks
the hash, builds the architecture offline with `TransformerBridge.boot_native`
and loads the tensors: nothing is unpickled and nothing is downloaded.
`python -m utils.models.train NAME` regenerates a checkpoint.

Chapter 8's transcoders (and the SAE they are compared with) ship the same way, as plain tensors:
`load_transcoders(name)` returns their parameters (see utils.transcoders) and their manifest entry.
Chapter 9's crosscoders too: `load_crosscoder(name)` (see utils.crosscoders and utils.diffing).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformer_lens import TransformerBridge, TransformerBridgeConfig

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
MANIFEST = CHECKPOINTS / "manifest.json"
TRANSCODERS = "transcoders"  # the manifest's "kind" of transcoders and SAEs (models have none)
CROSSCODER = "crosscoder"     # ... and of a crosscoder between a base model and its fine-tune
DICTIONARIES = (TRANSCODERS, CROSSCODER)


def build_model(config: dict) -> TransformerBridge:
    """A freshly initialised model of the given architecture (no weights loaded)."""
    cfg = TransformerBridgeConfig(architecture="TransformerLensNative", **config)
    return TransformerBridge.boot_native(cfg)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest() -> dict:
    return json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}


def available() -> list[str]:
    return sorted(manifest())


def _checked_entry(name: str) -> tuple[dict, Path]:
    """A shipped file's manifest entry and path, after checking the file against its sha256."""
    entries = manifest()
    if name not in entries:
        raise KeyError(f"nothing shipped is called {name!r}; available: {', '.join(available()) or 'none'}")
    entry = entries[name]
    path = CHECKPOINTS / entry["file"]
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python -m utils.models.train {name}`")
    if sha256(path) != entry["sha256"]:
        raise ValueError(f"{path} does not match its sha256 in {MANIFEST.name}: the file is corrupted or was "
                         f"changed without retraining; run `python -m utils.models.train {name}`")
    return entry, path


def load_model(name: str, device: str | torch.device | None = None) -> TransformerBridge:
    """Load a shipped model by name, after checking its file against the manifest."""
    entry, path = _checked_entry(name)
    if entry.get("kind") == TRANSCODERS:
        raise KeyError(f"{name!r} is a set of transcoders of {entry['model']}: load it with load_transcoders")
    if entry.get("kind") == CROSSCODER:
        raise KeyError(f"{name!r} is a crosscoder of {entry['base']} and {entry['model']}: load it with load_crosscoder")
    model = build_model(entry["config"])
    model.load_state_dict(load_file(path), strict=True)
    model.eval()
    if device is not None:
        model.to(device)
    return model


def save_model(name: str, model: TransformerBridge, config: dict, info: dict | None = None) -> Path:
    """Write the weights as safetensors and record hash, config and training facts in the manifest."""
    CHECKPOINTS.mkdir(parents=True, exist_ok=True)
    path = CHECKPOINTS / f"{name}.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, path)
    entries = manifest()
    entries[name] = {"file": path.name, "sha256": sha256(path), "config": config, **(info or {})}
    MANIFEST.write_text(json.dumps(dict(sorted(entries.items())), indent=2) + "\n")
    return path


# -- transcoders ---------------------------------------------------------------------------------------

def transcoders_available() -> list[str]:
    return sorted(name for name, entry in manifest().items() if entry.get("kind") == TRANSCODERS)


def save_transcoders(name: str, params: dict[str, torch.Tensor], info: dict) -> Path:
    """Write transcoder parameters as safetensors and their hash and `info` (which must hold "model",
    the shipped model they read, and "config") in the manifest, beside the model's own hash.

    A cross-layer decoder W_dec [src, tgt, d, lat] is stored without the entries that must be zero:
    one tensor `W_dec.<src>` [tgt >= src, d, lat] per source layer."""
    tensors = {key: value.detach().cpu().contiguous() for key, value in params.items() if key != "W_dec"}
    W_dec = params["W_dec"].detach().cpu()
    if W_dec.ndim == 4:
        tensors.update({f"W_dec.{src}": W_dec[src, src:].contiguous() for src in range(len(W_dec))})
    else:
        tensors["W_dec"] = W_dec.contiguous()
    path = CHECKPOINTS / f"{name}.safetensors"
    save_file(tensors, path)
    entries = manifest()
    model_sha256 = entries[info["model"]]["sha256"]
    entries[name] = {"file": path.name, "sha256": sha256(path), "kind": TRANSCODERS, "model_sha256": model_sha256,
                     **info}
    MANIFEST.write_text(json.dumps(dict(sorted(entries.items())), indent=2) + "\n")
    return path


def load_transcoders(name: str, device: str | torch.device | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Shipped transcoder parameters (a dict of tensors, as utils.transcoders takes them) and their
    manifest entry (config with "k", training facts, metrics), after checking the file's sha256 and
    that the model they read is the shipped one."""
    entry, path = _checked_entry(name)
    if entry.get("kind") != TRANSCODERS:
        raise KeyError(f"{name!r} is a model, not transcoders: load it with load_model; transcoders: "
                       f"{', '.join(transcoders_available())}")
    if manifest()[entry["model"]]["sha256"] != entry["model_sha256"]:
        raise ValueError(f"{name} was trained on another {entry['model']} than the shipped one: "
                         f"run `python -m utils.models.train {name}`")
    tensors = load_file(path)
    sources = sorted(int(key.split(".")[1]) for key in tensors if key.startswith("W_dec."))
    if sources:
        blocks = [tensors.pop(f"W_dec.{src}") for src in sources]
        W_dec = blocks[0].new_zeros(len(sources), *blocks[0].shape)
        for src, block in zip(sources, blocks):
            W_dec[src, src:] = block
        tensors["W_dec"] = W_dec
    return {key: value.to(device) if device is not None else value for key, value in tensors.items()}, entry


# -- crosscoders ---------------------------------------------------------------------------------------

def crosscoders_available() -> list[str]:
    return sorted(name for name, entry in manifest().items() if entry.get("kind") == CROSSCODER)


def save_crosscoder(name: str, params: dict[str, torch.Tensor], info: dict) -> Path:
    """Write a crosscoder's tensors as safetensors, and in the manifest its hash, `info` (which must hold
    "base" and "model", the two shipped models it reads, and "config") and both models' hashes."""
    path = CHECKPOINTS / f"{name}.safetensors"
    save_file({key: value.detach().cpu().contiguous() for key, value in params.items()}, path)
    entries = manifest()
    entries[name] = {"file": path.name, "sha256": sha256(path), "kind": CROSSCODER,
                     "base_sha256": entries[info["base"]]["sha256"], "model_sha256": entries[info["model"]]["sha256"],
                     **info}
    MANIFEST.write_text(json.dumps(dict(sorted(entries.items())), indent=2) + "\n")
    return path


def load_crosscoder(name: str, device: str | torch.device | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """A shipped crosscoder's parameters (as utils.crosscoders takes them, with "scale", each model's
    activation scale) and its manifest entry, after checking its file and that both models it reads
    are the shipped ones."""
    entry, path = _checked_entry(name)
    if entry.get("kind") != CROSSCODER:
        raise KeyError(f"{name!r} is not a crosscoder; crosscoders: {', '.join(crosscoders_available())}")
    for side in ("base", "model"):
        if manifest()[entry[side]]["sha256"] != entry[f"{side}_sha256"]:
            raise ValueError(f"{name} was trained on another {entry[side]} than the shipped one: "
                             f"run `python -m utils.models.train {name}`")
    tensors = load_file(path)
    return {key: value.to(device) if device is not None else value for key, value in tensors.items()}, entry
