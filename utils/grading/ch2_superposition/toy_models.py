"""Graders for 2.1 "Toy models of superposition".

Every check runs on small seeded random weights or inputs, never on a trained model, and
takes well under a second. Batch generators are random, so they are graded on properties
(shape, range, how often each feature is present, which features co-occur) with a passed-in
torch.Generator, never on exact values.
"""

from __future__ import annotations

import math

import einops
import torch

from solutions.ch2_superposition import toy_models as ref
from utils.grading import Mistake, exercise

# -- helpers ---------------------------------------------------------------------------------


def _relu(t):
    return torch.relu(t)


def _hidden(W, x):
    return einops.einsum(W, x, "inst hidden feat, batch inst feat -> batch inst hidden")


def _readout(W, h):
    return einops.einsum(W, h, "inst hidden feat, batch inst hidden -> batch inst feat")


def _w_hat(W):
    return W / W.norm(dim=1, keepdim=True).clamp_min(1e-8)


def _overlaps(A, B):
    return einops.einsum(A, B, "inst hidden feat, inst hidden other -> inst feat other")


def _off_diagonal(M):
    return M * (1.0 - torch.eye(M.shape[-1], device=M.device))


def _scaled_columns(check, n_inst, hidden, norms):
    """Random directions with the given norms per feature: [inst, hidden, len(norms)]."""
    W = check.randn(n_inst, hidden, len(norms))
    W = W / W.norm(dim=1, keepdim=True)
    return W * torch.tensor(norms, device=W.device)


def _fresh_generator(seed=0):
    return torch.Generator().manual_seed(seed)


def _check_generator_use(check, fn_args, case):
    """Same seed → same batch; the learner must draw from the generator, not the global RNG."""
    first = check.run(*fn_args, _fresh_generator(7), case=case)
    torch.rand(3)  # move the global RNG on, so code that ignores the generator changes its output
    second = check.run(*fn_args, _fresh_generator(7), case=case)
    check.expect(torch.equal(first, second), case=case,
                 message="two calls with generators seeded the same gave different batches",
                 hint="Draw every random number from the `generator` argument: "
                      "torch.rand(shape, generator=generator).",
                 mistake="ignored the generator")


def _present_fraction(batch):
    return (batch != 0).float().mean(dim=(0, 2))


def _check_presence(check, batch, p, *, case, tol=0.03):
    got = _present_fraction(batch).cpu()
    if torch.allclose(got, 1 - p, atol=tol) and not torch.allclose(got, p, atol=tol):
        check.expect(False, case=case, message=f"features are present with probability {got.tolist()} "
                     f"for p = {p.tolist()}", mistake="p inverted",
                     hint="A feature is *present* with probability p: keep it where rand < p (you kept it "
                          "where rand < 1 - p, or zeroed it where rand < p).")
    check.expect(torch.allclose(got, p, atol=tol), case=case,
                 message=f"fraction of non-zero features per instance is {[round(v, 3) for v in got.tolist()]}, "
                         f"expected about {p.tolist()}",
                 hint="Each feature of instance k must be present (non-zero) with probability "
                      "feature_probability[k], independently of everything else.",
                 mistake="wrong presence rate")


def _check_shape(check, batch, shape, case):
    check.expect(isinstance(batch, torch.Tensor) and tuple(batch.shape) == shape, case=case,
                 message=f"expected a tensor of shape {shape}, got "
                         f"{tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__}",
                 hint="The batch is [batch, inst, feat]: one row of features per example and instance.",
                 mistake="wrong shape")
    check.expect(batch.dtype == torch.float32, case=case,
                 message=f"expected dtype float32 (the model's weights are float32), got {batch.dtype}",
                 hint="torch.rand gives float32 by default: drop the dtype=torch.float64 (or .double()), so the "
                      "batch can be multiplied with the model's weights.", mistake="not float32")


def _presence_correlation(on: torch.Tensor) -> float:
    """The largest mean |correlation| between two features' presence, over instances: about 0 when each
    feature is drawn on its own, 1 when one draw decides every feature of an example."""
    worst = 0.0
    for k in range(on.shape[1]):
        x = on[:, k].float()
        x = x - x.mean(0)
        cov = x.T @ x
        norm = cov.diagonal().clamp_min(1e-12).sqrt()
        corr = cov / norm[:, None] / norm[None, :]
        off = corr[~torch.eye(corr.shape[0], dtype=torch.bool)]
        if bool((on[:, k].float().mean(0) < 1).all()):  # at p = 1 every feature is always on
            worst = max(worst, off.abs().mean().item())
    return worst


def _check_independent_features(check, batch, case):
    corr = _presence_correlation((batch != 0).cpu())
    check.expect(corr < 0.1, case=case,
                 message=f"the features of an example are present together far more than chance "
                         f"(mean |correlation| of presence {corr:.2f}, expected about 0)",
                 hint="Draw presence separately for every feature, a [batch, inst, feat] tensor of random numbers, "
                      "not one draw per example shared by all its features.", mistake="one draw per example")


# -- the toy model ------------------------------------------------------------------------------

_P = torch.tensor([0.8, 0.3, 0.05])


