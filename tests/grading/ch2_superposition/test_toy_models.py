"""Learner variants for the 2.1 "Toy models of superposition" graders."""

import math

import einops
import numpy as np
import torch

from tests.grading.variants import Right, Wrong, test_variant_is_graded_as_expected  # noqa: F401 (runs VARIANTS)

# -- generate_batch ------------------------------------------------------------------------------


def _gb_inverted(feature_probability, batch_size, n_features, generator=None):
    shape = (batch_size, feature_probability.shape[0], n_features)
    values = torch.rand(shape, generator=generator)
    dropped = torch.rand(shape, generator=generator) < feature_probability[None, :, None]
    return values * dropped.logical_not()


def _gb_global_rng(feature_probability, batch_size, n_features, generator=None):
    shape = (batch_size, feature_probability.shape[0], n_features)
    return torch.rand(shape) * (torch.rand(shape) < feature_probability[:, None])


def _gb_randn(feature_probability, batch_size, n_features, generator=None):
    shape = (batch_size, feature_probability.shape[0], n_features)
    mask = torch.rand(shape, generator=generator) < feature_probability[:, None]
    return torch.randn(shape, generator=generator) * mask


def _gb_ones(feature_probability, batch_size, n_features, generator=None):
    shape = (batch_size, feature_probability.shape[0], n_features)
    return (torch.rand(shape, generator=generator) < feature_probability[:, None]).float()


def _gb_reuse_draw(feature_probability, batch_size, n_features, generator=None):
    draw = torch.rand((batch_size, feature_probability.shape[0], n_features), generator=generator)
    return torch.where(draw < feature_probability[:, None], draw, 0.0)


def _gb_mask_multiply(feature_probability, batch_size, n_features, generator=None):
    shape = (batch_size, len(feature_probability), n_features)
    feat = torch.rand(shape, generator=generator)
    seeds = torch.rand(shape, generator=generator)
    return feat * (seeds <= einops.repeat(feature_probability, "i -> b i f", b=batch_size, f=n_features))


# -- sparsity_sweep ------------------------------------------------------------------------------


def _ss_linear(n_instances, p_min):
    return torch.linspace(1, p_min, n_instances)


def _ss_reversed(n_instances, p_min):
    return torch.logspace(math.log10(p_min), 0, n_instances)


def _ss_arange(n_instances, p_min):
    return torch.tensor([p_min ** (k / n_instances) for k in range(n_instances)])


def _ss_logspace(n_instances, p_min):
    return torch.logspace(0, math.log10(p_min), n_instances)


def _ss_exp(n_instances, p_min):
    return torch.exp(torch.linspace(0, math.log(p_min), n_instances))


# -- toy_forward ------------------------------------------------------------------------------------


def _tf_no_relu(W, b, x):
    h = torch.einsum("ihf,bif->bih", W, x)
    return torch.einsum("ihf,bih->bif", W, h) + b


def _tf_no_bias(W, b, x):
    h = torch.einsum("ihf,bif->bih", W, x)
    return torch.relu(torch.einsum("ihf,bih->bif", W, h))


def _tf_transposed(W, b, x):
    h = torch.einsum("ifh,bif->bih", W, x)
    return torch.relu(torch.einsum("ifh,bih->bif", W, h) + b)


def _tf_bias_after(W, b, x):
    return torch.relu(torch.einsum("ihf,ihg,big->bif", W, W, x)) + b


def _tf_hidden_relu(W, b, x):
    h = torch.relu(torch.einsum("ihf,bif->bih", W, x))
    return torch.relu(torch.einsum("ihf,bih->bif", W, h) + b)


def _tf_matmul(W, b, x):
    xt = x.transpose(0, 1)                     # [inst, batch, feat]
    h = xt @ W.transpose(1, 2)                 # [inst, batch, hidden]
    out = h @ W + b[:, None, :]                # [inst, batch, feat]
    return torch.relu(out).transpose(0, 1)


def _tf_gram(W, b, x):
    gram = W.transpose(1, 2) @ W
    return torch.relu(einops.einsum(gram, x, "inst f g, batch inst g -> batch inst f") + b)


# -- importance_weighted_mse --------------------------------------------------------------------------


def _mse_no_importance(out, x, importance):
    return ((out - x) ** 2).sum(-1).mean(0)


