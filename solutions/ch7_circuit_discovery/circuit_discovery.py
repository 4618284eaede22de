"""Reference solutions for 7.1 "Automated circuit discovery": edges, ACDC, EAP, EAP-IG, ROC, causal scrubbing.

Conventions. A model is a `utils.circuits.EdgeModel` (`em`); its `graph` names senders ("embed",
"a1.2", "m0"), receivers ("a1.2.k", "m0", "logits") and edges (sender, receiver). Edge masks and
score tables are [sender, receiver]. Sender outputs are [sender, batch, pos, d_model], receiver
inputs and their gradients [receiver, batch, pos, d_model]. Every method here *noises*: it starts
from the clean run and asks what corrupting an edge (giving its receiver the corrupted run's
sender output) does to a metric, as ACDC (Conmy et al. 2023) and EAP (Syed et al. 2023) do.
"""

from __future__ import annotations

from collections.abc import Callable

import einops
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from utils.circuits import node_of

# -- 1. the graph and edge patching ---------------------------------------------------------------


def graph_edges(n_layers: int, n_heads: int, mlps: bool) -> list[tuple[str, str]]:
    """Every (sender, receiver) edge, receivers in forward order, each receiver's senders in forward order.

    A head's q, k and v inputs are three receivers (q before k before v) that read every sender of an
    earlier layer; an MLP reads everything before it, its own layer's heads included; "logits" reads
    every sender."""
    senders, edges = ["embed"], []
    for layer in range(n_layers):
        heads = [f"a{layer}.{h}" for h in range(n_heads)]
        for head in heads:
            for x in "qkv":
                edges += [(s, f"{head}.{x}") for s in senders]
        senders += heads
        if mlps:
            edges += [(s, f"m{layer}") for s in senders]
            senders.append(f"m{layer}")
    edges += [(s, "logits") for s in senders]
    return edges


def receiver_input(current: Float[Tensor, "sender batch pos d_model"],
                   source: Float[Tensor, "sender batch pos d_model"],
                   keep: Bool[Tensor, " sender"]) -> Float[Tensor, "batch pos d_model"]:
    """One receiver's input when only some of its edges are patched: the sum over its senders of the
    current run's output where `keep` is True and the source run's output where it is False."""
    keep = keep[:, None, None, None]
    return torch.where(keep, current, source).sum(dim=0)


def kl_from_clean(clean_logits: Float[Tensor, "batch pos d_vocab"], logits: Float[Tensor, "batch pos d_vocab"],
                  positions: Int[Tensor, " n"]) -> Float[Tensor, ""]:
    """KL(clean || patched) of the next-token distributions, averaged over the batch and `positions`.

    ACDC's default metric: 0 for the clean model, and it needs no labels."""
    clean = clean_logits[:, positions].log_softmax(-1)
    patched = logits[:, positions].log_softmax(-1)
    return (clean.exp() * (clean - patched)).sum(-1).mean()


def induction_log_prob(logits: Float[Tensor, "batch pos d_vocab"], tokens: Int[Tensor, "batch pos"],
                       seq_len: int) -> Float[Tensor, ""]:
    """Mean log-probability of the correct next token where induction can predict it, on [BOS] + R + R:
    the logits at positions seq_len + 1 ... 2 * seq_len - 1 predicting the tokens one later."""
    log_probs = logits[:, seq_len + 1: 2 * seq_len].log_softmax(-1)
    targets = tokens[:, seq_len + 2: 2 * seq_len + 1]
    return log_probs.gather(-1, targets[..., None])[..., 0].mean()


# -- 2. ACDC ---------------------------------------------------------------------------------------------


def acdc(edges: list[tuple[str, str]], metric_without: Callable[[set], float],
         threshold: float) -> list[tuple[str, str]]:
    """ACDC (Conmy et al. 2023): visit the edges from the output backwards (the reverse of `edges`, which is
    in forward order); remove an edge for good if removing it, on top of everything removed so far, raises
    `metric_without(removed)` (e.g. the KL from the clean model) by strictly less than `threshold` (a rise of
    exactly `threshold` keeps the edge). Each call of `metric_without` is a forward pass: call it once at the start
    and once per edge (len(edges) + 1 calls in all).

    Returns the kept edges in forward order."""
    removed: set = set()
    current = metric_without(removed)
    for edge in reversed(edges):
        trial = metric_without(removed | {edge})
        if trial - current < threshold:
            removed.add(edge)
            current = trial
    return [e for e in edges if e not in removed]


