"""Graders for 1.2 "Circuits and induction heads".

Everything here runs on synthetic tensors or on a tiny randomly initialised
attention-only model (weights scaled up so that every head matters), never on
the trained model: each check takes well under a second on a CPU.
"""

from __future__ import annotations

import functools
from functools import partial

import torch
from transformer_lens import FactoredMatrix

from solutions.ch1_transformer_math import circuits_and_induction as ref
from utils.grading import Mistake, exercise


# -- shared inputs -------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _tiny_model(device: str, seed: int = 0):
    """A 2-layer, 4-head attention-only model; n_layers != n_heads so a transposed answer shows."""
    from transformer_lens import TransformerBridge, TransformerBridgeConfig

    cfg = TransformerBridgeConfig(d_model=32, d_head=8, n_heads=4, n_layers=2, n_ctx=32, d_vocab=20,
                                  attn_only=True, normalization_type=None,
                                  architecture="TransformerLensNative", seed=seed)
    model = TransformerBridge.boot_native(cfg)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.copy_(0.3 * torch.randn(param.shape, generator=generator))
            else:
                param.mul_(4.0)
    model.requires_grad_(False)
    if device != "cpu":
        model.to(device)
    return model


def _model(check, seed: int = 0):
    model = _tiny_model(str(check.device), seed)
    model.reset_hooks()
    return model


def _repeated_tokens(check, batch: int, seq_len: int, d_vocab: int = 20) -> torch.Tensor:
    """[BOS] + R + R with BOS = 0 and R drawn from the other tokens."""
    half = check.randint(d_vocab - 1, batch, seq_len) + 1
    bos = torch.zeros(batch, 1, dtype=half.dtype, device=half.device)
    return torch.cat([bos, half, half], dim=1)


def _causal_pattern(check, batch: int, heads: int, pos: int, sharpness: float = 2.0) -> torch.Tensor:
    """Random attention patterns: lower-triangular rows that sum to one."""
    scores = check.randn(batch, heads, pos, pos, scale=sharpness)
    future = torch.triu(torch.ones(pos, pos, dtype=torch.bool, device=scores.device), diagonal=1)
    return scores.masked_fill(future, float("-inf")).softmax(dim=-1)


def _head_scores(pattern, offset, start):
    """Mean over batch and the diagonal `offset` (entries from `start` on) of a pattern."""
    return pattern.diagonal(offset=offset, dim1=-2, dim2=-1)[..., start:].mean(dim=(0, -1))


# -- log-probs and repeated-sequence losses ------------------------------------------------

def _log_probs_variant(*, logit_slice=slice(None, -1), token_slice=slice(1, None), normalise="log_softmax",
                       dim=-1):
    def variant(logits, tokens):
        chosen = logits[:, logit_slice]
        if normalise == "log_softmax":
            chosen = chosen.log_softmax(dim=dim)
        elif normalise == "softmax":
            chosen = chosen.softmax(dim=dim)
        return chosen.gather(-1, tokens[:, token_slice].unsqueeze(-1)).squeeze(-1)
    return variant


@exercise(difficulty=1, minutes=10, hints=[
    "Position p predicts the token at position p + 1, so the last position predicts nothing we can check.",
    "Take log_softmax over the vocabulary of logits[:, :-1], then pick the entry of tokens[:, 1:] at each "
    "position.",
    "`log_probs.gather(-1, tokens[:, 1:].unsqueeze(-1)).squeeze(-1)` picks one vocabulary entry per position.",
])
def test_correct_token_log_probs(check):
    mistakes = [
        Mistake("not shifted", "Position p predicts token p + 1: pair logits[:, :-1] with tokens[:, 1:], "
                "not with tokens[:, :-1].", _log_probs_variant(token_slice=slice(None, -1))),
        Mistake("shifted the wrong way", "Drop the *last* position of the logits and the *first* token: "
                "logits[:, :-1] go with tokens[:, 1:].",
                _log_probs_variant(logit_slice=slice(1, None), token_slice=slice(None, -1))),
        Mistake("probabilities", "Return log-probabilities (log_softmax), not probabilities (softmax).",
                _log_probs_variant(normalise="softmax")),
        Mistake("raw logits", "Logits are not log-probabilities: apply log_softmax over the vocabulary first.",
                _log_probs_variant(normalise=None)),
        Mistake("log_softmax over positions", "Normalise over the vocabulary (dim=-1), not over positions.",
                _log_probs_variant(dim=1)),
    ]
    check.case("random logits", check.randn(3, 7, 11, scale=2.0), check.randint(11, 3, 7), mistakes=mistakes)
    check.case("one sequence, long vocab", check.randn(1, 5, 40), check.randint(40, 1, 5), mistakes=mistakes)


def _copy_losses_variant(first, second, *, sign=-1.0):
    def variant(log_probs, seq_len):
        return (sign * log_probs[:, first(seq_len)].mean(), sign * log_probs[:, second(seq_len)].mean())
    return variant


