"""Learner variants for the 6.1 "Linear representations" graders."""

import einops
import torch
import torch.nn.functional as F

from tests.grading.variants import Right, Wrong, test_variant_is_graded_as_expected  # noqa: F401 (runs VARIANTS)
from utils.data import othello

# -- to_mine_theirs ---------------------------------------------------------------------------


def _mt_just_moved(boards):
    sign = torch.tensor([1 if t % 2 == 0 else -1 for t in range(boards.shape[1])])
    return boards * sign[None, :, None]


def _mt_constant(boards):
    return boards * -1


def _mt_identity(boards):
    return boards.clone()


def _mt_loop(boards):
    out = boards.clone()
    for t in range(boards.shape[1]):
        out[:, t] = boards[:, t] * (-1 if t % 2 == 0 else 1)
    return out


def _mt_pow(boards):
    t = torch.arange(boards.shape[1])
    return boards * (-1) ** (t + 1)[None, :, None]


# -- state_classes ---------------------------------------------------------------------------


def _sc_plus_one(boards):
    return boards + 1


def _sc_swapped(boards):
    out = torch.zeros_like(boards)
    out[boards == 1] = 2
    out[boards == -1] = 1
    return out


def _sc_abs(boards):
    return torch.abs(boards)


def _sc_mod(boards):
    return boards % 3


def _sc_masks(boards):
    return (boards == 1).long() + 2 * (boards == -1).long()


# -- top1_legal_rate -------------------------------------------------------------------------


def _t1_all_positions(logits, legal):
    best = logits.argmax(dim=-1)
    return legal.gather(-1, best.unsqueeze(-1)).float().mean().item()


def _t1_mass(logits, legal):
    probs = logits.softmax(-1)
    keep = legal.any(-1)
    return (probs * legal.float()).sum(-1)[keep].mean().item()


def _t1_tensor(logits, legal):
    best = logits.argmax(dim=-1)
    hit = legal.gather(-1, best.unsqueeze(-1)).squeeze(-1)
    return hit[legal.any(-1)].float().mean()


def _t1_per_game(logits, legal):
    best = logits.argmax(dim=-1)
    hit = legal.gather(-1, best.unsqueeze(-1)).squeeze(-1).float()
    has_move = legal.any(-1)
    rates = [hit[g][has_move[g]].mean() for g in range(len(hit)) if has_move[g].any()]
    return torch.stack(rates).mean().item()


def _t1_masked_first(logits, legal):
    keep = legal.any(-1)
    rows, legal_rows = logits[keep], legal[keep]
    picked = legal_rows[torch.arange(len(rows), device=rows.device), rows.argmax(-1)]
    return picked.float().mean().item()


def _t1_one_hot(logits, legal):
    pick = F.one_hot(logits.argmax(-1), logits.shape[-1]).bool()
    hits = (pick & legal).any(-1)
    mask = legal.sum(-1) > 0
    return (hits.sum() / mask.sum()).item()


# -- probe_logits ---------------------------------------------------------------------------


def _pl_no_bias(resid, W, b):
    return torch.einsum("nd,dsc->nsc", resid, W)


def _pl_softmax(resid, W, b):
    return (torch.einsum("nd,dsc->nsc", resid, W) + b).softmax(dim=-1)


def _pl_bias_on_resid(resid, W, b):
    return torch.einsum("nd,dsc->nsc", resid, W) + b.sum()


def _pl_reshape(resid, W, b):
    d, s, c = W.shape
    return (resid @ W.reshape(d, s * c)).reshape(-1, s, c) + b


# -- probe_loss ----------------------------------------------------------------------------


def _loss_sum_squares(logits, labels):
    return sum(F.cross_entropy(logits[:, q], labels[:, q]) for q in range(logits.shape[1]))