def prune_dangling(edges: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Keep only the edges on some path from "embed" to "logits".

    An edge out of a node that reaches the logits through no kept edge changes nothing; an edge out of a
    node none of whose inputs is kept carries that node's corrupted output (all it reads is corrupted).
    Receivers "a1.2.q/k/v" belong to the node "a1.2"; remove edges until nothing changes.

    Returns a list of the kept edges in the order they come in `edges`."""
    kept = list(edges)
    while True:
        fed = {"embed"} | {node_of(r) for s, r in kept if s == "embed"}
        changed = True
        while changed:
            new = fed | {node_of(r) for s, r in kept if s in fed}
            changed, fed = new != fed, new
        heard = {"logits"}
        changed = True
        while changed:
            new = heard | {s for s, r in kept if node_of(r) in heard}
            changed, heard = new != heard, new
        pruned = [(s, r) for s, r in kept if s in fed and node_of(r) in heard]
        if pruned == kept:
            return kept
        kept = pruned


# -- 3. edge attribution patching --------------------------------------------------------------------------


def receiver_gradients(em, tokens: Int[Tensor, "batch pos"],
                       metric: Callable[[Tensor], Tensor]) -> Float[Tensor, "receiver batch pos d_model"]:
    """d metric / d (every receiver's input) on the run of `tokens`: one forward and one backward pass.

    A zero tensor added to every receiver's input (`em.run(..., receiver_delta=...)`) has exactly these
    gradients. The notebook switches gradients off globally (torch.set_grad_enabled(False) in its set-up
    cell), so both passes run inside `with torch.enable_grad():`. Returns a detached tensor (no graph
    attached)."""
    delta = em.zero_delta(tokens)
    with torch.enable_grad():
        metric(em.run(tokens, receiver_delta=delta)).backward()
    return delta.grad.detach()


def eap_scores(clean_outs: Float[Tensor, "sender batch pos d_model"],
               corrupted_outs: Float[Tensor, "sender batch pos d_model"],
               grads: Float[Tensor, "receiver batch pos d_model"],
               adjacency: Bool[Tensor, "sender receiver"]) -> Float[Tensor, "sender receiver"]:
    """First-order estimate of the metric change from corrupting each edge: (corrupted - clean sender
    output) . (gradient at the receiver), summed over batch, position and d_model; 0 where no edge."""
    scores = einops.einsum(corrupted_outs - clean_outs, grads, "s b p d, r b p d -> s r")
    return scores * adjacency


def eap_edge_scores(em, clean_tokens: Int[Tensor, "batch pos"], corrupted_tokens: Int[Tensor, "batch pos"],
                    metric: Callable[[Tensor], Tensor]) -> Float[Tensor, "sender receiver"]:
    """EAP (Syed et al. 2023): every edge's score from at most three forward passes (clean and corrupted sender
    outputs, the clean run to differentiate) and one backward pass, with the gradient taken on the clean run
    (where the edges are being corrupted)."""
    clean_outs = em.sender_outputs(clean_tokens)
    corrupted_outs = em.sender_outputs(corrupted_tokens)
    grads = receiver_gradients(em, clean_tokens, metric)
    return eap_scores(clean_outs, corrupted_outs, grads, em.graph.adjacency.to(grads.device))


def ig_path(clean: Float[Tensor, "batch pos d_model"], corrupted: Float[Tensor, "batch pos d_model"],
                steps: int) -> Float[Tensor, "steps batch pos d_model"]:
    """The points corrupted + (k / steps) (clean - corrupted) for k = 1 ... steps: the path EAP-IG
    integrates along, ending at the clean input (with steps = 1 it is the clean input alone, and EAP-IG
    is EAP)."""
    alphas = torch.arange(1, steps + 1, dtype=clean.dtype, device=clean.device) / steps
    return corrupted + alphas[:, None, None, None] * (clean - corrupted)


def eap_ig_edge_scores(em, clean_tokens: Int[Tensor, "batch pos"], corrupted_tokens: Int[Tensor, "batch pos"],
                       metric: Callable[[Tensor], Tensor], steps: int = 5) -> Float[Tensor, "sender receiver"]:
    """EAP-IG (Hanna et al. 2024): EAP with the receiver gradients averaged over `steps` runs whose
    embedding moves from the corrupted to the clean one (the rest of each run recomputes)."""
    clean_outs = em.sender_outputs(clean_tokens)
    corrupted_outs = em.sender_outputs(corrupted_tokens)
    grads = torch.zeros_like(em.zero_delta(clean_tokens))
    for embed in ig_path(clean_outs[0], corrupted_outs[0], steps):
        delta = em.zero_delta(clean_tokens)
        with torch.enable_grad():
            metric(em.run(clean_tokens, receiver_delta=delta, embed=embed)).backward()
        grads += delta.grad.detach()
    return eap_scores(clean_outs, corrupted_outs, grads / steps, em.graph.adjacency.to(grads.device))


def top_k_edges(scores: Float[Tensor, "sender receiver"], adjacency: Bool[Tensor, "sender receiver"],
                k: int) -> Bool[Tensor, "sender receiver"]:
    """The k edges with the largest |score| (a large negative effect matters as much as a positive one): exactly
    k real edges, even when scores tie (ties broken arbitrarily) or are 0."""
    flat = scores.abs().masked_fill(~adjacency, -1.0).flatten()
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[flat.topk(k).indices] = True
    return mask.view_as(adjacency)


# -- 4. comparing methods ----------------------------------------------------------------------------------


def roc_points(scores: Float[Tensor, " n"], labels: Bool[Tensor, " n"]) -> tuple[Tensor, Tensor]:
    """(false-positive rates, true-positive rates) when everything scoring >= t is called positive, for
    every distinct score t from the highest down, starting at (0, 0)."""
    thresholds = torch.unique(scores).flip(0)
    called = scores[None, :] >= thresholds[:, None]  # [threshold, n]
    tpr = (called & labels).sum(-1) / labels.sum()
    fpr = (called & ~labels).sum(-1) / (~labels).sum()
    zero = torch.zeros(1, device=scores.device)
    return torch.cat([zero, fpr.float()]), torch.cat([zero, tpr.float()])


def roc_auc(fpr: Float[Tensor, " n"], tpr: Float[Tensor, " n"]) -> float:
    """Area under a ROC curve given as points in order of increasing fpr (trapezoids)."""
    return float(((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2).sum())


def edge_faithfulness(em, tokens: Int[Tensor, "batch pos"], corrupted_outs: Float[Tensor, "sender batch pos d_model"],
                 keep: Bool[Tensor, "sender receiver"], metric: Callable[[Tensor], Tensor]) -> float:
    """How much of the behaviour the circuit `keep` carries: (metric with only the circuit's edges clean -
    metric with every edge corrupted) / (clean metric - metric with every edge corrupted)."""
    with torch.no_grad():
        circuit = metric(em.run(tokens, keep=keep, source=corrupted_outs))
        nothing = metric(em.run(tokens, keep=torch.zeros_like(keep), source=corrupted_outs))
        clean = metric(em.run(tokens))
    return float((circuit - nothing) / (clean - nothing))


# -- 5. nodes from edges -----------------------------------------------------------------------------------


def corrupt_senders_mask(adjacency: Bool[Tensor, "sender receiver"],
                         senders: list[int]) -> Bool[Tensor, "sender receiver"]:
    """The keep mask that corrupts every edge *out of* the given senders and keeps every other edge:
    patching a node is patching all its outgoing edges at once.

    True exactly on the edges that stay clean: False on the given senders' edges and, as in `adjacency`, on
    every pair that is not an edge."""
    keep = adjacency.clone()
    keep[senders] = False
    return keep


# -- 6. causal scrubbing -------------------------------------------------------------------------------------


def agreeing_resample(tokens: Int[Tensor, "batch pos"], offset: int, d_vocab: int,
                      generator: torch.Generator | None = None) -> Int[Tensor, "pos batch pos"]:
    """For each position p, new random sequences ([BOS] + tokens uniform over 1 ... d_vocab - 1) that agree
    with `tokens` only at position p + offset (where that is a position after BOS): the inputs a
    hypothesis "at p, this node reads only the token at p + offset" says should not change it. Every random token
    comes from `generator`, so one seed gives the same sequences."""
    batch, n_pos = tokens.shape
    out = torch.randint(1, d_vocab, (n_pos, batch, n_pos), generator=generator).to(tokens.device)
    out[:, :, 0] = tokens[:, 0]
    for p in range(n_pos):
        if 1 <= p + offset < n_pos:
            out[p, :, p + offset] = tokens[:, p + offset]
    return out


def assemble_by_position(outputs: Float[Tensor, "source_pos batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
    """Assemble one activation from one run per position: position p comes from run p, outputs[p, :, p]."""
    return einops.rearrange(outputs.diagonal(dim1=0, dim2=2), "batch d_model pos -> batch pos d_model")