@exercise(difficulty=2, minutes=10, hints=[
    "log_probs[:, p] is about the token at position p + 1. The first copy of R sits at token positions "
    "1..seq_len and the second at seq_len + 1..2 seq_len.",
    "Leave out the first token of each copy (positions 1 and seq_len + 1): no context predicts it. So you "
    "want tokens 2..seq_len and seq_len + 2..2 seq_len.",
    "Shift by one to index log_probs: log_probs[:, 1:seq_len] and log_probs[:, seq_len + 1:]. A loss is the "
    "mean *negative* log-probability.",
])
def test_repeated_sequence_losses(check):
    mistakes = [
        Mistake("indexed by token position", "log_probs[:, p] is the prediction of token p + 1: shift your "
                "token positions down by one to index log_probs.",
                _copy_losses_variant(lambda n: slice(2, n + 1), lambda n: slice(n + 2, None))),
        Mistake("kept the first token of each copy", "Leave out the first token of each copy: nothing in "
                "the context can predict it.",
                _copy_losses_variant(lambda n: slice(0, n), lambda n: slice(n, None))),
        Mistake("log-probs, not losses", "A loss is the mean *negative* log-probability.",
                _copy_losses_variant(lambda n: slice(1, n), lambda n: slice(n + 1, None), sign=1.0)),
        Mistake("halves swapped", "Return (first copy, second copy) in that order.",
                _copy_losses_variant(lambda n: slice(n + 1, None), lambda n: slice(1, n))),
    ]
    log_probs = -check.randn(4, 12).abs() * torch.linspace(3, 0.1, 12, device=check.device)
    check.case("seq_len 6", log_probs, 6, mistakes=mistakes, atol=1e-5)
    check.case("seq_len 9", -check.randn(2, 18).abs() - torch.arange(18, device=check.device) % 5, 9,
               mistakes=mistakes, atol=1e-5)


# -- head scores -------------------------------------------------------------------------------

@exercise(difficulty=1, minutes=10, hints=[
    "Previous-token attention is the entry pattern[..., q, q - 1]: the diagonal just *below* the main one "
    "(queries are rows, keys are columns).",
    "`pattern.diagonal(offset=-1, dim1=-2, dim2=-1)` gives [batch, head, pos - 1]: it already skips the "
    "first query, which has no previous token.",
    "Average that over batch and query positions, keeping the head axis.",
])
def test_previous_token_scores(check):
    mistakes = [
        Mistake("above the diagonal", "Queries are rows and keys are columns: the previous token is the "
                "diagonal *below* the main one (offset=-1). Above it lies the future, which a causal "
                "pattern never attends to.", lambda p: _head_scores(p, 1, 0)),
        Mistake("main diagonal", "The main diagonal is attention to the token itself; you want the one "
                "just before it (offset=-1).", lambda p: _head_scores(p, 0, 0)),
        Mistake("counted the first query", "The first position has no previous token: average over "
                "queries 1..pos-1 only, not over every query.",
                lambda p: p.diagonal(offset=-1, dim1=-2, dim2=-1).sum(-1).mean(0) / p.shape[-1]),
        Mistake("averaged over heads", "Keep the head axis (one score per head) and average over batch "
                "and queries.", lambda p: p.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(0, 1))),
    ]
    check.case("random causal patterns", _causal_pattern(check, 3, 4, 9), mistakes=mistakes)
    check.case("a previous-token head among others", _previous_token_heavy(check), mistakes=mistakes)


def _previous_token_heavy(check):
    pattern = _causal_pattern(check, 2, 3, 8)
    prev = torch.diag_embed(torch.ones(7, device=check.device), offset=-1)
    prev[0, 0] = 1.0
    pattern[:, 1] = 0.9 * prev + 0.1 * pattern[:, 1]
    return pattern


@exercise(difficulty=1, minutes=10, hints=[
    "With tokens [BOS] + R + R, the token at position q of the second copy also sits at position "
    "q - seq_len.",
    "That is the diagonal `offset=-seq_len` of the [query, key] pattern. Its first entry is the last token "
    "of the *first* copy looking at BOS: drop it.",
    "`pattern.diagonal(offset=-seq_len, dim1=-2, dim2=-1)[..., -seq_len:]`, averaged over batch and queries.",
])
def test_duplicate_token_scores(check):
    mistakes = [
        Mistake("induction offset", "That is the induction offset (one past the earlier occurrence). A "
                "duplicate-token head attends to the earlier occurrence itself: offset=-seq_len.",
                lambda p, n: _head_scores(p, 1 - n, 2)),
        Mistake("included the first copy", "Only queries in the second copy have a duplicate: the first "
                "entry of that diagonal is a first-copy token attending to BOS.",
                lambda p, n: _head_scores(p, -n, 0)),
        Mistake("forgot BOS", "Position 0 is BOS, so the second copy starts at seq_len + 1, not seq_len.",
                lambda p, n: p.diagonal(offset=-n, dim1=-2, dim2=-1)[..., :n].mean(dim=(0, -1))),
        Mistake("averaged over heads", "Keep the head axis (one score per head).",
                lambda p, n: p.diagonal(offset=-n, dim1=-2, dim2=-1)[..., -n:].mean(dim=(0, 1))),
    ]
    check.case("seq_len 5", _causal_pattern(check, 3, 4, 11), 5, mistakes=mistakes)
    check.case("seq_len 8", _causal_pattern(check, 2, 3, 17, sharpness=1.0), 8, mistakes=mistakes)


