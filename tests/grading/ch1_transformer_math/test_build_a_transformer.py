"""Learner variants for the 1.1 "Build a transformer" graders."""

import math

import einops
import torch
import torch.nn.functional as F

from solutions.ch1_transformer_math import build_a_transformer as ref
from tests.grading.variants import Right, Wrong, test_variant_is_graded_as_expected  # noqa: F401 (runs VARIANTS)


# -- layer_norm ------------------------------------------------------------------------------

def _ln_unbiased(x, w, b, eps=1e-5):
    return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + eps) * w + b


def _ln_over_positions(x, w, b, eps=1e-5):
    mean, var = x.mean(1, keepdim=True), x.var(1, keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def _ln_eps_outside(x, w, b, eps=1e-5):
    centred = x - x.mean(-1, keepdim=True)
    return centred / (centred.pow(2).mean(-1, keepdim=True).sqrt() + eps) * w + b


def _ln_in_place(x, w, b, eps=1e-5):
    x -= x.mean(-1, keepdim=True)
    x /= torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return x * w + b


def _ln_no_affine(x, w, b, eps=1e-5):
    centred = x - x.mean(-1, keepdim=True)
    return centred / torch.sqrt(centred.pow(2).mean(-1, keepdim=True) + eps)


# -- embeddings -----------------------------------------------------------------------------

def _embed_columns(tokens, W_E):
    return einops.rearrange(W_E[:, tokens], "d_model batch pos -> batch pos d_model")


def _embed_one_hot(tokens, W_E):
    return F.one_hot(tokens, num_classes=W_E.shape[0]).float() @ W_E


def _embed_loop(tokens, W_E):
    out = torch.zeros(*tokens.shape, W_E.shape[1])
    for b in range(tokens.shape[0]):
        for p in range(tokens.shape[1]):
            out[b, p] = W_E[tokens[b, p]]
    return out


def _pos_no_batch(tokens, W_pos):
    return W_pos[:tokens.shape[1]]


def _pos_from_one(tokens, W_pos):
    positions = torch.arange(1, tokens.shape[1] + 1)
    return W_pos[positions].unsqueeze(0).repeat(tokens.shape[0], 1, 1)


def _pos_whole_table(tokens, W_pos):
    return einops.repeat(W_pos, "n_ctx d_model -> batch n_ctx d_model", batch=tokens.shape[0])


def _pos_arange(tokens, W_pos):
    positions = torch.arange(tokens.shape[1]).expand(tokens.shape[0], -1)
    return W_pos[positions]


# -- attention -----------------------------------------------------------------------------

def _scores(x, W_Q, b_Q, W_K, b_K, *, divisor=None, bias=True, swap=False):
    q = torch.einsum("bpm,hmd->bhpd", x, W_Q) + (b_Q[:, None] if bias else 0)
    k = torch.einsum("bpm,hmd->bhpd", x, W_K) + (b_K[:, None] if bias else 0)
    scores = k @ q.transpose(-1, -2) if swap else q @ k.transpose(-1, -2)
    return scores / (W_Q.shape[-1] ** 0.5 if divisor is None else divisor(W_Q))


def _scores_loop(x, W_Q, b_Q, W_K, b_K):
    heads = []
    for h in range(W_Q.shape[0]):
        q = x @ W_Q[h] + b_Q[h]
        k = x @ W_K[h] + b_K[h]
        heads.append(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]))
    return torch.stack(heads, dim=1)


def _mask(scores, *, diagonal=1, past=False, fill=float("-inf")):
    n = scores.shape[-1]
    mask = torch.tril(torch.ones(n, n), diagonal=-1).bool() if past else torch.triu(torch.ones(n, n), diagonal).bool()
    return scores.masked_fill(mask, fill)


def _mask_in_place(scores):
    n = scores.shape[-1]
    scores.masked_fill_(torch.triu(torch.ones(n, n, dtype=torch.bool), 1), float("-inf"))
    return scores


def _mask_where(scores):
    keep = torch.ones_like(scores).tril().bool()
    return torch.where(keep, scores, torch.tensor(-1e9))


def _mask_loop(scores):
    scores = scores.clone()
    for i in range(scores.shape[-2]):
        scores[..., i, i + 1:] = -1e5
    return scores


def _mask_add(scores):
    n = scores.shape[-1]
    return scores + torch.full((n, n), float("-inf")).triu(1)


