"""Graders for 3.1 "Sparse autoencoders".

Every check runs on small seeded random tensors (never a trained SAE or a model) and takes
well under a second. Resampling is random, so it is graded on properties with a passed-in
torch.Generator: which inputs get picked, the new columns' directions and norms.
"""

from __future__ import annotations

import einops
import torch

from solutions.ch3_sparse_autoencoders import sparse_autoencoders as ref
from utils.grading import Mistake, exercise

# -- helpers ----------------------------------------------------------------------------------


def _unit_columns(W):
    return W / W.norm(dim=1, keepdim=True)


def _sae(check, inst=2, d_in=6, lat=10):
    W_enc = check.randn(inst, d_in, lat)
    b_enc = check.randn(inst, lat, scale=0.5)
    W_dec = _unit_columns(check.randn(inst, d_in, lat))
    b_dec = check.randn(inst, d_in)
    return W_enc, b_enc, W_dec, b_dec


def _sparse_acts(check, batch=16, inst=2, lat=10):
    acts = torch.relu(check.randn(batch, inst, lat) - 0.5)
    return acts


def _enc(x, W_enc, b_enc, b_dec):
    return einops.einsum(x - b_dec, W_enc, "b i d, i d l -> b i l") + b_enc


def _dec(acts, W_dec):
    return einops.einsum(acts, W_dec, "b i l, i d l -> b i d")


# -- the objective ------------------------------------------------------------------------------


@exercise(difficulty=1, minutes=10, hints=[
    "Three steps: subtract the decoder bias from x, multiply by the encoder, add the encoder bias; then a ReLU.",
    "With the instance axis: einops.einsum(x - b_dec, W_enc, 'batch inst d_in, inst d_in lat -> batch inst lat').",
    "torch.relu(einops.einsum(x - b_dec, W_enc, 'batch inst d_in, inst d_in lat -> batch inst lat') + b_enc)",
])
def test_sae_encode(check):
    W_enc, b_enc, W_dec, b_dec = _sae(check)
    x = check.randn(8, 2, 6)
    check.case("random SAE, 8 inputs, 2 instances", x, W_enc, b_enc, b_dec, mistakes=[
        Mistake("decoder bias not subtracted",
                "Subtract the decoder bias from x *before* the encoder: the encoder reads x - b_dec.",
                lambda x, W, b, bd: torch.relu(_enc(x + bd, W, b, bd))),
        Mistake("decoder bias added",
                "The decoder bias is *subtracted* from the input before encoding, not added.",
                lambda x, W, b, bd: torch.relu(_enc(x + 2 * bd, W, b, bd))),
        Mistake("missing ReLU",
                "Latent activations are non-negative: apply a ReLU after adding the encoder bias.",
                lambda x, W, b, bd: _enc(x, W, b, bd)),
        Mistake("missing encoder bias",
                "Add the encoder bias b_enc before the ReLU.",
                lambda x, W, b, bd: torch.relu(_enc(x, W, b, bd) - b)),
        Mistake("ReLU before the bias",
                "The encoder bias goes *inside* the ReLU: ReLU(W_enc^T (x - b_dec) + b_enc).",
                lambda x, W, b, bd: torch.relu(_enc(x, W, b, bd) - b) + b),
    ])


@exercise(difficulty=1, minutes=5, hints=[
    "The reconstruction is a weighted sum of the decoder columns, the weights being the latent activations.",
    "einops.einsum(acts, W_dec, 'batch inst lat, inst d_in lat -> batch inst d_in'), then the bias.",
    "einops.einsum(acts, W_dec, 'batch inst lat, inst d_in lat -> batch inst d_in') + b_dec",
])
def test_sae_decode(check):
    _, _, W_dec, b_dec = _sae(check)
    acts = _sparse_acts(check, batch=8)
    check.case("random sparse latents, 2 instances", acts, W_dec, b_dec, mistakes=[
        Mistake("missing decoder bias", "Add the decoder bias b_dec back after the matrix product.",
                lambda a, W, b: _dec(a, W)),
        Mistake("decoder bias subtracted",
                "The encoder subtracts b_dec; the decoder *adds* it back.",
                lambda a, W, b: _dec(a, W) - b),
        Mistake("ReLU on the reconstruction",
                "The reconstruction is linear in the latents: no ReLU on the output (activations can be negative).",
                lambda a, W, b: torch.relu(_dec(a, W) + b)),
    ])


