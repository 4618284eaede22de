"""Learner variants for the 5.1 "Grokking and modular addition" graders."""

import math

import numpy as np
import torch
import torch.nn.functional as F

from tests.grading.variants import Right, Wrong, test_variant_is_graded_as_expected  # noqa: F401 (runs VARIANTS)

# -- modular_dataset ---------------------------------------------------------------------------


def _md_loops(p):
    rows = [[a, b, p] for a in range(p) for b in range(p)]
    t = torch.tensor(rows)
    return t, (t[:, 0] + t[:, 1]) % p


def _md_meshgrid(p):
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    t = torch.stack([a.flatten(), b.flatten(), torch.full((p * p,), p)], dim=-1)
    return t, t[:, :2].sum(-1) % p


def _md_xy(p):
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="xy")
    t = torch.stack([a.flatten(), b.flatten(), torch.full((p * p,), p)], dim=-1)
    return t, (t[:, 0] + t[:, 1]) % p


def _md_nomod(p):
    rows = [[a, b, p] for a in range(p) for b in range(p)]
    t = torch.tensor(rows)
    return t, t[:, 0] + t[:, 1]


def _md_eq0(p):
    t, y = _md_loops(p)
    t[:, 2] = 0
    return t, y


# -- accuracy ----------------------------------------------------------------------------------


def _acc_numpy(logits, labels):
    return float(np.mean(logits.numpy().argmax(axis=1) == labels.numpy()))


def _acc_count(logits, labels):
    return (logits.argmax(dim=1) == labels).sum().item()


def _acc_argmin(logits, labels):
    return (logits.argmin(-1) == labels).float().mean().item()


def _acc_percent(logits, labels):
    return 100.0 * (logits.argmax(-1) == labels).sum().item() / len(labels)


# -- fourier_basis -------------------------------------------------------------------------------


