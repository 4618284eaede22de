"""Transcoders for Chapter 8: per-layer and cross-layer TopK transcoders trained on a model's MLP
activations, the SAE they are compared with, and what splicing any of them into the model costs.

A transcoder reads what an MLP reads (its input, after the LayerNorm) and predicts what the MLP
writes (its output) through a sparse layer of latents: out ~ W_dec TopK(W_enc^T in + b_enc) + b_dec.
Unlike an SAE it does not reconstruct its own input, so its latents stand in for the MLP's
computation, which is what a replacement model and an attribution graph need.

The parameters follow utils.sae (a dict of plain tensors, the latent axis last), with the leading
instance axis used for the layers: one transcoder per layer, all trained in one batched step.

    W_enc [layer, d_model, lat]   b_enc [layer, lat]   W_dec [layer, d_model, lat]   b_dec [layer, d_model]

`W_dec[l, :, j]` is latent j's write into the residual stream at layer l; decoder columns are
kept at unit norm, so a latent's activation is the size of its write.

A **cross-layer transcoder** (CLT; Ameisen et al. 2025) keeps one encoder per layer but lets a latent
read at layer s write to the MLP outputs of every layer t >= s: a feature computed once need not be
recomputed by each later MLP that passes it on. Only the decoder changes:

    W_dec [src_layer, tgt_layer, d_model, lat], zero wherever tgt < src (a latent cannot write into the past)

and the output at layer t is the sum over s <= t of W_dec[s, t] acts[s], plus b_dec[t]. A latent's
decoder, concatenated over its target layers, is kept at unit norm. A per-layer transcoder is the CLT
whose W_dec is diagonal (`as_cross_layer`), so code downstream can treat both alike. Every function
here takes either layout (told apart by `W_dec.ndim`).

The **SAE** of the comparison is the transcoder whose input is its own output: trained on an MLP's
output to reconstruct it (`train_transcoders(params, x_out, x_out, k)`), spliced in with
`reads="mlp_out"`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import einops
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from utils.data import facts as facts_data
from utils.sae import init_sae, train_sae

Reads = Literal["mlp_in", "mlp_out"]


def mlp_hooks(layer: int) -> tuple[str, str]:
    """The hook names of an MLP's input (after its LayerNorm) and of its output."""
    return f"blocks.{layer}.mlp.hook_in", f"blocks.{layer}.hook_mlp_out"


@torch.no_grad()
def collect_mlp_activations(
    model,
    tokens: Int[Tensor, "batch pos"],
    mask: Bool[Tensor, "batch pos"],
    layers: Sequence[int],
    batch_size: int = 256,
) -> tuple[Float[Tensor, "n layer d_model"], Float[Tensor, "n layer d_model"]]:
    """Every MLP's input and output at the positions `mask` keeps (e.g. not padding), one row per token."""
    names = {name for layer in layers for name in mlp_hooks(layer)}
    device = next(model.parameters()).device
    ins, outs = [], []
    for i in range(0, len(tokens), batch_size):
        _, cache = model.run_with_cache(tokens[i:i + batch_size].to(device), names_filter=lambda n: n in names)
        keep = mask[i:i + batch_size].to(device)
        ins.append(torch.stack([cache[mlp_hooks(layer)[0]][keep] for layer in layers], dim=1).cpu())
        outs.append(torch.stack([cache[mlp_hooks(layer)[1]][keep] for layer in layers], dim=1).cpu())
    return torch.cat(ins), torch.cat(outs)


# -- the two layouts ---------------------------------------------------------------------------------

def init_transcoders(
    n_layers: int,
    d_model: int,
    d_latent: int,
    generator: torch.Generator,
    mean_out: Float[Tensor, "layer d_model"] | None = None,
) -> dict[str, Tensor]:
    """utils.sae's initialisation, with the output bias at the MLP's mean output when given (the
    latents then only have to explain departures from it)."""
    params = init_sae(n_layers, d_model, d_latent, generator)
    if mean_out is not None:
        with torch.no_grad():
            params["b_dec"].copy_(mean_out)
    return params


def causal_mask(n_layers: int, device: str | torch.device = "cpu") -> Bool[Tensor, "src tgt"]:
    """True where a latent read at layer `src` may write: layer `src` itself and every later one."""
    layer = torch.arange(n_layers, device=device)
    return layer[None, :] >= layer[:, None]


def init_cross_layer(
    n_layers: int,
    d_model: int,
    d_latent: int,
    generator: torch.Generator,
    mean_out: Float[Tensor, "layer d_model"] | None = None,
) -> dict[str, Tensor]:
    """`init_transcoders`' encoders and biases, with a random causal decoder of unit norm per latent."""
    params = init_transcoders(n_layers, d_model, d_latent, generator, mean_out)
    W_dec = torch.randn(n_layers, n_layers, d_model, d_latent, generator=generator)
    params["W_dec"] = normalise_cross_layer(W_dec).requires_grad_(True)
    return params


