"""Reference solutions for 1.2 "Circuits and induction heads"."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import FactoredMatrix, TransformerBridge
from transformer_lens.hook_points import HookPoint


def correct_token_log_probs(
    logits: Float[Tensor, "batch pos d_vocab"],
    tokens: Int[Tensor, "batch pos"],
) -> Float[Tensor, "batch pos_minus_1"]:
    """Log-probability the model gave to the token that actually came next: log P(tokens[:, p + 1])
    under logits[:, p], for p = 0 .. pos - 2 (every position but the last).
    """
    log_probs = logits[:, :-1].log_softmax(dim=-1)
    next_tokens = tokens[:, 1:]
    return log_probs.gather(dim=-1, index=next_tokens.unsqueeze(-1)).squeeze(-1)


def repeated_sequence_losses(
    log_probs: Float[Tensor, "batch pos_minus_1"],
    seq_len: int,
) -> tuple[Float[Tensor, ""], Float[Tensor, ""]]:
    """(mean loss on tokens 2..seq_len of the first copy, mean loss on tokens 2..seq_len of the
    second copy) of [BOS] + R + R.

    The first token of each copy is left out of both: nothing in the context predicts it.
    """
    first_copy = log_probs[:, 1:seq_len]
    second_copy = log_probs[:, seq_len + 1:]
    return -first_copy.mean(), -second_copy.mean()


def previous_token_scores(
    pattern: Float[Tensor, "batch head query key"],
) -> Float[Tensor, "head"]:
    """Per head: the mean of pattern[b, h, q, q - 1] over the batch and over queries q >= 1, i.e. the
    mean attention from each token to the one just before it.
    """
    to_previous = pattern.diagonal(offset=-1, dim1=-2, dim2=-1)
    return einops.reduce(to_previous, "batch head query -> head", "mean")


def duplicate_token_scores(
    pattern: Float[Tensor, "batch head query key"],
    seq_len: int,
) -> Float[Tensor, "head"]:
    """On [BOS] + R + R: per head, the mean attention from each token of the second copy to the same
    token in the first copy.
    """
    to_duplicate = pattern.diagonal(offset=-seq_len, dim1=-2, dim2=-1)[..., -seq_len:]
    return einops.reduce(to_duplicate, "batch head query -> head", "mean")


def induction_scores(
    pattern: Float[Tensor, "batch head query key"],
    seq_len: int,
) -> Float[Tensor, "head"]:
    """On [BOS] + R + R: per head, the mean attention from each second-copy token at q to key
    q - seq_len + 1, the token that followed its earlier occurrence (Olsson et al. 2022).
    """
    to_next_of_earlier = pattern.diagonal(offset=1 - seq_len, dim1=-2, dim2=-1)[..., -seq_len:]
    return einops.reduce(to_next_of_earlier, "batch head query -> head", "mean")


def direct_logit_attribution(
    components: Float[Tensor, "component batch pos d_model"],
    W_U: Float[Tensor, "d_model d_vocab"],
    tokens: Int[Tensor, "batch pos"],
) -> Float[Tensor, "component batch pos_minus_1"]:
    """How much each component's output adds to the logit of the correct next token:
    components[c, b, p] @ W_U[:, tokens[b, p + 1]] for every component c, batch b and position p < pos - 1.

    The logits are linear in the residual stream, so each component's share is its output dotted
    with the unembedding column of the next token (the bias b_U belongs to no component).
    """
    next_token_directions = W_U[:, tokens[:, 1:]]
    return einops.einsum(components[:, :, :-1], next_token_directions,
                         "component batch pos d_model, d_model batch pos -> component batch pos")


def logit_lens_log_probs(
    resid_stack: Float[Tensor, "layer batch pos d_model"],
    W_U: Float[Tensor, "d_model d_vocab"],
    b_U: Float[Tensor, "d_vocab"],
    tokens: Int[Tensor, "batch pos"],
) -> Float[Tensor, "layer batch pos_minus_1"]:
    """Unembed the residual stream as it stands after each layer, as if the model stopped there, and
    read off the log-probability of the correct next token:
    log_softmax(resid_stack[l, b, p] @ W_U + b_U)[tokens[b, p + 1]] for every l, b and p < pos - 1.
    """
    log_probs = (resid_stack[:, :, :-1] @ W_U + b_U).log_softmax(dim=-1)
    next_tokens = einops.repeat(tokens[:, 1:], "batch pos -> layer batch pos 1", layer=resid_stack.shape[0])
    return log_probs.gather(dim=-1, index=next_tokens).squeeze(-1)


def zero_ablate_head_hook(
    z: Float[Tensor, "batch pos head d_head"],
    hook: HookPoint,
    head: int,
) -> Float[Tensor, "batch pos head d_head"]:
    """Hook on `hook_z`: remove one head's output by returning a copy of z with head `head` set to zero."""
    z = z.clone()
    z[:, :, head] = 0.0
    return z


def mean_ablate_head_hook(
    z: Float[Tensor, "batch pos head d_head"],
    hook: HookPoint,
    head: int,
) -> Float[Tensor, "batch pos head d_head"]:
    """Hook on `hook_z`: return a copy of z in which head `head` at each position holds its mean over
    the batch, keeping what the head does on average and removing what depends on the input.
    """
    z = z.clone()
    z[:, :, head] = einops.reduce(z[:, :, head], "batch pos d_head -> pos d_head", "mean")
    return z


