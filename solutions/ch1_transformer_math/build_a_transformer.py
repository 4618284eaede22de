"""Reference solutions for 1.1 "Build a transformer"."""

from __future__ import annotations

import math
from collections.abc import Callable

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor


def embed(
    tokens: Int[Tensor, "batch pos"],
    W_E: Float[Tensor, "d_vocab d_model"],
) -> Float[Tensor, "batch pos d_model"]:
    """Each token's row of the embedding matrix: the vector the residual stream starts from."""
    return W_E[tokens]


def pos_embed(
    tokens: Int[Tensor, "batch pos"],
    W_pos: Float[Tensor, "n_ctx d_model"],
) -> Float[Tensor, "batch pos d_model"]:
    """The learned vector for each position 0..pos-1, the same for every sequence in the batch.

    It depends on where a token sits, never on which token it is.
    """
    batch, pos = tokens.shape
    return einops.repeat(W_pos[:pos], "pos d_model -> batch pos d_model", batch=batch)


def layer_norm(
    x: Float[Tensor, "batch pos d_model"],
    w: Float[Tensor, "d_model"],
    b: Float[Tensor, "d_model"],
    eps: float = 1e-5,
) -> Float[Tensor, "batch pos d_model"]:
    """Normalise each position's vector to mean 0 and variance 1, then scale by `w` and shift by `b`."""
    centred = x - x.mean(dim=-1, keepdim=True)
    variance = centred.pow(2).mean(dim=-1, keepdim=True)
    return centred / torch.sqrt(variance + eps) * w + b


def attention_scores(
    x: Float[Tensor, "batch pos d_model"],
    W_Q: Float[Tensor, "n_heads d_model d_head"],
    b_Q: Float[Tensor, "n_heads d_head"],
    W_K: Float[Tensor, "n_heads d_model d_head"],
    b_K: Float[Tensor, "n_heads d_head"],
) -> Float[Tensor, "batch n_heads query_pos key_pos"]:
    """Every head's query at each position dotted with its key at each position, divided by sqrt(d_head).

    The division keeps the scores' spread independent of d_head, so the softmax doesn't saturate.
    """
    q = einops.einsum(x, W_Q, "batch pos d_model, n_heads d_model d_head -> batch pos n_heads d_head") + b_Q
    k = einops.einsum(x, W_K, "batch pos d_model, n_heads d_model d_head -> batch pos n_heads d_head") + b_K
    scores = einops.einsum(q, k, "batch query_pos n_heads d_head, batch key_pos n_heads d_head "
                                 "-> batch n_heads query_pos key_pos")
    return scores / math.sqrt(W_Q.shape[-1])


def apply_causal_mask(
    scores: Float[Tensor, "batch n_heads query_pos key_pos"],
) -> Float[Tensor, "batch n_heads query_pos key_pos"]:
    """Set the score of every key that comes *after* its query to -inf, so that the softmax gives it
    zero weight: a position may read itself and the past, never the future it is trying to predict.

    Return a new tensor; don't edit `scores`.
    """
    n_query, n_key = scores.shape[-2:]
    future = torch.triu(torch.ones(n_query, n_key, dtype=torch.bool, device=scores.device), diagonal=1)
    return scores.masked_fill(future, float("-inf"))


def attention_pattern(
    scores: Float[Tensor, "batch n_heads query_pos key_pos"],
) -> Float[Tensor, "batch n_heads query_pos key_pos"]:
    """Causally masked scores turned into weights: for each query, a probability distribution over keys."""
    return apply_causal_mask(scores).softmax(dim=-1)


def attention_output(
    pattern: Float[Tensor, "batch n_heads query_pos key_pos"],
    x: Float[Tensor, "batch pos d_model"],
    W_V: Float[Tensor, "n_heads d_model d_head"],
    b_V: Float[Tensor, "n_heads d_head"],
    W_O: Float[Tensor, "n_heads d_head d_model"],
    b_O: Float[Tensor, "d_model"],
) -> Float[Tensor, "batch pos d_model"]:
    """Mix the values with the pattern in every head, map each head's result to d_model with W_O,
    sum over heads and add b_O once.

    Each head moves a weighted average of the values to each query position (z); W_O maps it back
    to the residual stream, where the heads' outputs add up.
    """
    v = einops.einsum(x, W_V, "batch pos d_model, n_heads d_model d_head -> batch pos n_heads d_head") + b_V
    z = einops.einsum(pattern, v, "batch n_heads query_pos key_pos, batch key_pos n_heads d_head "
                                  "-> batch query_pos n_heads d_head")
    out = einops.einsum(z, W_O, "batch pos n_heads d_head, n_heads d_head d_model -> batch pos d_model")
    return out + b_O