def _mse_importance_inside(out, x, importance):
    return ((importance * (x - out)) ** 2).sum(dim=-1).mean(dim=0)


def _mse_mean_features(out, x, importance):
    return (importance * (x - out) ** 2).mean(dim=(0, 2))


def _mse_mean_instances(out, x, importance):
    return (importance * (x - out) ** 2).sum(-1).mean()


def _mse_sum_batch(out, x, importance):
    return (importance * (x - out) ** 2).sum(dim=(0, -1))


def _mse_einops(out, x, importance):
    per_example = einops.reduce(importance * (out - x).pow(2), "batch inst feat -> batch inst", "sum")
    return per_example.mean(0)


# -- feature_norms / count_represented -----------------------------------------------------------------


def _fn_squared(W):
    return (W ** 2).sum(dim=1)


def _fn_wrong_axis(W):
    return torch.linalg.norm(W, dim=-1)


def _fn_l1(W):
    return W.abs().sum(1)


def _fn_sqrt(W):
    return torch.sqrt(einops.reduce(W ** 2, "inst hidden feat -> inst feat", "sum"))


def _cr_leq(W, threshold):
    return (W.norm(dim=1) <= threshold).sum(-1)


def _cr_squared(W, threshold):
    return ((W ** 2).sum(1) > threshold).sum(-1)


def _cr_axis(W, threshold):
    return (W.norm(dim=-1) > threshold).sum(-1)


def _cr_loop(W, threshold):
    counts = []
    for inst in range(W.shape[0]):
        counts.append(sum(int(W[inst, :, i].norm() > threshold) for i in range(W.shape[2])))
    return torch.tensor(counts)


# -- neighbour_angles --------------------------------------------------------------------------------


def _na_radians(W):
    a = torch.atan2(W[:, 1], W[:, 0]).sort(-1).values
    return torch.cat([a, a[:, :1] + 2 * torch.pi], dim=-1).diff(dim=-1)


def _na_no_wrap(W):
    a = torch.rad2deg(torch.atan2(W[:, 1], W[:, 0]))
    return torch.diff(a.sort(dim=-1).values, dim=-1)


def _na_unsorted(W):
    a = torch.atan2(W[:, 1], W[:, 0]) * 180 / math.pi
    return (a.roll(-1, dims=-1) - a) % 360


def _na_numpy(W):
    out = []
    for inst in W.detach().cpu().numpy():
        a = np.sort(np.degrees(np.arctan2(inst[1], inst[0])))
        out.append(np.diff(np.append(a, a[0] + 360)))
    return torch.tensor(np.array(out), dtype=W.dtype)


def _na_mod(W):
    a = torch.rad2deg(torch.atan2(W[:, 1], W[:, 0])).sort(-1).values
    return (a.roll(-1, dims=-1) - a) % 360


# -- gram_matrix ---------------------------------------------------------------------------------------


def _gm_wwt(W):
    return torch.einsum("ihf,igf->ihg", W, W)


def _gm_cosines(W):
    Wn = W / W.norm(dim=1, keepdim=True)
    return Wn.transpose(1, 2) @ Wn


def _gm_squared(W):
    return (W.mT @ W) ** 2


def _gm_bmm(W):
    return torch.bmm(W.transpose(1, 2), W)


# -- superposition_measure -----------------------------------------------------------------------------


def _sp_including_i(W):
    W_hat = W / W.norm(dim=1, keepdim=True)
    return ((W_hat.mT @ W) ** 2).sum(-1)


def _sp_unnormalised(W):
    dots = (W.mT @ W) ** 2
    return dots.sum(-1) - dots.diagonal(dim1=1, dim2=2)


def _sp_cosines(W):
    W_hat = W / W.norm(dim=1, keepdim=True)
    cos = W_hat.mT @ W_hat
    return (cos ** 2).sum(-1) - 1


def _sp_not_squared(W):
    W_hat = W / W.norm(dim=1, keepdim=True)
    dots = W_hat.mT @ W
    return dots.sum(-1) - dots.diagonal(dim1=1, dim2=2)


def _sp_loop(W):
    n_inst, _, n_feat = W.shape
    out = torch.zeros(n_inst, n_feat)
    for k in range(n_inst):
        for i in range(n_feat):
            w_hat = W[k, :, i] / W[k, :, i].norm()
            out[k, i] = sum((w_hat @ W[k, :, j]) ** 2 for j in range(n_feat) if j != i)
    return out


