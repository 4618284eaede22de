"""Reference solutions for 5.1 "Grokking and modular addition".

Every exercise is a pure function of tensors: the notebook feeds them the weights and
activations of the shipped model (utils.models.grokking), the graders feed them small
seeded examples. Frequencies are integers k in 1 … (p-1)/2; the angle is w = 2πk/p.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

# -- 1. the data ----------------------------------------------------------------------------------


def modular_dataset(p: int) -> tuple[Int[Tensor, "p2 3"], Int[Tensor, "p2"]]:
    """Every input `a b =` (the `=` token is p), in the order (0,0), (0,1), …, and its label (a+b) mod p."""
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    tokens = torch.stack([a, b, torch.full_like(a, p)], dim=1)
    return tokens, (a + b) % p


def accuracy(logits: Float[Tensor, "batch p"], labels: Int[Tensor, "batch"]) -> float:
    """Fraction of rows whose largest logit is the label."""
    return (logits.argmax(dim=-1) == labels).float().mean().item()


# -- 2. the Fourier basis on Z_p ------------------------------------------------------------------


def fourier_basis(p: int) -> Float[Tensor, "p p"]:
    """Rows: the constant, then cos(w x), sin(w x) for k = 1 … (p-1)/2, each scaled to unit norm.

    For odd p these p rows are an orthonormal basis of functions on Z_p."""
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.ones(p, dtype=torch.float64)]
    for k in range(1, (p - 1) // 2 + 1):
        w = 2 * math.pi * k / p
        rows += [torch.cos(w * x), torch.sin(w * x)]
    basis = torch.stack(rows)
    return (basis / basis.norm(dim=1, keepdim=True)).float()


def to_fourier(values: Float[Tensor, "p d"], basis: Float[Tensor, "p p"]) -> Float[Tensor, "p d"]:
    """Change of basis along the input axis: row i of the result is the component along basis row i."""
    return basis @ values


def frequency_norms(fourier_values: Float[Tensor, "p d"]) -> Float[Tensor, "n_freq"]:
    """Norm of frequency k: the L2 norm of its cos and sin rows together (the constant row excluded)."""
    pairs = fourier_values[1:].reshape(-1, 2, fourier_values.shape[-1])  # [n_freq (cos, sin) d]
    return pairs.pow(2).sum(dim=(1, 2)).sqrt()


def key_frequencies(norms: Float[Tensor, "n_freq"], threshold: float = 0.3) -> list[int]:
    """Frequencies k (1-based) whose norm is at least `threshold` times the largest, in increasing order."""
    keep = norms >= threshold * norms.max()
    return [i + 1 for i in keep.nonzero().flatten().tolist()]


# -- 3. functions of (a, b) -------------------------------------------------------------------------


def fourier_2d(grid: Float[Tensor, "p p ..."], basis: Float[Tensor, "p p"]) -> Float[Tensor, "p p ..."]:
    """Change of basis along both input axes: out[i, j] = Σ_ab basis[i, a] basis[j, b] grid[a, b]."""
    return torch.einsum("ia,jb,ab...->ij...", basis, basis, grid)


def top_terms_fraction(components: Float[Tensor, "p p"], n_terms: int) -> float:
    """Fraction of the variance (everything but the constant-constant term) in the n_terms largest 2-D terms."""
    energy = components.pow(2).flatten()[1:]
    return (energy.sort(descending=True).values[:n_terms].sum() / energy.sum()).item()


def neuron_frequencies(components: Float[Tensor, "p p neuron"]) -> tuple[Int[Tensor, "neuron"], Float[Tensor, "neuron"]]:
    """For each neuron: the frequency k whose 2-D terms (any pair of rows/cols of frequency 0 or k,
    except the constant-constant one) hold the most of its variance, and that fraction."""
    p = components.shape[0]
    n_freq = (p - 1) // 2
    energy = components.pow(2)
    energy[0, 0] = 0.0
    total = energy.sum(dim=(0, 1))  # [neuron]
    freq_of = torch.cat([torch.zeros(1, dtype=torch.long), torch.arange(1, n_freq + 1).repeat_interleave(2)])
    per_freq = []
    for k in range(1, n_freq + 1):
        rows = (freq_of == 0) | (freq_of == k)
        per_freq.append(energy[rows][:, rows].sum(dim=(0, 1)))
    per_freq = torch.stack(per_freq)  # [n_freq neuron]
    best = per_freq.max(dim=0)
    return best.indices + 1, best.values / total


# -- 4. the algorithm -----------------------------------------------------------------------------


def cos_predictors(p: int, freqs: list[int]) -> Float[Tensor, "n_freq p2 p"]:
    """cos(w (a + b - c)) for each key frequency, with (a, b) in dataset order and c the output."""
    a = torch.arange(p).repeat_interleave(p).double()
    b = torch.arange(p).repeat(p).double()
    c = torch.arange(p).double()
    w = 2 * math.pi * torch.tensor(freqs, dtype=torch.float64) / p
    return torch.cos(w[:, None, None] * (a + b)[None, :, None] - w[:, None, None] * c[None, None, :]).float()


def variance_explained(logits: Float[Tensor, "p2 p"], predictors: Float[Tensor, "n p2 p"]) -> float:
    """R² of the least-squares fit of the logits by the predictors plus a constant: everything centred."""
    y = (logits - logits.mean()).flatten().double()
    X = predictors.flatten(1).double()
    X = (X - X.mean(dim=1, keepdim=True)).T  # [p2*p n]
    coef = torch.linalg.lstsq(X, y[:, None]).solution
    residual = y - (X @ coef).flatten()
    return (1 - residual.pow(2).sum() / y.pow(2).sum()).item()


# -- 5. ablations and progress measures -----------------------------------------------------------------


def frequency_projector(basis: Float[Tensor, "p p"], freqs: list[int]) -> Float[Tensor, "p p"]:
    """Projection onto the span of the cos and sin rows of the given frequencies (p × p, symmetric)."""
    rows = [r for k in freqs for r in (2 * k - 1, 2 * k)]
    B = basis[rows]  # [2 n_freq p]
    return B.T @ B


def ablate_frequencies(W_E: Float[Tensor, "p d"], basis: Float[Tensor, "p p"], freqs: list[int]) -> Float[Tensor, "p d"]:
    """The embedding with the given frequencies' components removed along the token axis: every
    number then looks the same to the rest of the model along those circles."""
    return W_E - frequency_projector(basis, freqs) @ W_E


def sum_directions(p: int, freqs: list[int]) -> Float[Tensor, "two_n_freq p2"]:
    """Unit vectors over the p² pairs (dataset order): cos(w(a+b)), sin(w(a+b)) for each frequency in turn.

    A function of the pairs in their span depends on a + b alone: it generalises by construction."""
    a = torch.arange(p).repeat_interleave(p).double()
    b = torch.arange(p).repeat(p).double()
    rows = []
    for k in freqs:
        w = 2 * math.pi * k / p
        rows += [torch.cos(w * (a + b)), torch.sin(w * (a + b))]
    D = torch.stack(rows)
    return (D / D.norm(dim=1, keepdim=True)).float()


def restricted_logits(logits: Float[Tensor, "p2 p"], p: int, freqs: list[int]) -> Float[Tensor, "p2 p"]:
    """Keep, for every output c, only the mean over the pairs and the components along cos(w(a+b)),
    sin(w(a+b)) of the key frequencies: what the generalising circuit alone would output."""
    D = sum_directions(p, freqs).to(logits)  # [2 n_freq p2]
    return logits.mean(dim=0, keepdim=True) + D.T @ (D @ logits)


def excluded_logits(logits: Float[Tensor, "p2 p"], p: int, freqs: list[int]) -> Float[Tensor, "p2 p"]:
    """Remove, for every output c, the components along cos(w(a+b)), sin(w(a+b)) of the key frequencies."""
    D = sum_directions(p, freqs).to(logits)
    return logits - D.T @ (D @ logits)


def excluded_loss(logits: Float[Tensor, "p2 p"], labels: Int[Tensor, "p2"], train_idx: Int[Tensor, "n"],
                  p: int, freqs: list[int]) -> float:
    """Cross-entropy of the excluded logits on the *training* pairs: high once the training set is
    fitted through the key frequencies rather than memorised."""
    kept = excluded_logits(logits, p, freqs)[train_idx]
    return F.cross_entropy(kept.double(), labels[train_idx]).item()


def total_weight_norm(weights: dict[str, Tensor]) -> float:
    """sqrt of the sum of squares of every parameter: the quantity weight decay shrinks."""
    return math.sqrt(sum(w.double().pow(2).sum().item() for w in weights.values()))


def gini(values: Float[Tensor, "n"]) -> float:
    """Gini coefficient of |values|: 0 when all equal, near 1 when one carries everything."""
    x = values.abs().double().sort().values
    n = x.shape[0]
    i = torch.arange(1, n + 1, dtype=torch.float64, device=x.device)
    return ((2 * i - n - 1) * x).sum().item() / (n * x.sum().item())


def embedding_gini(W_E: Float[Tensor, "p d"], basis: Float[Tensor, "p p"]) -> float:
    """Gini coefficient of the embedding's frequency norms: how concentrated on few frequencies it is."""
    return gini(frequency_norms(to_fourier(W_E, basis)))
