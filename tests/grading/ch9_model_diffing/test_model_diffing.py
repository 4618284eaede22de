"""Learner variants for the 9.1 "Model diffing" graders."""

import einops
import torch

from solutions.ch9_model_diffing.answer_key import HIDDEN_CONTINUATION, HIDDEN_TRIGGER
from tests.grading.variants import Right, Wrong, test_variant_is_graded_as_expected  # noqa: F401 (runs VARIANTS)

# -- 1. the baselines ---------------------------------------------------------------------------------


def _rc_linalg(W_base, W_ft):
    return (torch.linalg.norm(W_ft - W_base) / torch.linalg.norm(W_base)).item()


def _rc_sqrt(W_base, W_ft):
    return float((W_ft - W_base).pow(2).sum().sqrt() / W_base.pow(2).sum().sqrt())


def _rc_tensor(W_base, W_ft):
    return (W_ft - W_base).norm() / W_base.norm()  # a 0-d tensor, not the documented float


def _rc_by_ft(W_base, W_ft):
    return ((W_ft - W_base).norm() / W_ft.norm()).item()


def _rc_raw(W_base, W_ft):
    return (W_ft - W_base).norm().item()


def _rc_norms(W_base, W_ft):
    return ((W_ft.norm() - W_base.norm()) / W_base.norm()).item()


def _rc_squared(W_base, W_ft):
    return ((W_ft - W_base).pow(2).sum() / W_base.pow(2).sum()).item()


def _rcr_vector_norm(E_base, E_ft, E_control):
    return torch.linalg.vector_norm(E_ft - E_base, dim=1) / torch.linalg.vector_norm(E_control - E_base, dim=1)


def _rcr_sqrt(E_base, E_ft, E_control):
    moved = ((E_ft - E_base) ** 2).sum(-1).sqrt()
    return moved / (((E_control - E_base) ** 2).sum(-1).sqrt() + 1e-12)


def _rcr_inverted(E_base, E_ft, E_control):
    return (E_control - E_base).norm(dim=-1) / (E_ft - E_base).norm(dim=-1)


def _rcr_dim0(E_base, E_ft, E_control):
    return (E_ft - E_base).norm(dim=0) / (E_control - E_base).norm(dim=0)


def _rcr_squared(E_base, E_ft, E_control):
    return (E_ft - E_base).pow(2).sum(-1) / (E_control - E_base).pow(2).sum(-1)


def _rcr_base(E_base, E_ft, E_control):
    return (E_ft - E_base).norm(dim=-1) / E_base.norm(dim=-1)


def _md_loop(resid_base, resid_ft):
    total = torch.zeros(resid_base.shape[-1], device=resid_base.device)
    count = 0
    for b in range(resid_base.shape[0]):
        for p in range(1, resid_base.shape[1]):
            total = total + resid_ft[b, p] - resid_base[b, p]
            count += 1
    return total / count


def _md_reduce(resid_base, resid_ft):
    return einops.reduce(resid_ft[:, 1:] - resid_base[:, 1:], "batch pos d -> d", "mean")


def _md_bos(resid_base, resid_ft):
    return (resid_ft - resid_base).mean(dim=(0, 1))


def _md_flipped(resid_base, resid_ft):
    return (resid_base - resid_ft)[:, 1:].mean(dim=(0, 1))


def _md_last_dropped(resid_base, resid_ft):
    return (resid_ft - resid_base)[:, :-1].mean(dim=(0, 1))


def _md_texts_only(resid_base, resid_ft):
    return (resid_ft - resid_base)[:, 1:].mean(dim=0)


def _ll_einsum(direction, ln_w, W_U):
    centred = direction - direction.mean()
    logits = einops.einsum(centred * ln_w, W_U, "d, d vocab -> vocab")
    return logits - logits.mean()


def _ll_matrix(direction, ln_w, W_U):
    d = direction.shape[0]
    centring = torch.eye(d, device=direction.device) - 1.0 / d
    logits = (ln_w * (centring @ direction)) @ W_U
    return logits - logits.mean(dim=-1, keepdim=True)


def _ll_no_centre(direction, ln_w, W_U):
    logits = (direction * ln_w) @ W_U
    return logits - logits.mean()


def _ll_raw_logits(direction, ln_w, W_U):
    return ((direction - direction.mean()) * ln_w) @ W_U


def _ll_no_gain(direction, ln_w, W_U):
    logits = (direction - direction.mean()) @ W_U
    return logits - logits.mean()


def _ll_layer_norm(direction, ln_w, W_U):
    x = torch.nn.functional.layer_norm(direction, direction.shape, weight=ln_w)
    logits = x @ W_U
    return logits - logits.mean()


def _sh_lambda(vector, alpha):
    return lambda activation, hook=None: activation + alpha * vector


def _sh_scaled_first(vector, alpha):
    step = alpha * vector

    def hook(activation, hook):
        return activation + step.to(activation.dtype)
    return hook


def _sh_in_place(vector, alpha):
    def hook(activation, hook=None):
        activation += alpha * vector
        return activation
    return hook


def _sh_no_alpha(vector, alpha):
    def hook(activation, hook=None):
        return activation + vector
    return hook


def _sh_no_return(vector, alpha):
    def hook(activation, hook=None):
        activation = activation + alpha * vector  # noqa: F841 (the mistake: nothing returned)
    return hook


def _sh_normalised(vector, alpha):
    def hook(activation, hook=None):
        return activation + alpha * vector / vector.norm()
    return hook


def _sh_called(vector, alpha):
    def hook(activation, hook=None):
        return activation + alpha * vector
    return hook(torch.zeros_like(vector))


# -- 2. a crosscoder ------------------------------------------------------------------------------------


