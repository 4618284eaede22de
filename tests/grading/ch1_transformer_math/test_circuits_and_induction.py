"""Learner variants for the 1.2 "Circuits and induction heads" graders."""

from functools import partial

import einops
import torch
import torch.nn.functional as F
from transformer_lens import FactoredMatrix

from solutions.ch1_transformer_math import circuits_and_induction as ref
from tests.grading.variants import Right, Wrong, test_variant_is_graded_as_expected  # noqa: F401 (runs VARIANTS)

# -- correct_token_log_probs ------------------------------------------------------------------


def _lp_not_shifted(logits, tokens):
    log_probs = logits.log_softmax(-1)[:, :-1]
    return log_probs.gather(-1, tokens[:, :-1, None])[..., 0]


def _lp_wrong_shift(logits, tokens):
    return logits[:, 1:].log_softmax(-1).gather(-1, tokens[:, :-1].unsqueeze(-1)).squeeze(-1)


def _lp_softmax(logits, tokens):
    return logits[:, :-1].softmax(-1).gather(-1, tokens[:, 1:].unsqueeze(-1)).squeeze(-1)


def _lp_raw(logits, tokens):
    return logits[:, :-1].gather(-1, tokens[:, 1:].unsqueeze(-1)).squeeze(-1)


def _lp_over_positions(logits, tokens):
    return torch.log_softmax(logits[:, :-1], dim=1).gather(2, tokens[:, 1:].unsqueeze(2)).squeeze(2)


def _lp_cross_entropy(logits, tokens):
    return -F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")


def _lp_indexing(logits, tokens):
    log_probs = logits.log_softmax(-1)
    batch, pos = torch.meshgrid(torch.arange(tokens.shape[0]), torch.arange(tokens.shape[1] - 1), indexing="ij")
    return log_probs[batch, pos, tokens[:, 1:]]


# -- repeated_sequence_losses --------------------------------------------------------------------


def _rl_token_positions(log_probs, seq_len):
    return -log_probs[:, 2:seq_len + 1].mean(), -log_probs[:, seq_len + 2:].mean()


def _rl_with_first(log_probs, seq_len):
    return -log_probs[:, :seq_len].mean(), -log_probs[:, seq_len:].mean()


def _rl_positive(log_probs, seq_len):
    return log_probs[:, 1:seq_len].mean(), log_probs[:, seq_len + 1:].mean()


def _rl_swapped(log_probs, seq_len):
    return -log_probs[:, seq_len + 1:].mean(), -log_probs[:, 1:seq_len].mean()


def _rl_loop(log_probs, seq_len):
    first = [-log_probs[:, p] for p in range(1, seq_len)]
    second = [-log_probs[:, p] for p in range(seq_len + 1, 2 * seq_len)]
    return torch.stack(first).mean(), torch.stack(second).mean()


# -- head scores -------------------------------------------------------------------------------


def _prev_upper(pattern):
    return pattern.diagonal(offset=1, dim1=-2, dim2=-1).mean((0, -1))


def _prev_transposed(pattern):
    return pattern.transpose(-1, -2).diagonal(offset=-1, dim1=-2, dim2=-1).mean((0, -1))


def _prev_self(pattern):
    return pattern.diagonal(dim1=-2, dim2=-1).mean((0, -1))


def _prev_mask_all_queries(pattern):
    mask = torch.diag(torch.ones(pattern.shape[-1] - 1), diagonal=-1)
    return (pattern * mask).sum(-1).mean((0, 2))


def _prev_over_heads(pattern):
    return pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean((0, 1))


def _prev_loop(pattern):
    scores = torch.zeros(pattern.shape[1])
    for h in range(pattern.shape[1]):
        scores[h] = torch.stack([pattern[:, h, q, q - 1] for q in range(1, pattern.shape[-1])]).mean()
    return scores


def _prev_mask(pattern):
    mask = torch.diag(torch.ones(pattern.shape[-1] - 1), diagonal=-1)
    return einops.einsum(pattern, mask, "b h q k, q k -> h") / (pattern.shape[0] * (pattern.shape[-1] - 1))


def _dup_induction_offset(pattern, seq_len):
    return pattern.diagonal(offset=-seq_len + 1, dim1=2, dim2=3)[..., -seq_len:].mean((0, 2))


