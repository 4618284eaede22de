"""Reference solutions for 2.1 "Toy models of superposition".

Every model here carries a leading instance axis `inst`: one tensor holds many
independent small models (one per feature probability), so a whole sparsity sweep
trains in a single batched forward pass.
"""

from __future__ import annotations

import einops
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

# -- the toy model ------------------------------------------------------------------------


def generate_batch(
    feature_probability: Float[Tensor, "inst"],
    batch_size: int,
    n_features: int,
    generator: torch.Generator | None = None,
) -> Float[Tensor, "batch inst feat"]:
    """Synthetic sparse inputs: each feature is present with probability p (its instance's),
    and a present feature takes a value uniform in [0, 1]; absent features are exactly 0.

    Sparsity is what makes superposition pay: a feature that is rarely on rarely collides
    with the others that share its direction.
    """
    n_instances = feature_probability.shape[0]
    shape = (batch_size, n_instances, n_features)
    values = torch.rand(shape, generator=generator).to(feature_probability.device)
    present = torch.rand(shape, generator=generator).to(feature_probability.device) \
        < einops.rearrange(feature_probability, "inst -> 1 inst 1")
    return torch.where(present, values, torch.zeros_like(values))


def sparsity_sweep(
    n_instances: int,
    p_min: float,
) -> Float[Tensor, "inst"]:
    """Feature probabilities from 1 (dense) down to p_min, evenly spaced on a log scale.

    Interesting changes happen at every order of magnitude of sparsity, so a linear
    spacing would waste almost every instance on the dense end.
    """
    return p_min ** torch.linspace(0.0, 1.0, n_instances)


def toy_forward(
    W: Float[Tensor, "inst hidden feat"],
    b: Float[Tensor, "inst feat"],
    x: Float[Tensor, "batch inst feat"],
) -> Float[Tensor, "batch inst feat"]:
    """The toy model x' = ReLU(W^T W x + b): compress n features into m < n dimensions with W,
    read them back out with the same matrix transposed, then a bias and a ReLU.

    The ReLU is what lets the model ignore small negative interference between features,
    which is what makes superposition worthwhile at all.
    """
    hidden = einops.einsum(W, x, "inst hidden feat, batch inst feat -> batch inst hidden")
    out = einops.einsum(W, hidden, "inst hidden feat, batch inst hidden -> batch inst feat")
    return torch.relu(out + b)


def importance_weighted_mse(
    out: Float[Tensor, "batch inst feat"],
    x: Float[Tensor, "batch inst feat"],
    importance: Float[Tensor, "inst feat"],
) -> Float[Tensor, "inst"]:
    """Per-instance loss: sum over features of importance_i * (x_i - x'_i)^2, averaged over the batch.

    Importance weights the *squared* error, so it says how much each feature's reconstruction
    is worth; instances stay separate so each can be trained (and inspected) on its own.
    """
    squared_error = (x - out) ** 2
    weighted = einops.einsum(squared_error, importance, "batch inst feat, inst feat -> batch inst")
    return einops.reduce(weighted, "batch inst -> inst", "mean")


# -- geometry -------------------------------------------------------------------------------


def feature_norms(
    W: Float[Tensor, "inst hidden feat"],
) -> Float[Tensor, "inst feat"]:
    """||W_i||, the length of each feature's direction in the hidden space.

    A norm near 1 means the feature is represented; near 0 means the model dropped it.
    """
    return W.norm(dim=1)


def count_represented(
    W: Float[Tensor, "inst hidden feat"],
    threshold: float,
) -> Int[Tensor, "inst"]:
    """How many features of each instance have ||W_i|| > threshold (are represented)."""
    return (feature_norms(W) > threshold).sum(dim=-1)


def neighbour_angles(
    W: Float[Tensor, "inst 2 feat"],
) -> Float[Tensor, "inst feat"]:
    """In a 2-D hidden space: going round the circle, the angle in degrees from each feature's
    direction to the next one's (the last gap wraps back to the first), so the gaps sum to 360.
    The cycle may start at any feature.

    A regular pentagon has every gap at 72 degrees.
    """
    angles = torch.rad2deg(torch.atan2(W[:, 1], W[:, 0]))
    ordered = angles.sort(dim=-1).values
    wrapped = torch.cat([ordered, ordered[:, :1] + 360.0], dim=-1)
    return wrapped.diff(dim=-1)


def gram_matrix(
    W: Float[Tensor, "inst hidden feat"],
) -> Float[Tensor, "inst feat feat_out"]:
    """W^T W for each instance: entry (i, j) is W_i . W_j, how much feature i leaks into output j.

    A diagonal W^T W means no superposition; off-diagonal entries are the interference.
    """
    return einops.einsum(W, W, "inst hidden feat, inst hidden feat_out -> inst feat feat_out")