def _sp_subtract_norm(W):
    W_hat = W / W.norm(dim=1, keepdim=True)
    return ((W_hat.mT @ W) ** 2).sum(-1) - (W ** 2).sum(1)


# -- dimensions_per_feature -------------------------------------------------------------------------


def _dpf_inverted(W):
    return W.pow(2).sum((1, 2)) / W.shape[1]


def _dpf_not_squared(W):
    return W.shape[1] / torch.linalg.matrix_norm(W)


def _dpf_features(W):
    return W.shape[-1] / W.pow(2).sum((1, 2))


def _dpf_matrix_norm(W):
    return W.shape[1] / torch.linalg.matrix_norm(W) ** 2


# -- feature_dimensionality --------------------------------------------------------------------------


def _fd_w_not_hat(W):
    return (W ** 2).sum(1) / ((W.mT @ W) ** 2).sum(-1)


def _fd_excluded_i(W):
    norms = W.norm(dim=1)
    dots = ((W / norms[:, None]).mT @ W) ** 2
    return norms ** 2 / (dots.sum(-1) - dots.diagonal(dim1=1, dim2=2))


def _fd_cosines(W):
    W_hat = W / W.norm(dim=1, keepdim=True)
    return W.norm(dim=1) ** 2 / ((W_hat.mT @ W_hat) ** 2).sum(-1)


def _fd_norm_not_squared(W):
    norms = W.norm(dim=1)
    return norms / (((W / norms[:, None]).mT @ W) ** 2).sum(-1)


def _fd_loop(W):
    n_inst, _, n_feat = W.shape
    out = torch.zeros(n_inst, n_feat)
    for k in range(n_inst):
        for i in range(n_feat):
            w = W[k, :, i]
            w_hat = w / w.norm()
            out[k, i] = w.dot(w) / sum((w_hat @ W[k, :, j]) ** 2 for j in range(n_feat))
    return out


# -- sticky_fraction ---------------------------------------------------------------------------------


def _sf_count(dims, values, tol):
    near = torch.zeros_like(dims, dtype=torch.bool)
    for v in values:
        near |= (dims - v).abs() < tol
    return near.float().sum()


def _sf_signed(dims, values, tol):
    return ((dims[..., None] - values).min(-1).values < tol).float().mean()


def _sf_all(dims, values, tol):
    return ((dims[..., None] - values).abs() < tol).all(-1).float().mean()


def _sf_loop(dims, values, tol):
    near = torch.zeros_like(dims, dtype=torch.bool)
    for v in values:
        near |= (dims - v).abs() < tol
    return near.float().mean()


# -- correlated / anticorrelated batches ------------------------------------------------------------


def _cb_independent(feature_probability, batch_size, n_pairs, generator=None):
    shape = (batch_size, feature_probability.shape[0], 2 * n_pairs)
    on = torch.rand(shape, generator=generator) < feature_probability[:, None]
    return torch.rand(shape, generator=generator) * on


def _cb_inverted(feature_probability, batch_size, n_pairs, generator=None):
    n_inst = feature_probability.shape[0]
    on = torch.rand((batch_size, n_inst, n_pairs), generator=generator) > feature_probability[:, None]
    on = on.repeat_interleave(2, dim=-1)
    return torch.rand((batch_size, n_inst, 2 * n_pairs), generator=generator) * on


def _cb_global_rng(feature_probability, batch_size, n_pairs, generator=None):
    n_inst = feature_probability.shape[0]
    on = (torch.rand((batch_size, n_inst, n_pairs)) < feature_probability[:, None]).repeat_interleave(2, -1)
    return torch.rand((batch_size, n_inst, 2 * n_pairs)) * on


def _cb_same_value(feature_probability, batch_size, n_pairs, generator=None):
    n_inst = feature_probability.shape[0]
    on = torch.rand((batch_size, n_inst, n_pairs), generator=generator) < feature_probability[:, None]
    value = torch.rand((batch_size, n_inst, n_pairs), generator=generator) * on
    return torch.stack([value, torch.ones_like(value) * 2 * on], -1).flatten(-2)


def _cb_repeat_interleave(feature_probability, batch_size, n_pairs, generator=None):
    n_inst = feature_probability.shape[0]
    values = torch.rand((batch_size, n_inst, 2 * n_pairs), generator=generator)
    on = torch.rand((batch_size, n_inst, n_pairs), generator=generator) < feature_probability.view(1, -1, 1)
    return values * on.repeat_interleave(2, dim=-1)