def _dup_whole_diagonal(pattern, seq_len):
    return pattern.diagonal(offset=-seq_len, dim1=2, dim2=3).mean((0, 2))


def _dup_no_bos(pattern, seq_len):
    queries = torch.arange(seq_len, 2 * seq_len)
    return pattern[:, :, queries, queries - seq_len].mean((0, 2))


def _dup_over_heads(pattern, seq_len):
    return pattern.diagonal(offset=-seq_len, dim1=2, dim2=3)[..., 1:].mean((0, 1))


def _dup_index(pattern, seq_len):
    queries = torch.arange(seq_len + 1, 2 * seq_len + 1)
    return pattern[:, :, queries, queries - seq_len].mean((0, 2))


def _ind_duplicate(pattern, seq_len):
    queries = torch.arange(seq_len + 1, 2 * seq_len + 1)
    return pattern[:, :, queries, queries - seq_len].mean((0, 2))


def _ind_two_ahead(pattern, seq_len):
    queries = torch.arange(seq_len + 1, 2 * seq_len + 1)
    return pattern[:, :, queries, queries - seq_len + 2].mean((0, 2))


def _ind_whole_diagonal(pattern, seq_len):
    return pattern.diagonal(offset=1 - seq_len, dim1=-2, dim2=-1).mean((0, -1))


def _ind_no_bos(pattern, seq_len):
    queries = torch.arange(seq_len, 2 * seq_len)
    return pattern[:, :, queries, queries - seq_len + 1].mean((0, 2))


def _ind_over_heads(pattern, seq_len):
    queries = torch.arange(seq_len + 1, 2 * seq_len + 1)
    return pattern[:, :, queries, queries - seq_len + 1].mean((0, 1))


def _ind_index(pattern, seq_len):
    queries = torch.arange(seq_len + 1, 2 * seq_len + 1)
    return einops.reduce(pattern[:, :, queries, queries - seq_len + 1], "b h q -> h", "mean")


def _ind_loop(pattern, seq_len):
    total = torch.zeros(pattern.shape[1])
    for q in range(seq_len + 1, 2 * seq_len + 1):
        total += pattern[:, :, q, q - seq_len + 1].mean(0)
    return total / seq_len


# -- direct logit attribution, logit lens ------------------------------------------------------


def _dla_current(components, W_U, tokens):
    return einops.einsum(components[:, :, :-1], W_U[:, tokens[:, :-1]], "c b p d, d b p -> c b p")


def _dla_shift_components(components, W_U, tokens):
    return einops.einsum(components[:, :, 1:], W_U[:, tokens[:, 1:]], "c b p d, d b p -> c b p")


def _dla_summed(components, W_U, tokens):
    return einops.einsum(components[:, :, :-1], W_U[:, tokens[:, 1:]], "c b p d, d b p -> b p")


def _dla_log_softmax(components, W_U, tokens):
    log_probs = (components[:, :, :-1] @ W_U).log_softmax(-1)
    return log_probs.gather(-1, tokens[None, :, 1:, None].expand(components.shape[0], -1, -1, 1)).squeeze(-1)


def _dla_full_logits(components, W_U, tokens):
    logits = components @ W_U
    index = einops.repeat(tokens[:, 1:], "b p -> c b p 1", c=components.shape[0])
    return logits[:, :, :-1].gather(-1, index).squeeze(-1)


def _dla_transpose_wu(components, W_U, tokens):
    return einops.einsum(components[:, :, :-1], W_U.T[tokens[:, 1:]], "c b p d, b p d -> c b p")


def _lens_no_bias(resid, W_U, b_U, tokens):
    log_probs = (resid[:, :, :-1] @ W_U).log_softmax(-1)
    return log_probs.gather(-1, einops.repeat(tokens[:, 1:], "b p -> l b p 1", l=resid.shape[0])).squeeze(-1)


def _lens_raw(resid, W_U, b_U, tokens):
    logits = resid[:, :, :-1] @ W_U + b_U
    return logits.gather(-1, einops.repeat(tokens[:, 1:], "b p -> l b p 1", l=resid.shape[0])).squeeze(-1)


def _lens_over_layers(resid, W_U, b_U, tokens):
    log_probs = (resid[:, :, :-1] @ W_U + b_U).log_softmax(0)
    return log_probs.gather(-1, einops.repeat(tokens[:, 1:], "b p -> l b p 1", l=resid.shape[0])).squeeze(-1)