def as_cross_layer(params: dict[str, Tensor]) -> dict[str, Tensor]:
    """Per-layer parameters in the cross-layer layout: each latent writes to its own layer only."""
    if params["W_dec"].ndim == 4:
        return params
    eye = torch.eye(params["W_dec"].shape[0], device=params["W_dec"].device, dtype=params["W_dec"].dtype)
    W_dec = einops.einsum(eye, params["W_dec"], "src tgt, src d lat -> src tgt d lat")
    return {**params, "W_dec": W_dec}


def encode(
    x_in: Float[Tensor, "batch layer d_model"],
    params: dict[str, Tensor],
    k: int,
) -> Float[Tensor, "batch layer lat"]:
    """TopK latent activations: the k largest pre-activations of each input, after a ReLU."""
    return top_k(pre_activations(x_in, params), k)


def pre_activations(
    x_in: Float[Tensor, "batch layer d_model"],
    params: dict[str, Tensor],
) -> Float[Tensor, "batch layer lat"]:
    """What each latent's TopK competes with: its encoder's reading of the input."""
    return einops.einsum(x_in, params["W_enc"], "batch layer d, layer d lat -> batch layer lat") + params["b_enc"]


def top_k(pre: Float[Tensor, "batch layer lat"], k: int) -> Float[Tensor, "batch layer lat"]:
    """The k largest pre-activations of each input, after a ReLU; every other latent at zero."""
    values, indices = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))


def decode(acts: Float[Tensor, "batch layer lat"], params: dict[str, Tensor]) -> Float[Tensor, "batch layer d_model"]:
    """Each layer's predicted MLP output; a cross-layer transcoder's through `decode_cross_layer`."""
    if params["W_dec"].ndim == 4:
        return decode_cross_layer(acts, params)
    return einops.einsum(acts, params["W_dec"], "batch layer lat, layer d lat -> batch layer d") + params["b_dec"]


def decode_cross_layer(
    acts: Float[Tensor, "batch src lat"],
    params: dict[str, Tensor],
) -> Float[Tensor, "batch tgt d_model"]:
    """Each layer's predicted MLP output: the writes of every latent read at that layer or before it.
    The causal mask is applied here too, so no edit of W_dec can make a latent write into the past."""
    W_dec = params["W_dec"] * causal_mask(acts.shape[1], acts.device)[:, :, None, None]
    return einops.einsum(acts, W_dec, "batch src lat, src tgt d lat -> batch tgt d") + params["b_dec"]


def normalise_decoder(W_dec: Float[Tensor, "layer d_model lat"]) -> Float[Tensor, "layer d_model lat"]:
    return W_dec / W_dec.norm(dim=1, keepdim=True).clamp(min=1e-8)


def normalise_cross_layer(W_dec: Float[Tensor, "src tgt d_model lat"]) -> Float[Tensor, "src tgt d_model lat"]:
    """The causal entries only, each latent's decoder (all its target layers together) at unit norm."""
    W_dec = W_dec * causal_mask(W_dec.shape[0], W_dec.device)[:, :, None, None]
    return W_dec / W_dec.norm(dim=(1, 2), keepdim=True).clamp(min=1e-8)


# -- metrics -------------------------------------------------------------------------------------------

def normalised_mse(
    out_hat: Float[Tensor, "n layer d_model"],
    out: Float[Tensor, "n layer d_model"],
) -> Float[Tensor, " layer"]:
    """Squared error over the output's variance around its mean: 0 is perfect, 1 is no better than
    always predicting the mean output."""
    error = (out_hat - out).pow(2).sum(dim=(0, 2))
    return error / (out - out.mean(dim=0)).pow(2).sum(dim=(0, 2)).clamp(min=1e-12)


def l0(acts: Float[Tensor, "n layer lat"]) -> Float[Tensor, " layer"]:
    """Mean number of active latents per input (at most k for a TopK transcoder)."""
    return (acts > 0).float().sum(dim=-1).mean(dim=0)


def dead_fraction(acts: Float[Tensor, "n layer lat"]) -> Float[Tensor, " layer"]:
    """Share of latents that never fire on these inputs."""
    return (~(acts > 0).any(dim=0)).float().mean(dim=-1)


