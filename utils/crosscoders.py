"""Crosscoders for Chapter 9 (model diffing): one sparse dictionary read from two models at once.

A crosscoder (Lindsey et al. 2024) encodes the activations of a base model and of its fine-tune at
the same layer into ONE set of latents, and decodes them back into each model separately:

    f(x)     = BatchTopK( sum_m W_enc[m]^T x[m] + b_enc )          one code for both models
    x_hat[m] = W_dec[m] f(x) + b_dec[m]                             one decoder per model

    W_enc [model, d, lat]   b_enc [lat]   W_dec [model, d, lat]   b_dec [model, d]     (model 0 = base, 1 = fine-tune)

Because the code is shared, latent j means the same thing in both models, and the only thing that can
differ is how strongly it writes into each: W_dec[0, :, j] against W_dec[1, :, j]. A latent the
fine-tune introduced should have a base decoder near zero. That is the **relative decoder norm**.

Sparsity is BatchTopK (Bussmann et al. 2024, used for crosscoders by Minder et al. 2025): over a batch
of B inputs keep the k*B largest activations, wherever they fall, so L0 is k on average but an input
with more going on may use more latents. Minder et al. show that the L1 penalty of the original
crosscoder (weighted by the sum of the two decoder norms) pushes weak base decoders all the way to zero
(*complete shrinkage*) and splits shared concepts into a base and a fine-tune latent (*latent
decoupling*), both of which fake "fine-tune-only" latents; BatchTopK has no norm penalty, so each
model's decoder is left free (no normalisation at all) and its norm is reported, not constrained.
**Latent scaling** is their diagnostic for latents that still look fine-tune-only.

The parameters follow utils.sae (a dict of plain tensors, the latent axis last, the model axis in the
place of the instance axis) and training reuses utils.sae.train_sae's loop. The loss is each model's
normalised MSE (squared error over the batch's variance, as in utils.transcoders), summed over the two
models, so a model with larger activations does not dominate.
"""

from __future__ import annotations

import einops
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from utils.sae import init_sae, train_sae
from utils.transcoders import normalised_mse

BASE, FINETUNE = 0, 1


# -- parameters ------------------------------------------------------------------------------------

def init_crosscoder(
    d_model: int,
    d_latent: int,
    generator: torch.Generator,
    mean: Float[Tensor, "model d"] | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, Tensor]:
    """utils.sae's initialisation with the two models as its two instances (each model's decoder a
    random unit-norm direction, its encoder the transpose), but one encoder bias: the code is shared.
    `threshold` (NaN until training sets it) is BatchTopK's inference threshold; it is not trained."""
    params = init_sae(2, d_model, d_latent, generator, device)
    params["b_enc"] = torch.zeros(d_latent, device=device, requires_grad=True)
    if mean is not None:
        with torch.no_grad():
            params["b_dec"].copy_(mean)
    params["threshold"] = torch.tensor(float("nan"), device=device)
    return params


# -- encoding and decoding -------------------------------------------------------------------------

def pre_activations(x: Float[Tensor, "batch model d"], params: dict[str, Tensor]) -> Float[Tensor, "batch lat"]:
    """The shared code before sparsity: each model's reading of its own activation, summed, after a ReLU."""
    pre = einops.einsum(x, params["W_enc"], "batch model d, model d lat -> batch lat") + params["b_enc"]
    return pre.relu_()   # in place on a fresh tensor: one pass over [batch, lat] fewer


def batch_top_k(pre: Float[Tensor, "batch lat"], k: int) -> Float[Tensor, "batch lat"]:
    """Keep the k * batch largest entries of the whole batch (not k per row); zero the rest."""
    flat = einops.rearrange(pre, "batch lat -> (batch lat)")
    values, indices = flat.topk(k * pre.shape[0])
    kept = torch.zeros_like(flat).scatter(0, indices, values)
    return einops.rearrange(kept, "(batch lat) -> batch lat", batch=pre.shape[0])