def _lens_current(resid, W_U, b_U, tokens):
    return torch.stack([(layer[:, :-1] @ W_U + b_U).log_softmax(-1).gather(-1, tokens[:, :-1, None])[..., 0]
                        for layer in resid])


def _lens_reuse(resid, W_U, b_U, tokens):
    return torch.stack([ref.correct_token_log_probs(layer @ W_U + b_U, tokens) for layer in resid])


# -- hooks ---------------------------------------------------------------------------------------


def _zero_pos_axis(z, hook, head):
    z = z.clone()
    z[:, head] = 0
    return z


def _zero_others(z, hook, head):
    keep = torch.zeros(z.shape[2], device=z.device)
    keep[head] = 1
    return z * keep[:, None]


def _zero_no_return(z, hook, head):
    z = z.clone()
    z[:, :, head] = 0


def _zero_in_place(z, hook, head):
    z[:, :, head] = 0
    return z


def _zero_last_axis(z, hook, head):
    z = z.clone()
    z[..., head] = 0
    return z


def _zero_mask(z, hook, head):
    mask = torch.ones(z.shape[2], 1, device=z.device)
    mask[head] = 0
    return z * mask


def _zero_cat(z, hook, head):
    return torch.cat([z[:, :, :head], torch.zeros_like(z[:, :, head:head + 1]), z[:, :, head + 1:]], dim=2)


def _mean_over_pos(z, hook, head):
    z = z.clone()
    z[:, :, head] = z[:, :, head].mean(dim=1, keepdim=True)
    return z


def _mean_over_both(z, hook, head):
    z = z.clone()
    z[:, :, head] = z[:, :, head].mean(dim=(0, 1))
    return z


def _mean_wrong_axis(z, hook, head):
    z = z.clone()
    z[:, head] = z[:, head].mean(0)
    return z


def _mean_in_place(z, hook, head):
    z[:, :, head] = z[:, :, head].mean(0)
    return z


def _mean_zeroed(z, hook, head):
    out = z.clone()
    out[:, :, head] = 0
    return out


def _mean_einops(z, hook, head):
    mean = einops.repeat(z[:, :, head].mean(0), "pos d -> batch pos d", batch=z.shape[0])
    return torch.cat([z[:, :, :head], mean[:, :, None], z[:, :, head + 1:]], dim=2)


# -- head_ablation_losses ----------------------------------------------------------------------


def _ablation(model, tokens, seq_len, ablation_hook=ref.zero_ablate_head_hook, *, half=1, whole=False,
              transpose=False, accumulate=False, no_grad=False):
    losses = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            name = f"blocks.{layer}.attn.hook_z"
            if accumulate:
                model.add_hook(name, partial(ablation_hook, head=head))
                logits = model(tokens)
            else:
                logits = model.run_with_hooks(tokens, fwd_hooks=[(name, partial(ablation_hook, head=head))])
            log_probs = ref.correct_token_log_probs(logits, tokens)
            loss = -log_probs.mean() if whole else ref.repeated_sequence_losses(log_probs, seq_len)[half]
            losses[layer, head] = loss
    if accumulate:
        model.reset_hooks()
    return losses.T if transpose else losses


def _ablation_list(model, tokens, seq_len, ablation_hook=ref.zero_ablate_head_hook):
    rows = []
    with torch.no_grad():
        for layer in range(model.cfg.n_layers):
            row = []
            for head in range(model.cfg.n_heads):
                hook = lambda z, hook, head=head: ablation_hook(z, hook, head)  # noqa: E731
                logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", hook)])
                log_probs = logits.log_softmax(-1)[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]
                row.append(-log_probs[:, seq_len + 1:].mean())
            rows.append(torch.stack(row))
    return torch.stack(rows)


# -- positional QK pattern ---------------------------------------------------------------------


def _pos_pattern(W_pos, W_Q, b_Q, W_K, b_K, *, scale=True, mask=True, dim=-1, swap=False, bias=True):
    q = W_pos @ W_Q + (b_Q if bias else 0)
    k = W_pos @ W_K + (b_K if bias else 0)
    scores = k @ q.T if swap else q @ k.T
    if scale:
        scores = scores / W_Q.shape[1] ** 0.5
    if mask:
        scores = torch.where(torch.ones_like(scores).tril().bool(), scores, torch.tensor(-1e9))
    return torch.softmax(scores, dim=dim)