@torch.no_grad()
def evaluate(
    params: dict[str, Tensor],
    x_in: Float[Tensor, "n layer d_model"],
    x_out: Float[Tensor, "n layer d_model"],
    k: int,
    batch_size: int = 8192,
) -> dict[str, Tensor]:
    """Per layer: L0, normalised MSE and the share of dead latents on the given activations (for a
    cross-layer transcoder L0 and dead latents by the layer a latent reads, the error by the layer
    written)."""
    fired, active, error = False, 0, 0
    for i in range(0, len(x_in), batch_size):
        acts = encode(x_in[i:i + batch_size], params, k)
        fired = fired | (acts > 0).any(dim=0)
        active = active + (acts > 0).float().sum(dim=(0, 2))
        error = error + (decode(acts, params) - x_out[i:i + batch_size]).pow(2).sum(dim=(0, 2))
    variance = (x_out - x_out.mean(dim=0)).pow(2).sum(dim=(0, 2)).clamp(min=1e-12)
    return {"l0": active / len(x_in), "normalised_mse": error / variance,
            "dead_fraction": (~fired).float().mean(dim=-1)}


# -- training ------------------------------------------------------------------------------------------

def _step(params: dict[str, Tensor], x: Float[Tensor, "batch layer two_d"], k: int):
    """utils.sae.train_sae's step: x is the input and the output side by side on the last axis; the
    loss is each target layer's normalised MSE."""
    x_in, x_out = x.chunk(2, dim=-1)
    acts = encode(x_in, params, k)
    out_hat = decode(acts, params)
    return normalised_mse(out_hat, x_out), acts, out_hat


def _train(params, x_in, x_out, k, normalise, *, steps, batch_size, lr, generator, desc) -> dict:
    data = torch.cat([x_in, x_out], dim=-1).to(params["W_enc"].device)
    rows = torch.randint(len(data), (steps, batch_size), generator=generator)
    return train_sae(params, lambda step: data[rows[step]], lambda p, x: _step(p, x, k), normalise,
                     steps=steps, lr=lr, desc=desc)


def train_transcoders(
    params: dict[str, Tensor],
    x_in: Float[Tensor, "n layer d_model"],
    x_out: Float[Tensor, "n layer d_model"],
    k: int,
    *,
    steps: int,
    batch_size: int = 512,
    lr: float = 1e-3,
    generator: torch.Generator | None = None,
    desc: str = "training transcoders",
) -> dict:
    """Adam on the normalised MSE of every layer's transcoder (summed over layers), on random rows of
    the collected activations; utils.sae.train_sae's loop, loss history and throughput."""
    return _train(params, x_in, x_out, k, normalise_decoder, steps=steps, batch_size=batch_size, lr=lr,
                  generator=generator, desc=desc)


def train_cross_layer(
    params: dict[str, Tensor],
    x_in: Float[Tensor, "n layer d_model"],
    x_out: Float[Tensor, "n layer d_model"],
    k: int,
    *,
    steps: int,
    batch_size: int = 512,
    lr: float = 1e-3,
    generator: torch.Generator | None = None,
    desc: str = "training a cross-layer transcoder",
) -> dict:
    """`train_transcoders` for a cross-layer transcoder: the loss is the sum over target layers of the
    normalised MSE of everything written to them. The entries below the causal mask get no gradient
    (`decode_cross_layer` multiplies them by zero), so Adam leaves them at zero, and
    `normalise_cross_layer` puts each latent's whole decoder back to unit norm after every step."""
    return _train(params, x_in, x_out, k, normalise_cross_layer, steps=steps, batch_size=batch_size, lr=lr,
                  generator=generator, desc=desc)


# -- splicing into the model ---------------------------------------------------------------------------

def replacement_hooks(params: dict[str, Tensor], layers: Sequence[int], k: int,
                      reads: Reads = "mlp_in") -> list[tuple[str, object]]:
    """Forward hooks that replace each listed MLP's output with the transcoder's prediction from the
    MLP's input in the same forward pass (for `model.run_with_hooks(tokens, fwd_hooks=...)`).

    Per-layer parameters hold one transcoder per listed layer, in order. Cross-layer parameters cover
    every layer of the model: each listed layer's output is the sum of what the latents of that layer
    and of every earlier one write to it, so those earlier encoders run too. An SAE reads the MLP's
    output itself (`reads="mlp_out"`) and replaces it with its reconstruction."""
    cross_layer = params["W_dec"].ndim == 4
    clt = as_cross_layer(params)
    sources = list(range(clt["W_dec"].shape[0])) if cross_layer else list(layers)
    acts: dict[int, Tensor] = {}

    def read(x, hook, row):
        single = {name: clt[name][row:row + 1] for name in ("W_enc", "b_enc")}
        acts[row] = encode(einops.rearrange(x, "batch pos d -> (batch pos) 1 d"), single, k)[:, 0]
        return x

    def write(x, hook, row):
        rows = range(row + 1) if cross_layer else [row]
        written = torch.stack([acts[source] for source in rows], dim=1)
        out = einops.einsum(written, clt["W_dec"][rows, row], "n src lat, src d lat -> n d") + clt["b_dec"][row]
        return einops.rearrange(out, "(batch pos) d -> batch pos d", batch=x.shape[0])

    hooks = []
    for row, layer in enumerate(sources):
        hooks.append((mlp_hooks(layer)[0 if reads == "mlp_in" else 1], lambda x, hook, row=row: read(x, hook, row)))
        if layer in layers:
            hooks.append((mlp_hooks(layer)[1], lambda x, hook, row=row: write(x, hook, row)))
    return hooks


