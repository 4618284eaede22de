"""Graders for 5.1 "Grokking and modular addition".

Every check runs on small p (5, 7, 11, 13) and seeded random tensors, never on the trained
model, and takes well under a second. Where an exercise returns a set of frequencies or a
scalar, the grader compares it exactly or to tolerance; the Mistake functions below produce
what the typical wrong version returns so its failure gets the targeted hint.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from solutions.ch5_grokking import grokking as ref
from utils.grading import Mistake, exercise

# -- helpers ---------------------------------------------------------------------------------


def _raw_basis(p, *, constant=True, swap=False):
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.ones(p, dtype=torch.float64)] if constant else []
    for k in range(1, (p - 1) // 2 + 1):
        w = 2 * math.pi * k / p
        pair = [torch.sin(w * x), torch.cos(w * x)] if swap else [torch.cos(w * x), torch.sin(w * x)]
        rows += pair
    return torch.stack(rows).float()


def _normalise(B):
    return B / B.norm(dim=1, keepdim=True)


def _sparse_fourier(check, p, d, freqs, noise=0.05):
    """Values [p, d] built from a few frequencies plus a little noise."""
    B = ref.fourier_basis(p).to(check.device)
    rows = [0] + [r for k in freqs for r in (2 * k - 1, 2 * k)]
    return B[rows].T @ check.randn(len(rows), d) + noise * check.randn(p, d)


def _gini_raw(x):
    n = x.shape[0]
    x = x.double()
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return ((2 * i - n - 1) * x).sum().item() / (n * x.sum().item())


# -- 1. data ------------------------------------------------------------------------------------


@exercise(difficulty=1, minutes=5, hints=[
    "a runs slowly and b quickly: (0,0), (0,1), …, (0,p-1), (1,0), …; the third token is always p.",
    "torch.arange(p).repeat_interleave(p) gives a; torch.arange(p).repeat(p) gives b.",
    "Stack [a, b, p] along dim 1 and return it with (a + b) % p.",
])
def test_modular_dataset(check):
    def swapped(p):
        t, y = ref.modular_dataset(p)
        return t[:, [1, 0, 2]], y

    def no_mod(p):
        t, _ = ref.modular_dataset(p)
        return t, t[:, 0] + t[:, 1]

    def eq_zero(p):
        t, y = ref.modular_dataset(p)
        return torch.cat([t[:, :2], torch.zeros_like(t[:, :1])], dim=1), y

    mistakes = [
        Mistake("b runs slowly", "Order the pairs (0,0), (0,1), (0,2), …: a changes slowest "
                "(repeat_interleave), b fastest (repeat).", swapped),
        Mistake("no modulo", "The label is (a + b) mod p, not a + b.", no_mod),
        Mistake("wrong = token", "The `=` token is p, the one token that is not a residue (0 is a residue).",
                eq_zero),
    ]
    check.case("p = 5", 5, mistakes=mistakes)
    check.case("p = 7", 7, mistakes=mistakes)


@exercise(difficulty=1, minutes=5, hints=[
    "The prediction is the index of the largest logit in each row.",
    "logits.argmax(dim=-1) compared with the labels gives a boolean per row.",
    "Return (logits.argmax(-1) == labels).float().mean().item().",
])
def test_accuracy(check):
    mistakes = [
        Mistake("percentage", "Return a fraction between 0 and 1, not a percentage.",
                lambda logits, labels: 100 * (logits.argmax(-1) == labels).float().mean().item()),
        Mistake("count not fraction", "Return the fraction of correct rows, not their count.",
                lambda logits, labels: (logits.argmax(-1) == labels).float().sum().item()),
        Mistake("argmin", "The prediction is the *largest* logit (argmax).",
                lambda logits, labels: (logits.argmin(-1) == labels).float().mean().item()),
    ]
    logits = check.randn(40, 7)
    labels = logits.argmax(-1).clone()
    labels[::3] = (labels[::3] + 1) % 7
    got = check.case("40 rows, a third wrong", logits, labels, mistakes=mistakes)
    check.expect(isinstance(got, float), case="40 rows, a third wrong", mistake="not a float",
                 message=f"expected a Python float, got {type(got).__name__}",
                 hint="Return a Python number: .item() turns a one-element tensor into a float.")
    check.case("random", check.randn(50, 5), check.randint(5, 50), mistakes=mistakes)


# -- 2. Fourier basis ----------------------------------------------------------------------------


def _float64(reference, where: str) -> Mistake:
    """The right values in float64: the notebook's later cells multiply the result with the model's float32
    weights or logits, and a matrix product of float64 and float32 fails."""
    return Mistake("float64", f"Return float32, as the model's tensors are: the notebook later computes {where}, "
                   "and a product of a float64 and a float32 tensor fails ('expected m1 and m2 to have the same "
                   "dtype'). torch.tensor of Python floats, numpy and .double() make float64: end with .float(), or "
                   "compute in float64 for accuracy and convert at the end.",
                   lambda *args: reference(*args).double())


@exercise(difficulty=2, minutes=15, hints=[
    "Start with the constant function, then for k = 1 … (p-1)/2 the pair cos(2πkx/p), sin(2πkx/p).",
    "That gives 1 + 2·(p-1)/2 = p rows; divide each row by its own norm so that B @ B.T = I.",
    "rows = [ones] + [cos(w x), sin(w x) for each k]; B = torch.stack(rows); B / B.norm(dim=1, keepdim=True).",
])
def test_fourier_basis(check):
    mistakes = [
        Mistake("not normalised", "Scale each row to unit norm: the basis must be orthonormal, B @ B.T = I "
                "(the constant row has norm √p, the others √(p/2)).", lambda p: _raw_basis(p)),
        Mistake("no constant term", "The first row is the constant function (all entries 1/√p); without it "
                "the basis has only p-1 rows and cannot express a mean.",
                lambda p: _normalise(_raw_basis(p, constant=False))),
        Mistake("sin and cos swapped", "For each frequency put cos before sin: row 2k-1 is cos(2πkx/p), "
                "row 2k is sin.", lambda p: _normalise(_raw_basis(p, swap=True))),
        _float64(ref.fourier_basis, "`basis @ W_E` (in to_fourier)"),
    ]
    check.case("p = 5", 5, mistakes=mistakes)
    check.case("p = 13", 13, mistakes=mistakes)


@exercise(difficulty=1, minutes=5, hints=[
    "Each column of `values` is a function of the input x; express every column in the basis.",
    "The component along basis row i is Σ_x basis[i, x] values[x, :].",
    "Return basis @ values.",
])
def test_to_fourier(check):
    mistakes = [
        Mistake("transposed basis", "Use the basis rows (basis @ values), not its columns (basis.T @ values).",
                lambda values, basis: basis.T @ values),
        Mistake("wrong axis", "Change basis along the input axis (the rows of `values`), not along d.",
                lambda values, basis: values @ basis[: values.shape[1], : values.shape[1]]),
        Mistake("transposed result", "Return [p, d] with the frequency components along the rows: "
                "basis @ values, not its transpose.", lambda values, basis: (basis @ values).T),
    ]
    B = ref.fourier_basis(7)
    check.case("p = 7, d = 7", check.randn(7, 7), B, mistakes=mistakes)
    check.case("p = 11, d = 4", check.randn(11, 4), ref.fourier_basis(11), mistakes=mistakes)


@exercise(difficulty=2, minutes=10, hints=[
    "Skip row 0 (the constant); rows 2k-1 and 2k belong to frequency k.",
    "Reshape the remaining rows to [n_freq, 2, d] and take the L2 norm over the last two axes.",
    "fourier_values[1:].reshape(-1, 2, d).pow(2).sum(dim=(1, 2)).sqrt().",
])
def test_frequency_norms(check):
    def pairs(v):
        return v[1:].reshape(-1, 2, v.shape[-1])

    mistakes = [
        Mistake("L1 norm", "Use the L2 norm (square root of the sum of squares), not the sum of absolute values.",
                lambda v: pairs(v).abs().sum(dim=(1, 2))),
        Mistake("cos only", "A frequency is its cos *and* sin rows together: include both.",
                lambda v: pairs(v)[:, 0].norm(dim=-1)),
        Mistake("constant included", "Drop row 0 (the constant) before pairing rows: frequency k is rows 2k-1, 2k.",
                lambda v: v[:-1].reshape(-1, 2, v.shape[-1]).pow(2).sum(dim=(1, 2)).sqrt()),
        Mistake("no square root", "The norm is the square root of the sum of squares.",
                lambda v: pairs(v).pow(2).sum(dim=(1, 2))),
        Mistake("cos norm plus sin norm", "Take one L2 norm over the cos and sin rows together (sqrt of the summed "
                "squares), not the sum of their two norms.", lambda v: pairs(v).norm(dim=-1).sum(-1)),
        Mistake("rows paired from the halves", "Frequency k is rows 2k-1 and 2k, next to each other (cos, sin, cos, "
                "sin, ...), not row k with row k + (p-1)/2.",
                lambda v: torch.stack([v[1:][: (len(v) - 1) // 2], v[1:][(len(v) - 1) // 2:]], 1).pow(2)
                .sum(dim=(1, 2)).sqrt()),
    ]
    check.case("p = 7, d = 3", check.randn(7, 3), mistakes=mistakes)
    check.case("p = 13, d = 5", check.randn(13, 5), mistakes=mistakes)


@exercise(difficulty=1, minutes=10, hints=[
    "A frequency is key when its norm is at least threshold × the largest norm.",
    "Entry i of `norms` is frequency i + 1 (there is no frequency 0 in it).",
    "[i + 1 for i in (norms >= threshold * norms.max()).nonzero().flatten().tolist()].",
])
def test_key_frequencies(check):
    mistakes = [
        Mistake("0-based", "norms[0] is frequency 1: add 1 to the indices.",
                lambda norms, threshold=0.3: [i for i in (norms >= threshold * norms.max()).nonzero().flatten().tolist()]),
        Mistake("absolute threshold", "Compare with threshold × the *largest* norm, not with the threshold itself.",
                lambda norms, threshold=0.3: [i + 1 for i in (norms >= threshold).nonzero().flatten().tolist()]),
        Mistake("sorted by size", "Return the frequencies in increasing order of k, not of norm.",
                lambda norms, threshold=0.3: [i + 1 for i in norms.argsort(descending=True).tolist()
                                              if norms[i] >= threshold * norms.max()]),
    ]
    norms = torch.tensor([0.1, 3.0, 0.2, 0.05, 2.0, 0.15])
    check.case("two clear key frequencies", norms, mistakes=mistakes)
    check.case("threshold 0.5, scaled down", torch.tensor([0.01, 0.02, 0.08, 0.2, 0.001, 0.12, 0.15]), 0.5,
               mistakes=mistakes)
    check.case("a norm exactly at the threshold", torch.tensor([0.25, 1.0, 0.5, 0.125]), 0.5, mistakes=[*mistakes, Mistake(
        "strictly above", "*At least* threshold × the largest norm: a frequency exactly at it counts (>=).",
        lambda norms, threshold=0.3: [i + 1 for i in (norms > threshold * norms.max()).nonzero().flatten().tolist()])])


# -- 3. functions of (a, b) ---------------------------------------------------------------------


@exercise(difficulty=2, minutes=10, hints=[
    "Apply the 1-D change of basis along the a axis and along the b axis.",
    "out[i, j] = Σ_a Σ_b basis[i, a] basis[j, b] grid[a, b], with any trailing axes carried along.",
    "torch.einsum('ia,jb,ab...->ij...', basis, basis, grid).",
])
def test_fourier_2d(check):
    mistakes = [
        Mistake("one axis only", "Transform both input axes (a and b), not just the first.",
                lambda grid, basis: torch.einsum("ia,ab...->ib...", basis, grid)),
        Mistake("transposed basis", "Use the basis rows on both axes: basis[i, a] basis[j, b], not basis[a, i].",
                lambda grid, basis: torch.einsum("ai,bj,ab...->ij...", basis, basis, grid)),
        Mistake("a and b swapped", "Keep the axes in order: out[i, j] pairs a-frequency i with b-frequency j.",
                lambda grid, basis: torch.einsum("ia,jb,ba...->ij...", basis, basis, grid)),
    ]
    check.case("p = 7, 3 neurons", check.randn(7, 7, 3), ref.fourier_basis(7), mistakes=mistakes)
    check.case("p = 5, no extra axis", check.randn(5, 5), ref.fourier_basis(5), mistakes=mistakes)


@exercise(difficulty=2, minutes=10, hints=[
    "Square the components (energy), drop the constant-constant entry [0, 0] (it is the mean, not variance).",
    "Sort the rest in decreasing order and divide the sum of the first n_terms by the total.",
    "e = components.pow(2).flatten()[1:]; e.sort(descending=True).values[:n_terms].sum() / e.sum().",
])
def test_top_terms_fraction(check):
    def frac(c, n, *, drop=True, square=True, desc=True):
        e = (c.pow(2) if square else c.abs()).flatten()
        e = e[1:] if drop else e
        return (e.sort(descending=desc).values[:n].sum() / e.sum()).item()

    mistakes = [
        Mistake("mean included", "Leave out the constant-constant term [0, 0]: it is the mean of the function, "
                "not part of its variance.", lambda c, n: frac(c, n, drop=False)),
        Mistake("not squared", "Variance is in the *squared* components.", lambda c, n: frac(c, n, square=False)),
        Mistake("smallest terms", "Sort in decreasing order: the n largest terms.", lambda c, n: frac(c, n, desc=False)),
    ]
    c = check.randn(7, 7, scale=0.1)
    c[0, 0] = 5.0
    c[1, 2] = 2.0
    c[3, 3] = -1.5
    check.case("two big terms and a big mean", c, 2, mistakes=mistakes)
    check.case("random, 5 terms", check.randn(5, 5), 5, mistakes=mistakes)


@exercise(difficulty=3, minutes=20, hints=[
    "Frequency k owns rows/columns 2k-1 and 2k; a neuron's energy at frequency k is every squared "
    "component whose row and column are each either 0 or one of k's two.",
    "Set the [0, 0] (mean) energy to zero first, then for each k sum energy[rows][:, rows] with "
    "rows = {0, 2k-1, 2k}; take the best k and divide by the neuron's total energy.",
    "Loop over k = 1 … (p-1)/2 collecting [neuron] sums, stack, then .max(dim=0): indices + 1 and values / total.",
])
def test_neuron_frequencies(check):
    def variant(c, *, zero_mean=True, one_based=True, rows_only=False):
        p = c.shape[0]
        e = c.pow(2).clone()
        if zero_mean:
            e[0, 0] = 0.0
        total = e.sum(dim=(0, 1))
        out = []
        for k in range(1, (p - 1) // 2 + 1):
            idx = [0, 2 * k - 1, 2 * k]
            out.append(e[[2 * k - 1, 2 * k]].sum(dim=(0, 1)) if rows_only else e[idx][:, idx].sum(dim=(0, 1)))
        best = torch.stack(out).max(dim=0)
        return best.indices + (1 if one_based else 0), best.values / total

    mistakes = [
        Mistake("mean included", "Zero the [0, 0] energy first: the mean of a neuron is not explained by any "
                "frequency, and leaving it in the total shrinks every fraction.",
                lambda c: variant(c, zero_mean=False)),
        Mistake("0-based frequency", "Report frequencies from 1: the best of the stacked sums at index i is k = i + 1.",
                lambda c: variant(c, one_based=False)),
        Mistake("a-terms only", "Count terms with frequency k on either axis (rows and columns 0, 2k-1, 2k), "
                "not only the rows.", lambda c: variant(c, rows_only=True)),
    ]
    p = 7
    B = ref.fourier_basis(p)
    x = torch.arange(p, dtype=torch.float32)
    grids = []
    for k in (2, 3, 1, 2):
        w = 2 * math.pi * k / p
        grids.append(torch.relu(torch.cos(w * x)[:, None] + torch.cos(w * x)[None, :] + 0.3))
    grid = torch.stack(grids, dim=-1).to(check.device) + 0.05 * check.randn(p, p, 4)
    comps = ref.fourier_2d(grid, B.to(check.device))
    check.case("4 ReLU neurons, p = 7", comps, mistakes=mistakes)
    check.case("random components, p = 5", check.randn(5, 5, 3), mistakes=mistakes)


# -- 4. the algorithm -----------------------------------------------------------------------------------


@exercise(difficulty=2, minutes=10, hints=[
    "For each key frequency k, w = 2πk/p; the predictor at input (a, b) and output c is cos(w(a + b - c)).",
    "Build a and b in dataset order (a = arange(p).repeat_interleave(p), b = arange(p).repeat(p)) and c = arange(p).",
    "torch.cos(w[:, None, None] * ((a + b)[None, :, None] - c[None, None, :])) has shape [n_freq, p², p].",
])
def test_cos_predictors(check):
    def variant(p, freqs, sign=-1, two_pi=True, wave=torch.cos):
        a = torch.arange(p).repeat_interleave(p).double()
        b = torch.arange(p).repeat(p).double()
        c = torch.arange(p).double()
        w = (2 * math.pi if two_pi else 1.0) * torch.tensor(freqs, dtype=torch.float64) / p
        return wave(w[:, None, None] * ((a + b)[None, :, None] + sign * c[None, None, :])).float()

    mistakes = [
        Mistake("a + b + c", "The logit of the right answer c = a + b must be largest: use cos(w(a + b - c)), "
                "which is 1 exactly there (a + b + c has the wrong sign).", lambda p, f: variant(p, f, sign=1)),
        Mistake("no 2π", "The angle is w = 2πk/p, not k/p.", lambda p, f: variant(p, f, two_pi=False)),
        Mistake("sin", "The predictor is a cosine: it is 1, its largest value, at c = a + b.",
                lambda p, f: variant(p, f, wave=torch.sin)),
        _float64(ref.cos_predictors, "the fit of the float32 logits by the predictors (in variance_explained)"),
    ]
    check.case("p = 7, k = 1, 3", 7, [1, 3], mistakes=mistakes, atol=1e-4)
    check.case("p = 11, k = 2", 11, [2], mistakes=mistakes, atol=1e-4)


@exercise(difficulty=3, minutes=20, atol=1e-4, hints=[
    "Fit logits ≈ constant + Σ_k β_k predictor_k by least squares, then R² = 1 - residual² / total variance.",
    "Centre the logits and every predictor (subtract their means) so the constant is absorbed; "
    "flatten to a [p²·p, n] design matrix.",
    "torch.linalg.lstsq(X, y[:, None]).solution gives β; R² = 1 - ((y - X β)²).sum() / (y²).sum() with y centred.",
])
def test_variance_explained(check):
    def variant(logits, predictors, centre=True, fit=True, per_row=False, one_mean=False):
        y = (logits - logits.mean(dim=1, keepdim=True) if per_row else logits).flatten().double()
        X = predictors.flatten(1).double().T
        if centre:
            y = y - y.mean()
            X = X - (X.mean() if one_mean else X.mean(dim=0))
        if fit:
            coef = torch.linalg.lstsq(X, y[:, None]).solution
            res = y - (X @ coef).flatten()
        else:
            res = y - X.sum(dim=1)
        return (1 - res.pow(2).sum() / y.pow(2).sum()).item()

    def correlation(logits, predictors):
        y = logits.flatten().double()
        y = y - y.mean()
        x = predictors.sum(0).flatten().double()
        x = x - x.mean()
        return ((y @ x) / (y.norm() * x.norm())).item()

    mistakes = [
        Mistake("not centred", "Centre the logits and each predictor by their overall mean first: the fit has a "
                "constant term, and a constant is not variance to explain.", lambda l, P: variant(l, P, centre=False)),
        Mistake("centred per row", "Subtract one overall mean from the logits, not each pair's own mean: the "
                "question is how much of all the logits' variance the predictors explain.",
                lambda l, P: variant(l, P, per_row=True)),
        Mistake("no fit", "Fit a coefficient per frequency by least squares; the predictors' scale is arbitrary.",
                lambda l, P: variant(l, P, fit=False)),
        Mistake("correlation", "R² is the fraction of variance explained by the fit, 1 - residual²/total, "
                "not the correlation with the summed predictors.", correlation),
        Mistake("one mean for all predictors", "Centre each predictor by its own mean (X.mean(dim=0) over the "
                "p²·p entries, one per predictor), not by one mean over all of them together.",
                lambda l, P: variant(l, P, one_mean=True)),
    ]
    p = 7
    P = ref.cos_predictors(p, [1, 3]).to(check.device)
    logits = 2.0 * P[0] + 0.7 * P[1] + 0.8 * check.randn(p * p, p) + 3.0
    check.case("two frequencies plus noise and an offset", logits, P, mistakes=mistakes)
    check.case("pure noise", check.randn(25, 5) + 1.0, ref.cos_predictors(5, [2]), mistakes=mistakes)
    shifted = P + torch.tensor([1.5, -2.0]).to(P)[:, None, None]
    check.case("predictors with means of their own", logits + 0.5 * P[0] ** 2, shifted, mistakes=mistakes)


# -- 5. ablations and progress measures -------------------------------------------------------------------


@exercise(difficulty=2, minutes=10, hints=[
    "Frequency k is spanned by basis rows 2k-1 (cos) and 2k (sin).",
    "Stack those rows for every k into B_k [2·n_freq, p]; the projector onto their span is B_kᵀ B_k.",
    "rows = [r for k in freqs for r in (2k-1, 2k)]; return basis[rows].T @ basis[rows].",
])
def test_frequency_projector(check):
    def rows(freqs, shift=0):
        return [r + shift for k in freqs for r in (2 * k - 1, 2 * k)]

    mistakes = [
        Mistake("rows off by one", "Row 0 is the constant: frequency k is rows 2k-1 and 2k.",
                lambda B, f: B[rows(f, -1)].T @ B[rows(f, -1)]),
        Mistake("cos only", "Project onto the cos *and* sin rows of each frequency.",
                lambda B, f: B[[2 * k - 1 for k in f]].T @ B[[2 * k - 1 for k in f]]),
        Mistake("outer order", "B_kᵀ B_k is the p × p projector; B_k B_kᵀ is a small identity.",
                lambda B, f: B[rows(f)] @ B[rows(f)].T),
    ]
    check.case("p = 7, k = 1, 3", ref.fourier_basis(7), [1, 3], mistakes=mistakes)
    check.case("p = 11, k = 4", ref.fourier_basis(11), [4], mistakes=mistakes)


def _proj(basis, freqs):
    return ref.frequency_projector(basis, freqs)


@exercise(difficulty=1, minutes=10, hints=[
    "Removing a frequency from a function on Z_p means subtracting its projection onto that frequency.",
    "Each column of W_E is a function of the token; project along the token axis (the rows): P @ W_E.",
    "Return W_E - frequency_projector(basis, freqs) @ W_E.",
])
def test_ablate_frequencies(check):
    mistakes = [
        Mistake("kept instead of removed", "Remove the given frequencies: W_E minus its projection, "
                "not the projection itself (that keeps only them).", lambda W, B, f: _proj(B, f) @ W),
        Mistake("projected the d_model axis", "Project along the token axis: frequency_projector(...) @ W_E. "
                "W_E @ P mixes the residual-stream coordinates instead.", lambda W, B, f: W - W @ _proj(B, f)),
        Mistake("constant removed too", "Leave the constant (row 0 of the basis) alone: only the given "
                "frequencies' cos and sin rows are removed.",
                lambda W, B, f: W - (_proj(B, f) + B[:1].T @ B[:1]) @ W),
    ]
    check.case("p = 7, d = 7", _sparse_fourier(check, 7, 7, [1, 3]), ref.fourier_basis(7), [3], mistakes=mistakes)
    check.case("p = 11, d = 5", _sparse_fourier(check, 11, 5, [2, 4]), ref.fourier_basis(11), [2, 5],
               mistakes=mistakes)


def _pairs(p):
    return torch.arange(p).repeat_interleave(p).double(), torch.arange(p).repeat(p).double()


def _waves(p, freqs, *, sign=1, two_pi=True, blocked=False, normalise=True):
    a, b = _pairs(p)
    cos, sin = [], []
    for k in freqs:
        w = (2 * math.pi if two_pi else 1.0) * k / p
        cos.append(torch.cos(w * (a + sign * b)))
        sin.append(torch.sin(w * (a + sign * b)))
    D = torch.stack(cos + sin if blocked else [r for pair in zip(cos, sin) for r in pair])
    return (D / D.norm(dim=1, keepdim=True) if normalise else D).float()


@exercise(difficulty=2, minutes=10, hints=[
    "Over the p² pairs in dataset order (a slow, b fast), build cos(w(a+b)) and sin(w(a+b)) with w = 2πk/p.",
    "One row each, frequency by frequency: cos for the first k, sin for the first k, cos for the second, …; "
    "then divide every row by its norm.",
    "a = arange(p).repeat_interleave(p), b = arange(p).repeat(p); rows = [cos(w(a+b)), sin(w(a+b)) for each k]; "
    "D = stack(rows); D / D.norm(dim=1, keepdim=True).",
])
def test_sum_directions(check):
    mistakes = [
        Mistake("not normalised", "Scale each row to unit norm (each has norm √(p²/2) before scaling), so that "
                "projecting onto them is D.T @ D.", lambda p, f: _waves(p, f, normalise=False)),
        Mistake("a - b", "The circuit computes a + b: use cos(w(a + b)), not cos(w(a - b)).",
                lambda p, f: _waves(p, f, sign=-1)),
        Mistake("cos block then sin block", "Interleave: cos and sin of the first frequency, then of the "
                "second, and so on.", lambda p, f: _waves(p, f, blocked=True)),
        Mistake("no 2π", "The angle is w = 2πk/p, not k/p.", lambda p, f: _waves(p, f, two_pi=False)),
        _float64(ref.sum_directions, "`D @ logits` (in restricted_logits and excluded_logits)"),
    ]
    check.case("p = 5, k = 1, 2", 5, [1, 2], mistakes=mistakes, atol=1e-5)
    check.case("p = 7, k = 3", 7, [3], mistakes=mistakes, atol=1e-5)


def _grid_logits(check, p, freqs):
    """Logits over the p² pairs with a generalising part in `freqs`, a per-c offset and noise."""
    return 2 * ref.cos_predictors(p, freqs).sum(0).to(check.device) + check.randn(1, p) + check.randn(p * p, p)


def _logit_variants(which):
    """What the typical wrong restricted/excluded logits return; `which` is the exercise being graded."""
    def proj(l, p, f, D=None):
        D = ref.sum_directions(p, f) if D is None else D
        return D.T @ (D @ l)

    def along_c(l, p, f):
        P_c = _proj(ref.fourier_basis(p), f)
        return l @ P_c if which == "restricted" else l - l @ P_c

    right_other = (lambda l, p, f: l - proj(l, p, f)) if which == "restricted" else \
        (lambda l, p, f: l.mean(0, keepdim=True) + proj(l, p, f))
    raw = _waves  # unnormalised directions
    unnormalised = (lambda l, p, f: l.mean(0, keepdim=True) + proj(l, p, f, raw(p, f, normalise=False))) \
        if which == "restricted" else (lambda l, p, f: l - proj(l, p, f, raw(p, f, normalise=False)))
    mistakes = [
        Mistake("restricted and excluded swapped",
                "Restricted logits *keep* only the mean and the key-frequency components over the pairs; "
                "excluded logits *remove* those components.", right_other),
        Mistake("projected along c", "Project over the pairs (a, b), the first axis: D.T @ (D @ logits) with D "
                "from sum_directions. Projecting each row along the output c keeps whatever memorised "
                "peak sits at the label, and that is not the generalising circuit.", along_c),
        Mistake("unnormalised directions", "Use the unit vectors from sum_directions: with unnormalised "
                "cos(w(a+b)) rows, D.T @ D is not a projection.", unnormalised),
    ]
    if which == "restricted":
        mistakes += [
            Mistake("mean dropped", "Keep each output's mean over the pairs (logits.mean(dim=0)) as well as the "
                    "key-frequency components: the constant is part of what the circuit may use.", proj),
            Mistake("one global mean", "Take the mean over the pairs for each output c separately "
                    "(logits.mean(dim=0, keepdim=True)), not one number for the whole tensor.",
                    lambda l, p, f: l.mean() + proj(l, p, f)),
        ]
    else:
        mistakes.append(Mistake("mean removed too", "Remove only the key-frequency components; each output's "
                                "mean over the pairs stays.", lambda l, p, f: l - l.mean(0, keepdim=True) - proj(l, p, f)))
    return mistakes


@exercise(difficulty=2, minutes=15, hints=[
    "Work over the pairs: each column of logits (one output c) is a function of (a, b), a vector of p² values.",
    "Keep that column's mean plus its projection onto the rows D of sum_directions(p, freqs).",
    "D = sum_directions(p, freqs); return logits.mean(dim=0, keepdim=True) + D.T @ (D @ logits).",
])
def test_restricted_logits(check):
    mistakes = _logit_variants("restricted")
    check.case("p = 7, k = 2", _grid_logits(check, 7, [2]), 7, [2], mistakes=mistakes, atol=1e-4)
    check.case("p = 11, k = 1, 4", _grid_logits(check, 11, [1, 4]), 11, [1, 4], mistakes=mistakes, atol=1e-4)


@exercise(difficulty=2, minutes=5, hints=[
    "Excluded logits are the logits with the key-frequency components over the pairs taken out.",
    "Subtract the projection onto sum_directions(p, freqs) from every column; keep the mean.",
    "D = sum_directions(p, freqs); return logits - D.T @ (D @ logits).",
])
def test_excluded_logits(check):
    mistakes = _logit_variants("excluded")
    check.case("p = 7, k = 2", _grid_logits(check, 7, [2]), 7, [2], mistakes=mistakes, atol=1e-4)
    check.case("p = 11, k = 1, 4", _grid_logits(check, 11, [1, 4]), 11, [1, 4], mistakes=mistakes, atol=1e-4)


@exercise(difficulty=2, minutes=10, atol=1e-4, hints=[
    "Excluded loss is measured on the training pairs, but the projection needs the whole p² grid.",
    "Compute excluded_logits(logits, p, freqs) on every pair first, then select the rows train_idx.",
    "F.cross_entropy(excluded_logits(logits, p, freqs)[train_idx].double(), labels[train_idx]).item().",
])
def test_excluded_loss(check):
    def variant(logits, labels, idx, p, f, *, test=False, restricted=False, raw=False):
        if test:
            mask = torch.ones(len(labels), dtype=torch.bool)
            mask[idx] = False
            idx = mask.nonzero().flatten()
        l = logits if raw else (ref.restricted_logits if restricted else ref.excluded_logits)(logits, p, f)
        return F.cross_entropy(l[idx].double(), labels[idx]).item()

    mistakes = [
        Mistake("test data", "Evaluate the excluded loss on the *training* pairs (train_idx): it measures how much "
                "the fit of the training set relies on the key frequencies.",
                lambda *a: variant(*a, test=True)),
        Mistake("restricted instead", "Excluded loss removes the key frequencies; you kept only them "
                "(that is the restricted loss).", lambda *a: variant(*a, restricted=True)),
        Mistake("nothing removed", "Remove the key-frequency components (excluded_logits) before the loss.",
                lambda *a: variant(*a, raw=True)),
        Mistake("all pairs", "Evaluate on the training pairs only (train_idx), not on all p² pairs.",
                lambda logits, labels, idx, p, f: F.cross_entropy(ref.excluded_logits(logits, p, f).double(),
                                                                  labels).item()),
        Mistake("summed, not averaged", "Cross-entropy is the *mean* over the pairs (reduction='mean').",
                lambda logits, labels, idx, p, f: F.cross_entropy(ref.excluded_logits(logits, p, f)[idx].double(),
                                                                  labels[idx], reduction="sum").item()),
    ]
    p = 7
    _, labels = ref.modular_dataset(p)
    idx = torch.randperm(p * p, generator=torch.Generator().manual_seed(1))[:15].sort().values
    check.case("p = 7, 15 training pairs", _grid_logits(check, p, [2]), labels, idx, p, [2], mistakes=mistakes)
    check.case("p = 5, random logits", check.randn(25, 5), ref.modular_dataset(5)[1], torch.arange(0, 25, 3),
               5, [1], mistakes=mistakes)


@exercise(difficulty=1, minutes=5, hints=[
    "Treat all parameters as one long vector and take its L2 norm.",
    "Sum the squares of every tensor in the dict, then take one square root at the end.",
    "math.sqrt(sum(w.pow(2).sum().item() for w in weights.values())).",
])
def test_total_weight_norm(check):
    mistakes = [
        Mistake("sum of norms", "Take one norm of all parameters together: sqrt of the total sum of squares, "
                "not the sum of per-tensor norms.", lambda w: sum(v.norm().item() for v in w.values())),
        Mistake("no sqrt", "Take the square root of the sum of squares.",
                lambda w: sum(v.double().pow(2).sum().item() for v in w.values())),
        Mistake("L1", "Use the L2 norm (squares), not absolute values.",
                lambda w: sum(v.abs().sum().item() for v in w.values())),
        Mistake("matrices only", "Include every parameter, biases too: weight decay shrinks them all.",
                lambda w: math.sqrt(sum(v.double().pow(2).sum().item() for v in w.values() if v.ndim > 1))),
    ]
    check.case("three tensors", {"W_E": check.randn(7, 4), "b": check.randn(4), "W_U": check.randn(4, 5)},
               mistakes=mistakes)
    check.case("one tensor", {"W": check.randn(3, 3)}, mistakes=mistakes)


def _gini_ranked(values, *, start=1, denominator=0):
    x = values.abs().double().sort().values
    n = x.shape[0]
    i = torch.arange(start, n + start, dtype=torch.float64)
    return ((2 * i - n - 1) * x).sum().item() / ((n + denominator) * x.sum().item())


@exercise(difficulty=2, minutes=10, hints=[
    "Gini measures inequality of non-negative amounts: use |values|, sorted in increasing order.",
    "With sorted x_1 ≤ … ≤ x_n: G = Σ_i (2i - n - 1) x_i / (n Σ_i x_i), i from 1.",
    "x = values.abs().sort().values; i = arange(1, n + 1); return ((2*i - n - 1) * x).sum() / (n * x.sum()).",
])
def test_gini(check):
    mistakes = [
        Mistake("unsorted", "Sort the values in increasing order before weighting them by rank.",
                lambda v: _gini_raw(v.abs())),
        Mistake("signed", "Use absolute values: the sign of a Fourier component says nothing about its size.",
                lambda v: _gini_raw(v.sort().values)),
        Mistake("sorted descending", "Sort in *increasing* order (the largest value gets the largest weight).",
                lambda v: _gini_raw(v.abs().sort(descending=True).values)),
        Mistake("ranks from 0", "Ranks run from 1 to n: the weights are 2i - n - 1 for i = 1 … n.",
                lambda v: _gini_ranked(v, start=0)),
        Mistake("divided by n - 1", "Divide by n · Σ|x| (n values), not (n - 1) · Σ|x|.",
                lambda v: _gini_ranked(v, denominator=-1)),
    ]
    check.case("mixed signs", check.randn(9), mistakes=mistakes)
    check.case("one dominant value", torch.tensor([0.1, -3.0, 0.2, 0.05, 0.3]), mistakes=mistakes)
    check.case("all equal", torch.ones(6), mistakes=mistakes)


@exercise(difficulty=1, minutes=5, hints=[
    "Compose the functions you wrote: to_fourier, frequency_norms, gini.",
    "Only the residue rows of W_E belong to Z_p: the grader passes a [p, d] matrix.",
    "return gini(frequency_norms(to_fourier(W_E, basis))).",
])
def test_embedding_gini(check):
    mistakes = [
        Mistake("Gini of raw components", "Take the Gini of the per-frequency norms, not of every Fourier component.",
                lambda W, B: ref.gini((B @ W).flatten())),
        Mistake("no change of basis", "Express W_E in the Fourier basis first (to_fourier).",
                lambda W, B: ref.gini(ref.frequency_norms(W))),
        Mistake("transposed basis", "Change basis with basis @ W_E, not basis.T @ W_E.",
                lambda W, B: ref.gini(ref.frequency_norms(B.T @ W))),
        Mistake("row norms, no Fourier", "The Gini of the *frequency* norms: change to the Fourier basis and take "
                "frequency_norms, not the norms of W_E's rows.", lambda W, B: ref.gini(W.norm(dim=-1))),
        Mistake("constant included", "Leave the constant (row 0 in the Fourier basis) out: frequency_norms "
                "covers frequencies 1 … (p-1)/2.",
                lambda W, B: ref.gini(torch.cat([(B @ W)[:1].norm(dim=-1), ref.frequency_norms(B @ W)]))),
    ]
    check.case("sparse in frequency, p = 11", _sparse_fourier(check, 11, 6, [2, 4]), ref.fourier_basis(11),
               mistakes=mistakes)
    check.case("random, p = 13", check.randn(13, 5), ref.fourier_basis(13), mistakes=mistakes)