@exercise(difficulty=1, minutes=5, hints=[
    "Each latent's decoder column is W_dec[k, :, j]: its norm is taken over the d_in axis (dim=1).",
    "W_dec.norm(dim=1, keepdim=True) has shape [inst, 1, lat] and broadcasts back over d_in.",
    "W_dec / W_dec.norm(dim=1, keepdim=True)",
])
def test_normalise_decoder(check):
    W = check.randn(3, 5, 7) * torch.linspace(0.2, 3.0, 7, device=check.device)
    check.case("random decoder [3 inst, 5 d_in, 7 lat]", W, mistakes=[
        Mistake("wrong axis",
                "Normalise each *column* (one per latent, axis d_in = dim 1), not each row over the latents.",
                lambda W: W / W.norm(dim=-1, keepdim=True)),
        Mistake("whole matrix",
                "Each latent's column gets its own norm; dividing by the whole matrix's norm keeps their ratios.",
                lambda W: W / W.norm(dim=(1, 2), keepdim=True)),
        Mistake("squared norm",
                "Divide by the norm, not the squared norm (sum of squares).",
                lambda W: W / (W ** 2).sum(dim=1, keepdim=True)),
        Mistake("instance axis",
                "Axis 0 is the instance axis; the column's entries run along d_in (dim 1).",
                lambda W: W / W.norm(dim=0, keepdim=True)),
    ])


@exercise(difficulty=1, minutes=5, hints=[
    "Square the error, sum it over d_in, then average over the batch: one number per instance.",
    "((x_hat - x) ** 2).sum(dim=-1) has shape [batch, inst].",
    "((x_hat - x) ** 2).sum(dim=-1).mean(dim=0)",
])
def test_reconstruction_mse(check):
    x, x_hat = check.randn(12, 3, 5), check.randn(12, 3, 5)
    check.case("random x and x_hat, 3 instances", x, x_hat, mistakes=[
        Mistake("mean over d_in", "Sum the squared error over the input dimensions (then average over the batch).",
                lambda x, y: ((y - x) ** 2).mean(dim=(0, 2))),
        Mistake("sum over the batch", "Average over the batch, so that the loss doesn't grow with the batch size.",
                lambda x, y: ((y - x) ** 2).sum(dim=(0, 2))),
        Mistake("not squared", "It is the *squared* error: (x_hat - x) ** 2.",
                lambda x, y: (y - x).abs().sum(-1).mean(0)),
        Mistake("norm not squared", "Square the error norm: sum of squares, not its square root.",
                lambda x, y: (y - x).norm(dim=-1).mean(0)),
    ])


def _l1(acts, W_dec, coeff, weighted, *, reduce_lat="sum", norm_dim=1, batch="mean"):
    mag = acts.abs()
    if weighted:
        mag = mag * W_dec.norm(dim=norm_dim)
    per = mag.sum(-1) if reduce_lat == "sum" else mag.mean(-1)
    return coeff * (per.mean(0) if batch == "mean" else per.sum(0))


@exercise(difficulty=2, minutes=10, hints=[
    "Per input, add up |f_j| over the latents; average that over the batch; multiply by the instance's coefficient.",
    "For the weighted variant multiply each |f_j| by its decoder column's norm, W_dec.norm(dim=1) ([inst, lat]), "
    "before summing over latents.",
    "l1_coeff * (acts.abs() * W_dec.norm(dim=1)).sum(-1).mean(0), without the norm when weight_by_decoder_norm is False.",
])
def test_l1_penalty(check):
    acts = _sparse_acts(check, batch=10, inst=2, lat=8)
    W_dec = check.randn(2, 5, 8) * torch.linspace(0.3, 2.0, 8, device=check.device)   # columns deliberately not unit norm
    coeff = torch.tensor([0.1, 2.0]).to(check.device)
    for weighted in (False, True):
        check.case(f"weight_by_decoder_norm={weighted}", acts, W_dec, coeff, weighted, mistakes=[
            Mistake("mean over latents", "Sum |f_j| over the latents; a mean would make the penalty shrink as "
                    "the dictionary grows.", lambda a, W, c, w: _l1(a, W, c, w, reduce_lat="mean")),
            Mistake("sum over the batch", "Average the per-input penalty over the batch (the MSE is averaged too).",
                    lambda a, W, c, w: _l1(a, W, c, w, batch="sum")),
            Mistake("missing decoder-norm weighting",
                    "With weight_by_decoder_norm=True each |f_j| is multiplied by ||W_dec[:, :, j]||.",
                    lambda a, W, c, w: _l1(a, W, c, False)),
            Mistake("decoder norm over the wrong axis",
                    "The weight of latent j is the norm of its decoder *column*: W_dec.norm(dim=1), shape [inst, lat].",
                    lambda a, W, c, w: _l1(a, W, c, w, norm_dim=2) if w else _l1(a, W, c, w)),
        ])
    pre = check.randn(10, 2, 8)
    check.case("raw pre-activations (negative entries count by their size)", pre, W_dec, coeff, False, mistakes=[
        Mistake("no absolute value", "The L1 norm is the sum of *absolute* values: acts.abs().",
                lambda a, W, c, w: c * a.sum(-1).mean(0)),
    ])