def _pos_pattern_factored(W_pos, W_Q, b_Q, W_K, b_K):
    qk = FactoredMatrix(W_pos @ W_Q + b_Q, (W_pos @ W_K + b_K).T)
    scores = qk.AB / W_Q.shape[1] ** 0.5
    return scores.masked_fill(~torch.ones_like(scores, dtype=torch.bool).tril(), float("-inf")).softmax(-1)


# -- OV circuits -------------------------------------------------------------------------------


def _top1(full_ov, *, dim=-1, argmin=False, count=False):
    pick = full_ov.argmin(dim) if argmin else full_ov.argmax(dim)
    hits = pick == torch.arange(len(full_ov))
    return hits.sum().item() if count else hits.float().mean().item()


def _top1_loop(full_ov):
    return sum(int(full_ov[s].argmax() == s) for s in range(full_ov.shape[0])) / full_ov.shape[0]


def _top1_diag_max(full_ov):
    return (full_ov.diagonal() >= full_ov.max(dim=1).values).float().mean()


def _eig_count(matrix):
    return (matrix.eigenvalues.real > 0).float().mean(-1)


def _eig_abs_sum(matrix):
    ev = matrix.eigenvalues
    return ev.sum(-1).abs() / ev.abs().sum(-1)


def _eig_real_parts(matrix):
    ev = matrix.eigenvalues.real
    return ev.sum(-1) / ev.abs().sum(-1)


def _eig_unnormalised(matrix):
    return matrix.eigenvalues.sum(-1).real


def _eig_dense(matrix):
    ev = torch.linalg.eigvals(matrix.BA)
    return ev.sum(-1).real / ev.abs().sum(-1)


def _eig_trace(matrix):
    return torch.diagonal(matrix.BA, dim1=-2, dim2=-1).sum(-1) / matrix.eigenvalues.abs().sum(-1)


def _comp_spectral(W_A, W_B):
    return torch.linalg.matrix_norm((W_A @ W_B).AB, ord=2) / (
        torch.linalg.matrix_norm(W_A.AB, ord=2) * torch.linalg.matrix_norm(W_B.AB, ord=2))


def _comp_squared(W_A, W_B):
    return (W_A @ W_B).AB.pow(2).sum((-2, -1)) / (W_A.AB.pow(2).sum((-2, -1)) * W_B.AB.pow(2).sum((-2, -1)))


def _comp_unnormalised(W_A, W_B):
    return (W_A @ W_B).norm()


def _comp_sum(W_A, W_B):
    return (W_A @ W_B).norm() / (W_A.norm() + W_B.norm())


def _comp_reversed(W_A, W_B):
    return (W_B @ W_A).norm() / (W_A.norm() * W_B.norm())


def _comp_dense(W_A, W_B):
    A, B = W_A.AB, W_B.AB
    return torch.linalg.matrix_norm(A @ B) / (torch.linalg.matrix_norm(A) * torch.linalg.matrix_norm(B))


def _kcomp_q(model):
    return ref.composition_score(model.OV[0].unsqueeze(1), model.QK[1].unsqueeze(0))


def _kcomp_v(model):
    return ref.composition_score(model.OV[0].unsqueeze(1), model.OV[1].unsqueeze(0))


def _kcomp_transposed(model):
    return torch.stack([torch.stack([ref.composition_score(model.OV[0, i], model.QK[1, j].T)
                                     for i in range(model.cfg.n_heads)]) for j in range(model.cfg.n_heads)])


def _kcomp_reader_first(model):
    return ref.composition_score(model.QK[1].T.unsqueeze(0), model.OV[0].unsqueeze(1))


def _kcomp_loops(model):
    n = model.cfg.n_heads
    scores = torch.zeros(n, n)
    for i in range(n):
        for j in range(n):
            scores[i, j] = ref.composition_score(model.OV[0, i], model.QK[1, j].T)
    return scores


def _kcomp_dense(model):
    ov = model.W_V[0] @ model.W_O[0]
    qk = model.W_Q[1] @ model.W_K[1].transpose(-1, -2)
    prod = einops.einsum(ov, qk, "h0 a b, h1 c b -> h0 h1 a c")
    norms = torch.linalg.matrix_norm
    return norms(prod) / (norms(ov)[:, None] * norms(qk)[None, :])