def superposition_measure(
    W: Float[Tensor, "inst hidden feat"],
) -> Float[Tensor, "inst feat"]:
    """sum over j != i of (W_i_hat . W_j)^2: how much of the other features lies along feature i.

    Zero when feature i has a dimension to itself; it counts only the *other* features, so the
    feature's own norm is left out by dropping j = i.
    """
    W_hat = W / feature_norms(W).clamp_min(1e-8).unsqueeze(1)
    overlaps = einops.einsum(W_hat, W, "inst hidden feat, inst hidden other -> inst feat other")
    others = 1.0 - torch.eye(W.shape[-1], device=W.device)
    return einops.reduce(overlaps ** 2 * others, "inst feat other -> inst feat", "sum")


def dimensions_per_feature(
    W: Float[Tensor, "inst hidden feat"],
) -> Float[Tensor, "inst"]:
    """m / ||W||_F^2: hidden dimensions per (effectively) represented feature.

    A represented feature has norm ~1 and contributes ~1 to the squared Frobenius norm, so
    ||W||_F^2 counts the represented features; 1/2 means two features share each dimension.
    """
    d_hidden = W.shape[1]
    frobenius_sq = einops.reduce(W ** 2, "inst hidden feat -> inst", "sum")
    return d_hidden / frobenius_sq


def feature_dimensionality(
    W: Float[Tensor, "inst hidden feat"],
) -> Float[Tensor, "inst feat"]:
    """D_i = ||W_i||^2 / sum_j (W_i_hat . W_j)^2, the fraction of a dimension feature i gets.

    The sum includes j = i (which contributes ||W_i||^2), so D_i is 1 for a feature with a
    dimension of its own, 1/2 for an antipodal pair, and near 0 for a dropped feature.
    """
    norms = feature_norms(W)
    W_hat = W / norms.clamp_min(1e-8).unsqueeze(1)
    overlaps = einops.einsum(W_hat, W, "inst hidden feat, inst hidden other -> inst feat other")
    return norms ** 2 / einops.reduce(overlaps ** 2, "inst feat other -> inst feat", "sum").clamp_min(1e-12)


def sticky_fraction(
    dims: Float[Tensor, "..."],
    values: Float[Tensor, "n_values"],
    tol: float,
) -> Float[Tensor, ""]:
    """The fraction of entries of `dims` that lie within `tol` of one of `values`."""
    distance = (dims.unsqueeze(-1) - values).abs().min(dim=-1).values
    return (distance < tol).float().mean()


# -- correlated features ----------------------------------------------------------------------


def correlated_batch(
    feature_probability: Float[Tensor, "inst"],
    batch_size: int,
    n_pairs: int,
    generator: torch.Generator | None = None,
) -> Float[Tensor, "batch inst feat"]:
    """Features 2k and 2k+1 form pair k and are always present together (each with probability p);
    present values are independent and uniform in [0, 1]."""
    n_instances = feature_probability.shape[0]
    values = torch.rand((batch_size, n_instances, 2 * n_pairs), generator=generator).to(feature_probability.device)
    pair_on = torch.rand((batch_size, n_instances, n_pairs), generator=generator).to(feature_probability.device) \
        < einops.rearrange(feature_probability, "inst -> 1 inst 1")
    present = einops.repeat(pair_on, "batch inst pair -> batch inst (pair two)", two=2)
    return torch.where(present, values, torch.zeros_like(values))


def anticorrelated_batch(
    feature_probability: Float[Tensor, "inst"],
    batch_size: int,
    n_pairs: int,
    generator: torch.Generator | None = None,
) -> Float[Tensor, "batch inst feat"]:
    """Features 2k and 2k+1 are never present together: the pair is active with probability 2p
    and then exactly one of the two (a fair coin) is present, so each is present with probability p.
    Needs p <= 1/2."""
    n_instances = feature_probability.shape[0]
    device = feature_probability.device
    values = torch.rand((batch_size, n_instances, 2 * n_pairs), generator=generator).to(device)
    pair_on = torch.rand((batch_size, n_instances, n_pairs), generator=generator).to(device) \
        < 2 * einops.rearrange(feature_probability, "inst -> 1 inst 1")
    first = torch.rand((batch_size, n_instances, n_pairs), generator=generator).to(device) < 0.5
    present = torch.stack([pair_on & first, pair_on & ~first], dim=-1)
    present = einops.rearrange(present, "batch inst pair two -> batch inst (pair two)")
    return torch.where(present, values, torch.zeros_like(values))


