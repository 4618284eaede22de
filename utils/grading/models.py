"""Tiny randomly initialised models for graders that need a model: checks stay well under a second
and never depend on a trained checkpoint."""

from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=8)
def tiny_model(device: str = "cpu", seed: int = 0, n_layers: int = 3, n_heads: int = 2, d_model: int = 24,
               d_vocab: int = 12, d_vocab_out: int = -1, n_ctx: int = 8):
    """A TransformerBridge with MLPs and LayerNorm, weights scaled up so every component matters.

    Shared between calls (cached): graders must leave it as they found it (no hooks, no grads)."""
    from transformer_lens import TransformerBridge, TransformerBridgeConfig

    cfg = TransformerBridgeConfig(d_model=d_model, d_head=d_model // n_heads,
                                  n_heads=n_heads, n_layers=n_layers, d_mlp=2 * d_model, n_ctx=n_ctx,
                                  d_vocab=d_vocab, d_vocab_out=d_vocab_out, act_fn="gelu_new",
                                  normalization_type="LN", architecture="TransformerLensNative", seed=seed)
    model = TransformerBridge.boot_native(cfg)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or name.endswith(".b"):
                param.copy_(0.2 * torch.randn(param.shape, generator=generator))
            elif param.ndim >= 2:
                param.mul_(3.0)
    model.requires_grad_(False)
    model.eval()
    if device != "cpu":
        model.to(device)
    return model


def hooks_left(model) -> bool:
    """Whether any forward or backward hook is still attached to the model's hook points."""
    return any(h.fwd_hooks or h.bwd_hooks for h in model.hook_dict.values())


def clean_up(model) -> None:
    """Put a shared tiny model back as `tiny_model` made it."""
    model.reset_hooks()
    model.requires_grad_(False)
    model.zero_grad(set_to_none=True)
