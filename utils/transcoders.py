"""Per-layer TopK transcoders for Chapter 8: training on a model's MLP activations, and their metrics.

A transcoder reads what an MLP reads (its input, after the LayerNorm) and predicts what the MLP
writes (its output) through a sparse layer of latents: out ~ W_dec TopK(W_enc^T in + b_enc) + b_dec.
Unlike an SAE it does not reconstruct its own input, so its latents stand in for the MLP's
computation, which is what a replacement model and an attribution graph need.

The parameters follow utils.sae (a dict of plain tensors, the latent axis last), with the leading
instance axis used for the layers: one transcoder per layer, all trained in one batched step.

    W_enc [layer, d_model, lat]   b_enc [layer, lat]   W_dec [layer, d_model, lat]   b_dec [layer, d_model]

`W_dec[l, :, j]` is latent j's write into the residual stream at layer l; decoder columns are
kept at unit norm, so a latent's activation is the size of its write.
"""

from __future__ import annotations

from collections.abc import Sequence

import einops
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from utils.sae import init_sae, train_sae


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


def encode(
    x_in: Float[Tensor, "batch layer d_model"],
    params: dict[str, Tensor],
    k: int,
) -> Float[Tensor, "batch layer lat"]:
    """TopK latent activations: the k largest pre-activations of each input, after a ReLU."""
    pre = einops.einsum(x_in, params["W_enc"], "batch layer d, layer d lat -> batch layer lat") + params["b_enc"]
    values, indices = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))


def decode(acts: Float[Tensor, "batch layer lat"], params: dict[str, Tensor]) -> Float[Tensor, "batch layer d_model"]:
    return einops.einsum(acts, params["W_dec"], "batch layer lat, layer d lat -> batch layer d") + params["b_dec"]


def normalise_decoder(W_dec: Float[Tensor, "layer d_model lat"]) -> Float[Tensor, "layer d_model lat"]:
    return W_dec / W_dec.norm(dim=1, keepdim=True).clamp(min=1e-8)


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


def _step(params: dict[str, Tensor], x: Float[Tensor, "batch layer two_d"], k: int):
    """utils.sae.train_sae's step: x is the input and the output side by side on the last axis."""
    x_in, x_out = x.chunk(2, dim=-1)
    acts = encode(x_in, params, k)
    out_hat = decode(acts, params)
    scale = (x_out - x_out.mean(dim=0)).pow(2).sum(dim=(0, 2)).clamp(min=1e-12)
    loss = (out_hat - x_out).pow(2).sum(dim=(0, 2)) / scale
    return loss, acts, out_hat


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
    data = torch.cat([x_in, x_out], dim=-1).to(params["W_enc"].device)
    rows = torch.randint(len(data), (steps, batch_size), generator=generator)
    return train_sae(params, lambda step: data[rows[step]], lambda p, x: _step(p, x, k), normalise_decoder,
                     steps=steps, lr=lr, desc=desc)


@torch.no_grad()
def evaluate(
    params: dict[str, Tensor],
    x_in: Float[Tensor, "n layer d_model"],
    x_out: Float[Tensor, "n layer d_model"],
    k: int,
) -> dict[str, Tensor]:
    """Per layer: L0, normalised MSE and the share of dead latents on the given activations."""
    acts = encode(x_in, params, k)
    return {"l0": l0(acts), "normalised_mse": normalised_mse(decode(acts, params), x_out),
            "dead_fraction": dead_fraction(acts)}


def replacement_hooks(params: dict[str, Tensor], layers: Sequence[int], k: int) -> list[tuple[str, object]]:
    """Forward hooks that replace each listed MLP's output with its transcoder's prediction from the
    MLP's input in the same forward pass (for `model.run_with_hooks(tokens, fwd_hooks=...)`)."""
    inputs: dict[int, Tensor] = {}
    hooks = []
    for i, layer in enumerate(layers):
        name_in, name_out = mlp_hooks(layer)

        def save(x, hook, layer=layer):
            inputs[layer] = x
            return x

        def replace(x, hook, layer=layer, i=i):
            single = {key: value[i:i + 1] for key, value in params.items()}
            batch, pos = x.shape[:2]
            flat = einops.rearrange(inputs.pop(layer), "batch pos d -> (batch pos) 1 d")
            out = decode(encode(flat, single, k), single)
            return einops.rearrange(out, "(batch pos) 1 d -> batch pos d", batch=batch, pos=pos)

        hooks += [(name_in, save), (name_out, replace)]
    return hooks


@torch.no_grad()
def spliced_logits(model, tokens: Int[Tensor, "batch pos"], params: dict[str, Tensor], layers: Sequence[int],
                   k: int) -> Float[Tensor, "batch pos vocab"]:
    """The model's logits with the listed MLPs replaced by their transcoders."""
    return model.run_with_hooks(tokens, fwd_hooks=replacement_hooks(params, layers, k))


def kl_divergence(
    logits_ref: Float[Tensor, "... vocab"],
    logits: Float[Tensor, "... vocab"],
) -> Float[Tensor, "..."]:
    """KL(ref || other) between the next-token distributions, in nats."""
    log_p, log_q = logits_ref.log_softmax(-1), logits.log_softmax(-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)
