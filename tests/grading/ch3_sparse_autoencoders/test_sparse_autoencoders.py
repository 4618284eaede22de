"""Learner variants for the 3.1 "Sparse autoencoders" graders."""

import einops
import torch
import torch.nn.functional as F

from tests.grading.variants import Right, Wrong, test_variant_is_graded_as_expected  # noqa: F401 (runs VARIANTS)

# -- sae_encode ---------------------------------------------------------------------------------


def _enc_no_bdec(x, W_enc, b_enc, b_dec):
    return torch.relu(torch.einsum("bid,idl->bil", x, W_enc) + b_enc)


def _enc_plus_bdec(x, W_enc, b_enc, b_dec):
    return torch.relu(torch.einsum("bid,idl->bil", x + b_dec, W_enc) + b_enc)


def _enc_no_relu(x, W_enc, b_enc, b_dec):
    return einops.einsum(x - b_dec, W_enc, "b i d, i d l -> b i l") + b_enc


def _enc_relu_first(x, W_enc, b_enc, b_dec):
    return torch.relu(einops.einsum(x - b_dec, W_enc, "b i d, i d l -> b i l")) + b_enc


def _enc_no_benc(x, W_enc, b_enc, b_dec):
    return torch.relu(einops.einsum(x - b_dec, W_enc, "b i d, i d l -> b i l"))


def _enc_matmul(x, W_enc, b_enc, b_dec):
    centred = (x - b_dec).transpose(0, 1)                       # [inst, batch, d]
    return F.relu((centred @ W_enc).transpose(0, 1) + b_enc)


def _enc_clamp(x, W_enc, b_enc, b_dec):
    return (torch.einsum("bid,idl->bil", x - b_dec[None], W_enc) + b_enc[None]).clamp(min=0)


# -- sae_decode --------------------------------------------------------------------------------


def _dec_no_bias(acts, W_dec, b_dec):
    return torch.einsum("bil,idl->bid", acts, W_dec)


def _dec_minus_bias(acts, W_dec, b_dec):
    return torch.einsum("bil,idl->bid", acts, W_dec) - b_dec


def _dec_relu(acts, W_dec, b_dec):
    return torch.relu(torch.einsum("bil,idl->bid", acts, W_dec) + b_dec)


def _dec_matmul(acts, W_dec, b_dec):
    return (acts.transpose(0, 1) @ W_dec.transpose(1, 2)).transpose(0, 1) + b_dec


# -- normalise_decoder -------------------------------------------------------------------------


def _nd_wrong_axis(W_dec):
    return W_dec / W_dec.norm(dim=2, keepdim=True)


def _nd_frobenius(W_dec):
    return W_dec / torch.linalg.matrix_norm(W_dec)[:, None, None]


def _nd_squared(W_dec):
    return W_dec / W_dec.pow(2).sum(1, keepdim=True)


def _nd_dim0(W_dec):
    return W_dec / W_dec.norm(dim=0, keepdim=True)


def _nd_normalize(W_dec):
    return F.normalize(W_dec, dim=1)


def _nd_sqrt(W_dec):
    return W_dec / torch.sqrt((W_dec ** 2).sum(dim=-2, keepdim=True))


# -- reconstruction_mse ------------------------------------------------------------------------


def _rm_mean_d(x, x_hat):
    return F.mse_loss(x_hat, x, reduction="none").mean(dim=(0, 2))


def _rm_sum_batch(x, x_hat):
    return ((x_hat - x) ** 2).sum(dim=(0, 2))


def _rm_abs(x, x_hat):
    return (x_hat - x).abs().sum(-1).mean(0)


def _rm_norm(x, x_hat):
    return torch.linalg.vector_norm(x - x_hat, dim=-1).mean(0)


def _rm_norm_squared(x, x_hat):
    return torch.linalg.vector_norm(x - x_hat, dim=-1).pow(2).mean(0)


def _rm_einops(x, x_hat):
    return einops.reduce((x - x_hat) ** 2, "b i d -> i", "sum") / x.shape[0]


# -- l1_penalty --------------------------------------------------------------------------------


def _l1_mean_lat(acts, W_dec, l1_coeff, weight_by_decoder_norm):
    m = acts.abs() * (W_dec.norm(dim=1) if weight_by_decoder_norm else 1.0)
    return l1_coeff * m.mean(-1).mean(0)