def threshold_encode(pre: Float[Tensor, "batch lat"], threshold: float | Tensor) -> Float[Tensor, "batch lat"]:
    """Inference-time BatchTopK: a latent fires wherever it reaches one global threshold, so an input's
    code no longer depends on which other inputs share its batch (and a single input can be encoded)."""
    return pre.masked_fill(pre < threshold, 0.0)


def encode(
    x: Float[Tensor, "batch model d"],
    params: dict[str, Tensor],
    k: int,
    use_threshold: bool = False,
) -> Float[Tensor, "batch lat"]:
    """The shared latent code: BatchTopK during training, the estimated threshold at inference."""
    pre = pre_activations(x, params)
    if use_threshold:
        return threshold_encode(pre, params["threshold"])
    return batch_top_k(pre, k)


def decode(acts: Float[Tensor, "batch lat"], params: dict[str, Tensor]) -> Float[Tensor, "batch model d"]:
    """Each model's reconstruction from the same code, through its own decoder."""
    return einops.einsum(acts, params["W_dec"], "batch lat, model d lat -> batch model d") + params["b_dec"]


def smallest_kept(acts: Float[Tensor, "batch lat"]) -> Tensor:
    """The smallest activation BatchTopK let through: the threshold that batch implied."""
    active = acts[acts > 0]
    return active.min() if active.numel() else torch.tensor(0.0, device=acts.device)


# -- training --------------------------------------------------------------------------------------

def _step(params: dict[str, Tensor], x: Float[Tensor, "batch model d"], k: int, threshold_decay: float):
    """utils.sae.train_sae's step. Besides the loss it updates the inference threshold as a running
    (exponential) mean of each batch's smallest kept activation, as Minder et al. do."""
    acts = encode(x, params, k)
    x_hat = decode(acts, params)
    with torch.no_grad():
        low = smallest_kept(acts.detach())
        old = params["threshold"]
        params["threshold"].copy_(low if torch.isnan(old) else threshold_decay * old + (1 - threshold_decay) * low)
    return normalised_mse(x_hat, x), acts, x_hat


def train_crosscoder(
    params: dict[str, Tensor],
    x: Float[Tensor, "n model d"],
    k: int,
    *,
    steps: int,
    batch_size: int = 512,
    lr: float = 1e-3,
    threshold_decay: float = 0.99,
    generator: torch.Generator | None = None,
    desc: str = "training a crosscoder",
) -> dict:
    """Adam on the summed per-model normalised MSE, on random rows of the paired activations, with
    utils.sae.train_sae's loop. The decoders are not renormalised (`normalise` is the identity): with
    BatchTopK nothing rewards shrinking them, and their norms are what model diffing reads."""
    data = x.to(params["W_enc"].device)
    rows = torch.randint(len(data), (steps, batch_size), generator=generator)
    return train_sae(params, lambda step: data[rows[step]], lambda p, xb: _step(p, xb, k, threshold_decay),
                     lambda W_dec: W_dec, steps=steps, lr=lr, desc=desc)


# -- metrics ---------------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(
    params: dict[str, Tensor],
    x: Float[Tensor, "n model d"],
    k: int,
    use_threshold: bool = True,
    batch_size: int = 8192,
) -> dict[str, Tensor]:
    """Per model: normalised MSE and fraction of variance explained (1 - normalised MSE); for the shared
    code: L0 (mean active latents per input) and the share of latents that never fire on `x`. By
    default the code is the threshold one, as it would be used after training."""
    fired, active, error = False, 0.0, 0.0
    for i in range(0, len(x), batch_size):
        part = x[i:i + batch_size]
        acts = encode(part, params, k, use_threshold)
        fired = fired | (acts > 0).any(dim=0)
        active = active + (acts > 0).float().sum()
        error = error + (decode(acts, params) - part).pow(2).sum(dim=(0, 2))
    variance = (x - x.mean(dim=0)).pow(2).sum(dim=(0, 2)).clamp(min=1e-12)
    nmse = error / variance
    return {"normalised_mse": nmse, "fve": 1 - nmse, "l0": active / len(x),
            "dead_fraction": (~fired).float().mean()}