@exercise(difficulty=1, minutes=5, hints=[
    "L0 counts how many latents are non-zero for each input, averaged over the inputs.",
    "(acts != 0) is a boolean [batch, inst, lat]; count over the latent axis.",
    "(acts != 0).float().sum(-1).mean(0)",
])
def test_l0_norm(check):
    acts = _sparse_acts(check, batch=20, inst=3, lat=9)
    check.case("sparse latents, 20 inputs, 9 latents", acts, mistakes=[
        Mistake("fraction of latents", "L0 is a *count* of firing latents per input, not the fraction of them.",
                lambda a: (a != 0).float().mean(dim=(0, 2))),
        Mistake("L1 not L0", "Count the non-zero latents; don't add up their values.",
                lambda a: a.sum(-1).mean(0)),
        Mistake("wrong axis", "Count over the latent axis (last) for each input, then average over inputs; "
                "you counted over the batch.", lambda a: (a != 0).float().sum(0).mean(-1)),
    ])


def _ev_per_feature(x, y):
    r = x - y
    return (1 - r.var(dim=0) / x.var(dim=0)).mean(-1)


@exercise(difficulty=2, minutes=10, hints=[
    "Both variances are totals: the squared deviations from the batch mean, summed over the batch *and* d_in.",
    "resid = x - x_hat; Var(resid) = ((resid - resid.mean(0)) ** 2).sum(dim=(0, 2)), the same for x.",
    "1 - ((r - r.mean(0)) ** 2).sum(dim=(0, 2)) / ((x - x.mean(0)) ** 2).sum(dim=(0, 2)) with r = x - x_hat",
])
def test_explained_variance(check):
    scales = torch.tensor([4.0, 1.0, 0.3, 0.1, 2.0]).to(check.device)
    x = check.randn(50, 2, 5) * scales + 3.0
    noise = check.randn(50, 2, 5) * 0.5
    noise = noise - noise.mean(dim=0)   # zero-mean error: centred and uncentred Var(resid) agree
    check.case("dimensions of different scales, offset mean", x, x - noise, mistakes=[
        Mistake("per-dimension average",
                "Pool the variance over all dimensions before dividing; averaging per-dimension ratios lets quiet "
                "dimensions dominate.", _ev_per_feature),
        Mistake("1 - MSE", "Normalise by the variance of x: explained variance is 1 - Var(resid) / Var(x).",
                lambda x, y: 1 - ((x - y) ** 2).mean(dim=(0, 2))),
        Mistake("uncentred Var(x)", "Var(x) is measured around the batch mean of x: subtract x.mean(0) first.",
                lambda x, y: 1 - ((x - y) ** 2).sum(dim=(0, 2)) / (x ** 2).sum(dim=(0, 2))),
        Mistake("variance not explained", "Return the fraction *explained*: 1 minus the ratio.",
                lambda x, y: ((x - y) ** 2).sum(dim=(0, 2)) / ((x - x.mean(0)) ** 2).sum(dim=(0, 2))),
    ])
    offset = torch.tensor([0.7, -0.4, 0.0, 0.2, 1.0]).to(check.device)
    check.case("a reconstruction off by a constant", x, x - noise - offset, mistakes=[
        Mistake("uncentred residual", "Var(x - x_hat) is measured around the residual's own batch mean, as "
                "Var(x) is around x's: subtract (x - x_hat).mean(0) before squaring (1 - MSE / Var(x) is not the "
                "same once the error has a mean).",
                lambda x, y: 1 - ((x - y) ** 2).sum(dim=(0, 2)) / ((x - x.mean(0)) ** 2).sum(dim=(0, 2))),
        Mistake("uncentred Var(x)", "Var(x) is measured around the batch mean of x: subtract x.mean(0) first.",
                lambda x, y: 1 - (((x - y) - (x - y).mean(0)) ** 2).sum(dim=(0, 2)) / (x ** 2).sum(dim=(0, 2))),
    ])