def _l1_sum_batch(acts, W_dec, l1_coeff, weight_by_decoder_norm):
    m = acts.abs() * (W_dec.norm(dim=1) if weight_by_decoder_norm else 1.0)
    return l1_coeff * m.sum(dim=(0, 2))


def _l1_no_weight(acts, W_dec, l1_coeff, weight_by_decoder_norm):
    return l1_coeff * acts.abs().sum(-1).mean(0)


def _l1_no_abs(acts, W_dec, l1_coeff, weight_by_decoder_norm):
    m = acts * (W_dec.norm(dim=1) if weight_by_decoder_norm else 1.0)
    return l1_coeff * m.sum(-1).mean(0)


def _l1_einsum(acts, W_dec, l1_coeff, weight_by_decoder_norm):
    w = W_dec.norm(dim=1) if weight_by_decoder_norm else torch.ones(acts.shape[1:])
    return l1_coeff * torch.einsum("bil,il->i", acts.abs(), w) / acts.shape[0]


def _l1_norm1(acts, W_dec, l1_coeff, weight_by_decoder_norm):
    if weight_by_decoder_norm:
        acts = acts * torch.linalg.vector_norm(W_dec, dim=-2)
    return l1_coeff * torch.linalg.vector_norm(acts, ord=1, dim=-1).mean(0)


# -- l0_norm ------------------------------------------------------------------------------------


def _l0_fraction(acts):
    return (acts != 0).float().mean(dim=(0, 2))


def _l0_l1(acts):
    return acts.sum(-1).mean(0)


def _l0_wrong_axis(acts):
    return (acts > 0).sum(0).float().mean(-1)


def _l0_gt(acts):
    return (acts > 0).sum(-1).float().mean(0)


def _l0_count_nonzero(acts):
    return torch.count_nonzero(acts, dim=-1).float().mean(0)


# -- explained_variance -----------------------------------------------------------------------------


def _ev_per_dim(x, x_hat):
    return (1 - (x - x_hat).var(0) / x.var(0)).mean(-1)


def _ev_one_minus_mse(x, x_hat):
    return 1 - F.mse_loss(x_hat, x, reduction="none").mean(dim=(0, 2))


def _ev_uncentred(x, x_hat):
    return 1 - ((x - x_hat) ** 2).sum(dim=(0, 2)) / (x ** 2).sum(dim=(0, 2))


def _ev_unexplained(x, x_hat):
    r = x - x_hat
    return ((r - r.mean(0)) ** 2).sum(dim=(0, 2)) / ((x - x.mean(0)) ** 2).sum(dim=(0, 2))


def _ev_torch_var(x, x_hat):
    return 1 - (x - x_hat).var(dim=0).sum(-1) / x.var(dim=0).sum(-1)


def _ev_mse_over_var(x, x_hat):
    # the common "1 - MSE / Var" form: the residual is not centred, wrong once the error has a mean
    return 1 - ((x - x_hat) ** 2).sum(dim=(0, 2)) / ((x - x.mean(0)) ** 2).sum(dim=(0, 2))


def _ev_centred_by_hand(x, x_hat):
    r = x - x_hat
    return 1 - (r - r.mean(0)).pow(2).sum((0, 2)) / (x - x.mean(0)).pow(2).sum((0, 2))


# -- feature_recovery ----------------------------------------------------------------------------------


def _fr_abs(W_true, W_dec):
    a, b = F.normalize(W_true, dim=1), F.normalize(W_dec, dim=1)
    return torch.einsum("idf,idl->ifl", a, b).abs().amax(-1)


def _fr_dot(W_true, W_dec):
    return torch.einsum("idf,idl->ifl", W_true, W_dec).max(-1).values


def _fr_dec_not_normalised(W_true, W_dec):
    a = W_true / W_true.norm(dim=1, keepdim=True)
    return torch.einsum("idf,idl->ifl", a, W_dec).max(-1).values


def _fr_mean(W_true, W_dec):
    a, b = F.normalize(W_true, dim=1), F.normalize(W_dec, dim=1)
    return torch.einsum("idf,idl->ifl", a, b).mean(-1)