def _baseline(W_A, W_B, n_samples=1000, *, kind="right"):
    def like(m):
        if kind == "full rank":
            return FactoredMatrix(torch.randn(n_samples, *m.shape), torch.eye(m.shape[-1]))
        if kind == "uniform":
            return FactoredMatrix(torch.rand(n_samples, *m.A.shape), torch.rand(n_samples, *m.B.shape))
        if kind == "swapped":
            return FactoredMatrix(torch.randn(n_samples, *m.B.shape), torch.randn(n_samples, *m.A.shape))
        return FactoredMatrix(torch.randn(n_samples, *m.A.shape), torch.randn(n_samples, *m.B.shape))
    return ref.composition_score(like(W_A), like(W_B))


def _baseline_one_draw(W_A, W_B, n_samples=1000):
    A = FactoredMatrix(torch.randn(W_A.A.shape), torch.randn(W_A.B.shape))
    B = FactoredMatrix(torch.randn(W_B.A.shape), torch.randn(W_B.B.shape))
    return ref.composition_score(A, B).expand(n_samples)


def _baseline_mean(W_A, W_B, n_samples=1000):
    return _baseline(W_A, W_B, n_samples).mean()


def _baseline_dense_loop(W_A, W_B, n_samples=1000):
    scores = []
    for _ in range(n_samples):
        A = torch.randn(W_A.A.shape) @ torch.randn(W_A.B.shape)
        B = torch.randn(W_B.A.shape) @ torch.randn(W_B.B.shape)
        scores.append((A @ B).norm() / (A.norm() * B.norm()))
    return torch.stack(scores)


def _baseline_factored_loop(W_A, W_B, n_samples=1000):
    scores = []
    for _ in range(n_samples):
        A = FactoredMatrix(torch.randn(*W_A.A.shape), torch.randn(*W_A.B.shape))
        B = FactoredMatrix(torch.randn(*W_B.A.shape), torch.randn(*W_B.B.shape))
        scores.append(ref.composition_score(A, B))
    return torch.stack(scores)


def _baseline_scaled(W_A, W_B, n_samples=1000):
    """Matching the real matrices' scale changes nothing: the score is scale-free."""
    std = W_A.A.std()
    A = FactoredMatrix(std * torch.randn(n_samples, *W_A.A.shape), torch.randn(n_samples, *W_A.B.shape))
    B = FactoredMatrix(torch.randn(n_samples, *W_B.A.shape), 3 * torch.randn(n_samples, *W_B.B.shape))
    return ref.composition_score(A, B)