def _cos(A, B):
    return einops.einsum(_unit_columns(A), _unit_columns(B), "i d f, i d l -> i f l")


@exercise(difficulty=2, minutes=10, hints=[
    "Normalise the true directions and the decoder columns (over d_in), then take all their dot products.",
    "einops.einsum(true_hat, dec_hat, 'inst d_in feat, inst d_in lat -> inst feat lat') are the cosines; "
    "for each feature keep the best latent.",
    "cosines.max(dim=-1).values (signed: a column pointing the other way does not count)",
])
def test_feature_recovery(check):
    mistakes = [
        Mistake("absolute cosine", "Keep the sign: a column pointing opposite a feature cannot represent it "
                "(latents are non-negative).", lambda A, B: _cos(A, B).abs().max(-1).values),
        Mistake("dot product, not cosine", "Normalise both sets of vectors first: a cosine, not a dot product.",
                lambda A, B: einops.einsum(A, B, "i d f, i d l -> i f l").max(-1).values),
        Mistake("decoder not normalised", "Normalise the decoder columns too (they need not be unit norm).",
                lambda A, B: einops.einsum(_unit_columns(A), B, "i d f, i d l -> i f l").max(-1).values),
        Mistake("mean, not best", "For each feature keep the *best* match over the latents, not the average.",
                lambda A, B: _cos(A, B).mean(-1)),
        Mistake("max over the wrong axis", "The result is per *true feature*: take the max over the latents "
                "(last axis of the [inst, feat, lat] cosines).", lambda A, B: _cos(A, B).max(-2).values),
    ]
    W_true = check.randn(2, 6, 5) * 2.0
    check.case("as many columns as features", W_true, check.randn(2, 6, 5) * 3.0, mistakes=mistakes)
    W_dec = check.randn(2, 6, 7) * 3.0
    W_dec[:, :, :2] = -W_true[:, :, :2]   # two columns point exactly opposite two features
    W_dec[:, :, 2] = W_true[:, :, 3] + 0.3 * check.randn(2, 6)
    check.case("5 features, 7 decoder columns (two of them anti-aligned)", W_true, W_dec, mistakes=mistakes)


# -- dead latents -------------------------------------------------------------------------------


@exercise(difficulty=1, minutes=5, hints=[
    "A latent is dead when it fired on no input at all in the window.",
    "(acts > 0) is [batch, inst, lat]; reduce over the batch axis.",
    "(acts > 0).sum(dim=0) == 0, or ~(acts > 0).any(dim=0)",
])
def test_dead_latents(check):
    acts = torch.relu(check.randn(30, 2, 12) - 1.5)
    acts[:, :, :3] = 0.0
    acts[0, :, 3] = 0.7            # fires once: alive
    acts[:, 0, 4] = 0.0
    check.case("a window of 30 inputs", acts, mistakes=[
        Mistake("inverted", "Return True for the *dead* latents (never fired), not for the live ones.",
                lambda a: (a > 0).any(0)),
        Mistake("zero anywhere", "Dead means zero on *every* input, not on at least one.",
                lambda a: (a == 0).any(0)),
        Mistake("last input only", "Look at the whole window (all inputs on the batch axis), not one input.",
                lambda a: a[-1] == 0),
        Mistake("mean below threshold", "A latent that fires once is alive: test for any firing, not a low mean.",
                lambda a: a.mean(0) < 0.05),
    ])


def _resample_setup(check, n_dead=300):
    inst, d_in, lat = 1, 4, n_dead + 4
    x = check.randn(6, inst, d_in) * 3.0
    x_hat = x.clone()
    # only inputs 1 and 4 are badly reconstructed; their errors have norms 1 and 3
    e1, e4 = check.randn(inst, d_in), check.randn(inst, d_in)
    x_hat[1] = x[1] - e1 / e1.norm(dim=-1, keepdim=True)
    x_hat[4] = x[4] - 3.0 * e4 / e4.norm(dim=-1, keepdim=True)
    W_enc = check.randn(inst, d_in, lat)
    W_enc[:, :, :4] = W_enc[:, :, :4] * torch.tensor([1.0, 2.0, 3.0, 6.0], device=check.device)   # live norms vary
    b_enc = check.randn(inst, lat)
    W_dec = _unit_columns(check.randn(inst, d_in, lat))
    dead = torch.zeros(inst, lat, dtype=torch.bool)
    dead[:, 4:] = True
    return x, x_hat, dead, W_enc, b_enc, W_dec