def _fr_wrong_axis(W_true, W_dec):
    a, b = F.normalize(W_true, dim=1), F.normalize(W_dec, dim=1)
    return torch.einsum("idf,idl->ifl", a, b).max(1).values


def _fr_cosine_similarity(W_true, W_dec):
    return F.cosine_similarity(W_true[:, :, :, None], W_dec[:, :, None, :], dim=1).max(-1).values


def _fr_loop(W_true, W_dec):
    out = torch.empty(W_true.shape[0], W_true.shape[2])
    for k in range(W_true.shape[0]):
        for i in range(W_true.shape[2]):
            t = W_true[k, :, i]
            out[k, i] = max(float(t @ W_dec[k, :, j] / (t.norm() * W_dec[k, :, j].norm()))
                            for j in range(W_dec.shape[2]))
    return out


# -- dead_latents -------------------------------------------------------------------------------------


def _dl_inverted(acts):
    return (acts > 0).any(0)


def _dl_any_zero(acts):
    return (acts == 0).any(0)


def _dl_last(acts):
    return acts[-1] == 0


def _dl_mean(acts):
    return acts.mean(0) < 0.05


def _dl_any(acts):
    return ~(acts > 0).any(dim=0)


def _dl_max(acts):
    return acts.amax(0) <= 0


# -- resample_dead_latents -------------------------------------------------------------------------


def _rs(x, x_hat, dead, W_enc, b_enc, W_dec, generator, *, weights="squared", enc_scale="live", keep_live=True,
        use_gen=True, dec_from="x", bias=0.0, normalise_dec=True):
    W_enc, b_enc, W_dec = W_enc.clone(), b_enc.clone(), W_dec.clone()
    for k in range(dead.shape[0]):
        idx = torch.where(dead[k])[0]
        if not len(idx):
            continue
        err = (x[:, k] - x_hat[:, k]).norm(dim=-1)
        w = {"squared": err ** 2, "linear": err, "uniform": torch.ones_like(err)}[weights]
        g = generator if use_gen else None
        pick = torch.multinomial(w / w.sum(), len(idx), replacement=True, generator=g)
        v = x[pick, k] if dec_from == "x" else (x - x_hat)[pick, k]
        v = v / v.norm(dim=-1, keepdim=True)
        if enc_scale == "live":
            scale = 0.2 * W_enc[k][:, ~dead[k]].norm(dim=0).mean()
        elif enc_scale == "all":
            scale = 0.2 * W_enc[k].norm(dim=0).mean()
        else:
            scale = 0.2
        if not keep_live:
            W_dec[k] = W_dec[k] / W_dec[k].norm(dim=0) * 0.9
        W_dec[k, :, idx] = v.T if normalise_dec else x[pick, k].T
        W_enc[k, :, idx] = v.T * scale
        b_enc[k, idx] = bias
    return W_enc, b_enc, W_dec


def _rs_unnormalised_decoder(*a):
    return _rs(*a, normalise_dec=False)


def _rs_uniform(*a):
    return _rs(*a, weights="uniform")


def _rs_linear(*a):
    return _rs(*a, weights="linear")


def _rs_all_norm(*a):
    return _rs(*a, enc_scale="all")


def _rs_fixed(*a):
    return _rs(*a, enc_scale="fixed")


def _rs_global_rng(*a):
    return _rs(*a, use_gen=False)


def _rs_touch_live(*a):
    return _rs(*a, keep_live=False)


def _rs_error_direction(*a):
    return _rs(*a, dec_from="error")


def _rs_bias_kept(x, x_hat, dead, W_enc, b_enc, W_dec, generator):
    new_enc, _, new_dec = _rs(x, x_hat, dead, W_enc, b_enc, W_dec, generator)
    return new_enc, b_enc.clone(), new_dec


def _rs_vectorised(x, x_hat, dead, W_enc, b_enc, W_dec, generator):
    # one instance at a time, but with masks instead of index lists
    W_enc, b_enc, W_dec = W_enc.clone(), b_enc.clone(), W_dec.clone()
    sq = ((x - x_hat) ** 2).sum(-1)
    for k in range(x.shape[1]):
        n = int(dead[k].sum())
        if n == 0:
            continue
        rows = torch.multinomial(sq[:, k], n, replacement=True, generator=generator)
        new = F.normalize(x[rows, k], dim=-1).T
        live = W_enc[k][:, ~dead[k]].norm(dim=0).mean()
        W_dec[k][:, dead[k]] = new
        W_enc[k][:, dead[k]] = new * live * 0.2
        b_enc[k][dead[k]] = 0
    return W_enc, b_enc, W_dec