@exercise(difficulty=2, minutes=15, hints=[
    "An induction head at a token of the second copy attends to the token *after* that token's earlier "
    "occurrence: from position q to key q - seq_len + 1.",
    "That is the diagonal offset=1 - seq_len. It also holds queries from the end of the first copy; keep "
    "only the seq_len queries of the second copy (the last seq_len entries).",
    "`pattern.diagonal(offset=1 - seq_len, dim1=-2, dim2=-1)[..., -seq_len:]`, averaged over batch and "
    "queries.",
])
def test_induction_scores(check):
    mistakes = [
        Mistake("off by one (duplicate-token offset)", "You measured attention to the earlier occurrence "
                "itself (a duplicate-token head). Induction attends one further: to the token that came "
                "*after* it, key = q - seq_len + 1.", lambda p, n: _head_scores(p, -n, 1)),
        Mistake("off by one (two ahead)", "Key = q - seq_len + 1, not q - seq_len + 2: count the BOS "
                "token at position 0.", lambda p, n: _head_scores(p, 2 - n, 3)),
        Mistake("included the first copy", "Only queries in the second copy can do induction: keep the "
                "last seq_len entries of that diagonal.", lambda p, n: _head_scores(p, 1 - n, 0)),
        Mistake("forgot BOS", "Position 0 is BOS, so the second copy is positions seq_len + 1 to 2 seq_len "
                "(the last seq_len queries).",
                lambda p, n: p.diagonal(offset=1 - n, dim1=-2, dim2=-1)[..., 1:n + 1].mean(dim=(0, -1))),
        Mistake("averaged over heads", "Keep the head axis (one score per head).",
                lambda p, n: p.diagonal(offset=1 - n, dim1=-2, dim2=-1)[..., -n:].mean(dim=(0, 1))),
    ]
    check.case("seq_len 5", _causal_pattern(check, 3, 4, 11), 5, mistakes=mistakes)
    check.case("seq_len 8", _causal_pattern(check, 2, 3, 17, sharpness=1.0), 8, mistakes=mistakes)
    check.case("an ideal induction head", _ideal_induction(check, 6), 6, mistakes=mistakes)
    score = check.run(_ideal_induction(check, 6), 6, case="an ideal induction head")
    check.expect(abs(float(score[1]) - 1.0) < 1e-5, case="an ideal induction head",
                 message=f"a head that always attends to the induction target scored {float(score[1]):.3f}, "
                         "not 1", hint="Check the diagonal offset and which queries you keep.")


def _ideal_induction(check, seq_len):
    pos = 2 * seq_len + 1
    pattern = _causal_pattern(check, 2, 3, pos)
    ideal = torch.zeros(pos, pos, device=check.device)
    ideal[:seq_len + 1, 0] = 1.0
    for q in range(seq_len + 1, pos):
        ideal[q, q - seq_len + 1] = 1.0
    pattern[:, 1] = ideal
    return pattern


# -- direct logit attribution and the logit lens -------------------------------------------------

def _dla_variant(*, comp_slice=slice(None, -1), token_slice=slice(1, None), summed=False, log_softmax=False):
    def variant(components, W_U, tokens):
        logits = components[:, :, comp_slice] @ W_U
        if log_softmax:
            logits = logits.log_softmax(-1)
        index = tokens[:, token_slice].unsqueeze(0).unsqueeze(-1).expand(logits.shape[0], -1, -1, 1)
        out = logits.gather(-1, index).squeeze(-1)
        return out.sum(0) if summed else out
    return variant


@exercise(difficulty=2, minutes=15, hints=[
    "The logits are resid @ W_U and the residual stream is a sum of components, so each component adds "
    "component @ W_U to the logits. You only need one column of W_U per position.",
    "The correct token at position p is tokens[:, p + 1], so use components[:, :, :-1] and "
    "W_U[:, tokens[:, 1:]] (shape [d_model, batch, pos - 1]).",
    "`einops.einsum(components[:, :, :-1], W_U[:, tokens[:, 1:]], 'c b p d, d b p -> c b p')`.",
])
def test_direct_logit_attribution(check):
    mistakes = [
        Mistake("current token", "Attribute to the *next* token, tokens[:, 1:], not the token at the "
                "position itself.", _dla_variant(token_slice=slice(None, -1))),
        Mistake("shifted components", "Drop the *last* position of the components (it has no next token), "
                "not the first.", _dla_variant(comp_slice=slice(1, None))),
        Mistake("summed components", "Keep one row per component: the sum over components is the total "
                "logit, not its attribution.", _dla_variant(summed=True)),
        Mistake("log_softmax per component", "Direct logit attribution is linear: no softmax. A "
                "component's share of the logit is component @ W_U, nothing more.",
                _dla_variant(log_softmax=True)),
    ]
    components, W_U = check.randn(5, 2, 6, 16), check.randn(16, 23)
    check.case("five components", components, W_U, check.randint(23, 2, 6), mistakes=mistakes, atol=1e-4)
    check.case("one component", check.randn(1, 3, 4, 16), W_U, check.randint(23, 3, 4), mistakes=mistakes,
               atol=1e-4)
    total = check.run(components, W_U, tokens := check.randint(23, 2, 6), case="components add up")
    logits = components.sum(0)[:, :-1] @ W_U
    direct = logits.gather(-1, tokens[:, 1:].unsqueeze(-1)).squeeze(-1)
    check.expect(torch.allclose(total.sum(0), direct, atol=1e-4), case="components add up",
                 message="the attributions of all components do not add up to the logit of the correct token",
                 hint="Summed over components, your output should equal (sum of components) @ W_U at the "
                      "next token.")


def _lens_variant(*, bias=True, normalise=True, dim=-1, token_slice=slice(1, None)):
    def variant(resid_stack, W_U, b_U, tokens):
        logits = resid_stack[:, :, :-1] @ W_U + (b_U if bias else 0)
        if normalise:
            logits = logits.log_softmax(dim)
        index = tokens[:, token_slice].unsqueeze(0).unsqueeze(-1).expand(logits.shape[0], -1, -1, 1)
        return logits.gather(-1, index).squeeze(-1)
    return variant


