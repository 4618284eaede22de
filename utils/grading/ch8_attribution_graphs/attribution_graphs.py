"""Graders for 8.1 "Attribution graphs".

Every check runs on small seeded tensors built here (no model, no transcoder, no download) and takes
well under a second. `direct_effects` gets a small linear computation of leaf tensors built inside its
grader, one forward pass serving several targets, as `utils.attribution.build_graph` uses it.
"""

from __future__ import annotations

import warnings

import torch

from solutions.ch8_attribution_graphs import attribution_graphs as ref
from utils.grading import Mistake, exercise
from utils.grading.feedback import CheckFailed, LearnerError


def _tensor(values, check, dtype=None):
    """A small hand-written tensor on the checker's device."""
    return torch.tensor(values, dtype=dtype).to(check.device)


def _renamed(error: CheckFailed, mistake: str, hint: str) -> CheckFailed:
    """`error` again (same kind, detail and case), diagnosed as `mistake` with `hint`."""
    return type(error)(error.detail, exercise=error.exercise, case=error.case, hint=hint, mistake=mistake)


# -- 1. a model with a known two-hop computation ----------------------------------------------------


def _accuracy_at(logits, end, answer, *, shift=0, last=False, reduce="mean"):
    rows = torch.arange(len(end), device=logits.device)
    position = torch.full_like(end, logits.shape[1] - 1) if last else (end + shift).clamp(0, logits.shape[1] - 1)
    right = (logits[rows, position].argmax(-1) == answer).float()
    return (right.mean() if reduce == "mean" else right.sum() if reduce == "sum" else 100 * right.mean()).item()


def _accuracy_inputs(check, ends, right, n_pos=None, vocab=11):
    """Logits whose argmax at `end` is the answer exactly for the prompts in `right`; for the others the
    answer is (where it can be) the argmax at the last position, so reading the wrong place shows."""
    ends = _tensor(ends, check)
    batch, n_pos = len(ends), n_pos or int(ends.max()) + 2
    logits = check.randn(batch, n_pos, vocab, scale=2.0)
    rows = torch.arange(batch, device=check.device)
    at_end = logits[rows, ends].argmax(-1)
    at_last = logits[:, -1].argmax(-1)
    other = torch.where(at_last != at_end, at_last, (at_end + 1) % vocab)
    answer = torch.where(_tensor(right, check, torch.bool), at_end, other)
    return logits, ends, answer


@exercise(difficulty=1, minutes=5, hints=[
    "For each prompt, read the logits at its own position `end` (not the last position: the prompts are "
    "right-padded), take the most likely token there and compare it with the answer.",
    "logits[torch.arange(batch), end] picks one position per prompt: [batch, vocab]. Its argmax over the "
    "vocabulary is the prediction.",
    "`(logits[torch.arange(len(end)), end].argmax(-1) == answer).float().mean().item()`",
])
def test_answer_accuracy(check):
    def broadcast(logits, end, answer):  # logits[:, end] pairs every prompt with every end
        return (logits[:, end].argmax(-1) == answer).float().mean().item()

    def every_position(logits, end, answer):
        return (logits.argmax(-1) == answer[:, None]).float().mean().item()

    mistakes = [
        Mistake("last position", "The prompts are right-padded: the last *position* is often padding. Read each "
                "prompt's logits at its own `end`: logits[torch.arange(batch), end].",
                lambda lo, e, a: _accuracy_at(lo, e, a, last=True)),
        Mistake("one position after end", "`end` is the position of the last word, and the prediction of the "
                "next token is made *there*: read logits at `end`, not `end + 1`.",
                lambda lo, e, a: _accuracy_at(lo, e, a, shift=1)),
        Mistake("one position before end", "The answer is predicted at `end` itself (the logits at a position "
                "predict the token after it): read logits at `end`, not `end - 1`.",
                lambda lo, e, a: _accuracy_at(lo, e, a, shift=-1)),
        Mistake("every prompt at every end", "logits[:, end] takes *every* prompt at every prompt's end ([batch, "
                "batch, vocab]). Pair prompt i with end[i]: logits[torch.arange(batch), end].", broadcast),
        Mistake("every position", "Only one position per prompt counts: the one at `end`, not every position.",
                every_position),
        Mistake("count, not share", "Return the *share* of prompts answered right (a mean), not their number.",
                lambda lo, e, a: _accuracy_at(lo, e, a, reduce="sum")),
        Mistake("percent", "Return a share between 0 and 1, not a percentage.",
                lambda lo, e, a: _accuracy_at(lo, e, a, reduce="percent")),
    ]
    check.case("8 right-padded prompts, 5 answered", *_accuracy_inputs(check, [3, 5, 2, 4, 1, 3, 4, 2],
                                                                       [1, 1, 0, 1, 0, 1, 0, 1]), mistakes=mistakes)
    check.case("two prompts end at the last position, 3 answered",
               *_accuracy_inputs(check, [6, 2, 6, 0, 4, 1], [0, 1, 1, 0, 1, 0], n_pos=7), mistakes=mistakes)
    check.case("every prompt answered", *_accuracy_inputs(check, [2, 0, 3, 1], [1, 1, 1, 1]), mistakes=mistakes)
    check.case("one prompt, not answered", *_accuracy_inputs(check, [1], [0]), mistakes=mistakes)


def _lens(resid, ln_w, ln_b, W_U, city_tokens, eps=1e-5, *, centre=True, divide=True, affine=True, bias=True,
          cities_only=True, token_ids=False):
    x = resid - resid.mean(dim=-1, keepdim=True) if centre else resid
    if divide:
        x = x / (x.pow(2).mean(dim=-1, keepdim=True) + eps).sqrt()
    if affine:
        x = x * ln_w + (ln_b if bias else 0)
    if not cities_only:
        return (x @ W_U).argmax(dim=-1)
    index = (x @ W_U[:, city_tokens]).argmax(dim=-1)
    return city_tokens[index] if token_ids else index


@exercise(difficulty=1, minutes=10, hints=[
    "Two steps: the final LayerNorm (centre resid, divide by its own standard deviation, then ln_w and ln_b), "
    "then the unembedding restricted to the city tokens; the answer is an index into `city_tokens`.",
    "x = (resid - mean) / sqrt(var + eps) * ln_w + ln_b, with mean and var over d_model (var with "
    "unbiased=False); W_U[:, city_tokens] is [d_model, city].",
    "`(x @ W_U[:, city_tokens]).argmax(dim=-1)`: indices 0 ... len(city_tokens) - 1, not token ids.",
])
def test_city_lens(check):
    def lens(**how):
        return lambda *args: _lens(*args, **how)

    mistakes = [
        Mistake("whole vocabulary", "Read the lens *among the cities* only: take the logits of W_U[:, city_tokens] "
                "and return the index of the best city, not the most likely token of the whole vocabulary.",
                lens(cities_only=False)),
        Mistake("token ids, not indices", "Return the index into `city_tokens` (0 ... n_cities - 1) of the best "
                "city, not its token id: drop the final city_tokens[...].", lens(token_ids=True)),
        Mistake("no final LayerNorm", "The logit lens applies the final LayerNorm before the unembedding (the "
                "model does): centre, scale, then ln_w and ln_b.",
                lens(centre=False, divide=False, affine=False)),
        Mistake("not centred", "The LayerNorm first subtracts the mean over d_model from resid.", lens(centre=False)),
        Mistake("not scaled", "Divide the centred resid by its own standard deviation, sqrt(mean(x^2) + eps): "
                "without it ln_b weighs too little against a large residual stream.", lens(divide=False)),
        Mistake("ln_w and ln_b left out", "After normalising, multiply by ln_w and add ln_b.", lens(affine=False)),
        Mistake("ln_b left out", "Add the LayerNorm's bias ln_b after multiplying by ln_w.", lens(bias=False)),
    ]
    d_model, vocab = 8, 12
    for name, batch, cities, size in [("12 residuals, 5 cities in no order", 12, [9, 2, 6, 4, 11], 3.0),
                                      ("10 larger residuals, 3 cities", 10, [7, 0, 3], 10.0),
                                      ("one city", 3, [5], 3.0)]:
        resid = check.randn(batch, d_model, scale=size) + check.randn(batch, 1, scale=size)  # off-centre
        ln_w = 1 + check.randn(d_model, scale=0.5)
        ln_b = check.randn(d_model, scale=0.7)
        W_U = check.randn(d_model, vocab)
        check.case(name, resid, ln_w, ln_b, W_U, _tensor(cities, check), mistakes=mistakes)


# -- 2. transcoders ----------------------------------------------------------------------------------