@exercise(difficulty=3, minutes=25, timeout=10.0, hints=[
    "Per instance: the squared error of each input, ||x - x_hat||^2, gives the sampling weights; "
    "torch.multinomial(weights, n_dead, replacement=True, generator=generator) picks one input per dead latent.",
    "The dead latent's decoder column is the picked input divided by its norm; its encoder column is that unit "
    "vector times 0.2 * (mean norm over d_in of the live encoder columns); its encoder bias is 0.",
    "Clone W_enc, b_enc and W_dec first and write only the dead latents' entries, e.g. "
    "W_dec[k][:, idx] = directions.T with idx = dead[k].nonzero().squeeze(-1).",
])
def test_resample_dead_latents(check):
    x, x_hat, dead, W_enc, b_enc, W_dec = _resample_setup(check)
    case = "300 dead latents, errors only on inputs 1 and 4 (norms 1 and 3)"
    out = check.run(x, x_hat, dead, W_enc, b_enc, W_dec, torch.Generator().manual_seed(0), case=case)
    check.expect(isinstance(out, tuple) and len(out) == 3 and all(isinstance(t, torch.Tensor) for t in out),
                 case=case, message="expected a tuple (W_enc, b_enc, W_dec) of tensors",
                 hint="Return the three updated tensors as a tuple: (W_enc, b_enc, W_dec).")
    new_enc, new_b, new_dec = out
    check.expect(new_enc.shape == W_enc.shape and new_b.shape == b_enc.shape and new_dec.shape == W_dec.shape,
                 case=case, message="shapes changed", hint="Return tensors with the same shapes as the inputs.")
    live = ~dead[0]
    check.expect(torch.allclose(new_enc[0][:, live], W_enc[0][:, live]) and torch.allclose(new_b[0][live], b_enc[0][live])
                 and torch.allclose(new_dec[0][:, live], W_dec[0][:, live]), case=case,
                 message="a live latent's parameters changed", mistake="live latents changed",
                 hint="Only the dead latents are re-initialised; copy the live ones unchanged.")
    dirs = new_dec[0][:, dead[0]]                                              # [d_in, n_dead]
    norms = dirs.norm(dim=0)
    check.expect(bool(((norms - 1).abs() < 1e-4).all()), case=case,
                 message=f"new decoder columns have norms from {norms.min().item():.3g} to {norms.max().item():.3g}, "
                         "expected 1", mistake="decoder column not normalised",
                 hint="Divide the chosen input by its norm before writing it into W_dec: decoder columns are unit "
                      "vectors (the encoder column is then 0.2 x the mean live encoder norm times that unit vector).")
    units = _unit_columns(x[:, 0].T.unsqueeze(0))[0]                           # [d_in, batch]
    match = (dirs.T @ units).max(dim=-1)                                       # best input per new column
    check.expect(bool((match.values > 1 - 1e-4).all()), case=case,
                 message="some new decoder columns are not a (normalised) input vector",
                 mistake="decoder column not an input",
                 hint="Each dead latent's new decoder column is one of the inputs x, divided by its norm.")
    picked = match.indices
    check.expect(bool(((picked == 1) | (picked == 4)).all()), case=case,
                 message=f"inputs reconstructed perfectly were picked ({int(((picked != 1) & (picked != 4)).sum())} "
                         "of 300 times)", mistake="not weighted by error",
                 hint="Sample inputs with probability proportional to their squared reconstruction error "
                      "(here only inputs 1 and 4 have any error).")
    share4 = (picked == 4).float().mean().item()
    check.expect(share4 > 0.84, case=case,
                 message=f"input 4 (error norm 3) was picked {100 * share4:.0f}% of the time; with weights "
                         "proportional to the *squared* error it should be about 90% (75% if linear in the error)",
                 mistake="error not squared",
                 hint="The sampling weight is the squared error ||x - x_hat||^2, not its norm.")
    live_norm = W_enc[0][:, live].norm(dim=0).mean()
    enc_norms = new_enc[0][:, dead[0]].norm(dim=0)
    check.expect(torch.allclose(enc_norms, 0.2 * live_norm.expand_as(enc_norms), rtol=1e-3), case=case,
                 message=f"new encoder columns have norm {enc_norms.mean().item():.3f}, expected "
                         f"0.2 x mean live encoder norm = {0.2 * live_norm.item():.3f}",
                 mistake="wrong encoder scale",
                 hint="Scale the new encoder column to 0.2 times the *mean norm of the live* encoder columns "
                      "(over d_in), not of all columns and not 0.2 alone.")
    cos = (new_enc[0][:, dead[0]] * dirs).sum(0) / enc_norms
    check.expect(bool((cos > 1 - 1e-4).all()), case=case, message="new encoder columns don't point along the new "
                 "decoder columns", mistake="encoder direction",
                 hint="The new encoder column points the same way as the new decoder column (the chosen input).")
    check.expect(bool((new_b[0][dead[0]] == 0).all()), case=case, message="new encoder biases are not zero",
                 mistake="encoder bias not reset", hint="Set the dead latents' encoder biases to 0.")
    again = check.run(x, x_hat, dead, W_enc, b_enc, W_dec, torch.Generator().manual_seed(0), case=case)
    torch.rand(3)
    again2 = check.run(x, x_hat, dead, W_enc, b_enc, W_dec, torch.Generator().manual_seed(0), case=case)
    check.expect(torch.equal(again[2], again2[2]), case="same generator seed twice",
                 message="two calls with generators seeded the same resampled differently",
                 mistake="ignored the generator",
                 hint="Draw the samples from the `generator` argument: torch.multinomial(..., generator=generator).")


