"""Reference solutions for 8.1 "Attribution graphs": transcoders, the local replacement model, the graph,
pruning by influence, reading features and checking the graph by intervening.

Conventions. Transcoder parameters are a dict of plain tensors with the latent axis last and a
leading layer axis: W_enc [layer, d_model, lat], b_enc [layer, lat], b_dec [layer, d_model], and
W_dec [layer, d_model, lat] for per-layer transcoders or [source_layer, target_layer, d_model, lat]
for a cross-layer one. A graph's adjacency matrix is [target, source]: row t holds the direct
effects of every node on node t's input. Node order: embeddings, features, error nodes, logits.
"""

from __future__ import annotations

import einops
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

# -- 1. a model with a known two-hop computation ----------------------------------------------------


def answer_accuracy(logits: Float[Tensor, "batch pos vocab"], end: Int[Tensor, " batch"],
                    answer: Int[Tensor, " batch"]) -> float:
    """Share of prompts whose most likely next token after their last word (position `end`; the
    prompts are right-padded, so the last *position* is often padding) is the answer."""
    last = logits[torch.arange(len(end)), end]
    return (last.argmax(dim=-1) == answer).float().mean().item()


def city_lens(resid: Float[Tensor, "batch d_model"], ln_w: Float[Tensor, " d_model"], ln_b: Float[Tensor, " d_model"],
              W_U: Float[Tensor, "d_model vocab"], city_tokens: Int[Tensor, " city"], eps: float = 1e-5) -> Int[Tensor, " batch"]:
    """The logit lens read among the cities: apply the final LayerNorm (its own scale, recomputed
    from `resid`) and the unembedding, and return the index (into `city_tokens`) of the most
    likely city."""
    x = resid - resid.mean(dim=-1, keepdim=True)
    x = x / (x.pow(2).mean(dim=-1, keepdim=True) + eps).sqrt() * ln_w + ln_b
    return (x @ W_U[:, city_tokens]).argmax(dim=-1)


# -- 2. transcoders ----------------------------------------------------------------------------------


def topk_encode(x_in: Float[Tensor, "batch d_model"], W_enc: Float[Tensor, "d_model lat"],
                b_enc: Float[Tensor, " lat"], k: int) -> Float[Tensor, "batch lat"]:
    """A TopK transcoder's activations: of the pre-activations W_enc^T x + b_enc, keep the k largest
    of each input (after a ReLU) and set every other latent to 0."""
    pre = x_in @ W_enc + b_enc
    values, indices = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))


def cross_layer_decode(acts: Float[Tensor, "batch layer lat"], W_dec: Float[Tensor, "src tgt d_model lat"],
                       b_dec: Float[Tensor, "layer d_model"]) -> Float[Tensor, "batch layer d_model"]:
    """A cross-layer transcoder's output for each layer's MLP: the sum over source layers at or
    before that layer of W_dec[source, layer] @ acts[source], plus b_dec[layer]. A latent read at
    layer s may write to layer s and every later layer, never to an earlier one."""
    n_layers = acts.shape[1]
    causal = torch.ones(n_layers, n_layers, dtype=torch.bool, device=acts.device).triu()   # [src, tgt], src <= tgt
    W = W_dec * causal[:, :, None, None]
    return einops.einsum(acts, W, "batch src lat, src tgt d lat -> batch tgt d") + b_dec


def normalised_mse(out_hat: Float[Tensor, "n layer d_model"], out: Float[Tensor, "n layer d_model"]) -> Float[Tensor, " layer"]:
    """Per layer: the squared error summed over inputs and dimensions, over the summed squared
    distance of the true outputs from their mean (0 perfect, 1 no better than the mean output)."""
    error = (out_hat - out).pow(2).sum(dim=(0, 2))
    return error / (out - out.mean(dim=0)).pow(2).sum(dim=(0, 2))