def _ab_independent(feature_probability, batch_size, n_pairs, generator=None):
    return _cb_independent(feature_probability, batch_size, n_pairs, generator)


def _ab_half_rate(feature_probability, batch_size, n_pairs, generator=None):
    n_inst = feature_probability.shape[0]
    active = torch.rand((batch_size, n_inst, n_pairs), generator=generator) < feature_probability[:, None]
    first = torch.rand((batch_size, n_inst, n_pairs), generator=generator) < 0.5
    on = torch.stack([active & first, active & ~first], -1).flatten(-2)
    return torch.rand((batch_size, n_inst, 2 * n_pairs), generator=generator) * on


def _ab_global_rng(feature_probability, batch_size, n_pairs, generator=None):
    n_inst = feature_probability.shape[0]
    active = torch.rand((batch_size, n_inst, n_pairs)) < 2 * feature_probability[:, None]
    first = torch.rand((batch_size, n_inst, n_pairs)) < 0.5
    on = torch.stack([active & first, active & ~first], -1).flatten(-2)
    return torch.rand((batch_size, n_inst, 2 * n_pairs)) * on


def _ab_loop(feature_probability, batch_size, n_pairs, generator=None):
    n_inst = feature_probability.shape[0]
    out = torch.zeros(batch_size, n_inst, 2 * n_pairs)
    active = torch.rand((batch_size, n_inst, n_pairs), generator=generator) < 2 * feature_probability[:, None]
    which = torch.randint(0, 2, (batch_size, n_inst, n_pairs), generator=generator)
    values = torch.rand((batch_size, n_inst, n_pairs), generator=generator)
    for k in range(n_pairs):
        out[:, :, 2 * k] = torch.where(active[..., k] & (which[..., k] == 0), values[..., k], 0.0)
        out[:, :, 2 * k + 1] = torch.where(active[..., k] & (which[..., k] == 1), values[..., k], 0.0)
    return out


# -- pair_cosines ------------------------------------------------------------------------------------


def _pc_dot(W):
    return einops.einsum(W[..., ::2], W[..., 1::2], "inst hidden pair, inst hidden pair -> inst pair")


def _pc_halves(W):
    n = W.shape[-1] // 2
    return torch.cosine_similarity(W[..., :n], W[..., n:], dim=1)


def _pc_abs(W):
    return torch.nn.functional.cosine_similarity(W[:, :, 0::2], W[:, :, 1::2], dim=1).abs()


def _pc_manual(W):
    a, b = W[:, :, 0::2], W[:, :, 1::2]
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


# -- neuron_forward ----------------------------------------------------------------------------------


def _nf(W, b, x, *, relu_hidden=True, relu_out=True, use_b=True, bias_after=False):
    h = torch.einsum("inf,bif->bin", W, x)
    if relu_hidden:
        h = torch.relu(h)
    out = torch.einsum("inf,bin->bif", W, h) + (b if use_b and not bias_after else 0)
    out = torch.relu(out) if relu_out else out
    return out + b if bias_after else out


def _nf_no_hidden_relu(W, b, x):
    return _nf(W, b, x, relu_hidden=False)


def _nf_no_out_relu(W, b, x):
    return _nf(W, b, x, relu_out=False)


def _nf_no_out_bias(W, b, x):
    return _nf(W, b, x, use_b=False)


def _nf_bias_after_relu(W, b, x):
    return _nf(W, b, x, bias_after=True)


def _nf_matmul(W, b, x):
    h = torch.relu(x.transpose(0, 1) @ W.mT)
    return torch.relu(h @ W + b[:, None]).transpose(0, 1)


# -- neuron_monosemanticity -----------------------------------------------------------------------------


def _nm_per_feature(W):
    sq = W ** 2
    return sq.max(dim=1).values / sq.sum(dim=1)


def _nm_abs(W):
    return W.abs().amax(-1) / W.abs().sum(-1)


def _nm_unnormalised(W):
    return W.pow(2).amax(dim=-1)


def _nm_normalised_rows(W):
    rows = W / W.norm(dim=-1, keepdim=True)
    return rows.pow(2).max(dim=-1).values


# -- signed_batch ------------------------------------------------------------------------------------