def gelu_new(
    x: Float[Tensor, "..."],
) -> Float[Tensor, "..."]:
    """GPT-2's GELU, elementwise: the tanh approximation 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def mlp(
    x: Float[Tensor, "batch pos d_model"],
    W_in: Float[Tensor, "d_model d_mlp"],
    b_in: Float[Tensor, "d_mlp"],
    W_out: Float[Tensor, "d_mlp d_model"],
    b_out: Float[Tensor, "d_model"],
) -> Float[Tensor, "batch pos d_model"]:
    """Up-project, apply gelu_new to each neuron, down-project: the same function at every position."""
    hidden = gelu_new(x @ W_in + b_in)
    return hidden @ W_out + b_out


def transformer_block(
    resid: Float[Tensor, "batch pos d_model"],
    block: dict[str, Tensor],
    eps: float = 1e-5,
) -> Float[Tensor, "batch pos d_model"]:
    """One pre-LayerNorm GPT-2 block: resid + attention(ln1(resid)), then that plus mlp(ln2(...)).

    Attention and the MLP each read a normalised copy of the residual stream and *add* their output
    back to it. `block` holds the layer's weights under the keys ln1_w, ln1_b, W_Q, b_Q, W_K, b_K,
    W_V, b_V, W_O, b_O, ln2_w, ln2_b, W_in, b_in, W_out, b_out.
    """
    x = layer_norm(resid, block["ln1_w"], block["ln1_b"], eps)
    pattern = attention_pattern(attention_scores(x, block["W_Q"], block["b_Q"], block["W_K"], block["b_K"]))
    resid = resid + attention_output(pattern, x, block["W_V"], block["b_V"], block["W_O"], block["b_O"])
    x = layer_norm(resid, block["ln2_w"], block["ln2_b"], eps)
    return resid + mlp(x, block["W_in"], block["b_in"], block["W_out"], block["b_out"])


def unembed(
    x: Float[Tensor, "batch pos d_model"],
    W_U: Float[Tensor, "d_model d_vocab"],
    b_U: Float[Tensor, "d_vocab"],
) -> Float[Tensor, "batch pos d_vocab"]:
    """Logits: one score per vocabulary entry at every position, for the token that comes next."""
    return x @ W_U + b_U


def forward(
    tokens: Int[Tensor, "batch pos"],
    params: dict,
    eps: float = 1e-5,
) -> Float[Tensor, "batch pos d_vocab"]:
    """The whole model: embed + pos_embed, every block in order, the final LayerNorm, unembed.

    `params` holds W_E, W_pos, blocks (a list of dicts, one per layer, as transformer_block takes),
    ln_final_w, ln_final_b, W_U and b_U.
    """
    resid = embed(tokens, params["W_E"]) + pos_embed(tokens, params["W_pos"])
    for block in params["blocks"]:
        resid = transformer_block(resid, block, eps)
    x = layer_norm(resid, params["ln_final_w"], params["ln_final_b"], eps)
    return unembed(x, params["W_U"], params["b_U"])


def sample_next_token(
    logits: Float[Tensor, "batch d_vocab"],
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> Int[Tensor, "batch"]:
    """One next token per sequence from its final-position logits.

    The argmax if temperature is 0 (greedy); otherwise a sample from softmax(logits / temperature),
    restricted to the `top_k` largest logits when top_k is given. Randomness comes from `generator`.
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:
        kth_largest = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


def generate(
    model: Callable[[Tensor], Tensor],
    tokens: Int[Tensor, "batch pos"],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> Int[Tensor, "batch pos_plus_new"]:
    """Append max_new_tokens tokens, one at a time, each sampled (with sample_next_token and the
    given temperature, top_k and generator) from the model's last-position logits; return the prompt
    followed by the new tokens.

    `model` is anything that maps tokens to logits [batch pos d_vocab].
    """
    for _ in range(max_new_tokens):
        logits = model(tokens)[:, -1]
        next_token = sample_next_token(logits, temperature, top_k, generator)
        tokens = torch.cat([tokens, next_token[:, None].to(tokens.dtype)], dim=1)
    return tokens