@exercise(difficulty=1, minutes=10, hints=[
    "Draw two tensors of shape [batch, inst, feat] from the generator: one for the values, one to decide "
    "which features are present.",
    "A feature is present where `torch.rand(shape, generator=generator) < p`, with p broadcast over the "
    "instance axis: feature_probability[None, :, None].",
    "`torch.where(present, values, 0.0)` keeps the values of present features and zeroes the rest.",
])
def test_generate_batch(check):
    case = "4000 examples, 3 instances, 8 features"
    batch = check.run(_P.to(check.device), 4000, 8, _fresh_generator(), case=case)
    _check_shape(check, batch, (4000, 3, 8), case)
    check.expect(bool(((batch >= 0) & (batch <= 1)).all()), case=case, message="values outside [0, 1]",
                 hint="A present feature's value is uniform in [0, 1]: torch.rand, not torch.randn.",
                 mistake="values outside [0, 1]")
    _check_presence(check, batch, _P, case=case)
    _check_independent_features(check, batch, case)
    nonzero = batch[batch != 0]
    check.expect(abs(nonzero.mean().item() - 0.5) < 0.03 and nonzero.std().item() > 0.25, case=case,
                 message=f"present values have mean {nonzero.mean().item():.3f}, std {nonzero.std().item():.3f}; "
                         "expected uniform on [0, 1] (mean 0.5, std 0.29)",
                 hint="Present features need their own uniform random value, not a constant 1 or the "
                      "random number you compared with p.",
                 mistake="values not uniform")
    _check_generator_use(check, (_P.to(check.device), 50, 4), "same generator seed twice")


def _sweep_variant(kind):
    def variant(n_instances, p_min):
        if kind == "linear":
            return torch.linspace(1.0, p_min, n_instances)
        if kind == "reversed":
            return p_min ** torch.linspace(1.0, 0.0, n_instances)
        return p_min ** (torch.arange(n_instances) / n_instances)
    return variant


@exercise(difficulty=1, minutes=5, hints=[
    "Evenly spaced on a log scale means the *exponent* is evenly spaced: p = p_min ** t for t from 0 to 1.",
    "torch.linspace(0, 1, n_instances) gives the exponents, endpoints included.",
    "`p_min ** torch.linspace(0.0, 1.0, n_instances)` starts at 1 (dense) and ends at p_min.",
])
def test_sparsity_sweep(check):
    mistakes = [
        Mistake("linear spacing", "Space the probabilities evenly on a *log* scale: p_min ** t with t evenly "
                "spaced, not evenly spaced probabilities.", _sweep_variant("linear")),
        Mistake("reversed", "Start dense (p = 1) and end at p_min.", _sweep_variant("reversed")),
        Mistake("endpoint missing", "Include both endpoints: the last instance has p = p_min exactly "
                "(torch.linspace includes its end; arange does not).", _sweep_variant("arange")),
    ]
    check.case("10 instances down to 1/50", 10, 0.02, mistakes=mistakes)
    check.case("4 instances down to 1/1000", 4, 1e-3, mistakes=mistakes)


def _forward_variant(*, relu_out=True, bias=True, bias_after=False, transposed=False, relu_hidden=False):
    def variant(W, b, x):
        if transposed:
            h = einops.einsum(W, x, "inst feat hidden, batch inst feat -> batch inst hidden")
            out = einops.einsum(W, h, "inst feat hidden, batch inst hidden -> batch inst feat")
        else:
            h = _hidden(W, x)
            out = _readout(W, torch.relu(h) if relu_hidden else h)
        if bias and not bias_after:
            out = out + b
        if relu_out:
            out = torch.relu(out)
        if bias_after:
            out = out + b
        return out
    return variant


@exercise(difficulty=1, minutes=10, hints=[
    "Two matrix products with the same W: h = W x squeezes the features into the hidden space, and W^T h "
    "reads them back out.",
    "With an instance axis use einops.einsum: 'inst hidden feat, batch inst feat -> batch inst hidden', then "
    "'inst hidden feat, batch inst hidden -> batch inst feat'.",
    "Add the bias b (it broadcasts over the batch) and only then apply the ReLU.",
])
def test_toy_forward(check):
    mistakes = [
        Mistake("missing ReLU", "The model ends with a ReLU: x' = ReLU(W^T W x + b).", _forward_variant(relu_out=False)),
        Mistake("missing bias", "Add the bias b before the ReLU.", _forward_variant(bias=False)),
        Mistake("bias after ReLU", "Add b *before* the ReLU: ReLU(W^T W x + b).", _forward_variant(bias_after=True)),
        Mistake("W vs W^T", "W has shape [inst, hidden, feat]: compress with W (contract over feat), then read "
                "out with W^T (contract over hidden). You used W^T first.", _forward_variant(transposed=True)),
        Mistake("ReLU on the hidden layer", "This model has no non-linearity in the hidden layer (that is the "
                "neuron model, later): only the output has a ReLU.", _forward_variant(relu_hidden=True)),
    ]
    check.case("square W (4 into 4)", check.randn(2, 4, 4), check.randn(2, 4, scale=0.5), check.randn(6, 2, 4),
               mistakes=mistakes)
    check.case("3 instances, 5 features into 2 dims", check.randn(3, 2, 5), check.randn(3, 5, scale=0.5),
               check.randn(7, 3, 5).abs(), mistakes=mistakes)