# -- TopK -----------------------------------------------------------------------------------------


def _topk_kept(pre, k, dim=-1, key=None):
    key = pre if key is None else key
    idx = key.topk(k, dim=dim).indices
    return torch.zeros_like(pre).scatter(dim, idx, pre.gather(dim, idx))


@exercise(difficulty=2, minutes=10, hints=[
    "For each input (and instance) keep the k largest entries along the latent axis; zero the others.",
    "pre.topk(k, dim=-1) gives values and indices; torch.zeros_like(pre).scatter(-1, indices, values) puts them back.",
    "Apply a ReLU to the kept values, so a negative pre-activation never survives: "
    "torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals)).",
])
def test_topk_activations(check):
    pre = check.randn(6, 2, 10)
    pre[0] = -pre[0].abs() - 0.1    # an input with no positive pre-activation at all
    check.case("k = 3 over 10 latents (one input has only negative pre-activations)", pre, 3, mistakes=[
        Mistake("no ReLU", "Negative pre-activations among the top k must become 0: apply a ReLU to the kept values.",
                lambda p, k: _topk_kept(p, k)),
        Mistake("wrong axis", "Keep the top k *latents* of each input (last axis), not the top inputs per latent.",
                lambda p, k: torch.relu(_topk_kept(p, k, dim=0))),
        Mistake("largest magnitude", "Keep the *largest* pre-activations, not the largest in absolute value.",
                lambda p, k: torch.relu(_topk_kept(p, k, key=p.abs()))),
        Mistake("ReLU before topk misses zeros", "Keep exactly the top k: everything else must be 0.",
                lambda p, k: torch.relu(p)),
    ])


# -- the language model ----------------------------------------------------------------------------


@exercise(difficulty=1, minutes=5, hints=[
    "Loss recovered is 1 when the SAE's splice costs nothing (CE_sae = CE_clean) and 0 when it is as bad as "
    "zero-ablating (CE_sae = CE_zero).",
    "The numerator measures how much of the zero-ablation damage the SAE undoes: CE_zero - CE_sae.",
    "(ce_zero - ce_sae) / (ce_zero - ce_clean)",
])
def test_loss_recovered(check):
    clean = torch.tensor([1.5, 2.0, 1.0]).to(check.device)
    sae = torch.tensor([1.8, 2.1, 3.0]).to(check.device)
    zero = torch.tensor([4.0, 2.5, 3.5]).to(check.device)
    check.case("three settings", clean, sae, zero, mistakes=[
        Mistake("inverted", "That is the fraction of the gap *lost*: loss recovered is 1 when CE_sae = CE_clean.",
                lambda c, s, z: (s - c) / (z - c)),
        Mistake("relative to clean", "Normalise by the gap between zero ablation and clean, CE_zero - CE_clean.",
                lambda c, s, z: (z - s) / c),
        Mistake("wrong denominator", "The denominator is the whole gap, CE_zero - CE_clean.",
                lambda c, s, z: (z - s) / (z - s + c)),
        Mistake("ratio of losses", "Use differences of losses, not a ratio: (CE_zero - CE_sae) / (CE_zero - CE_clean).",
                lambda c, s, z: c / s),
    ])


