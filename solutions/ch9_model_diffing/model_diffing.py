"""Reference solutions for 9.1 "Model diffing": the weight and activation-difference baselines, a
BatchTopK crosscoder and its artefacts, finding a planted change and proving it causally, the audit.

Conventions. Paired activations are [n, model, d] with the base model first (model 0) and the
fine-tune second (model 1). A crosscoder is a dict of plain tensors: W_enc [model, d, lat],
b_enc [lat], W_dec [model, d, lat], b_dec [model, d] (utils.crosscoders). A residual stream read
from a model is [batch, pos, d] with BOS at position 0.
"""

from __future__ import annotations

from typing import Callable

import einops
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

# -- 1. the baselines ---------------------------------------------------------------------------------


def relative_change(W_base: Float[Tensor, "..."], W_ft: Float[Tensor, "..."]) -> float:
    """How far fine-tuning moved one weight matrix: ||W_ft - W_base||_F / ||W_base||_F."""
    return ((W_ft - W_base).norm() / W_base.norm()).item()


def row_change_ratio(E_base: Float[Tensor, "vocab d"], E_ft: Float[Tensor, "vocab d"],
                     E_control: Float[Tensor, "vocab d"]) -> Float[Tensor, " vocab"]:
    """For every token, how far its embedding moved in the fine-tune, over how far it moved in the control
    fine-tune (same training, nothing planted): above 1, further than training alone moves it."""
    moved = (E_ft - E_base).norm(dim=-1)
    by_training = (E_control - E_base).norm(dim=-1)
    return moved / by_training.clamp(min=1e-12)


def mean_activation_difference(resid_base: Float[Tensor, "batch pos d"], resid_ft: Float[Tensor, "batch pos d"]
                    ) -> Float[Tensor, " d"]:
    """The fine-tune's residual stream minus the base's, averaged over every text and every position but
    BOS (position 0, where both models see the same token and nothing of the text)."""
    return (resid_ft - resid_base)[:, 1:].mean(dim=(0, 1))


def lens_logits(direction: Float[Tensor, " d"], ln_w: Float[Tensor, " d"], W_U: Float[Tensor, "d vocab"]
                ) -> Float[Tensor, " vocab"]:
    """The logit lens of a direction: centre it (as the final LayerNorm centres the stream), multiply by
    the LayerNorm's gain, unembed, and centre the logits (only their differences mean anything)."""
    logits = ((direction - direction.mean()) * ln_w) @ W_U
    return logits - logits.mean()


def make_steering_hook(vector: Float[Tensor, " d"], alpha: float) -> Callable[..., Tensor]:
    """A hook for `model.run_with_hooks` that adds alpha * vector to the activation at every position and
    returns the result (the activation passed in must be left as it was)."""
    def hook(activation: Float[Tensor, "batch pos d"], hook=None) -> Float[Tensor, "batch pos d"]:
        return activation + alpha * vector
    return hook


# -- 2. a crosscoder -----------------------------------------------------------------------------------


def crosscoder_pre(x: Float[Tensor, "batch model d"], W_enc: Float[Tensor, "model d lat"],
                   b_enc: Float[Tensor, " lat"]) -> Float[Tensor, "batch lat"]:
    """The shared code before sparsity: each model's activation read by its own encoder, summed over the
    models, plus the bias, through a ReLU."""
    return torch.relu(einops.einsum(x, W_enc, "batch model d, model d lat -> batch lat") + b_enc)


def batch_top_k(pre: Float[Tensor, "batch lat"], k: int) -> Float[Tensor, "batch lat"]:
    """BatchTopK: keep the k * batch largest values of the whole batch, wherever they are (one input may
    keep more than k latents, another fewer); set the rest to 0."""
    flat = einops.rearrange(pre, "batch lat -> (batch lat)")
    values, indices = flat.topk(k * pre.shape[0])
    kept = torch.zeros_like(flat).scatter(0, indices, values)
    return einops.rearrange(kept, "(batch lat) -> batch lat", batch=pre.shape[0])


def crosscoder_decode(acts: Float[Tensor, "batch lat"], W_dec: Float[Tensor, "model d lat"],
                      b_dec: Float[Tensor, "model d"]) -> Float[Tensor, "batch model d"]:
    """Each model's reconstruction from the one shared code, through that model's decoder and bias."""
    return einops.einsum(acts, W_dec, "batch lat, model d lat -> batch model d") + b_dec


def crosscoder_nmse(x_hat: Float[Tensor, "batch model d"], x: Float[Tensor, "batch model d"]) -> Float[Tensor, " model"]:
    """Per model, the normalised MSE: squared error summed over inputs and dimensions, over the summed
    squared distance of that model's activations from their mean. The training loss is its sum."""
    error = (x_hat - x).pow(2).sum(dim=(0, 2))
    return error / (x - x.mean(dim=0)).pow(2).sum(dim=(0, 2))


def relative_norm(W_dec: Float[Tensor, "model d lat"]) -> Float[Tensor, " lat"]:
    """||d_ft|| / (||d_base|| + ||d_ft||) for every latent: 0 writes only into the base, 1 only into the
    fine-tune, 0.5 equally into both."""
    norms = W_dec.norm(dim=1)
    return norms[1] / (norms[0] + norms[1])


def count_classes(rel: Float[Tensor, " lat"], base_only: float = 0.1, shared: tuple[float, float] = (0.4, 0.6),
                  finetune_only: float = 0.9) -> dict[str, int]:
    """How many latents fall in each of Lindsey et al.'s classes: "base_only" (rel < base_only), "shared"
    (shared[0] <= rel <= shared[1]), "finetune_only" (rel > finetune_only), and "other" (the rest)."""
    base = rel < base_only
    middle = (rel >= shared[0]) & (rel <= shared[1])
    tuned = rel > finetune_only
    return {"base_only": int(base.sum()), "shared": int(middle.sum()), "finetune_only": int(tuned.sum()),
            "other": int((~(base | middle | tuned)).sum())}