def _mse_variant(kind):
    def variant(out, x, importance):
        err = (x - out) ** 2
        if kind == "no importance":
            return err.sum(-1).mean(0)
        if kind == "importance squared":
            return ((importance * (x - out)) ** 2).sum(-1).mean(0)
        weighted = importance * err
        if kind == "mean over features":
            return weighted.mean(dim=(0, 2))
        if kind == "mean over instances":
            return weighted.sum(-1).mean()
        if kind == "sum over batch":
            return weighted.sum(dim=(0, 2))
        raise ValueError(kind)
    return variant


@exercise(difficulty=1, minutes=10, hints=[
    "Square the error first, then weight it: importance * (x - out) ** 2.",
    "Sum over the feature axis, average over the batch axis, and keep the instance axis.",
    "`(importance * (x - out) ** 2).sum(-1).mean(0)` has shape [inst].",
])
def test_importance_weighted_mse(check):
    mistakes = [
        Mistake("importance not applied", "Weight each feature's squared error by its importance.",
                _mse_variant("no importance")),
        Mistake("importance applied before squaring", "Weight the *squared* error: importance * (x - out)**2, "
                "not (importance * (x - out))**2, which squares the importance too.",
                _mse_variant("importance squared")),
        Mistake("mean over features", "Sum over features (each feature's error counts in full) and average "
                "only over the batch.", _mse_variant("mean over features")),
        Mistake("mean over instances", "Keep one loss per instance (shape [inst]): don't average the "
                "instances together.", _mse_variant("mean over instances")),
        Mistake("sum over batch", "Average over the batch (mean), so the loss doesn't grow with the batch size.",
                _mse_variant("sum over batch")),
    ]
    importance = (0.9 ** torch.arange(5.0)).expand(3, 5).to(check.device)
    check.case("importance 0.9^i", check.randn(6, 3, 5).abs(), check.randn(6, 3, 5).abs(), importance,
               mistakes=mistakes)
    check.case("importance differs by instance", check.randn(4, 2, 3), check.randn(4, 2, 3),
               check.randn(2, 3).abs() + 0.2, mistakes=mistakes)


# -- geometry ---------------------------------------------------------------------------------------


@exercise(difficulty=1, minutes=5, hints=[
    "Feature i's direction is the column W[:, :, i]: a vector in the hidden space.",
    "Take the length over the hidden axis (dim=1), keeping instances and features.",
    "`W.norm(dim=1)`.",
])
def test_feature_norms(check):
    mistakes = [
        Mistake("squared norm", "Return the norm itself, not its square (take the square root).",
                lambda W: (W ** 2).sum(1)),
        Mistake("norm over features", "Each feature is a column: take the norm over the hidden axis "
                "(dim=1), not over features.", lambda W: W.norm(dim=2)),
        Mistake("L1 norm", "Use the Euclidean (L2) norm, not the sum of absolute values.",
                lambda W: W.abs().sum(1)),
    ]
    check.case("5 features in 2 dims", check.randn(3, 2, 5), mistakes=mistakes)
    check.case("4 features in 3 dims", check.randn(2, 3, 4), mistakes=mistakes)


@exercise(difficulty=1, minutes=5, hints=[
    "Compute every feature's norm (your feature_norms) and compare it with the threshold.",
    "A feature counts if its norm is strictly greater than the threshold; count per instance.",
    "`(feature_norms(W) > threshold).sum(dim=-1)`.",
])
def test_count_represented(check):
    mistakes = [
        Mistake("counted the dropped features", "Count features whose norm is *above* the threshold.",
                lambda W, t: (W.norm(dim=1) <= t).sum(-1)),
        Mistake("squared norm", "Compare the norm, not the squared norm, with the threshold.",
                lambda W, t: ((W ** 2).sum(1) > t).sum(-1)),
        Mistake("norm over features", "Feature norms are over the hidden axis (dim=1).",
                lambda W, t: (W.norm(dim=2) > t).sum(-1)),
    ]
    W = _scaled_columns(check, 3, 3, [0.05, 0.6, 0.65, 0.68, 0.9, 1.1])
    check.case("norms from 0.05 to 1.1", W, 0.5, mistakes=mistakes)
    W = _scaled_columns(check, 2, 3, [1.0, 0.62, 0.2, 0.68])
    check.case("threshold 0.5, 3 dims", W, 0.5, mistakes=mistakes)
    at = torch.tensor([[[0.5, 1.0, 0.0, 0.9], [0.0, 0.0, 0.75, 0.0]]]).to(check.device)  # norms 0.5, 1, 0.75, 0.9
    check.case("a feature exactly at the threshold", at, 0.5, mistakes=[*mistakes, Mistake(
        "at least, not above", "A feature counts when its norm is strictly *above* the threshold (>), not at it.",
        lambda W, t: (W.norm(dim=1) >= t).sum(-1))])


def _angles_variant(kind):
    def variant(W):
        angles = torch.atan2(W[:, 1], W[:, 0])
        if kind == "radians":
            ordered = angles.sort(-1).values
            return torch.cat([ordered, ordered[:, :1] + 2 * math.pi], -1).diff(dim=-1)
        degrees = torch.rad2deg(angles)
        if kind == "no wrap":
            return degrees.sort(-1).values.diff(dim=-1)
        if kind == "unsorted":
            return torch.cat([degrees, degrees[:, :1]], -1).diff(dim=-1) % 360
        raise ValueError(kind)
    return variant


