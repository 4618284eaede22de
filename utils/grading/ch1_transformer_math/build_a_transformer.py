"""Graders for 1.1 "Build a transformer".

Every check runs on small random tensors (or a random fake "model" for
`generate`), never on the trained model, so each takes well under a second.
Sizes are chosen so that mix-ups show: n_heads, d_head, d_model and d_mlp all
differ, and sqrt(d_head) differs from d_head and from sqrt(d_model).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from solutions.ch1_transformer_math import build_a_transformer as ref
from utils.grading import Mistake, exercise
from utils.grading.feedback import LearnerError


# -- embeddings --------------------------------------------------------------------------


@exercise(difficulty=1, minutes=5, hints=[
    "Row t of W_E is the embedding of token t.",
    "Indexing a tensor with a tensor of indices picks rows and keeps the index tensor's shape.",
    "`W_E[tokens]` has shape [batch, pos, d_model].",
])
def test_embed(check):
    mistakes = [
        Mistake("columns of W_E", "W_E is [d_vocab, d_model]: a token's embedding is a *row*, W_E[t], "
                "not a column.", lambda tokens, W_E: W_E.T[tokens]),
        Mistake("scaled by sqrt(d_model)", "GPT-2 does not scale its embeddings by sqrt(d_model) (the original "
                "Transformer paper did): just look the rows up.",
                lambda tokens, W_E: W_E[tokens] * math.sqrt(W_E.shape[1])),
        Mistake("flattened", "Keep the batch and position axes: the output is [batch, pos, d_model]. "
                "Indexing with the 2-D `tokens` does that for you.", lambda tokens, W_E: W_E[tokens.flatten()]),
    ]
    check.case("square W_E (d_vocab = d_model)", check.randint(8, 2, 5), check.randn(8, 8), mistakes=mistakes)
    check.case("d_vocab 13, d_model 6", check.randint(13, 3, 4), check.randn(13, 6), mistakes=mistakes)


@exercise(difficulty=1, minutes=5, hints=[
    "The positional embedding depends on *where* a token is (0, 1, ..., pos-1), not on which token it is.",
    "Take the first `pos` rows of W_pos, then give them a batch axis.",
    "`einops.repeat(W_pos[:pos], 'pos d -> batch pos d', batch=batch)`.",
])
def test_pos_embed(check):
    def repeat(rows, batch):
        return rows.unsqueeze(0).expand(batch, -1, -1)

    mistakes = [
        Mistake("indexed by token ids", "Index W_pos by position (0, 1, ..., pos-1), not by the token ids: "
                "the token at position 3 gets W_pos[3] whatever it is.", lambda tokens, W_pos: W_pos[tokens]),
        Mistake("no batch axis", "Return [batch, pos, d_model]: repeat the positions' rows for every sequence "
                "in the batch.", lambda tokens, W_pos: W_pos[:tokens.shape[1]]),
        Mistake("all n_ctx positions", "Keep only the first `pos` rows of W_pos (as many as there are tokens), "
                "not all n_ctx.", lambda tokens, W_pos: repeat(W_pos, tokens.shape[0])),
        Mistake("started at position 1", "Positions count from 0: the first token gets W_pos[0].",
                lambda tokens, W_pos: repeat(W_pos[1:tokens.shape[1] + 1], tokens.shape[0])),
    ]
    check.case("batch 3, pos 5, n_ctx 8", check.randint(8, 3, 5), check.randn(8, 6), mistakes=mistakes)
    check.case("batch 2, pos 9, n_ctx 12", check.randint(12, 2, 9), check.randn(12, 4), mistakes=mistakes)


# -- LayerNorm ----------------------------------------------------------------------------


def _layer_norm_variant(*, unbiased=False, axis=-1, eps_inside=True):
    def variant(x, w, b, eps=1e-5):
        centred = x - x.mean(dim=axis, keepdim=True)
        var = centred.var(dim=axis, keepdim=True, unbiased=unbiased)
        scale = torch.sqrt(var + eps) if eps_inside else torch.sqrt(var) + eps
        return centred / scale * w + b
    return variant


@exercise(difficulty=1, minutes=10, hints=[
    "Work on the last axis (d_model): every position of every sequence is normalised on its own.",
    "Subtract the mean, divide by sqrt(variance + eps), then multiply by w and add b.",
    "Use the biased variance (divide by d_model, not d_model - 1): `x.var(-1, unbiased=False)`.",
])
def test_layer_norm(check):
    x = check.randn(2, 5, 16, scale=3.0) + 1.0
    w, b = check.randn(16), check.randn(16)
    mistakes = [
        Mistake("unbiased variance", "Use the biased variance (divide by d_model, not d_model - 1), "
                "as PyTorch's LayerNorm does: `unbiased=False`.", _layer_norm_variant(unbiased=True)),
        Mistake("wrong axis", "Normalise over d_model, the last axis (dim=-1), not over positions.",
                _layer_norm_variant(axis=-2)),
        Mistake("eps outside sqrt", "Add eps to the variance *inside* the square root.",
                _layer_norm_variant(eps_inside=False)),
        Mistake("forgot scale and shift", "After normalising, multiply by `w` and add `b`.",
                lambda x, w, b, eps=1e-5: _layer_norm_variant()(x, torch.ones_like(w), torch.zeros_like(b), eps)),
    ]
    check.case("random activations", x, w, b, mistakes=mistakes,
               hint="Compare with torch.nn.functional.layer_norm on a small input.")
    check.case("tiny variance (eps matters)", check.randn(1, 3, 16, scale=1e-3), w, b, mistakes=mistakes)


# -- attention -------------------------------------------------------------------------------


def _heads(check, n_heads, d_model, d_head):
    """Random weight [n_heads, d_model, d_head] and bias [n_heads, d_head] of a sensible scale."""
    return check.randn(n_heads, d_model, d_head, scale=d_model ** -0.5), check.randn(n_heads, d_head, scale=0.5)


def _scores_variant(*, scale="sqrt", bias=True, swap=False):
    def variant(x, W_Q, b_Q, W_K, b_K):
        q = torch.einsum("bpm,hmd->bphd", x, W_Q) + (b_Q if bias else 0)
        k = torch.einsum("bpm,hmd->bphd", x, W_K) + (b_K if bias else 0)
        scores = torch.einsum("bqhd,bkhd->bhqk", k, q) if swap else torch.einsum("bqhd,bkhd->bhqk", q, k)
        divisor = {"sqrt": W_Q.shape[-1] ** 0.5, "none": 1.0, "d_head": W_Q.shape[-1],
                   "sqrt d_model": W_Q.shape[1] ** 0.5}[scale]
        return scores / divisor
    return variant


@exercise(difficulty=2, minutes=15, hints=[
    "First compute q and k for every head: x @ W_Q[h] + b_Q[h], i.e. [batch, pos, n_heads, d_head].",
    "The score of query position i and key position j in head h is q[b, i, h] · k[b, j, h]; then divide "
    "by sqrt(d_head).",
    "`einops.einsum(q, k, 'b q h d, b k h d -> b h q k') / d_head ** 0.5`.",
])
def test_attention_scores(check):
    mistakes = [
        Mistake("no scaling", "Divide the dot products by sqrt(d_head): without it the scores grow with d_head "
                "and the softmax saturates.", _scores_variant(scale="none")),
        Mistake("divided by d_head", "Divide by the *square root* of d_head, not by d_head.",
                _scores_variant(scale="d_head")),
        Mistake("divided by sqrt(d_model)", "Scale by sqrt(d_head), the length of the vectors being dotted, "
                "not sqrt(d_model).", _scores_variant(scale="sqrt d_model")),
        Mistake("forgot biases", "Add b_Q to the queries and b_K to the keys before taking dot products.",
                _scores_variant(bias=False)),
        Mistake("queries and keys swapped", "The output is [batch, head, query, key]: row i holds query i "
                "dotted with every key. You have it transposed.", _scores_variant(swap=True)),
    ]
    W_Q, b_Q = _heads(check, 3, 12, 4)
    W_K, b_K = _heads(check, 3, 12, 4)
    check.case("3 heads of 4, d_model 12", check.randn(2, 5, 12), W_Q, b_Q, W_K, b_K, mistakes=mistakes)
    W_Q, b_Q = _heads(check, 2, 16, 9)
    W_K, b_K = _heads(check, 2, 16, 9)
    check.case("2 heads of 9, d_model 16", check.randn(1, 7, 16), W_Q, b_Q, W_K, b_K, mistakes=mistakes)


def _as_minus_inf(t):
    """Any score at or below -1e4 counts as masked: -inf, -1e9 and finfo.min are all fine."""
    if isinstance(t, Tensor) and t.is_floating_point():
        return t.masked_fill(t <= -1e4, float("-inf"))
    return t


def _mask_variant(*, diagonal=1, past=False, fill=float("-inf")):
    def variant(scores):
        ones = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device)
        mask = torch.tril(ones, diagonal=-1) if past else torch.triu(ones, diagonal=diagonal)
        return scores.masked_fill(mask, fill)
    return variant


@exercise(difficulty=1, minutes=10, hints=[
    "Query position i may attend to key positions 0..i (itself included) and to nothing after it.",
    "Build a [query, key] boolean mask that is True strictly above the diagonal (key > query) and fill those "
    "scores with -inf.",
    "`torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)` is True exactly where key > query; "
    "`scores.masked_fill(mask, float('-inf'))` returns a new tensor.",
])
def test_apply_causal_mask(check):
    mistakes = [
        Mistake("masked the diagonal", "Each position may attend to *itself*: mask keys after the query "
                "(triu with diagonal=1), not the diagonal too.", _mask_variant(diagonal=0)),
        Mistake("masked the past", "Mask the *future*, keys after the query (above the diagonal), "
                "not the past.", _mask_variant(past=True)),
        Mistake("filled with zero", "A score of 0 still gets weight after the softmax: fill masked scores with "
                "-inf (or a very negative number such as -1e9).", _mask_variant(fill=0.0)),
    ]
    for name, scores in [("batch 2, 3 heads, 5 positions", check.randn(2, 3, 5, 5, scale=3.0)),
                         ("batch 1, 2 heads, 8 positions", check.randn(1, 2, 8, 8, scale=3.0))]:
        got = _as_minus_inf(check.run(scores, case=name))
        check.compare(got, ref.apply_causal_mask(scores.clone()), case=name, inputs=((scores,), {}),
                      mistakes=[Mistake(m.name, m.hint, (lambda f: lambda s: _as_minus_inf(f(s)))(m.output))
                                for m in mistakes],
                      hint="Keep the scores on and below the diagonal unchanged; set those above it to -inf.")


def _pattern_variant(*, dim=-1, mask=True, mask_after=False):
    def variant(scores):
        future = torch.triu(torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device), diagonal=1)
        if mask_after:
            return scores.softmax(dim=dim).masked_fill(future, 0.0)
        if mask:
            scores = scores.masked_fill(future, float("-inf"))
        return scores.softmax(dim=dim)
    return variant


@exercise(difficulty=1, minutes=5, hints=[
    "Mask first (apply_causal_mask), then softmax.",
    "The softmax runs over keys: each query's weights over the positions it reads must sum to 1.",
    "`apply_causal_mask(scores).softmax(dim=-1)`.",
])
def test_attention_pattern(check):
    mistakes = [
        Mistake("softmax over queries", "Take the softmax over keys (the last axis, dim=-1): each *query's* "
                "weights sum to 1.", _pattern_variant(dim=-2)),
        Mistake("softmax over heads", "Take the softmax over keys (dim=-1), not over heads.",
                _pattern_variant(dim=1)),
        Mistake("forgot the mask", "Apply the causal mask before the softmax: a position must not read the "
                "future.", _pattern_variant(mask=False)),
        Mistake("masked after the softmax", "Mask *before* the softmax: zeroing probabilities afterwards leaves "
                "rows that no longer sum to 1.", _pattern_variant(mask_after=True)),
    ]
    check.case("batch 2, 3 heads, 6 positions", check.randn(2, 3, 6, 6, scale=2.0), mistakes=mistakes)
    check.case("batch 1, 4 heads, 4 positions", check.randn(1, 4, 4, 4, scale=2.0), mistakes=mistakes)


def _output_variant(*, transpose=False, b_V_on=True, b_O_times=1.0, mean=False):
    def variant(pattern, x, W_V, b_V, W_O, b_O):
        v = torch.einsum("bpm,hmd->bphd", x, W_V) + (b_V if b_V_on else 0)
        if transpose:
            pattern = pattern.transpose(-1, -2)
        z = torch.einsum("bhqk,bkhd->bqhd", pattern, v)
        per_head = torch.einsum("bqhd,hdm->bqhm", z, W_O)
        heads = per_head.mean(2) if mean else per_head.sum(2)
        scale = W_O.shape[0] if b_O_times == "per head" else b_O_times
        return heads + scale * b_O
    return variant


@exercise(difficulty=2, minutes=15, hints=[
    "Three steps: values v = x @ W_V + b_V per head; z = the pattern-weighted sum of values over key "
    "positions; then map z back with W_O and sum over heads.",
    "z[b, q, h] = sum over k of pattern[b, h, q, k] * v[b, k, h]: "
    "`einops.einsum(pattern, v, 'b h q k, b k h d -> b q h d')`.",
    "`einops.einsum(z, W_O, 'b q h d, h d m -> b q m') + b_O`: the sum over h adds the heads up; "
    "b_O is added once.",
])
def test_attention_output(check):
    mistakes = [
        Mistake("pattern transposed", "pattern[b, h, q, k] is how much query q reads key k: sum over the *last* "
                "axis (keys), keeping the query axis.", _output_variant(transpose=True)),
        Mistake("forgot b_V", "Add b_V to the values before mixing them.", _output_variant(b_V_on=False)),
        Mistake("forgot b_O", "Add the output bias b_O at the end.", _output_variant(b_O_times=0.0)),
        Mistake("b_O added per head", "b_O belongs to the layer, not to each head: add it once, after summing "
                "the heads.", _output_variant(b_O_times="per head")),
        Mistake("averaged the heads", "Each head writes its own output into the residual stream: *sum* over "
                "heads, don't average.", _output_variant(mean=True)),
    ]
    for name, (batch, pos, d_model, n_heads, d_head) in [("3 heads of 4, d_model 12", (2, 5, 12, 3, 4)),
                                                         ("2 heads of 5, d_model 8", (1, 6, 8, 2, 5))]:
        pattern = ref.attention_pattern(check.randn(batch, n_heads, pos, pos, scale=2.0))
        W_V, b_V = _heads(check, n_heads, d_model, d_head)
        W_O = check.randn(n_heads, d_head, d_model, scale=d_head ** -0.5)
        check.case(name, pattern, check.randn(batch, pos, d_model), W_V, b_V, W_O, check.randn(d_model),
                   mistakes=mistakes)


# -- MLP ------------------------------------------------------------------------------------


def _gelu_variant(*, const=math.sqrt(2 / math.pi), power=3, half=0.5):
    def variant(x):
        return half * x * (1 + torch.tanh(const * (x + 0.044715 * x ** power)))
    return variant


@exercise(difficulty=1, minutes=5, atol=1e-5, rtol=1e-5, hints=[
    "GPT-2 uses the tanh approximation of GELU, not the exact (erf) one: they differ by up to about 5e-4.",
    "0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3))).",
    "`torch.nn.functional.gelu(x, approximate='tanh')` is the same function.",
])
def test_gelu_new(check):
    mistakes = [
        Mistake("exact gelu", "GPT-2's gelu_new is the *tanh approximation*; F.gelu(x) is the exact erf "
                "version. Write out the formula, or use approximate='tanh'.", F.gelu),
        Mistake("sqrt(2 pi)", "The constant is sqrt(2 / pi), about 0.798, not sqrt(2 pi).",
                _gelu_variant(const=math.sqrt(2 * math.pi))),
        Mistake("x squared", "The cubic term is 0.044715 * x**3.", _gelu_variant(power=2)),
        Mistake("relu", "GELU is smooth and slightly negative for negative inputs; ReLU is not the same.",
                F.relu),
        Mistake("forgot the 0.5", "Multiply by 0.5: for large x, gelu_new(x) is about x, not 2x.",
                _gelu_variant(half=1.0)),
    ]
    check.case("values in [-8, 8]", torch.linspace(-8, 8, 161, device=check.device), mistakes=mistakes)
    check.case("random activations", check.randn(2, 3, 7, scale=2.0), mistakes=mistakes)


def _mlp_variant(*, act="gelu_new", b_in_on=True):
    acts = {"gelu_new": ref.gelu_new, "gelu": F.gelu, "relu": F.relu, "none": lambda h: h}

    def variant(x, W_in, b_in, W_out, b_out):
        return acts[act](x @ W_in + (b_in if b_in_on else 0)) @ W_out + b_out
    return variant


@exercise(difficulty=1, minutes=10, atol=1e-6, rtol=1e-5, hints=[
    "Two linear maps with gelu_new between them, applied at every position.",
    "hidden = gelu_new(x @ W_in + b_in), then hidden @ W_out + b_out.",
    "W_in is [d_model, d_mlp], so `x @ W_in` needs no transpose (unlike nn.Linear's weight).",
])
def test_mlp(check):
    mistakes = [
        Mistake("exact gelu", "Use gelu_new (the tanh approximation), not F.gelu: they differ by up to 5e-4, "
                "enough to notice.", _mlp_variant(act="gelu")),
        Mistake("relu", "GPT-2's MLP uses gelu_new, not ReLU.", _mlp_variant(act="relu")),
        Mistake("no activation", "Apply gelu_new to the hidden layer: without a non-linearity the two linear "
                "maps collapse into one.", _mlp_variant(act="none")),
        Mistake("forgot b_in", "Add b_in before the activation.", _mlp_variant(b_in_on=False)),
    ]
    for name, (batch, pos, d_model, d_mlp) in [("d_model 8, d_mlp 20", (2, 4, 8, 20)),
                                                ("d_model 6, d_mlp 24", (1, 5, 6, 24))]:
        check.case(name, check.randn(batch, pos, d_model, scale=2.0), check.randn(d_model, d_mlp),
                   check.randn(d_mlp, scale=0.5), check.randn(d_mlp, d_model, scale=d_mlp ** -0.5),
                   check.randn(d_model), mistakes=mistakes)


# -- blocks and the full model -------------------------------------------------------------


def random_block(check, d_model=12, n_heads=3, d_head=4, d_mlp=20) -> dict[str, Tensor]:
    """A dict of random weights for one block, in the layout transformer_block takes."""
    block = {"ln1_w": 1 + check.randn(d_model, scale=0.2), "ln1_b": check.randn(d_model, scale=0.2)}
    for name in ("Q", "K", "V"):
        block[f"W_{name}"], block[f"b_{name}"] = _heads(check, n_heads, d_model, d_head)
    block["W_O"] = check.randn(n_heads, d_head, d_model, scale=(n_heads * d_head) ** -0.5)
    block["b_O"] = check.randn(d_model, scale=0.3)
    block["ln2_w"], block["ln2_b"] = 1 + check.randn(d_model, scale=0.2), check.randn(d_model, scale=0.2)
    block["W_in"], block["b_in"] = check.randn(d_model, d_mlp, scale=d_model ** -0.5), check.randn(d_mlp, scale=0.3)
    block["W_out"], block["b_out"] = check.randn(d_mlp, d_model, scale=d_mlp ** -0.5), check.randn(d_model, scale=0.3)
    return block


def _block_parts(block, eps):
    def ln(x, which):
        return ref.layer_norm(x, block[f"{which}_w"], block[f"{which}_b"], eps)

    def attn(x, masked=True):
        scores = ref.attention_scores(x, block["W_Q"], block["b_Q"], block["W_K"], block["b_K"])
        pattern = ref.attention_pattern(scores) if masked else scores.softmax(-1)
        return ref.attention_output(pattern, x, block["W_V"], block["b_V"], block["W_O"], block["b_O"])

    def mlp(x):
        return ref.mlp(x, block["W_in"], block["b_in"], block["W_out"], block["b_out"])
    return ln, attn, mlp


def _block_variant(kind):
    def variant(resid, block, eps=1e-5):
        ln, attn, mlp = _block_parts(block, eps)
        if kind == "no residual":
            return mlp(ln(attn(ln(resid, "ln1")), "ln2"))
        if kind == "post-LN":
            resid = ln(resid + attn(resid), "ln1")
            return ln(resid + mlp(resid), "ln2")
        if kind == "normalised stream":
            x = ln(resid, "ln1")
            resid = x + attn(x)
            x = ln(resid, "ln2")
            return x + mlp(x)
        if kind == "parallel":
            return resid + attn(ln(resid, "ln1")) + mlp(ln(resid, "ln2"))
        if kind == "swapped LNs":
            resid = resid + attn(ln(resid, "ln2"))
            return resid + mlp(ln(resid, "ln1"))
        if kind == "no mask":
            resid = resid + attn(ln(resid, "ln1"), masked=False)
            return resid + mlp(ln(resid, "ln2"))
        raise ValueError(kind)
    return variant


@exercise(difficulty=2, minutes=15, atol=1e-5, rtol=1e-4, hints=[
    "Pre-LN: each sublayer reads a LayerNorm'd *copy* of the residual stream and adds its output back: "
    "resid = resid + attention(ln1(resid)); resid = resid + mlp(ln2(resid)).",
    "Attention is attention_scores → attention_pattern (which masks) → attention_output, all on the same "
    "normalised x.",
    "The MLP reads ln2 of the residual stream *after* attention has been added (resid_mid).",
])
def test_transformer_block(check):
    mistakes = [
        Mistake("forgot the residual connection", "Add each sublayer's output to the residual stream "
                "(resid = resid + ...) rather than replacing the stream with it.", _block_variant("no residual")),
        Mistake("post-LN", "GPT-2 is pre-LN: normalise the sublayer's *input* (resid + attn(ln1(resid))), "
                "don't normalise the sum afterwards.", _block_variant("post-LN")),
        Mistake("normalised the residual stream", "LayerNorm a copy for the sublayer to read, and add the output "
                "to the un-normalised residual stream.", _block_variant("normalised stream")),
        Mistake("parallel attention and MLP", "The MLP reads the stream *after* attention's output has been "
                "added: compute ln2 of resid_mid, not of the block's input.", _block_variant("parallel")),
        Mistake("swapped ln1 and ln2", "ln1 goes before attention and ln2 before the MLP.",
                _block_variant("swapped LNs")),
        Mistake("no causal mask", "Use attention_pattern (mask, then softmax), not a bare softmax of the scores.",
                _block_variant("no mask")),
    ]
    check.case("3 heads of 4, d_model 12", check.randn(2, 5, 12), random_block(check), mistakes=mistakes)
    check.case("2 heads of 5, d_model 8", check.randn(1, 6, 8, scale=3.0),
               random_block(check, d_model=8, n_heads=2, d_head=5, d_mlp=16), mistakes=mistakes)


def _unembed_variant(*, bias=True, transpose=False, normalise=None):
    def variant(x, W_U, b_U):
        logits = x @ (W_U.T if transpose else W_U) + (b_U if bias else 0)
        if normalise == "softmax":
            return logits.softmax(-1)
        return logits.log_softmax(-1) if normalise == "log_softmax" else logits
    return variant


@exercise(difficulty=1, minutes=5, hints=[
    "One logit per vocabulary entry: a linear map from d_model to d_vocab.",
    "W_U is [d_model, d_vocab], so `x @ W_U` needs no transpose.",
    "`x @ W_U + b_U`. Return logits, not probabilities.",
])
def test_unembed(check):
    mistakes = [
        Mistake("forgot b_U", "Add the unembedding bias b_U.", _unembed_variant(bias=False)),
        Mistake("transposed W_U", "W_U is [d_model, d_vocab]: use `x @ W_U`, no transpose.",
                _unembed_variant(transpose=True)),
        Mistake("softmax", "Return the raw logits; the softmax comes later (in the loss, or when sampling).",
                _unembed_variant(normalise="softmax")),
        Mistake("log_softmax", "Return the raw logits, not log-probabilities.",
                _unembed_variant(normalise="log_softmax")),
    ]
    check.case("square W_U (d_model = d_vocab)", check.randn(2, 4, 6), check.randn(6, 6), check.randn(6),
               mistakes=mistakes)
    check.case("d_model 8, d_vocab 11", check.randn(3, 5, 8), check.randn(8, 11), check.randn(11),
               mistakes=mistakes)


def random_params(check, n_layers=2, d_vocab=11, n_ctx=10, d_model=12, n_heads=3, d_head=4, d_mlp=20) -> dict:
    """Random weights for a whole model, in the layout forward takes."""
    return {"W_E": check.randn(d_vocab, d_model), "W_pos": check.randn(n_ctx, d_model, scale=0.5),
            "blocks": [random_block(check, d_model, n_heads, d_head, d_mlp) for _ in range(n_layers)],
            "ln_final_w": 1 + check.randn(d_model, scale=0.2), "ln_final_b": check.randn(d_model, scale=0.2),
            "W_U": check.randn(d_model, d_vocab, scale=d_model ** -0.5), "b_U": check.randn(d_vocab, scale=0.3)}


def _forward_variant(kind):
    def variant(tokens, params, eps=1e-5):
        x0 = ref.embed(tokens, params["W_E"])
        if kind != "no pos":
            x0 = x0 + ref.pos_embed(tokens, params["W_pos"])
        resid = x0
        blocks = params["blocks"][::-1] if kind == "reversed" else params["blocks"]
        for block in blocks:
            resid = ref.transformer_block(x0 if kind == "not chained" else resid, block, eps)
        if kind != "no ln_final":
            resid = ref.layer_norm(resid, params["ln_final_w"], params["ln_final_b"], eps)
        logits = ref.unembed(resid, params["W_U"], params["b_U"])
        return logits.softmax(-1) if kind == "softmax" else logits
    return variant


@exercise(difficulty=2, minutes=10, atol=1e-5, rtol=1e-4, hints=[
    "The residual stream starts as embed(tokens) + pos_embed(tokens).",
    "Pass it through every block in order, each block's output feeding the next.",
    "Finish with layer_norm(resid, ln_final_w, ln_final_b) and unembed.",
])
def test_forward(check):
    mistakes = [
        Mistake("no final LayerNorm", "Apply the final LayerNorm (ln_final_w, ln_final_b) before unembedding.",
                _forward_variant("no ln_final")),
        Mistake("no positional embedding", "Add pos_embed(tokens, W_pos) to the token embeddings: without it "
                "the model can't tell positions apart.", _forward_variant("no pos")),
        Mistake("blocks not chained", "Each block reads the previous block's output: "
                "`resid = transformer_block(resid, block)`.", _forward_variant("not chained")),
        Mistake("blocks reversed", "Run the blocks in order, layer 0 first.", _forward_variant("reversed")),
        Mistake("returned probabilities", "Return the logits; don't apply a softmax.", _forward_variant("softmax")),
    ]
    check.case("2 layers", check.randint(11, 2, 6), random_params(check), mistakes=mistakes)
    check.case("3 layers, one long sequence", check.randint(11, 1, 10), random_params(check, n_layers=3),
               mistakes=mistakes)


# -- sampling ----------------------------------------------------------------------------------

_N_SAMPLES = 20_000
_FREQ_TOL = 0.02  # about six standard deviations of a frequency estimated from 10,000 draws


def _frequencies(tokens: Tensor, d_vocab: int) -> Tensor:
    return torch.bincount(tokens.detach().long().cpu().flatten(), minlength=d_vocab).double() / tokens.numel()


def _close(freq: Tensor, probs: Tensor) -> bool:
    return freq.shape == probs.shape and float((freq - probs.double().cpu()).abs().max()) < _FREQ_TOL


def _normalised(p: Tensor) -> Tensor:
    return p / p.sum()


def _sampling_logits(check, d_vocab=8):
    """Two fixed rows with clearly different distributions, each repeated for half of the batch."""
    levels = torch.tensor([2.0, 1.6, 1.2, 0.9, 0.4, 0.0, -0.6, -1.2])[:d_vocab]
    rows = [levels[torch.randperm(d_vocab, generator=check.rng)] for _ in range(2)]
    half = _N_SAMPLES // 2
    return torch.cat([rows[0].expand(half, -1), rows[1].expand(half, -1)]).contiguous().to(check.device), rows


def _generator(check, seed):
    return check.generator(seed)


@exercise(difficulty=2, minutes=15, timeout=20.0, hints=[
    "Temperature 0 means greedy: return logits.argmax(-1) before dividing by anything.",
    "Otherwise divide the logits by the temperature, softmax over the vocabulary and draw one token per row "
    "with `torch.multinomial(probs, 1, generator=generator)`.",
    "For top-k, set every logit below the k-th largest (`logits.topk(k).values[:, -1:]`) to -inf before "
    "the softmax.",
])
def test_sample_next_token(check):
    # greedy: deterministic, so compared with the reference like any other function
    greedy = [Mistake("argmin", "Greedy decoding picks the *most* likely token: argmax.",
                      lambda logits, temperature=1.0, top_k=None, generator=None: logits.argmin(-1)),
              Mistake("argmax over the batch", "Take the argmax over the vocabulary (dim=-1), one token per row.",
                      lambda logits, temperature=1.0, top_k=None, generator=None: logits.argmax(0))]
    for name, logits, top_k in [("greedy, temperature 0", check.randn(4, 10, scale=2.0), None),
                                ("greedy ignores top_k", check.randn(3, 50, scale=2.0), 5)]:
        try:
            check.case(name, logits, 0.0, top_k, mistakes=greedy)
        except LearnerError as error:
            error.hint = error.hint or ("With temperature 0, return logits.argmax(-1) straight away: "
                                        "dividing by 0 gives inf and NaN probabilities.")
            raise

    logits, rows = _sampling_logits(check)
    d_vocab, half = logits.shape[-1], _N_SAMPLES // 2

    def sample(case, temperature, top_k, seed):
        got = check.run(logits, temperature, top_k, _generator(check, seed), case=case)
        check.expect(isinstance(got, Tensor) and tuple(got.shape) == (_N_SAMPLES,)
                     and not got.is_floating_point(), case=case,
                     message=f"expected an integer tensor of shape ({_N_SAMPLES},), one token per row, got "
                             + (f"{got.dtype} of shape {tuple(got.shape)}" if isinstance(got, Tensor)
                                else type(got).__name__),
                     hint="`torch.multinomial(probs, 1, generator=generator)` is [batch, 1]: squeeze the last axis.")
        return _frequencies(got[:half], d_vocab), _frequencies(got[half:], d_vocab), got

    # temperature: the frequencies must match softmax(logits / T), row by row
    case, T = "temperature 0.5, 20,000 draws", 0.5
    first, second, got = sample(case, T, None, seed=1)
    if not _close(first, (rows[0] / T).softmax(-1)):
        diagnoses = [
            ("ignored the temperature", rows[0].softmax(-1), "Divide the logits by the temperature before the "
             "softmax."),
            ("multiplied by the temperature", (rows[0] * T).softmax(-1), "*Divide* the logits by the "
             "temperature: a low temperature should sharpen the distribution."),
            ("softmax over the batch", _normalised((logits[[0, -1]].cpu() / T).softmax(0)[0]), "Take the softmax "
             "over the vocabulary (dim=-1), not over the batch."),
            ("always the argmax", F.one_hot(rows[0].argmax(), d_vocab).double(), "With temperature > 0, *sample* "
             "from the distribution (torch.multinomial) instead of taking the argmax."),
        ]
        mistake = next((d for d in diagnoses if _close(first, d[1])), None)
        check.expect(False, case=case, mistake=mistake[0] if mistake else None,
                     message="the frequencies of your samples don't match softmax(logits / temperature): "
                             f"expected {[round(p, 3) for p in (rows[0] / T).softmax(-1).tolist()]}, got "
                             f"{[round(p, 3) for p in first.tolist()]}",
                     hint=mistake[2] if mistake else "Divide by the temperature, softmax over the vocabulary, "
                                                     "then torch.multinomial.")
    check.expect(_close(second, (rows[1] / T).softmax(-1)), case=case,
                 message="the first half of the batch is sampled correctly but not the second: every row must be "
                         "sampled from its own logits",
                 hint="Sample all rows at once: torch.multinomial(probs, 1) draws one token per row of probs.")

    # the generator: the same seed must give the same tokens
    again = check.run(logits, T, None, _generator(check, 1), case="same seed, same samples")
    check.expect(isinstance(again, Tensor) and torch.equal(again, got), case="same seed, same samples",
                 mistake="ignored the generator",
                 message="two calls with generators seeded alike gave different samples",
                 hint="Pass the generator to the random function: torch.multinomial(probs, 1, generator=generator).")

    # top-k: nothing outside the k largest logits, and the kept ones in proportion
    case, k = "top_k 3, temperature 1", 3
    first, second, _ = sample(case, 1.0, k, seed=2)
    allowed = torch.zeros(d_vocab, dtype=torch.bool)
    allowed[rows[0].topk(k).indices] = True
    outside = float(first[~allowed].sum())
    check.expect(outside == 0.0, case=case, mistake="sampled outside the top k",
                 message=f"{outside:.1%} of your samples are tokens outside the top {k}",
                 hint="Set every logit below the k-th largest to -inf (not 0) before the softmax; "
                      "`logits.topk(k)` gives the k *largest*.")
    expected = rows[0].masked_fill(~allowed, float("-inf")).softmax(-1)
    if not _close(first, expected):
        uniform = allowed.double() / k
        mistake = "uniform over the top k" if _close(first, uniform) else None
        check.expect(False, case=case, mistake=mistake,
                     message=f"the top-{k} tokens are drawn in the wrong proportions: expected "
                             f"{[round(p, 3) for p in expected.tolist()]}, got {[round(p, 3) for p in first.tolist()]}",
                     hint="Keep the top-k tokens' relative probabilities: softmax over the kept logits "
                          "rather than picking one of them uniformly." if mistake else
                          "Mask the logits outside the top k with -inf, then softmax and sample.")
    check.expect(int((second > 0).sum()) <= k, case=case,
                 message="top-k is applied to the first row's logits only: every row keeps its own top k",
                 hint="Compute the k-th largest logit per row: `logits.topk(k, dim=-1).values[:, -1:]`.")


def _fake_model(check, d_vocab=9, n_ctx=16):
    """A stand-in for a language model whose logits depend on each token and on its position."""
    table, by_position = check.randn(d_vocab, d_vocab, scale=3.0), check.randn(n_ctx, d_vocab, scale=3.0)

    def model(tokens):
        return table[tokens] + by_position[:tokens.shape[1]]
    return model


def _generate_variant(kind):
    def variant(model, tokens, max_new_tokens, temperature=0.0, top_k=None, generator=None):
        prompt, new = tokens, []
        steps = max_new_tokens - 1 if kind == "one short" else max_new_tokens
        for _ in range(steps):
            if kind == "prompt every step":
                logits = model(prompt)[:, -1]
            elif kind == "first position":
                logits = model(tokens)[:, 0]
            elif kind == "last token only":
                logits = model(tokens[:, -1:])[:, -1]
            else:
                logits = model(tokens)[:, -1]
            nxt = ref.sample_next_token(logits, temperature, top_k, generator)
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            new.append(nxt)
        if kind == "prompt every step":
            return torch.cat([prompt, torch.stack(new, 1)], dim=1)
        return tokens[:, prompt.shape[1]:] if kind == "new only" else tokens
    return variant


@exercise(difficulty=1, minutes=10, timeout=20.0, hints=[
    "A loop of max_new_tokens steps: run the model on everything so far, sample from the last position, "
    "append.",
    "`logits = model(tokens)[:, -1]`; `next_token = sample_next_token(logits, temperature, top_k, generator)`.",
    "`tokens = torch.cat([tokens, next_token[:, None]], dim=1)`, and return the prompt with the new tokens.",
])
def test_generate(check):
    mistakes = [
        Mistake("first position", "Predict from the *last* position's logits, model(tokens)[:, -1]: it is the "
                "one that has read the whole sequence.", _generate_variant("first position")),
        Mistake("returned only the new tokens", "Return the prompt followed by the new tokens.",
                _generate_variant("new only")),
        Mistake("one token short", "Generate exactly max_new_tokens tokens.", _generate_variant("one short")),
        Mistake("prompt every step", "Feed the model the sequence *including* the tokens generated so far, "
                "so each step continues the last.", _generate_variant("prompt every step")),
        Mistake("last token only", "Run the model on the whole sequence, not just the last token: it needs the "
                "context and the positions.", _generate_variant("last token only")),
    ]
    model = _fake_model(check)
    check.case("greedy, batch 2", model, check.randint(9, 2, 3), 6, mistakes=mistakes)
    check.case("greedy, one new token", model, check.randint(9, 1, 5), 1, mistakes=mistakes)

    case = "temperature 1 with a generator"
    tokens = check.randint(9, 3, 4)
    got = check.run(model, tokens, 7, 1.0, None, _generator(check, 3), case=case)
    check.expect(isinstance(got, Tensor) and tuple(got.shape) == (3, 11) and torch.equal(got[:, :4], tokens),
                 case=case, message="with sampling, the output should be the prompt followed by 7 new tokens, "
                                    f"shape (3, 11); got {tuple(got.shape) if isinstance(got, Tensor) else got}",
                 hint="Pass temperature, top_k and generator on to sample_next_token.")
    again = check.run(model, tokens, 7, 1.0, None, _generator(check, 3), case=case)
    check.expect(torch.equal(got, again), case=case, message="the same seed gave different continuations",
                 hint="Pass `generator` on to sample_next_token.")

    # the settings must reach the sampler: the first new token's frequencies over many copies of one
    # prompt follow softmax(logits / T), restricted to the top k when top_k is given
    prompt = check.randint(9, 1, 3)
    last = model(prompt)[0, -1].double().cpu()
    for case, T, top_k in [("temperature 1, 10,000 copies of one prompt", 1.0, None),
                           ("temperature 1, top_k 2, 10,000 copies of one prompt", 1.0, 2)]:
        got = check.run(model, prompt.expand(10_000, -1).clone(), 1, T, top_k, _generator(check, 4), case=case)
        freq = _frequencies(got[:, -1], last.numel())
        kept = last.masked_fill(last < last.topk(top_k).values[-1], float("-inf")) if top_k else last
        if _close(freq, (kept / T).softmax(-1)):
            continue
        if _close(freq, F.one_hot(last.argmax(), last.numel()).double()):
            check.expect(False, case=case, mistake="always greedy",
                         message="every continuation took the most likely token: nothing was sampled",
                         hint="Pass temperature (and top_k, generator) on to sample_next_token; only temperature "
                              "0 means greedy.")
        ignored = top_k is not None and _close(freq, (last / T).softmax(-1))
        check.expect(False, case=case, mistake="ignored top_k" if ignored else None,
                     message=f"the first new token's frequencies {[round(p, 3) for p in freq.tolist()]} don't "
                             f"match the distribution {[round(p, 3) for p in (kept / T).softmax(-1).tolist()]}",
                     hint="Pass top_k on to sample_next_token: only the k likeliest tokens may be drawn."
                     if ignored else "Pass temperature, top_k and generator on to sample_next_token unchanged.")