def _kept(pre, k, *, dim=-1, key=None, relu=True):
    key = pre if key is None else key
    index = key.topk(k, dim=dim).indices
    values = pre.gather(dim, index)
    return torch.zeros_like(pre).scatter(dim, index, torch.relu(values) if relu else values)


@exercise(difficulty=1, minutes=10, hints=[
    "Compute the pre-activations x_in @ W_enc + b_enc ([batch, lat]); for each input keep its k largest, "
    "each through a ReLU, and set every other latent to 0.",
    "`values, indices = pre.topk(k, dim=-1)`; torch.zeros_like(pre).scatter(-1, indices, ...) writes values "
    "back at their latents.",
    "`torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))`: the ReLU matters when fewer than k "
    "pre-activations are positive.",
])
def test_topk_encode(check):
    def pre(x, W, b):
        return x @ W + b

    def one_too_few(x, W, b, k):
        p = pre(x, W, b)
        return torch.relu(p) * (p > p.topk(k, dim=-1).values[:, -1:])

    mistakes = [
        Mistake("no ReLU", "When fewer than k pre-activations are positive, the negative ones among the top k must "
                "become 0: apply a ReLU to the kept values.", lambda x, W, b, k: _kept(pre(x, W, b), k, relu=False)),
        Mistake("no encoder bias", "The pre-activations are x_in @ W_enc + b_enc: add the encoder bias before "
                "choosing the top k.", lambda x, W, b, k: _kept(x @ W, k)),
        Mistake("largest magnitude", "Keep the k *largest* pre-activations, not the largest in absolute value.",
                lambda x, W, b, k: _kept(pre(x, W, b), k, key=pre(x, W, b).abs())),
        Mistake("top k over the batch", "Keep the top k latents of *each input* (the last axis), not the top k "
                "inputs of each latent.", lambda x, W, b, k: _kept(pre(x, W, b), k, dim=0)),
        Mistake("ReLU without top k", "A TopK transcoder keeps only the k largest latents of each input; every "
                "other latent is 0, even when positive.", lambda x, W, b, k: torch.relu(pre(x, W, b))),
        Mistake("k-th largest dropped", "Keep the k largest, the k-th included: a mask `pre > kth` keeps only "
                "k - 1 (use >=, or topk's indices).", one_too_few),
    ]
    x, W_enc = check.randn(6, 5), check.randn(5, 12)
    b_enc = -check.randn(12).abs() - 0.3
    b_enc[3] = 0.8
    x[0] = 0.0  # its pre-activations are b_enc: a single positive one
    check.case("k = 3 (input 0 has one positive pre-activation)", x, W_enc, b_enc, 3, mistakes=mistakes)
    check.case("k = 1", x, W_enc, b_enc, 1, mistakes=mistakes)
    check.case("k = 8, more than most inputs' positive pre-activations", x, W_enc, b_enc, 8, mistakes=mistakes)
    check.case("k = every latent", x, W_enc, b_enc, 12, mistakes=mistakes)


def _decode(acts, W_dec, b_dec, *, sources="causal", swapped=False, bias="once"):
    n_layers = acts.shape[1]
    W = W_dec.transpose(0, 1) if swapped else W_dec
    ones = torch.ones(n_layers, n_layers, dtype=torch.bool, device=acts.device)
    allowed = {"causal": ones.triu(), "all": ones, "earlier": ones.triu(1), "later": ones.tril(),
               "own": ones.triu() & ones.tril()}[sources]
    out = torch.einsum("bsl,stdl->btd", acts, W * allowed[:, :, None, None])
    if bias == "once":
        return out + b_dec
    if bias == "per source":
        return out + b_dec * allowed.sum(0)[:, None]
    return out


@exercise(difficulty=2, minutes=15, hints=[
    "Layer t's MLP output is the sum, over the source layers s <= t, of W_dec[s, t] @ acts[:, s], plus "
    "b_dec[t]. A latent never writes to a layer before its own.",
    "Mask W_dec with a [src, tgt] boolean that is True where src <= tgt (torch.ones(n, n).triu()), then one "
    "einsum sums over the source layer and the latent.",
    "`einops.einsum(acts, W_dec * causal[:, :, None, None], 'batch src lat, src tgt d lat -> batch tgt d') "
    "+ b_dec`",
])
def test_cross_layer_decode(check):
    def decode(**how):
        return lambda *args: _decode(*args, **how)

    mistakes = [
        Mistake("no causal mask", "A latent read at layer s writes only to layers s, s + 1, ...: leave out "
                "W_dec[s, t] for every s > t (mask with a [src, tgt] triu).", decode(sources="all")),
        Mistake("strictly earlier sources", "A latent also writes to its *own* layer: the sources of layer t are "
                "s <= t, the diagonal included (triu(), not triu(1)).", decode(sources="earlier")),
        Mistake("mask the wrong way round", "W_dec is [src, tgt]: keep entries with src <= tgt (an upper "
                "triangle, .triu()), not src >= tgt.", decode(sources="later")),
        Mistake("own layer only", "A cross-layer transcoder's latent at layer s writes to *every* later layer "
                "too: sum over all sources s <= t, not just s = t.", decode(sources="own")),
        Mistake("src and tgt swapped", "W_dec is indexed [source, target]: layer t reads W_dec[s, t] for s <= t, "
                "not W_dec[t, s].", decode(swapped=True)),
        Mistake("no decoder bias", "Add b_dec[layer] to each layer's output.", decode(bias="none")),
        Mistake("bias added per source", "b_dec[t] is added once per target layer, not once per source layer "
                "(move it out of the loop over sources).", decode(bias="per source")),
    ]
    for name, batch, n_layers in [("3 layers", 4, 3), ("4 layers", 2, 4), ("one layer", 3, 1)]:
        acts = torch.relu(check.randn(batch, n_layers, 6) - 0.3)
        W_dec = check.randn(n_layers, n_layers, 5, 6, scale=0.5)  # below the diagonal too: a missing mask shows
        check.case(name, acts, W_dec, check.randn(n_layers, 5), mistakes=mistakes)


def _nmse(out_hat, out, *, centre=(0,), error="sum", denominator="sum", of="out", per_dim=False, norms=False):
    truth = out_hat if of == "out_hat" else out
    centred = truth - truth.mean(dim=centre, keepdim=True) if centre else truth
    if norms:
        return (out_hat - out).norm(dim=-1).sum(0) / centred.norm(dim=-1).sum(0)
    err, var = (out_hat - out).pow(2), centred.pow(2)
    if per_dim:
        return (err.sum(0) / var.sum(0)).mean(-1)
    err = err.sum(dim=(0, 2)) if error == "sum" else err.mean(dim=(0, 2))
    var = var.sum(dim=(0, 2)) if denominator == "sum" else var.mean(dim=(0, 2))
    return err / var


@exercise(difficulty=1, minutes=10, hints=[
    "Per layer: the squared error summed over inputs and d_model, divided by the summed squared distance of "
    "the true outputs from their mean output (the mean over inputs).",
    "The mean output of a layer is out.mean(dim=0) ([layer, d_model]); reduce both sums over dims (0, 2).",
    "`(out_hat - out).pow(2).sum(dim=(0, 2)) / (out - out.mean(dim=0)).pow(2).sum(dim=(0, 2))`",
])
def test_normalised_mse(check):
    def nmse(**how):
        return lambda a, b: _nmse(a, b, **how)

    mistakes = [
        Mistake("not normalised", "Divide the squared error by the spread of the true outputs around their mean, "
                "so that 1 means 'no better than the mean output'.",
                lambda a, b: (a - b).pow(2).sum(dim=(0, 2))),
        Mistake("not centred", "The denominator measures the true outputs' distance from their *mean* output: "
                "subtract out.mean(dim=0) before squaring.", nmse(centre=None)),
        Mistake("mean over d_model", "The mean output is the mean over *inputs* (dim 0), one vector per layer, "
                "not each output's mean over its d_model entries.", nmse(centre=(2,))),
        Mistake("mean over everything", "Subtract the mean over inputs only (out.mean(dim=0)): one mean vector "
                "per layer, not a single number.", nmse(centre=(0, 1, 2))),
        Mistake("spread of the reconstruction", "Normalise by the spread of the *true* outputs `out`, not of "
                "out_hat.", nmse(of="out_hat")),
        Mistake("ratio per dimension", "Sum over d_model in both numerator and denominator before dividing; "
                "averaging per-dimension ratios lets quiet dimensions dominate.", nmse(per_dim=True)),
        Mistake("mean over sum", "Both the error and the spread are sums (or both means) over inputs and d_model: "
                "mixing a mean with a sum scales the result.", nmse(error="mean")),
        Mistake("mean over sum", "Both the error and the spread are sums (or both means) over inputs and d_model: "
                "mixing a mean with a sum scales the result.", nmse(denominator="mean")),
        Mistake("norms, not squared norms", "Use *squared* errors and squared distances (.pow(2)), not norms.",
                nmse(norms=True)),
    ]
    means, scales = check.randn(6, scale=3.0), check.randn(6).abs() + 0.3
    out = check.randn(20, 3, 6) * scales + means
    noise = torch.tensor([0.1, 0.4, 1.0]).to(check.device)[None, :, None]
    check.case("3 layers of different quality, outputs off-centre", out + check.randn(20, 3, 6) * noise, out,
               mistakes=mistakes)
    out = check.randn(12, 2, 4) * 2.0 + 1.0
    perfect_and_mean = torch.stack([out[:, 0], out[:, 1].mean(0).expand(12, 4)], dim=1)
    check.case("a perfect layer (0) and one that predicts the mean output (1)", perfect_and_mean, out,
               mistakes=mistakes)