@exercise(difficulty=2, minutes=15, hints=[
    "Each feature's direction has an angle atan2(y, x) in the plane; neighbours are neighbours *by angle*, "
    "not by feature index.",
    "Sort the angles per instance, take differences between consecutive ones, and add the gap from the "
    "last back round to the first (first + 360 degrees).",
    "`a = rad2deg(atan2(W[:, 1], W[:, 0])).sort(-1).values; torch.cat([a, a[:, :1] + 360], -1).diff(dim=-1)`.",
])
def test_neighbour_angles(check):
    mistakes = [
        Mistake("radians", "Return degrees (torch.rad2deg), so a pentagon shows 72.", _angles_variant("radians")),
        Mistake("no wrap-around", "There are as many gaps as features: include the gap from the last angle "
                "round to the first (add 360 degrees to the first).", _angles_variant("no wrap")),
        Mistake("unsorted", "Sort the angles first: neighbours around the circle need not be neighbouring "
                "feature indices.", _angles_variant("unsorted")),
    ]

    def case(name, W):
        """Any starting feature is right: compare each row of gaps turned to start where the reference's does."""
        got, expected = check.run(W, case=name), ref.neighbour_angles(W)
        turned = [Mistake(m.name, m.hint, lambda W, m=m: _rotated_like(m.output(W), expected)) for m in mistakes]
        check.compare(_rotated_like(got, expected), expected, case=name, inputs=((W,), {}), mistakes=turned)

    case("5 random features", check.randn(3, 2, 5))
    angles = torch.tensor([[0.3, 2.9, 1.1, 4.2], [5.0, 0.1, 3.3, 1.9]]).to(check.device)
    W = torch.stack([angles.cos(), angles.sin()], dim=1) * (1 + check.randn(2, 1, 4).abs())
    case("4 features, shuffled order, different lengths", W)


def _rotated_like(got, expected):
    """`got` with each row rolled to best match `expected`'s row (unchanged if it isn't comparable)."""
    if not (isinstance(got, torch.Tensor) and got.shape == expected.shape and got.ndim == 2
            and got.is_floating_point()):
        return got
    rows = [min((g.roll(-k) for k in range(g.shape[-1])), key=lambda r: float((r - e.to(r)).abs().max()))
            for g, e in zip(got, expected)]
    return torch.stack(rows)


@exercise(difficulty=1, minutes=5, hints=[
    "Entry (i, j) is the dot product of column i with column j of W, per instance.",
    "Contract over the hidden axis: einsum 'inst hidden feat, inst hidden feat_out -> inst feat feat_out'.",
    "`W.transpose(1, 2) @ W`.",
])
def test_gram_matrix(check):
    mistakes = [
        Mistake("W W^T", "That is W W^T, [hidden, hidden]. The interference matrix is W^T W: dot products "
                "between feature columns, [feat, feat].", lambda W: W @ W.transpose(1, 2)),
        Mistake("cosines", "Use the raw dot products W_i . W_j (the lengths matter), not cosines.",
                lambda W: _overlaps(_w_hat(W), _w_hat(W))),
        Mistake("squared entries", "Return W_i . W_j itself, not its square.", lambda W: _overlaps(W, W) ** 2),
    ]
    check.case("5 features in 2 dims", check.randn(3, 2, 5), mistakes=mistakes)
    check.case("3 features in 4 dims", check.randn(2, 4, 3), mistakes=mistakes)


@exercise(difficulty=2, minutes=10, hints=[
    "Normalise each feature's column to unit length (W_hat), then take dot products W_hat_i . W_j for every "
    "pair: a [feat, feat] matrix per instance.",
    "Square those dot products and sum over j, leaving out j = i (zero the diagonal first).",
    "`M = einsum(W_hat, W, 'inst hidden i, inst hidden j -> inst i j'); (M**2 * (1 - eye)).sum(-1)`.",
])
def test_superposition_measure(check):
    mistakes = [
        Mistake("included i", "Leave out j = i: feature i's own norm is not interference. Zero the diagonal "
                "before summing.", lambda W: (_overlaps(_w_hat(W), W) ** 2).sum(-1)),
        Mistake("not normalised", "Project the others onto the *unit* vector W_hat_i = W_i / ||W_i||, not onto "
                "W_i itself.", lambda W: _off_diagonal(_overlaps(W, W) ** 2).sum(-1)),
        Mistake("both normalised", "Normalise only W_i, not W_j: a short (nearly dropped) feature j interferes "
                "less, and the measure should show that.",
                lambda W: _off_diagonal(_overlaps(_w_hat(W), _w_hat(W)) ** 2).sum(-1)),
        Mistake("not squared", "Square each dot product before summing, so that overlaps of either sign count.",
                lambda W: _off_diagonal(_overlaps(_w_hat(W), W)).sum(-1)),
    ]
    check.case("5 features in 2 dims", check.randn(3, 2, 5), mistakes=mistakes)
    check.case("6 features in 3 dims, varied norms", _scaled_columns(check, 2, 3, [0.1, 0.5, 1.0, 1.2, 0.8, 0.3]),
               mistakes=mistakes)