def above_control(rel: Float[Tensor, " lat"], control_rel: Float[Tensor, " lat2"]) -> Int[Tensor, " hits"]:
    """The latents whose relative norm is above every latent of the control's crosscoder (the diff of base
    and a fine-tune with nothing planted), most fine-tune-leaning first."""
    hits = (rel > control_rel.max()).nonzero().flatten()
    return hits[rel[hits].argsort(descending=True)]


def scaling_beta(f: Float[Tensor, " n"], direction: Float[Tensor, " d"], target: Float[Tensor, "n d"]) -> Float[Tensor, ""]:
    """Latent scaling: the beta minimising sum_i || beta f_i direction - target_i ||^2, in closed form,
    sum_i f_i <direction, target_i> / (||direction||^2 sum_i f_i^2)."""
    numerator = einops.einsum(f, target, direction, "n, n d, d ->")
    return numerator / (direction.pow(2).sum() * f.pow(2).sum())


def scaling_ratios(x: Float[Tensor, "n model d"], x_hat: Float[Tensor, "n model d"], f: Float[Tensor, " n"],
                   W_dec_j: Float[Tensor, "model d"]) -> dict[str, float]:
    """Minder et al.'s two ratios nu = beta_base / beta_ft for one latent j (rows: inputs where j fires,
    f its activation there), both fitted along j's fine-tune decoder W_dec_j[1]:

    - "error": the target is each model's activation minus its reconstruction without j,
      x - (x_hat - f W_dec_j). Near 1: the base does carry j's direction (complete shrinkage).
    - "reconstruction": the target is the reconstruction x_hat. Near 1: other latents write j's direction
      into the base (latent decoupling)."""
    own = einops.einsum(f, W_dec_j, "n, model d -> n model d")
    targets = {"error": x - (x_hat - own), "reconstruction": x_hat}
    direction = W_dec_j[1]
    return {name: (scaling_beta(f, direction, t[:, 0]) / scaling_beta(f, direction, t[:, 1])).item()
            for name, t in targets.items()}


# -- 3. finding the planted change ---------------------------------------------------------------------


def planted_share(acts: Float[Tensor, "n lat"], mask: Bool[Tensor, " n"]) -> Float[Tensor, " lat"]:
    """For every latent, the share of its total activation that falls on the planted positions (0 for a
    latent that never fires)."""
    total = acts.sum(dim=0)
    return acts[mask].sum(dim=0) / total.clamp(min=1e-12)


def first_hit_rank(scores: Float[Tensor, " lat"], is_planted: Bool[Tensor, " lat"]) -> int:
    """Order the latents by score, highest first: the rank (1 for the top) of the first planted one."""
    order = scores.argsort(descending=True)
    return int(is_planted[order].nonzero()[0, 0]) + 1


def precision_at_k(scores: Float[Tensor, " lat"], is_planted: Bool[Tensor, " lat"], k: int) -> float:
    """The share of planted latents among the k highest-scoring ones."""
    return is_planted[scores.topk(k).indices].float().mean().item()


def top_contexts(acts: Float[Tensor, "batch pos"], tokens: Int[Tensor, "batch pos"], decode: Callable[[list[int]], str],
                 n: int, width: int) -> list[str]:
    """The text behind one latent's n strongest activations, strongest first: for each, the `width`
    characters that end at (and include) the position where it fires (fewer at the start of a row)."""
    order = acts.flatten().topk(n).indices
    rows, positions = order // acts.shape[1], order % acts.shape[1]
    return [decode(tokens[r, max(0, p - width + 1):p + 1].tolist()) for r, p in zip(rows.tolist(), positions.tolist())]


def remove_latents(x: Float[Tensor, "n d"], acts: Float[Tensor, "n lat"], W_dec: Float[Tensor, "d lat"],
                   latents: Int[Tensor, " chosen"]) -> Float[Tensor, "n d"]:
    """One model's activations without what the chosen latents write into them, acts_j * W_dec[:, j]
    (a new tensor: x is left as it was)."""
    return x - acts[:, latents] @ W_dec[:, latents].T


def add_latents(x_base: Float[Tensor, "n d"], acts: Float[Tensor, "n lat"], W_dec: Float[Tensor, "model d lat"],
                latents: Int[Tensor, " chosen"]) -> Float[Tensor, "n d"]:
    """The base model's activations plus what the chosen latents write into the fine-tune beyond what they
    write into the base, acts_j * (W_dec[1, :, j] - W_dec[0, :, j])."""
    difference = W_dec[1][:, latents] - W_dec[0][:, latents]
    return x_base + acts[:, latents] @ difference.T


def control_latents(candidates: Int[Tensor, " m"], exclude: Int[Tensor, " e"], n: int,
                    generator: torch.Generator) -> Int[Tensor, " n"]:
    """A random control: n different latents drawn uniformly from `candidates` that are not in `exclude`."""
    pool = candidates[~torch.isin(candidates, exclude)]
    return pool[torch.randperm(len(pool), generator=generator)[:n]]


# -- 4. the audit ----------------------------------------------------------------------------------------


def audit_answer() -> dict[str, str]:
    """The audit's answer cell: what sets gpt2_tiny_hidden off and what it writes then, as
    {"trigger": the characters that set it off, "continuation": what it writes right after them}."""
    from solutions.ch9_model_diffing.answer_key import HIDDEN_CONTINUATION, HIDDEN_TRIGGER
    return {"trigger": HIDDEN_TRIGGER, "continuation": HIDDEN_CONTINUATION}