def _lm_sae(check, d=8, lat=12):
    W_enc = check.randn(1, d, lat)
    b_enc = check.randn(1, lat, scale=0.3)
    W_dec = _unit_columns(check.randn(1, d, lat))
    b_dec = check.randn(1, d)
    return W_enc, b_enc, W_dec, b_dec


def _recon(act, W_enc, b_enc, W_dec, b_dec, *, sub=True, dec_bias=True):
    x = act.reshape(-1, 1, act.shape[-1])
    f = torch.relu(einops.einsum(x - (b_dec if sub else 0), W_enc, "n i d, i d l -> n i l") + b_enc)
    out = einops.einsum(f, W_dec, "n i l, i d l -> n i d") + (b_dec if dec_bias else 0)
    return out.reshape(act.shape)


@exercise(difficulty=2, minutes=10, hints=[
    "A hook receives the activation [batch, pos, d_in]; whatever it returns replaces the activation.",
    "Flatten batch and pos into one axis and add an instance axis of size 1: "
    "einops.rearrange(activation, 'batch pos d_in -> (batch pos) 1 d_in'); then encode and decode.",
    "sae_decode(sae_encode(x, W_enc, b_enc, b_dec), W_dec, b_dec), rearranged back to [batch, pos, d_in].",
])
def test_splice_hook(check):
    params = _lm_sae(check)
    act = check.randn(3, 5, 8) * 2.0
    check.case("activation [3 batch, 5 pos, 8 d_in]", act, None, *params, mistakes=[
        Mistake("activation unchanged", "Return the SAE's reconstruction, not the original activation.",
                lambda a, h, *p: a),
        Mistake("error term", "Return the reconstruction x_hat itself, not the error x - x_hat.",
                lambda a, h, *p: a - _recon(a, *p)),
        Mistake("decoder bias not subtracted",
                "Encode x - b_dec (use your sae_encode): the decoder bias is subtracted before encoding.",
                lambda a, h, *p: _recon(a, *p, sub=False)),
        Mistake("added to the activation", "Replace the activation by the reconstruction; don't add them.",
                lambda a, h, *p: a + _recon(a, *p)),
    ])


@exercise(difficulty=1, minutes=5, hints=[
    "Zero ablation replaces the activation by zeros of the same shape.",
    "Build a new tensor rather than editing `activation` in place.",
    "return torch.zeros_like(activation)",
])
def test_zero_ablation_hook(check):
    act = check.randn(2, 4, 6) + 1.0
    check.case("activation [2 batch, 4 pos, 6 d_in]", act, None, mistakes=[
        Mistake("mean ablation", "This is zero ablation: all zeros, not the mean activation.",
                lambda a, h: a.mean(dim=(0, 1), keepdim=True).expand_as(a)),
        Mistake("returned None", "Return the new activation: a hook returning None leaves the activation as it was.",
                lambda a, h: None),
        Mistake("activation unchanged", "Return zeros, not the activation.", lambda a, h: a),
    ])


def _mae_per_sequence(acts, k):
    best, pos = acts.max(dim=1)
    vals, seq = best.topk(k)
    return vals, seq, pos[seq]