def _loss_nll_raw(logits, labels):
    return F.nll_loss(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


def _loss_square_softmax(logits, labels):
    logp = F.log_softmax(logits, dim=1)
    return -logp.gather(2, labels.unsqueeze(2)).mean()


def _loss_class_axis_last(logits, labels):
    return F.cross_entropy(logits, labels)


def _loss_permute(logits, labels):
    return F.cross_entropy(logits.permute(0, 2, 1), labels)


def _loss_manual(logits, labels):
    logp = logits.log_softmax(-1)
    return -logp.gather(-1, labels[..., None]).mean()


# -- probe_accuracy ------------------------------------------------------------------------


def _acc_scalar(logits, labels):
    return (logits.argmax(-1) == labels).float().mean()


def _acc_per_sample(logits, labels):
    return (logits.argmax(-1) == labels).float().mean(1)


def _acc_loop(logits, labels):
    preds = logits.argmax(-1)
    return torch.stack([(preds[:, q] == labels[:, q]).float().mean() for q in range(labels.shape[1])])


# -- train_probe -----------------------------------------------------------------------------


def _tp(resid, labels, n_classes=3, steps=200, lr=0.05, *, step=True, detach=True, detach_resid=True):
    if detach_resid:
        resid = resid.detach()
    W = torch.zeros(resid.shape[1], labels.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(labels.shape[1], n_classes, requires_grad=True)
    opt = torch.optim.Adam([W, b], lr=lr)
    for _ in range(steps):
        logits = torch.einsum("nd,dsc->nsc", resid, W) + b
        loss = F.cross_entropy(logits.reshape(-1, n_classes), labels.reshape(-1))
        opt.zero_grad()
        loss.backward()
        if step:
            opt.step()
    return (W.detach(), b.detach()) if detach else (W, b)


def _tp_no_step(resid, labels, n_classes=3, steps=200, lr=0.05):
    return _tp(resid, labels, n_classes, steps, lr, step=False)


def _tp_not_detached(resid, labels, n_classes=3, steps=200, lr=0.05):
    return _tp(resid, labels, n_classes, steps, lr, detach=False)


def _tp_few_steps(resid, labels, n_classes=3, steps=200, lr=0.05):
    return _tp(resid, labels, n_classes, 3, lr)


def _tp_resid_attached(resid, labels, n_classes=3, steps=200, lr=0.05):
    return _tp(resid, labels, n_classes, steps, lr, detach_resid=False)


def _tp_steps_minus_one(resid, labels, n_classes=3, steps=200, lr=0.05):
    return _tp(resid, labels, n_classes, steps - 1, lr)


def _tp_steps_plus_one(resid, labels, n_classes=3, steps=200, lr=0.05):
    return _tp(resid, labels, n_classes, steps + 1, lr)


def _tp_standardised(resid, labels, n_classes=3, steps=200, lr=0.05):
    resid = resid.detach()
    return _tp((resid - resid.mean(0)) / resid.std(0), labels, n_classes, steps, lr)


def _tp_small_random_start(resid, labels, n_classes=3, steps=200, lr=0.05):
    resid = resid.detach()
    W = (0.01 * torch.randn(resid.shape[1], labels.shape[1], n_classes)).requires_grad_()
    b = (0.01 * torch.randn(labels.shape[1], n_classes)).requires_grad_()
    opt = torch.optim.Adam([W, b], lr=lr)
    for _ in range(steps):
        loss = F.cross_entropy((torch.einsum("nd,dsc->nsc", resid, W) + b).reshape(-1, n_classes), labels.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return W.detach(), b.detach()


def _tp_parameters(resid, labels, n_classes=3, steps=200, lr=0.05):
    data = resid.detach().clone()
    W = torch.nn.Parameter(torch.zeros(data.shape[1], labels.shape[1], n_classes))
    b = torch.nn.Parameter(torch.zeros(labels.shape[1], n_classes))
    opt = torch.optim.Adam([W, b], lr=lr)
    for _ in range(steps):
        logits = einops.einsum(data, W, "n d, d s c -> n s c") + b
        loss = F.cross_entropy(logits.permute(0, 2, 1), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return W.detach(), b.detach()


def _tp_fixed_bias(resid, labels, n_classes=3, steps=200, lr=0.05):
    W = torch.zeros(resid.shape[1], labels.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(labels.shape[1], n_classes)
    opt = torch.optim.Adam([W], lr=lr)
    for _ in range(steps):
        loss = F.cross_entropy((torch.einsum("nd,dsc->nsc", resid, W) + b).reshape(-1, n_classes), labels.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return W.detach(), b


def _tp_random_init(resid, labels, n_classes=3, steps=200, lr=0.05):
    torch.manual_seed(0)
    W = torch.randn(resid.shape[1], labels.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(labels.shape[1], n_classes, requires_grad=True)
    opt = torch.optim.Adam([W, b], lr=lr)
    for _ in range(steps):
        loss = F.cross_entropy((torch.einsum("nd,dsc->nsc", resid, W) + b).reshape(-1, n_classes), labels.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return W.detach(), b.detach()


def _tp_half_steps(resid, labels, n_classes=3, steps=200, lr=0.05):
    return _tp(resid, labels, n_classes, steps // 2, lr)


def _tp_triple_lr(resid, labels, n_classes=3, steps=200, lr=0.05):
    return _tp(resid, labels, n_classes, steps, 3 * lr)


def _tp_three_classes(resid, labels, n_classes=3, steps=200, lr=0.05):
    return _tp(resid, labels, 3, steps, lr)


def _tp_grad_on_resid(resid, labels, n_classes=3, steps=200, lr=0.05):
    resid.requires_grad_(True)
    return _tp(resid, labels, n_classes, steps, lr)


def _tp_sum_over_squares(resid, labels, n_classes=3, steps=200, lr=0.05):
    resid = resid.detach()
    W = torch.zeros(resid.shape[1], labels.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(labels.shape[1], n_classes, requires_grad=True)
    opt = torch.optim.Adam([W, b], lr=lr)
    for _ in range(steps):
        logits = einops.einsum(resid, W, "n d, d s c -> n s c") + b
        loss = sum(F.cross_entropy(logits[:, q], labels[:, q]) for q in range(labels.shape[1]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return W.detach(), b.detach()


def _tp_sgd(resid, labels, n_classes=3, steps=200, lr=0.05):
    W = torch.zeros(resid.shape[1], labels.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(labels.shape[1], n_classes, requires_grad=True)
    opt = torch.optim.SGD([W, b], lr=lr)
    for _ in range(steps):
        loss = F.cross_entropy((torch.einsum("nd,dsc->nsc", resid, W) + b).reshape(-1, n_classes), labels.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return W.detach(), b.detach()


def _tp_module(resid, labels, n_classes=3, steps=200, lr=0.05):
    resid = resid.detach()
    linear = torch.nn.Linear(resid.shape[1], labels.shape[1] * n_classes)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    opt = torch.optim.Adam(linear.parameters(), lr=lr)
    for _ in range(steps):
        logits = linear(resid).reshape(len(resid), labels.shape[1], n_classes)
        loss = F.cross_entropy(logits.permute(0, 2, 1), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    W = linear.weight.detach().T.reshape(resid.shape[1], labels.shape[1], n_classes)
    return W, linear.bias.detach().reshape(labels.shape[1], n_classes)


# -- control_labels --------------------------------------------------------------------------


def _prev(moves, first):
    out = torch.empty_like(moves)
    out[:, 0] = first
    out[:, 1:] = moves[:, :-1]
    return out


def _cl_swapped(moves, table):
    return table[moves, _prev(moves, table.shape[0] - 1)]


def _cl_unshifted(moves, table):
    return table[moves, moves]


def _cl_roll(moves, table):
    return table[moves.roll(1, dims=-1), moves]


def _cl_zero_first(moves, table):
    return table[_prev(moves, 0), moves]


def _cl_pad_constant(moves, table):
    return table[_prev(moves, othello.PAD), moves]


def _cl_loop(moves, table):
    games, n = moves.shape
    out = torch.zeros(games, n, table.shape[-1], dtype=table.dtype)
    for g in range(games):
        previous = table.shape[0] - 1
        for t in range(n):
            out[g, t] = table[previous, moves[g, t]]
            previous = moves[g, t]
    return out


def _cl_pad(moves, table):
    previous = F.pad(moves, (1, 0), value=table.shape[0] - 1)[:, :-1]
    return table[previous, moves]


# -- position_baseline --------------------------------------------------------------------


def _pb(train, test, vtr, vte, n_classes=3, *, mask_train=True, mask_test=True, per_move=True, on_test=False):
    source, source_valid = (test, vte) if on_test else (train, vtr)
    counts = F.one_hot(source, n_classes).float()
    if mask_train:
        counts = counts * source_valid[..., None, None]
    counts = counts.sum(0)
    if not per_move:
        counts = counts.sum(0, keepdim=True).expand_as(counts)
    guess = counts.argmax(-1)
    correct = (test == guess).float()
    if mask_test:
        return (correct * vte[..., None]).sum((0, 1)) / vte.sum()
    return correct.mean((0, 1))


def _pb_unmasked(train, test, vtr, vte, n_classes=3):
    return _pb(train, test, vtr, vte, n_classes, mask_train=False)


def _pb_all_test(train, test, vtr, vte, n_classes=3):
    return _pb(train, test, vtr, vte, n_classes, mask_test=False)


def _pb_per_square(train, test, vtr, vte, n_classes=3):
    return _pb(train, test, vtr, vte, n_classes, per_move=False)


def _pb_on_test(train, test, vtr, vte, n_classes=3):
    return _pb(train, test, vtr, vte, n_classes, on_test=True)


def _pb_loops(train, test, vtr, vte, n_classes=3):
    n_moves, n_squares = train.shape[1], train.shape[2]
    guess = torch.zeros(n_moves, n_squares, dtype=torch.long)
    for t in range(n_moves):
        for q in range(n_squares):
            values = train[:, t, q][vtr[:, t]]
            guess[t, q] = torch.bincount(values, minlength=n_classes).argmax()
    hits = (test == guess) & vte[..., None]
    return hits.sum((0, 1)) / vte.sum()


# -- class_direction -----------------------------------------------------------------------


def _cd_reversed(W, square, source, target):
    d = W[:, square, source] - W[:, square, target]
    return d / d.norm()


def _cd_raw(W, square, source, target):
    return W[:, square, target] - W[:, square, source]


def _cd_target_only(W, square, source, target):
    return F.normalize(W[:, square, target], dim=0)


def _cd_normalize(W, square, source, target):
    return F.normalize(W[:, square, target] - W[:, square, source], dim=0)


# -- reflect_along -----------------------------------------------------------------------


def _ra_raw(resid, direction):
    return resid - 2 * (resid @ direction).unsqueeze(-1) * direction


def _ra_project(resid, direction):
    u = direction / direction.norm()
    return resid - (resid @ u).unsqueeze(-1) * u


def _ra_component(resid, direction):
    u = direction / direction.norm()
    return -(resid @ u).unsqueeze(-1) * u


def _ra_householder(resid, direction):
    u = direction / direction.norm()
    H = torch.eye(len(u)) - 2 * torch.outer(u, u)
    return resid @ H


# -- intervene ------------------------------------------------------------------------------


def _iv(model, moves, layer, direction, position, *, name="resid_post", every=False, factor=2, keep=False):
    u = direction / direction.norm()

    def hook(resid, hook):
        resid = resid.clone()
        idx = slice(None) if every else position
        part = resid[:, idx]
        resid[:, idx] = part - factor * (part @ u).unsqueeze(-1) * u
        return resid

    if keep:
        model.add_hook(f"blocks.{layer}.hook_{name}", hook)
        return model(moves)
    return model.run_with_hooks(moves, fwd_hooks=[(f"blocks.{layer}.hook_{name}", hook)])


def _iv_every(model, moves, layer, direction, position):
    return _iv(model, moves, layer, direction, position, every=True)


def _iv_pre(model, moves, layer, direction, position):
    return _iv(model, moves, layer, direction, position, name="resid_pre")


def _iv_project(model, moves, layer, direction, position):
    return _iv(model, moves, layer, direction, position, factor=1)


def _iv_kept(model, moves, layer, direction, position):
    return _iv(model, moves, layer, direction, position, keep=True)


def _iv_context(model, moves, layer, direction, position):
    u = direction / direction.norm()

    def hook(resid, hook):
        edited = resid.clone()
        edited[:, position] -= 2 * einops.einsum(resid[:, position], u, "g d, d -> g")[:, None] * u
        return edited

    with model.hooks(fwd_hooks=[(f"blocks.{layer}.hook_resid_post", hook)]):
        return model(moves)


# -- top_n_errors -------------------------------------------------------------------------


def _tn_top1(logits, legal):
    return (~legal.gather(-1, logits.argmax(-1, keepdim=True)).squeeze(-1)).long()


def _tn_ascending(logits, legal):
    rank = logits.argsort(-1).argsort(-1)
    return ((rank < legal.sum(-1, keepdim=True)) & ~legal).sum(-1)


def _tn_threshold(logits, legal):
    n = legal.sum(-1, keepdim=True).clamp(min=1)
    return ((logits.softmax(-1) > 1.0 / n) & ~legal).sum(-1)


def _tn_fraction(logits, legal):
    rank = logits.argsort(-1, descending=True).argsort(-1)
    n = legal.sum(-1, keepdim=True)
    return ((rank < n) & ~legal).sum(-1) / n.squeeze(-1)


def _tn_fraction_mean(logits, legal):
    rank = logits.argsort(-1, descending=True).argsort(-1)
    return ((rank < legal.sum(-1, keepdim=True)) & ~legal).float().mean(-1)


def _tn_legal_counted(logits, legal):
    rank = logits.argsort(-1, descending=True).argsort(-1)
    return ((rank < legal.sum(-1, keepdim=True)) & legal).sum(-1)


def _tn_topk_mask(logits, legal):
    n = legal.sum(-1)
    order = logits.argsort(-1, descending=True)
    top = torch.zeros_like(legal).scatter(-1, order, torch.arange(logits.shape[-1]).expand_as(order) < n[..., None])
    return (top & ~legal).sum(-1)


def _tn_missing_legal(logits, legal):
    rank = logits.argsort(-1, descending=True).argsort(-1)
    return (legal & (rank >= legal.sum(-1, keepdim=True))).sum(-1)


def _tn_loop(logits, legal):
    flat_logits, flat_legal = logits.reshape(-1, logits.shape[-1]), legal.reshape(-1, legal.shape[-1])
    out = []
    for row, ok in zip(flat_logits, flat_legal):
        n = int(ok.sum())
        top = row.topk(n).indices if n else torch.zeros(0, dtype=torch.long)
        out.append(int((~ok[top]).sum()))
    return torch.tensor(out).reshape(legal.shape[:-1])


# -- logit_lens ------------------------------------------------------------------------------


def _ll_no_ln(model, resid):
    return model.unembed(resid)


def _ll_softmax(model, resid):
    return model.unembed(model.ln_final(resid)).softmax(-1)


def _ll_manual_ln(model, resid):
    centred = resid - resid.mean(-1, keepdim=True)
    normed = centred / (centred.pow(2).mean(-1, keepdim=True) + model.cfg.eps).sqrt()
    ln = model.ln_final
    return model.unembed(normed * ln.weight + ln.bias)


# -- kl_from_final -------------------------------------------------------------------------


def _kl_reversed(lens_logits, final_logits):
    q = lens_logits.log_softmax(-1)
    return (q.exp() * (q - final_logits.log_softmax(-1))).sum(-1)


def _kl_mean(lens_logits, final_logits):
    p = final_logits.log_softmax(-1)
    return (p.exp() * (p - lens_logits.log_softmax(-1))).mean(-1)


def _kl_raw(lens_logits, final_logits):
    return (final_logits.softmax(-1) * (final_logits - lens_logits)).sum(-1)


def _kl_torch(lens_logits, final_logits):
    return F.kl_div(lens_logits.log_softmax(-1), final_logits.log_softmax(-1), log_target=True,
                    reduction="none").sum(-1)


# -- tuned_lens -------------------------------------------------------------------------


def _tl_no_skip(model, resid, A, b):
    return model.unembed(model.ln_final(resid @ A + b))


def _tl_transposed(model, resid, A, b):
    return model.unembed(model.ln_final(resid + resid @ A.T + b))


def _tl_no_bias(model, resid, A, b):
    return model.unembed(model.ln_final(resid + resid @ A))


def _tl_identity(model, resid, A, b):
    translated = resid @ (torch.eye(A.shape[0]) + A) + b
    return model.unembed(model.ln_final(translated))


# -- train_translator ------------------------------------------------------------------------


def _kl(lens_logits, final_logits):
    p = final_logits.log_softmax(-1)
    return (p.exp() * (p - lens_logits.log_softmax(-1))).sum(-1)


def _tt(model, resid, final_logits, steps=150, lr=1e-2, *, train_model=False, step=True):
    d = resid.shape[-1]
    A = torch.zeros(d, d, requires_grad=True)
    b = torch.zeros(d, requires_grad=True)
    params = [A, b] + (list(model.parameters()) if train_model else [])
    if train_model:
        model.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        loss = _kl(model.unembed(model.ln_final(resid + resid @ A + b)), final_logits).mean()
        opt.zero_grad()
        loss.backward()
        if step:
            opt.step()
    return A.detach(), b.detach()


def _tt_trains_model(model, resid, final_logits, steps=150, lr=1e-2):
    return _tt(model, resid, final_logits, steps, lr, train_model=True)


def _tt_no_step(model, resid, final_logits, steps=150, lr=1e-2):
    return _tt(model, resid, final_logits, steps, lr, step=False)


def _tt_few_steps(model, resid, final_logits, steps=150, lr=1e-2):
    return _tt(model, resid, final_logits, 2, lr)


def _tt_reverse_kl(model, resid, final_logits, steps=150, lr=1e-2):
    d = resid.shape[-1]
    A = torch.zeros(d, d, requires_grad=True)
    b = torch.zeros(d, requires_grad=True)
    opt = torch.optim.Adam([A, b], lr=lr)
    for _ in range(steps):
        loss = _kl(final_logits, model.unembed(model.ln_final(resid + resid @ A + b))).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return A.detach(), b.detach()


def _tt_mse(model, resid, final_logits, steps=150, lr=1e-2):
    d = resid.shape[-1]
    A = torch.zeros(d, d, requires_grad=True)
    b = torch.zeros(d, requires_grad=True)
    opt = torch.optim.Adam([A, b], lr=lr)
    for _ in range(steps):
        loss = ((model.unembed(model.ln_final(resid + resid @ A + b)) - final_logits) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return A.detach(), b.detach()


def _tt_not_detached(model, resid, final_logits, steps=150, lr=1e-2):
    d = resid.shape[-1]
    A = torch.zeros(d, d, requires_grad=True)
    b = torch.zeros(d, requires_grad=True)
    opt = torch.optim.Adam([A, b], lr=lr)
    for _ in range(steps):
        loss = _kl(model.unembed(model.ln_final(resid + resid @ A + b)), final_logits).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return A, b


def _tt_all_params(model, resid, final_logits, steps=150, lr=1e-2):
    d = resid.shape[-1]
    A = torch.zeros(d, d, requires_grad=True)
    b = torch.zeros(d, requires_grad=True)
    opt = torch.optim.Adam([A, b, *model.parameters()], lr=lr)
    for _ in range(steps):
        loss = _kl(model.unembed(model.ln_final(resid + resid @ A + b)), final_logits).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return A.detach(), b.detach()


def _tt_kl_div(model, resid, final_logits, steps=150, lr=1e-2):
    d = resid.shape[-1]
    A = torch.zeros(d, d, requires_grad=True)
    b = torch.zeros(d, requires_grad=True)
    opt = torch.optim.Adam([A, b], lr=lr)
    target = final_logits.log_softmax(-1)
    for _ in range(steps):
        lens = model.unembed(model.ln_final(resid + resid @ A + b)).log_softmax(-1)
        loss = F.kl_div(lens, target, log_target=True, reduction="batchmean")
        opt.zero_grad()
        loss.backward()
        opt.step()
    return A.detach(), b.detach()


# -- mean_difference -----------------------------------------------------------------------


def _md_reversed(resid, labels, square, target, source):
    return resid[labels[:, square] == source].mean(0) - resid[labels[:, square] == target].mean(0)


def _md_overall(resid, labels, square, target, source):
    return resid[labels[:, square] == target].mean(0) - resid.mean(0)


def _md_unit(resid, labels, square, target, source):
    d = resid[labels[:, square] == target].mean(0) - resid[labels[:, square] == source].mean(0)
    return d / d.norm()


def _md_weights(resid, labels, square, target, source):
    on = (labels[:, square] == target).float()
    off = (labels[:, square] == source).float()
    return (on @ resid) / on.sum() - (off @ resid) / off.sum()


# -- steering_curve -------------------------------------------------------------------------


def _sv(model, moves, layer, direction, scales, square, position, *, every=False, last=False, raw=False):
    values = []
    for scale in scales:
        def hook(resid, hook, scale=scale):
            resid = resid.clone()
            if every:
                return resid + scale * direction
            resid[:, position] = resid[:, position] + scale * direction
            return resid

        logits = model.run_with_hooks(moves, fwd_hooks=[(f"blocks.{layer}.hook_resid_post", hook)])
        at = logits[:, -1] if last else logits[:, position]
        values.append((at if raw else at.softmax(-1))[:, square].mean())
    return torch.stack(values)


def _sv_every(model, moves, layer, direction, scales, square, position):
    return _sv(model, moves, layer, direction, scales, square, position, every=True)


def _sv_last(model, moves, layer, direction, scales, square, position):
    return _sv(model, moves, layer, direction, scales, square, position, last=True)


def _sv_logits(model, moves, layer, direction, scales, square, position):
    return _sv(model, moves, layer, direction, scales, square, position, raw=True)


def _sv_kept(model, moves, layer, direction, scales, square, position):
    values = []
    for scale in scales:
        model.reset_hooks()

        def hook(resid, hook, scale=scale):
            resid = resid.clone()
            resid[:, position] += scale * direction
            return resid

        model.add_hook(f"blocks.{layer}.hook_resid_post", hook)
        values.append(model(moves)[:, position].softmax(-1)[:, square].mean())
    return torch.stack(values)


def _sv_list(model, moves, layer, direction, scales, square, position):
    out = torch.zeros(len(scales))
    for i, scale in enumerate(scales):
        def hook(resid, hook, scale=scale):
            delta = torch.zeros_like(resid)
            delta[:, position] = scale * direction
            return resid + delta

        with torch.no_grad():
            logits = model.run_with_hooks(moves, fwd_hooks=[(f"blocks.{layer}.hook_resid_post", hook)])
        out[i] = F.softmax(logits[:, position], dim=-1)[:, square].mean()
    return out


# -- variants for the mistakes blind test 2 found unnamed ------------------------------------------


def _mt_game_axis(boards):
    g = torch.arange(boards.shape[0])
    return boards * torch.where(g % 2 == 0, -1, 1)[:, None, None]


def _mt_square_axis(boards):
    return boards * (-1) ** (torch.arange(boards.shape[2]) + 1)


def _t1_count(logits, legal):
    hit = legal.gather(-1, logits.argmax(-1, keepdim=True)).squeeze(-1)
    return float(hit[legal.any(-1)].sum())


def _t1_count_int(logits, legal):
    hit = legal.gather(-1, logits.argmax(-1, keepdim=True)).squeeze(-1)
    return int(hit[legal.any(-1)].sum())


def _t1_move_axis(logits, legal):
    top = logits.argmax(1)
    return legal.gather(1, top[:, None, :]).squeeze(1).float().mean().item()


def _t1_illegal(logits, legal):
    hit = legal.gather(-1, logits.argmax(-1, keepdim=True)).squeeze(-1)
    return (~hit[legal.any(-1)]).float().mean().item()


def _loss_nll_probs(logits, labels):
    p = logits.softmax(-1)
    return F.nll_loss(p.reshape(-1, p.shape[-1]), labels.reshape(-1))


def _loss_double_softmax(logits, labels):
    return F.cross_entropy(logits.softmax(-1).permute(0, 2, 1), labels)


def _loss_none(logits, labels):
    return F.cross_entropy(logits.permute(0, 2, 1), labels, reduction="none")


def _loss_sum(logits, labels):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="sum")


def _tp_no_zero_grad(resid, labels, n_classes=3, steps=200, lr=0.05):
    resid = resid.detach()
    W = torch.zeros(resid.shape[1], labels.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(labels.shape[1], n_classes, requires_grad=True)
    opt = torch.optim.Adam([W, b], lr=lr)
    for _ in range(steps):
        F.cross_entropy((torch.einsum("nd,dsc->nsc", resid, W) + b).reshape(-1, n_classes),
                        labels.reshape(-1)).backward()
        opt.step()
    return W.detach(), b.detach()


def _tp_default_lr(resid, labels, n_classes=3, steps=200, lr=0.05):
    resid = resid.detach()
    W = torch.zeros(resid.shape[1], labels.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(labels.shape[1], n_classes, requires_grad=True)
    opt = torch.optim.Adam([W, b])
    for _ in range(steps):
        loss = F.cross_entropy((torch.einsum("nd,dsc->nsc", resid, W) + b).permute(0, 2, 1), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return W.detach(), b.detach()


def _cl_next(moves, table):
    nxt = torch.cat([moves[:, 1:], torch.full_like(moves[:, :1], table.shape[0] - 1)], dim=1)
    return table[moves, nxt]


def _cl_minus_one(moves, table):
    return table[F.pad(moves, (1, 0), value=-1)[:, :-1], moves]


def _pb_ties_high(train, test, vtr, vte, n_classes=3):
    counts = (F.one_hot(train, n_classes) * vtr[..., None, None]).sum(0)
    guess = n_classes - 1 - counts.flip(-1).argmax(-1)
    return ((test == guess) & vte[..., None]).sum((0, 1)).float() / vte.sum()


def _pb_per_game(train, test, vtr, vte, n_classes=3):
    guess = (F.one_hot(train, n_classes) * vtr[..., None, None]).sum(0).argmax(-1)
    right = ((test == guess) & vte[..., None]).float()
    return right.sum((0, 1)) / test.shape[0]


def _cd_squared(W, square, source, target):
    d = W[:, square, target] - W[:, square, source]
    return d / (d @ d)


def _cd_axis(W, square, source, target):
    d = W[square, :, target] - W[square, :, source]
    return d / d.norm()


def _ra_plus(resid, direction):
    u = direction / direction.norm()
    return resid + 2 * (resid @ u)[..., None] * u


def _ra_squared_norm(resid, direction):
    return resid - 2 * ((resid @ direction) / (direction @ direction))[..., None] * direction


def _iv_returns_nothing(model, moves, layer, direction, position):
    def hook(resid, hook):
        resid = resid.clone()
        resid[:, position] = _ra_householder(resid[:, position], direction)

    return model.run_with_hooks(moves, fwd_hooks=[(f"blocks.{layer}.hook_resid_post", hook)])


def _iv_raw(model, moves, layer, direction, position):
    def hook(resid, hook):
        resid = resid.clone()
        x = resid[:, position]
        resid[:, position] = x - 2 * (x @ direction)[:, None] * direction
        return resid

    return model.run_with_hooks(moves, fwd_hooks=[(f"blocks.{layer}.hook_resid_post", hook)])


def _iv_late(model, moves, layer, direction, position):
    return _iv(model, moves, layer, direction, position + 1)


def _iv_in_place(model, moves, layer, direction, position):
    u = direction / direction.norm()

    def hook(resid, hook):
        resid[:, position] -= 2 * (resid[:, position] @ u)[:, None] * u

    return model.run_with_hooks(moves, fwd_hooks=[(f"blocks.{layer}.hook_resid_post", hook)])


def _iv_edit_wrong_row(model, moves, layer, direction, position):
    """Edits the first *game* instead of the position: the logits at `position` of other games unedited."""
    u = direction / direction.norm()

    def hook(resid, hook):
        resid = resid.clone()
        resid[position % resid.shape[0]] = resid[position % resid.shape[0]] - 2 * (resid[0] @ u)[:, None] * u
        return resid

    return model.run_with_hooks(moves, fwd_hooks=[(f"blocks.{layer}.hook_resid_mid", hook)])


def _tn_rank_le(logits, legal):
    rank = logits.argsort(-1, descending=True).argsort(-1)
    return ((rank <= legal.sum(-1, keepdim=True)) & ~legal).sum(-1)


def _tn_single_argsort(logits, legal):
    order = logits.argsort(-1, descending=True)
    return ((order < legal.sum(-1, keepdim=True)) & ~legal).sum(-1)


def _tn_tie_inclusive(logits, legal):
    n = legal.sum(-1, keepdim=True)
    higher = (logits[..., None, :] > logits[..., :, None]).sum(-1)
    return ((higher < n) & ~legal).sum(-1)


def _tn_tie_exclusive(logits, legal):
    n = legal.sum(-1, keepdim=True)
    ordered = logits.sort(-1, descending=True).values
    beyond = ordered.gather(-1, n.clamp(max=logits.shape[-1] - 1))  # the (N+1)-th logit
    return (((logits > beyond) | (n == logits.shape[-1])) & ~legal).sum(-1)


def _tn_stable(logits, legal):
    rank = logits.argsort(dim=-1, descending=True, stable=True).argsort(-1)
    return ((rank < legal.sum(-1, keepdim=True)) & ~legal).sum(-1)


def _tn_ascending_stable_reversed(logits, legal):
    """Ties go to the *higher* square: still a valid top N."""
    flipped = logits.flip(-1)
    rank = flipped.argsort(dim=-1, descending=True, stable=True).argsort(-1).flip(-1)
    return ((rank < legal.sum(-1, keepdim=True)) & ~legal).sum(-1)


def _ll_no_bias(model, resid):
    return model.ln_final(resid) @ model.W_U


def _ll_plain_ln(model, resid):
    return model.unembed(F.layer_norm(resid, resid.shape[-1:], eps=model.cfg.eps))


def _ll_log_probs(model, resid):
    return model.unembed(model.ln_final(resid)).log_softmax(-1)


def _ll_unbiased(model, resid):
    centred = resid - resid.mean(-1, keepdim=True)
    return model.unembed(centred / (resid.std(-1, keepdim=True) + 1e-5) * model.ln_final.weight + model.ln_final.bias)


def _ll_weights(model, resid):
    return model.ln_final(resid) @ model.W_U + model.b_U


def _kl_div_raw(lens_logits, final_logits):
    return F.kl_div(lens_logits, final_logits.softmax(-1), reduction="none").sum(-1)


def _kl_batchmean(lens_logits, final_logits):
    return F.kl_div(lens_logits.log_softmax(-1), final_logits.softmax(-1), reduction="batchmean")


def _kl_bits(lens_logits, final_logits):
    p = final_logits.softmax(-1)
    return (p * (p.log2() - lens_logits.softmax(-1).log2())).sum(-1)


def _kl_bits_stable(lens_logits, final_logits):
    p = final_logits.log_softmax(-1)
    return (p.exp() * (p - lens_logits.log_softmax(-1))).sum(-1) / torch.log(torch.tensor(2.0))


def _tl_after_ln(model, resid, A, b):
    x = model.ln_final(resid)
    return model.unembed(x + x @ A + b)


def _tl_no_unembed_bias(model, resid, A, b):
    return model.ln_final(resid + resid @ A + b) @ model.W_U


def _tt_loop(model, resid, final_logits, steps, lr, *, loss="mean", optimizer=torch.optim.Adam, skip=True,
             init=None):
    d = resid.shape[-1]
    A = (torch.zeros(d, d) if init is None else init(d)).requires_grad_(True)
    b = torch.zeros(d, requires_grad=True)
    opt = optimizer([A, b], lr=lr)
    for _ in range(steps):
        lens = model.unembed(model.ln_final((resid if skip else 0) + resid @ A + b))
        kl = _kl(lens, final_logits)
        value = kl.sum() if loss == "sum" else kl.mean()
        opt.zero_grad()
        value.backward()
        opt.step()
    return A.detach(), b.detach()


def _tt_sum(model, resid, final_logits, steps=150, lr=1e-2):
    return _tt_loop(model, resid, final_logits, steps, lr, loss="sum")


def _tt_sgd(model, resid, final_logits, steps=150, lr=1e-2):
    return _tt_loop(model, resid, final_logits, steps, lr, optimizer=torch.optim.SGD)


def _tt_no_skip(model, resid, final_logits, steps=150, lr=1e-2):
    return _tt_loop(model, resid, final_logits, steps, lr, skip=False)


def _tt_random_start(model, resid, final_logits, steps=150, lr=1e-2):
    g = torch.Generator().manual_seed(0)
    return _tt_loop(model, resid, final_logits, steps, lr, init=lambda d: 0.02 * torch.randn(d, d, generator=g))


def _tt_default_lr(model, resid, final_logits, steps=150, lr=1e-2):
    return _tt_loop(model, resid, final_logits, steps, 1e-3)


def _md_sums(resid, labels, square, target, source):
    col = labels[:, square]
    return resid[col == target].sum(0) - resid[col == source].sum(0)


def _md_others(resid, labels, square, target, source):
    col = labels[:, square]
    return resid[col == target].mean(0) - resid[col != target].mean(0)


def _md_row(resid, labels, square, target, source):
    row = labels[square]
    return resid[row == target].mean(0) - resid[row == source].mean(0)


def _sv_hooked(model, moves, layer, direction, scales, square, position, *, name="resid_post", read=0, dim=-1,
               as_list=False):
    out = []
    for s in scales:
        def hook(resid, hook, s=s):
            resid = resid.clone()
            resid[:, position] += s * direction
            return resid

        logits = model.run_with_hooks(moves, fwd_hooks=[(f"blocks.{layer}.hook_{name}", hook)])
        value = logits.softmax(dim)[:, position + read, square].mean()
        out.append(value.item() if as_list else value)
    return out if as_list else torch.stack(out)


def _sv_late(model, moves, layer, direction, scales, square, position):
    return _sv_hooked(model, moves, layer, direction, scales, square, position, read=1)


def _sv_pre(model, moves, layer, direction, scales, square, position):
    return _sv_hooked(model, moves, layer, direction, scales, square, position, name="resid_pre")


def _sv_position_softmax(model, moves, layer, direction, scales, square, position):
    return _sv_hooked(model, moves, layer, direction, scales, square, position, dim=1)


def _sv_as_list(model, moves, layer, direction, scales, square, position):
    return _sv_hooked(model, moves, layer, direction, scales, square, position, as_list=True)


def _acc_count(logits, labels):
    return (logits.argmax(-1) == labels).sum(0)


def _acc_square_axis(logits, labels):
    return (logits.argmax(1) == labels).float().mean(0)


# -- blind test 3: mistakes that passed, were misnamed or got only generic feedback ---------------


def _iv_next_block_pre(model, moves, layer, direction, position):
    """blocks.{layer + 1}.hook_resid_pre equals blocks.{layer}.hook_resid_post, except that the last block has
    no next block (KeyError)."""
    return _iv(model, moves, layer + 1, direction, position, name="resid_pre")


def _iv_added(model, moves, layer, direction, position):
    def hook(resid, hook):
        resid = resid.clone()
        resid[:, position] = resid[:, position] + direction
        return resid

    return model.run_with_hooks(moves, fwd_hooks=[(f"blocks.{layer}.hook_resid_post", hook)])


def _tt_seeded_random_start(model, resid, final_logits, steps=150, lr=1e-2):
    torch.manual_seed(5)  # a draw whose untrained lens happens to sit closer to the final output than the logit lens
    d = resid.shape[-1]
    A = (0.05 * torch.randn(d, d)).requires_grad_(True)
    b = (0.05 * torch.randn(d)).requires_grad_(True)
    opt = torch.optim.Adam([A, b], lr=lr)
    for _ in range(steps):
        kl = _kl(model.unembed(model.ln_final(resid + resid @ A + b)), final_logits).mean()
        opt.zero_grad()
        kl.backward()
        opt.step()
    return A.detach(), b.detach()


def _tt_fixed_steps(model, resid, final_logits, steps=150, lr=1e-2):
    return _tt_loop(model, resid, final_logits, 100, lr)


def _tp_steps_minus_one_attached(resid, labels, n_classes=3, steps=200, lr=0.05):
    return _tp(resid, labels, n_classes, steps - 1, lr, detach_resid=False)


def _tp_from_one(resid, labels, n_classes=3, steps=200, lr=0.05):
    resid = resid.detach()
    W = torch.zeros(resid.shape[1], labels.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(labels.shape[1], n_classes, requires_grad=True)
    opt = torch.optim.Adam([W, b], lr=lr)
    for step in range(1, steps):
        loss = F.cross_entropy((torch.einsum("nd,dsc->nsc", resid, W) + b).permute(0, 2, 1), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return W.detach(), b.detach()


def _cd_l1(W, square, source, target):
    d = W[:, square, target] - W[:, square, source]
    return F.normalize(d, p=1, dim=0)


def _pb_per_move_number(train, test, vtr, vte, n_classes=3):
    guess = (F.one_hot(train, n_classes) * vtr[..., None, None]).sum(0).argmax(-1)
    hits = ((test == guess) & vte[..., None]).float()
    return (hits.sum(0) / vte.sum(0)[:, None]).mean(0)


def _loss_labels_transposed(logits, labels):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.T.reshape(-1))


def _t1_first_legal(logits, legal):
    has_move = legal.any(-1)
    hit = logits.argmax(-1) == legal.float().argmax(-1)
    return hit[has_move].float().mean().item()


VARIANTS = {
    "ch6.to_mine_theirs": [
        Wrong("relative to the player who just moved", _mt_just_moved, mistake="the player who just moved"),
        Wrong("the same sign for every move", _mt_constant, mistake="one player for every move"),
        Wrong("boards returned unchanged", _mt_identity, mistake="unchanged"),
        Right("a loop over moves", _mt_loop),
        Wrong("parity along the game axis", _mt_game_axis, mistake="parity along the game axis"),
        Wrong("parity along the square axis", _mt_square_axis, mistake="parity along the square axis"),
        Right("(-1) ** (t + 1)", _mt_pow),
    ],
    "ch6.state_classes": [
        Wrong("boards + 1", _sc_plus_one, mistake="shifted by one"),
        Wrong("colours swapped", _sc_swapped, mistake="colours swapped"),
        Wrong("abs()", _sc_abs, mistake="colour lost"),
        Right("boards % 3", _sc_mod),
        Right("sum of masks", _sc_masks),
    ],
    "ch6.top1_legal_rate": [
        Wrong("finished positions counted", _t1_all_positions, mistake="finished positions counted"),
        Wrong("probability mass on legal moves", _t1_mass, mistake="probability on legal moves"),
        Wrong("returns a tensor", _t1_tensor, mistake="tensor, not number", hint_contains=".item()"),
        Wrong("averaged per game, then over games", _t1_per_game, mistake="averaged per game"),
        Right("positions with a move selected first", _t1_masked_first),
        Wrong("a count (float)", _t1_count, mistake="a count, not a rate"),
        Wrong("a count (int)", _t1_count_int, mistake="a count, not a rate"),
        Wrong("argmax over the move axis", _t1_move_axis, mistake="argmax over the wrong axis"),
        Wrong("rate of illegal top moves", _t1_illegal, mistake="illegal rate"),
        Right("one-hot of the argmax", _t1_one_hot),
        Wrong("argmax compared with the first legal move", _t1_first_legal, mistake="compared with the first legal move"),
    ],
    "ch6.probe_logits": [
        Wrong("no bias", _pl_no_bias, mistake="missing bias"),
        Wrong("softmax applied", _pl_softmax, mistake="probabilities"),
        Wrong("bias summed to a scalar", _pl_bias_on_resid),
        Right("matmul on a reshaped W", _pl_reshape),
    ],
    "ch6.probe_loss": [
        Wrong("sum over squares", _loss_sum_squares, mistake="summed over squares"),
        Wrong("nll_loss on raw logits", _loss_nll_raw, mistake="no log-softmax"),
        Wrong("log_softmax over squares", _loss_square_softmax, mistake="softmax over squares"),
        Wrong("F.cross_entropy with the class axis last", _loss_class_axis_last, mistake="class axis not moved",
              status="error"),
        Right("cross_entropy with the class axis second", _loss_permute),
        Wrong("nll_loss on softmax probabilities", _loss_nll_probs, mistake="nll_loss on probabilities"),
        Wrong("softmax, then cross_entropy", _loss_double_softmax, mistake="softmax before cross_entropy"),
        Wrong("reduction='none'", _loss_none, mistake="not averaged"),
        Right("the mean of per-square losses", lambda lo, la: torch.stack(
            [F.cross_entropy(lo[:, q], la[:, q]) for q in range(la.shape[1])]).mean()),
        Wrong("reduction='sum'", _loss_sum, mistake="summed, not averaged"),
        Right("log_softmax and gather", _loss_manual),
        Wrong("labels flattened as labels.T", _loss_labels_transposed, mistake="flattened in different orders"),
    ],
    "ch6.probe_accuracy": [
        Wrong("one overall number", _acc_scalar, mistake="one number"),
        Wrong("mean over squares", _acc_per_sample, mistake="per sample"),
        Wrong("the right/wrong matrix, not averaged", lambda lo, la: (lo.argmax(-1) == la).float(),
              mistake="not averaged"),
        Wrong("a count per square", _acc_count, mistake="a count, not a fraction"),
        Wrong("argmax over the square axis", _acc_square_axis, mistake="argmax over the wrong axis"),
        Wrong("a percentage", lambda lo, la: (lo.argmax(-1) == la).float().mean(0) * 100, mistake="a percentage"),
        Right("a loop over squares", _acc_loop),
        Right("float64", lambda lo, la: (lo.argmax(-1) == la).double().mean(0)),
    ],
    "ch6.train_probe": [
        Wrong("optimizer.step() forgotten", _tp_no_step, mistake="untrained"),
        Wrong("W and b returned with their graph", _tp_not_detached, mistake="not detached"),
        Wrong("3 steps whatever `steps` says", _tp_few_steps, mistake="steps ignored"),
        Wrong("plain SGD at the same lr", _tp_sgd, mistake="SGD instead of Adam"),
        Wrong("zero_grad forgotten", _tp_no_zero_grad, mistake="gradients never zeroed"),
        Wrong("lr ignored (Adam's default)", _tp_default_lr, mistake="lr ignored"),
        Wrong("the bias left out of the optimizer", _tp_fixed_bias, mistake="bias not trained"),
        Wrong("random initial weights", _tp_random_init, mistake="random start"),
        Wrong("a small random start", _tp_small_random_start, mistake="random start"),
        Wrong("residuals standardised before training", _tp_standardised, mistake="standardised residuals"),
        Wrong("residuals not detached (resid.grad filled in)", _tp_resid_attached, mistake="residuals not detached"),
        Wrong("steps - 1 steps", _tp_steps_minus_one, mistake="one step short"),
        Wrong("range(1, steps)", _tp_from_one, mistake="one step short"),
        Wrong("steps - 1 steps and the residuals not detached (the first bug the cases reach is named)",
              _tp_steps_minus_one_attached, mistake="residuals not detached"),
        Wrong("steps + 1 steps", _tp_steps_plus_one, mistake="one step too many"),
        Wrong("half the steps", _tp_half_steps, mistake="another recipe"),
        Wrong("three times the lr", _tp_triple_lr, mistake="another recipe"),
        Wrong("n_classes ignored", _tp_three_classes, mistake="n_classes ignored"),
        Wrong("requires_grad_ on the residuals", _tp_grad_on_resid, mistake="residuals trained"),
        Right("an nn.Linear with zero init", _tp_module),
        Right("the loss summed over squares (Adam does not mind the scale)", _tp_sum_over_squares),
        Right("nn.Parameter and a detached copy of the residuals", _tp_parameters),
    ],
    "ch6.control_labels": [
        Wrong("previous and current swapped", _cl_swapped, mistake="previous and current swapped"),
        Wrong("the move itself twice", _cl_unshifted, mistake="not shifted"),
        Wrong("torch.roll", _cl_roll, mistake="wrapped around"),
        Wrong("square 0 before the first move", _cl_zero_first, mistake="0 before the first move"),
        Wrong("othello.PAD instead of table.shape[0] - 1", _cl_pad_constant, mistake="othello.PAD hard-coded"),
        Right("a loop", _cl_loop),
        Wrong("the next move instead of the previous", _cl_next, mistake="next move, not previous"),
        Right("-1 indexes the last token id", _cl_minus_one),
        Right("F.pad", _cl_pad),
    ],
    "ch6.position_baseline": [
        Wrong("padding counted in the training counts", _pb_unmasked, mistake="padding counted in training"),
        Wrong("padding scored", _pb_all_test, mistake="padding scored"),
        Wrong("one guess per square for all moves", _pb_per_square, mistake="one guess per square"),
        Wrong("majority taken on the test games", _pb_on_test, mistake="fitted on the test games"),
        Wrong("ties go to the higher class", _pb_ties_high, mistake="ties to the higher class"),
        Wrong("divided by the number of test games", _pb_per_game, mistake="divided by the number of games"),
        Right("loops and bincount", _pb_loops),
        Wrong("an accuracy per move number, then their mean", _pb_per_move_number, mistake="averaged per move number"),
        Right("float64", lambda tr, te, vtr, vte, n=3: _pb_loops(tr, te, vtr, vte, n).double()),
    ],
    "ch6.class_direction": [
        Wrong("source minus target", _cd_reversed, mistake="reversed"),
        Wrong("not normalised", _cd_raw, mistake="not normalised"),
        Wrong("target column alone", _cd_target_only, mistake="target column only"),
        Wrong("divided by the squared norm", _cd_squared, mistake="divided by the squared norm"),
        Wrong("W indexed [square, :, cls]", _cd_axis, mistake="wrong axis of W"),
        Right("F.normalize", _cd_normalize),
        Wrong("F.normalize with p=1", _cd_l1, mistake="L1 norm"),
    ],
    "ch6.reflect_along": [
        Wrong("direction not normalised", _ra_raw, mistake="not normalised"),
        Wrong("component removed once", _ra_project, mistake="projected out"),
        Wrong("only the reflected component", _ra_component, mistake="only the component"),
        Wrong("component added twice", _ra_plus, mistake="component added"),
        Right("divided by the squared norm once", _ra_squared_norm),
        Right("Householder matrix", _ra_householder),
    ],
    "ch6.intervene": [
        Wrong("every position edited", _iv_every, mistake="every position"),
        Wrong("hook_resid_pre", _iv_pre, mistake="before the block"),
        Wrong("projection removed, not reflected", _iv_project, mistake="projected out"),
        Wrong("model.add_hook and never removed", _iv_kept, mistake="hooks left on the model"),
        Wrong("hook edits a clone and returns nothing", _iv_returns_nothing, mistake="no effect"),
        Wrong("direction not normalised", _iv_raw, mistake="direction not normalised"),
        Wrong("position + 1 edited", _iv_late, mistake="one position late"),
        Wrong("a game edited at resid_mid, not the position", _iv_edit_wrong_row),
        Right("the hook edits in place and returns nothing", _iv_in_place),
        Wrong("hook_resid_pre of the next block (none after the last block)", _iv_next_block_pre,
              mistake="the next block's hook_resid_pre", status="error"),
        Wrong("the direction added, not reflected", _iv_added, mistake="direction added"),
        Right("model.hooks context manager", _iv_context),
    ],
    "ch6.top_n_errors": [
        Wrong("top 1 only", _tn_top1, mistake="top 1 only"),
        Wrong("ascending ranks", _tn_ascending, mistake="least likely first"),
        Wrong("probability above 1/N", _tn_threshold, mistake="probability threshold"),
        Wrong("the fraction of the top N that is illegal", _tn_fraction, mistake="a fraction, not a count"),
        Wrong("the mean over squares", _tn_fraction_mean, mistake="a fraction, not a count"),
        Wrong("legal moves in the top N counted", _tn_legal_counted, mistake="legal moves counted"),
        Right("a top-N mask scattered from argsort", _tn_topk_mask),
        Right("legal moves missing from the top N (the same count)", _tn_missing_legal),
        Wrong("rank <= N (top N + 1)", _tn_rank_le, mistake="top N + 1"),
        Wrong("one argsort used as ranks", _tn_single_argsort, mistake="sort order used as ranks"),
        Wrong("every move tied with the N-th counted", _tn_tie_inclusive, mistake="ties all counted"),
        Wrong("only moves strictly above the (N+1)-th", _tn_tie_exclusive, mistake="tied moves left out"),
        Right("stable argsort", _tn_stable),
        Right("ties broken towards the higher square", _tn_ascending_stable_reversed),
        Right("a loop with topk", _tn_loop),
    ],
    "ch6.logit_lens": [
        Wrong("no final layer norm", _ll_no_ln, mistake="no final layer norm"),
        Wrong("softmax", _ll_softmax, mistake="probabilities"),
        Wrong("the final layer norm's weights skipped",
              lambda model, resid: model.unembed((resid - resid.mean(-1, keepdim=True))
                                                 / resid.std(-1, keepdim=True, unbiased=False))),
        Wrong("unembedding bias forgotten", _ll_no_bias, mistake="no unembedding bias"),
        Wrong("F.layer_norm without the weights", _ll_plain_ln, mistake="layer norm without its weights"),
        Wrong("log-probabilities", _ll_log_probs, mistake="log-probabilities"),
        Wrong("std (unbiased) in a hand-written layer norm", _ll_unbiased),
        Right("W_U and b_U", _ll_weights),
        Right("layer norm written out", _ll_manual_ln),
    ],
    "ch6.kl_from_final": [
        Wrong("KL(lens || final)", _kl_reversed, mistake="reversed"),
        Wrong("mean over squares", _kl_mean, mistake="averaged over squares"),
        Wrong("raw logits", _kl_raw, mistake="raw logits"),
        Wrong("softmax().log(), which overflows for confident logits",
              lambda lens, final: (final.softmax(-1) * (final.softmax(-1).log() - lens.softmax(-1).log())).sum(-1),
              hint_contains="log_softmax"),
        Wrong("F.kl_div on raw lens logits", _kl_div_raw, mistake="raw logits"),
        Wrong("F.kl_div, reduction='batchmean'", _kl_batchmean, mistake="reduced to one number"),
        Wrong("in bits (log2)", _kl_bits, mistake="bits, not nats"),
        Wrong("F.kl_div with log-probability targets, no log_target", lambda lens, final: F.kl_div(
            lens.log_softmax(-1), final.log_softmax(-1), reduction="none").sum(-1), mistake="log_target missing"),
        Wrong("log_softmax over axis 0", lambda lens, final: (final.softmax(0) * (final.log_softmax(0)
              - lens.log_softmax(0))).sum(-1), mistake="softmax over the wrong axis"),
        Wrong("in bits, via log_softmax", _kl_bits_stable, mistake="bits, not nats"),
        Right("F.kl_div with log targets", _kl_torch),
        Right("in float64", lambda lens, final: _kl_torch(lens.double(), final.double())),
    ],
    "ch6.tuned_lens": [
        Wrong("no skip connection", _tl_no_skip, mistake="no skip connection"),
        Wrong("A transposed", _tl_transposed, mistake="A transposed"),
        Wrong("no bias", _tl_no_bias, mistake="missing bias"),
        Wrong("translator after the final layer norm", _tl_after_ln, mistake="translator after the layer norm"),
        Wrong("unembedding bias forgotten", _tl_no_unembed_bias, mistake="no unembedding bias"),
        Wrong("the translator ignored", lambda model, resid, A, b: model.unembed(model.ln_final(resid)),
              mistake="translator not applied"),
        Right("(I + A) as one matrix", _tl_identity),
    ],
    "ch6.train_translator": [
        Wrong("the model's weights trained too", _tt_trains_model, mistake="model trained"),
        Wrong("optimizer.step() forgotten", _tt_no_step, mistake="untrained"),
        Wrong("2 steps", _tt_few_steps, mistake="steps ignored"),
        Wrong("KL the other way round", _tt_reverse_kl, mistake="KL reversed"),
        Wrong("squared error on the logits", _tt_mse, mistake="another recipe"),
        Wrong("A and b returned with their graph", _tt_not_detached, mistake="not detached"),
        Wrong("the model's parameters given to the optimizer too", _tt_all_params, mistake="model trained"),
        Wrong("SGD", _tt_sgd, mistake="SGD instead of Adam"),
        Wrong("no skip connection", _tt_no_skip, mistake="no skip connection"),
        Wrong("small random start for A", _tt_random_start, mistake="random start"),
        Wrong("random A and b after torch.manual_seed(5), whose lens starts closer to the final output",
              _tt_seeded_random_start, mistake="random start"),
        Wrong("100 steps whatever `steps` says", _tt_fixed_steps, mistake="steps ignored"),
        Wrong("lr ignored (Adam's default)", _tt_default_lr, mistake="lr ignored"),
        Right("the KL summed over samples (Adam ignores the scale)", _tt_sum),
        Right("F.kl_div, batchmean", _tt_kl_div),
    ],
    "ch6.mean_difference": [
        Wrong("source minus target", _md_reversed, mistake="reversed"),
        Wrong("target minus the mean of all samples", _md_overall, mistake="minus the overall mean"),
        Wrong("normalised", _md_unit, mistake="normalised"),
        Wrong("sums instead of means", _md_sums, mistake="sums, not means"),
        Wrong("target against every other sample", _md_others, mistake="compared with every other sample"),
        Wrong("labels[square], a row", _md_row, mistake="a row of labels", status="error"),
        Right("weighted sums", _md_weights),
        Right("float64", lambda r, la, s, t, so: r.double()[la[:, s] == t].mean(0) - r.double()[la[:, s] == so].mean(0)),
    ],
    "ch6.steering_curve": [
        Wrong("added at every position", _sv_every, mistake="every position"),
        Wrong("read at the last position", _sv_last, mistake="read at the last position"),
        Wrong("mean logit", _sv_logits, mistake="logits"),
        Wrong("model.add_hook, never removed", _sv_kept, mistake="hooks left on the model"),
        Wrong("read at position + 1", _sv_late, mistake="read one position late"),
        Wrong("steered at hook_resid_pre", _sv_pre, mistake="before the block"),
        Wrong("softmax over positions", _sv_position_softmax, mistake="softmax over the wrong axis"),
        Wrong("a list of floats", _sv_as_list, mistake="a list, not a tensor"),
        Right("a delta tensor under no_grad", _sv_list),
    ],
}