def _sb_unsigned(feature_probability, batch_size, n_features, generator=None):
    shape = (batch_size, feature_probability.shape[0], n_features)
    on = torch.rand(shape, generator=generator) < feature_probability[:, None]
    return torch.rand(shape, generator=generator) * on


def _sb_half_range(feature_probability, batch_size, n_features, generator=None):
    shape = (batch_size, feature_probability.shape[0], n_features)
    on = torch.rand(shape, generator=generator) < feature_probability[:, None]
    return (torch.rand(shape, generator=generator) - 0.5) * on


def _sb_inverted(feature_probability, batch_size, n_features, generator=None):
    shape = (batch_size, feature_probability.shape[0], n_features)
    off = torch.rand(shape, generator=generator) < feature_probability[:, None]
    return (2 * torch.rand(shape, generator=generator) - 1) * ~off


def _sb_global(feature_probability, batch_size, n_features, generator=None):
    shape = (batch_size, feature_probability.shape[0], n_features)
    return (torch.rand(shape) * 2 - 1) * (torch.rand(shape) < feature_probability[:, None])


def _sb_uniform_(feature_probability, batch_size, n_features, generator=None):
    shape = (batch_size, feature_probability.shape[0], n_features)
    values = torch.empty(shape).uniform_(-1, 1, generator=generator)
    on = torch.rand(shape, generator=generator) < feature_probability[None, :, None]
    return torch.where(on, values, torch.zeros(()))


# -- abs_forward ----------------------------------------------------------------------------------------


def _af(W_in, W_out, b, x, *, relu_hidden=True, use_b=True, relu_out=True, bias_after=False, tied=False):
    h = torch.einsum("inf,bif->bin", W_in, x)
    if relu_hidden:
        h = torch.relu(h)
    read = W_in.mT if tied else W_out
    out = torch.einsum("ifn,bin->bif", read, h) + (b if use_b and not bias_after else 0)
    out = torch.relu(out) if relu_out else out
    return out + b if bias_after else out


def _af_no_hidden_relu(W_in, W_out, b, x):
    return _af(W_in, W_out, b, x, relu_hidden=False)


def _af_no_out_relu(W_in, W_out, b, x):
    return _af(W_in, W_out, b, x, relu_out=False)


def _af_no_out_bias(W_in, W_out, b, x):
    return _af(W_in, W_out, b, x, use_b=False)


def _af_bias_after_relu(W_in, W_out, b, x):
    return _af(W_in, W_out, b, x, bias_after=True)


def _af_tied(W_in, W_out, b, x):
    return _af(W_in, W_out, b, x, tied=True)


def _af_matmul(W_in, W_out, b, x):
    h = torch.relu(x.transpose(0, 1) @ W_in.mT)
    return torch.relu(h @ W_out.mT + b[:, None]).transpose(0, 1)


# -- single_feature_errors ---------------------------------------------------------------------------


def _sfe(W_in, W_out, b, values, *, kind="max"):
    n_inst, _, n_feat = W_in.shape
    errs = torch.zeros(len(values), n_inst, n_feat)
    for a, v in enumerate(values):
        for i in range(n_feat):
            x = torch.zeros(1, n_inst, n_feat)
            x[0, :, i] = v
            h = torch.relu(torch.einsum("inf,bif->bin", W_in, x))
            out = torch.relu(torch.einsum("ifn,bin->bif", W_out, h) + b)
            target = v if kind == "against v" else v.abs()
            diff = out[0, :, i] - target
            errs[a, :, i] = diff if kind == "signed" else diff.abs()
    return errs.mean(0) if kind == "mean" else errs.max(0).values


def _sfe_mean(W_in, W_out, b, values):
    return _sfe(W_in, W_out, b, values, kind="mean")


def _sfe_against_v(W_in, W_out, b, values):
    return _sfe(W_in, W_out, b, values, kind="against v")


def _sfe_signed(W_in, W_out, b, values):
    return _sfe(W_in, W_out, b, values, kind="signed")


def _sfe_loop(W_in, W_out, b, values):
    return _sfe(W_in, W_out, b, values)