@torch.no_grad()
def spliced_logits(model, tokens: Int[Tensor, "batch pos"], params: dict[str, Tensor], layers: Sequence[int],
                   k: int, reads: Reads = "mlp_in") -> Float[Tensor, "batch pos vocab"]:
    """The model's logits with the listed MLPs replaced by their transcoders (or SAEs)."""
    return model.run_with_hooks(tokens, fwd_hooks=replacement_hooks(params, layers, k, reads))


def kl_divergence(
    logits_ref: Float[Tensor, "... vocab"],
    logits: Float[Tensor, "... vocab"],
) -> Float[Tensor, "..."]:
    """KL(ref || other) between the next-token distributions, in nats."""
    log_p, log_q = logits_ref.log_softmax(-1), logits.log_softmax(-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


# -- what the replacement costs ------------------------------------------------------------------------

def next_token_targets(
    tokens: Int[Tensor, "batch pos"],
) -> tuple[Int[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]:
    """For a language model: every position predicts the token after it (the last one predicts nothing)."""
    targets = torch.zeros_like(tokens)
    targets[:, :-1] = tokens[:, 1:]
    mask = torch.ones_like(tokens, dtype=torch.bool)
    mask[:, -1] = False
    return targets, mask


def answer_targets(
    batch: facts_data.Facts,
) -> tuple[Int[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]:
    """For the fact model: only the last word's prediction counts, and its target is the answer."""
    rows = torch.arange(len(batch))
    targets = torch.zeros_like(batch.tokens)
    targets[rows, batch.end] = batch.answer
    mask = torch.zeros_like(batch.tokens, dtype=torch.bool)
    mask[rows, batch.end] = True
    return targets, mask


@torch.no_grad()
def replacement_metrics(
    model,
    tokens: Int[Tensor, "batch pos"],
    targets: Int[Tensor, "batch pos"],
    mask: Bool[Tensor, "batch pos"],
    params: dict[str, Tensor],
    k: int,
    *,
    layers: Sequence[int] | None = None,
    reads: Reads = "mlp_in",
    batch_size: int = 256,
) -> dict[str, float]:
    """The original and the replacement model (every MLP, or the listed ones, replaced) side by side
    on the predictions `mask` keeps: cross-entropy against `targets` ("loss", "replacement_loss"),
    the share whose top token is the target ("accuracy", "replacement_accuracy") and the mean
    KL(original || replacement) in nats ("kl")."""
    layers = list(range(model.cfg.n_layers)) if layers is None else list(layers)
    device = next(model.parameters()).device
    params = {name: value.to(device) for name, value in params.items()}
    hooks = replacement_hooks(params, layers, k, reads)
    sums = dict.fromkeys(("loss", "replacement_loss", "accuracy", "replacement_accuracy", "kl"), 0.0)
    for i in range(0, len(tokens), batch_size):
        part, keep = tokens[i:i + batch_size].to(device), mask[i:i + batch_size].to(device)
        target = targets[i:i + batch_size].to(device)[keep]
        original, replaced = model(part)[keep], model.run_with_hooks(part, fwd_hooks=hooks)[keep]
        for name, logits in (("", original), ("replacement_", replaced)):
            sums[f"{name}loss"] += torch.nn.functional.cross_entropy(logits, target, reduction="sum").item()
            sums[f"{name}accuracy"] += (logits.argmax(-1) == target).sum().item()
        sums["kl"] += kl_divergence(original, replaced).sum().item()
    return {name: total / int(mask.sum()) for name, total in sums.items()}


def facts_replacement_metrics(model, batch: facts_data.Facts, params: dict[str, Tensor], k: int,
                              **kwargs) -> dict[str, float]:
    """`replacement_metrics` on fact prompts: the answer's loss and accuracy, the KL at the last word
    (on `facts.facts("person_country", "heldout")` the accuracy is the held-out two-hop accuracy)."""
    return replacement_metrics(model, batch.tokens, *answer_targets(batch), params, k, **kwargs)