def _kl(logits, replaced, mask, *, reverse=False, padding=False, zeroed=False, reduce="mean", probs=False,
        per_prompt=False, axis=-1):
    log_p, log_q = logits.log_softmax(axis), replaced.log_softmax(axis)
    if reverse:
        log_p, log_q = log_q, log_p
    kl = ((log_p.exp() * (log_p.exp() - log_q.exp())) if probs else (log_p.exp() * (log_p - log_q))).sum(-1)
    if padding:
        return kl.mean().item()
    if zeroed:
        return (kl * mask).sum().item() / mask.numel()
    if per_prompt:
        return ((kl * mask).sum(1) / mask.sum(1)).mean().item()
    return kl[mask].mean().item() if reduce == "mean" else kl[mask].sum().item()


def _kl_inputs(check, lengths, n_pos=6, vocab=9):
    logits = check.randn(len(lengths), n_pos, vocab, scale=2.0)
    replaced = logits + check.randn(len(lengths), n_pos, vocab, scale=0.7)
    mask = torch.arange(n_pos, device=check.device) < _tensor(lengths, check)[:, None]
    replaced = torch.where(mask[..., None], replaced, check.randn(len(lengths), n_pos, vocab, scale=4.0))
    return logits, replaced, mask


@exercise(difficulty=1, minutes=10, hints=[
    "At each position `mask` keeps: the KL divergence from the original next-token distribution p to the "
    "replacement's q, sum_v p_v (log p_v - log q_v); then the mean over those positions.",
    "log_softmax over the vocabulary (the last axis) gives log p and log q; logits[mask] is [n_kept, vocab].",
    "`log_p, log_q = logits[mask].log_softmax(-1), replaced[mask].log_softmax(-1)`; then "
    "`(log_p.exp() * (log_p - log_q)).sum(-1).mean().item()`.",
])
def test_replacement_kl(check):
    def kl(**how):
        return lambda *args: _kl(*args, **how)

    def kl_div_mean(logits, replaced, mask):
        with warnings.catch_warnings():  # torch warns about reduction='mean', as it would the learner
            warnings.simplefilter("ignore")
            return torch.nn.functional.kl_div(replaced[mask].log_softmax(-1), logits[mask].log_softmax(-1),
                                              reduction="mean", log_target=True).item()

    mistakes = [
        Mistake("KL reversed", "KL(original || replacement) weights by the *original* probabilities p: "
                "sum p (log p - log q). (F.kl_div(input, target) computes KL(target || input): pass the "
                "replacement's log-probabilities as input.)", kl(reverse=True)),
        Mistake("averaged over padding", "Average over the positions `mask` keeps only: padding positions are not "
                "part of any prompt (select with logits[mask], or divide by mask.sum()).", kl(padding=True)),
        Mistake("averaged over padding", "Padding is zeroed in your sum but still counted in the mean: divide by "
                "the number of kept positions, mask.sum(), not by every position.", kl(zeroed=True)),
        Mistake("summed over positions", "Average the per-position KL over the kept positions, don't add them up.",
                kl(reduce="sum")),
        Mistake("averaged per prompt", "Average over all kept positions together, not per prompt first: prompts "
                "of different lengths would weigh alike.", kl(per_prompt=True)),
        Mistake("probabilities, not log-probabilities", "KL uses the log-ratio: sum p (log p - log q), with "
                "log_softmax, not p (p - q).", kl(probs=True)),
        Mistake("softmax over positions", "The distributions are over the vocabulary: log_softmax over the last "
                "axis (-1), not over positions.", kl(axis=1)),
        Mistake("F.kl_div's reduction='mean'", "F.kl_div(..., reduction='mean') divides by every *element* "
                "(positions x vocabulary): sum over the vocabulary, then average over positions "
                "(reduction='batchmean' on [n_kept, vocab]).", kl_div_mean),
    ]
    check.case("4 prompts of lengths 6, 3, 4 and 2", *_kl_inputs(check, [6, 3, 4, 2]), mistakes=mistakes)
    check.case("no padding", *_kl_inputs(check, [6, 6]), mistakes=mistakes)
    case = "a prompt that is all padding"
    inputs = _kl_inputs(check, [5, 0, 2])
    got = check.run(*inputs, case=case)
    try:
        nan = bool(torch.as_tensor(got).isnan().any())
    except (TypeError, RuntimeError, ValueError):
        nan = False
    check.expect(not nan, case=case, mistake="NaN from an all-padding prompt",
                 message="your function returned NaN for a batch with one all-padding prompt",
                 hint="A prompt with no kept position has nothing to average: a per-prompt mean divides 0 by 0. "
                      "Average over every kept position of the batch at once (logits[mask]).")
    check.case(case, *inputs, mistakes=mistakes)


# -- 3. the local replacement model ------------------------------------------------------------------


@exercise(difficulty=1, minutes=5, hints=[
    "Like a LayerNorm, except for the scale: subtract x's mean over d_model, divide by the *given* `scale`, "
    "then multiply by w and add b.",
    "Do not compute a standard deviation from x: `scale` ([pos, 1]) is the real forward pass's, frozen.",
    "`(x - x.mean(dim=-1, keepdim=True)) / scale * w + b`",
])
def test_frozen_layer_norm(check):
    def recomputed(x, scale, w, b, unbiased=False):
        centred = x - x.mean(dim=-1, keepdim=True)
        return centred / (centred.var(dim=-1, keepdim=True, unbiased=unbiased) + 1e-5).sqrt() * w + b

    mistakes = [
        Mistake("scale recomputed", "Divide by the given `scale` (the real forward pass's, frozen), not by a "
                "standard deviation computed from x: that is what makes the LayerNorm linear in x.", recomputed),
        Mistake("scale recomputed", "Divide by the given `scale`, not by x.std(): the frozen scale is what makes "
                "the LayerNorm linear in x.", lambda x, s, w, b: recomputed(x, s, w, b, unbiased=True)),
        Mistake("not centred", "Subtract x's mean over d_model first.", lambda x, s, w, b: x / s * w + b),
        Mistake("mean over positions", "Centre each position over its d_model entries (dim=-1), not over positions.",
                lambda x, s, w, b: (x - x.mean(dim=0, keepdim=True)) / s * w + b),
        Mistake("multiplied by the scale", "The LayerNorm *divides* by the scale.",
                lambda x, s, w, b: (x - x.mean(dim=-1, keepdim=True)) * s * w + b),
        Mistake("only the mean divided", "Operator precedence: x - x.mean(...) / scale divides only the mean. "
                "Bracket the centred x: (x - x.mean(dim=-1, keepdim=True)) / scale.",
                lambda x, s, w, b: (x - x.mean(dim=-1, keepdim=True) / s) * w + b),
        Mistake("b divided by the scale", "Only the centred x is divided by the scale; w and b come after.",
                lambda x, s, w, b: ((x - x.mean(dim=-1, keepdim=True)) * w + b) / s),
        Mistake("no bias", "Add b after multiplying by w.",
                lambda x, s, w, b: (x - x.mean(dim=-1, keepdim=True)) / s * w),
        Mistake("no weight", "Multiply by w before adding b.",
                lambda x, s, w, b: (x - x.mean(dim=-1, keepdim=True)) / s + b),
    ]
    x = check.randn(5, 8, scale=2.0) + check.randn(5, 1, scale=3.0)
    w, b = 1 + check.randn(8, scale=0.3), check.randn(8, scale=0.5)
    scale = check.randn(5, 1).abs() * 2 + 0.5  # a frozen scale: not x's own
    check.case("a frozen scale that is not x's own", x, scale, w, b, mistakes=mistakes)
    own = (x - x.mean(-1, keepdim=True)).pow(2).mean(-1, keepdim=True).add(1e-5).sqrt()
    x2 = x + check.randn(5, 8, scale=0.5)
    check.case("x moved away from the forward pass that froze the scale", x2, own, w, b, mistakes=mistakes)