# -- topk_activations ---------------------------------------------------------------------------------


def _tk_no_relu(pre, k):
    v, i = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, i, v)


def _tk_wrong_axis(pre, k):
    v, i = pre.topk(k, dim=0)
    return torch.zeros_like(pre).scatter(0, i, v.relu())


def _tk_abs(pre, k):
    i = pre.abs().topk(k, dim=-1).indices
    return torch.zeros_like(pre).scatter(-1, i, pre.gather(-1, i)).relu()


def _tk_relu_only(pre, k):
    return F.relu(pre)


def _tk_threshold(pre, k):
    kth = pre.topk(k, dim=-1).values[..., -1:]
    return torch.where(pre >= kth, pre.relu(), 0.0)


def _tk_relu_first(pre, k):
    r = pre.relu()
    v, i = r.topk(k, dim=-1)
    return torch.zeros_like(r).scatter(-1, i, v)


# -- loss_recovered -----------------------------------------------------------------------------------


def _lr_inverted(ce_clean, ce_sae, ce_zero):
    return (ce_sae - ce_clean) / (ce_zero - ce_clean)


def _lr_rel_clean(ce_clean, ce_sae, ce_zero):
    return (ce_zero - ce_sae) / ce_clean


def _lr_ratio(ce_clean, ce_sae, ce_zero):
    return ce_clean / ce_sae


def _lr_one_minus(ce_clean, ce_sae, ce_zero):
    return 1 - (ce_sae - ce_clean) / (ce_zero - ce_clean)


# -- splice_hook ------------------------------------------------------------------------------------


def _recon(activation, W_enc, b_enc, W_dec, b_dec, sub=True):
    x = activation.reshape(-1, 1, activation.shape[-1])
    f = torch.relu(torch.einsum("nid,idl->nil", x - (b_dec if sub else 0), W_enc) + b_enc)
    return (torch.einsum("nil,idl->nid", f, W_dec) + b_dec).reshape(activation.shape)


def _sp_unchanged(activation, hook, W_enc, b_enc, W_dec, b_dec):
    return activation


def _sp_error(activation, hook, W_enc, b_enc, W_dec, b_dec):
    return activation - _recon(activation, W_enc, b_enc, W_dec, b_dec)


def _sp_no_sub(activation, hook, W_enc, b_enc, W_dec, b_dec):
    return _recon(activation, W_enc, b_enc, W_dec, b_dec, sub=False)


def _sp_added(activation, hook, W_enc, b_enc, W_dec, b_dec):
    return activation + _recon(activation, W_enc, b_enc, W_dec, b_dec)


def _sp_inplace(activation, hook, W_enc, b_enc, W_dec, b_dec):
    activation[:] = _recon(activation, W_enc, b_enc, W_dec, b_dec)
    return activation


def _sp_direct(activation, hook, W_enc, b_enc, W_dec, b_dec):
    f = torch.relu((activation - b_dec[0]) @ W_enc[0] + b_enc[0])
    return f @ W_dec[0].T + b_dec[0]


# -- zero_ablation_hook ---------------------------------------------------------------------------------


def _za_mean(activation, hook):
    return activation.mean(dim=(0, 1), keepdim=True).expand_as(activation)


def _za_none(activation, hook):
    torch.zeros_like(activation)


def _za_unchanged(activation, hook):
    return activation


def _za_inplace(activation, hook):
    activation.zero_()
    return activation


def _za_times_zero(activation, hook):
    return activation * 0.0


def _za_new_zeros(activation, hook):
    return torch.zeros(activation.shape, dtype=activation.dtype, device=activation.device)


# -- max_activating_examples ---------------------------------------------------------------------------


def _mae_smallest(acts, k):
    v, f = acts.flatten().topk(k, largest=False)
    return v, f // acts.shape[1], f % acts.shape[1]


def _mae_swapped(acts, k):
    v, f = acts.flatten().topk(k)
    return v, f // acts.shape[0], f % acts.shape[0]


