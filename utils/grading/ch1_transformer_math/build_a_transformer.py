"""Graders for 1.1 "Build a transformer"."""

from __future__ import annotations

import torch

from utils.grading import Mistake, exercise


def _layer_norm_variant(*, unbiased=False, axis=-1, eps_inside=True):
    def variant(x, w, b, eps=1e-5):
        centred = x - x.mean(dim=axis, keepdim=True)
        var = centred.var(dim=axis, keepdim=True, unbiased=unbiased)
        scale = torch.sqrt(var + eps) if eps_inside else torch.sqrt(var) + eps
        return centred / scale * w + b
    return variant


@exercise(difficulty=1, minutes=10, hints=[
    "Work on the last axis (d_model): every position of every sequence is normalised on its own.",
    "Subtract the mean, divide by sqrt(variance + eps), then multiply by w and add b.",
    "Use the biased variance (divide by d_model, not d_model - 1): `x.var(-1, unbiased=False)`.",
])
def test_layer_norm(check):
    x = check.randn(2, 5, 16, scale=3.0) + 1.0
    w, b = check.randn(16), check.randn(16)
    mistakes = [
        Mistake("unbiased variance", "Use the biased variance (divide by d_model, not d_model - 1), "
                "as PyTorch's LayerNorm does: `unbiased=False`.", _layer_norm_variant(unbiased=True)),
        Mistake("wrong axis", "Normalise over d_model, the last axis (dim=-1), not over positions.",
                _layer_norm_variant(axis=-2)),
        Mistake("eps outside sqrt", "Add eps to the variance *inside* the square root.",
                _layer_norm_variant(eps_inside=False)),
        Mistake("forgot scale and shift", "After normalising, multiply by `w` and add `b`.",
                lambda x, w, b, eps=1e-5: _layer_norm_variant()(x, torch.ones_like(w), torch.zeros_like(b), eps)),
    ]
    check.case("random activations", x, w, b, mistakes=mistakes,
               hint="Compare with torch.nn.functional.layer_norm on a small input.")
    check.case("tiny variance (eps matters)", check.randn(1, 3, 16, scale=1e-3), w, b, mistakes=mistakes)