VARIANTS = {
    "ch2.generate_batch": [
        Wrong("kept features where rand >= p", _gb_inverted, mistake="p inverted"),
        Wrong("global RNG instead of the generator", _gb_global_rng, mistake="ignored the generator"),
        Wrong("randn values", _gb_randn, mistake="values outside [0, 1]"),
        Wrong("present features set to 1", _gb_ones, mistake="values not uniform"),
        Wrong("value reused from the presence draw", _gb_reuse_draw, mistake="values not uniform"),
        Right("mask multiply with einops.repeat", _gb_mask_multiply),
    ],
    "ch2.sparsity_sweep": [
        Wrong("linspace of probabilities", _ss_linear, mistake="linear spacing"),
        Wrong("logspace from p_min up", _ss_reversed, mistake="reversed"),
        Wrong("exponents k / n", _ss_arange, mistake="endpoint missing"),
        Right("torch.logspace", _ss_logspace),
        Right("exp of a linspace of logs", _ss_exp),
    ],
    "ch2.toy_forward": [
        Wrong("no ReLU", _tf_no_relu, mistake="missing ReLU"),
        Wrong("no bias", _tf_no_bias, mistake="missing bias"),
        Wrong("W^T first", _tf_transposed, mistake="W vs W^T"),
        Wrong("bias added after the ReLU", _tf_bias_after, mistake="bias after ReLU"),
        Wrong("ReLU on the hidden layer too", _tf_hidden_relu, mistake="ReLU on the hidden layer"),
        Right("batched matmul", _tf_matmul),
        Right("through the Gram matrix", _tf_gram),
    ],
    "ch2.importance_weighted_mse": [
        Wrong("plain MSE", _mse_no_importance, mistake="importance not applied"),
        Wrong("importance inside the square", _mse_importance_inside, mistake="importance applied before squaring"),
        Wrong("mean over batch and features", _mse_mean_features, mistake="mean over features"),
        Wrong("one number for all instances", _mse_mean_instances, mistake="mean over instances"),
        Wrong("summed over the batch", _mse_sum_batch, mistake="sum over batch"),
        Right("einops.reduce", _mse_einops),
    ],
    "ch2.feature_norms": [
        Wrong("squared norm", _fn_squared, mistake="squared norm"),
        Wrong("norm over the last axis", _fn_wrong_axis, mistake="norm over features"),
        Wrong("sum of absolute values", _fn_l1, mistake="L1 norm"),
        Right("sqrt of an einops sum", _fn_sqrt),
    ],
    "ch2.count_represented": [
        Wrong("counted norms <= threshold", _cr_leq, mistake="counted the dropped features"),
        Wrong("squared norms against the threshold", _cr_squared, mistake="squared norm"),
        Wrong("norm over the last axis", _cr_axis, mistake="norm over features"),
        Right("python loop", _cr_loop),
    ],
    "ch2.neighbour_angles": [
        Wrong("left in radians", _na_radians, mistake="radians"),
        Wrong("no gap from last to first", _na_no_wrap, mistake="no wrap-around"),
        Wrong("gaps in feature order", _na_unsorted, mistake="unsorted"),
        Right("numpy loop", _na_numpy),
        Right("roll and mod 360", _na_mod),
    ],
    "ch2.gram_matrix": [
        Wrong("W W^T", _gm_wwt, mistake="W W^T"),
        Wrong("cosine matrix", _gm_cosines, mistake="cosines"),
        Wrong("squared dot products", _gm_squared, mistake="squared entries"),
        Right("torch.bmm", _gm_bmm),
    ],
    "ch2.superposition_measure": [
        Wrong("sum includes j = i", _sp_including_i, mistake="included i"),
        Wrong("dot products with W_i, not W_hat_i", _sp_unnormalised, mistake="not normalised"),
        Wrong("cosines squared", _sp_cosines, mistake="both normalised"),
        Wrong("dots not squared", _sp_not_squared, mistake="not squared"),
        Right("double loop", _sp_loop),
        Right("all j minus the ||W_i||^2 term", _sp_subtract_norm),
    ],
    "ch2.dimensions_per_feature": [
        Wrong("||W||_F^2 / m", _dpf_inverted, mistake="inverted"),
        Wrong("m / ||W||_F", _dpf_not_squared, mistake="Frobenius norm not squared"),
        Wrong("n / ||W||_F^2", _dpf_features, mistake="divided the feature count"),
        Right("torch.linalg.matrix_norm", _dpf_matrix_norm),
    ],
    "ch2.feature_dimensionality": [
        Wrong("W_i . W_j in the denominator", _fd_w_not_hat, mistake="W_i instead of W_hat_i"),
        Wrong("denominator without j = i", _fd_excluded_i, mistake="left out j = i"),
        Wrong("cosines in the denominator", _fd_cosines, mistake="cosines"),
        Wrong("||W_i|| on top", _fd_norm_not_squared, mistake="numerator not squared"),
        Right("double loop", _fd_loop),
    ],
    "ch2.sticky_fraction": [
        Wrong("number of sticky entries", _sf_count, mistake="count, not fraction"),
        Wrong("signed distance", _sf_signed, mistake="signed distance"),
        Wrong("close to all values", _sf_all, mistake="close to every value"),
        Right("loop over values", _sf_loop),
    ],
    "ch2.correlated_batch": [
        Wrong("every feature independent", _cb_independent, mistake="pairs not correlated"),
        Wrong("pairs on where rand > p", _cb_inverted, mistake="p inverted"),
        Wrong("global RNG", _cb_global_rng, mistake="ignored the generator"),
        Wrong("second feature of a pair set to 2", _cb_same_value, mistake="values outside [0, 1]"),
        Right("repeat_interleave", _cb_repeat_interleave),
    ],
    "ch2.anticorrelated_batch": [
        Wrong("every feature independent", _ab_independent, mistake="pairs co-occur"),
        Wrong("pair active with probability p", _ab_half_rate, mistake="pair active with probability p"),
        Wrong("global RNG", _ab_global_rng, mistake="ignored the generator"),
        Right("loop over pairs with randint", _ab_loop),
    ],
    "ch2.pair_cosines": [
        Wrong("dot product", _pc_dot, mistake="dot product, not cosine"),
        Wrong("first half against second half", _pc_halves, mistake="wrong pairing"),
        Wrong("absolute cosine", _pc_abs, mistake="absolute value"),
        Right("dot over norms", _pc_manual),
    ],
    "ch2.neuron_forward": [
        Wrong("no hidden ReLU", _nf_no_hidden_relu, mistake="missing hidden ReLU"),
        Wrong("no output ReLU", _nf_no_out_relu, mistake="missing output ReLU"),
        Wrong("no output bias", _nf_no_out_bias, mistake="missing output bias"),
        Wrong("bias added after the ReLU", _nf_bias_after_relu, mistake="bias after the output ReLU"),
        Right("matmul", _nf_matmul),
    ],
    "ch2.neuron_monosemanticity": [
        Wrong("share per feature", _nm_per_feature, mistake="per feature"),
        Wrong("absolute weights", _nm_abs, mistake="absolute values"),
        Wrong("largest squared weight only", _nm_unnormalised, mistake="not normalised"),
        Right("normalise rows first", _nm_normalised_rows),
    ],
    "ch2.signed_batch": [
        Wrong("values in [0, 1]", _sb_unsigned, mistake="no negative values"),
        Wrong("rand - 0.5", _sb_half_range, mistake="values in [-0.5, 0.5]"),
        Wrong("zeroed where rand < p", _sb_inverted, mistake="p inverted"),
        Wrong("global RNG", _sb_global, mistake="ignored the generator"),
        Right("uniform_ with the generator", _sb_uniform_),
    ],
    "ch2.abs_forward": [
        Wrong("no hidden ReLU", _af_no_hidden_relu, mistake="missing hidden ReLU"),
        Wrong("no output ReLU", _af_no_out_relu, mistake="missing output ReLU"),
        Wrong("no output bias", _af_no_out_bias, mistake="missing output bias"),
        Wrong("bias added after the ReLU", _af_bias_after_relu, mistake="bias after the output ReLU"),
        Wrong("W_in^T as read-out", _af_tied, mistake="tied weights"),
        Right("matmul", _af_matmul),
    ],
    "ch2.single_feature_errors": [
        Wrong("mean over values", _sfe_mean, mistake="mean, not max"),
        Wrong("target v", _sfe_against_v, mistake="compared with v"),
        Wrong("signed error", _sfe_signed, mistake="signed error"),
        Right("loop over values and features", _sfe_loop),
    ],
}


