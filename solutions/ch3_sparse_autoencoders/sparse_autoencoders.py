"""Reference solutions for 3.1 "Sparse autoencoders".

Conventions used throughout: every SAE carries a leading instance axis `inst` (many SAEs,
e.g. one per L1 coefficient, train in one batched step), and the latent axis `lat` is always
the *last* axis of every parameter, so "latent j" is always `[..., j]`:

    W_enc [inst, d_in, lat]    b_enc [inst, lat]    W_dec [inst, d_in, lat]    b_dec [inst, d_in]

Column `W_dec[k, :, j]` is latent j's feature direction in the input space.
"""

from __future__ import annotations

import einops
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

# -- the objective -------------------------------------------------------------------------


def sae_encode(
    x: Float[Tensor, "batch inst d_in"],
    W_enc: Float[Tensor, "inst d_in lat"],
    b_enc: Float[Tensor, "inst lat"],
    b_dec: Float[Tensor, "inst d_in"],
) -> Float[Tensor, "batch inst lat"]:
    """Latent activations f = ReLU(W_enc^T (x - b_dec) + b_enc).

    Subtracting the decoder bias first centres the input on the point the decoder treats as
    "no features present", so the encoder only has to detect departures from it.
    """
    pre = einops.einsum(x - b_dec, W_enc, "batch inst d_in, inst d_in lat -> batch inst lat")
    return torch.relu(pre + b_enc)


def sae_decode(
    acts: Float[Tensor, "batch inst lat"],
    W_dec: Float[Tensor, "inst d_in lat"],
    b_dec: Float[Tensor, "inst d_in"],
) -> Float[Tensor, "batch inst d_in"]:
    """Reconstruction x_hat = W_dec f + b_dec: a sum of feature directions (decoder columns),
    each scaled by how strongly its latent fires, plus the bias."""
    return einops.einsum(acts, W_dec, "batch inst lat, inst d_in lat -> batch inst d_in") + b_dec


def normalise_decoder(
    W_dec: Float[Tensor, "inst d_in lat"],
) -> Float[Tensor, "inst d_in lat"]:
    """Every decoder column (one per latent) rescaled to unit L2 norm.

    Without this the L1 penalty could be dodged by shrinking the latents and growing the
    columns; with unit columns a latent's activation *is* the size of its feature.
    """
    return W_dec / W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)


def reconstruction_mse(
    x: Float[Tensor, "batch inst d_in"],
    x_hat: Float[Tensor, "batch inst d_in"],
) -> Float[Tensor, "inst"]:
    """Per instance: squared error summed over the input dimensions, averaged over the batch."""
    squared = (x_hat - x) ** 2
    return einops.reduce(squared, "batch inst d_in -> inst", "sum") / x.shape[0]


def l1_penalty(
    acts: Float[Tensor, "batch inst lat"],
    W_dec: Float[Tensor, "inst d_in lat"],
    l1_coeff: Float[Tensor, "inst"],
    weight_by_decoder_norm: bool,
) -> Float[Tensor, "inst"]:
    """Per instance: l1_coeff * (sum over latents of |f_j|, optionally times ||W_dec column j||),
    averaged over the batch.

    Weighting by the decoder norm makes the penalty independent of how the scale is split
    between a latent and its column, so it also works without normalising the decoder.
    """
    magnitude = acts.abs()
    if weight_by_decoder_norm:
        magnitude = magnitude * W_dec.norm(dim=1)
    per_example = einops.reduce(magnitude, "batch inst lat -> batch inst", "sum")
    return l1_coeff * per_example.mean(dim=0)


def l0_norm(
    acts: Float[Tensor, "batch inst lat"],
) -> Float[Tensor, "inst"]:
    """Average number of latents that fire (are non-zero) per input, per instance."""
    firing = (acts != 0).float()
    return einops.reduce(firing, "batch inst lat -> batch inst", "sum").mean(dim=0)