def pair_cosines(
    W: Float[Tensor, "inst hidden feat"],
) -> Float[Tensor, "inst pair"]:
    """Cosine similarity between the directions of features 2k and 2k+1 (pair k).

    -1 is antipodal (the same axis, opposite signs), 0 orthogonal, +1 the same direction.
    """
    pairs = einops.rearrange(W, "inst hidden (pair two) -> two inst pair hidden", two=2)
    return torch.cosine_similarity(pairs[0], pairs[1], dim=-1)


# -- a privileged basis -------------------------------------------------------------------------


def neuron_forward(
    W: Float[Tensor, "inst neuron feat"],
    b: Float[Tensor, "inst feat"],
    x: Float[Tensor, "batch inst feat"],
) -> Float[Tensor, "batch inst feat"]:
    """The neuron model: h = ReLU(W x), x' = ReLU(W^T h + b).

    The ReLU on the hidden layer acts on each neuron separately, so the standard basis of the
    hidden space becomes special (privileged): rotating W no longer leaves the model unchanged.
    The hidden layer has no bias, as in Elhage et al. (2022): a bias could lift every
    pre-activation above zero, and the ReLU would then never act.
    """
    pre = einops.einsum(W, x, "inst neuron feat, batch inst feat -> batch inst neuron")
    hidden = torch.relu(pre)
    out = einops.einsum(W, hidden, "inst neuron feat, batch inst neuron -> batch inst feat")
    return torch.relu(out + b)


def neuron_monosemanticity(
    W: Float[Tensor, "inst neuron feat"],
) -> Float[Tensor, "inst neuron"]:
    """For each neuron, the share of its squared input weights that goes to its single largest feature:
    max_i W[n, i]^2 / sum_i W[n, i]^2.

    1 means the neuron reads exactly one feature (monosemantic); lower values mean it mixes several.
    """
    squared = W ** 2
    return squared.max(dim=-1).values / squared.sum(dim=-1).clamp_min(1e-12)


# -- computation in superposition ------------------------------------------------------------------


def signed_batch(
    feature_probability: Float[Tensor, "inst"],
    batch_size: int,
    n_features: int,
    generator: torch.Generator | None = None,
) -> Float[Tensor, "batch inst feat"]:
    """Like generate_batch, but a present feature's value is uniform in [-1, 1]."""
    n_instances = feature_probability.shape[0]
    shape = (batch_size, n_instances, n_features)
    values = 2 * torch.rand(shape, generator=generator).to(feature_probability.device) - 1
    present = torch.rand(shape, generator=generator).to(feature_probability.device) \
        < einops.rearrange(feature_probability, "inst -> 1 inst 1")
    return torch.where(present, values, torch.zeros_like(values))


def abs_forward(
    W_in: Float[Tensor, "inst neuron feat"],
    W_out: Float[Tensor, "inst feat neuron"],
    b: Float[Tensor, "inst feat"],
    x: Float[Tensor, "batch inst feat"],
) -> Float[Tensor, "batch inst feat"]:
    """A one-hidden-layer ReLU MLP trained to output |x|: h = ReLU(W_in x), x' = ReLU(W_out h + b).

    Input and output weights are separate (untied): computing |x| needs a neuron for x > 0 and one
    for x < 0, which read the feature with opposite signs but both write it positively. The hidden
    ReLU does the computing; the output ReLU, with a negative bias, filters out the interference
    between features that share neurons, as in the first toy model.
    """
    pre = einops.einsum(W_in, x, "inst neuron feat, batch inst feat -> batch inst neuron")
    hidden = torch.relu(pre)
    out = einops.einsum(W_out, hidden, "inst feat neuron, batch inst neuron -> batch inst feat")
    return torch.relu(out + b)


def single_feature_errors(
    W_in: Float[Tensor, "inst neuron feat"],
    W_out: Float[Tensor, "inst feat neuron"],
    b: Float[Tensor, "inst feat"],
    values: Float[Tensor, "n_values"],
) -> Float[Tensor, "inst feat"]:
    """Feed each feature alone (value v, all others 0) for every v in `values`; return, per feature,
    the largest |x'_i - |v|| over those inputs, where x'_i is the model's output for that same feature.

    A small error means the model really computes |x_i|, at least when feature i is alone.
    """
    n_instances, _, n_features = W_in.shape
    eye = torch.eye(n_features, device=W_in.device)
    x = einops.einsum(values, eye, "value, case feat -> value case feat")
    x = einops.repeat(x, "value case feat -> (value case) inst feat", inst=n_instances)
    out = abs_forward(W_in, W_out, b, x)
    own = einops.rearrange(out, "(value case) inst feat -> value case inst feat", value=len(values))
    own = own.diagonal(dim1=1, dim2=3)  # [value, inst, case]: output i when feature i is on
    errors = (own - values.abs()[:, None, None]).abs()
    return einops.reduce(errors, "value inst feat -> inst feat", "max")