def _pattern(scores, *, dim=-1, mask=True, mask_after=False):
    if mask_after:
        future = torch.triu(torch.ones_like(scores, dtype=torch.bool), 1)
        return scores.softmax(dim).masked_fill(future, 0)
    return (ref.apply_causal_mask(scores) if mask else scores).softmax(dim=dim)


def _pattern_manual(scores):
    keep = torch.ones_like(scores).tril()
    e = torch.exp(scores - scores.max(dim=-1, keepdim=True).values) * keep
    return e / e.sum(-1, keepdim=True)


def _out(pattern, x, W_V, b_V, W_O, b_O, *, transpose=False, b_V_on=True, b_O_mode="once", mean=False):
    v = einops.einsum(x, W_V, "b p m, h m d -> b h p d") + (b_V[:, None] if b_V_on else 0)
    z = (pattern.transpose(-1, -2) if transpose else pattern) @ v
    per_head = einops.einsum(z, W_O, "b h p d, h d m -> b h p m")
    if b_O_mode == "per head":
        per_head = per_head + b_O
    total = per_head.mean(1) if mean else per_head.sum(1)
    return total + b_O if b_O_mode == "once" else total


def _out_loop(pattern, x, W_V, b_V, W_O, b_O):
    out = b_O.expand(x.shape).clone()
    for h in range(W_V.shape[0]):
        v = x @ W_V[h] + b_V[h]
        out = out + (pattern[:, h] @ v) @ W_O[h]
    return out


def _out_flat(pattern, x, W_V, b_V, W_O, b_O):
    v = einops.einsum(x, W_V, "b k m, h m d -> b k h d") + b_V
    z = einops.einsum(pattern, v, "b h q k, b k h d -> b q h d")
    z_flat = einops.rearrange(z, "b q h d -> b q (h d)")
    return z_flat @ einops.rearrange(W_O, "h d m -> (h d) m") + b_O


# -- MLP -----------------------------------------------------------------------------------

def _gelu(x, *, const=math.sqrt(2 / math.pi), power=3, half=0.5):
    return half * x * (1 + torch.tanh(const * (x + 0.044715 * x ** power)))


def _gelu_sigmoid(x):
    return x * torch.sigmoid(2 * math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))


def _mlp(x, W_in, b_in, W_out, b_out, *, act=ref.gelu_new, b_in_on=True):
    return act(x @ W_in + (b_in if b_in_on else 0)) @ W_out + b_out


def _mlp_linear(x, W_in, b_in, W_out, b_out):
    hidden = F.gelu(F.linear(x, W_in.T, b_in), approximate="tanh")
    return F.linear(hidden, W_out.T, b_out)


def _mlp_einsum(x, W_in, b_in, W_out, b_out):
    pre = einops.einsum(x, W_in, "b p m, m n -> b p n") + b_in
    return einops.einsum(ref.gelu_new(pre), W_out, "b p n, n m -> b p m") + b_out


# -- block ---------------------------------------------------------------------------------

def _attn(x, block, masked=True):
    scores = ref.attention_scores(x, block["W_Q"], block["b_Q"], block["W_K"], block["b_K"])
    pattern = ref.attention_pattern(scores) if masked else scores.softmax(dim=-1)
    return ref.attention_output(pattern, x, block["W_V"], block["b_V"], block["W_O"], block["b_O"])


def _ffn(x, block):
    return ref.mlp(x, block["W_in"], block["b_in"], block["W_out"], block["b_out"])


def _ln(x, block, which, eps=1e-5):
    return ref.layer_norm(x, block[f"{which}_w"], block[f"{which}_b"], eps)


def _block_no_residual(resid, block, eps=1e-5):
    x = _attn(_ln(resid, block, "ln1", eps), block)
    return _ffn(_ln(x, block, "ln2", eps), block)


def _block_post_ln(resid, block, eps=1e-5):
    resid = _ln(resid + _attn(resid, block), block, "ln1", eps)
    return _ln(resid + _ffn(resid, block), block, "ln2", eps)


def _block_parallel(resid, block, eps=1e-5):
    return resid + _attn(_ln(resid, block, "ln1", eps), block) + _ffn(_ln(resid, block, "ln2", eps), block)