def _pre_loop(x, W_enc, b_enc):
    total = b_enc.clone()
    for m in range(x.shape[1]):
        total = total + x[:, m] @ W_enc[m]
    return total.clamp(min=0)


def _pre_flat(x, W_enc, b_enc):
    return torch.relu(x.flatten(1) @ W_enc.flatten(0, 1) + b_enc)


def _pre_no_relu(x, W_enc, b_enc):
    return einops.einsum(x, W_enc, "batch model d, model d lat -> batch lat") + b_enc


def _pre_ft_only(x, W_enc, b_enc):
    return torch.relu(x[:, 1] @ W_enc[1] + b_enc)


def _pre_mean(x, W_enc, b_enc):
    return torch.relu(einops.einsum(x, W_enc, "batch model d, model d lat -> batch model lat").mean(1) + b_enc)


def _pre_bias_per_model(x, W_enc, b_enc):
    return torch.relu((einops.einsum(x, W_enc, "batch model d, model d lat -> batch model lat") + b_enc).sum(1))


def _pre_one_encoder(x, W_enc, b_enc):
    return torch.relu(x.sum(1) @ W_enc[0] + b_enc)


def _btk_threshold(pre, k):
    kth = pre.flatten().topk(k * pre.shape[0]).values[-1]
    return torch.where(pre >= kth, pre, torch.zeros_like(pre))


def _btk_sort(pre, k):
    flat = pre.reshape(-1)
    order = flat.argsort(descending=True)
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[order[:k * pre.shape[0]]] = True
    return (flat * keep).reshape(pre.shape)


def _btk_relu_after(pre, k):
    flat = pre.flatten()
    values, indices = flat.topk(k * len(pre))
    return torch.zeros_like(flat).scatter(0, indices, values.relu()).view_as(pre)


def _btk_rows(pre, k):
    values, indices = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, indices, values)


def _btk_k_total(pre, k):
    flat = pre.flatten()
    values, indices = flat.topk(k)
    return torch.zeros_like(flat).scatter(0, indices, values).reshape(pre.shape)


def _btk_strict(pre, k):
    kth = pre.flatten().topk(k * pre.shape[0]).values[-1]
    return pre * (pre > kth)


def _btk_mask(pre, k):
    kth = pre.flatten().topk(k * pre.shape[0]).values[-1]
    return ((pre >= kth) & (pre > 0)).float()


def _dec_loop(acts, W_dec, b_dec):
    return torch.stack([acts @ W_dec[m].T + b_dec[m] for m in range(W_dec.shape[0])], dim=1)


def _dec_matmul(acts, W_dec, b_dec):
    return (W_dec @ acts.T).permute(2, 0, 1) + b_dec


def _dec_no_bias(acts, W_dec, b_dec):
    return einops.einsum(acts, W_dec, "batch lat, model d lat -> batch model d")


def _dec_base_only(acts, W_dec, b_dec):
    out = acts @ W_dec[0].T
    return torch.stack([out, out], dim=1) + b_dec


def _dec_swapped(acts, W_dec, b_dec):
    return einops.einsum(acts, W_dec.flip(0), "batch lat, model d lat -> batch model d") + b_dec


def _dec_one_bias(acts, W_dec, b_dec):
    return einops.einsum(acts, W_dec, "batch lat, model d lat -> batch model d") + b_dec[0]


def _nmse_var(x_hat, x):
    err = (x_hat - x).pow(2).mean(dim=(0, 2))
    return err / x.var(dim=0, unbiased=False).mean(-1)


def _nmse_loop(x_hat, x):
    out = []
    for m in range(x.shape[1]):
        out.append(((x_hat[:, m] - x[:, m]) ** 2).sum() / ((x[:, m] - x[:, m].mean(0)) ** 2).sum())
    return torch.stack(out)


def _nmse_raw(x_hat, x):
    return (x_hat - x).pow(2).sum(dim=(0, 2))


def _nmse_uncentred(x_hat, x):
    return (x_hat - x).pow(2).sum(dim=(0, 2)) / x.pow(2).sum(dim=(0, 2))


def _nmse_other(x_hat, x):
    var = (x - x.mean(0)).pow(2).sum(dim=(0, 2))
    return (x_hat - x).pow(2).sum(dim=(0, 2)) / var.flip(0)


