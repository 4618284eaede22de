"""Learner variants for the 8.1 "Attribution graphs" graders."""

import warnings
from collections import Counter

import einops
import torch
import torch.nn.functional as F

from tests.grading.variants import Right, Wrong, test_variant_is_graded_as_expected  # noqa: F401 (runs VARIANTS)

# -- 1. a model with a known two-hop computation --------------------------------------------------------


def _acc_gather(logits, end, answer):
    index = end[:, None, None].expand(-1, 1, logits.shape[-1])
    last = logits.gather(1, index)[:, 0]
    return (last.argmax(-1) == answer).float().mean().item()


def _acc_loop(logits, end, answer):
    right = 0
    for i in range(len(end)):
        if logits[i, end[i]].argmax() == answer[i]:
            right += 1
    return right / len(end)


def _acc_tensor(logits, end, answer):
    preds = logits[torch.arange(len(end)), end].argmax(dim=-1)
    return (preds == answer).float().mean()  # a 0-d tensor


def _acc_last(logits, end, answer):
    return (logits[:, -1, :].argmax(-1) == answer).float().mean().item()


def _acc_broadcast(logits, end, answer):
    return (logits[:, end].argmax(-1) == answer).float().mean().item()


def _acc_next(logits, end, answer):
    right = 0
    for i in range(len(end)):
        position = min(int(end[i]) + 1, logits.shape[1] - 1)
        right += int(logits[i, position].argmax() == answer[i])
    return right / len(end)


def _acc_count(logits, end, answer):
    return (logits[torch.arange(len(end)), end].argmax(-1) == answer).sum().item()


def _acc_percent(logits, end, answer):
    right = (logits[torch.arange(len(end)), end].argmax(-1) == answer).sum().item()
    return 100 * right / len(end)


def _lens_f(resid, ln_w, ln_b, W_U, city_tokens, eps=1e-5):
    x = F.layer_norm(resid, (resid.shape[-1],), ln_w, ln_b, eps)
    return (x @ W_U)[:, city_tokens].argmax(-1)


def _lens_rsqrt(resid, ln_w, ln_b, W_U, city_tokens, eps=1e-5):
    centred = resid - resid.mean(-1, keepdim=True)
    x = centred * torch.rsqrt(centred.var(-1, keepdim=True, unbiased=False) + eps)
    logits = einops.einsum(x * ln_w + ln_b, W_U[:, city_tokens], "batch d, d city -> batch city")
    return logits.argmax(-1)


def _lens_whole(resid, ln_w, ln_b, W_U, city_tokens, eps=1e-5):
    x = F.layer_norm(resid, (resid.shape[-1],), ln_w, ln_b, eps)
    return (x @ W_U).argmax(-1)


def _lens_ids(resid, ln_w, ln_b, W_U, city_tokens, eps=1e-5):
    x = F.layer_norm(resid, (resid.shape[-1],), ln_w, ln_b, eps)
    return city_tokens[(x @ W_U[:, city_tokens]).argmax(-1)]


def _lens_raw(resid, ln_w, ln_b, W_U, city_tokens, eps=1e-5):
    return (resid @ W_U[:, city_tokens]).argmax(-1)


def _lens_no_affine(resid, ln_w, ln_b, W_U, city_tokens, eps=1e-5):
    x = F.layer_norm(resid, (resid.shape[-1],), eps=eps)
    return (x @ W_U[:, city_tokens]).argmax(-1)


def _lens_rms(resid, ln_w, ln_b, W_U, city_tokens, eps=1e-5):
    x = resid / (resid.pow(2).mean(-1, keepdim=True) + eps).sqrt() * ln_w + ln_b
    return (x @ W_U[:, city_tokens]).argmax(-1)


# -- 2. transcoders -------------------------------------------------------------------------------------


def _topk_relu_first(x_in, W_enc, b_enc, k):
    acts = torch.relu(x_in @ W_enc + b_enc)
    top = acts.topk(k, dim=-1)
    return torch.zeros_like(acts).scatter(-1, top.indices, top.values)


def _topk_threshold(x_in, W_enc, b_enc, k):
    pre = einops.einsum(x_in, W_enc, "batch d, d lat -> batch lat") + b_enc
    kth = pre.topk(k, dim=-1).values[:, -1:]
    return torch.where(pre >= kth, torch.relu(pre), torch.zeros_like(pre))


def _topk_loop(x_in, W_enc, b_enc, k):
    out = torch.zeros(x_in.shape[0], W_enc.shape[1], device=x_in.device)
    for i in range(x_in.shape[0]):
        pre = x_in[i] @ W_enc + b_enc
        order = pre.argsort(descending=True)[:k]
        out[i, order] = pre[order].clamp(min=0)
    return out


def _topk_no_relu(x_in, W_enc, b_enc, k):
    pre = x_in @ W_enc + b_enc
    values, indices = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, indices, values)


def _topk_no_bias(x_in, W_enc, b_enc, k):
    pre = x_in @ W_enc
    values, indices = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, indices, values.relu())


def _topk_abs(x_in, W_enc, b_enc, k):
    pre = x_in @ W_enc + b_enc
    indices = pre.abs().topk(k, dim=-1).indices
    return torch.zeros_like(pre).scatter(-1, indices, pre.gather(-1, indices).relu())


def _topk_strict(x_in, W_enc, b_enc, k):
    pre = torch.relu(x_in @ W_enc + b_enc)
    kth = pre.topk(k, dim=-1).values[:, -1:]
    return pre * (pre > kth)


def _topk_relu_only(x_in, W_enc, b_enc, k):
    return torch.relu(x_in @ W_enc + b_enc)