@exercise(difficulty=2, minutes=10, hints=[
    "Treat the residual stream after each layer as if it were the final one: logits = resid @ W_U + b_U.",
    "Then take log_softmax over the vocabulary and pick the next token's entry, as in "
    "correct_token_log_probs (which you can reuse on each layer).",
    "Drop the last position (resid_stack[:, :, :-1]) and gather tokens[:, 1:], repeated for every layer.",
])
def test_logit_lens_log_probs(check):
    mistakes = [
        Mistake("forgot b_U", "Add the unembedding bias b_U: the model's logits are resid @ W_U + b_U.",
                _lens_variant(bias=False)),
        Mistake("raw logits", "The logit lens reads out log-probabilities: log_softmax over the vocabulary.",
                _lens_variant(normalise=False)),
        Mistake("softmax over layers", "Normalise over the vocabulary (dim=-1), not over layers.",
                _lens_variant(dim=0)),
        Mistake("current token", "Read the log-probability of the *next* token, tokens[:, 1:].",
                _lens_variant(token_slice=slice(None, -1))),
    ]
    W_U, b_U = check.randn(16, 13), check.randn(13)
    check.case("three layers", check.randn(3, 2, 7, 16), W_U, b_U, check.randint(13, 2, 7), mistakes=mistakes,
               atol=1e-4)
    check.case("one layer, batch 1", check.randn(1, 1, 5, 16, scale=3.0), W_U, b_U, check.randint(13, 1, 5),
               mistakes=mistakes, atol=1e-4)


# -- ablation hooks ------------------------------------------------------------------------------

def _hook_point():
    from transformer_lens.hook_points import HookPoint
    return HookPoint()


def _zero_head_axis(axis):
    def variant(z, hook, head):
        z = z.clone()
        index = [slice(None)] * z.ndim
        index[axis] = head
        z[tuple(index)] = 0.0
        return z
    return variant


def _zero_all_but(z, hook, head):
    out = torch.zeros_like(z)
    out[:, :, head] = z[:, :, head]
    return out


@exercise(difficulty=1, minutes=10, hints=[
    "z has shape [batch, pos, head, d_head]: the head axis is the third one.",
    "Clone z, set the chosen head's slice to zero, and return the clone. TransformerLens uses what the "
    "hook returns.",
    "`z = z.clone(); z[:, :, head] = 0.0; return z`.",
])
def test_zero_ablate_head_hook(check):
    hook = _hook_point()
    mistakes = [
        Mistake("wrong axis", "z is [batch, pos, head, d_head]: index the head on the third axis, "
                "z[:, :, head].", _zero_head_axis(1)),
        Mistake("zeroed the other heads", "Zero only the chosen head and leave the others as they are.",
                _zero_all_but),
        Mistake("forgot to return", "Return the edited tensor: TransformerLens replaces the activation "
                "with what the hook returns.", lambda z, hook, head: None),
        Mistake("zeroed d_head slice", "The head index selects a head (third axis), not a d_head "
                "component (last axis).", _zero_head_axis(3)),
    ]
    z = check.randn(2, 5, 4, 3)
    check.case("head 1", z, hook, 1, mistakes=mistakes)
    check.case("head 3", check.randn(3, 4, 4, 6), hook, 3, mistakes=mistakes)
    _check_inside_model(check, mistakes_hint="Your hook works on a tensor but not inside the model: "
                        "check it returns a tensor of the same shape.")


def _check_inside_model(check, *, mistakes_hint):
    model = _model(check)
    tokens = _repeated_tokens(check, 2, 5)
    for layer, head in [(0, 2), (1, 0)]:
        name = f"blocks.{layer}.attn.hook_z"
        case = f"inside model.run_with_hooks, layer {layer} head {head}"
        got = check.call(model.run_with_hooks, tokens, fwd_hooks=[(name, partial(check.candidate, head=head))],
                         case=case)
        model.reset_hooks()
        expected = model.run_with_hooks(tokens, fwd_hooks=[(name, partial(check.reference, head=head))])
        check.compare(got, expected, case=case, hint=mistakes_hint, atol=1e-4)


def _mean_variant(dims, *, head_axis=2):
    def variant(z, hook, head):
        z = z.clone()
        index = [slice(None)] * z.ndim
        index[head_axis] = head
        part = z[tuple(index)]
        z[tuple(index)] = part.mean(dim=dims, keepdim=True).expand_as(part)
        return z
    return variant


@exercise(difficulty=2, minutes=10, hints=[
    "The mean is over the batch only: each position keeps its own average, because heads behave "
    "differently at different positions.",
    "`z[:, :, head]` has shape [batch, pos, d_head]; its mean over dim 0 has shape [pos, d_head], which "
    "broadcasts back over the batch.",
    "`z = z.clone(); z[:, :, head] = z[:, :, head].mean(dim=0); return z`.",
])
def test_mean_ablate_head_hook(check):
    hook = _hook_point()
    mistakes = [
        Mistake("mean over positions", "Average over the batch (dim 0) only, not over positions: each "
                "position keeps its own mean.", _mean_variant((1,))),
        Mistake("mean over batch and positions", "Average over the batch only; keep the position axis.",
                _mean_variant((0, 1))),
        Mistake("wrong axis", "z is [batch, pos, head, d_head]: the head is on the third axis.",
                _mean_variant((0,), head_axis=1)),
        Mistake("zeroed instead", "Mean ablation replaces the head's z by its batch mean, not by zero.",
                ref.zero_ablate_head_hook),
    ]
    check.case("head 2", check.randn(4, 5, 4, 3) + 1.0, hook, 2, mistakes=mistakes)
    check.case("head 0", check.randn(3, 6, 2, 4), hook, 0, mistakes=mistakes)
    _check_inside_model(check, mistakes_hint="Your hook works on a tensor but not inside the model: "
                        "check it returns a tensor of the same shape.")


