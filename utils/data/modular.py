"""Modular addition data for Chapter 5: every pair (a, b) of Z_p, written as `a b =`.

The answer (a + b) mod p is read off the last position. A seeded permutation splits the p²
pairs into a training set (a fraction `train_frac`, 30% in Nanda et al. 2023) and a test set.
"""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor


def all_pairs(p: int) -> Int[Tensor, "p2 3"]:
    """Every input `a b =` in the order (0, 0), (0, 1), …, (p-1, p-1); the `=` token is p."""
    a = torch.arange(p).repeat_interleave(p)  # [p²]
    b = torch.arange(p).repeat(p)  # [p²]
    eq = torch.full_like(a, p)
    return torch.stack([a, b, eq], dim=1)


def labels(tokens: Int[Tensor, "batch 3"], p: int) -> Int[Tensor, "batch"]:
    return (tokens[:, 0] + tokens[:, 1]) % p


def train_test_split(p: int, train_frac: float = 0.3, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Indices into `all_pairs(p)`: (train, test), disjoint, covering all p² pairs."""
    order = torch.randperm(p * p, generator=torch.Generator().manual_seed(seed))
    n_train = round(train_frac * p * p)
    return order[:n_train].sort().values, order[n_train:].sort().values