def _decode_loop(acts, W_dec, b_dec):
    n_layers = acts.shape[1]
    outs = []
    for t in range(n_layers):
        total = b_dec[t].expand(acts.shape[0], -1)
        for s in range(t + 1):
            total = total + acts[:, s] @ W_dec[s, t].T
        outs.append(total)
    return torch.stack(outs, dim=1)


def _decode_tril(acts, W_dec, b_dec):
    n = acts.shape[1]
    mask = torch.tril(torch.ones(n, n, device=acts.device))  # [tgt, src]: src <= tgt
    W = einops.rearrange(W_dec, "src tgt d lat -> tgt src d lat") * mask[:, :, None, None]
    return torch.einsum("bsl,tsdl->btd", acts, W) + b_dec[None]


def _decode_no_mask(acts, W_dec, b_dec):
    return einops.einsum(acts, W_dec, "batch src lat, src tgt d lat -> batch tgt d") + b_dec


def _decode_strict(acts, W_dec, b_dec):
    n = acts.shape[1]
    out = b_dec.expand(acts.shape[0], -1, -1).clone()
    for t in range(n):
        for s in range(t):
            out[:, t] += acts[:, s] @ W_dec[s, t].T
    return out


def _decode_bias_in_loop(acts, W_dec, b_dec):
    n = acts.shape[1]
    out = torch.zeros(acts.shape[0], n, W_dec.shape[2], device=acts.device)
    for t in range(n):
        for s in range(t + 1):
            out[:, t] += acts[:, s] @ W_dec[s, t].T + b_dec[t]
    return out


def _decode_swapped(acts, W_dec, b_dec):
    n = acts.shape[1]
    out = []
    for t in range(n):
        out.append(sum(acts[:, s] @ W_dec[t, s].T for s in range(t + 1)) + b_dec[t])
    return torch.stack(out, dim=1)


def _decode_diagonal(acts, W_dec, b_dec):
    W = torch.stack([W_dec[l, l] for l in range(acts.shape[1])])
    return einops.einsum(acts, W, "batch layer lat, layer d lat -> batch layer d") + b_dec


def _decode_upper_wrong(acts, W_dec, b_dec):
    n = acts.shape[1]
    causal = torch.ones(n, n, device=acts.device).tril()  # meant [src, tgt]
    return einops.einsum(acts, W_dec * causal[:, :, None, None], "b s l, s t d l -> b t d") + b_dec


def _nmse_means(out_hat, out):
    return ((out_hat - out) ** 2).mean(dim=(0, 2)) / ((out - out.mean(0, keepdim=True)) ** 2).mean(dim=(0, 2))


def _nmse_var(out_hat, out):
    n = out.shape[0]
    error = F.mse_loss(out_hat, out, reduction="none").sum(-1).sum(0)
    return error / (out.var(dim=0, unbiased=False).sum(-1) * n)


def _nmse_uncentred(out_hat, out):
    return ((out_hat - out) ** 2).sum(dim=(0, 2)) / (out ** 2).sum(dim=(0, 2))


def _nmse_mean_over_d(out_hat, out):
    return ((out_hat - out) ** 2).sum(dim=(0, 2)) / ((out - out.mean(-1, keepdim=True)) ** 2).sum(dim=(0, 2))


def _nmse_hat(out_hat, out):
    return ((out_hat - out) ** 2).sum(dim=(0, 2)) / ((out_hat - out_hat.mean(0)) ** 2).sum(dim=(0, 2))


def _nmse_mixed(out_hat, out):
    return F.mse_loss(out_hat, out, reduction="none").mean(dim=(0, 2)) / (out - out.mean(0)).pow(2).sum(dim=(0, 2))


def _nmse_raw(out_hat, out):
    return (out_hat - out).pow(2).sum(dim=(0, 2))


def _kl_batchmean(logits, replaced, mask):
    return F.kl_div(replaced[mask].log_softmax(-1), logits[mask].log_softmax(-1), reduction="batchmean",
                    log_target=True).item()


def _kl_masked_sum(logits, replaced, mask):
    p = torch.softmax(logits, dim=-1)
    kl = (p * (torch.log_softmax(logits, -1) - torch.log_softmax(replaced, -1))).sum(-1)
    return (kl * mask).sum() / mask.sum()  # a 0-d tensor


def _kl_reversed(logits, replaced, mask):
    return F.kl_div(logits[mask].log_softmax(-1), replaced[mask].log_softmax(-1), reduction="batchmean",
                    log_target=True).item()