def _block_normalised_stream(resid, block, eps=1e-5):
    resid = _ln(resid, block, "ln1", eps)
    resid = resid + _attn(resid, block)
    resid = _ln(resid, block, "ln2", eps)
    return resid + _ffn(resid, block)


def _block_no_mask(resid, block, eps=1e-5):
    resid = resid + _attn(_ln(resid, block, "ln1", eps), block, masked=False)
    return resid + _ffn(_ln(resid, block, "ln2", eps), block)


def _block_sdpa(resid, block, eps=1e-5):
    """torch's own LayerNorm and fused causal attention."""
    x = F.layer_norm(resid, resid.shape[-1:], block["ln1_w"], block["ln1_b"], eps)
    q, k, v = (einops.einsum(x, block[f"W_{n}"], "b p m, h m d -> b h p d") + block[f"b_{n}"][:, None]
               for n in "QKV")
    z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    resid = resid + einops.einsum(z, block["W_O"], "b h p d, h d m -> b p m") + block["b_O"]
    x = F.layer_norm(resid, resid.shape[-1:], block["ln2_w"], block["ln2_b"], eps)
    hidden = F.gelu(x @ block["W_in"] + block["b_in"], approximate="tanh")
    return resid + hidden @ block["W_out"] + block["b_out"]


# -- unembed and forward ---------------------------------------------------------------------

def _forward(tokens, params, eps=1e-5, *, pos=True, ln_final=True, chained=True, reverse=False, softmax=False):
    x0 = ref.embed(tokens, params["W_E"]) + (ref.pos_embed(tokens, params["W_pos"]) if pos else 0)
    resid = x0
    for block in (reversed(params["blocks"]) if reverse else params["blocks"]):
        resid = ref.transformer_block(resid if chained else x0, block, eps)
    if ln_final:
        resid = ref.layer_norm(resid, params["ln_final_w"], params["ln_final_b"], eps)
    logits = resid @ params["W_U"] + params["b_U"]
    return logits.softmax(-1) if softmax else logits


def _forward_reduce(tokens, params, eps=1e-5):
    import functools
    resid = params["W_E"][tokens] + params["W_pos"][: tokens.shape[1]]
    resid = functools.reduce(lambda r, blk: ref.transformer_block(r, blk, eps), params["blocks"], resid)
    normed = F.layer_norm(resid, resid.shape[-1:], params["ln_final_w"], params["ln_final_b"], eps)
    return ref.unembed(normed, params["W_U"], params["b_U"])


# -- sampling --------------------------------------------------------------------------------

def _sample(logits, temperature=1.0, top_k=None, generator=None, *, how="right"):
    if temperature == 0 and how != "divide by zero":
        return logits.argmax(-1)
    if how == "argmax always":
        return logits.argmax(-1)
    scaled = logits * temperature if how == "multiply" else logits if how == "ignore T" else logits / temperature
    if top_k is not None:
        kth = scaled.topk(top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, 0.0 if how == "mask with zero" else float("-inf"))
    probs = scaled.softmax(dim=0 if how == "softmax over batch" else -1)
    gen = None if how == "no generator" else generator
    return torch.multinomial(probs, 1, generator=gen).squeeze(-1)


def _sample_uniform_top_k(logits, temperature=1.0, top_k=None, generator=None):
    if temperature == 0:
        return logits.argmax(-1)
    if top_k is None:
        return torch.multinomial((logits / temperature).softmax(-1), 1, generator=generator)[:, 0]
    indices = logits.topk(top_k, dim=-1).indices
    choice = torch.randint(0, top_k, (logits.shape[0], 1), generator=generator)
    return indices.gather(-1, choice)[:, 0]