@exercise(difficulty=1, minutes=5, hints=[
    "||W||_F^2 is the sum of the squares of every entry of an instance's W.",
    "Divide the hidden size W.shape[1] by it, per instance.",
    "`W.shape[1] / (W ** 2).sum(dim=(1, 2))`.",
])
def test_dimensions_per_feature(check):
    mistakes = [
        Mistake("inverted", "Dimensions *per feature*: hidden size divided by ||W||_F^2, not the other way.",
                lambda W: (W ** 2).sum((1, 2)) / W.shape[1]),
        Mistake("Frobenius norm not squared", "Use the *squared* Frobenius norm (about one per represented "
                "feature).", lambda W: W.shape[1] / W.norm(dim=(1, 2))),
        Mistake("divided the feature count", "The numerator is the number of hidden dimensions m = W.shape[1], "
                "not the number of features.", lambda W: W.shape[2] / (W ** 2).sum((1, 2))),
    ]
    check.case("5 features in 2 dims", check.randn(3, 2, 5), mistakes=mistakes)
    check.case("20 features in 4 dims", check.randn(2, 4, 20, scale=0.4), mistakes=mistakes)


@exercise(difficulty=2, minutes=15, hints=[
    "Numerator: ||W_i||^2. Denominator: sum over *all* j (including i) of (W_hat_i . W_j)^2.",
    "Build the [feat, feat] matrix of W_hat_i . W_j with einsum, square it, sum over j. The j = i term "
    "equals ||W_i||^2, so D_i <= 1.",
    "`n2 = (W**2).sum(1); M = einsum(W / sqrt(n2)[:, None], W, 'inst hidden i, inst hidden j -> inst i j'); "
    "n2 / (M**2).sum(-1)`.",
])
def test_feature_dimensionality(check):
    def _dims(numerator, overlaps, off_diag=False):
        M = overlaps ** 2
        return numerator / (_off_diagonal(M) if off_diag else M).sum(-1)

    mistakes = [
        Mistake("W_i instead of W_hat_i", "Normalise feature i in the denominator: (W_hat_i . W_j)^2 with "
                "W_hat_i = W_i / ||W_i||, not (W_i . W_j)^2.",
                lambda W: _dims((W ** 2).sum(1), _overlaps(W, W))),
        Mistake("left out j = i", "The denominator sums over all j *including* i; that term (||W_i||^2) is "
                "what keeps D_i at most 1.", lambda W: _dims((W ** 2).sum(1), _overlaps(_w_hat(W), W), True)),
        Mistake("cosines", "Normalise only W_i in the denominator, not W_j.",
                lambda W: _dims((W ** 2).sum(1), _overlaps(_w_hat(W), _w_hat(W)))),
        Mistake("numerator not squared", "The numerator is the *squared* norm ||W_i||^2.",
                lambda W: _dims(W.norm(dim=1), _overlaps(_w_hat(W), W))),
    ]
    check.case("5 features in 2 dims", check.randn(3, 2, 5), mistakes=mistakes, atol=1e-4)
    check.case("8 features in 3 dims, varied norms",
               _scaled_columns(check, 2, 3, [0.2, 0.5, 1.0, 1.3, 0.8, 0.4, 1.1, 0.7]), mistakes=mistakes, atol=1e-4)


@exercise(difficulty=1, minutes=10, hints=[
    "For each entry of dims, find its distance to the *nearest* value in `values`.",
    "`(dims.unsqueeze(-1) - values).abs().min(dim=-1).values` gives that distance for every entry.",
    "Compare with tol and average the booleans as floats: `(distance < tol).float().mean()`.",
])
def test_sticky_fraction(check):
    def _distance(dims, values, signed=False):
        diff = dims.unsqueeze(-1) - values
        return diff if signed else diff.abs()

    mistakes = [
        Mistake("count, not fraction", "Return the fraction (a mean), not the number of entries.",
                lambda d, v, t: (_distance(d, v).min(-1).values < t).float().sum()),
        Mistake("signed distance", "Take the absolute distance |dims - value|: an entry far *below* a value "
                "is not close to it.", lambda d, v, t: (_distance(d, v, True).min(-1).values < t).float().mean()),
        Mistake("close to every value", "An entry is sticky if it is near *any* (the nearest) value, not all "
                "of them: use min over the values.",
                lambda d, v, t: (_distance(d, v).max(-1).values < t).float().mean()),
    ]
    values = torch.tensor([1.0, 0.75, 2 / 3, 0.5, 0.4, 0.375, 1 / 3, 0.0]).to(check.device)
    dims = torch.tensor([[0.99, 0.51, 0.45, 0.2, 0.66], [0.02, 0.31, 0.74, 0.9, 0.6]]).to(check.device)
    check.case("hand-made dimensionalities", dims, values, 0.03, mistakes=mistakes)
    check.case("random dimensionalities", check.randn(3, 40).abs().clamp(max=1), values, 0.02, mistakes=mistakes)


# -- correlated features ----------------------------------------------------------------------------

_PAIR_P = torch.tensor([0.4, 0.2, 0.05])