def _kl_everywhere(logits, replaced, mask):
    log_p, log_q = logits.log_softmax(-1), replaced.log_softmax(-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean().item()


def _kl_per_prompt(logits, replaced, mask):
    log_p, log_q = logits.log_softmax(-1), replaced.log_softmax(-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1) * mask
    return (kl.sum(1) / mask.sum(1)).mean().item()


def _kl_probs(logits, replaced, mask):
    p, q = logits[mask].softmax(-1), replaced[mask].softmax(-1)
    return (p * (p - q)).sum(-1).mean().item()


def _kl_mean(logits, replaced, mask):
    with warnings.catch_warnings():  # torch's own warning about reduction='mean' (kept out of the test log)
        warnings.simplefilter("ignore")
        return F.kl_div(replaced[mask].log_softmax(-1), logits[mask].log_softmax(-1), reduction="mean",
                        log_target=True).item()


def _kl_sum(logits, replaced, mask):
    log_p, log_q = logits[mask].log_softmax(-1), replaced[mask].log_softmax(-1)
    return (log_p.exp() * (log_p - log_q)).sum().item()


def _kl_zero_padding(logits, replaced, mask):
    log_p, log_q = logits.log_softmax(-1), replaced.log_softmax(-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)
    return (kl * mask.float()).mean().item()


# -- 3. the local replacement model ------------------------------------------------------------------


def _fln_reciprocal(x, scale, w, b):
    return (x - x.mean(-1, keepdim=True)) * scale.reciprocal() * w + b


def _fln_centring_matrix(x, scale, w, b):
    d = x.shape[-1]
    centre = torch.eye(d, device=x.device) - torch.full((d, d), 1 / d, device=x.device)
    return (x @ centre) / scale * w + b


def _fln_torch(x, scale, w, b):
    return F.layer_norm(x, (x.shape[-1],), w, b)


def _fln_std(x, scale, w, b):
    return (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True) * w + b


def _fln_precedence(x, scale, w, b):
    return (x - x.mean(dim=-1, keepdim=True) / scale) * w + b


def _fln_positions(x, scale, w, b):
    return (x - x.mean(0)) / scale * w + b


def _fln_times(x, scale, w, b):
    return (x - x.mean(-1, keepdim=True)) * scale * w + b


def _fln_in_place(x, scale, w, b):
    x -= x.mean(-1, keepdim=True)
    return x / scale * w + b


def _attn_loop(x, pattern, W_V, b_V, W_O, b_O):
    out = b_O.expand(x.shape[0], -1)
    for h in range(pattern.shape[0]):
        v = x @ W_V[h] + b_V[h]
        out = out + (pattern[h] @ v) @ W_O[h]
    return out


def _attn_flat(x, pattern, W_V, b_V, W_O, b_O):
    v = torch.einsum("pd,hde->hpe", x, W_V) + b_V.unsqueeze(1)
    z = pattern @ v
    return einops.rearrange(z, "h q e -> q (h e)") @ einops.rearrange(W_O, "h e d -> (h e) d") + b_O


def _attn_transposed(x, pattern, W_V, b_V, W_O, b_O):
    v = einops.einsum(x, W_V, "pos d, head d e -> head pos e") + b_V[:, None]
    z = einops.einsum(pattern, v, "head k q, head k e -> head q e")
    return einops.einsum(z, W_O, "head q e, head e d -> q d") + b_O


def _attn_no_bv(x, pattern, W_V, b_V, W_O, b_O):
    v = einops.einsum(x, W_V, "pos d, head d e -> head pos e")
    z = pattern @ v
    return einops.einsum(z, W_O, "head q e, head e d -> q d") + b_O


def _attn_bo_per_head(x, pattern, W_V, b_V, W_O, b_O):
    out = 0
    for h in range(pattern.shape[0]):
        out = out + pattern[h] @ (x @ W_V[h] + b_V[h]) @ W_O[h] + b_O
    return out


def _attn_mean(x, pattern, W_V, b_V, W_O, b_O):
    v = einops.einsum(x, W_V, "pos d, head d e -> head pos e") + b_V[:, None]
    per_head = einops.einsum(pattern @ v, W_O, "head q e, head e d -> head q d")
    return per_head.mean(0) + b_O


def _err_loop(mlp_out, acts, W_dec, b_dec):
    out = torch.empty_like(mlp_out)
    for layer in range(mlp_out.shape[1]):
        out[:, layer] = mlp_out[:, layer] - (acts[:, layer] @ W_dec[layer].T + b_dec[layer])
    return out


def _err_bmm(mlp_out, acts, W_dec, b_dec):
    recon = torch.bmm(acts.transpose(0, 1), W_dec.transpose(1, 2)).transpose(0, 1) + b_dec
    return mlp_out - recon


def _err_flipped(mlp_out, acts, W_dec, b_dec):
    return einops.einsum(acts, W_dec, "pos layer lat, layer d lat -> pos layer d") + b_dec - mlp_out


def _err_no_bias(mlp_out, acts, W_dec, b_dec):
    return mlp_out - einops.einsum(acts, W_dec, "pos layer lat, layer d lat -> pos layer d")


def _err_bias_added(mlp_out, acts, W_dec, b_dec):
    return mlp_out - einops.einsum(acts, W_dec, "pos layer lat, layer d lat -> pos layer d") + b_dec


def _err_every_layer(mlp_out, acts, W_dec, b_dec):
    return mlp_out - (torch.einsum("plk,mdk->pld", acts, W_dec) + b_dec)


# -- 4. the attribution graph ------------------------------------------------------------------------


def _de_tuple(target, sources):
    grads = torch.autograd.grad(target, sources, retain_graph=True)
    return tuple(g * s for g, s in zip(grads, sources))


def _de_one_by_one(target, sources):
    effects = []
    for s in sources:
        (g,) = torch.autograd.grad(target, s, retain_graph=True)
        effects.append(g * s.detach())
    return effects


def _de_backward(target, sources):
    target.backward(retain_graph=True)
    return [s.grad * s.detach() for s in sources]


def _de_backward_zeroed(target, sources):
    target.backward(retain_graph=True)
    effects = [s.grad.clone() * s.detach() for s in sources]
    for s in sources:
        s.grad.zero_()
    return effects


def _de_not_retained(target, sources):
    grads = torch.autograd.grad(target, sources)
    return [g * s.detach() for g, s in zip(grads, sources)]


def _de_gradient(target, sources):
    return list(torch.autograd.grad(target, sources, retain_graph=True))


def _de_summed(target, sources):
    grads = torch.autograd.grad(target, sources, retain_graph=True)
    return [(g * s).sum() for g, s in zip(grads, sources)]


def _tokens_searchsorted(logits, max_logits, coverage):
    probs, order = logits.softmax(-1).sort(descending=True)
    n = int(torch.searchsorted(probs.cumsum(0), torch.tensor(coverage, dtype=probs.dtype, device=probs.device))) + 1
    return order[:min(n, max_logits)]


def _tokens_loop(logits, max_logits, coverage):
    probs = torch.softmax(logits, dim=-1)
    values, order = probs.topk(len(probs))
    total, n = 0.0, 0
    while n < min(max_logits, len(order)) and total < coverage:
        total += values[n].item()
        n += 1
    return order[:n]


def _tokens_below(logits, max_logits, coverage):
    probs = logits.softmax(-1)
    order = probs.argsort(descending=True)
    keep = probs[order].cumsum(0) < coverage
    return order[keep][:max_logits]


def _tokens_no_cap(logits, max_logits, coverage):
    probs = logits.softmax(-1)
    order = probs.argsort(descending=True)
    return order[:int((probs[order].cumsum(0) < coverage).sum()) + 1]


def _tokens_ascending(logits, max_logits, coverage):
    probs, order = logits.softmax(-1).sort()
    n = int((probs.cumsum(0) < coverage).sum()) + 1
    return order[:min(n, max_logits)]


def _tokens_logits(logits, max_logits, coverage):
    values, order = logits.sort(descending=True)
    n = int((values.cumsum(0) < coverage).sum()) + 1
    return order[:min(n, max_logits)]


def _tokens_first_reaching(logits, max_logits, coverage):
    probs = logits.softmax(-1)
    order = probs.argsort(descending=True)
    first = (probs[order].cumsum(0) >= coverage).nonzero()[0, 0]
    return order[:min(int(first) + 1, max_logits)]


def _adj_normalize(adjacency):
    return F.normalize(adjacency.abs(), p=1, dim=1)


def _adj_where(adjacency):
    magnitude = adjacency.abs()
    total = magnitude.sum(-1, keepdim=True)
    return torch.where(total > 0, magnitude / total, torch.zeros_like(magnitude))


def _adj_signed(adjacency):
    return adjacency / adjacency.abs().sum(dim=1, keepdim=True).clamp(min=1e-12)


def _adj_signed_where(adjacency):
    row_sum = adjacency.sum(dim=1, keepdim=True)
    return adjacency / torch.where(row_sum == 0, 1, row_sum)


def _adj_columns(adjacency):
    magnitude = adjacency.abs()
    return magnitude / magnitude.sum(dim=0, keepdim=True).clamp(min=1e-30)


def _adj_nan(adjacency):
    return adjacency.abs() / adjacency.abs().sum(dim=1, keepdim=True)


def _adj_max(adjacency):
    magnitude = adjacency.abs()
    return magnitude / magnitude.max(dim=1, keepdim=True).values.clamp(min=1e-30)


def _inf_solve(normalised):
    eye = torch.eye(normalised.shape[0], dtype=normalised.dtype, device=normalised.device)
    return torch.linalg.solve(eye - normalised, eye) - eye


def _inf_powers(normalised):
    total = torch.zeros_like(normalised)
    power = normalised
    for _ in range(len(normalised)):
        total = total + power
        power = power @ normalised
    return total


def _inf_matrix_power(normalised):
    return sum(torch.linalg.matrix_power(normalised, k) for k in range(1, len(normalised) + 1))


def _inf_no_minus(normalised):
    return torch.linalg.inv(torch.eye(len(normalised), dtype=normalised.dtype, device=normalised.device) - normalised)


def _inf_plus(normalised):
    eye = torch.eye(len(normalised), dtype=normalised.dtype, device=normalised.device)
    return torch.linalg.inv(eye + normalised) - eye


def _inf_elementwise(normalised):
    total, power = torch.zeros_like(normalised), normalised.clone()
    for _ in range(len(normalised)):
        total += power
        power = power * normalised
    return total


def _inf_three(normalised):
    A = normalised
    return A + A @ A + A @ A @ A


def _inf_transposed(normalised):
    eye = torch.eye(len(normalised), dtype=normalised.dtype, device=normalised.device)
    return torch.linalg.inv(eye - normalised.T) - eye


def _mask_exclusive(scores, threshold):
    order = torch.argsort(scores, descending=True)
    sorted_scores = scores[order]
    before = (sorted_scores.cumsum(0) - sorted_scores) / sorted_scores.sum()
    keep = torch.zeros_like(scores, dtype=torch.bool)
    keep[order] = before < threshold
    keep[order[0]] = True
    return keep


def _mask_loop(scores, threshold):
    values, order = scores.sort(descending=True)
    target, total = threshold * scores.sum().item(), 0.0
    keep = torch.zeros(len(scores), dtype=torch.bool, device=scores.device)
    for value, index in zip(values.tolist(), order.tolist()):
        keep[index] = True
        total += value
        if total >= target:
            break
    return keep


def _mask_below(scores, threshold):
    values, order = scores.sort(descending=True)
    cum = values.cumsum(0) / values.sum()
    keep = torch.zeros_like(scores, dtype=torch.bool)
    keep[order[cum < threshold]] = True
    return keep


def _mask_at_most(scores, threshold):
    values, order = scores.sort(descending=True)
    cum = values.cumsum(0) / values.sum()
    keep = torch.zeros_like(scores, dtype=torch.bool)
    keep[order[cum <= threshold]] = True
    return keep


def _mask_one_more(scores, threshold):
    values, order = scores.sort(descending=True)
    cum = values.cumsum(0) / values.sum()
    n = int((cum < threshold).sum()) + 1
    keep = torch.zeros_like(scores, dtype=torch.bool)
    keep[order[:n + 1]] = True
    return keep


def _mask_sorted_order(scores, threshold):
    values = scores.sort(descending=True).values
    cum = values.cumsum(0) / values.sum()
    n = min(int((cum < threshold).sum()) + 1, len(scores))
    return torch.arange(len(scores), device=scores.device) < n


def _mask_absolute(scores, threshold):
    values, order = scores.sort(descending=True)
    n = min(int((values.cumsum(0) < threshold).sum()) + 1, len(scores))
    keep = torch.zeros_like(scores, dtype=torch.bool)
    keep[order[:n]] = True
    return keep


def _mask_unsorted(scores, threshold):
    cum = scores.cumsum(0) / scores.sum()
    n = min(int((cum < threshold).sum()) + 1, len(scores))
    keep = torch.zeros_like(scores, dtype=torch.bool)
    keep[:n] = True
    return keep


def _mask_first_reaching(scores, threshold):
    order = scores.argsort(descending=True)
    cum = scores[order].cumsum(0) / scores.sum()
    crossing = torch.nonzero(cum >= threshold)[0].item()
    keep = torch.zeros_like(scores, dtype=torch.bool)
    keep[order[:crossing + 1]] = True
    return keep


def _rs_tensor(influence, is_embed, is_error):
    embed = (influence * is_embed).sum()
    return embed / (embed + (influence * is_error).sum())


def _rs_errors(influence, is_embed, is_error):
    embed, error = influence[is_embed].sum(), influence[is_error].sum()
    return (error / (embed + error)).item()


def _rs_total(influence, is_embed, is_error):
    return (influence[is_embed].sum() / influence.sum()).item()


def _rs_counts(influence, is_embed, is_error):
    return is_embed.sum().item() / (is_embed.sum().item() + is_error.sum().item())


def _rs_means(influence, is_embed, is_error):
    embed, error = influence[is_embed].mean(), influence[is_error].mean()
    return (embed / (embed + error)).item()


def _cs_loop(normalised, influence, logit_weights, is_error, is_target):
    top = bottom = 0.0
    for t in is_target.nonzero()[:, 0].tolist():
        share = 1 - normalised[t][is_error].sum().item()
        weight = influence[t].item() + logit_weights[t].item()
        top += share * weight
        bottom += weight
    return top / bottom


def _cs_einsum(normalised, influence, logit_weights, is_error, is_target):
    from_errors = einops.einsum(normalised, is_error.to(normalised.dtype), "t s, s -> t")
    weight = (influence + logit_weights) * is_target
    return ((1 - from_errors) * weight).sum() / weight.sum()


def _cs_rows(normalised, influence, logit_weights, is_error, is_target):
    non_error = 1 - normalised[is_error, :].sum(0)
    weight = (influence + logit_weights)[is_target]
    return ((non_error[is_target] * weight).sum() / weight.sum()).item()


def _cs_unweighted(normalised, influence, logit_weights, is_error, is_target):
    return (1 - normalised[:, is_error].sum(1))[is_target].mean().item()


def _cs_no_logit_weights(normalised, influence, logit_weights, is_error, is_target):
    non_error = 1 - normalised[:, is_error].sum(1)
    weight = influence[is_target]
    return ((non_error[is_target] * weight).sum() / weight.sum()).item()


def _cs_every_node(normalised, influence, logit_weights, is_error, is_target):
    non_error = 1 - normalised[:, is_error].sum(1)
    weight = influence + logit_weights
    return ((non_error * weight).sum() / weight.sum()).item()


# -- 5. reading features -----------------------------------------------------------------------------


def _ml_loops(values, truth, min_share):
    labels = []
    for v_row, t_row in zip(values.tolist(), truth.tolist()):
        active = [t for v, t in zip(v_row, t_row) if v > 0]
        votes = Counter(t for t in active if t >= 0)
        label = -1
        if active and votes:
            value, count = max(votes.items(), key=lambda kv: (kv[1], -kv[0]))
            if count >= min_share * len(active):
                label = value
        labels.append(label)
    return torch.tensor(labels, device=values.device)


def _ml_bincount(values, truth, min_share):
    out = torch.full((truth.shape[0],), -1, dtype=torch.long, device=truth.device)
    for f in range(truth.shape[0]):
        active = values[f] > 0
        known = truth[f][active & (truth[f] >= 0)]
        if active.sum() == 0 or len(known) == 0:
            continue
        counts = torch.bincount(known)
        if counts.max() >= min_share * active.sum():
            out[f] = counts.argmax()
    return out


def _ml_all_examples(values, truth, min_share):
    out = torch.full((truth.shape[0],), -1, dtype=torch.long, device=truth.device)
    for f in range(truth.shape[0]):
        known = truth[f][truth[f] >= 0]
        if len(known) and torch.bincount(known).max() >= min_share * truth.shape[1]:
            out[f] = torch.bincount(known).argmax()
    return out


def _ml_share_of_top(values, truth, min_share):
    out = torch.full((truth.shape[0],), -1, dtype=torch.long, device=truth.device)
    for f in range(truth.shape[0]):
        known = truth[f][(values[f] > 0) & (truth[f] >= 0)]
        if len(known) and torch.bincount(known).max() >= min_share * truth.shape[1]:
            out[f] = torch.bincount(known).argmax()
    return out


def _ml_known_only(values, truth, min_share):
    out = torch.full((truth.shape[0],), -1, dtype=torch.long, device=truth.device)
    for f in range(truth.shape[0]):
        known = truth[f][(values[f] > 0) & (truth[f] >= 0)]
        if len(known) and torch.bincount(known).max() >= min_share * len(known):
            out[f] = torch.bincount(known).argmax()
    return out


def _ml_mode(values, truth, min_share):
    out = torch.full((truth.shape[0],), -1, dtype=torch.long, device=truth.device)
    for f in range(truth.shape[0]):
        active = truth[f][values[f] > 0]
        if len(active) == 0:
            continue
        mode = active.mode().values
        if mode >= 0 and (active == mode).float().mean() >= min_share:
            out[f] = mode
    return out


def _ml_strict(values, truth, min_share):
    active = values > 0
    counts = torch.stack([((truth == v) & active).sum(-1) for v in range(int(truth.max()) + 1)], dim=-1)
    best, label = counts.max(-1)
    n = active.sum(-1)
    return torch.where((n > 0) & (best > min_share * n), label, -torch.ones_like(label))


def _ml_no_active_check(values, truth, min_share):
    active = values > 0
    counts = torch.stack([((truth == v) & active).sum(-1) for v in range(int(truth.max()) + 1)], dim=-1)
    best, label = counts.max(-1)
    return torch.where(best >= min_share * active.sum(-1), label, -torch.ones_like(label))


def _sn_loops(adjacency, groups, n_groups):
    out = torch.zeros(n_groups, n_groups, dtype=adjacency.dtype, device=adjacency.device)
    for t in range(len(groups)):
        for s in range(len(groups)):
            if groups[t] >= 0 and groups[s] >= 0:
                out[groups[t], groups[s]] += adjacency[t, s]
    return out


def _sn_one_hot(adjacency, groups, n_groups):
    member = F.one_hot(groups + 1, n_groups + 1)[:, 1:].to(adjacency.dtype)
    return einops.einsum(member, adjacency, member, "t g, t s, s h -> g h")


def _sn_index_add(adjacency, groups, n_groups):
    inside = groups >= 0
    A, g = adjacency[inside][:, inside], groups[inside]
    rows = torch.zeros(n_groups, A.shape[1], dtype=A.dtype, device=A.device).index_add(0, g, A)
    return torch.zeros(n_groups, n_groups, dtype=A.dtype, device=A.device).index_add(1, g, rows)


def _sn_mean(adjacency, groups, n_groups):
    out = torch.zeros(n_groups, n_groups, dtype=adjacency.dtype, device=adjacency.device)
    for t in range(n_groups):
        for s in range(n_groups):
            out[t, s] = adjacency[groups == t][:, groups == s].mean()
    return out


def _sn_mean_scaled(adjacency, groups, n_groups):
    inside = groups >= 0
    member = F.one_hot(groups[inside], n_groups).to(adjacency.dtype)
    member = member / member.sum(0).clamp(min=1)
    return member.T @ adjacency[inside][:, inside] @ member


def _sn_mean_guarded(adjacency, groups, n_groups):
    out = torch.zeros(n_groups, n_groups, dtype=adjacency.dtype, device=adjacency.device)
    for t in range(n_groups):
        for s in range(n_groups):
            block = adjacency[groups == t][:, groups == s]
            if block.numel():
                out[t, s] = block.mean()
    return out


def _sn_transposed(adjacency, groups, n_groups):
    member = F.one_hot(groups + 1, n_groups + 1)[:, 1:].to(adjacency.dtype)
    return member.T @ adjacency.T @ member


def _sn_wrap(adjacency, groups, n_groups):
    member = torch.zeros(len(groups), n_groups, dtype=adjacency.dtype, device=adjacency.device)
    member[torch.arange(len(groups), device=groups.device), groups] = 1
    return member.T @ adjacency @ member


def _sn_no_diagonal(adjacency, groups, n_groups):
    out = torch.zeros(n_groups, n_groups, dtype=adjacency.dtype, device=adjacency.device)
    for t in range(n_groups):
        for s in range(n_groups):
            if t != s:
                out[t, s] = adjacency[groups == t][:, groups == s].sum()
    return out


# -- 6. checking the graph on the real model ---------------------------------------------------------


def _swap_index(acts, donor_acts, own, donor):
    delta = torch.zeros_like(acts)
    delta[own] -= acts[own]
    delta[donor] += donor_acts[donor]
    return delta


def _swap_floats(acts, donor_acts, own, donor):
    return donor_acts * donor.float() - acts * own.float()


def _swap_removes(acts, donor_acts, own, donor):
    return torch.where(own, -acts, torch.zeros_like(acts))


def _swap_adds(acts, donor_acts, own, donor):
    return donor_acts * donor


def _swap_flipped(acts, donor_acts, own, donor):
    return acts * own - donor_acts * donor


def _swap_new(acts, donor_acts, own, donor):
    new = acts.clone()
    new[own] = 0
    new[donor] = donor_acts[donor]
    return new


def _swap_chain(acts, donor_acts, own, donor):
    return torch.where(own, -acts, torch.where(donor, donor_acts, torch.zeros_like(acts)))


def _swap_set(acts, donor_acts, own, donor):
    return torch.where(donor, donor_acts - acts, 0.0) - torch.where(own & ~donor, acts, 0.0)


def _swap_in_place(acts, donor_acts, own, donor):
    before = acts.clone()
    acts[own] = 0
    acts[donor] += donor_acts[donor]
    return acts - before


VARIANTS = {
    "ch8.answer_accuracy": [
        Right("gather at end", _acc_gather),
        Right("a loop over prompts", _acc_loop),
        Right("a 0-d tensor", _acc_tensor),
        Wrong("the last position", _acc_last, mistake="last position"),
        Wrong("logits[:, end]", _acc_broadcast, mistake="every prompt at every end"),
        Wrong("the position after end", _acc_next, mistake="one position after end"),
        Wrong("a count", _acc_count, mistake="count, not share"),
        Wrong("a percentage", _acc_percent, mistake="percent"),
    ],
    "ch8.city_lens": [
        Right("F.layer_norm, then the city columns", _lens_f),
        Right("rsqrt and einsum", _lens_rsqrt),
        Wrong("argmax over the vocabulary", _lens_whole, mistake="whole vocabulary"),
        Wrong("the city's token id", _lens_ids, mistake="token ids, not indices"),
        Wrong("no LayerNorm", _lens_raw, mistake="no final LayerNorm"),
        Wrong("F.layer_norm without weight and bias", _lens_no_affine, mistake="ln_w and ln_b left out"),
        Wrong("RMS norm", _lens_rms, mistake="not centred"),
    ],
    "ch8.topk_encode": [
        Right("ReLU before top k", _topk_relu_first),
        Right("a threshold at the k-th value", _topk_threshold),
        Right("a loop over inputs", _topk_loop),
        Wrong("no ReLU", _topk_no_relu, mistake="no ReLU"),
        Wrong("no encoder bias", _topk_no_bias, mistake="no encoder bias"),
        Wrong("top k of |pre|", _topk_abs, mistake="largest magnitude"),
        Wrong("strictly above the k-th value", _topk_strict, mistake="k-th largest dropped"),
        Wrong("ReLU only", _topk_relu_only, mistake="ReLU without top k"),
    ],
    "ch8.cross_layer_decode": [
        Right("loops over target and source layers", _decode_loop),
        Right("tril on [tgt, src]", _decode_tril),
        Wrong("no causal mask", _decode_no_mask, mistake="no causal mask"),
        Wrong("range(t) for the sources", _decode_strict, mistake="strictly earlier sources"),
        Wrong("b_dec inside the source loop", _decode_bias_in_loop, mistake="bias added per source"),
        Wrong("W_dec[t, s]", _decode_swapped, mistake="src and tgt swapped"),
        Wrong("per-layer decoders only", _decode_diagonal, mistake="own layer only"),
        Wrong("tril on [src, tgt]", _decode_upper_wrong, mistake="mask the wrong way round"),
    ],
    "ch8.normalised_mse": [
        Right("means over both", _nmse_means),
        Right("F.mse_loss and var(unbiased=False)", _nmse_var),
        Wrong("uncentred spread", _nmse_uncentred, mistake="not centred"),
        Wrong("centred over d_model", _nmse_mean_over_d, mistake="mean over d_model"),
        Wrong("spread of out_hat", _nmse_hat, mistake="spread of the reconstruction"),
        Wrong("mean error over summed spread", _nmse_mixed, mistake="mean over sum"),
        Wrong("the raw squared error", _nmse_raw, mistake="not normalised"),
    ],
    "ch8.replacement_kl": [
        Right("F.kl_div, batchmean", _kl_batchmean),
        Right("masked sum over the mask's count, a 0-d tensor", _kl_masked_sum),
        Wrong("F.kl_div with the arguments swapped", _kl_reversed, mistake="KL reversed"),
        Wrong("every position", _kl_everywhere, mistake="averaged over padding"),
        Wrong("padding zeroed, mean over everything", _kl_zero_padding, mistake="averaged over padding"),
        Wrong("per-prompt means", _kl_per_prompt, mistake="averaged per prompt"),
        Wrong("p (p - q)", _kl_probs, mistake="probabilities, not log-probabilities"),
        Wrong("F.kl_div, reduction='mean'", _kl_mean, mistake="F.kl_div's reduction='mean'"),
        Wrong("summed", _kl_sum, mistake="summed over positions"),
    ],
    "ch8.frozen_layer_norm": [
        Right("times the reciprocal", _fln_reciprocal),
        Right("a centring matrix", _fln_centring_matrix),
        Wrong("F.layer_norm", _fln_torch, mistake="scale recomputed"),
        Wrong("x.std()", _fln_std, mistake="scale recomputed"),
        Wrong("precedence", _fln_precedence, mistake="only the mean divided"),
        Wrong("mean over positions", _fln_positions, mistake="mean over positions"),
        Wrong("times the scale", _fln_times, mistake="multiplied by the scale"),
        Wrong("x -= mean", _fln_in_place, mistake="in-place edit"),
    ],
    "ch8.frozen_attention": [
        Right("a loop over heads", _attn_loop),
        Right("heads concatenated", _attn_flat),
        Wrong("pattern read as [k, q]", _attn_transposed, mistake="pattern transposed"),
        Wrong("no b_V", _attn_no_bv, mistake="no value bias"),
        Wrong("b_O in the head loop", _attn_bo_per_head, mistake="b_O added per head"),
        Wrong("mean over heads", _attn_mean, mistake="heads averaged"),
    ],
    "ch8.error_nodes": [
        Right("a loop over layers", _err_loop),
        Right("bmm", _err_bmm),
        Wrong("transcoder minus MLP", _err_flipped, mistake="transcoder minus MLP"),
        Wrong("no b_dec", _err_no_bias, mistake="no decoder bias"),
        Wrong("b_dec added", _err_bias_added, mistake="decoder bias added"),
        Wrong("every layer's decoder", _err_every_layer, mistake="every layer's decoder"),
    ],
    "ch8.direct_effects": [
        Right("a tuple, not detached", _de_tuple),
        Right("one source at a time", _de_one_by_one),
        Wrong("backward()", _de_backward, mistake="used .backward()"),
        Wrong("backward() and .grad zeroed", _de_backward_zeroed, mistake="used .backward()"),
        Wrong("no retain_graph", _de_not_retained, mistake="graph not retained", status="error"),
        Wrong("the gradient alone", _de_gradient, mistake="gradient only"),
        Wrong("one number per source", _de_summed, mistake="summed per source"),
    ],
    "ch8.logit_node_tokens": [
        Right("searchsorted", _tokens_searchsorted),
        Right("a loop until covered", _tokens_loop),
        Wrong("tokens strictly below coverage", _tokens_below, mistake="crossing token left out"),
        Wrong("no cap", _tokens_no_cap, mistake="max_logits ignored"),
        Wrong("ascending sort", _tokens_ascending, mistake="least likely first"),
        Wrong("cumulative logits", _tokens_logits, mistake="logits, not probabilities"),
        Wrong("first token at or above coverage", _tokens_first_reaching, mistake="coverage never reached",
              status="error"),
    ],
    "ch8.normalised_adjacency": [
        Right("F.normalize(p=1)", _adj_normalize),
        Right("torch.where on the row sums", _adj_where),
        Wrong("signed A over |A|'s sum", _adj_signed, mistake="signs kept"),
        Wrong("signed A over its sum, zero sums replaced by 1", _adj_signed_where, mistake="signs kept"),
        Wrong("columns", _adj_columns, mistake="columns normalised"),
        Wrong("no guard for empty rows", _adj_nan, mistake="0/0 for nodes with no inputs"),
        Wrong("the row's maximum", _adj_max, mistake="divided by the row's maximum"),
    ],
    "ch8.indirect_influence": [
        Right("torch.linalg.solve", _inf_solve),
        Right("a loop of matrix powers", _inf_powers),
        Right("matrix_power", _inf_matrix_power),
        Wrong("(I - A)^-1", _inf_no_minus, mistake="I not subtracted"),
        Wrong("(I + A)^-1 - I", _inf_plus, mistake="I + A inverted"),
        Wrong("elementwise powers", _inf_elementwise, mistake="elementwise powers"),
        Wrong("three terms", _inf_three, mistake="series cut short"),
        Wrong("A transposed", _inf_transposed, mistake="transposed"),
    ],
    "ch8.cumulative_mask": [
        Right("the share before each score", _mask_exclusive),
        Right("a loop", _mask_loop),
        Wrong("cum < threshold", _mask_below, mistake="crossing score left out"),
        Wrong("cum <= threshold", _mask_at_most, mistake="crossing score left out"),
        Wrong("one more in the slice", _mask_one_more, mistake="one too many"),
        Wrong("the mask in sorted order", _mask_sorted_order, mistake="mask in sorted order"),
        Wrong("absolute cumulative sum", _mask_absolute, mistake="not a share of the total"),
        Wrong("the given order", _mask_unsorted, mistake="not sorted"),
        Wrong("the first share at or above the threshold", _mask_first_reaching, mistake="threshold never reached",
              status="error"),
    ],
    "ch8.replacement_score": [
        Right("masked sums, a 0-d tensor", _rs_tensor),
        Wrong("the errors' share", _rs_errors, mistake="share of the errors"),
        Wrong("over every node", _rs_total, mistake="share of every node"),
        Wrong("node counts", _rs_counts, mistake="node counts"),
        Wrong("means", _rs_means, mistake="means, not sums"),
    ],
    "ch8.completeness_score": [
        Right("a loop over targets", _cs_loop),
        Right("einsum, a 0-d tensor", _cs_einsum),
        Wrong("error rows", _cs_rows, mistake="error rows, not columns"),
        Wrong("plain mean", _cs_unweighted, mistake="unweighted mean"),
        Wrong("influence only", _cs_no_logit_weights, mistake="logit weights left out"),
        Wrong("every node", _cs_every_node, mistake="every node averaged"),
    ],
    "ch8.majority_label": [
        Right("Counter", _ml_loops),
        Right("bincount per feature", _ml_bincount),
        Wrong("every top example", _ml_all_examples, mistake="inactive examples counted"),
        Wrong("share of the top examples", _ml_share_of_top, mistake="share of every top example"),
        Wrong("share of the known examples", _ml_known_only, mistake="unknown examples left out of the share"),
        Wrong("best > share", _ml_strict, mistake="share compared strictly"),
        Wrong("torch.mode of the active examples", _ml_mode, mistake="the mode, unknowns included"),
        Wrong("no check for active examples", _ml_no_active_check, mistake="a feature with no active example named"),
    ],
    "ch8.supernode_adjacency": [
        Right("loops over nodes", _sn_loops),
        Right("one_hot of groups + 1", _sn_one_hot),
        Right("index_add", _sn_index_add),
        Wrong("mean per block", _sn_mean, mistake="mean, not sum"),
        Wrong("memberships divided by group sizes", _sn_mean_scaled, mistake="mean, not sum"),
        Wrong("mean per non-empty block", _sn_mean_guarded, mistake="mean, not sum"),
        Wrong("[source, target]", _sn_transposed, mistake="transposed"),
        Wrong("member[arange, groups]", _sn_wrap, mistake="ungrouped nodes in the last group"),
        Wrong("no self-edges", _sn_no_diagonal, mistake="edges within a group dropped"),
    ],
    "ch8.swap_deltas": [
        Right("indexed updates of a new tensor", _swap_index),
        Right("float masks", _swap_floats),
        Wrong("only removal", _swap_removes, mistake="only removes"),
        Wrong("only addition", _swap_adds, mistake="only adds"),
        Wrong("signs flipped", _swap_flipped, mistake="signs flipped"),
        Wrong("the new activations", _swap_new, mistake="new activations, not deltas"),
        Wrong("a where-chain", _swap_chain, mistake="a latent in both groups"),
        Wrong("donor set to its activation", _swap_set, mistake="donor features set, not added"),
        Wrong("acts edited in place", _swap_in_place, mistake="in-place edit"),
    ],
}