def _ablation_variant(*, half=1, whole=False, transpose=False, accumulate=False):
    def variant(model, tokens, seq_len, ablation_hook=ref.zero_ablate_head_hook):
        n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
        losses = torch.zeros(n_layers, n_heads)
        hooks = []
        for layer in range(n_layers):
            for head in range(n_heads):
                hook = (f"blocks.{layer}.attn.hook_z", partial(ablation_hook, head=head))
                hooks = [*hooks, hook] if accumulate else [hook]
                logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
                log_probs = ref.correct_token_log_probs(logits, tokens)
                losses[layer, head] = (-log_probs.mean() if whole
                                       else ref.repeated_sequence_losses(log_probs, seq_len)[half])
        return losses.T if transpose else losses
    return variant


@exercise(difficulty=2, minutes=15, timeout=20.0, atol=1e-4, hints=[
    "Loop over layers and heads; for each, run `model.run_with_hooks(tokens, fwd_hooks=[(name, fn)])` with "
    "name = f'blocks.{layer}.attn.hook_z' and fn = partial(ablation_hook, head=head).",
    "Turn the logits into a loss with your correct_token_log_probs and repeated_sequence_losses: the "
    "second value (the second copy) is the one to keep.",
    "Fill a [n_layers, n_heads] tensor. Pass the hooks to each run_with_hooks call so that only one head "
    "is ablated at a time (run_with_hooks removes them afterwards).",
])
def test_head_ablation_losses(check):
    mistakes = [
        Mistake("first copy", "Measure the loss on the second copy (index 1 of repeated_sequence_losses): "
                "that is where copying helps.", _ablation_variant(half=0)),
        Mistake("whole sequence", "Measure the loss on the second copy only, with repeated_sequence_losses; "
                "the first copy is random and dilutes the effect.", _ablation_variant(whole=True)),
        Mistake("transposed", "Return [n_layers, n_heads]: row = layer, column = head.",
                _ablation_variant(transpose=True)),
        Mistake("hooks accumulate", "Ablate one head at a time: each run should have exactly one hook "
                "(model.add_hook keeps hooks until model.reset_hooks(); run_with_hooks removes its own).",
                _ablation_variant(accumulate=True)),
    ]
    model = _model(check)
    try:
        check.case("zero ablation", model, _repeated_tokens(check, 3, 6), 6, mistakes=mistakes)
        model.reset_hooks()
        check.case("mean ablation", model, _repeated_tokens(check, 4, 5), 5, ref.mean_ablate_head_hook,
                   mistakes=mistakes)
    finally:
        model.reset_hooks()


# -- QK and OV circuits ----------------------------------------------------------------------

def _pos_pattern_variant(*, scale=True, mask=True, dim=-1, swap=False, bias=True):
    def variant(W_pos, W_Q, b_Q, W_K, b_K):
        q = W_pos @ W_Q + (b_Q if bias else 0)
        k = W_pos @ W_K + (b_K if bias else 0)
        scores = q @ k.T
        if swap:
            scores = scores.T
        if scale:
            scores = scores / W_Q.shape[-1] ** 0.5
        if mask:
            future = torch.triu(torch.ones_like(scores, dtype=torch.bool), diagonal=1)
            scores = scores.masked_fill(future, float("-inf"))
        return scores.softmax(dim=dim)
    return variant


@exercise(difficulty=2, minutes=15, hints=[
    "Queries and keys from positions alone: q = W_pos @ W_Q + b_Q and k = W_pos @ W_K + b_K, each "
    "[pos, d_head].",
    "Scores are q @ k.T / sqrt(d_head), shape [query, key]. Before the softmax, set the scores of future keys "
    "(key > query) to -inf.",
    "`torch.triu(torch.ones_like(scores, dtype=torch.bool), diagonal=1)` marks the future; softmax over the "
    "key axis (dim=-1).",
])
def test_positional_qk_pattern(check):
    mistakes = [
        Mistake("no scaling", "Divide the scores by sqrt(d_head) before the softmax, as the model does.",
                _pos_pattern_variant(scale=False)),
        Mistake("no causal mask", "Mask the future (key > query) with -inf before the softmax.",
                _pos_pattern_variant(mask=False)),
        Mistake("softmax over queries", "Each query's attention sums to one: softmax over keys (dim=-1).",
                _pos_pattern_variant(dim=0)),
        Mistake("queries and keys swapped", "Rows are queries and columns keys: scores = q @ k.T with q from "
                "W_Q.", _pos_pattern_variant(swap=True)),
        Mistake("forgot biases", "Include b_Q and b_K: q = W_pos @ W_Q + b_Q.", _pos_pattern_variant(bias=False)),
    ]
    W_pos = check.randn(7, 12)
    check.case("random weights", W_pos, check.randn(12, 4), check.randn(4), check.randn(12, 4), check.randn(4),
               mistakes=mistakes)
    check.case("larger head", check.randn(10, 12), check.randn(12, 9), check.randn(9), check.randn(12, 9),
               check.randn(9), mistakes=mistakes)


def _dense(x):
    return x.AB if isinstance(x, FactoredMatrix) else x