def _sample_gumbel(logits, temperature=1.0, top_k=None, generator=None):
    """The Gumbel-max trick: argmax of logits/T plus Gumbel noise is a sample from softmax(logits/T)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    scaled = logits / temperature
    if top_k:
        values, indices = scaled.topk(top_k, dim=-1)
        scaled = torch.full_like(scaled, float("-inf")).scatter(-1, indices, values)
    uniform = torch.rand(scaled.shape, generator=generator).clamp_min(1e-20)
    return (scaled - torch.log(-torch.log(uniform))).argmax(dim=-1)


def _sample_topk_then_index(logits, temperature=1.0, top_k=None, generator=None):
    if temperature == 0:
        return logits.max(dim=-1).indices
    if top_k is None:
        top_k = logits.shape[-1]
    values, indices = torch.topk(logits / temperature, top_k, dim=-1)
    picked = torch.multinomial(F.softmax(values, dim=-1), num_samples=1, generator=generator)
    return torch.gather(indices, -1, picked).squeeze(-1)


def _generate(model, tokens, max_new_tokens, temperature=0.0, top_k=None, generator=None, *, how="right"):
    prompt = tokens
    for step in range(max_new_tokens - 1 if how == "range off by one" else max_new_tokens):
        if how == "first position":
            logits = model(tokens)[:, 0, :]
        elif how == "last token only":
            logits = model(tokens[:, -1:])[:, -1]
        else:
            logits = model(tokens)[:, -1, :]
        if how == "always greedy":
            next_token = ref.sample_next_token(logits, 0.0)
        elif how == "ignored top_k":
            next_token = ref.sample_next_token(logits, temperature, None, generator)
        else:
            next_token = ref.sample_next_token(logits, temperature, top_k, generator)
        tokens = torch.cat([tokens, next_token.unsqueeze(1)], dim=1)
    return tokens[:, prompt.shape[1]:] if how == "new only" else tokens


def _generate_prealloc(model, tokens, max_new_tokens, temperature=0.0, top_k=None, generator=None):
    batch, pos = tokens.shape
    out = torch.zeros(batch, pos + max_new_tokens, dtype=tokens.dtype)
    out[:, :pos] = tokens
    for i in range(pos, pos + max_new_tokens):
        out[:, i] = ref.sample_next_token(model(out[:, :i])[:, -1], temperature, top_k, generator)
    return out


def _generate_while(model, tokens, max_new_tokens, temperature=0.0, top_k=None, generator=None):
    target = tokens.shape[1] + max_new_tokens
    while tokens.shape[1] < target:
        logits = model(tokens)
        next_token = ref.sample_next_token(logits[:, -1], temperature, top_k, generator)
        tokens = torch.cat((tokens, next_token.view(-1, 1)), dim=-1)
    return tokens


VARIANTS = {
    "ch1.layer_norm": [
        Wrong("unbiased variance (torch.var default)", _ln_unbiased, mistake="unbiased variance"),
        Wrong("normalised over positions", _ln_over_positions, mistake="wrong axis"),
        Wrong("eps added outside the sqrt", _ln_eps_outside, mistake="eps outside sqrt"),
        Wrong("edits x in place", _ln_in_place, mistake="in-place edit"),
        Wrong("forgot w and b", _ln_no_affine, mistake="forgot scale and shift"),
        Right("torch.nn.functional.layer_norm", lambda x, w, b, eps=1e-5: F.layer_norm(x, w.shape, w, b, eps)),
    ],
    "ch1.embed": [
        Wrong("columns of W_E", _embed_columns, mistake="columns of W_E"),
        Wrong("scaled by sqrt(d_model) as in Vaswani et al.", lambda tokens, W_E: W_E[tokens] * W_E.shape[1] ** 0.5,
              mistake="scaled by sqrt(d_model)"),
        Wrong("flattened the tokens", lambda tokens, W_E: W_E[tokens.reshape(-1)], mistake="flattened"),
        Right("one-hot times W_E", _embed_one_hot),
        Right("F.embedding", lambda tokens, W_E: F.embedding(tokens, W_E)),
        Right("loop over batch and positions", _embed_loop),
    ],
    "ch1.pos_embed": [
        Wrong("W_pos[tokens]", lambda tokens, W_pos: W_pos[tokens], mistake="indexed by token ids"),
        Wrong("no batch axis", _pos_no_batch, mistake="no batch axis"),
        Wrong("positions 1..pos", _pos_from_one, mistake="started at position 1"),
        Wrong("the whole table, repeated", _pos_whole_table, mistake="all n_ctx positions"),
        Right("W_pos[arange] expanded", _pos_arange),
        Right("repeat", lambda tokens, W_pos: W_pos[: tokens.shape[1]].repeat(tokens.shape[0], 1, 1)),
    ],
    "ch1.attention_scores": [
        Wrong("no 1/sqrt(d_head)", lambda *a: _scores(*a, divisor=lambda W: 1.0), mistake="no scaling"),
        Wrong("divided by d_head", lambda *a: _scores(*a, divisor=lambda W: W.shape[-1]), mistake="divided by d_head"),
        Wrong("divided by sqrt(d_model)", lambda *a: _scores(*a, divisor=lambda W: W.shape[1] ** 0.5),
              mistake="divided by sqrt(d_model)"),
        Wrong("no biases", lambda *a: _scores(*a, bias=False), mistake="forgot biases"),
        Wrong("k @ q.T", lambda *a: _scores(*a, swap=True), mistake="queries and keys swapped"),
        Right("matmul per batch of heads", _scores),
        Right("loop over heads", _scores_loop),
    ],
    "ch1.apply_causal_mask": [
        Wrong("triu with diagonal=0", lambda s: _mask(s, diagonal=0), mistake="masked the diagonal"),
        Wrong("tril: masked the past", lambda s: _mask(s, past=True), mistake="masked the past"),
        Wrong("filled with 0", lambda s: _mask(s, fill=0.0), mistake="filled with zero"),
        Wrong("masked_fill_ on the input", _mask_in_place, mistake="in-place edit"),
        Right("torch.where with -1e9", _mask_where),
        Right("loop with -1e5", _mask_loop),
        Right("add a -inf upper triangle", _mask_add),
    ],
    "ch1.attention_pattern": [
        Wrong("softmax(dim=-2)", lambda s: _pattern(s, dim=-2), mistake="softmax over queries"),
        Wrong("softmax(dim=1)", lambda s: _pattern(s, dim=1), mistake="softmax over heads"),
        Wrong("no mask", lambda s: _pattern(s, mask=False), mistake="forgot the mask"),
        Wrong("zeroed the future after the softmax", lambda s: _pattern(s, mask_after=True),
              mistake="masked after the softmax"),
        Right("exp and normalise by hand", _pattern_manual),
        Right("F.softmax of a -1e9 mask", lambda s: F.softmax(_mask_where(s), dim=-1)),
    ],
    "ch1.attention_output": [
        Wrong("pattern.T @ v", lambda *a: _out(*a, transpose=True), mistake="pattern transposed"),
        Wrong("no b_V", lambda *a: _out(*a, b_V_on=False), mistake="forgot b_V"),
        Wrong("no b_O", lambda *a: _out(*a, b_O_mode="none"), mistake="forgot b_O"),
        Wrong("b_O inside the head sum", lambda *a: _out(*a, b_O_mode="per head"), mistake="b_O added per head"),
        Wrong("mean over heads", lambda *a: _out(*a, mean=True), mistake="averaged the heads"),
        Right("matmul per head, summed", _out),
        Right("loop over heads", _out_loop),
        Right("heads flattened into one matmul", _out_flat),
    ],
    "ch1.gelu_new": [
        Wrong("F.gelu (exact)", F.gelu, mistake="exact gelu"),
        Wrong("sqrt(2 * pi)", lambda x: _gelu(x, const=math.sqrt(2 * math.pi)), mistake="sqrt(2 pi)"),
        Wrong("x**2", lambda x: _gelu(x, power=2), mistake="x squared"),
        Wrong("ReLU", torch.relu, mistake="relu"),
        Wrong("no 0.5", lambda x: _gelu(x, half=1.0), mistake="forgot the 0.5"),
        Right("F.gelu(approximate='tanh')", lambda x: F.gelu(x, approximate="tanh")),
        Right("x * sigmoid(...)", _gelu_sigmoid),
    ],
    "ch1.mlp": [
        Wrong("F.gelu (exact)", lambda *a: _mlp(*a, act=F.gelu), mistake="exact gelu"),
        Wrong("ReLU", lambda *a: _mlp(*a, act=torch.relu), mistake="relu"),
        Wrong("no activation", lambda *a: _mlp(*a, act=lambda h: h), mistake="no activation"),
        Wrong("no b_in", lambda *a: _mlp(*a, b_in_on=False), mistake="forgot b_in"),
        Right("F.linear and F.gelu(approximate='tanh')", _mlp_linear),
        Right("einsum", _mlp_einsum),
    ],
    "ch1.transformer_block": [
        Wrong("no residual connections", _block_no_residual, mistake="forgot the residual connection"),
        Wrong("post-LN", _block_post_ln, mistake="post-LN"),
        Wrong("parallel attention and MLP", _block_parallel, mistake="parallel attention and MLP"),
        Wrong("normalised the stream itself", _block_normalised_stream, mistake="normalised the residual stream"),
        Wrong("bare softmax of the scores", _block_no_mask, mistake="no causal mask"),
        Right("F.layer_norm and scaled_dot_product_attention", _block_sdpa),
    ],
    "ch1.unembed": [
        Wrong("no b_U", lambda x, W_U, b_U: x @ W_U, mistake="forgot b_U"),
        Wrong("x @ W_U.T", lambda x, W_U, b_U: x @ W_U.T + b_U, mistake="transposed W_U"),
        Wrong("softmax", lambda x, W_U, b_U: (x @ W_U + b_U).softmax(-1), mistake="softmax"),
        Wrong("log_softmax", lambda x, W_U, b_U: F.log_softmax(x @ W_U + b_U, dim=-1), mistake="log_softmax"),
        Right("einsum", lambda x, W_U, b_U: einops.einsum(x, W_U, "b p m, m v -> b p v") + b_U),
        Right("F.linear", lambda x, W_U, b_U: F.linear(x, W_U.T, b_U)),
    ],
    "ch1.forward": [
        Wrong("no ln_final", lambda t, p, eps=1e-5: _forward(t, p, eps, ln_final=False), mistake="no final LayerNorm"),
        Wrong("no pos_embed", lambda t, p, eps=1e-5: _forward(t, p, eps, pos=False),
              mistake="no positional embedding"),
        Wrong("every block reads the embedding", lambda t, p, eps=1e-5: _forward(t, p, eps, chained=False),
              mistake="blocks not chained"),
        Wrong("blocks in reverse", lambda t, p, eps=1e-5: _forward(t, p, eps, reverse=True), mistake="blocks reversed"),
        Wrong("softmax at the end", lambda t, p, eps=1e-5: _forward(t, p, eps, softmax=True),
              mistake="returned probabilities"),
        Right("functools.reduce and F.layer_norm", _forward_reduce),
    ],
    "ch1.sample_next_token": [
        Wrong("divides by temperature 0", lambda *a, **k: _sample(*a, **k, how="divide by zero"),
              status="error", hint_contains="argmax"),
        Wrong("logits * temperature", lambda *a, **k: _sample(*a, **k, how="multiply"),
              mistake="multiplied by the temperature"),
        Wrong("temperature ignored", lambda *a, **k: _sample(*a, **k, how="ignore T"), mistake="ignored the temperature"),
        Wrong("softmax over the batch", lambda *a, **k: _sample(*a, **k, how="softmax over batch"),
              mistake="softmax over the batch"),
        Wrong("always argmax", lambda *a, **k: _sample(*a, **k, how="argmax always"), mistake="always the argmax"),
        Wrong("generator not passed on", lambda *a, **k: _sample(*a, **k, how="no generator"),
              mistake="ignored the generator"),
        Wrong("top-k masked with 0", lambda *a, **k: _sample(*a, **k, how="mask with zero"),
              mistake="sampled outside the top k"),
        Wrong("uniform over the top k", _sample_uniform_top_k, mistake="uniform over the top k"),
        Wrong("argmin when greedy", lambda logits, temperature=1.0, top_k=None, generator=None: logits.argmin(-1),
              mistake="argmin"),
        Right("Gumbel-max trick", _sample_gumbel),
        Right("topk values, then gather", _sample_topk_then_index),
    ],
    "ch1.generate": [
        Wrong("logits[:, 0]", lambda *a, **k: _generate(*a, **k, how="first position"), mistake="first position"),
        Wrong("only the new tokens", lambda *a, **k: _generate(*a, **k, how="new only"),
              mistake="returned only the new tokens"),
        Wrong("range(max_new_tokens - 1)", lambda *a, **k: _generate(*a, **k, how="range off by one"),
              mistake="one token short"),
        Wrong("fed only the last token", lambda *a, **k: _generate(*a, **k, how="last token only"),
              mistake="last token only"),
        Wrong("always greedy (temperature ignored)", lambda *a, **k: _generate(*a, **k, how="always greedy"),
              mistake="always greedy"),
        Wrong("top_k not passed on", lambda *a, **k: _generate(*a, **k, how="ignored top_k"), mistake="ignored top_k"),
        Right("preallocated output", _generate_prealloc),
        Right("while loop", _generate_while),
    ],
}