def replacement_kl(logits: Float[Tensor, "batch pos vocab"], replaced: Float[Tensor, "batch pos vocab"],
                   mask: Bool[Tensor, "batch pos"]) -> float:
    """KL(original || replacement) of the next-token distributions in nats, averaged over the
    positions `mask` keeps (not padding)."""
    log_p, log_q = logits[mask].log_softmax(-1), replaced[mask].log_softmax(-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean().item()


# -- 3. the local replacement model ------------------------------------------------------------------


def frozen_layer_norm(x: Float[Tensor, "pos d_model"], scale: Float[Tensor, "pos 1"], w: Float[Tensor, " d_model"],
                      b: Float[Tensor, " d_model"]) -> Float[Tensor, "pos d_model"]:
    """A LayerNorm whose scale is the one the real forward pass computed: centre x, divide by the
    given `scale` (do not recompute it from x), then w and b. Linear in x."""
    return (x - x.mean(dim=-1, keepdim=True)) / scale * w + b


def frozen_attention(x: Float[Tensor, "pos d_model"], pattern: Float[Tensor, "head q k"],
                     W_V: Float[Tensor, "head d_model d_head"], b_V: Float[Tensor, "head d_head"],
                     W_O: Float[Tensor, "head d_head d_model"], b_O: Float[Tensor, " d_model"]) -> Float[Tensor, "pos d_model"]:
    """An attention layer's output with its pattern frozen: each head moves values (x W_V + b_V)
    from key positions to query positions with the given weights, W_O maps them back, and the heads
    and b_O add up. With the pattern fixed, this is linear in x."""
    v = einops.einsum(x, W_V, "pos d, head d e -> head pos e") + b_V[:, None]
    z = einops.einsum(pattern, v, "head q k, head k e -> head q e")
    return einops.einsum(z, W_O, "head q e, head e d -> q d") + b_O


def error_nodes(mlp_out: Float[Tensor, "pos layer d_model"], acts: Float[Tensor, "pos layer lat"],
                W_dec: Float[Tensor, "layer d_model lat"], b_dec: Float[Tensor, "layer d_model"]) -> Float[Tensor, "pos layer d_model"]:
    """What the per-layer transcoders miss: the real MLP output minus the transcoder's output
    W_dec acts + b_dec, per position and layer. Added back, it makes the replacement model exact."""
    return mlp_out - (einops.einsum(acts, W_dec, "pos layer lat, layer d lat -> pos layer d") + b_dec)


# -- 4. the attribution graph ------------------------------------------------------------------------


def direct_effects(target: Float[Tensor, ""], sources: list[Float[Tensor, "..."]]) -> list[Float[Tensor, "..."]]:
    """Each source element's direct effect on a scalar `target` of a linear computation: the gradient
    of the target with respect to it, times its value (its activation). `sources` are leaf tensors
    that require grad; their `.grad` must be left untouched (use torch.autograd.grad, and keep the
    graph: the same forward pass serves many targets)."""
    grads = torch.autograd.grad(target, sources, retain_graph=True)
    return [g * s.detach() for g, s in zip(grads, sources)]


def logit_node_tokens(logits: Float[Tensor, " vocab"], max_logits: int, coverage: float) -> Int[Tensor, " logit"]:
    """The output nodes of a graph: the most likely tokens, most likely first, as few as reach
    `coverage` of the probability together (the token that crosses it included), at most `max_logits`."""
    probs = logits.softmax(dim=-1)
    order = probs.argsort(descending=True)
    n = int((probs[order].cumsum(0) < coverage).sum()) + 1
    return order[: min(n, max_logits)]


def normalised_adjacency(adjacency: Float[Tensor, "node node"]) -> Float[Tensor, "node node"]:
    """|A| with each row (a target's incoming edges) scaled to sum to 1; rows with no inputs stay 0."""
    magnitude = adjacency.abs()
    return magnitude / magnitude.sum(dim=1, keepdim=True).clamp(min=1e-30)


def indirect_influence(normalised: Float[Tensor, "node node"]) -> Float[Tensor, "node node"]:
    """B = A + A^2 + A^3 + ... = (I - A)^-1 - I: the influence of each source on each target along
    paths of every length (A is nilpotent: the graph has no cycles)."""
    eye = torch.eye(len(normalised), dtype=normalised.dtype, device=normalised.device)
    return torch.linalg.inv(eye - normalised) - eye


def cumulative_mask(scores: Float[Tensor, " n"], threshold: float) -> Bool[Tensor, " n"]:
    """True on the smallest set of the highest (non-negative) scores whose sum reaches `threshold`
    of the total: the score that crosses the threshold is kept."""
    order = scores.argsort(descending=True)
    cumulative = scores[order].cumsum(0) / scores.sum()
    n_keep = min(int((cumulative < threshold).sum()) + 1, len(scores))
    keep = torch.zeros(len(scores), dtype=torch.bool, device=scores.device)
    keep[order[:n_keep]] = True
    return keep


def replacement_score(influence: Float[Tensor, " node"], is_embed: Bool[Tensor, " node"],
                      is_error: Bool[Tensor, " node"]) -> float:
    """Of the logits' influence that starts at a source node (an embedding or an error node), the
    share that starts at embeddings: 1 when every path to the output runs through features."""
    embed, error = influence[is_embed].sum(), influence[is_error].sum()
    return (embed / (embed + error)).item()


def completeness_score(normalised: Float[Tensor, "node node"], influence: Float[Tensor, " node"],
                       logit_weights: Float[Tensor, " node"], is_error: Bool[Tensor, " node"],
                       is_target: Bool[Tensor, " node"]) -> float:
    """The share of each target node's input that comes from non-error nodes, averaged over the
    targets (features and logits) weighted by their influence on the output (their influence plus
    their own logit weight)."""
    non_error = 1 - normalised[:, is_error].sum(dim=1)
    weight = (influence + logit_weights)[is_target]
    return ((non_error[is_target] * weight).sum() / weight.sum()).item()


# -- 5. reading features -----------------------------------------------------------------------------


def majority_label(values: Float[Tensor, "feature top"], truth: Int[Tensor, "feature top"],
                   min_share: float) -> Int[Tensor, " feature"]:
    """Name each feature after the ground-truth value (>= 0; -1 means none) that at least `min_share`
    of its active top examples (value > 0) share; -1 when they do not agree or none is active."""
    active = values > 0
    n_active = active.sum(dim=-1)
    n_values = int(truth.max().clamp(min=0)) + 1
    counts = torch.zeros(truth.shape[0], n_values, dtype=torch.long, device=truth.device)
    known = active & (truth >= 0)
    counts.scatter_add_(1, truth.clamp(min=0), known.long())
    best, label = counts.max(dim=-1)
    agree = (n_active > 0) & (best >= min_share * n_active)
    return torch.where(agree, label, torch.full_like(label, -1))


def supernode_adjacency(adjacency: Float[Tensor, "node node"], groups: Int[Tensor, " node"],
                        n_groups: int) -> Float[Tensor, "group group"]:
    """Direct effects between supernodes: the sum of the edges from every node of group s to every
    node of group t, [target_group, source_group]; nodes in group -1 belong to none and drop out."""
    member = torch.zeros(len(groups), n_groups, dtype=adjacency.dtype, device=adjacency.device)
    inside = groups >= 0
    member[inside.nonzero()[:, 0], groups[inside]] = 1
    return member.T @ adjacency @ member


# -- 6. checking the graph on the real model ---------------------------------------------------------


def swap_deltas(acts: Float[Tensor, "layer lat"], donor_acts: Float[Tensor, "layer lat"],
                own: Bool[Tensor, "layer lat"], donor: Bool[Tensor, "layer lat"]) -> Float[Tensor, "layer lat"]:
    """How much to change each latent, at one position, to swap one group of features for another:
    remove the prompt's own features in `own` (their activations) and add the donor's features in
    `donor` at the donor's activations. Every other latent stays as it is (delta 0)."""
    return torch.where(donor, donor_acts, 0.0) - torch.where(own, acts, 0.0)