# -- mistakes found by new learners: shared draws, float64, same values, shared or biased coins ----------


def _gb_one_draw_per_example(feature_probability, batch_size, n_features, generator=None):
    n_inst = feature_probability.shape[0]
    values = torch.rand((batch_size, n_inst, n_features), generator=generator)
    present = torch.rand((batch_size, n_inst, 1), generator=generator) < feature_probability[:, None]
    return values * present


def _gb_float64(feature_probability, batch_size, n_features, generator=None):
    shape = (batch_size, feature_probability.shape[0], n_features)
    values = torch.rand(shape, generator=generator, dtype=torch.float64)
    present = torch.rand(shape, generator=generator, dtype=torch.float64) < feature_probability[:, None]
    return torch.where(present, values, 0.0)


def _sb_one_draw_per_example(feature_probability, batch_size, n_features, generator=None):
    n_inst = feature_probability.shape[0]
    values = 2 * torch.rand((batch_size, n_inst, n_features), generator=generator) - 1
    present = torch.rand((batch_size, n_inst, 1), generator=generator) < feature_probability[:, None]
    return values * present


def _sb_float64(feature_probability, batch_size, n_features, generator=None):
    shape = (batch_size, feature_probability.shape[0], n_features)
    on = torch.rand(shape, generator=generator) < feature_probability[:, None]
    return ((2 * torch.rand(shape, generator=generator) - 1) * on).double()