def _attend(x, pattern, W_V, b_V, W_O, b_O, *, transposed=False, value_bias=True, out_bias="once", heads="sum"):
    v = torch.einsum("pd,hde->hpe", x, W_V) + (b_V[:, None] if value_bias else 0)
    z = torch.einsum("hkq,hke->hqe" if transposed else "hqk,hke->hqe", pattern, v)
    per_head = torch.einsum("hqe,hed->hqd", z, W_O)
    if out_bias == "per head":
        per_head = per_head + b_O
    out = per_head.sum(0) if heads == "sum" else per_head.mean(0)
    return out + b_O if out_bias == "once" else out


def _pattern(check, heads, n_pos):
    scores = check.randn(heads, n_pos, n_pos, scale=1.5)
    causal = torch.ones(n_pos, n_pos, dtype=torch.bool, device=check.device).tril()
    return scores.masked_fill(~causal, float("-inf")).softmax(-1)


@exercise(difficulty=2, minutes=10, hints=[
    "Per head: values v = x @ W_V + b_V ([head, pos, d_head]); each query position q takes sum_k "
    "pattern[head, q, k] v[k]; W_O maps that back to d_model; add the heads up, then b_O once.",
    "With einsum: 'pos d, head d e -> head pos e' for the values (plus b_V[:, None]), 'head q k, head k e -> "
    "head q e' to move them, 'head q e, head e d -> q d' to map back and sum the heads.",
    "`v = einsum(x, W_V, ...) + b_V[:, None]; z = einsum(pattern, v, 'head q k, head k e -> head q e'); "
    "return einsum(z, W_O, 'head q e, head e d -> q d') + b_O`",
])
def test_frozen_attention(check):
    def attend(**how):
        return lambda *args: _attend(*args, **how)

    mistakes = [
        Mistake("pattern transposed", "pattern is [head, query, key]: query q reads sum_k pattern[h, q, k] v[k] "
                "(contract over the *last* axis of the pattern).", attend(transposed=True)),
        Mistake("no value bias", "The values are x W_V + b_V: add b_V (per head, [head, 1, d_head]) before "
                "moving them.", attend(value_bias=False)),
        Mistake("no output bias", "Add b_O once to the summed heads.", attend(out_bias="none")),
        Mistake("b_O added per head", "b_O belongs to the layer, not to each head: add it once, after summing the "
                "heads.", attend(out_bias="per head")),
        Mistake("heads averaged", "The heads' outputs *add up* in the residual stream: sum over heads, not mean.",
                attend(heads="mean")),
    ]
    for name, heads, n_pos, d_model, d_head in [("2 heads, 5 positions", 2, 5, 6, 3),
                                                ("3 heads, 4 positions", 3, 4, 8, 2),
                                                ("one head, one position", 1, 1, 4, 2)]:
        x = check.randn(n_pos, d_model)
        W_V, b_V = check.randn(heads, d_model, d_head), check.randn(heads, d_head)
        W_O, b_O = check.randn(heads, d_head, d_model), check.randn(d_model)
        check.case(name, x, _pattern(check, heads, n_pos), W_V, b_V, W_O, b_O, mistakes=mistakes)


def _reconstruction(acts, W_dec, b_dec, *, bias=True, every_layer=False):
    out = torch.einsum("plk,xdk->pld", acts, W_dec) if every_layer else torch.einsum("plk,ldk->pld", acts, W_dec)
    return out + b_dec if bias else out


@exercise(difficulty=1, minutes=5, hints=[
    "The transcoder's output at each position and layer is W_dec[layer] @ acts[pos, layer] + b_dec[layer]; "
    "the error node is what the real MLP output has beyond it.",
    "einops.einsum(acts, W_dec, 'pos layer lat, layer d lat -> pos layer d') pairs each layer's activations "
    "with its own decoder.",
    "`mlp_out - (einops.einsum(acts, W_dec, 'pos layer lat, layer d lat -> pos layer d') + b_dec)`",
])
def test_error_nodes(check):
    mistakes = [
        Mistake("transcoder minus MLP", "The error is the real MLP output *minus* the transcoder's output (added "
                "back to the transcoder, it gives the real output).",
                lambda m, a, W, b: _reconstruction(a, W, b) - m),
        Mistake("no decoder bias", "The transcoder's output includes b_dec: subtract W_dec acts + b_dec.",
                lambda m, a, W, b: m - _reconstruction(a, W, b, bias=False)),
        Mistake("decoder bias added", "Subtract the whole transcoder output, b_dec included: "
                "mlp_out - (W_dec acts + b_dec), not mlp_out - W_dec acts + b_dec.",
                lambda m, a, W, b: m - _reconstruction(a, W, b, bias=False) + b),
        Mistake("the reconstruction, not the error", "Return what the transcoder *misses*: mlp_out minus its "
                "output.", lambda m, a, W, b: _reconstruction(a, W, b)),
        Mistake("every layer's decoder", "Each layer's activations go through *its own* decoder: keep the layer "
                "axis on both sides of the einsum ('pos layer lat, layer d lat -> pos layer d').",
                lambda m, a, W, b: m - _reconstruction(a, W, b, every_layer=True)),
    ]
    for name, n_pos, n_layers in [("5 positions, 3 layers", 5, 3), ("one position, one layer", 1, 1)]:
        acts = torch.relu(check.randn(n_pos, n_layers, 8) - 0.5)
        check.case(name, check.randn(n_pos, n_layers, 6), acts, check.randn(n_layers, 6, 8),
                   check.randn(n_layers, 6), mistakes=mistakes)


# -- 4. the attribution graph ------------------------------------------------------------------------


@torch.enable_grad()  # a notebook may switch gradients off globally (torch.set_grad_enabled(False))
def _linear_net(spec, one_source=False):
    """Fresh leaf sources (embeddings, feature activations, error scales) and the 0-d targets they drive, a
    linear function of them (the local replacement model in miniature). Einsums throughout: a 1-d @ 2-d
    matmul of tensors that require grad loses its shape on utils.second_device's stand-in GPU."""
    embed = spec["embed"].clone().requires_grad_(True)
    if one_source:
        return list(torch.einsum("pd,pdt->t", embed, spec["W_embed"]) + spec["bias"]), [embed]
    acts = spec["acts"].clone().requires_grad_(True)
    errors = spec["errors"].clone().requires_grad_(True)
    hidden = torch.einsum("pd,pdh->h", embed, spec["W_embed"][..., :2].repeat(1, 1, 2))
    targets = (torch.einsum("h,ht->t", hidden, spec["W_hidden"]) + torch.einsum("f,ft->t", acts, spec["W_acts"])
               + torch.einsum("p,pt->t", errors, spec["W_errors"]) + spec["bias"])
    return list(targets), [embed, acts, errors]  # scalar targets, each indexed with gradients on


def _effects_of(spec, t, *, one_source=False, times_activation=True, summed=False):
    targets, sources = _linear_net(spec, one_source)
    grads = torch.autograd.grad(targets[t], sources)
    effects = [g * s.detach() if times_activation else g for g, s in zip(grads, sources)]
    return [e.sum() for e in effects] if summed else effects


def _net_spec(check):
    acts = torch.relu(check.randn(5))
    acts[1] = 0.0  # an inactive feature: a gradient, no effect
    return {"embed": check.randn(3, 4), "acts": acts, "errors": 1 + check.randn(3, scale=0.2),
            "W_embed": check.randn(3, 4, 3), "W_hidden": check.randn(4, 3), "W_acts": check.randn(5, 3),
            "W_errors": check.randn(3, 3), "bias": check.randn(3)}