@torch.no_grad()
def decoder_norms(params: dict[str, Tensor]) -> Float[Tensor, "model lat"]:
    """How strongly each latent writes into each model."""
    return params["W_dec"].norm(dim=1)


@torch.no_grad()
def relative_norm(params: dict[str, Tensor]) -> Float[Tensor, " lat"]:
    """||d_ft|| / (||d_base|| + ||d_ft||) per latent (Lindsey et al.): 0 base-only, 0.5 shared, 1 fine-tune-only."""
    norms = decoder_norms(params)
    return norms[FINETUNE] / (norms[BASE] + norms[FINETUNE]).clamp(min=1e-12)


def classify_latents(
    rel: Float[Tensor, " lat"],
    base_only: float = 0.1,
    shared: tuple[float, float] = (0.4, 0.6),
    finetune_only: float = 0.9,
) -> dict[str, Bool[Tensor, " lat"]]:
    """Lindsey et al.'s buckets of the relative norm: base-only (< base_only), shared (inside `shared`),
    fine-tune-only (> finetune_only), and everything in between as "other"."""
    groups = {"base_only": rel < base_only,
              "shared": (rel >= shared[0]) & (rel <= shared[1]),
              "finetune_only": rel > finetune_only}
    groups["other"] = ~(groups["base_only"] | groups["shared"] | groups["finetune_only"])
    return groups


# -- latent scaling (Minder et al. 2025) -----------------------------------------------------------

def latent_scaling(
    f: Float[Tensor, " n"],
    direction: Float[Tensor, " d"],
    target: Float[Tensor, "n d"],
) -> Tensor:
    """The least-squares beta minimising sum_i || beta f_i d - y_i ||^2, in closed form:

        beta = sum_i f_i <d, y_i> / (||d||^2 sum_i f_i^2)

    i.e. how much of `direction`, scaled by the latent's activation, the targets actually contain."""
    numerator = einops.einsum(f, target, direction, "n, n d, d ->")
    return numerator / (direction.pow(2).sum() * f.pow(2).sum()).clamp(min=1e-12)


@torch.no_grad()
def scaling_ratios(
    params: dict[str, Tensor],
    x: Float[Tensor, "n model d"],
    latent: int,
    k: int,
    use_threshold: bool = True,
) -> dict[str, Tensor]:
    """Latent scaling for one (apparently fine-tune-only) latent j, along its fine-tune decoder d_j.

    For each model m, beta^m is fitted to two targets (on the inputs where j fires):
      - "error":          x[m] - (x_hat[m] - f_j W_dec[m, :, j]), the activation minus the reconstruction
                          without j. A large base beta means the base model does contain d_j and the
                          crosscoder's base decoder failed to write it: complete shrinkage.
      - "reconstruction": x_hat[m], the crosscoder's reconstruction. A large base beta means other
                          latents write d_j into the base model: latent decoupling.
    The ratios nu = beta^base / beta^ft are near 0 for a latent the fine-tune really introduced and
    near 1 for a shared concept that the crosscoder merely made to look fine-tune-only.
    """
    acts = encode(x, params, k, use_threshold)
    fires = acts[:, latent] > 0
    x, acts = x[fires], acts[fires]
    f = acts[:, latent]
    x_hat = decode(acts, params)
    own = einops.einsum(f, params["W_dec"][:, :, latent], "n, model d -> n model d")
    direction = params["W_dec"][FINETUNE, :, latent]
    targets = {"error": x - (x_hat - own), "reconstruction": x_hat}
    out: dict[str, Tensor] = {}
    for name, target in targets.items():
        beta = torch.stack([latent_scaling(f, direction, target[:, m]) for m in (BASE, FINETUNE)])
        out[f"beta_{name}"] = beta
        out[f"nu_{name}"] = beta[BASE] / beta[FINETUNE]
    return out