@exercise(difficulty=2, minutes=10, hints=[
    "Decide presence once per *pair* ([batch, inst, n_pairs]) and then copy that decision to both features "
    "of the pair.",
    "`einops.repeat(pair_on, 'batch inst pair -> batch inst (pair two)', two=2)` turns per-pair decisions into "
    "per-feature ones in the order 0, 0, 1, 1, ...",
    "Values are drawn separately for every feature: torch.rand((batch, inst, 2 * n_pairs), generator=...).",
])
def test_correlated_batch(check):
    case = "4000 examples, 3 instances, 3 pairs"
    batch = check.run(_PAIR_P.to(check.device), 4000, 3, _fresh_generator(), case=case)
    _check_shape(check, batch, (4000, 3, 6), case)
    check.expect(bool(((batch >= 0) & (batch <= 1)).all()), case=case, message="values outside [0, 1]",
                 hint="Present values are uniform in [0, 1].", mistake="values outside [0, 1]")
    on = (batch != 0).reshape(4000, 3, 3, 2)
    together = (on[..., 0] == on[..., 1]).float().mean().item()
    check.expect(together > 0.999, case=case,
                 message=f"features 2k and 2k+1 agree on being present in only {together:.1%} of cases",
                 hint="The two features of a pair are present together or absent together: draw one presence "
                      "decision per pair and repeat it for both features (pairs are features 2k, 2k+1).",
                 mistake="pairs not correlated")
    _check_presence(check, batch, _PAIR_P, case=case)
    pairs = batch.reshape(4000, 3, 3, 2)
    both_on = on[..., 0] & on[..., 1]
    same = (pairs[..., 0] == pairs[..., 1])[both_on].float().mean().item() if bool(both_on.any()) else 0.0
    check.expect(same < 0.01, case=case,
                 message=f"in {same:.0%} of the pairs present together, both features have the same value",
                 hint="The pair shares its presence, not its values: draw a value for every feature "
                      "([batch, inst, 2 * n_pairs]), not one per pair.", mistake="pair shares one value")
    check.expect(abs(batch[batch != 0].std().item() - 0.2887) < 0.03, case=case,
                 message="present values are not spread uniformly over [0, 1]",
                 hint="Each present feature gets its own uniform value.", mistake="values not uniform")
    _check_generator_use(check, (_PAIR_P.to(check.device), 50, 2), "same generator seed twice")


@exercise(difficulty=2, minutes=15, hints=[
    "Per pair: decide whether the pair is active (probability 2p), then flip a fair coin for which of its two "
    "features is present.",
    "Build the two presence masks `active & coin` and `active & ~coin`, stack them on a last axis of size two, "
    "and flatten (pair, two) into the feature axis.",
    "`einops.rearrange(torch.stack([a & c, a & ~c], -1), 'batch inst pair two -> batch inst (pair two)')`; "
    "then torch.where(present, values, 0).",
])
def test_anticorrelated_batch(check):
    case = "4000 examples, 3 instances, 3 pairs"
    batch = check.run(_PAIR_P.to(check.device), 4000, 3, _fresh_generator(), case=case)
    _check_shape(check, batch, (4000, 3, 6), case)
    check.expect(bool(((batch >= 0) & (batch <= 1)).all()), case=case, message="values outside [0, 1]",
                 hint="Present values are uniform in [0, 1].", mistake="values outside [0, 1]")
    on = (batch != 0).reshape(4000, 3, 3, 2)
    both = (on[..., 0] & on[..., 1]).float().mean().item()
    check.expect(both == 0.0, case=case,
                 message=f"both features of a pair are present in {both:.2%} of cases",
                 hint="Anticorrelated features never co-occur: per pair, first decide whether the pair is active, "
                      "then pick exactly *one* of its two features.",
                 mistake="pairs co-occur")
    got = _present_fraction(batch).cpu()
    check.expect(not torch.allclose(got, _PAIR_P / 2, atol=0.02), case=case,
                 message=f"each feature is present with probability {[round(v, 3) for v in got.tolist()]}: half "
                         "of what it should be",
                 hint="The pair must be active with probability 2p, so that each of its two features is present "
                      "with probability p.", mistake="pair active with probability p")
    _check_presence(check, batch, _PAIR_P, case=case)
    # which feature of an active pair is on: a fair coin, flipped for every pair separately
    active = on[..., 0] | on[..., 1]
    first = (on[..., 0].float() * active).sum((0, 2)) / active.float().sum((0, 2)).clamp_min(1)
    check.expect(bool(((first.cpu() - 0.5).abs() < 0.06).all()), case=case,
                 message=f"the first feature of an active pair is chosen in {[round(v, 3) for v in first.tolist()]} "
                         "of cases per instance, expected about 0.5",
                 hint="Choose which feature of an active pair is present with a *fair* coin (rand < 0.5), "
                      "whatever p is: p already sets how often the pair is active.", mistake="biased coin")
    both_active = active[..., 0] & active[..., 1]
    agree = (on[..., 0, 0] == on[..., 1, 0])[both_active].float().mean().item()
    check.expect(agree < 0.6, case=case,
                 message=f"when pairs 0 and 1 are both active, they pick the same side in {agree:.0%} of cases "
                         "(expected about 50%)",
                 hint="Flip a separate coin for every pair ([batch, inst, n_pairs]), not one per example.",
                 mistake="one coin for all pairs")
    _check_generator_use(check, (_PAIR_P.to(check.device), 50, 2), "same generator seed twice")