def head_ablation_losses(
    model: TransformerBridge,
    tokens: Int[Tensor, "batch pos"],
    seq_len: int,
    ablation_hook: Callable = zero_ablate_head_hook,
) -> Float[Tensor, "layer head"]:
    """losses[l, h]: the loss on the second copy of [BOS] + R + R with only head h of layer l ablated
    (by `ablation_hook`), every head on its own.
    """
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    losses = torch.zeros(n_layers, n_heads, device=tokens.device)
    for layer in range(n_layers):
        for head in range(n_heads):
            hook = (f"blocks.{layer}.attn.hook_z", partial(ablation_hook, head=head))
            logits = model.run_with_hooks(tokens, fwd_hooks=[hook])
            log_probs = correct_token_log_probs(logits, tokens)
            losses[layer, head] = repeated_sequence_losses(log_probs, seq_len)[1]
    return losses


def positional_qk_pattern(
    W_pos: Float[Tensor, "pos d_model"],
    W_Q: Float[Tensor, "d_model d_head"],
    b_Q: Float[Tensor, "d_head"],
    W_K: Float[Tensor, "d_model d_head"],
    b_K: Float[Tensor, "d_head"],
) -> Float[Tensor, "query key"]:
    """The causal attention pattern [query, key] one head would produce if each residual vector held
    only its positional embedding: which positions does the head look at, whatever the tokens?
    """
    q = W_pos @ W_Q + b_Q
    k = W_pos @ W_K + b_K
    scores = einops.einsum(q, k, "query d_head, key d_head -> query key") / W_Q.shape[-1] ** 0.5
    future = torch.triu(torch.ones_like(scores, dtype=torch.bool), diagonal=1)
    return scores.masked_fill(future, float("-inf")).softmax(dim=-1)


def full_ov_circuit(
    W_E: Float[Tensor, "d_vocab d_model"],
    W_V: Float[Tensor, "d_model d_head"],
    W_O: Float[Tensor, "d_head d_model"],
    W_U: Float[Tensor, "d_model d_vocab"],
) -> FactoredMatrix:
    """W_E W_V W_O W_U: row s, column t is how much attending to token s raises the logit of t.

    Return it as a FactoredMatrix if you can: the product has rank at most d_head, so there's no
    need to build it densely.
    """
    return FactoredMatrix(W_E @ W_V, W_O @ W_U)


def top1_copying_accuracy(
    full_ov: Float[Tensor, "source_token output_token"],
) -> float:
    """Fraction of source tokens s (a Python float) for which full_ov[s].argmax() == s: attending to
    them raises their own logit more than any other.
    """
    best_output = full_ov.argmax(dim=-1)
    tokens = torch.arange(full_ov.shape[0], device=full_ov.device)
    return (best_output == tokens).float().mean().item()


def eigenvalue_copying_score(
    matrix: FactoredMatrix,
) -> Float[Tensor, "..."]:
    """The real part of sum(eigenvalues) / sum(|eigenvalues|) (Elhage et al. 2021), one value per
    matrix in the batch: +1 when every eigenvalue is positive real (the circuit maps tokens onto
    themselves, amplified), -1 when all are negative.
    """
    eigenvalues = matrix.eigenvalues
    return eigenvalues.sum(dim=-1).real / eigenvalues.abs().sum(dim=-1)


def composition_score(
    W_A: FactoredMatrix,
    W_B: FactoredMatrix,
) -> Float[Tensor, "..."]:
    """||W_A W_B||_F / (||W_A||_F ||W_B||_F), keeping any batch dimensions: how much of what W_A
    writes, W_B reads.
    """
    return (W_A @ W_B).norm() / (W_A.norm() * W_B.norm())


def k_composition_scores(model: TransformerBridge) -> Float[Tensor, "head_0 head_1"]:
    """scores[i, j] = composition_score(model.OV[0, i], model.QK[1, j].T): the K-composition of every
    layer-0 head (writer) with every layer-1 head (reader).

    A layer-0 head's output x OV lands in the keys of a layer-1 head, whose score for a query
    q is q QK (x OV)^T, so the matrix that matters is OV QK^T.
    """
    writers = model.OV[0].unsqueeze(1)
    readers = model.QK[1].T.unsqueeze(0)
    return composition_score(writers, readers)


def random_composition_scores(
    W_A: FactoredMatrix,
    W_B: FactoredMatrix,
    n_samples: int = 1000,
) -> Float[Tensor, "n_samples"]:
    """Composition scores of n_samples random Gaussian pairs factored exactly like W_A and W_B (A and
    B factors alike): the spread a score would have if the two heads had nothing to do with each other.
    """
    def like(m: FactoredMatrix) -> FactoredMatrix:
        shape_a, shape_b = (n_samples, *m.A.shape[-2:]), (n_samples, *m.B.shape[-2:])
        return FactoredMatrix(torch.randn(shape_a, device=m.A.device), torch.randn(shape_b, device=m.B.device))

    return composition_score(like(W_A), like(W_B))