@exercise(difficulty=2, minutes=10, atol=1e-4, hints=[
    "A token s attended to contributes W_E[s] @ W_V @ W_O to the residual stream, which becomes logits "
    "through W_U.",
    "Multiply in that order: W_E @ W_V @ W_O @ W_U, shape [d_vocab, d_vocab].",
    "`FactoredMatrix(W_E @ W_V, W_O @ W_U)` keeps it factored through d_head (a dense tensor is accepted too).",
])
def test_full_ov_circuit(check):
    mistakes = [
        Mistake("forgot W_E", "Start from tokens: the rows should be source tokens, so multiply by W_E first.",
                lambda W_E, W_V, W_O, W_U: W_V @ W_O @ W_U),
        Mistake("forgot W_U", "End in logits: multiply by W_U last, so columns are output tokens.",
                lambda W_E, W_V, W_O, W_U: W_E @ W_V @ W_O),
        Mistake("transposed", "Rows are the attended (source) tokens and columns the output logits: "
                "W_E @ W_V @ W_O @ W_U, not its transpose.",
                lambda W_E, W_V, W_O, W_U: (W_E @ W_V @ W_O @ W_U).T),
        Mistake("skipped the value", "The OV circuit goes through both W_V and W_O.",
                lambda W_E, W_V, W_O, W_U: W_E @ W_U),
    ]
    for name, (vocab, d_model, d_head) in {"vocab 9, d_model 6": (9, 6, 3), "vocab 14, d_model 8": (14, 8, 2)}.items():
        args = (check.randn(vocab, d_model), check.randn(d_model, d_head), check.randn(d_head, d_model),
                check.randn(d_model, vocab))
        got = check.run(*args, case=name)
        check.expect(isinstance(got, (FactoredMatrix, torch.Tensor)), case=name,
                     message=f"expected a FactoredMatrix (or a tensor), got {type(got).__name__}",
                     hint="Return FactoredMatrix(W_E @ W_V, W_O @ W_U).")
        check.compare(_dense(got), _dense(check.reference(*args)), case=name, inputs=(args, {}),
                      mistakes=[Mistake(m.name, m.hint, m.output) for m in mistakes])


def _top1_variant(*, dim=-1, best="max", count=False):
    def variant(full_ov):
        pick = full_ov.argmax(dim=dim) if best == "max" else full_ov.argmin(dim=dim)
        hits = (pick == torch.arange(full_ov.shape[0], device=full_ov.device)).float()
        return hits.sum().item() if count else hits.mean().item()
    return variant


@exercise(difficulty=1, minutes=10, hints=[
    "Row s of the full OV circuit holds the logit boosts that attending to token s gives every output token.",
    "For each row, find the output token with the largest entry (argmax over the last axis) and compare it "
    "with the row's own token index.",
    "`(full_ov.argmax(dim=-1) == torch.arange(n)).float().mean().item()`.",
])
def test_top1_copying_accuracy(check):
    mistakes = [
        Mistake("argmax over the wrong axis", "Take the argmax along each row (dim=-1): for each source "
                "token, which output token is boosted most.", _top1_variant(dim=0)),
        Mistake("argmin", "Copying means the token's own logit goes *up* the most: argmax, not argmin.",
                _top1_variant(best="min")),
        Mistake("count, not fraction", "Return the fraction of tokens (divide by the vocabulary size).",
                _top1_variant(count=True)),
        Mistake("positive diagonal", "Ask whether the token's own logit is the *largest* in its row, not "
                "just positive.", lambda m: (m.diagonal() > 0).float().mean().item()),
    ]
    for name, (n, seed_rows) in {"30 tokens": (30, 12), "50 tokens": (50, 35)}.items():
        check.case(name, _copying_matrix(check, n, seed_rows), mistakes=mistakes, atol=1e-6)


def _copying_matrix(check, n, copied):
    """A matrix whose first `copied` rows have their largest entry on the diagonal, with column
    biases so that row-wise and column-wise argmaxes differ."""
    m = check.randn(n, n)
    m += torch.linspace(0, 2.5, n, device=m.device)
    diag = torch.zeros(n, device=m.device)
    diag[:copied] = 6.0
    diag[copied:] = -1.0
    return m + torch.diag(diag)


def _eig_variant(kind):
    def variant(matrix):
        ev = matrix.eigenvalues
        if kind == "count":
            return (ev.real > 0).float().mean(dim=-1)
        if kind == "abs sum":
            return ev.sum(dim=-1).abs() / ev.abs().sum(dim=-1)
        if kind == "real parts":
            return ev.real.sum(dim=-1) / ev.real.abs().sum(dim=-1)
        if kind == "no normalising":
            return ev.sum(dim=-1).real
        raise ValueError(kind)
    return variant


@exercise(difficulty=2, minutes=10, atol=1e-4, rtol=1e-3, hints=[
    "`matrix.eigenvalues` gives the (complex) eigenvalues of a FactoredMatrix, over its last axis.",
    "The score is sum(eigenvalues) / sum(|eigenvalues|): the numerator keeps signs and phases, the "
    "denominator is the total magnitude.",
    "Complex eigenvalues come in conjugate pairs, so the sum is real: take `.real` of it, and `.abs()` "
    "(the complex modulus) for the denominator.",
])
def test_eigenvalue_copying_score(check):
    mistakes = [
        Mistake("counted positive eigenvalues", "Weight each eigenvalue by its size: sum(λ) / sum(|λ|), not "
                "the fraction of eigenvalues with positive real part.", _eig_variant("count")),
        Mistake("absolute value of the sum", "Keep the sign of sum(λ): a circuit that *suppresses* tokens "
                "should score near -1.", _eig_variant("abs sum")),
        Mistake("real parts in the denominator", "The denominator is the complex modulus |λ| (`.abs()` of "
                "the complex eigenvalues), not |Re λ|.", _eig_variant("real parts")),
        Mistake("not normalised", "Divide by sum(|λ|) so the score lies between -1 and 1.",
                _eig_variant("no normalising")),
    ]
    A, B = check.randn(3, 2, 12, 5), check.randn(3, 2, 5, 12)
    check.case("random low-rank circuits [3, 2]", FactoredMatrix(A, B), mistakes=mistakes)
    A = check.randn(2, 10, 4)
    copying = FactoredMatrix(A, A.transpose(-1, -2) + 0.6 * check.randn(2, 4, 10))
    check.case("copying and anti-copying", FactoredMatrix(torch.cat([A, -A]), torch.cat([copying.B, copying.B])),
               mistakes=mistakes)