@exercise(difficulty=1, minutes=10, hints=[
    "Pair k is features 2k and 2k+1: split the feature axis into (pair, two).",
    "`einops.rearrange(W, 'inst hidden (pair two) -> two inst pair hidden', two=2)` gives the first and second "
    "feature of every pair.",
    "`torch.cosine_similarity(first, second, dim=-1)`.",
])
def test_pair_cosines(check):
    mistakes = [
        Mistake("dot product, not cosine", "Divide by both norms: cosine similarity, not the raw dot product.",
                lambda W: (W[..., 0::2] * W[..., 1::2]).sum(1)),
        Mistake("wrong pairing", "Pairs are neighbours, features 2k and 2k+1, not k and k + n_pairs.",
                lambda W: torch.cosine_similarity(*W.chunk(2, dim=-1), dim=1)),
        Mistake("absolute value", "Keep the sign: an antipodal pair has cosine -1, and that's what we look for.",
                lambda W: torch.cosine_similarity(W[..., 0::2], W[..., 1::2], dim=1).abs()),
    ]
    check.case("3 pairs in 2 dims", check.randn(3, 2, 6), mistakes=mistakes)
    check.case("2 pairs in 3 dims, varied norms", _scaled_columns(check, 2, 3, [0.5, 1.5, 1.0, 0.2]) ,
               mistakes=mistakes)


# -- a privileged basis ---------------------------------------------------------------------------------


def _neuron_variant(*, relu_hidden=True, relu_out=True, bias=True, bias_after=False):
    def variant(W, b, x):
        pre = _hidden(W, x)
        out = _readout(W, torch.relu(pre) if relu_hidden else pre)
        if bias and not bias_after:
            out = out + b
        out = torch.relu(out) if relu_out else out
        return out + b if bias_after else out
    return variant


@exercise(difficulty=1, minutes=10, hints=[
    "Same two products as toy_forward, with a ReLU on the hidden layer as well (and no hidden bias).",
    "h = ReLU(W x) with einsum 'inst neuron feat, batch inst feat -> batch inst neuron'.",
    "Then ReLU(W^T h + b) with 'inst neuron feat, batch inst neuron -> batch inst feat'.",
])
def test_neuron_forward(check):
    mistakes = [
        Mistake("missing hidden ReLU", "The hidden layer has its own ReLU: h = ReLU(W x). Without it, this is "
                "the first model again.", _neuron_variant(relu_hidden=False)),
        Mistake("missing output ReLU", "The output keeps its ReLU: ReLU(W^T h + b).", _neuron_variant(relu_out=False)),
        Mistake("missing output bias", "Add b before the output ReLU.", _neuron_variant(bias=False)),
        Mistake("bias after the output ReLU", "Add b *before* the output ReLU: ReLU(W^T h + b).",
                _neuron_variant(bias_after=True)),
    ]
    check.case("10 features, 5 neurons", check.randn(3, 5, 10), check.randn(3, 10, scale=0.5),
               check.randn(4, 3, 10).abs(), mistakes=mistakes)
    check.case("signed inputs", check.randn(2, 3, 4), check.randn(2, 4), check.randn(5, 2, 4), mistakes=mistakes)


@exercise(difficulty=1, minutes=10, hints=[
    "Each neuron is a row W[:, n, :] of weights over the features.",
    "Square the weights, then divide each neuron's largest squared weight by the sum of its squared weights.",
    "`sq = W ** 2; sq.max(dim=-1).values / sq.sum(dim=-1)`.",
])
def test_neuron_monosemanticity(check):
    mistakes = [
        Mistake("per feature", "The share is per *neuron*: reduce over the feature axis (the last one), not over "
                "neurons.", lambda W: (W ** 2).max(1).values / (W ** 2).sum(1)),
        Mistake("absolute values", "Use squared weights, not absolute values.",
                lambda W: W.abs().max(-1).values / W.abs().sum(-1)),
        Mistake("not normalised", "Divide by the neuron's total squared weight, so the share is between 0 and 1.",
                lambda W: (W ** 2).max(-1).values),
    ]
    check.case("5 neurons, 10 features", check.randn(3, 5, 10), mistakes=mistakes)
    W = check.randn(2, 3, 4, scale=0.1)
    W[:, 0, 1] = 2.0
    check.case("one monosemantic neuron", W, mistakes=mistakes)


# -- computation in superposition ------------------------------------------------------------------


@exercise(difficulty=1, minutes=5, hints=[
    "Exactly like generate_batch, except that a present value is uniform in [-1, 1].",
    "`2 * torch.rand(shape, generator=generator) - 1` is uniform in [-1, 1].",
    "Presence: `torch.rand(shape, generator=generator) < feature_probability[None, :, None]`.",
])
def test_signed_batch(check):
    case = "4000 examples, 3 instances, 8 features"
    batch = check.run(_P.to(check.device), 4000, 8, _fresh_generator(), case=case)
    _check_shape(check, batch, (4000, 3, 8), case)
    check.expect(bool((batch.abs() <= 1).all()), case=case, message="values outside [-1, 1]",
                 hint="Present values are uniform in [-1, 1].", mistake="values outside [-1, 1]")
    nonzero = batch[batch != 0]
    negative = (nonzero < 0).float().mean().item()
    check.expect(abs(negative - 0.5) < 0.05, case=case,
                 message=f"{negative:.1%} of the present values are negative, expected about half",
                 hint="Values are uniform in [-1, 1], so half of them are negative: 2 * rand - 1.",
                 mistake="no negative values")
    check.expect(nonzero.abs().max().item() > 0.95 and abs(nonzero.std().item() - 0.577) < 0.04, case=case,
                 message=f"present values have std {nonzero.std().item():.3f}; uniform on [-1, 1] has 0.577",
                 hint="Scale and shift rand to the whole of [-1, 1]: 2 * rand - 1, not rand - 0.5.",
                 mistake="values in [-0.5, 0.5]")
    _check_presence(check, batch, _P, case=case)
    _check_independent_features(check, batch, case)
    _check_generator_use(check, (_P.to(check.device), 50, 4), "same generator seed twice")