@exercise(difficulty=2, minutes=10, hints=[
    "torch.autograd.grad(target, sources) returns the gradient of the target with respect to each source, "
    "without touching any .grad; multiply each by the source's value.",
    "Pass retain_graph=True: the forward pass is shared by every target, and without it the first call frees "
    "the graph that the next target needs.",
    "`grads = torch.autograd.grad(target, sources, retain_graph=True)`, then "
    "`[g * s.detach() for g, s in zip(grads, sources)]`.",
])
def test_direct_effects(check):
    # The candidate gets live tensors of one forward pass (check.case would hand it detached copies), so these
    # mistakes take what builds that pass instead: (spec, target index, one source tensor or three).
    mistakes = [
        Mistake("gradient only", "A direct effect is the gradient *times the source's activation* (its value): "
                "multiply each gradient by its source (g * s.detach()).",
                lambda spec, t, one: _effects_of(spec, t, one_source=one, times_activation=False)),
        Mistake("summed per source", "Return one effect per *element* of each source (the shape of the source), "
                "not its sum.", lambda spec, t, one: _effects_of(spec, t, one_source=one, summed=True)),
    ]
    spec = _net_spec(check)
    for one_source, n_targets in [(False, 3), (True, 2)]:
        targets, sources = _linear_net(spec, one_source)  # one forward pass, several targets
        for t in range(n_targets):
            case = (f"target {t} of one forward pass" if not one_source else f"one source tensor, target {t}")
            expected = _effects_of(spec, t, one_source=one_source)
            try:
                got = check.call(check.candidate, targets[t], sources, case=case)
            except LearnerError as error:
                if t == 0 or "second time" not in error.detail:
                    raise
                raise _renamed(error, "graph not retained",
                               "The first target's call freed the forward pass's graph, which the next target "
                               "shares: pass retain_graph=True to torch.autograd.grad.") from None
            written = [i for i, s in enumerate(sources) if s.grad is not None]
            check.expect(not written, case=case, mistake="used .backward()",
                         message=f"your function wrote .grad of sources {written}",
                         hint="backward() writes (and accumulates into) each source's .grad, which the caller "
                              "did not ask for and which adds up over targets: use torch.autograd.grad(target, "
                              "sources, retain_graph=True), which returns the gradients instead.")
            check.compare(got, expected, case=case, mistakes=mistakes, inputs=((spec, t, one_source), {}))


def _logit_probs(check, probs, order, shift=3.0):
    """Logits whose softmax is `probs` (listed most likely first) at the token ids `order`."""
    p = torch.zeros(len(probs))
    p[torch.tensor(order)] = torch.tensor(probs)
    return (p.log() + shift).to(check.device)


def _tokens(logits, max_logits, coverage, *, crossing=True, cap=True, descending=True, key="probs", sort_ids=False):
    probs = logits.softmax(-1)
    order = probs.argsort(descending=descending)
    cumulative = (probs if key == "probs" else logits)[order].cumsum(0)
    n = int((cumulative < coverage).sum()) + (1 if crossing else 0)
    chosen = order[: min(n, max_logits) if cap else n]
    return chosen.sort().values if sort_ids else chosen


# probabilities, most likely first: cumulative .31 .53 .69 .80 .88 .93 .96 .98 .995 1
_PROBS = [0.31, 0.22, 0.16, 0.11, 0.08, 0.05, 0.03, 0.02, 0.015, 0.005]
_ORDER = [6, 2, 9, 0, 4, 7, 1, 8, 3, 5]


@exercise(difficulty=2, minutes=10, hints=[
    "Sort the tokens by probability (softmax of the logits), most likely first, and add their probabilities "
    "up: keep tokens until the running total reaches `coverage`, the token that crosses it included.",
    "With `order = probs.argsort(descending=True)` and `cum = probs[order].cumsum(0)`, the tokens strictly "
    "below coverage are (cum < coverage).sum(); one more is the crossing token. Then cap at max_logits.",
    "`n = int((probs[order].cumsum(0) < coverage).sum()) + 1; return order[:min(n, max_logits)]`",
])
def test_logit_node_tokens(check):
    def tokens(**how):
        return lambda logits, m, c: _tokens(logits, m, c, **how)

    mistakes = [
        Mistake("crossing token left out", "Keep the token whose probability makes the total reach `coverage`: "
                "the tokens with a running total below coverage, *plus one*.", tokens(crossing=False)),
        Mistake("max_logits ignored", "Keep at most `max_logits` tokens, even when coverage is not reached.",
                tokens(cap=False)),
        Mistake("coverage ignored", "Stop as soon as the tokens cover `coverage` of the probability: max_logits "
                "is only a cap.", lambda logits, m, c: logits.softmax(-1).argsort(descending=True)[:m]),
        Mistake("least likely first", "Sort by probability in *descending* order (argsort(descending=True)): the "
                "most likely token first.", tokens(descending=False)),
        Mistake("logits, not probabilities", "Coverage is a share of *probability*: add up softmax(logits), not "
                "the logits.", tokens(key="logits")),
        Mistake("token ids sorted", "Return the tokens most likely first, as they come from the sorted order; "
                "don't sort the token ids.", tokens(sort_ids=True)),
    ]
    logits = _logit_probs(check, _PROBS, _ORDER)
    check.case("coverage 0.9 (6 tokens)", logits, 10, 0.9, mistakes=mistakes)
    check.case("coverage 0.95, at most 4 tokens", logits, 4, 0.95, mistakes=mistakes)
    check.case("coverage 0.5 (2 tokens)", logits, 10, 0.5, mistakes=mistakes)
    check.case("coverage 0.2: the top token alone crosses it", logits, 10, 0.2, mistakes=mistakes)
    case = "coverage 1.0 (in float32 these probabilities add up to 0.99999994), max_logits above the vocabulary size"
    short = (torch.randn(16, generator=torch.Generator().manual_seed(13)) * 1.5).to(check.device)
    try:
        check.case(case, short, 20, 1.0, mistakes=mistakes)
    except LearnerError as error:
        if "IndexError" not in error.detail:
            raise
        raise _renamed(error, "coverage never reached",
                       "In floats the probabilities may add up to a hair below 1.0, so no token 'reaches' a "
                       "coverage of 1.0: count the tokens below coverage ((cum < coverage).sum()) instead of "
                       "looking for the first one at or above it, and cap at the vocabulary size.") from None
    check.case("random logits, coverage 0.8", check.randn(30, scale=2.0), 10, 0.8, mistakes=mistakes)


def _normalised(A, *, absolute=True, signed_sum=False, axis=1, by="sum", guard=True):
    magnitude = A.abs() if absolute else A
    if by == "max":
        total = A.abs().amax(dim=axis, keepdim=True)
    elif by == "all":
        total = A.abs().sum()
    else:
        total = (A if signed_sum else A.abs()).sum(dim=axis, keepdim=True)
    if guard == "where":  # zero sums (only): torch.where(total == 0, 1, total), or where(total != 0, A / total, 0)
        return magnitude / torch.where(total == 0, torch.ones_like(total), total)
    return magnitude / total.clamp(min=1e-30) if guard else magnitude / total


@exercise(difficulty=1, minutes=5, hints=[
    "Take magnitudes (|A|), then divide each row (a target's incoming edges) by its sum.",
    "A row of zeros (a node with no inputs, like an embedding) must stay 0, not become 0/0 = NaN.",
    "`magnitude = adjacency.abs(); return magnitude / magnitude.sum(dim=1, keepdim=True).clamp(min=1e-30)`",
])
def test_normalised_adjacency(check):
    def norm(**how):
        return lambda A: _normalised(A, **how)

    mistakes = [
        Mistake("signs kept", "Use magnitudes: |A| / |A|.sum(row). A negative edge is as much a part of a node's "
                "input as a positive one.", norm(absolute=False)),
        Mistake("signs kept", "Normalise |A| by the sum of |A|: signed weights cancel in the sum.",
                norm(absolute=False, signed_sum=True)),
        Mistake("signs kept", "Normalise |A| by the sum of |A|: signed weights cancel in the sum (A / A.sum(row) "
                "can even flip a row's signs or blow up where the sum is near 0).",
                norm(absolute=False, signed_sum=True, guard="where")),
        Mistake("columns normalised", "Row t is target t's incoming edges: normalise each *row* (sum over dim=1), "
                "not each column.", norm(axis=0)),
        Mistake("0/0 for nodes with no inputs", "A row of zeros has sum 0: dividing gives NaN. Keep it 0, e.g. "
                "divide by sum.clamp(min=1e-30), or torch.where(sum > 0, ...).", norm(guard=False)),
        Mistake("divided by the row's maximum", "Divide by the row's *sum* of magnitudes, so that each row adds up "
                "to 1.", norm(by="max")),
        Mistake("whole matrix normalised", "Each row gets its own sum: normalise target by target (dim=1, "
                "keepdim=True), not by the sum of the whole matrix.", norm(by="all")),
    ]
    below = torch.ones(7, 7, dtype=torch.bool, device=check.device).tril(-1)
    A = check.randn(7, 7) * below
    A[4] = 0.0
    check.case("7 nodes, two with no inputs, one with a single input", A, mistakes=mistakes)
    check.case("a dense signed matrix", check.randn(5, 5), mistakes=mistakes)
    check.case("no edges at all", check.randn(3, 3) * 0, mistakes=mistakes)