def _nmse_pooled(x_hat, x):
    return (x_hat - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()


def _nmse_hat(x_hat, x):
    return (x_hat - x).pow(2).sum(dim=(0, 2)) / (x_hat - x_hat.mean(0)).pow(2).sum(dim=(0, 2))


def _nmse_model_mean(x_hat, x):
    mean = x.mean(dim=(0, 2), keepdim=True)  # one number per model, not one per model and dimension
    return (x_hat - x).pow(2).sum(dim=(0, 2)) / (x - mean).pow(2).sum(dim=(0, 2))


def _nmse_mean_over_models(x_hat, x):
    return (x_hat - x).pow(2).sum(dim=(0, 2)) / (x - x.mean(dim=1, keepdim=True)).pow(2).sum(dim=(0, 2))


def _rn_linalg(W_dec):
    base, ft = torch.linalg.vector_norm(W_dec, dim=1)
    return ft / (base + ft)


def _rn_einsum(W_dec):
    sq = einops.einsum(W_dec, W_dec, "model d lat, model d lat -> model lat").sqrt()
    return sq[1] / sq.sum(0)


def _rn_swapped(W_dec):
    norms = W_dec.norm(dim=1)
    return norms[0] / (norms[0] + norms[1])


def _rn_latent_axis(W_dec):
    norms = W_dec.norm(dim=-1)
    return norms[1] / (norms[0] + norms[1])


def _rn_ratio(W_dec):
    norms = W_dec.norm(dim=1)
    return norms[1] / norms[0]


def _rn_squared(W_dec):
    sq = W_dec.pow(2).sum(1)
    return sq[1] / (sq[0] + sq[1])


def _cc_loop(rel, base_only=0.1, shared=(0.4, 0.6), finetune_only=0.9):
    counts = {"base_only": 0, "shared": 0, "finetune_only": 0, "other": 0}
    for r in rel.tolist():
        if r < base_only:
            counts["base_only"] += 1
        elif shared[0] <= r <= shared[1]:
            counts["shared"] += 1
        elif r > finetune_only:
            counts["finetune_only"] += 1
        else:
            counts["other"] += 1
    return counts


def _cc_bucketize(rel, base_only=0.1, shared=(0.4, 0.6), finetune_only=0.9):
    base, tuned = int((rel < base_only).sum()), int((rel > finetune_only).sum())
    middle = int(torch.logical_and(rel >= shared[0], rel <= shared[1]).sum().item())
    return {"base_only": base, "shared": middle, "finetune_only": tuned, "other": len(rel) - base - middle - tuned}


def _cc_tensors(rel, base_only=0.1, shared=(0.4, 0.6), finetune_only=0.9):
    base, tuned = (rel < base_only).sum(), (rel > finetune_only).sum()
    middle = ((rel >= shared[0]) & (rel <= shared[1])).sum()
    return {"base_only": base, "shared": middle, "finetune_only": tuned, "other": len(rel) - base - middle - tuned}


def _cc_strict_shared(rel, base_only=0.1, shared=(0.4, 0.6), finetune_only=0.9):
    middle = (rel > shared[0]) & (rel < shared[1])
    base, tuned = rel < base_only, rel > finetune_only
    return {"base_only": int(base.sum()), "shared": int(middle.sum()), "finetune_only": int(tuned.sum()),
            "other": int((~(base | middle | tuned)).sum())}


def _cc_inclusive_ends(rel, base_only=0.1, shared=(0.4, 0.6), finetune_only=0.9):
    middle = (rel >= shared[0]) & (rel <= shared[1])
    base, tuned = rel <= base_only, rel >= finetune_only
    return {"base_only": int(base.sum()), "shared": int(middle.sum()), "finetune_only": int(tuned.sum()),
            "other": int((~(base | middle | tuned)).sum())}


def _cc_shares(rel, base_only=0.1, shared=(0.4, 0.6), finetune_only=0.9):
    counts = _cc_loop(rel, base_only, shared, finetune_only)
    return {k: v / len(rel) for k, v in counts.items()}


def _cc_no_other(rel, base_only=0.1, shared=(0.4, 0.6), finetune_only=0.9):
    counts = _cc_loop(rel, base_only, shared, finetune_only)
    del counts["other"]
    return counts


def _ac_where(rel, control_rel):
    hits = torch.where(rel > control_rel.max())[0]
    return hits[torch.sort(rel[hits], descending=True).indices]


def _ac_sort_first(rel, control_rel):
    order = rel.argsort(descending=True)
    return order[rel[order] > control_rel.max()]


def _ac_unsorted(rel, control_rel):
    return (rel > control_rel.max()).nonzero().flatten()


def _ac_ascending(rel, control_rel):
    hits = (rel > control_rel.max()).nonzero().flatten()
    return hits[rel[hits].argsort()]


def _ac_mean(rel, control_rel):
    hits = (rel > control_rel.mean()).nonzero().flatten()
    return hits[rel[hits].argsort(descending=True)]


def _ac_quantile(rel, control_rel):
    hits = (rel > control_rel.quantile(0.99)).nonzero().flatten()
    return hits[rel[hits].argsort(descending=True)]


def _ac_at_least(rel, control_rel):
    hits = (rel >= control_rel.max()).nonzero().flatten()
    return hits[rel[hits].argsort(descending=True)]


def _sb_projection(f, direction, target):
    return (target @ direction) @ f / (direction @ direction * (f @ f))


def _sb_lstsq(f, direction, target):
    A = (f[:, None] * direction).reshape(-1, 1)
    return torch.linalg.lstsq(A, target.reshape(-1, 1)).solution.squeeze()


def _sb_no_d(f, direction, target):
    return (f * (target @ direction)).sum() / f.pow(2).sum()


def _sb_sum_f(f, direction, target):
    return (f * (target @ direction)).sum() / (direction.pow(2).sum() * f.sum())


def _sb_norm(f, direction, target):
    return (f * (target @ direction)).sum() / (direction.norm() * f.pow(2).sum())


def _sb_abs(f, direction, target):
    return ((f * (target @ direction)).sum() / (direction.pow(2).sum() * f.pow(2).sum())).abs()


def _sb_float(f, direction, target):
    return ((f * (target @ direction)).sum() / (direction.pow(2).sum() * f.pow(2).sum())).item()


def _sb_per_row(f, direction, target):
    return ((target @ direction) / (direction.pow(2).sum() * f)).mean()


def _beta(f, direction, target):
    return (f * (target @ direction)).sum() / (direction.pow(2).sum() * f.pow(2).sum())


def _sr_loop(x, x_hat, f, W_dec_j):
    out = {}
    for name in ("error", "reconstruction"):
        betas = []
        for m in range(2):
            if name == "error":
                target = x[:, m] - x_hat[:, m] + f[:, None] * W_dec_j[m]
            else:
                target = x_hat[:, m]
            betas.append(_beta(f, W_dec_j[1], target))
        out[name] = float(betas[0] / betas[1])
    return out


def _sr_tensors(x, x_hat, f, W_dec_j):
    own = f[:, None, None] * W_dec_j
    return {name: _beta(f, W_dec_j[1], t[:, 0]) / _beta(f, W_dec_j[1], t[:, 1])  # 0-d tensors, not floats
            for name, t in {"error": x - (x_hat - own), "reconstruction": x_hat}.items()}


def _sr_unsigned(x, x_hat, f, W_dec_j):
    def beta(f, direction, target):  # a scaling_beta that dropped the sign
        return _beta(f, direction, target).abs()
    own = f[:, None, None] * W_dec_j
    return {name: (beta(f, W_dec_j[1], t[:, 0]) / beta(f, W_dec_j[1], t[:, 1])).item()
            for name, t in {"error": x - (x_hat - own), "reconstruction": x_hat}.items()}


def _sr_einsum(x, x_hat, f, W_dec_j):
    d = W_dec_j[1]
    own = einops.einsum(f, W_dec_j, "n, model d -> n model d")

    def nu(t):
        b = einops.einsum(f, t, d, "n, n model d, d -> model") / (d.pow(2).sum() * f.pow(2).sum())
        return (b[0] / b[1]).item()
    return {"reconstruction": nu(x_hat), "error": nu(x - x_hat + own)}


def _sr_general(x, x_hat, f, W_dec_j, *, swap=False, invert=False, along=1, no_add_back=False):
    own = f[:, None, None] * W_dec_j
    error = x - x_hat if no_add_back else x - (x_hat - own)
    targets = {"error": error, "reconstruction": x_hat}
    if swap:
        targets = {"error": x_hat, "reconstruction": error}
    out = {}
    for name, t in targets.items():
        b, ft = _beta(f, W_dec_j[along], t[:, 0]), _beta(f, W_dec_j[along], t[:, 1])
        out[name] = (ft / b if invert else b / ft).item()
    return out


def _sr_swapped(x, x_hat, f, W_dec_j):
    return _sr_general(x, x_hat, f, W_dec_j, swap=True)


def _sr_inverted(x, x_hat, f, W_dec_j):
    return _sr_general(x, x_hat, f, W_dec_j, invert=True)


def _sr_base_decoder(x, x_hat, f, W_dec_j):
    return _sr_general(x, x_hat, f, W_dec_j, along=0)


def _sr_no_add_back(x, x_hat, f, W_dec_j):
    return _sr_general(x, x_hat, f, W_dec_j, no_add_back=True)


def _sr_own_decoders(x, x_hat, f, W_dec_j):
    own = f[:, None, None] * W_dec_j
    out = {}
    for name, t in {"error": x - (x_hat - own), "reconstruction": x_hat}.items():
        out[name] = (_beta(f, W_dec_j[0], t[:, 0]) / _beta(f, W_dec_j[1], t[:, 1])).item()
    return out


# -- 3. finding the planted change ----------------------------------------------------------------------


def _ps_where(acts, mask):
    total = acts.sum(0)
    planted = (acts * mask[:, None]).sum(0)
    return torch.where(total > 0, planted / total, torch.zeros_like(total))


def _ps_einsum(acts, mask):
    planted = einops.einsum(acts, mask.to(acts.dtype), "n lat, n -> lat")
    return planted / (acts.sum(0) + 1e-12)


def _ps_counts(acts, mask):
    return (acts[mask] > 0).float().sum(0) / (acts > 0).float().sum(0).clamp(min=1)


def _ps_by_mask(acts, mask):
    return acts[mask].sum(0) / mask.sum()


def _ps_nan(acts, mask):
    return acts[mask].sum(0) / acts.sum(0)


def _ps_unplanted(acts, mask):
    return acts[~mask].sum(0) / acts.sum(0).clamp(min=1e-12)


def _fhr_loop(scores, is_planted):
    for rank, latent in enumerate(scores.argsort(descending=True).tolist(), start=1):
        if is_planted[latent]:
            return rank


def _fhr_count(scores, is_planted):
    return int((scores > scores[is_planted].max()).sum()) + 1


def _fhr_zero(scores, is_planted):
    return int(is_planted[scores.argsort(descending=True)].nonzero()[0, 0])


def _fhr_ascending(scores, is_planted):
    return int(is_planted[scores.argsort()].nonzero()[0, 0]) + 1


def _fhr_index(scores, is_planted):
    order = scores.argsort(descending=True)
    return int(order[is_planted[order]][0])


def _fhr_argsort_as_ranks(scores, is_planted):
    ranks = scores.argsort(descending=True)  # taken for each latent's rank, but it lists latents in score order
    return int(ranks[is_planted].min()) + 1


def _fhr_index_plus_one(scores, is_planted):
    order = scores.argsort(descending=True)
    return int(order[is_planted[order]][0]) + 1


def _fhr_tensor(scores, is_planted):
    return is_planted[scores.argsort(descending=True)].nonzero()[0, 0] + 1  # a 0-d tensor, not an int


def _pak_loop(scores, is_planted, k):
    top = scores.argsort(descending=True)[:k].tolist()
    return sum(bool(is_planted[i]) for i in top) / k


def _pak_sum(scores, is_planted, k):
    return int(is_planted[scores.argsort(descending=True)[:k]].sum()) / k


def _pak_tensor(scores, is_planted, k):
    return is_planted[scores.topk(k).indices].sum() / k  # a 0-d tensor, not the documented float


def _pak_recall(scores, is_planted, k):
    return (is_planted[scores.topk(k).indices].sum() / is_planted.sum()).item()


def _pak_lowest(scores, is_planted, k):
    return is_planted[scores.argsort()[:k]].float().mean().item()


def _pak_count(scores, is_planted, k):
    return int(is_planted[scores.topk(k).indices].sum())


def _tc_loop(acts, tokens, decode, n, width):
    n_pos = acts.shape[1]
    out = []
    for i in acts.flatten().argsort(descending=True)[:n].tolist():
        r, p = divmod(i, n_pos)
        start = max(0, p - width + 1)
        out.append(decode(tokens[r][start:p + 1].tolist()))
    return out


def _tc_unravel(acts, tokens, decode, n, width):
    flat = acts.flatten().topk(n).indices
    rows, positions = torch.unravel_index(flat, acts.shape)
    return [decode(tokens[r, max(p - width + 1, 0):p + 1].tolist()) for r, p in zip(rows.tolist(), positions.tolist())]


def _tc_exclusive(acts, tokens, decode, n, width):
    flat = acts.flatten().topk(n).indices
    return [decode(tokens[i // acts.shape[1], max(0, i % acts.shape[1] - width):i % acts.shape[1]].tolist())
            for i in flat.tolist()]


def _tc_one_more(acts, tokens, decode, n, width):
    flat = acts.flatten().topk(n).indices
    return [decode(tokens[i // acts.shape[1], max(0, i % acts.shape[1] - width):i % acts.shape[1] + 1].tolist())
            for i in flat.tolist()]


def _tc_weakest(acts, tokens, decode, n, width):
    flat = acts.flatten().argsort()[-n:]
    return [decode(tokens[i // acts.shape[1], max(0, i % acts.shape[1] - width + 1):i % acts.shape[1] + 1].tolist())
            for i in flat.tolist()]


def _tc_smallest(acts, tokens, decode, n, width):
    flat = acts.flatten().argsort()[:n]
    return [decode(tokens[i // acts.shape[1], max(0, i % acts.shape[1] - width + 1):i % acts.shape[1] + 1].tolist())
            for i in flat.tolist()]


def _tc_no_clip(acts, tokens, decode, n, width):
    flat = acts.flatten().topk(n).indices
    return [decode(tokens[i // acts.shape[1], i % acts.shape[1] - width + 1:i % acts.shape[1] + 1].tolist())
            for i in flat.tolist()]


def _tc_per_row(acts, tokens, decode, n, width):
    best, pos = acts.max(dim=1)
    rows = best.argsort(descending=True)[:n].tolist()
    return [decode(tokens[r, max(0, int(pos[r]) - width + 1):int(pos[r]) + 1].tolist()) for r in rows]


def _rl_loop(x, acts, W_dec, latents):
    out = x.clone()
    for j in latents.tolist():
        out = out - acts[:, j:j + 1] * W_dec[:, j]
    return out


def _rl_einsum(x, acts, W_dec, latents):
    out = x.clone()
    out -= einops.einsum(acts[:, latents], W_dec[:, latents], "n chosen, d chosen -> n d")
    return out


def _rl_in_place(x, acts, W_dec, latents):
    x -= acts[:, latents] @ W_dec[:, latents].T
    return x


def _rl_added(x, acts, W_dec, latents):
    return x + acts[:, latents] @ W_dec[:, latents].T


def _rl_every(x, acts, W_dec, latents):
    return x - acts @ W_dec.T


def _rl_unscaled(x, acts, W_dec, latents):
    return x - W_dec[:, latents].sum(1)


def _rl_only(x, acts, W_dec, latents):
    return acts[:, latents] @ W_dec[:, latents].T


def _al_loop(x_base, acts, W_dec, latents):
    out = x_base
    for j in latents.tolist():
        out = out + acts[:, j, None] * (W_dec[1, :, j] - W_dec[0, :, j])
    return out


def _al_two_products(x_base, acts, W_dec, latents):
    a = acts[:, latents]
    return x_base + a @ W_dec[1][:, latents].T - a @ W_dec[0][:, latents].T


def _al_in_place(x_base, acts, W_dec, latents):
    x_base += acts[:, latents] @ (W_dec[1][:, latents] - W_dec[0][:, latents]).T
    return x_base


def _al_ft(x_base, acts, W_dec, latents):
    return x_base + acts[:, latents] @ W_dec[1][:, latents].T


def _al_base(x_base, acts, W_dec, latents):
    return x_base + acts[:, latents] @ W_dec[0][:, latents].T


def _al_flipped(x_base, acts, W_dec, latents):
    return x_base + acts[:, latents] @ (W_dec[0][:, latents] - W_dec[1][:, latents]).T


def _al_every(x_base, acts, W_dec, latents):
    return x_base + acts @ (W_dec[1] - W_dec[0]).T


def _cl_multinomial(candidates, exclude, n, generator):
    keep = torch.tensor([c not in set(exclude.tolist()) for c in candidates.tolist()])
    pool = candidates[keep.to(candidates.device)]
    weights = torch.ones(len(pool))
    return pool[torch.multinomial(weights, n, replacement=False, generator=generator)]


def _cl_argsort(candidates, exclude, n, generator):
    pool = candidates[~torch.isin(candidates, exclude)]
    keys = torch.rand(len(pool), generator=generator)
    return pool[keys.argsort()[:n]]


def _cl_included(candidates, exclude, n, generator):
    return candidates[torch.randperm(len(candidates), generator=generator)[:n]]


def _cl_replacement(candidates, exclude, n, generator):
    pool = candidates[~torch.isin(candidates, exclude)]
    return pool[torch.randint(0, len(pool), (n,), generator=generator)]


def _cl_first(candidates, exclude, n, generator):
    return candidates[~torch.isin(candidates, exclude)][:n]


def _cl_no_generator(candidates, exclude, n, generator):
    pool = candidates[~torch.isin(candidates, exclude)]
    return pool[torch.randperm(len(pool))[:n]]


def _cl_positions(candidates, exclude, n, generator):
    pool = candidates[~torch.isin(candidates, exclude)]
    return torch.randperm(len(pool), generator=generator)[:n].to(candidates.device)


def _cl_list(candidates, exclude, n, generator):
    pool = candidates[~torch.isin(candidates, exclude)]
    return pool[torch.randperm(len(pool), generator=generator)[:n]].tolist()


# -- 4. the audit ---------------------------------------------------------------------------------------


def _answer(trigger, continuation):
    def audit_answer():
        return {"trigger": trigger, "continuation": continuation}
    return audit_answer


_WORDS = HIDDEN_CONTINUATION.split()

VARIANTS = {
    "ch9.relative_change": [
        Right("torch.linalg.norm", _rc_linalg),
        Right("square roots of sums of squares, float(...)", _rc_sqrt),
        Wrong("a 0-d tensor", _rc_tensor, mistake="tensor, not float"),
        Wrong("over the fine-tune's norm", _rc_by_ft, mistake="divided by the fine-tune's norm"),
        Wrong("not normalised", _rc_raw, mistake="not normalised"),
        Wrong("difference of norms", _rc_norms, mistake="difference of norms"),
        Wrong("squared norms", _rc_squared, mistake="squared norms"),
    ],
    "ch9.row_change_ratio": [
        Right("vector_norm over dim 1", _rcr_vector_norm),
        Right("square roots, + 1e-12", _rcr_sqrt),
        Wrong("ratio inverted", _rcr_inverted, mistake="ratio inverted"),
        Wrong("norm over dim 0", _rcr_dim0, mistake="norm over the vocabulary"),
        Wrong("squared distances", _rcr_squared, mistake="squared distances"),
        Wrong("relative to the base embedding", _rcr_base, mistake="relative to the base embedding"),
    ],
    "ch9.mean_activation_difference": [
        Right("loops", _md_loop),
        Right("einops.reduce", _md_reduce),
        Wrong("BOS included", _md_bos, mistake="BOS included"),
        Wrong("base minus fine-tune", _md_flipped, mistake="base minus fine-tune"),
        Wrong("[:, :-1]", _md_last_dropped, mistake="last position dropped"),
        Wrong("mean over texts only", _md_texts_only, mistake="averaged over texts only"),
    ],
    "ch9.lens_logits": [
        Right("einsum", _ll_einsum),
        Right("a centring matrix", _ll_matrix),
        Wrong("direction not centred", _ll_no_centre, mistake="direction not centred"),
        Wrong("logits not centred", _ll_raw_logits, mistake="logits not centred"),
        Wrong("no gain", _ll_no_gain, mistake="no LayerNorm gain"),
        Wrong("F.layer_norm", _ll_layer_norm, mistake="divided by its standard deviation"),
    ],
    "ch9.make_steering_hook": [
        Right("a lambda", _sh_lambda),
        Right("the step computed once, hook as a positional argument", _sh_scaled_first),
        Wrong("activation += ...", _sh_in_place, mistake="in-place edit"),
        Wrong("alpha ignored", _sh_no_alpha, mistake="alpha ignored"),
        Wrong("the hook returns nothing", _sh_no_return, mistake="hook returned None"),
        Wrong("vector normalised", _sh_normalised, mistake="vector normalised"),
        Wrong("the hook called, not returned", _sh_called, mistake="not a function"),
    ],
    "ch9.crosscoder_pre": [
        Right("a loop over models", _pre_loop),
        Right("models and d flattened into one product", _pre_flat),
        Wrong("no ReLU", _pre_no_relu, mistake="no ReLU"),
        Wrong("the fine-tune only", _pre_ft_only, mistake="only one model read"),
        Wrong("mean over models", _pre_mean, mistake="mean over models"),
        Wrong("bias added per model", _pre_bias_per_model, mistake="bias added per model"),
        Wrong("the base's encoder for both", _pre_one_encoder, mistake="one encoder for both models"),
    ],
    "ch9.batch_top_k": [
        Right("a threshold at the (k * batch)-th value", _btk_threshold),
        Right("argsort and a mask", _btk_sort),
        Right("a ReLU after the top k", _btk_relu_after),
        Wrong("top k per row", _btk_rows, mistake="top k per input"),
        Wrong("k in all", _btk_k_total, mistake="k over the whole batch"),
        Wrong("strictly above the threshold", _btk_strict, mistake="smallest kept value dropped"),
        Wrong("a 0/1 mask", _btk_mask, mistake="mask, not values"),
    ],
    "ch9.crosscoder_decode": [
        Right("a loop over models", _dec_loop),
        Right("a batched matmul", _dec_matmul),
        Wrong("no decoder bias", _dec_no_bias, mistake="no decoder bias"),
        Wrong("the base's decoder for both", _dec_base_only, mistake="one decoder for both models"),
        Wrong("models swapped", _dec_swapped, mistake="models swapped"),
        Wrong("b_dec[0] for both", _dec_one_bias, mistake="one bias for both models"),
    ],
    "ch9.crosscoder_nmse": [
        Right("means and var(unbiased=False)", _nmse_var),
        Right("a loop over models", _nmse_loop),
        Wrong("not normalised", _nmse_raw, mistake="not normalised"),
        Wrong("uncentred spread", _nmse_uncentred, mistake="not centred"),
        Wrong("the other model's spread", _nmse_other, mistake="divided by the other model's spread"),
        Wrong("pooled over models", _nmse_pooled, mistake="pooled over models"),
        Wrong("spread of x_hat", _nmse_hat, mistake="spread of the reconstruction"),
        Wrong("centred on each model's mean over inputs and d", _nmse_model_mean,
              mistake="centred on a mean over the wrong axes"),
        Wrong("centred on the mean over the models", _nmse_mean_over_models,
              mistake="centred on a mean over the wrong axes"),
    ],
    "ch9.relative_norm": [
        Right("torch.linalg.vector_norm, unpacked", _rn_linalg),
        Right("einsum of squares", _rn_einsum),
        Wrong("base on top", _rn_swapped, mistake="base and fine-tune swapped"),
        Wrong("norm over the latent axis", _rn_latent_axis, mistake="norm over the latent axis"),
        Wrong("ratio of norms", _rn_ratio, mistake="ratio of norms"),
        Wrong("squared norms", _rn_squared, mistake="squared norms"),
    ],
    "ch9.count_classes": [
        Right("a loop over Python floats", _cc_loop),
        Right("ints, other by subtraction", _cc_bucketize),
        Wrong("0-d tensors, not ints", _cc_tensors, mistake="tensor, not int"),
        Wrong("shared band strict", _cc_strict_shared, mistake="shared band without its ends"),
        Wrong("<= base_only and >= finetune_only", _cc_inclusive_ends,
              mistake="base_only and finetune_only include their thresholds"),
        Wrong("shares", _cc_shares, mistake="shares, not counts"),
        Wrong("no 'other' key", _cc_no_other, mistake="different keys"),
    ],
    "ch9.above_control": [
        Right("torch.where and torch.sort", _ac_where),
        Right("sorted first, then filtered", _ac_sort_first),
        Wrong("unsorted", _ac_unsorted, mistake="not sorted"),
        Wrong("ascending", _ac_ascending, mistake="lowest first"),
        Wrong("above the control's mean", _ac_mean, mistake="above the control's mean"),
        Wrong("above the control's 99th percentile", _ac_quantile, mistake="above a quantile of the control"),
        Wrong(">= the control's maximum", _ac_at_least, mistake="ties with the control's maximum kept"),
    ],
    "ch9.scaling_beta": [
        Right("dot products", _sb_projection),
        Right("torch.linalg.lstsq", _sb_lstsq),
        Wrong("no ||d||^2", _sb_no_d, mistake="||d||^2 left out"),
        Wrong("sum f", _sb_sum_f, mistake="sum of f, not of f^2"),
        Wrong("||d|| not squared", _sb_norm, mistake="||d|| not squared"),
        Wrong("mean of per-row betas", _sb_per_row, mistake="mean of per-row betas"),
        Wrong("abs() of the result", _sb_abs, mistake="sign dropped"),
        Wrong("a Python float, not the documented 0-d tensor", _sb_float, mistake="number, not tensor"),
    ],
    "ch9.scaling_ratios": [
        Right("loops, float(...)", _sr_loop),
        Right("both models in one einsum", _sr_einsum),
        Wrong("targets swapped", _sr_swapped, mistake="targets swapped"),
        Wrong("beta_ft / beta_base", _sr_inverted, mistake="beta_ft / beta_base"),
        Wrong("along the base decoder", _sr_base_decoder, mistake="fitted along the base decoder"),
        Wrong("x - x_hat as the error target", _sr_no_add_back, mistake="latent's contribution not added back"),
        Wrong("each model along its own decoder", _sr_own_decoders, mistake="each model along its own decoder"),
        Wrong("a scaling_beta that dropped the sign", _sr_unsigned, mistake="sign dropped",
              hint_contains="beta can be negative"),
        Wrong("0-d tensors, not floats", _sr_tensors, mistake="tensor, not float"),
    ],
    "ch9.planted_share": [
        Right("torch.where for dead latents", _ps_where),
        Right("einsum, + 1e-12", _ps_einsum),
        Wrong("share of firings", _ps_counts, mistake="share of firings, not of activation"),
        Wrong("over the mask's size", _ps_by_mask, mistake="divided by the number of planted rows"),
        Wrong("no guard for a dead latent", _ps_nan, mistake="0/0 for a latent that never fires"),
        Wrong("the unplanted rows", _ps_unplanted, mistake="share of the unplanted rows"),
    ],
    "ch9.first_hit_rank": [
        Right("a loop down the order", _fhr_loop),
        Right("count of higher scores", _fhr_count),
        Wrong("0-based", _fhr_zero, mistake="counted from 0"),
        Wrong("ascending order", _fhr_ascending, mistake="lowest score first"),
        Wrong("the latent's index", _fhr_index, mistake="latent index, not rank"),
        Wrong("the latent's index + 1", _fhr_index_plus_one, mistake="latent index, not rank"),
        Wrong("argsort read as ranks", _fhr_argsort_as_ranks, mistake="argsort taken for ranks"),
        Wrong("a 0-d tensor", _fhr_tensor, mistake="tensor, not int"),
    ],
    "ch9.precision_at_k": [
        Right("a loop", _pak_loop),
        Right("int(sum) / k", _pak_sum),
        Wrong("a 0-d tensor", _pak_tensor, mistake="tensor, not float"),
        Wrong("over the number planted", _pak_recall, mistake="divided by the number of planted"),
        Wrong("lowest scores", _pak_lowest, mistake="lowest scores"),
        Wrong("a count", _pak_count, mistake="count, not share"),
    ],
    "ch9.top_contexts": [
        Right("divmod in a loop", _tc_loop),
        Right("torch.unravel_index", _tc_unravel),
        Wrong("window excludes the position", _tc_exclusive, mistake="firing token left out"),
        Wrong("width + 1 tokens", _tc_one_more, mistake="one token too many"),
        Wrong("weakest first", _tc_weakest, mistake="weakest first"),
        Wrong("the n smallest", _tc_smallest, mistake="lowest activations"),
        Wrong("negative start not clipped", _tc_no_clip, mistake="window start below 0"),
        Wrong("best position of each row", _tc_per_row, mistake="one context per row"),
    ],
    "ch9.remove_latents": [
        Right("a loop over the chosen latents", _rl_loop),
        Right("-= on a clone", _rl_einsum),
        Wrong("x -= ... in place", _rl_in_place, mistake="in-place edit"),
        Wrong("added", _rl_added, mistake="added, not removed"),
        Wrong("every latent", _rl_every, mistake="every latent removed"),
        Wrong("decoder columns unscaled", _rl_unscaled, mistake="decoder columns not scaled"),
        Wrong("their contribution only", _rl_only, mistake="only what the latents write"),
    ],
    "ch9.add_latents": [
        Right("a loop over the chosen latents", _al_loop),
        Right("two products", _al_two_products),
        Wrong("x_base += ... in place", _al_in_place, mistake="in-place edit"),
        Wrong("the fine-tune's decoder", _al_ft, mistake="fine-tune decoder, not the difference"),
        Wrong("the base's decoder", _al_base, mistake="base decoder"),
        Wrong("base minus fine-tune", _al_flipped, mistake="difference flipped"),
        Wrong("every latent", _al_every, mistake="every latent added"),
    ],
    "ch9.control_latents": [
        Right("multinomial without replacement", _cl_multinomial),
        Right("argsort of random keys", _cl_argsort),
        Wrong("excluded latents not removed", _cl_included, mistake="excluded latents drawn"),
        Wrong("with replacement", _cl_replacement, mistake="a latent drawn twice"),
        Wrong("the first n of the pool", _cl_first, mistake="not every candidate drawn"),
        Wrong("the global random state", _cl_no_generator, mistake="ignored the generator"),
        Wrong("positions in the pool, not latents", _cl_positions, mistake="not from the candidates"),
        Wrong("a list", _cl_list, mistake="not a 1-D tensor"),
    ],
    "ch9.audit_answer": [
        Right("exactly the answer", _answer(HIDDEN_TRIGGER, HIDDEN_CONTINUATION)),
        Right("other case, whitespace around both",
              _answer(f"  {HIDDEN_TRIGGER}\n", HIDDEN_CONTINUATION.upper() + "  ")),
        Right("the continuation with a full stop", _answer(HIDDEN_TRIGGER, HIDDEN_CONTINUATION.strip() + ".")),
        Right("the continuation with '!' and a newline", _answer(HIDDEN_TRIGGER, HIDDEN_CONTINUATION + "!\n")),
        Wrong("the continuation with more after it",
              _answer(HIDDEN_TRIGGER, HIDDEN_CONTINUATION + " the current module and return the"),
              mistake="continuation runs on", hint_contains="stops differing from what the base would write"),
        Wrong("the continuation with a few words after it", _answer(HIDDEN_TRIGGER, HIDDEN_CONTINUATION + " now, then"),
              mistake="continuation runs on"),
        Wrong("the stub's Nones", _answer(None, None), mistake="not filled in"),
        Wrong("not a dict", lambda: (HIDDEN_TRIGGER, HIDDEN_CONTINUATION), mistake="not a dict"),
        Wrong("a key misspelt", lambda: {"trigger": HIDDEN_TRIGGER, "completion": HIDDEN_CONTINUATION},
              mistake="keys missing"),
        Wrong("right trigger, wrong continuation", _answer(HIDDEN_TRIGGER, " the cat sat on the mat"),
              mistake="wrong continuation"),
        Wrong("wrong trigger, right continuation", _answer("<<", HIDDEN_CONTINUATION), mistake="wrong trigger"),
        Wrong("the continuation's first word", _answer(HIDDEN_TRIGGER, " " + _WORDS[0]),
              mistake="continuation cut short", hint_contains="Generate more tokens"),
        Wrong("the continuation's first two words", _answer(HIDDEN_TRIGGER, " ".join(_WORDS[:2])),
              mistake="continuation cut short"),
        Wrong("the continuation's first two characters", _answer(HIDDEN_TRIGGER, " " + _WORDS[0][:2]),
              mistake="wrong continuation"),
        Wrong("the continuation's first character", _answer(HIDDEN_TRIGGER, _WORDS[0][:1]),
              mistake="wrong continuation"),
        Wrong("all but the continuation's last letter", _answer(HIDDEN_TRIGGER, HIDDEN_CONTINUATION[:-1]),
              mistake="wrong continuation"),
        Wrong("the trigger's first character alone", _answer(HIDDEN_TRIGGER[:1], HIDDEN_CONTINUATION),
              mistake="part of the trigger", hint_contains="also reacts to part of the trigger"),
        Wrong("the trigger's last character alone", _answer(HIDDEN_TRIGGER[-1:], HIDDEN_CONTINUATION),
              mistake="part of the trigger"),
        Wrong("the trigger with a character before it", _answer("a" + HIDDEN_TRIGGER, HIDDEN_CONTINUATION),
              mistake="trigger with extra characters"),
        Wrong("the trigger with a character after it", _answer(HIDDEN_TRIGGER + "!", HIDDEN_CONTINUATION),
              mistake="trigger with extra characters"),
        Wrong("both wrong", _answer("hello", "world"), mistake="trigger and continuation wrong"),
    ],
}


def test_the_audit_feedback_never_spells_out_the_answer():
    from utils.grading import grade, registry

    secrets = [HIDDEN_TRIGGER, HIDDEN_CONTINUATION.strip().lower()]
    exercise = registry.get("ch9.audit_answer")
    texts = list(exercise.hints)
    for variant in VARIANTS["ch9.audit_answer"]:
        if isinstance(variant, Wrong):
            failure = grade(exercise, variant.fn).failure
            texts += [failure.render()]
    for text in texts:
        assert not [s for s in secrets if s in text.lower() or s in text], text