def _composition_variant(kind):
    def variant(W_A, W_B):
        if kind == "spectral":
            spectral = lambda m: m.S[..., 0]  # noqa: E731
            return spectral(W_A @ W_B) / (spectral(W_A) * spectral(W_B))
        if kind == "squared":
            return (W_A @ W_B).norm() ** 2 / (W_A.norm() ** 2 * W_B.norm() ** 2)
        if kind == "unnormalised":
            return (W_A @ W_B).norm()
        if kind == "sum of norms":
            return (W_A @ W_B).norm() / (W_A.norm() + W_B.norm())
        if kind == "reversed":
            return (W_B @ W_A).norm() / (W_A.norm() * W_B.norm())
        raise ValueError(kind)
    return variant


@exercise(difficulty=1, minutes=10, atol=1e-5, rtol=1e-3, hints=[
    "FactoredMatrix has `.norm()` (the Frobenius norm, over the last two axes) and supports `@`.",
    "Divide the norm of the product W_A @ W_B by the product of the two norms.",
    "`(W_A @ W_B).norm() / (W_A.norm() * W_B.norm())`.",
])
def test_composition_score(check):
    mistakes = [
        Mistake("spectral norm", "Use the Frobenius norm (`.norm()`, the root of the sum of squared entries), "
                "not the largest singular value.", _composition_variant("spectral")),
        Mistake("squared norms", "Use the norms themselves, not their squares.", _composition_variant("squared")),
        Mistake("not normalised", "Divide by ||W_A||_F ||W_B||_F so the score doesn't depend on scale.",
                _composition_variant("unnormalised")),
        Mistake("sum of norms", "Divide by the *product* ||W_A||_F ||W_B||_F.",
                _composition_variant("sum of norms")),
        Mistake("product reversed", "W_A writes and W_B reads: the product is W_A @ W_B (in this order).",
                _composition_variant("reversed")),
    ]
    W_A = FactoredMatrix(check.randn(16, 4), check.randn(4, 16, scale=2.0))
    W_B = FactoredMatrix(check.randn(16, 4, scale=0.5), check.randn(4, 16))
    check.case("one pair", W_A, W_B, mistakes=mistakes)
    aligned = FactoredMatrix(check.randn(3, 16, 4), check.randn(3, 4, 16))
    check.case("a batch of three pairs", aligned, FactoredMatrix(aligned.B.transpose(-1, -2), check.randn(3, 4, 16)),
               mistakes=mistakes)
    scores = check.run(W_A, W_B, case="scale invariance")
    scaled = check.run(FactoredMatrix(W_A.A * 10, W_A.B), W_B, case="scale invariance")
    check.expect(torch.allclose(torch.as_tensor(scores, dtype=torch.float32),
                                torch.as_tensor(scaled, dtype=torch.float32), rtol=1e-3),
                 case="scale invariance", message="scaling W_A by 10 changed the score",
                 hint="Normalise by the norms of both matrices.", mistake="not normalised")


def _k_comp_variant(kind):
    def variant(model):
        ov0, qk1, ov1 = model.OV[0][:, None], model.QK[1][None], model.OV[1][None]
        if kind == "q":
            scores = ref.composition_score(ov0, qk1)
        elif kind == "v":
            scores = ref.composition_score(ov0, ov1)
        elif kind == "transposed":
            scores = ref.composition_score(ov0, qk1.T).T
        elif kind == "reader first":
            scores = ref.composition_score(qk1.T, ov0)
        else:
            raise ValueError(kind)
        return scores
    return variant


@exercise(difficulty=2, minutes=15, atol=1e-5, rtol=1e-3, hints=[
    "A layer-0 head writes x @ OV into the residual stream; at a key position, a layer-1 head scores it "
    "against a query q as q @ QK @ (x @ OV).T. So the writer is OV[0, i] and the reader is QK[1, j].T.",
    "Use your composition_score on model.OV[0] (shape [head_0, d, d]) and model.QK[1].T, broadcast to "
    "[head_0, head_1] with `.unsqueeze(1)` and `.unsqueeze(0)` (or two loops).",
    "`composition_score(model.OV[0].unsqueeze(1), model.QK[1].T.unsqueeze(0))`; rows are layer-0 heads.",
])
def test_k_composition_scores(check):
    mistakes = [
        Mistake("Q-composition", "That is Q-composition (OV @ QK). For K-composition the layer-0 output "
                "enters the *key* side: use QK.T (OV @ QK.T).", _k_comp_variant("q")),
        Mistake("V-composition", "That is V-composition (OV @ OV). K-composition reads through the layer-1 "
                "QK circuit.", _k_comp_variant("v")),
        Mistake("transposed", "Rows are layer-0 heads (writers) and columns layer-1 heads (readers).",
                _k_comp_variant("transposed")),
        Mistake("reader first", "The writer comes first: composition_score(OV of layer 0, QK.T of layer 1).",
                _k_comp_variant("reader first")),
    ]
    check.case("a random 2-layer model", _model(check), mistakes=mistakes)
    check.case("another seed", _model(check, seed=1), mistakes=mistakes)