def _cb_shared_value(feature_probability, batch_size, n_pairs, generator=None):
    n_inst = feature_probability.shape[0]
    on = torch.rand((batch_size, n_inst, n_pairs), generator=generator) < feature_probability[:, None]
    value = torch.rand((batch_size, n_inst, n_pairs), generator=generator) * on
    return value.repeat_interleave(2, dim=-1)


def _ab_one_coin(feature_probability, batch_size, n_pairs, generator=None):
    n_inst = feature_probability.shape[0]
    active = torch.rand((batch_size, n_inst, n_pairs), generator=generator) < 2 * feature_probability[:, None]
    first = torch.rand((batch_size, n_inst, 1), generator=generator) < 0.5
    on = torch.stack([active & first, active & ~first], -1).flatten(-2)
    return torch.rand((batch_size, n_inst, 2 * n_pairs), generator=generator) * on


def _ab_biased_coin(feature_probability, batch_size, n_pairs, generator=None):
    n_inst = feature_probability.shape[0]
    active = torch.rand((batch_size, n_inst, n_pairs), generator=generator) < 2 * feature_probability[:, None]
    first = torch.rand((batch_size, n_inst, n_pairs), generator=generator) < feature_probability[:, None]
    on = torch.stack([active & first, active & ~first], -1).flatten(-2)
    return torch.rand((batch_size, n_inst, 2 * n_pairs), generator=generator) * on


def _na_rotated(W):
    """A correct cycle of gaps that starts at feature 0's direction instead of the smallest angle."""
    a = torch.rad2deg(torch.atan2(W[:, 1], W[:, 0]))
    ordered, order = a.sort(-1)
    gaps = (ordered.roll(-1, dims=-1) - ordered) % 360
    start = (order == 0).float().argmax(-1)
    return torch.stack([g.roll(-int(k)) for g, k in zip(gaps, start)])


NEW_LEARNER_VARIANTS = {
    "ch2.generate_batch": [
        Wrong("one presence draw per example", _gb_one_draw_per_example, mistake="one draw per example"),
        Wrong("float64 batch", _gb_float64, mistake="not float32"),
    ],
    "ch2.signed_batch": [
        Wrong("one presence draw per example", _sb_one_draw_per_example, mistake="one draw per example"),
        Wrong("float64 batch", _sb_float64, mistake="not float32"),
    ],
    "ch2.correlated_batch": [
        Wrong("both features of a pair share one value", _cb_shared_value, mistake="pair shares one value"),
    ],
    "ch2.anticorrelated_batch": [
        Wrong("one coin for every pair of an example", _ab_one_coin, mistake="one coin for all pairs"),
        Wrong("coin biased by p", _ab_biased_coin, mistake="biased coin"),
    ],
    "ch2.neighbour_angles": [
        Right("cycle starting at feature 0", _na_rotated),
    ],
}
for _id, _variants in NEW_LEARNER_VARIANTS.items():
    VARIANTS[_id] = VARIANTS[_id] + _variants


def _cr_at_least(W, threshold):
    return (W.norm(dim=1) >= threshold).sum(-1)


VARIANTS["ch2.count_represented"] = VARIANTS["ch2.count_represented"] + [
    Wrong("norm >= threshold", _cr_at_least, mistake="at least, not above")]