def _mae_per_seq(acts, k):
    best, pos = acts.max(dim=1)
    v, seq = best.topk(k)
    return v, seq, pos[seq]


def _mae_unravel(acts, k):
    v, f = acts.reshape(-1).topk(k)
    seq, pos = torch.unravel_index(f, acts.shape)
    return v, seq, pos


def _mae_sort(acts, k):
    v, f = acts.flatten().sort(descending=True)
    f = f[:k]
    return v[:k], torch.div(f, acts.shape[1], rounding_mode="floor"), torch.remainder(f, acts.shape[1])


# -- latent_logit_effect ----------------------------------------------------------------------------------


def _lle_uncentred(W_dec, W_U):
    return W_dec.T @ W_U


def _lle_centred_latents(W_dec, W_U):
    e = W_dec.T @ W_U
    return e - e.mean(0)


def _lle_negative(W_dec, W_U):
    e = W_U.T @ W_dec
    return (e.mean(0, keepdim=True) - e).T


def _lle_centre_unembed(W_dec, W_U):
    return W_dec.T @ (W_U - W_U.mean(dim=1, keepdim=True))


# -- steering_hook ------------------------------------------------------------------------------------------


def _st_minus(activation, hook, direction, scale):
    return activation - scale * direction


def _st_replace(activation, hook, direction, scale):
    return (scale * direction).expand(activation.shape).clone()


def _st_last(activation, hook, direction, scale):
    out = activation.clone()
    out[:, -1] += scale * direction
    return out


def _st_no_scale(activation, hook, direction, scale):
    return activation + direction


def _st_inplace(activation, hook, direction, scale):
    activation += scale * direction
    return activation


def _st_einops(activation, hook, direction, scale):
    return activation + einops.rearrange(direction, "d -> 1 1 d") * scale


# -- latent_ablation_hook -------------------------------------------------------------------------------------


def _f(activation, W_enc, b_enc, b_dec, latent):
    f = torch.relu((activation - b_dec[0]) @ W_enc[0] + b_enc[0])
    return f[..., latent:latent + 1]


def _la_added(activation, hook, W_enc, b_enc, W_dec, b_dec, latent):
    return activation + _f(activation, W_enc, b_enc, b_dec, latent) * W_dec[0, :, latent]


def _la_unscaled(activation, hook, W_enc, b_enc, W_dec, b_dec, latent):
    return activation - W_dec[0, :, latent]


def _la_reconstruction(activation, hook, W_enc, b_enc, W_dec, b_dec, latent):
    f = torch.relu((activation - b_dec[0]) @ W_enc[0] + b_enc[0])
    f = f.clone()
    f[..., latent] = 0
    return f @ W_dec[0].T + b_dec[0]


def _la_encoder(activation, hook, W_enc, b_enc, W_dec, b_dec, latent):
    return activation - _f(activation, W_enc, b_enc, b_dec, latent) * W_enc[0, :, latent]


def _la_inplace(activation, hook, W_enc, b_enc, W_dec, b_dec, latent):
    activation -= _f(activation, W_enc, b_enc, b_dec, latent) * W_dec[0, :, latent]
    return activation


def _la_difference(activation, hook, W_enc, b_enc, W_dec, b_dec, latent):
    # reconstruction with and without the latent: same contribution, computed as a difference
    f = torch.relu((activation - b_dec[0]) @ W_enc[0] + b_enc[0])
    f_off = f.clone()
    f_off[..., latent] = 0
    return activation - (f @ W_dec[0].T - f_off @ W_dec[0].T)