def explained_variance(
    x: Float[Tensor, "batch inst d_in"],
    x_hat: Float[Tensor, "batch inst d_in"],
) -> Float[Tensor, "inst"]:
    """1 - Var(x - x_hat) / Var(x), each variance the *total* over the input dimensions
    (sum of squared deviations from the batch mean), per instance.

    Pooling the dimensions weights each one by how much it varies, so a quiet dimension
    reconstructed badly cannot dominate the score.
    """
    resid = x - x_hat
    resid_var = ((resid - resid.mean(dim=0)) ** 2).sum(dim=(0, 2))
    total_var = ((x - x.mean(dim=0)) ** 2).sum(dim=(0, 2))
    return 1.0 - resid_var / total_var


def feature_recovery(
    W_true: Float[Tensor, "inst d_in feat"],
    W_dec: Float[Tensor, "inst d_in lat"],
) -> Float[Tensor, "inst feat"]:
    """For each true feature direction, the highest cosine similarity with any decoder column.

    Signed on purpose: a column pointing the opposite way cannot represent a feature that
    only ever takes positive values, because latents are non-negative.
    """
    true_hat = W_true / W_true.norm(dim=1, keepdim=True).clamp_min(1e-8)
    dec_hat = W_dec / W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)
    cosines = einops.einsum(true_hat, dec_hat, "inst d_in feat, inst d_in lat -> inst feat lat")
    return cosines.max(dim=-1).values


# -- dead latents --------------------------------------------------------------------------


def dead_latents(
    acts: Float[Tensor, "batch inst lat"],
) -> Bool[Tensor, "inst lat"]:
    """True for latents that did not fire on a single input of the window (`batch` holds every
    input seen over the window)."""
    return (acts > 0).sum(dim=0) == 0


def resample_dead_latents(
    x: Float[Tensor, "batch inst d_in"],
    x_hat: Float[Tensor, "batch inst d_in"],
    dead: Bool[Tensor, "inst lat"],
    W_enc: Float[Tensor, "inst d_in lat"],
    b_enc: Float[Tensor, "inst lat"],
    W_dec: Float[Tensor, "inst d_in lat"],
    generator: torch.Generator,
) -> tuple[Float[Tensor, "inst d_in lat"], Float[Tensor, "inst lat"], Float[Tensor, "inst d_in lat"]]:
    """New (W_enc, b_enc, W_dec) with every dead latent re-initialised (Bricken et al. 2023):

    for each instance, sample one input per dead latent with probability proportional to its
    *squared* reconstruction error; the latent's decoder column becomes that input normalised,
    its encoder column the same direction scaled to 0.2 x the mean norm of the live encoder
    columns, and its encoder bias 0. Live latents are returned unchanged.
    """
    W_enc, b_enc, W_dec = W_enc.clone(), b_enc.clone(), W_dec.clone()
    errors = ((x - x_hat) ** 2).sum(dim=-1)                       # [batch, inst]
    for k in range(dead.shape[0]):
        idx = dead[k].nonzero().squeeze(-1)
        if len(idx) == 0:
            continue
        probs = errors[:, k] / errors[:, k].sum()
        picks = torch.multinomial(probs.cpu(), len(idx), replacement=True, generator=generator)
        chosen = x[picks.to(x.device), k]                          # [n_dead, d_in]
        directions = chosen / chosen.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        alive = ~dead[k]
        live_norm = W_enc[k][:, alive].norm(dim=0).mean() if alive.any() else torch.tensor(1.0)
        W_dec[k][:, idx] = directions.T
        W_enc[k][:, idx] = directions.T * 0.2 * live_norm
        b_enc[k][idx] = 0.0
    return W_enc, b_enc, W_dec


# -- TopK ---------------------------------------------------------------------------------


def topk_activations(
    pre: Float[Tensor, "batch inst lat"],
    k: int,
) -> Float[Tensor, "batch inst lat"]:
    """TopK SAE activation (Gao et al. 2024): for each input keep the k largest pre-activations
    (after a ReLU, so none is negative) and zero the rest. L0 is at most k by construction."""
    values, indices = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))


