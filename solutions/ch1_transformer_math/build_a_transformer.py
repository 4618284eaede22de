"""Reference solutions for 1.1 "Build a transformer"."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


def layer_norm(
    x: Float[Tensor, "batch pos d_model"],
    w: Float[Tensor, "d_model"],
    b: Float[Tensor, "d_model"],
    eps: float = 1e-5,
) -> Float[Tensor, "batch pos d_model"]:
    """Normalise each position's vector to mean 0 and variance 1, then scale by `w` and shift by `b`."""
    centred = x - x.mean(dim=-1, keepdim=True)
    variance = centred.pow(2).mean(dim=-1, keepdim=True)
    return centred / torch.sqrt(variance + eps) * w + b