VARIANTS = {
    "ch1.correct_token_log_probs": [
        Wrong("log-probs of the current token", _lp_not_shifted, mistake="not shifted"),
        Wrong("dropped the first logit instead of the last", _lp_wrong_shift, mistake="shifted the wrong way"),
        Wrong("softmax instead of log_softmax", _lp_softmax, mistake="probabilities"),
        Wrong("gathered raw logits", _lp_raw, mistake="raw logits"),
        Wrong("log_softmax over positions", _lp_over_positions, mistake="log_softmax over positions"),
        Right("negated cross_entropy", _lp_cross_entropy),
        Right("advanced indexing", _lp_indexing),
    ],
    "ch1.repeated_sequence_losses": [
        Wrong("indexed log_probs by token position", _rl_token_positions, mistake="indexed by token position"),
        Wrong("kept each copy's first token", _rl_with_first, mistake="kept the first token of each copy"),
        Wrong("mean log-prob, not loss", _rl_positive, mistake="log-probs, not losses"),
        Wrong("returned (second, first)", _rl_swapped, mistake="halves swapped"),
        Right("loop over positions", _rl_loop),
    ],
    "ch1.previous_token_scores": [
        Wrong("diagonal above the main one", _prev_upper, mistake="above the diagonal"),
        Wrong("transposed the pattern first", _prev_transposed, mistake="above the diagonal"),
        Wrong("main diagonal", _prev_self, mistake="main diagonal"),
        Wrong("mask averaged over every query", _prev_mask_all_queries, mistake="counted the first query"),
        Wrong("averaged over heads", _prev_over_heads, mistake="averaged over heads"),
        Right("loop over heads and queries", _prev_loop),
        Right("einsum with a shifted identity", _prev_mask),
    ],
    "ch1.duplicate_token_scores": [
        Wrong("induction offset", _dup_induction_offset, mistake="induction offset"),
        Wrong("whole diagonal", _dup_whole_diagonal, mistake="included the first copy"),
        Wrong("forgot the BOS shift", _dup_no_bos, mistake="forgot BOS"),
        Wrong("averaged over heads", _dup_over_heads, mistake="averaged over heads"),
        Right("advanced indexing", _dup_index),
    ],
    "ch1.induction_scores": [
        Wrong("attended to the earlier occurrence itself", _ind_duplicate,
              mistake="off by one (duplicate-token offset)"),
        Wrong("two past the earlier occurrence", _ind_two_ahead, mistake="off by one (two ahead)"),
        Wrong("whole diagonal (first copy too)", _ind_whole_diagonal, mistake="included the first copy"),
        Wrong("forgot the BOS shift", _ind_no_bos, mistake="forgot BOS"),
        Wrong("averaged over heads", _ind_over_heads, mistake="averaged over heads"),
        Right("advanced indexing + einops", _ind_index),
        Right("loop over queries", _ind_loop),
    ],
    "ch1.direct_logit_attribution": [
        Wrong("attributed to the current token", _dla_current, mistake="current token"),
        Wrong("dropped the first position", _dla_shift_components, mistake="shifted components"),
        Wrong("summed over components", _dla_summed, mistake="summed components"),
        Wrong("log_softmax per component", _dla_log_softmax, mistake="log_softmax per component"),
        Right("full logits then gather", _dla_full_logits),
        Right("rows of W_U.T", _dla_transpose_wu),
    ],
    "ch1.logit_lens_log_probs": [
        Wrong("no unembedding bias", _lens_no_bias, mistake="forgot b_U"),
        Wrong("raw logits", _lens_raw, mistake="raw logits"),
        Wrong("log_softmax over layers", _lens_over_layers, mistake="softmax over layers"),
        Wrong("current token", _lens_current, mistake="current token"),
        Right("correct_token_log_probs on each layer", _lens_reuse),
    ],
    "ch1.zero_ablate_head_hook": [
        Wrong("indexed the position axis", _zero_pos_axis, mistake="wrong axis"),
        Wrong("kept only the chosen head", _zero_others, mistake="zeroed the other heads"),
        Wrong("no return", _zero_no_return, mistake="forgot to return"),
        Wrong("edits z in place", _zero_in_place, mistake="in-place edit"),
        Wrong("indexed the last axis", _zero_last_axis, mistake="zeroed d_head slice"),
        Right("multiply by a mask", _zero_mask),
        Right("concatenate around the head", _zero_cat),
    ],
    "ch1.mean_ablate_head_hook": [
        Wrong("mean over positions", _mean_over_pos, mistake="mean over positions"),
        Wrong("mean over batch and positions", _mean_over_both, mistake="mean over batch and positions"),
        Wrong("indexed the position axis", _mean_wrong_axis, mistake="wrong axis"),
        Wrong("edits z in place", _mean_in_place, mistake="in-place edit"),
        Wrong("zero instead of mean", _mean_zeroed, mistake="zeroed instead"),
        Right("einops.repeat + cat", _mean_einops),
    ],
    "ch1.head_ablation_losses": [
        Wrong("loss on the first copy", partial(_ablation, half=0), mistake="first copy"),
        Wrong("loss over the whole sequence", partial(_ablation, whole=True), mistake="whole sequence"),
        Wrong("returned [head, layer]", partial(_ablation, transpose=True), mistake="transposed"),
        Wrong("add_hook without reset_hooks", partial(_ablation, accumulate=True), mistake="hooks accumulate"),
        Right("lists, lambdas and no_grad", _ablation_list),
    ],
    "ch1.positional_qk_pattern": [
        Wrong("no 1/sqrt(d_head)", partial(_pos_pattern, scale=False), mistake="no scaling"),
        Wrong("no causal mask", partial(_pos_pattern, mask=False), mistake="no causal mask"),
        Wrong("softmax over queries", partial(_pos_pattern, dim=0), mistake="softmax over queries"),
        Wrong("k @ q.T", partial(_pos_pattern, swap=True), mistake="queries and keys swapped"),
        Wrong("no biases", partial(_pos_pattern, bias=False), mistake="forgot biases"),
        Right("tril mask with -1e9", _pos_pattern),
        Right("FactoredMatrix of q and k", _pos_pattern_factored),
    ],
    "ch1.full_ov_circuit": [
        Wrong("no W_E", lambda W_E, W_V, W_O, W_U: FactoredMatrix(W_V, W_O @ W_U), mistake="forgot W_E"),
        Wrong("no W_U", lambda W_E, W_V, W_O, W_U: FactoredMatrix(W_E @ W_V, W_O), mistake="forgot W_U"),
        Wrong("transposed chain", lambda W_E, W_V, W_O, W_U: W_U.T @ W_O.T @ W_V.T @ W_E.T, mistake="transposed"),
        Wrong("W_E @ W_U only", lambda W_E, W_V, W_O, W_U: W_E @ W_U, mistake="skipped the value"),
        Right("dense product", lambda W_E, W_V, W_O, W_U: W_E @ W_V @ W_O @ W_U),
        Right("FactoredMatrix chain", lambda W_E, W_V, W_O, W_U: W_E @ FactoredMatrix(W_V, W_O) @ W_U),
    ],
    "ch1.top1_copying_accuracy": [
        Wrong("argmax over dim 0", partial(_top1, dim=0), mistake="argmax over the wrong axis"),
        Wrong("argmin", partial(_top1, argmin=True), mistake="argmin"),
        Wrong("number of tokens", partial(_top1, count=True), mistake="count, not fraction"),
        Wrong("diagonal > 0", lambda m: (m.diagonal() > 0).float().mean().item(), mistake="positive diagonal"),
        Right("loop over rows", _top1_loop),
        Right("diagonal equals row max (tensor result)", _top1_diag_max),
    ],
    "ch1.eigenvalue_copying_score": [
        Wrong("fraction of positive eigenvalues", _eig_count, mistake="counted positive eigenvalues"),
        Wrong("|sum| / sum |.|", _eig_abs_sum, mistake="absolute value of the sum"),
        Wrong("real parts only", _eig_real_parts, mistake="real parts in the denominator"),
        Wrong("sum of eigenvalues", _eig_unnormalised, mistake="not normalised"),
        Right("torch.linalg.eigvals of BA", _eig_dense),
        Right("trace for the numerator", _eig_trace),
    ],
    "ch1.composition_score": [
        Wrong("spectral norm", _comp_spectral, mistake="spectral norm"),
        Wrong("squared Frobenius norms", _comp_squared, mistake="squared norms"),
        Wrong("no normalisation", _comp_unnormalised, mistake="not normalised"),
        Wrong("divided by the sum of norms", _comp_sum, mistake="sum of norms"),
        Wrong("W_B @ W_A", _comp_reversed, mistake="product reversed"),
        Right("dense matrices, torch.linalg.matrix_norm", _comp_dense),
    ],
    "ch1.k_composition_scores": [
        Wrong("OV @ QK (Q-composition)", _kcomp_q, mistake="Q-composition"),
        Wrong("OV @ OV (V-composition)", _kcomp_v, mistake="V-composition"),
        Wrong("rows are layer-1 heads", _kcomp_transposed, mistake="transposed"),
        Wrong("QK.T @ OV", _kcomp_reader_first, mistake="reader first"),
        Right("two loops", _kcomp_loops),
        Right("dense W_V W_O and W_Q W_K^T with einsum", _kcomp_dense),
    ],
    "ch1.random_composition_scores": [
        Wrong("full-rank random matrices", partial(_baseline, kind="full rank"), mistake="full-rank random matrices"),
        Wrong("torch.rand", partial(_baseline, kind="uniform"), mistake="uniform random numbers"),
        Wrong("factor shapes swapped", partial(_baseline, kind="swapped"), mistake="factor shapes swapped"),
        Wrong("one random pair, expanded", _baseline_one_draw, hint_contains="Draw new random matrices"),
        Wrong("returned the mean", _baseline_mean, hint_contains="not their mean"),
        Right("loop over dense samples", _baseline_dense_loop),
        Right("loop over FactoredMatrix samples", _baseline_factored_loop),
        Right("scaled random factors", _baseline_scaled),
    ],
}