# -- on a language model --------------------------------------------------------------------


def loss_recovered(
    ce_clean: Float[Tensor, "..."],
    ce_sae: Float[Tensor, "..."],
    ce_zero: Float[Tensor, "..."],
) -> Float[Tensor, "..."]:
    """(CE_zero - CE_sae) / (CE_zero - CE_clean): 1 when splicing in the SAE costs nothing,
    0 when it is as bad as deleting the activation."""
    return (ce_zero - ce_sae) / (ce_zero - ce_clean)


def splice_hook(
    activation: Float[Tensor, "batch pos d_in"],
    hook,
    W_enc: Float[Tensor, "1 d_in lat"],
    b_enc: Float[Tensor, "1 lat"],
    W_dec: Float[Tensor, "1 d_in lat"],
    b_dec: Float[Tensor, "1 d_in"],
) -> Float[Tensor, "batch pos d_in"]:
    """A forward hook that replaces the activation with the (one-instance) SAE's reconstruction."""
    batch = activation.shape[0]
    x = einops.rearrange(activation, "batch pos d_in -> (batch pos) 1 d_in")
    x_hat = sae_decode(sae_encode(x, W_enc, b_enc, b_dec), W_dec, b_dec)
    return einops.rearrange(x_hat, "(batch pos) 1 d_in -> batch pos d_in", batch=batch)


def zero_ablation_hook(
    activation: Float[Tensor, "batch pos d_in"],
    hook,
) -> Float[Tensor, "batch pos d_in"]:
    """A forward hook that replaces the activation with zeros (a new tensor, not an edit)."""
    return torch.zeros_like(activation)


# -- reading latents ----------------------------------------------------------------------


def max_activating_examples(
    acts: Float[Tensor, "seq pos"],
    k: int,
) -> tuple[Float[Tensor, "k"], Int[Tensor, "k"], Int[Tensor, "k"]]:
    """The k (sequence, position) pairs where one latent fires most, strongest first:
    (values, sequence indices, position indices). Several may come from the same sequence."""
    values, flat = acts.flatten().topk(k)
    n_pos = acts.shape[1]
    return values, flat // n_pos, flat % n_pos


def latent_logit_effect(
    W_dec: Float[Tensor, "d_in lat"],
    W_U: Float[Tensor, "d_in vocab"],
) -> Float[Tensor, "lat vocab"]:
    """Each latent's direct effect on the logits: its decoder column through the unembedding,
    centred over the vocabulary (softmax ignores a constant shift, so only differences count)."""
    effect = einops.einsum(W_dec, W_U, "d_in lat, d_in vocab -> lat vocab")
    return effect - effect.mean(dim=-1, keepdim=True)


# -- using latents ------------------------------------------------------------------------


def steering_hook(
    activation: Float[Tensor, "batch pos d_in"],
    hook,
    direction: Float[Tensor, "d_in"],
    scale: float,
) -> Float[Tensor, "batch pos d_in"]:
    """A forward hook that adds `scale` times a feature direction at every position."""
    return activation + scale * direction


def latent_ablation_hook(
    activation: Float[Tensor, "batch pos d_in"],
    hook,
    W_enc: Float[Tensor, "1 d_in lat"],
    b_enc: Float[Tensor, "1 lat"],
    W_dec: Float[Tensor, "1 d_in lat"],
    b_dec: Float[Tensor, "1 d_in"],
    latent: int,
) -> Float[Tensor, "batch pos d_in"]:
    """A forward hook that removes one latent's contribution f_j * W_dec[:, j] from the activation
    and leaves everything else (other latents and the SAE's error) in place."""
    batch = activation.shape[0]
    x = einops.rearrange(activation, "batch pos d_in -> (batch pos) 1 d_in")
    f = sae_encode(x, W_enc, b_enc, b_dec)[:, 0, latent]
    f = einops.rearrange(f, "(batch pos) -> batch pos 1", batch=batch)
    return activation - f * W_dec[0, :, latent]