def _fb_loop(p):
    B = torch.zeros(p, p)
    B[0] = 1 / math.sqrt(p)
    x = torch.arange(p)
    for k in range(1, p // 2 + 1):
        B[2 * k - 1] = torch.cos(2 * torch.pi * k * x / p) * math.sqrt(2 / p)
        B[2 * k] = torch.sin(2 * torch.pi * k * x / p) * math.sqrt(2 / p)
    return B


def _fb_unnormalised(p):
    x = torch.arange(p).float()
    rows = [torch.ones(p)]
    for k in range(1, p // 2 + 1):
        rows += [torch.cos(2 * math.pi * k * x / p), torch.sin(2 * math.pi * k * x / p)]
    return torch.stack(rows)


def _fb_no_constant(p):
    x = torch.arange(p).float()
    rows = []
    for k in range(1, p // 2 + 1):
        rows += [torch.cos(2 * math.pi * k * x / p), torch.sin(2 * math.pi * k * x / p)]
    B = torch.stack(rows)
    return B / B.norm(dim=-1, keepdim=True)


def _fb_swapped(p):
    x = torch.arange(p).float()
    rows = [torch.ones(p)]
    for k in range(1, p // 2 + 1):
        rows += [torch.sin(2 * math.pi * k * x / p), torch.cos(2 * math.pi * k * x / p)]
    B = torch.stack(rows)
    return B / B.norm(dim=-1, keepdim=True)


# -- to_fourier ------------------------------------------------------------------------------------


def _tf_einsum(values, basis):
    return torch.einsum("fx,xd->fd", basis, values)


def _tf_transposed(values, basis):
    return torch.einsum("xf,xd->fd", basis, values)


def _tf_wrong_axis(values, basis):
    d = values.shape[1]
    return values @ basis[:d, :d]


def _tf_output_transposed(values, basis):
    return torch.einsum("fx,xd->df", basis, values)


def _tf_solve(values, basis):  # orthonormal, so B⁻¹ = Bᵀ and the components solve Bᵀ c = values
    return torch.linalg.solve(basis.T, values)


# -- frequency_norms --------------------------------------------------------------------------------


def _fn_loop(v):
    return torch.stack([torch.cat([v[2 * k - 1], v[2 * k]]).norm() for k in range(1, v.shape[0] // 2 + 1)])


def _fn_l1(v):
    return torch.stack([v[2 * k - 1].abs().sum() + v[2 * k].abs().sum() for k in range(1, v.shape[0] // 2 + 1)])


def _fn_cos(v):
    return v[1::2].norm(dim=1)


def _fn_constant(v):
    return torch.stack([torch.cat([v[2 * k], v[2 * k + 1]]).norm() for k in range(0, v.shape[0] // 2)])


# -- key_frequencies ---------------------------------------------------------------------------------


def _kf_loop(norms, threshold=0.3):
    top = max(norms.tolist())
    return [k + 1 for k, n in enumerate(norms.tolist()) if n >= threshold * top]


def _kf_zero_based(norms, threshold=0.3):
    return [k for k, n in enumerate(norms.tolist()) if n >= threshold * norms.max()]


def _kf_absolute(norms, threshold=0.3):
    return [k + 1 for k, n in enumerate(norms.tolist()) if n >= threshold]


def _kf_by_size(norms, threshold=0.3):
    order = torch.argsort(norms, descending=True)
    return [int(i) + 1 for i in order if norms[i] >= threshold * norms.max()]


# -- fourier_2d --------------------------------------------------------------------------------------


def _f2_matmul(grid, basis):
    if grid.dim() == 2:
        return basis @ grid @ basis.T
    return torch.stack([basis @ grid[..., n] @ basis.T for n in range(grid.shape[-1])], dim=-1)


def _f2_one_axis(grid, basis):
    return torch.tensordot(basis, grid, dims=([1], [0]))


def _f2_transposed(grid, basis):
    if grid.dim() == 2:
        return basis.T @ grid @ basis
    return torch.stack([basis.T @ grid[..., n] @ basis for n in range(grid.shape[-1])], dim=-1)


def _f2_swapped(grid, basis):
    g = grid.transpose(0, 1)
    return torch.einsum("ia,jb,ab...->ij...", basis, basis, g)


# -- top_terms_fraction -----------------------------------------------------------------------------


def _tt_topk(components, n_terms):
    e = components.flatten() ** 2
    e = e[1:]
    return (torch.topk(e, n_terms).values.sum() / e.sum()).item()


def _tt_mean(components, n_terms):
    e = components.flatten() ** 2
    return (torch.topk(e, n_terms).values.sum() / e.sum()).item()


def _tt_abs(components, n_terms):
    e = components.flatten().abs()[1:]
    return (torch.topk(e, n_terms).values.sum() / e.sum()).item()


def _tt_smallest(components, n_terms):
    e = components.flatten()[1:] ** 2
    return (e.sort().values[:n_terms].sum() / e.sum()).item()


# -- neuron_frequencies -----------------------------------------------------------------------------


def _nf(components, *, mean=False, zero_based=False, rows_only=False):
    p, _, n = components.shape
    e = components ** 2
    if not mean:
        e = e * (1 - torch.nn.functional.one_hot(torch.tensor(0), p)[:, None, None]
                 * torch.nn.functional.one_hot(torch.tensor(0), p)[None, :, None])
    total = e.sum((0, 1))
    scores = torch.zeros((p - 1) // 2, n)
    for k in range(1, (p - 1) // 2 + 1):
        rows = torch.tensor([0, 2 * k - 1, 2 * k])
        scores[k - 1] = e[2 * k - 1: 2 * k + 1].sum((0, 1)) if rows_only else e[rows][:, rows].sum((0, 1))
    frac, idx = scores.max(0)
    return idx + (0 if zero_based else 1), frac / total


# -- cos_predictors -----------------------------------------------------------------------------------


def _cp_loops(p, freqs):
    out = torch.zeros(len(freqs), p * p, p)
    for i, k in enumerate(freqs):
        w = 2 * math.pi * k / p
        for a in range(p):
            for b in range(p):
                out[i, a * p + b] = torch.cos(w * (a + b - torch.arange(p)))
    return out


def _cp_mod(p, freqs):  # (a + b - c) mod p gives the same cosines
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    diff = (a[:, None] + b[:, None] - torch.arange(p)[None]) % p
    return torch.stack([torch.cos(2 * math.pi * k * diff.double() / p) for k in freqs]).float()


def _cp_plus(p, freqs):
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    s = a[:, None] + b[:, None] + torch.arange(p)[None]
    return torch.stack([torch.cos(2 * math.pi * k * s.double() / p) for k in freqs]).float()


def _cp_no_2pi(p, freqs):
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    s = a[:, None] + b[:, None] - torch.arange(p)[None]
    return torch.stack([torch.cos(k * s.double() / p) for k in freqs]).float()


def _cp_sin(p, freqs):
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    s = a[:, None] + b[:, None] - torch.arange(p)[None]
    return torch.stack([torch.sin(2 * math.pi * k * s.double() / p) for k in freqs]).float()


# -- variance_explained --------------------------------------------------------------------------------


def _ve_numpy(logits, predictors):
    y = logits.numpy().astype(np.float64).ravel()
    X = predictors.numpy().astype(np.float64).reshape(predictors.shape[0], -1).T
    X = np.column_stack([np.ones(len(y)), X])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    res = y - X @ coef
    return float(1 - (res ** 2).sum() / ((y - y.mean()) ** 2).sum())


def _ve_one_mean(logits, predictors):
    y = logits.flatten().double()
    y = y - y.mean()
    X = predictors.flatten(1).double().T
    X = X - X.mean()
    coef = torch.linalg.lstsq(X, y[:, None]).solution
    return (1 - (y - (X @ coef).flatten()).pow(2).sum() / y.pow(2).sum()).item()


def _ve_uncentred(logits, predictors):
    y = logits.flatten().double()
    X = predictors.flatten(1).double().T
    coef = torch.linalg.lstsq(X, y[:, None]).solution
    return (1 - ((y - (X @ coef).flatten()) ** 2).sum() / (y ** 2).sum()).item()


def _ve_row_centred(logits, predictors):
    y = (logits - logits.mean(dim=1, keepdim=True)).flatten().double()
    X = predictors.flatten(1).double().T
    X = X - X.mean(0)
    coef = torch.linalg.lstsq(X, y[:, None]).solution
    return (1 - ((y - (X @ coef).flatten()) ** 2).sum() / (y ** 2).sum()).item()


def _ve_no_fit(logits, predictors):
    y = logits.flatten().double()
    y = y - y.mean()
    X = predictors.flatten(1).double().T
    X = X - X.mean(0)
    return (1 - ((y - X.sum(1)) ** 2).sum() / (y ** 2).sum()).item()


def _ve_corr(logits, predictors):
    y = logits.flatten().double()
    x = predictors.sum(0).flatten().double()
    return torch.corrcoef(torch.stack([y, x]))[0, 1].item()


# -- frequency_projector ---------------------------------------------------------------------------------


def _fp_sum(basis, freqs):
    P = torch.zeros(basis.shape[1], basis.shape[1])
    for k in freqs:
        for r in (2 * k - 1, 2 * k):
            P += torch.outer(basis[r], basis[r])
    return P


def _fp_off_by_one(basis, freqs):
    rows = [r for k in freqs for r in (2 * k - 2, 2 * k - 1)]
    return basis[rows].T @ basis[rows]


def _fp_cos(basis, freqs):
    rows = [2 * k - 1 for k in freqs]
    return basis[rows].T @ basis[rows]


def _fp_inner(basis, freqs):
    rows = [r for k in freqs for r in (2 * k - 1, 2 * k)]
    return basis[rows] @ basis[rows].T


# -- ablate_frequencies ------------------------------------------------------------------------------------


def _af_loop(W_E, basis, freqs):
    out = W_E.clone()
    for k in freqs:
        for r in (2 * k - 1, 2 * k):
            out = out - torch.outer(basis[r], basis[r] @ W_E)
    return out


def _af_keep_others(W_E, basis, freqs):  # project onto every other basis row
    rows = [r for r in range(basis.shape[0]) if r == 0 or (r + 1) // 2 not in freqs]
    B = basis[rows]
    return B.T @ (B @ W_E)


def _af_kept(W_E, basis, freqs):
    rows = [r for k in freqs for r in (2 * k - 1, 2 * k)]
    return basis[rows].T @ (basis[rows] @ W_E)


def _af_right_mult(W_E, basis, freqs):
    rows = [r for k in freqs for r in (2 * k - 1, 2 * k)]
    return W_E - W_E @ basis[rows].T @ basis[rows]


def _af_with_constant(W_E, basis, freqs):
    rows = [0] + [r for k in freqs for r in (2 * k - 1, 2 * k)]
    return W_E - basis[rows].T @ (basis[rows] @ W_E)


def _af_in_place(W_E, basis, freqs):
    rows = [r for k in freqs for r in (2 * k - 1, 2 * k)]
    W_E -= basis[rows].T @ (basis[rows] @ W_E)
    return W_E


# -- sum_directions ----------------------------------------------------------------------------------------


def _ab_grid(p):
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    return (a + b).flatten().double()


def _sd_loop(p, freqs):
    s = _ab_grid(p)
    rows = []
    for k in freqs:
        rows.append(torch.cos(2 * math.pi * k * s / p) * math.sqrt(2) / p)
        rows.append(torch.sin(2 * math.pi * k * s / p) * math.sqrt(2) / p)
    return torch.stack(rows).float()


def _sd_mod(p, freqs):  # (a + b) mod p gives the same waves
    s = _ab_grid(p) % p
    w = 2 * math.pi * torch.tensor(freqs, dtype=torch.float64)[:, None] / p
    D = torch.stack([torch.cos(w * s), torch.sin(w * s)], dim=1).flatten(0, 1)
    return (D / D.norm(dim=1, keepdim=True)).float()


def _sd_raw(p, freqs):
    s = _ab_grid(p)
    return torch.stack([f(2 * math.pi * k * s / p) for k in freqs for f in (torch.cos, torch.sin)]).float()


def _sd_minus(p, freqs):
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    s = (a - b).flatten().double()
    D = torch.stack([f(2 * math.pi * k * s / p) for k in freqs for f in (torch.cos, torch.sin)])
    return (D / D.norm(dim=1, keepdim=True)).float()


def _sd_blocked(p, freqs):
    s = _ab_grid(p)
    D = torch.stack([f(2 * math.pi * k * s / p) for f in (torch.cos, torch.sin) for k in freqs])
    return (D / D.norm(dim=1, keepdim=True)).float()


def _sd_no_two_pi(p, freqs):
    s = _ab_grid(p)
    D = torch.stack([f(k * s / p) for k in freqs for f in (torch.cos, torch.sin)])
    return (D / D.norm(dim=1, keepdim=True)).float()


# -- restricted / excluded logits (over the pairs) -------------------------------------------------------


def _dirs(p, freqs, normalise=True):
    D = _sd_raw(p, freqs)
    return D / D.norm(dim=1, keepdim=True) if normalise else D


def _rl_lstsq(logits, p, freqs):  # least-squares fit on [1, directions] per output
    X = torch.cat([torch.ones(1, p * p), _dirs(p, freqs)]).T.double()
    coef = torch.linalg.lstsq(X, logits.double()).solution
    return (X @ coef).float()


def _rl_excluded(logits, p, freqs):
    D = _dirs(p, freqs)
    return logits - D.T @ (D @ logits)


def _rl_along_c(logits, p, freqs):
    rows = [r for k in freqs for r in (2 * k - 1, 2 * k)]
    B = _fb_loop(p)[rows]
    return logits @ B.T @ B


def _rl_unnormalised(logits, p, freqs):
    D = _dirs(p, freqs, normalise=False)
    return logits.mean(0, keepdim=True) + D.T @ (D @ logits)


def _rl_no_mean(logits, p, freqs):
    D = _dirs(p, freqs)
    return D.T @ (D @ logits)


def _rl_global_mean(logits, p, freqs):
    D = _dirs(p, freqs)
    return logits.mean() + D.T @ (D @ logits)


def _el_via_restricted(logits, p, freqs):  # logits - restricted + mean
    D = _dirs(p, freqs)
    restricted = logits.mean(0, keepdim=True) + D.T @ (D @ logits)
    return logits - restricted + logits.mean(0, keepdim=True)


def _el_restricted(logits, p, freqs):
    D = _dirs(p, freqs)
    return logits.mean(0, keepdim=True) + D.T @ (D @ logits)


def _el_along_c(logits, p, freqs):
    rows = [r for k in freqs for r in (2 * k - 1, 2 * k)]
    B = _fb_loop(p)[rows]
    return logits - logits @ B.T @ B


def _el_unnormalised(logits, p, freqs):
    D = _dirs(p, freqs, normalise=False)
    return logits - D.T @ (D @ logits)


def _el_no_mean(logits, p, freqs):
    D = _dirs(p, freqs)
    return logits - logits.mean(0, keepdim=True) - D.T @ (D @ logits)


# -- excluded_loss -------------------------------------------------------------------------------------------


def _exl_log_softmax(logits, labels, train_idx, p, freqs):
    kept = _rl_excluded(logits, p, freqs)[train_idx]
    logp = kept.double().log_softmax(-1)
    return -logp.gather(1, labels[train_idx][:, None]).mean().item()


def _exl_test(logits, labels, train_idx, p, freqs):
    test = torch.tensor([i for i in range(len(labels)) if i not in set(train_idx.tolist())])
    return F.cross_entropy(_rl_excluded(logits, p, freqs)[test].double(), labels[test]).item()


def _exl_restricted(logits, labels, train_idx, p, freqs):
    return F.cross_entropy(_el_restricted(logits, p, freqs)[train_idx].double(), labels[train_idx]).item()


def _exl_raw(logits, labels, train_idx, p, freqs):
    return F.cross_entropy(logits[train_idx].double(), labels[train_idx]).item()


def _exl_train_rows_only(logits, labels, train_idx, p, freqs):  # projects a [n, p] slice with [.., p²] directions
    return F.cross_entropy(_rl_excluded(logits[train_idx], p, freqs).double(), labels[train_idx]).item()


# -- total_weight_norm ------------------------------------------------------------------------------------------


def _twn_cat(weights):
    return torch.cat([w.flatten() for w in weights.values()]).norm().item()


def _twn_sum_norms(weights):
    return sum(w.norm().item() for w in weights.values())


def _twn_squared(weights):
    return sum((w ** 2).sum().item() for w in weights.values())


def _twn_l1(weights):
    return torch.cat([w.flatten() for w in weights.values()]).abs().sum().item()


# -- gini -----------------------------------------------------------------------------------------------------------


def _gini_mean_diff(values):  # G = Σ_ij |x_i - x_j| / (2 n² mean)
    x = values.abs().double()
    return ((x[:, None] - x[None, :]).abs().sum() / (2 * len(x) ** 2 * x.mean())).item()


def _gini_unsorted(values):
    x = values.abs().double()
    n = len(x)
    i = torch.arange(1, n + 1).double()
    return (((2 * i - n - 1) * x).sum() / (n * x.sum())).item()


def _gini_signed(values):
    x = values.double().sort().values
    n = len(x)
    i = torch.arange(1, n + 1).double()
    return (((2 * i - n - 1) * x).sum() / (n * x.sum())).item()


def _gini_desc(values):
    x = values.abs().double().sort(descending=True).values
    n = len(x)
    i = torch.arange(1, n + 1).double()
    return (((2 * i - n - 1) * x).sum() / (n * x.sum())).item()


# -- embedding_gini ---------------------------------------------------------------------------------------------------


def _eg_inline(W_E, basis):
    F_ = basis @ W_E
    norms = torch.stack([F_[2 * k - 1: 2 * k + 1].norm() for k in range(1, W_E.shape[0] // 2 + 1)])
    return _gini_mean_diff(norms)


def _eg_components(W_E, basis):
    return _gini_mean_diff((basis @ W_E).flatten())


def _eg_no_basis(W_E, basis):
    norms = torch.stack([W_E[2 * k - 1: 2 * k + 1].norm() for k in range(1, W_E.shape[0] // 2 + 1)])
    return _gini_mean_diff(norms)


def _eg_transposed(W_E, basis):
    F_ = basis.T @ W_E
    norms = torch.stack([F_[2 * k - 1: 2 * k + 1].norm() for k in range(1, W_E.shape[0] // 2 + 1)])
    return _gini_mean_diff(norms)


VARIANTS = {
    "ch5.modular_dataset": [
        Right("nested loops", _md_loops), Right("meshgrid ij", _md_meshgrid),
        Wrong("meshgrid xy (b slow)", _md_xy, mistake="b runs slowly"),
        Wrong("no modulo", _md_nomod, mistake="no modulo"),
        Wrong("= token 0", _md_eq0, mistake="wrong = token"),
    ],
    "ch5.accuracy": [
        Right("numpy", _acc_numpy),
        Wrong("count", _acc_count, mistake="count not fraction"),
        Wrong("argmin", _acc_argmin, mistake="argmin"),
        Wrong("percentage", _acc_percent, mistake="percentage"),
    ],
    "ch5.fourier_basis": [
        Right("loop with explicit scale factors", _fb_loop),
        Wrong("unnormalised", _fb_unnormalised, mistake="not normalised"),
        Wrong("no constant", _fb_no_constant, mistake="no constant term"),
        Wrong("sin first", _fb_swapped, mistake="sin and cos swapped"),
    ],
    "ch5.to_fourier": [
        Right("einsum", _tf_einsum), Right("linear solve", _tf_solve),
        Wrong("basis.T", _tf_transposed, mistake="transposed basis"),
        Wrong("along d", _tf_wrong_axis, mistake="wrong axis"),
        Wrong("output transposed", _tf_output_transposed, mistake="transposed result"),
    ],
    "ch5.frequency_norms": [
        Right("loop over frequencies", _fn_loop),
        Wrong("L1", _fn_l1, mistake="L1 norm"),
        Wrong("cos rows only", _fn_cos, mistake="cos only"),
        Wrong("pairs from row 0", _fn_constant, mistake="constant included"),
    ],
    "ch5.key_frequencies": [
        Right("python loop", _kf_loop),
        Wrong("0-based", _kf_zero_based, mistake="0-based"),
        Wrong("absolute", _kf_absolute, mistake="absolute threshold"),
        Wrong("by size", _kf_by_size, mistake="sorted by size"),
    ],
    "ch5.fourier_2d": [
        Right("B G Bᵀ per neuron", _f2_matmul),
        Wrong("one axis", _f2_one_axis, mistake="one axis only"),
        Wrong("Bᵀ G B", _f2_transposed, mistake="transposed basis"),
        Wrong("grid transposed", _f2_swapped, mistake="a and b swapped"),
    ],
    "ch5.top_terms_fraction": [
        Right("topk", _tt_topk),
        Wrong("mean kept", _tt_mean, mistake="mean included"),
        Wrong("abs", _tt_abs, mistake="not squared"),
        Wrong("ascending", _tt_smallest, mistake="smallest terms"),
    ],
    "ch5.neuron_frequencies": [
        Right("mask and score table", _nf),
        Wrong("mean kept", lambda c: _nf(c, mean=True), mistake="mean included"),
        Wrong("0-based", lambda c: _nf(c, zero_based=True), mistake="0-based frequency"),
        Wrong("rows only", lambda c: _nf(c, rows_only=True), mistake="a-terms only"),
    ],
    "ch5.cos_predictors": [
        Right("loops", _cp_loops), Right("mod p first", _cp_mod),
        Wrong("a + b + c", _cp_plus, mistake="a + b + c"),
        Wrong("no 2π", _cp_no_2pi, mistake="no 2π"),
        Wrong("sine", _cp_sin, mistake="sin"),
    ],
    "ch5.variance_explained": [
        Right("numpy with intercept column", _ve_numpy),
        Wrong("uncentred", _ve_uncentred, mistake="not centred"),
        Wrong("each pair's mean removed", _ve_row_centred, mistake="centred per row"),
        Wrong("no fit", _ve_no_fit, mistake="no fit"),
        Wrong("correlation", _ve_corr, mistake="correlation"),
        Wrong("one mean over all predictors", _ve_one_mean, mistake="one mean for all predictors"),
    ],
    "ch5.frequency_projector": [
        Right("sum of outer products", _fp_sum),
        Wrong("off by one", _fp_off_by_one, mistake="rows off by one"),
        Wrong("cos only", _fp_cos, mistake="cos only"),
        Wrong("B Bᵀ", _fp_inner, mistake="outer order"),
    ],
    "ch5.ablate_frequencies": [
        Right("subtract one basis row at a time", _af_loop),
        Right("project onto the other rows", _af_keep_others),
        Wrong("kept them", _af_kept, mistake="kept instead of removed"),
        Wrong("W_E @ P", _af_right_mult, mistake="projected the d_model axis"),
        Wrong("constant too", _af_with_constant, mistake="constant removed too"),
        Wrong("in place", _af_in_place, mistake="in-place edit"),
    ],
    "ch5.sum_directions": [
        Right("loop with the √2/p scale", _sd_loop), Right("(a + b) mod p", _sd_mod),
        Wrong("unnormalised", _sd_raw, mistake="not normalised"),
        Wrong("a - b", _sd_minus, mistake="a - b"),
        Wrong("cos block, sin block", _sd_blocked, mistake="cos block then sin block"),
        Wrong("no 2π", _sd_no_two_pi, mistake="no 2π"),
    ],
    "ch5.restricted_logits": [
        Right("least squares on [1, directions]", _rl_lstsq),
        Wrong("excluded", _rl_excluded, mistake="restricted and excluded swapped"),
        Wrong("along c", _rl_along_c, mistake="projected along c"),
        Wrong("unnormalised", _rl_unnormalised, mistake="unnormalised directions"),
        Wrong("no mean", _rl_no_mean, mistake="mean dropped"),
        Wrong("global mean", _rl_global_mean, mistake="one global mean"),
    ],
    "ch5.excluded_logits": [
        Right("logits - restricted + mean", _el_via_restricted),
        Wrong("restricted", _el_restricted, mistake="restricted and excluded swapped"),
        Wrong("along c", _el_along_c, mistake="projected along c"),
        Wrong("unnormalised", _el_unnormalised, mistake="unnormalised directions"),
        Wrong("mean removed", _el_no_mean, mistake="mean removed too"),
    ],
    "ch5.excluded_loss": [
        Right("log_softmax and gather", _exl_log_softmax),
        Wrong("test data", _exl_test, mistake="test data"),
        Wrong("restricted", _exl_restricted, mistake="restricted instead"),
        Wrong("raw logits", _exl_raw, mistake="nothing removed"),
        Wrong("projected the training rows only", _exl_train_rows_only, status="error"),
    ],
    "ch5.total_weight_norm": [
        Right("concatenate", _twn_cat),
        Wrong("sum of norms", _twn_sum_norms, mistake="sum of norms"),
        Wrong("squared", _twn_squared, mistake="no sqrt"),
        Wrong("L1", _twn_l1, mistake="L1"),
    ],
    "ch5.gini": [
        Right("mean absolute difference", _gini_mean_diff),
        Wrong("unsorted", _gini_unsorted, mistake="unsorted"),
        Wrong("signed", _gini_signed, mistake="signed"),
        Wrong("descending", _gini_desc, mistake="sorted descending"),
    ],
    "ch5.embedding_gini": [
        Right("inline", _eg_inline),
        Wrong("all components", _eg_components, mistake="Gini of raw components"),
        Wrong("no basis", _eg_no_basis, mistake="no change of basis"),
        Wrong("transposed", _eg_transposed, mistake="transposed basis"),
    ],
}


# -- mistakes and alternatives found by an audit with new learner attempts ----------------------------


def _kf_strict(norms, threshold=0.3):
    return [i + 1 for i in (norms > threshold * norms.max()).nonzero().flatten().tolist()]


def _acc_tensor(logits, labels):
    return (logits.argmax(-1) == labels).float().mean()


def _fb_float64(p):
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.ones(p, dtype=torch.float64)]
    for k in range(1, (p - 1) // 2 + 1):
        rows += [torch.cos(2 * math.pi * k * x / p), torch.sin(2 * math.pi * k * x / p)]
    B = torch.stack(rows)
    return B / B.norm(dim=1, keepdim=True)


def _sd_float64(p, freqs):
    s = _ab_grid(p).double()
    D = torch.stack([f(2 * math.pi * k * s / p) for k in freqs for f in (torch.cos, torch.sin)])
    return D / D.norm(dim=1, keepdim=True)


def _cp_float64(p, freqs):
    a = torch.arange(p).repeat_interleave(p)[:, None]
    b = torch.arange(p).repeat(p)[:, None]
    c = torch.arange(p)[None]
    return torch.stack([torch.cos(2 * math.pi * k * (a + b - c) / p) for k in torch.tensor(freqs, dtype=torch.float64)])


AUDIT_VARIANTS = {
    "ch5.key_frequencies": [Wrong("norm > threshold x max", _kf_strict, mistake="strictly above")],
    "ch5.accuracy": [Wrong("a tensor, not a float", _acc_tensor, mistake="not a float")],
    "ch5.fourier_basis": [Wrong("float64 basis (breaks basis @ W_E)", _fb_float64, mistake="float64")],
    "ch5.sum_directions": [Wrong("float64 directions (break D @ logits)", _sd_float64, mistake="float64")],
    "ch5.cos_predictors": [Wrong("float64 predictors", _cp_float64, mistake="float64")],
}
for _id, _variants in AUDIT_VARIANTS.items():
    VARIANTS[_id] = VARIANTS[_id] + _variants


def _fn_no_sqrt(fourier_values):
    return fourier_values[1:].reshape(-1, 2, fourier_values.shape[-1]).pow(2).sum(dim=(1, 2))


def _fn_two_norms(fourier_values):
    return fourier_values[1::2].norm(dim=-1) + fourier_values[2::2].norm(dim=-1)


def _fn_halves(fourier_values):
    n = (fourier_values.shape[0] - 1) // 2
    cos, sin = fourier_values[1:n + 1], fourier_values[n + 1:]
    return (cos.pow(2).sum(-1) + sin.pow(2).sum(-1)).sqrt()


def _el_all_pairs(logits, labels, train_idx, p, freqs):
    from solutions.ch5_grokking.grokking import excluded_logits
    return F.cross_entropy(excluded_logits(logits, p, freqs), labels).item()


def _el_sum(logits, labels, train_idx, p, freqs):
    from solutions.ch5_grokking.grokking import excluded_logits
    return F.cross_entropy(excluded_logits(logits, p, freqs)[train_idx], labels[train_idx], reduction="sum").item()


def _gini_zero_based(values):
    x = values.abs().sort().values
    n = len(x)
    i = torch.arange(n, dtype=x.dtype)
    return float(((2 * i - n - 1) * x).sum() / (n * x.sum()))


def _gini_n_minus_1(values):
    x = values.abs().double().sort().values
    n = len(x)
    i = torch.arange(1, n + 1, dtype=x.dtype)
    return float(((2 * i - n - 1) * x).sum() / ((n - 1) * x.sum()))


def _eg_row_norms(W_E, basis):
    from solutions.ch5_grokking.grokking import gini
    return gini(W_E.norm(dim=-1))


def _eg_with_constant(W_E, basis):
    from solutions.ch5_grokking.grokking import gini
    F_ = basis @ W_E
    norms = [F_[0].norm()] + [F_[2 * k - 1:2 * k + 1].norm() for k in range(1, (len(F_) - 1) // 2 + 1)]
    return gini(torch.stack(norms))


def _twn_matrices_only(weights):
    return math.sqrt(sum(float((w ** 2).sum()) for w in weights.values() if w.dim() >= 2))


MORE_AUDIT_VARIANTS = {
    "ch5.frequency_norms": [Wrong("no square root", _fn_no_sqrt, mistake="no square root"),
                            Wrong("cos norm + sin norm", _fn_two_norms, mistake="cos norm plus sin norm"),
                            Wrong("cos rows then sin rows", _fn_halves, mistake="rows paired from the halves")],
    "ch5.excluded_loss": [Wrong("all p^2 pairs", _el_all_pairs, mistake="all pairs"),
                          Wrong("reduction='sum'", _el_sum, mistake="summed, not averaged")],
    "ch5.gini": [Wrong("ranks 0 … n-1", _gini_zero_based, mistake="ranks from 0"),
                 Wrong("divided by n - 1", _gini_n_minus_1, mistake="divided by n - 1")],
    "ch5.embedding_gini": [Wrong("Gini of W_E's row norms", _eg_row_norms, mistake="row norms, no Fourier"),
                           Wrong("constant kept", _eg_with_constant, mistake="constant included")],
    "ch5.total_weight_norm": [Wrong("matrices only", _twn_matrices_only, mistake="matrices only")],
}
for _id, _variants in MORE_AUDIT_VARIANTS.items():
    VARIANTS[_id] = VARIANTS[_id] + _variants