def _abs_variant(*, relu_hidden=True, bias=True, relu_out=True, bias_after=False, tied=False):
    def variant(W_in, W_out, b, x):
        pre = einops.einsum(W_in, x, "inst neuron feat, batch inst feat -> batch inst neuron")
        h = torch.relu(pre) if relu_hidden else pre
        read = W_in.transpose(1, 2) if tied else W_out
        out = einops.einsum(read, h, "inst feat neuron, batch inst neuron -> batch inst feat")
        if bias and not bias_after:
            out = out + b
        out = torch.relu(out) if relu_out else out
        return out + b if bias_after else out
    return variant


@exercise(difficulty=1, minutes=10, hints=[
    "Two layers with separate weights: hidden = ReLU(W_in x), then out = ReLU(W_out hidden + b).",
    "einsum 'inst neuron feat, batch inst feat -> batch inst neuron' for the first layer and "
    "'inst feat neuron, batch inst neuron -> batch inst feat' for the second.",
    "Both layers end with a ReLU; only the output has a bias, added before its ReLU.",
])
def test_abs_forward(check):
    mistakes = [
        Mistake("missing hidden ReLU", "Apply a ReLU to the hidden layer: without it the model is linear up to "
                "the output ReLU, and cannot compute |x| for negative x.", _abs_variant(relu_hidden=False)),
        Mistake("missing output ReLU", "The output has a ReLU too: ReLU(W_out h + b). With a negative bias it "
                "filters out the interference between features.", _abs_variant(relu_out=False)),
        Mistake("missing output bias", "Add b before the output ReLU.", _abs_variant(bias=False)),
        Mistake("bias after the output ReLU", "Add b *before* the output ReLU: ReLU(W_out h + b).",
                _abs_variant(bias_after=True)),
        Mistake("tied weights", "Read out with W_out, not W_in transposed: this model's two layers have separate "
                "weights.", _abs_variant(tied=True)),
    ]
    check.case("8 features, 4 neurons", check.randn(3, 4, 8), check.randn(3, 8, 4), check.randn(3, 8, scale=0.3),
               check.randn(5, 3, 8), mistakes=mistakes)
    check.case("3 features, 6 neurons", check.randn(2, 6, 3), check.randn(2, 3, 6), check.randn(2, 3),
               check.randn(4, 2, 3), mistakes=mistakes)


def _errors_variant(kind):
    def variant(W_in, W_out, b, values):
        n_inst, _, n_feat = W_in.shape
        rows = []
        for v in values:
            x = v * torch.eye(n_feat, device=W_in.device)[:, None, :].expand(n_feat, n_inst, n_feat)
            out = ref.abs_forward(W_in, W_out, b, x)
            own = out.diagonal(dim1=0, dim2=2)  # [inst, feat]
            target = v if kind == "against v" else v.abs()
            rows.append(own - target if kind == "signed" else (own - target).abs())
        stacked = torch.stack(rows)
        return stacked.mean(0) if kind == "mean" else stacked.max(0).values
    return variant


@exercise(difficulty=2, minutes=15, hints=[
    "For feature i and value v, the input is v times the i-th one-hot vector; you need the output's entry i "
    "and compare it with |v|.",
    "Batch every (value, feature) input at once: einsum(values, eye(n_features), 'value, case feat -> value "
    "case feat'), flatten (value case) into the batch axis and repeat over instances. Then take the diagonal "
    "between the 'case' and the output feature axes.",
    "Error = |own output - |v||; return the max over the values, shape [inst, feat].",
])
def test_single_feature_errors(check):
    mistakes = [
        Mistake("mean, not max", "Report the *largest* error over the values (max), not the average.",
                _errors_variant("mean")),
        Mistake("compared with v", "The target is |v|, not v.", _errors_variant("against v")),
        Mistake("signed error", "Take the absolute error |x'_i - |v||, so that an output that is too large "
                "counts too.", _errors_variant("signed")),
    ]
    values = torch.tensor([-1.0, -0.5, 0.5, 1.0]).to(check.device)
    check.case("8 features, 4 neurons", check.randn(3, 4, 8), check.randn(3, 8, 4), check.randn(3, 8, scale=0.3),
               values, mistakes=mistakes)
    W_in = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]).to(check.device)[None]
    W_out = W_in.transpose(1, 2).abs()
    check.case("a hand-built |x| model", W_in, W_out, torch.zeros(1, 2, device=check.device),
               torch.tensor([-0.7, 0.3]).to(check.device), mistakes=mistakes)