def _influence(A, *, minus_eye=True, minus_A=False, plus=False, transposed=False, terms=None, elementwise=False,
               triangular=False):
    A = A.T if transposed else A
    eye = torch.eye(len(A), dtype=A.dtype, device=A.device)
    if terms is not None or elementwise:
        total, power = torch.zeros_like(A), A
        for _ in range(terms or len(A)):
            total = total + power
            power = power * A if elementwise else power @ A
        return total
    if triangular:
        inverse = torch.linalg.solve_triangular(eye - A, eye, upper=False)
    else:
        inverse = torch.linalg.inv(eye + A if plus else eye - A)
    return inverse - (eye if minus_eye else 0) - (A if minus_A else 0)


def _dag(check, n, permuted=False):
    below = torch.ones(n, n, dtype=torch.bool, device=check.device).tril(-1)
    A = ref.normalised_adjacency(check.randn(n, n) * below)
    if permuted:
        p = torch.randperm(n, generator=torch.Generator().manual_seed(n)).to(check.device)
        A = A[p][:, p]
    return A


@exercise(difficulty=1, minutes=10, hints=[
    "The sum of all powers A + A^2 + A^3 + ... is a geometric series of matrices: (I - A)^-1 = I + A + A^2 + "
    "..., so subtract the identity's term.",
    "torch.eye(n, dtype=A.dtype, device=A.device) is I; torch.linalg.inv (or torch.linalg.solve) inverts.",
    "`torch.linalg.inv(eye - normalised) - eye`",
])
def test_indirect_influence(check):
    def influence(**how):
        return lambda A: _influence(A, **how)

    mistakes = [
        Mistake("I not subtracted", "(I - A)^-1 = I + A + A^2 + ...: subtract I, so that B counts paths of length "
                "1 and more (a node is not its own influence).", influence(minus_eye=False)),
        Mistake("direct edges left out", "B includes A itself (paths of length 1): (I - A)^-1 - I, without also "
                "subtracting A.", influence(minus_A=True)),
        Mistake("I + A inverted", "The geometric series 1 + a + a^2 + ... is 1 / (1 - a): invert I - A, not I + A.",
                influence(plus=True)),
        Mistake("transposed", "Keep A's [target, source] layout: invert I - A itself, not its transpose.",
                influence(transposed=True)),
        Mistake("series cut short", "Paths can be as long as the graph is deep: sum *every* power (until A^n "
                "vanishes, n = the number of nodes), or use the closed form (I - A)^-1 - I.",
                influence(terms=3)),
        Mistake("elementwise powers", "A^2 is the *matrix* product A @ A (paths of two edges), not A * A or "
                "A ** 2 elementwise.", influence(elementwise=True)),
        Mistake("assumed lower-triangular", "A graph's node order need not be topological (error nodes come after "
                "the features they feed), so A need not be triangular: invert I - A in general "
                "(torch.linalg.inv or torch.linalg.solve).", influence(triangular=True)),
    ]
    check.case("7 nodes in topological order", _dag(check, 7), mistakes=mistakes)
    check.case("8 nodes not in topological order", _dag(check, 8, permuted=True), mistakes=mistakes)
    check.case("float64, 6 nodes not in topological order", _dag(check, 6, permuted=True).double(),
               mistakes=mistakes)
    check.case("no edges", check.randn(4, 4) * 0, mistakes=mistakes)
    check.case("a single node", check.randn(1, 1) * 0, mistakes=mistakes)


def _mask(scores, threshold, *, extra=0, ascending=False, normalise=True, sorted_mask=False, unsorted=False):
    order = torch.arange(len(scores), device=scores.device) if unsorted else scores.argsort(descending=not ascending)
    cumulative = scores[order].cumsum(0) / (scores.sum() if normalise else 1)
    n_keep = max(0, min(int((cumulative < threshold).sum()) + 1 + extra, len(scores)))
    keep = torch.zeros(len(scores), dtype=torch.bool, device=scores.device)
    if sorted_mask:
        keep[:n_keep] = True
    else:
        keep[order[:n_keep]] = True
    return keep


@exercise(difficulty=2, minutes=10, hints=[
    "Sort the scores from highest to lowest and add them up as a share of the total; keep scores until that "
    "share reaches `threshold`, the one that crosses it included. Return the mask in the *original* order.",
    "With `order = scores.argsort(descending=True)` and `cum = scores[order].cumsum(0) / scores.sum()`, "
    "(cum < threshold).sum() scores stay below the threshold; keep one more (but never more than n).",
    "`keep = torch.zeros(n, dtype=torch.bool, device=scores.device); keep[order[:n_keep]] = True`",
])
def test_cumulative_mask(check):
    def mask(**how):
        return lambda s, t: _mask(s, t, **how)

    mistakes = [
        Mistake("crossing score left out", "Keep the score that makes the running share reach the threshold: the "
                "scores below it *plus one* (cum < threshold keeps one too few).", mask(extra=-1)),
        Mistake("one too many", "Keep the scores below the threshold plus the one that crosses it, and no more: "
                "check the off-by-one in your slice or count.", mask(extra=1)),
        Mistake("lowest scores kept", "Sort from the *highest* score down (argsort(descending=True)).",
                mask(ascending=True)),
        Mistake("not a share of the total", "`threshold` is a share: divide the running sum by scores.sum() (or "
                "compare it with threshold * scores.sum()).", mask(normalise=False)),
        Mistake("mask in sorted order", "Your mask is True on the first places of the *sorted* order. Put it back "
                "at the scores' own indices: keep[order[:n_keep]] = True.", mask(sorted_mask=True)),
        Mistake("not sorted", "Add the scores up from the highest down (sort first), not in their given order.",
                mask(unsorted=True)),
    ]
    scores = _tensor([0.5, 3.0, 0.2, 1.5, 0.0, 2.2, 0.9, 0.1, 1.1], check)
    check.case("9 scores, threshold 0.8", scores, 0.8, mistakes=mistakes)
    check.case("threshold 0.5", scores, 0.5, mistakes=mistakes)
    check.case("one score covers the threshold alone", _tensor([0.3, 6.0, 0.5, 0.2], check), 0.6, mistakes=mistakes)
    check.case("ties away from the crossing", _tensor([1.0, 4.0, 1.0, 2.0, 2.0, 0.5, 4.0], check), 0.7,
               mistakes=mistakes)
    case = "threshold 1.0 (in float32 these shares add up to 0.99999994)"
    short = (torch.rand(7, generator=torch.Generator().manual_seed(3)) + 0.2).to(check.device)
    try:
        check.case(case, short, 1.0, mistakes=mistakes)
    except LearnerError as error:
        if "IndexError" not in error.detail:
            raise
        raise _renamed(error, "threshold never reached",
                       "In floats the running share may end a hair below 1.0, so no score 'reaches' a threshold "
                       "of 1.0: count the scores below the threshold ((cum < threshold).sum()) instead of looking "
                       "for the first at or above it, and keep at most n.") from None
    check.case("random scores, threshold 0.9", check.randn(12).abs(), 0.9, mistakes=mistakes)


def _replacement(influence, is_embed, is_error, *, share_of="embed", over="sources", reduce="sum"):
    pick = (lambda m: influence[m].sum()) if reduce == "sum" else \
        (lambda m: influence[m].mean()) if reduce == "mean" else (lambda m: m.sum().to(influence.dtype))
    embed, error = pick(is_embed), pick(is_error)
    top = embed if share_of == "embed" else error
    if over == "all":
        return (top / influence.sum()).item()
    if over == "error":
        return (embed / error).item()
    return (top / (embed + error)).item()


def _kinds(check, kinds):
    """Boolean masks of each node kind, for a string of kinds like 'eeffxxl'."""
    return {k: _tensor([c == k for c in kinds], check, torch.bool) for k in "efxl"}


@exercise(difficulty=1, minutes=5, hints=[
    "Add up the influence of the embedding nodes and that of the error nodes: only these two kinds start a "
    "path. The score is the embeddings' part of their total.",
    "influence[is_embed].sum() and influence[is_error].sum(); features and logits are not sources.",
    "`embed / (embed + error)`, as a Python float (.item()).",
])
def test_replacement_score(check):
    def score(**how):
        return lambda *args: _replacement(*args, **how)

    mistakes = [
        Mistake("share of the errors", "The score is the share that starts at the *embeddings* (1 when nothing "
                "goes through error nodes), not at the errors.", score(share_of="error")),
        Mistake("share of every node", "Divide by the influence of the *sources* only (embeddings + errors), not "
                "by every node's: features are in between, not sources.", score(over="all")),
        Mistake("embeddings over errors", "A share: embed / (embed + error), not embed / error.", score(over="error")),
        Mistake("node counts", "Weigh by the nodes' influence, not by how many nodes there are.",
                score(reduce="count")),
        Mistake("means, not sums", "Add up the influence of each kind (sum), not average it: the number of nodes "
                "of each kind would change the score.", score(reduce="mean")),
    ]
    kinds = _kinds(check, "eeeffffxxl")
    influence = check.randn(10).abs() + 0.1
    check.case("3 embeddings, 4 features, 2 error nodes, 1 logit", influence, kinds["e"], kinds["x"],
               mistakes=mistakes)
    check.case("error nodes of no influence", influence * ~kinds["x"], kinds["e"], kinds["x"], mistakes=mistakes)
    kinds = _kinds(check, "eefffl")
    check.case("no error nodes", check.randn(6).abs(), kinds["e"], kinds["x"], mistakes=mistakes)