VARIANTS = {
    "ch3.sae_encode": [
        Wrong("no decoder-bias subtraction", _enc_no_bdec, mistake="decoder bias not subtracted"),
        Wrong("decoder bias added", _enc_plus_bdec, mistake="decoder bias added"),
        Wrong("no ReLU", _enc_no_relu, mistake="missing ReLU"),
        Wrong("ReLU before bias", _enc_relu_first, mistake="ReLU before the bias"),
        Wrong("no encoder bias", _enc_no_benc, mistake="missing encoder bias"),
        Right("matmul with transposes", _enc_matmul),
        Right("einsum + clamp", _enc_clamp),
    ],
    "ch3.sae_decode": [
        Wrong("no bias", _dec_no_bias, mistake="missing decoder bias"),
        Wrong("bias subtracted", _dec_minus_bias, mistake="decoder bias subtracted"),
        Wrong("ReLU on output", _dec_relu, mistake="ReLU on the reconstruction"),
        Right("matmul", _dec_matmul),
    ],
    "ch3.normalise_decoder": [
        Wrong("rows over latents", _nd_wrong_axis, mistake="wrong axis"),
        Wrong("Frobenius norm", _nd_frobenius, mistake="whole matrix"),
        Wrong("squared norm", _nd_squared, mistake="squared norm"),
        Wrong("instance axis", _nd_dim0, mistake="instance axis"),
        Right("F.normalize", _nd_normalize),
        Right("sqrt of sum of squares", _nd_sqrt),
    ],
    "ch3.reconstruction_mse": [
        Wrong("F.mse_loss mean", _rm_mean_d, mistake="mean over d_in"),
        Wrong("sum over batch", _rm_sum_batch, mistake="sum over the batch"),
        Wrong("absolute error", _rm_abs, mistake="not squared"),
        Wrong("error norm", _rm_norm, mistake="norm not squared"),
        Right("squared vector norm", _rm_norm_squared),
        Right("einops reduce", _rm_einops),
    ],
    "ch3.l1_penalty": [
        Wrong("mean over latents", _l1_mean_lat, mistake="mean over latents"),
        Wrong("sum over batch", _l1_sum_batch, mistake="sum over the batch"),
        Wrong("ignores the weighting flag", _l1_no_weight, mistake="missing decoder-norm weighting"),
        Wrong("no abs", _l1_no_abs, mistake="no absolute value"),
        Right("einsum with weights", _l1_einsum),
        Right("vector_norm ord=1", _l1_norm1),
    ],
    "ch3.l0_norm": [
        Wrong("fraction of latents", _l0_fraction, mistake="fraction of latents"),
        Wrong("sum of values", _l0_l1, mistake="L1 not L0"),
        Wrong("count over the batch", _l0_wrong_axis, mistake="wrong axis"),
        Right("acts > 0", _l0_gt),
        Right("count_nonzero", _l0_count_nonzero),
    ],
    "ch3.explained_variance": [
        Wrong("per-dimension ratios", _ev_per_dim, mistake="per-dimension average"),
        Wrong("1 - MSE", _ev_one_minus_mse, mistake="1 - MSE"),
        Wrong("uncentred Var(x)", _ev_uncentred, mistake="uncentred Var(x)"),
        Wrong("fraction unexplained", _ev_unexplained, mistake="variance not explained"),
        Right("torch.var summed", _ev_torch_var),
        Wrong("1 - MSE / Var (residual not centred)", _ev_mse_over_var, mistake="uncentred residual"),
        Right("centred by hand with pow", _ev_centred_by_hand),
    ],
    "ch3.feature_recovery": [
        Wrong("absolute cosine", _fr_abs, mistake="absolute cosine"),
        Wrong("dot products", _fr_dot, mistake="dot product, not cosine"),
        Wrong("decoder not normalised", _fr_dec_not_normalised, mistake="decoder not normalised"),
        Wrong("mean over latents", _fr_mean, mistake="mean, not best"),
        Wrong("max over features", _fr_wrong_axis, mistake="max over the wrong axis"),
        Right("F.cosine_similarity", _fr_cosine_similarity),
        Right("loops", _fr_loop),
    ],
    "ch3.dead_latents": [
        Wrong("alive instead of dead", _dl_inverted, mistake="inverted"),
        Wrong("zero on some input", _dl_any_zero, mistake="zero anywhere"),
        Wrong("last input only", _dl_last, mistake="last input only"),
        Wrong("low mean", _dl_mean, mistake="mean below threshold"),
        Right("~any", _dl_any),
        Right("max <= 0", _dl_max),
    ],
    "ch3.resample_dead_latents": [
        Wrong("uniform sampling", _rs_uniform, mistake="not weighted by error"),
        Wrong("weights linear in the error", _rs_linear, mistake="error not squared"),
        Wrong("encoder scaled by all columns", _rs_all_norm, mistake="wrong encoder scale"),
        Wrong("encoder norm 0.2", _rs_fixed, mistake="wrong encoder scale"),
        Wrong("global RNG", _rs_global_rng, mistake="ignored the generator"),
        Wrong("renormalises live columns", _rs_touch_live, mistake="live latents changed"),
        Wrong("decoder from the error vector", _rs_error_direction, mistake="decoder column not an input"),
        Wrong("encoder bias kept", _rs_bias_kept, mistake="encoder bias not reset"),
        Wrong("decoder column not divided by its norm", _rs_unnormalised_decoder, mistake="decoder column not normalised"),
        Right("boolean masks", _rs_vectorised),
    ],
    "ch3.topk_activations": [
        Wrong("no ReLU", _tk_no_relu, mistake="no ReLU"),
        Wrong("top inputs per latent", _tk_wrong_axis, mistake="wrong axis"),
        Wrong("largest |pre|", _tk_abs, mistake="largest magnitude"),
        Wrong("ReLU only", _tk_relu_only, mistake="ReLU before topk misses zeros"),
        Right("threshold at the k-th value", _tk_threshold),
        Right("ReLU then topk", _tk_relu_first),
    ],
    "ch3.loss_recovered": [
        Wrong("fraction lost", _lr_inverted, mistake="inverted"),
        Wrong("relative to clean", _lr_rel_clean, mistake="relative to clean"),
        Wrong("ratio", _lr_ratio, mistake="ratio of losses"),
        Right("1 - fraction lost", _lr_one_minus),
    ],
    "ch3.splice_hook": [
        Wrong("returns the activation", _sp_unchanged, mistake="activation unchanged"),
        Wrong("returns the error", _sp_error, mistake="error term"),
        Wrong("no decoder-bias subtraction", _sp_no_sub, mistake="decoder bias not subtracted"),
        Wrong("adds the reconstruction", _sp_added, mistake="added to the activation"),
        Wrong("writes in place", _sp_inplace, mistake="in-place edit"),
        Right("matmuls on [batch, pos, d]", _sp_direct),
    ],
    "ch3.zero_ablation_hook": [
        Wrong("mean ablation", _za_mean, mistake="mean ablation"),
        Wrong("forgot return", _za_none, mistake="returned None"),
        Wrong("unchanged", _za_unchanged, mistake="activation unchanged"),
        Wrong("zero_ in place", _za_inplace, mistake="in-place edit"),
        Right("times zero", _za_times_zero),
        Right("torch.zeros", _za_new_zeros),
    ],
    "ch3.max_activating_examples": [
        Wrong("smallest first", _mae_smallest, mistake="smallest"),
        Wrong("divmod by n_seq", _mae_swapped, mistake="swapped indices"),
        Wrong("best per sequence", _mae_per_seq, mistake="one per sequence"),
        Right("unravel_index", _mae_unravel),
        Right("sort", _mae_sort),
    ],
    "ch3.latent_logit_effect": [
        Wrong("not centred", _lle_uncentred, mistake="not centred"),
        Wrong("centred over latents", _lle_centred_latents, mistake="centred over latents"),
        Wrong("sign flipped", _lle_negative, mistake="wrong sign"),
        Right("centre the unembedding first", _lle_centre_unembed),
    ],
    "ch3.steering_hook": [
        Wrong("subtracts", _st_minus, mistake="wrong sign"),
        Wrong("replaces", _st_replace, mistake="replaced the activation"),
        Wrong("last position", _st_last, mistake="last position only"),
        Wrong("no scale", _st_no_scale, mistake="scale ignored"),
        Wrong("+= in place", _st_inplace, mistake="in-place edit"),
        Right("einops rearrange", _st_einops),
    ],
    "ch3.latent_ablation_hook": [
        Wrong("adds the contribution", _la_added, mistake="added"),
        Wrong("unscaled direction", _la_unscaled, mistake="direction not scaled"),
        Wrong("reconstruction without the latent", _la_reconstruction, mistake="replaced by the reconstruction"),
        Wrong("encoder column", _la_encoder, mistake="encoder column"),
        Wrong("-= in place", _la_inplace, mistake="in-place edit"),
        Right("difference of reconstructions", _la_difference),
    ],
}


def _steer_normalised(activation, hook, direction, scale):
    return activation + scale * direction / direction.norm()


VARIANTS["ch3.steering_hook"] = VARIANTS["ch3.steering_hook"] + [
    Wrong("normalised the direction", _steer_normalised, mistake="normalised the direction")]