def _random_factors(kind, W_A, W_B, n_samples):
    """Random pairs drawn the way a learner with this mistake would draw them."""
    def like(m):
        a, b = m.A.shape[-2:], m.B.shape[-2:]
        if kind == "full rank":
            d = m.shape[-1]
            return FactoredMatrix(torch.randn(n_samples, m.shape[-2], d), torch.eye(d).expand(n_samples, d, d))
        if kind == "uniform":
            return FactoredMatrix(torch.rand(n_samples, *a), torch.rand(n_samples, *b))
        if kind == "factor shapes swapped":
            return FactoredMatrix(torch.randn(n_samples, *b), torch.randn(n_samples, *a))
        return FactoredMatrix(torch.randn(n_samples, *a), torch.randn(n_samples, *b))
    return like(W_A), like(W_B)


@functools.lru_cache(maxsize=None)
def _score_stats(kind: str, d_model: int, d_head: int) -> tuple[float, float]:
    """(mean, std) of the composition scores a sampling scheme gives, to high precision.

    Computed on the dense products (Frobenius norms need no SVD), so that diagnosing a
    mistake costs milliseconds, not the seconds FactoredMatrix's batched SVDs would.
    """
    shape = FactoredMatrix(torch.zeros(d_model, d_head), torch.zeros(d_head, d_model))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        W_A, W_B = (m.AB for m in _random_factors(kind, shape, shape, 8_000))
    norm = lambda m: torch.linalg.matrix_norm(m)  # noqa: E731  (Frobenius)
    scores = norm(W_A @ W_B) / (norm(W_A) * norm(W_B))
    return scores.mean().item(), scores.std().item()


def _stats(scores) -> tuple[float, float]:
    scores = torch.as_tensor(scores).detach().float().cpu()
    return scores.mean().item(), scores.std().item()


@exercise(difficulty=2, minutes=15, timeout=20.0, timeout_hint=(
    "A loop over the samples is fine if each step is one small FactoredMatrix and one composition_score "
    "call; anything heavier per sample (SVDs, full d_model x d_model products, Python loops over entries) "
    "is too slow for thousands of samples. Then draw every sample at once: a leading n_samples axis in "
    "torch.randn, and one composition_score call on the batch."), hints=[
    "A fair baseline looks like the real matrices in everything but alignment: the same shapes *and* the "
    "same factored form, hence the same rank (d_head).",
    "Draw standard-normal factors shaped like W_A.A, W_A.B, W_B.A and W_B.B with a leading n_samples axis, "
    "wrap them in FactoredMatrix, and call composition_score once on the whole batch.",
    "`FactoredMatrix(torch.randn(n_samples, *W_A.A.shape), torch.randn(n_samples, *W_A.B.shape))`, the same "
    "for W_B; torch.randn, not torch.rand.",
])
def test_random_composition_scores(check):
    d_model, d_head, n_samples = 32, 4, 2000
    W_A = FactoredMatrix(check.randn(d_model, d_head), check.randn(d_head, d_model))
    W_B = FactoredMatrix(check.randn(d_model, d_head), check.randn(d_head, d_model))
    case = f"d_model {d_model}, d_head {d_head}, {n_samples} samples"
    scores = check.run(W_A, W_B, n_samples, case=case)
    check.expect(isinstance(scores, torch.Tensor) and tuple(scores.shape) == (n_samples,), case=case,
                 message=f"expected a tensor of {n_samples} scores, got "
                         f"{tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__}",
                 hint="Return one score per random pair (shape [n_samples]), not their mean.")
    check.expect(torch.as_tensor(scores).detach().unique().numel() > 1, case=case, message="all the random scores are identical",
                 hint="Draw new random matrices for every sample: a leading n_samples axis in torch.randn, "
                      "not one draw expanded or repeated.")
    mistakes = [
        Mistake("full-rank random matrices", "The real matrices have rank d_head: sample their factors "
                "(shapes of W_A.A and W_A.B), not full d_model x d_model matrices. Full-rank ones give "
                "almost the same mean but far too narrow a spread.",
                lambda *args: _score_stats("full rank", d_model, d_head)),
        Mistake("uniform random numbers", "Use torch.randn (mean zero). torch.rand's entries are all "
                "positive, so random matrices come out aligned.",
                lambda *args: _score_stats("uniform", d_model, d_head)),
        Mistake("factor shapes swapped", "The left factor has the shape of W_A.A ([d_model, d_head]) and the "
                "right one that of W_A.B ([d_head, d_model]); yours multiply to d_head x d_head matrices.",
                lambda *args: _score_stats("factor shapes swapped", d_model, d_head)),
    ]
    # sampled statistics: compare with the exact ones, allowing ~5 standard errors
    check.compare(_stats(scores), _score_stats("right", d_model, d_head), case=case, atol=0.008, rtol=0.0,
                  inputs=((W_A, W_B, n_samples), {}), mistakes=mistakes,
                  hint="The mean or spread of your random scores is off: sample standard-normal factors "
                       "shaped like W_A.A, W_A.B, W_B.A, W_B.B and apply composition_score.")