def _completeness(normalised, influence, logit_weights, is_error, is_target, *, rows=False, weighting="both",
                  error_share=False, all_nodes=False, denominator="targets"):
    non_error = 1 - (normalised[is_error].sum(dim=0) if rows else normalised[:, is_error].sum(dim=1))
    if error_share:
        non_error = 1 - non_error
    weight = {"both": influence + logit_weights, "influence": influence, "logits": logit_weights,
              "none": torch.ones_like(influence)}[weighting]
    nodes = torch.ones_like(is_target) if all_nodes else is_target
    total = weight.sum() if denominator == "all" else weight[nodes].sum()
    return ((non_error[nodes] * weight[nodes]).sum() / total).item()


def _scored_graph(check, kinds, empty_row=None):
    """A random graph over nodes of the given kinds ('e'mbedding, 'f'eature, error 'x', 'l'ogit): features read
    embeddings, earlier features and errors; logits read every non-logit node. Returns the inputs of
    completeness_score."""
    masks = _kinds(check, kinds)
    n = len(kinds)
    index = torch.arange(n, device=check.device)
    earlier = index[None, :] < index[:, None]
    reads = (masks["f"][:, None] & (masks["e"] | masks["x"])[None, :]) \
        | (masks["f"][:, None] & masks["f"][None, :] & earlier) | (masks["l"][:, None] & ~masks["l"][None, :])
    A = check.randn(n, n) * reads
    if empty_row is not None:
        A[empty_row] = 0.0
    normalised = ref.normalised_adjacency(A)
    n_logits = int(masks["l"].sum())
    logit_weights = torch.zeros(n, device=check.device)
    logit_weights[masks["l"]] = torch.tensor([0.5, 0.3, 0.2][:n_logits]).to(check.device)
    influence = logit_weights @ ref.indirect_influence(normalised)
    return normalised, influence, logit_weights, masks["x"], masks["f"] | masks["l"]


@exercise(difficulty=2, minutes=10, hints=[
    "For each target node (a feature or a logit), the share of its input that comes from non-error nodes is "
    "1 minus the sum of its row of `normalised` over the error nodes' columns.",
    "The weights are influence + logit_weights; take a weighted mean over the targets only: "
    "(share * weight)[is_target].sum() / weight[is_target].sum().",
    "`non_error = 1 - normalised[:, is_error].sum(dim=1); weight = (influence + logit_weights)[is_target]`, "
    "then `((non_error[is_target] * weight).sum() / weight.sum()).item()`.",
])
def test_completeness_score(check):
    def score(**how):
        return lambda *args: _completeness(*args, **how)

    mistakes = [
        Mistake("error rows, not columns", "Row t of `normalised` is target t's input: a target's input from "
                "error nodes is in the error nodes' *columns*, normalised[:, is_error].sum(dim=1).",
                score(rows=True)),
        Mistake("unweighted mean", "Weigh each target by its influence on the output (influence + logit_weights), "
                "not equally.", score(weighting="none")),
        Mistake("logit weights left out", "A logit node has no influence on other nodes, only its own logit "
                "weight: weigh by influence + logit_weights.", score(weighting="influence")),
        Mistake("influence left out", "Features count too, by their influence: weigh by influence + "
                "logit_weights.", score(weighting="logits")),
        Mistake("error share", "The score is the *non*-error share of each target's input: 1 minus its error "
                "inputs.", score(error_share=True)),
        Mistake("every node averaged", "Average over the targets (features and logits) only: embeddings and error "
                "nodes have no input to split.", score(all_nodes=True)),
        Mistake("divided by every node's weight", "Divide by the targets' total weight, weight[is_target].sum(), "
                "the same nodes as in the numerator.", score(denominator="all")),
    ]
    check.case("2 embeddings, 4 features, 2 error nodes, 3 logits", *_scored_graph(check, "eeffffxxlll"),
               mistakes=mistakes)
    check.case("a feature with no inputs", *_scored_graph(check, "eefxfffxll", empty_row=3), mistakes=mistakes)
    check.case("no error nodes", *_scored_graph(check, "efffl"), mistakes=mistakes)


# -- 5. reading features -----------------------------------------------------------------------------


def _label(values, truth, min_share, *, all_count=False, denominator="active", strict=False, need_active=True,
           ignore_share=False, mode=False):
    active = torch.ones_like(values, dtype=torch.bool) if all_count else values > 0
    if mode:  # torch.mode over the active truths, -1 included: an unknown mode gives -1
        counts = torch.zeros(truth.shape[0], int(truth.max().clamp(min=0)) + 2, dtype=torch.long,
                             device=truth.device)
        counts.scatter_add_(1, truth + 1, active.long())
        best, label = counts.max(dim=-1)
        n = active.sum(-1)
        agree = (label > 0) & (best >= min_share * n) & (n > 0)
        return torch.where(agree, label - 1, torch.full_like(label, -1))
    known = active & (truth >= 0)
    n_values = int(truth.max().clamp(min=0)) + 1
    counts = torch.zeros(truth.shape[0], n_values, dtype=torch.long, device=truth.device)
    counts.scatter_add_(1, truth.clamp(min=0), known.long())
    best, label = counts.max(dim=-1)
    n = {"active": active.sum(-1), "top": torch.full_like(best, truth.shape[1]), "known": known.sum(-1)}[denominator]
    if ignore_share:
        agree = best > 0
    else:
        agree = (best > min_share * n) if strict else (best >= min_share * n)
    if need_active:
        agree = agree & (n > 0)
    return torch.where(agree, label, torch.full_like(label, -1))


@exercise(difficulty=2, minutes=15, hints=[
    "Per feature: look only at its active top examples (value > 0); count how many of them have each "
    "ground-truth value (ignoring -1); the most common value names the feature if its count is at least "
    "min_share times the number of *active* examples.",
    "counts = torch.zeros(feature, n_values).scatter_add_(1, truth.clamp(min=0), (active & (truth >= 0)).long()) "
    "counts each value per feature; counts.max(dim=-1) gives the best count and its value.",
    "`agree = (n_active > 0) & (best >= min_share * n_active)`; `torch.where(agree, label, -1)` (with "
    "torch.full_like(label, -1)).",
])
def test_majority_label(check):
    def label(**how):
        return lambda *args: _label(*args, **how)

    mistakes = [
        Mistake("inactive examples counted", "Only the *active* top examples (value > 0) count, in the votes and "
                "in the share: a top example at 0 did not fire.", label(all_count=True)),
        Mistake("share of every top example", "The share is of the *active* top examples: divide by their "
                "number, not by the number of top examples.", label(denominator="top")),
        Mistake("unknown examples left out of the share", "An active example whose value is unknown (-1) still "
                "counts in the share's denominator (it does not vote): divide by the number of active examples.",
                label(denominator="known")),
        Mistake("share compared strictly", "'At least min_share': a share equal to min_share names the feature "
                "(>=, not >).", label(strict=True)),
        Mistake("a feature with no active example named", "A feature none of whose top examples is active gets -1: "
                "require n_active > 0 (otherwise 0 >= min_share * 0 holds).", label(need_active=False)),
        Mistake("min_share ignored", "Name the feature only when its most common value reaches min_share of the "
                "active examples; otherwise -1.", label(ignore_share=True)),
        Mistake("the mode, unknowns included", "Unknown examples (-1) do not vote: the most common *known* value "
                "names the feature if it reaches min_share of the active examples, even when more examples are "
                "unknown (torch.mode over all active examples can return -1). Count the values >= 0 only.",
                label(mode=True)),
    ]
    on, off = 1.0, 0.0
    values = _tensor([[on, on, on, on, on], [on, on, on, off, off], [off, off, off, off, off],
                      [on, on, on, on, on], [on, on, on, on, on], [on, on, on, on, off]], check)
    values = values * (check.randn(6, 5).abs() + 0.1)
    truth = _tensor([[2, 2, 2, 1, 2], [3, 3, 1, 0, 0], [1, 1, 1, 1, 1],
                     [-1, -1, 4, 4, 4], [-1, -1, -1, 0, 0], [1, 1, 2, 2, 5]], check)
    check.case("6 hand-made features, min_share 0.6", values, truth, 0.6, mistakes=mistakes)
    values = torch.relu(check.randn(12, 8))
    truth = check.randint(5, 12, 8) - 1
    truth[:4, :6] = 2  # agree where active
    check.case("12 random features, min_share 0.7", values, truth, 0.7, mistakes=mistakes)
    check.case("nothing known", values, torch.full_like(truth, -1), 0.7, mistakes=mistakes)
    values = _tensor([[on] * 9 + [off], [on] * 10, [on] * 10, [on] * 8 + [off] * 2], check)
    values = values * (check.randn(4, 10).abs() + 0.1)
    truth = _tensor([[-1] * 5 + [3] * 4 + [2], [1] * 5 + [0] * 4 + [-1], [-1] * 6 + [1] * 2 + [2] * 2,
                     [0] * 2 + [-1] * 2 + [4] * 4 + [1] * 2], check)
    check.case("min_share 0.35: unknown examples the most common, two values that qualify", values, truth, 0.35,
               mistakes=mistakes)