@exercise(difficulty=2, minutes=10, hints=[
    "Flatten [seq, pos] to one axis, take its top k, then turn each flat index back into (sequence, position).",
    "For a flat index i into a [seq, pos] tensor: sequence i // n_pos, position i % n_pos.",
    "values, flat = acts.flatten().topk(k); return values, flat // acts.shape[1], flat % acts.shape[1]",
])
def test_max_activating_examples(check):
    acts = torch.relu(check.randn(5, 7))
    acts[2, 3], acts[2, 5], acts[4, 0], acts[0, 6] = 9.0, 8.0, 7.0, 6.5   # two of the best in one sequence
    check.case("5 sequences of 7 positions, k = 4", acts, 4, mistakes=[
        Mistake("smallest", "Take the *largest* activations first (descending order).",
                lambda a, k: (lambda v, f: (v, f // a.shape[1], f % a.shape[1]))(*a.flatten().topk(k, largest=False))),
        Mistake("swapped indices", "With a flat index into [seq, pos]: sequence = flat // n_pos, position = flat % n_pos.",
                lambda a, k: (lambda v, f: (v, f // a.shape[0], f % a.shape[0]))(*a.flatten().topk(k))),
        Mistake("one per sequence", "Several of the top examples may come from the same sequence: take the top k "
                "over all (sequence, position) pairs.", _mae_per_sequence),
    ])


@exercise(difficulty=1, minutes=5, hints=[
    "The latent writes its decoder column into the residual stream; the unembedding maps it to logits.",
    "einops.einsum(W_dec, W_U, 'd_in lat, d_in vocab -> lat vocab'), then subtract each row's mean over the vocabulary.",
    "effect - effect.mean(dim=-1, keepdim=True) with effect = W_dec.T @ W_U",
])
def test_latent_logit_effect(check):
    W_dec = _unit_columns(check.randn(1, 8, 6))[0]
    W_U = check.randn(8, 11) + 0.5
    check.case("8 d_in, 6 latents, 11 tokens", W_dec, W_U, mistakes=[
        Mistake("not centred", "Subtract each latent's mean over the vocabulary: softmax ignores a constant shift.",
                lambda W, U: W.T @ U),
        Mistake("centred over latents", "Centre each latent's row over the *vocabulary* (last axis).",
                lambda W, U: (W.T @ U) - (W.T @ U).mean(0, keepdim=True)),
        Mistake("wrong sign", "The effect is +W_dec^T W_U: the latent adds its decoder column to the stream.",
                lambda W, U: -((W.T @ U) - (W.T @ U).mean(-1, keepdim=True))),
    ])


@exercise(difficulty=1, minutes=5, hints=[
    "Steering adds the feature direction, scaled, to the activation at every position.",
    "direction has shape [d_in] and broadcasts over [batch, pos, d_in].",
    "return activation + scale * direction",
])
def test_steering_hook(check):
    act = check.randn(2, 5, 6)
    direction = _unit_columns(check.randn(1, 6, 1))[0, :, 0]
    check.case("activation [2, 5, 6], scale 4", act, None, direction, 4.0, mistakes=[
        Mistake("wrong sign", "Add the direction (positive scale means more of the feature), don't subtract it.",
                lambda a, h, d, s: a - s * d),
        Mistake("replaced the activation", "Add to the activation; replacing it deletes everything else the model "
                "was computing.", lambda a, h, d, s: (s * d).expand_as(a)),
        Mistake("last position only", "Steer at every position, not only the last.",
                lambda a, h, d, s: torch.cat([a[:, :-1], a[:, -1:] + s * d], dim=1)),
        Mistake("scale ignored", "Multiply the direction by `scale`.", lambda a, h, d, s: a + d),
    ])
    check.case("a direction of length 3, scale 2", act, None, 3 * direction, 2.0, mistakes=[
        Mistake("normalised the direction", "Add scale × direction as given, without normalising it: the caller "
                "chooses the direction's length (decoder columns happen to be unit vectors).",
                lambda a, h, d, s: a + s * d / d.norm())])


@exercise(difficulty=2, minutes=15, hints=[
    "Encode the activation with the SAE to get latent `latent`'s activation f at every position.",
    "Its contribution to the reconstruction is f times its decoder column W_dec[0, :, latent]; subtract that "
    "from the activation (the rest, including the SAE's error, stays).",
    "activation - f[..., None] * W_dec[0, :, latent], with f = sae_encode(...)[:, 0, latent] reshaped to [batch, pos].",
])
def test_latent_ablation_hook(check):
    params = _lm_sae(check)
    act = check.randn(3, 4, 8) * 2.0

    def f_of(a, W_enc, b_enc, W_dec, b_dec, latent):
        x = a.reshape(-1, 1, a.shape[-1])
        f = torch.relu(einops.einsum(x - b_dec, W_enc, "n i d, i d l -> n i l") + b_enc)[:, 0, latent]
        return f.reshape(a.shape[:-1] + (1,))

    check.case("activation [3, 4, 8], latent 5", act, None, *params, 5, mistakes=[
        Mistake("added", "Ablating removes the latent's contribution: subtract f * W_dec column, don't add it.",
                lambda a, h, We, be, Wd, bd, j: a + f_of(a, We, be, Wd, bd, j) * Wd[0, :, j]),
        Mistake("direction not scaled", "Scale the decoder column by the latent's activation f at each position.",
                lambda a, h, We, be, Wd, bd, j: a - Wd[0, :, j]),
        Mistake("replaced by the reconstruction", "Keep the SAE's error term: subtract only this latent's "
                "contribution from the original activation.",
                lambda a, h, We, be, Wd, bd, j: _recon(a, We, be, Wd, bd) - f_of(a, We, be, Wd, bd, j) * Wd[0, :, j]),
        Mistake("encoder column", "The latent writes its *decoder* column, W_dec[0, :, latent].",
                lambda a, h, We, be, Wd, bd, j: a - f_of(a, We, be, Wd, bd, j) * We[0, :, j]),
    ])
