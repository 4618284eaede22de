"""The small models the course trains itself, and the one way to load them.

Weights ship as safetensors in `checkpoints/` next to `manifest.json`, which
records each file's sha256 and the model's config. `load_model(name)` checks
the hash, builds the architecture offline with `TransformerBridge.boot_native`
and loads the tensors: nothing is unpickled and nothing is downloaded.
`python -m utils.models.train NAME` regenerates a checkpoint.
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


def load_model(name: str, device: str | torch.device | None = None) -> TransformerBridge:
    """Load a shipped model by name, after checking its file against the manifest."""
    entries = manifest()
    if name not in entries:
        raise KeyError(f"no shipped model called {name!r}; available: {', '.join(available()) or 'none'}")
    entry = entries[name]
    path = CHECKPOINTS / entry["file"]
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python -m utils.models.train {name}`")
    if sha256(path) != entry["sha256"]:
        raise ValueError(f"{path} does not match its sha256 in {MANIFEST.name}: the file is corrupted or was "
                         f"changed without retraining; run `python -m utils.models.train {name}`")
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