def _supernodes(adjacency, groups, n_groups, *, reduce="sum", transposed=False, wrap=False, no_within=False,
                magnitude=False):
    A = adjacency.abs() if magnitude else adjacency
    member = torch.zeros(len(groups), n_groups, dtype=A.dtype, device=A.device)
    inside = torch.ones_like(groups, dtype=torch.bool) if wrap else groups >= 0
    member[inside.nonzero()[:, 0], groups[inside]] = 1
    out = member.T @ A @ member
    if reduce in ("mean", "guarded mean"):  # guarded: an empty block gives 0 (sizes clamped, nan_to_num, a skip)
        sizes = member.sum(0)
        pairs = sizes[:, None] * sizes[None, :]
        out = out / (pairs.clamp(min=1) if reduce == "guarded mean" else pairs)
    if no_within:
        out = out * (1 - torch.eye(n_groups, dtype=A.dtype, device=A.device))
    return out.T if transposed else out


@exercise(difficulty=2, minutes=10, hints=[
    "Entry [t, s] adds up adjacency[i, j] over every node i of group t and every node j of group s; nodes in "
    "group -1 are in no group.",
    "A membership matrix M [node, group] (M[i, g] = 1 when node i is in group g; nothing for -1) does it in one "
    "product: M.T @ adjacency @ M.",
    "`member[inside.nonzero()[:, 0], groups[inside]] = 1` with `inside = groups >= 0`, then "
    "`member.T @ adjacency @ member`.",
])
def test_supernode_adjacency(check):
    def super_(**how):
        return lambda *args: _supernodes(*args, **how)

    mistakes = [
        Mistake("mean, not sum", "A supernode's edge is the *sum* of its members' edges (their effects add up), "
                "not their mean.", super_(reduce="mean")),
        Mistake("mean, not sum", "A supernode's edge is the *sum* of its members' edges (their effects add up), "
                "not their mean: don't divide by the groups' sizes.", super_(reduce="guarded mean")),
        Mistake("transposed", "Keep the [target, source] layout: entry [t, s] sums the edges *into* group t *from* "
                "group s (M.T @ A @ M, not M.T @ A.T @ M).", super_(transposed=True)),
        Mistake("ungrouped nodes in the last group", "Group -1 means 'no group': as an index, -1 is the last group. "
                "Leave those nodes out (select groups >= 0 first).", super_(wrap=True)),
        Mistake("edges within a group dropped", "Edges between two nodes of the same group count too: they make "
                "the supernode's self-edge [g, g].", super_(no_within=True)),
        Mistake("magnitudes summed", "Sum the signed edges: an inhibitory edge subtracts.", super_(magnitude=True)),
    ]
    groups = _tensor([0, 2, -1, 1, 0, 2, -1, 1, 0], check)
    check.case("9 nodes in 3 groups (and an empty 4th), 2 ungrouped", check.randn(9, 9), groups, 4,
               mistakes=mistakes)
    check.case("no node grouped", check.randn(5, 5), _tensor([-1] * 5, check), 2, mistakes=mistakes)
    check.case("one group", check.randn(4, 4), _tensor([0, 0, -1, 0], check), 1, mistakes=mistakes)


# -- 6. checking the graph on the real model ---------------------------------------------------------


@exercise(difficulty=1, minutes=5, hints=[
    "Two contributions: the own group's features go away (delta = -their activation) and the donor's come in "
    "(delta = +the donor's activation); every other latent has delta 0.",
    "torch.where(mask, values, 0.0) keeps values where mask is True and 0 elsewhere.",
    "`torch.where(donor, donor_acts, 0.0) - torch.where(own, acts, 0.0)` (a latent in both gets both).",
])
def test_swap_deltas(check):
    def only_in(first, a, d, own, donor):
        """Each latent in one branch of a where-chain: a latent in both groups gets only `first`'s delta."""
        if first == "own":
            return torch.where(own, -a, torch.where(donor, d, 0.0))
        return torch.where(donor, d, torch.where(own, -a, 0.0))

    mistakes = [
        Mistake("only removes", "Also add the donor's features: + donor_acts where `donor`.",
                lambda a, d, o, dn: -torch.where(o, a, 0.0)),
        Mistake("only adds", "Also remove the prompt's own features: - acts where `own`.",
                lambda a, d, o, dn: torch.where(dn, d, 0.0)),
        Mistake("signs flipped", "Removing a feature is a negative delta (-acts), adding one a positive one "
                "(+donor_acts).", lambda a, d, o, dn: torch.where(o, a, 0.0) - torch.where(dn, d, 0.0)),
        Mistake("new activations, not deltas", "Return the *change* of each latent (0 where nothing changes), not "
                "its new activation.",
                lambda a, d, o, dn: torch.where(dn, d, torch.where(o, torch.zeros_like(a), a))),
        Mistake("donor features at the prompt's activations", "The donor's features come in at the *donor's* "
                "activations: + donor_acts where `donor`.",
                lambda a, d, o, dn: torch.where(dn, a, 0.0) - torch.where(o, a, 0.0)),
        Mistake("donor features set, not added", "The delta of a donor feature is its donor activation, whatever "
                "the prompt has there (the edit *adds* the delta): + donor_acts, not donor_acts - acts.",
                lambda a, d, o, dn: torch.where(dn, d - a, torch.where(o, -a, 0.0))),
        Mistake("a latent in both groups", "A latent in both `own` and `donor` gets both changes: -acts + "
                "donor_acts. A where-chain gives it only one: add the two parts instead.",
                lambda a, d, o, dn: only_in("own", a, d, o, dn)),
        Mistake("a latent in both groups", "A latent in both `own` and `donor` gets both changes: -acts + "
                "donor_acts. A where-chain gives it only one: add the two parts instead.",
                lambda a, d, o, dn: only_in("donor", a, d, o, dn)),
    ]
    active = _tensor([[1, 1, 0, 1, 0, 1, 1, 0], [0, 1, 1, 1, 0, 0, 1, 1], [1, 0, 0, 1, 1, 0, 0, 1]], check, torch.bool)
    donor_active = _tensor([[0, 1, 1, 0, 1, 1, 0, 0], [1, 0, 1, 1, 1, 0, 0, 0], [0, 1, 0, 1, 1, 0, 1, 0]], check,
                           torch.bool)
    acts = (check.randn(3, 8).abs() + 0.1) * active
    donor_acts = (check.randn(3, 8).abs() + 0.1) * donor_active
    own = active & _tensor([[1, 1, 0, 0, 0, 1, 0, 0], [0, 0, 1, 1, 0, 0, 0, 1], [1, 0, 0, 1, 0, 0, 0, 0]], check,
                           torch.bool)
    donor = donor_active & _tensor([[0, 1, 1, 0, 0, 1, 0, 0], [1, 0, 1, 0, 1, 0, 0, 0], [0, 0, 0, 1, 1, 0, 1, 0]],
                                   check, torch.bool)
    check.case("3 layers, a latent in both groups, a donor latent active in the prompt too", acts, donor_acts, own,
               donor, mistakes=mistakes)
    no = torch.zeros_like(own)
    check.case("nothing to swap", acts, donor_acts, no, no, mistakes=mistakes)
    check.case("one layer, disjoint groups", acts[:1], donor_acts[:1], own[:1] & ~donor[:1], donor[:1] & ~own[:1],
               mistakes=mistakes)
