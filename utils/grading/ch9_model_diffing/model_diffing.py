"""Graders for 9.1 "Model diffing".

Every check runs on small seeded tensors built here (no model, no crosscoder file, no download) and takes
well under a second. `control_latents` draws at random, so it is graded by properties of its draws; the
audit's answer is compared with the answer key in solutions/ without ever printing that key.

Types follow the docstrings, as in the other chapters' graders: where a Python float or int is documented
(relative_change, precision_at_k, first_hit_rank, the values of count_classes' and scaling_ratios' dicts), a
one-element tensor of the right value is rejected with its own hint (it compares equal to the number, so
the type is checked separately); where a tensor is documented (scaling_beta's 0-d tensor), a Python number
is rejected the same way.
"""

from __future__ import annotations

import string

import torch

from utils.grading import Mistake, exercise


def _tensor(values, check, dtype=None):
    """A small hand-written tensor on the checker's device."""
    return torch.tensor(values, dtype=dtype).to(check.device)


def _is(value, kind) -> bool:
    return isinstance(value, kind) and not isinstance(value, bool)


def _expect_number(check, case, got, kind=float, what="the result"):
    """The docstring promises a Python float (or int); a one-element tensor compares equal to it, so check the
    type. `got` is a number, or a dict whose values must all be numbers of that kind."""
    name = "float" if kind is float else "int"
    values = got.values() if isinstance(got, dict) else [got]
    bad = next((v for v in values if not _is(v, kind)), None)
    if bad is None:
        check.expect(True, case=case, message="")
        return
    tensor = isinstance(bad, torch.Tensor)
    how = ".item() or float(...)" if kind is float else "int(...) or .item()"
    check.expect(False, case=case, mistake=f"tensor, not {name}" if tensor else f"not a Python {name}",
                 message=f"expected {what} to be a Python {name}, got "
                         + (f"a tensor of shape {tuple(bad.shape)}" if tensor else f"a {type(bad).__name__}"),
                 hint=f"Return a Python {name} ({how}), as the docstring says: the notebook formats, rounds and "
                      "compares these numbers, and a tensor would also keep its device and any graph.")


# -- 1. the baselines -------------------------------------------------------------------------------


@exercise(difficulty=1, minutes=5, hints=[
    "Subtract the two matrices, take the Frobenius norm of the difference (every entry at once), and divide by "
    "the Frobenius norm of the *base* matrix.",
    "`tensor.norm()` with no `dim` is the Frobenius norm of the whole tensor; return a Python number (.item()).",
    "`((W_ft - W_base).norm() / W_base.norm()).item()`",
])
def test_relative_change(check):
    mistakes = [
        Mistake("divided by the fine-tune's norm", "Measure the change against where the weights started: "
                "divide by ||W_base||, not ||W_ft||.", lambda b, f: ((f - b).norm() / f.norm()).item()),
        Mistake("not normalised", "Divide the norm of the change by ||W_base||_F: a raw norm grows with the "
                "matrix's size and scale, so matrices could not be compared.", lambda b, f: (f - b).norm().item()),
        Mistake("difference of norms", "Take the norm of the *difference* ||W_ft - W_base||, not the difference "
                "of the norms ||W_ft|| - ||W_base||: a rotation changes the weights but not their norm.",
                lambda b, f: ((f.norm() - b.norm()) / b.norm()).item()),
        Mistake("squared norms", "Use the norms themselves, not their squares (.norm(), not .pow(2).sum()).",
                lambda b, f: ((f - b).pow(2).sum() / b.pow(2).sum()).item()),
        Mistake("mean over rows", "One number for the whole matrix: the Frobenius norm over every entry, not a mean "
                "of per-row ratios.", lambda b, f: ((f - b).norm(dim=-1) / b.norm(dim=-1)).mean().item()),
    ]
    W = check.randn(6, 5)
    got = check.case("a 6 x 5 matrix nudged by noise", W, W + check.randn(6, 5, scale=0.3), mistakes=mistakes)
    _expect_number(check, "a 6 x 5 matrix nudged by noise", got)
    W = check.randn(3, 8, scale=2.0)
    check.case("a 3 x 8 matrix scaled and nudged", W, 1.5 * W + check.randn(3, 8, scale=0.5), mistakes=mistakes)
    W = check.randn(4, 4)
    rotated = W @ torch.linalg.qr(check.randn(4, 4))[0]  # same Frobenius norm, different entries
    check.case("a 4 x 4 matrix rotated (its norm does not change)", W, rotated, mistakes=mistakes)


def _row_ratio(E_base, E_ft, E_control, *, power=1, dim=-1, to="control"):
    moved = (E_ft - E_base).norm(dim=dim).pow(power)
    if to == "base":
        return moved / E_base.norm(dim=dim).pow(power)
    if to == "difference":
        return moved - (E_control - E_base).norm(dim=dim)
    return moved / (E_control - E_base).norm(dim=dim).pow(power)


@exercise(difficulty=1, minutes=5, hints=[
    "For every token (a row of the embedding), how far it moved is the norm of its row of E_ft - E_base; do "
    "the same for the control, then divide the first by the second.",
    "`.norm(dim=-1)` gives one length per row ([vocab]); the control's movement is the denominator.",
    "`(E_ft - E_base).norm(dim=-1) / (E_control - E_base).norm(dim=-1)` (clamp the denominator away from 0 if "
    "you like).",
])
def test_row_change_ratio(check):
    mistakes = [
        Mistake("ratio inverted", "Put the fine-tune's movement on top: above 1 must mean 'moved further than "
                "training alone moves it', i.e. ||E_ft - E_base|| / ||E_control - E_base||.",
                lambda b, f, c: _row_ratio(b, c, f)),
        Mistake("norm over the vocabulary", "Each token is a *row* [d]: take the norm over the last axis "
                "(dim=-1), one number per token, not over the tokens (dim=0).",
                lambda b, f, c: _row_ratio(b, f, c, dim=0)),
        Mistake("squared distances", "Divide the distances themselves, not their squares.",
                lambda b, f, c: _row_ratio(b, f, c, power=2)),
        Mistake("relative to the base embedding", "The denominator is how far the *control* fine-tune moved the "
                "token, ||E_control - E_base||, not the length of the base embedding.",
                lambda b, f, c: _row_ratio(b, f, c, to="base")),
        Mistake("difference, not ratio", "Divide the two movements rather than subtracting them.",
                lambda b, f, c: _row_ratio(b, f, c, to="difference")),
    ]
    for name, vocab, d in [("10 tokens, d = 6, three moved far", 10, 6), ("5 tokens, d = 9", 5, 9)]:
        E_base = check.randn(vocab, d, scale=2.0)
        E_control = E_base + check.randn(vocab, d, scale=0.2)
        E_ft = E_base + check.randn(vocab, d, scale=0.2)
        E_ft[:3] += check.randn(3, d)
        check.case(name, E_base, E_ft, E_control, mistakes=mistakes)


@exercise(difficulty=1, minutes=5, hints=[
    "Subtract the base's residual stream from the fine-tune's, then average the difference over texts and "
    "positions, leaving one vector [d].",
    "Position 0 holds BOS in every text: drop it with [:, 1:] before averaging.",
    "`(resid_ft - resid_base)[:, 1:].mean(dim=(0, 1))`",
])
def test_mean_activation_difference(check):
    mistakes = [
        Mistake("BOS included", "Leave out position 0 (BOS): both models see the same token there and nothing of "
                "the text, and its huge norm swamps the mean. Slice [:, 1:] first.",
                lambda b, f: (f - b).mean(dim=(0, 1))),
        Mistake("base minus fine-tune", "The difference is fine-tune minus base (resid_ft - resid_base): the "
                "direction fine-tuning added.", lambda b, f: (b - f)[:, 1:].mean(dim=(0, 1))),
        Mistake("last position dropped", "BOS is at position 0: slice [:, 1:], not [:, :-1].",
                lambda b, f: (f - b)[:, :-1].mean(dim=(0, 1))),
        Mistake("averaged over texts only", "Average over the positions too: one vector [d] for the whole batch.",
                lambda b, f: (f - b)[:, 1:].mean(dim=0)),
        Mistake("averaged over d", "Average over texts and positions (dims 0 and 1), not over the model "
                "dimension: the result is a direction [d].", lambda b, f: (f - b)[:, 1:].mean(dim=(0, 2))),
    ]
    for name, batch, pos, d in [("4 texts of 6 positions, d = 5", 4, 6, 5), ("2 texts of 3 positions, d = 7", 2, 3, 7)]:
        resid_base = check.randn(batch, pos, d)
        resid_ft = resid_base + check.randn(d, scale=0.5) + check.randn(batch, pos, d, scale=0.2)
        resid_base[:, 0] = check.randn(d, scale=20.0)  # BOS: a huge, different activation
        resid_ft[:, 0] = resid_base[:, 0] + check.randn(d, scale=5.0)
        check.case(name, resid_base, resid_ft, mistakes=mistakes)


def _lens(direction, ln_w, W_U, *, centre=True, gain=True, centre_logits=True, after_gain=False, scale=False):
    x = direction - direction.mean() if centre and not after_gain else direction
    if scale:
        x = x / x.pow(2).mean().sqrt()
    if gain:
        x = x * ln_w
    if after_gain:
        x = x - x.mean()
    logits = x @ W_U
    return logits - logits.mean() if centre_logits else logits


@exercise(difficulty=1, minutes=5, hints=[
    "Three steps: subtract the direction's mean over d (the final LayerNorm's centring), multiply by its gain "
    "ln_w, unembed with W_U; then subtract the mean logit.",
    "Don't divide by a standard deviation: a direction has no scale of its own to normalise. Only the centring "
    "and the gain of the LayerNorm apply.",
    "`logits = ((direction - direction.mean()) * ln_w) @ W_U`, then `logits - logits.mean()`.",
])
def test_lens_logits(check):
    def lens(**how):
        return lambda *args: _lens(*args, **how)

    mistakes = [
        Mistake("direction not centred", "Centre the direction first (subtract its mean over d), as the final "
                "LayerNorm centres the residual stream.", lens(centre=False)),
        Mistake("logits not centred", "Subtract the mean of the logits at the end: only differences between "
                "logits mean anything.", lens(centre_logits=False)),
        Mistake("no LayerNorm gain", "Multiply the centred direction by ln_w before unembedding.", lens(gain=False)),
        Mistake("centred after the gain", "Centre the direction *before* multiplying by ln_w (the LayerNorm "
                "centres, then scales by its gain).", lens(after_gain=True)),
        Mistake("divided by its standard deviation", "Only centre the direction: dividing by its standard "
                "deviation rescales every logit (a direction has no scale of its own to normalise).",
                lens(scale=True)),
    ]
    for name, d, vocab, size in [("d = 6, 10 tokens", 6, 10, 1.0), ("d = 9, 7 tokens, a long direction", 9, 7, 4.0)]:
        direction = check.randn(d, scale=size) + size  # off-centre
        ln_w = 1 + check.randn(d, scale=0.4)
        W_U = check.randn(d, vocab) + check.randn(d, 1)  # rows with their own offsets
        check.case(name, direction, ln_w, W_U, mistakes=mistakes)


@exercise(difficulty=1, minutes=5, hints=[
    "Write a function inside `make_steering_hook` that takes (activation, hook=None) and returns a new tensor; "
    "return that inner function.",
    "The vector [d] broadcasts over [batch, pos, d]. Do not write into `activation` (no +=): build the result "
    "with an ordinary +.",
    "`def hook(activation, hook=None): return activation + alpha * vector`, then `return hook`.",
])
def test_make_steering_hook(check):
    def added(v, a, act, *, scale=True, sign=1.0, normalise=False, last=False):
        step = (a if scale else 1.0) * (v / v.norm() if normalise else v) * sign
        if last:
            return torch.cat([act[:, :-1], act[:, -1:] + step], dim=1)
        return act + step

    mistakes = [
        Mistake("alpha ignored", "Scale the vector by alpha before adding it.",
                lambda v, a, act: added(v, a, act, scale=False)),
        Mistake("subtracted", "Add alpha * vector; a negative alpha is how a caller steers away.",
                lambda v, a, act: added(v, a, act, sign=-1.0)),
        Mistake("vector normalised", "Add alpha * vector as given: the caller chose its length.",
                lambda v, a, act: added(v, a, act, normalise=True)),
        Mistake("last position only", "Steer at every position, not only the last.",
                lambda v, a, act: added(v, a, act, last=True)),
        Mistake("replaced the activation", "Add to the activation: returning alpha * vector alone throws away "
                "everything else the model computed.", lambda v, a, act: (a * v).expand_as(act)),
        Mistake("hook returned None", "The hook must *return* the new activation (a hook that returns None leaves "
                "the model's activation unchanged).", lambda v, a, act: None),
    ]
    for name, d, alpha, shape in [("alpha = 3, activation [2, 4, 6]", 6, 3.0, (2, 4, 6)),
                                  ("alpha = -0.5, activation [1, 3, 5]", 5, -0.5, (1, 3, 5))]:
        vector = check.randn(d, scale=2.0)
        hook = check.run(vector, alpha, case=name)
        check.expect(callable(hook), case=name, mistake="not a function",
                     message=f"make_steering_hook returned {type(hook).__name__}, not a function",
                     hint="Return the inner hook function itself (`return hook`), not the result of calling it.")
        activation = check.randn(*shape)
        got = check.call(hook, activation.clone(), case=name + ", the hook called", hook=None)
        expected = activation + alpha * vector
        check.compare(got, expected, case=name + ", the hook called", mistakes=mistakes,
                      inputs=((vector, alpha, activation), {}))


# -- 2. a crosscoder ------------------------------------------------------------------------------------


def _pre(x, W_enc, b_enc, *, relu=True, models=(0, 1), bias=1.0, mean=False, shared_encoder=None):
    total = 0
    for m in models:
        W = W_enc[m if shared_encoder is None else shared_encoder]
        total = total + x[:, m] @ W
    if mean:
        total = total / len(models)
    out = total + bias * b_enc
    return torch.relu(out) if relu else out


@exercise(difficulty=1, minutes=10, hints=[
    "Each model's activation x[:, m] goes through that model's encoder W_enc[m]; add the two results, add b_enc, "
    "and apply a ReLU.",
    "One einsum does the reading and the sum over models: 'batch model d, model d lat -> batch lat'.",
    "`torch.relu(einops.einsum(x, W_enc, 'batch model d, model d lat -> batch lat') + b_enc)`",
])
def test_crosscoder_pre(check):
    def pre(**how):
        return lambda *args: _pre(*args, **how)

    mistakes = [
        Mistake("no ReLU", "Put the sum through a ReLU: the code is never negative.", pre(relu=False)),
        Mistake("only one model read", "Sum over *both* models: each model's activation read by its own encoder, "
                "x[:, 0] @ W_enc[0] + x[:, 1] @ W_enc[1].", pre(models=(1,))),
        Mistake("only one model read", "Sum over *both* models: each model's activation read by its own encoder, "
                "x[:, 0] @ W_enc[0] + x[:, 1] @ W_enc[1].", pre(models=(0,))),
        Mistake("mean over models", "Sum the two encoders' outputs; don't average them.", pre(mean=True)),
        Mistake("bias added per model", "Add b_enc once, after summing over the models.", pre(bias=2.0)),
        Mistake("no encoder bias", "Add b_enc before the ReLU.", pre(bias=0.0)),
        Mistake("one encoder for both models", "Each model has its own encoder: read x[:, m] with W_enc[m].",
                pre(shared_encoder=0)),
        Mistake("one encoder for both models", "Each model has its own encoder: read x[:, m] with W_enc[m].",
                pre(shared_encoder=1)),
    ]
    for name, batch, d, lat in [("6 inputs, d = 5, 8 latents", 6, 5, 8), ("3 inputs, d = 4, 12 latents", 3, 4, 12)]:
        x = check.randn(batch, 2, d)
        W_enc = check.randn(2, d, lat, scale=0.6)
        b_enc = check.randn(lat, scale=0.5) - 0.2
        check.case(name, x, W_enc, b_enc, mistakes=mistakes)


def _topk_rows(pre, k):
    values, indices = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, indices, values)


def _topk_flat(pre, n):
    flat = pre.flatten()
    values, indices = flat.topk(n)
    return torch.zeros_like(flat).scatter(0, indices, values).reshape(pre.shape)


@exercise(difficulty=2, minutes=10, hints=[
    "Forget the rows for a moment: flatten the batch into one long vector, keep its k * batch largest values, and "
    "put the result back in shape.",
    "`flat.topk(k * batch)` gives values and flat indices; `torch.zeros_like(flat).scatter(0, indices, values)` "
    "writes them back. One input may end up with more than k latents, another with fewer.",
    "`values, indices = pre.flatten().topk(k * pre.shape[0])`; "
    "`torch.zeros_like(pre).flatten().scatter(0, indices, values).reshape(pre.shape)`",
])
def test_batch_top_k(check):
    def above_kth(pre, k):
        kth = pre.flatten().topk(k * pre.shape[0]).values[-1]
        return pre * (pre > kth)

    mistakes = [
        Mistake("top k per input", "BatchTopK chooses over the whole batch: keep the k * batch largest values "
                "wherever they are (flatten first), not the k largest of each row.", _topk_rows),
        Mistake("k over the whole batch", "Keep k * batch values in all (k per input *on average*), not k.",
                lambda pre, k: _topk_flat(pre, k)),
        Mistake("top k per latent", "Flatten the batch and latent axes together: the top k * batch of the whole "
                "[batch, lat] tensor, not a top k down each latent's column.",
                lambda pre, k: torch.zeros_like(pre).scatter(0, pre.topk(k, dim=0).indices, pre.topk(k, dim=0).values)),
        Mistake("smallest kept value dropped", "A mask `pre > kth` keeps one value too few: the (k * batch)-th "
                "largest is kept too (use >=, or topk's indices).", above_kth),
        Mistake("mask, not values", "Keep the values themselves at the kept places (and 0 elsewhere), not 1s.",
                lambda pre, k: (_topk_flat(pre, k * pre.shape[0]) > 0).to(pre.dtype)),
    ]
    pre = torch.relu(check.randn(6, 10))
    pre[2] = pre[2].abs() + 2.0  # one input holds most of the batch's largest values
    check.case("6 inputs, k = 2 (input 2 is far stronger)", pre, 2, mistakes=mistakes)
    pre = torch.relu(check.randn(4, 7) - 0.8)  # few positives: the kept set runs into zeros
    check.case("4 inputs, k = 5, fewer positive values than 20", pre, 5, mistakes=mistakes)
    check.case("3 inputs, k = 1", torch.relu(check.randn(3, 9)) + 0.01, 1, mistakes=mistakes)


def _decode(acts, W_dec, b_dec, *, decoder=None, bias=True, bias_of=None, swapped=False):
    W = W_dec.flip(0) if swapped else W_dec
    outs = [acts @ W[m if decoder is None else decoder].T for m in range(W_dec.shape[0])]
    out = torch.stack(outs, dim=1)
    if bias:
        out = out + (b_dec if bias_of is None else b_dec[bias_of])
    return out


@exercise(difficulty=1, minutes=5, hints=[
    "The same code `acts` is decoded twice: once with the base's decoder W_dec[0] (plus b_dec[0]), once with the "
    "fine-tune's W_dec[1] (plus b_dec[1]); stack the two along a model axis.",
    "An einsum keeps the model axis for you: 'batch lat, model d lat -> batch model d'; b_dec [model, d] then "
    "broadcasts.",
    "`einops.einsum(acts, W_dec, 'batch lat, model d lat -> batch model d') + b_dec`",
])
def test_crosscoder_decode(check):
    def decode(**how):
        return lambda *args: _decode(*args, **how)

    mistakes = [
        Mistake("no decoder bias", "Add each model's decoder bias b_dec[m] to its reconstruction.", decode(bias=False)),
        Mistake("one decoder for both models", "Each model has its own decoder: the base's reconstruction uses "
                "W_dec[0], the fine-tune's W_dec[1].", decode(decoder=0)),
        Mistake("one decoder for both models", "Each model has its own decoder: the base's reconstruction uses "
                "W_dec[0], the fine-tune's W_dec[1].", decode(decoder=1)),
        Mistake("one bias for both models", "Each model has its own bias: add b_dec[m] to model m.",
                decode(bias_of=0)),
        Mistake("models swapped", "Model 0 is the base: its reconstruction is acts through W_dec[0], not W_dec[1].",
                decode(swapped=True)),
    ]
    for name, batch, d, lat in [("5 inputs, d = 4, 9 latents", 5, 4, 9), ("2 inputs, d = 6, 3 latents", 2, 6, 3)]:
        acts = torch.relu(check.randn(batch, lat))
        check.case(name, acts, check.randn(2, d, lat), check.randn(2, d), mistakes=mistakes)


def _cc_nmse(x_hat, x, *, normalise=True, centre=True, other=False, pooled=False, of="x", mean_error=False,
             per_dim=False, mean_over=(0,)):
    truth = x_hat if of == "x_hat" else x
    centred = truth - truth.mean(dim=mean_over, keepdim=True) if centre else truth
    err, var = (x_hat - x).pow(2), centred.pow(2)
    if pooled:
        return err.sum() / var.sum()
    if per_dim:
        return (err.sum(0) / var.sum(0)).mean(-1)
    err = err.mean(dim=(0, 2)) if mean_error else err.sum(dim=(0, 2))
    if not normalise:
        return err
    var = var.sum(dim=(0, 2))
    return err / (var.flip(0) if other else var)


@exercise(difficulty=1, minutes=10, hints=[
    "For each model separately: the squared error of the reconstruction, summed over inputs and d, divided by "
    "the summed squared distance of that model's activations from their mean (over inputs).",
    "Keep the model axis: reduce over dims (0, 2). The mean activation is x.mean(dim=0), [model, d].",
    "`(x_hat - x).pow(2).sum(dim=(0, 2)) / (x - x.mean(dim=0)).pow(2).sum(dim=(0, 2))`",
])
def test_crosscoder_nmse(check):
    def nmse(**how):
        return lambda a, b: _cc_nmse(a, b, **how)

    mistakes = [
        Mistake("not normalised", "Divide each model's squared error by the spread of its own activations around "
                "their mean, so that 1 means 'no better than the mean'.", nmse(normalise=False)),
        Mistake("not centred", "The denominator measures the activations' distance from their *mean* (over "
                "inputs): subtract x.mean(dim=0) before squaring.", nmse(centre=False)),
        Mistake("divided by the other model's spread", "Model m's error is divided by model m's spread: keep the "
                "model axis in the same order in numerator and denominator.", nmse(other=True)),
        Mistake("pooled over models", "One number per model: reduce over inputs and d (dims 0 and 2) but keep "
                "the model axis.", nmse(pooled=True)),
        Mistake("spread of the reconstruction", "Normalise by the spread of the true activations x, not of x_hat.",
                nmse(of="x_hat")),
        *(Mistake("centred on a mean over the wrong axes", "Centre with the mean over the *inputs* only, "
                  "x.mean(dim=0), which is [model, d]: one mean activation per model and per dimension. A mean "
                  "that also runs over d (or over everything) leaves each dimension's own offset in the spread, "
                  "and one over the models mixes the base with the fine-tune.", nmse(mean_over=dims))
          for dims in [(0, 2), (0, 1, 2), (1,), (0, 1), (2,)]),
        Mistake("mean over sum", "Both the error and the spread are sums over inputs and d (or both means): "
                "mixing a mean with a sum scales the result.", nmse(mean_error=True)),
        Mistake("ratio per dimension", "Sum over d in both the error and the spread before dividing; averaging "
                "per-dimension ratios lets quiet dimensions dominate.", nmse(per_dim=True)),
    ]
    scales = _tensor([[1.0], [4.0]], check)  # the fine-tune's activations are four times larger
    x = check.randn(16, 2, 5) * scales + check.randn(2, 5, scale=3.0)
    noise = _tensor([[0.6], [0.3]], check)
    check.case("16 inputs, models of different scale and quality", x + check.randn(16, 2, 5) * noise * scales, x,
               mistakes=mistakes)
    x = check.randn(10, 2, 3) * 2.0 + 1.0
    perfect_and_mean = torch.stack([x[:, 0], x[:, 1].mean(0).expand(10, 3)], dim=1)
    check.case("a perfect base (0), a fine-tune reconstructed by its mean (1)", perfect_and_mean, x,
               mistakes=mistakes)


@exercise(difficulty=1, minutes=5, hints=[
    "A latent's decoder column in model m is W_dec[m, :, j], a vector of length d: take its norm in each "
    "model, then ||d_ft|| / (||d_base|| + ||d_ft||).",
    "`W_dec.norm(dim=1)` is [model, lat]: row 0 the base's norms, row 1 the fine-tune's.",
    "`norms = W_dec.norm(dim=1)`; `norms[1] / (norms[0] + norms[1])`",
])
def test_relative_norm(check):
    def rel(W, *, dim=1, power=1, of="ft", ratio=False):
        norms = W.norm(dim=dim).pow(power)
        top = norms[1] if of == "ft" else norms[0]
        return top / norms[0] if ratio else top / (norms[0] + norms[1])

    mistakes = [
        Mistake("base and fine-tune swapped", "Put the *fine-tune's* norm on top: 1 means the latent writes only "
                "into the fine-tune (model 1), 0 only into the base.", lambda W: rel(W, of="base")),
        Mistake("norm over the latent axis", "Take each latent's norm over d (dim=1 of [model, d, lat]): one "
                "number per latent, not per dimension.", lambda W: rel(W, dim=2)),
        Mistake("ratio of norms", "Divide by the *sum* of the two norms, so the result lies between 0 and 1: "
                "||d_ft|| / (||d_base|| + ||d_ft||).", lambda W: rel(W, ratio=True)),
        Mistake("squared norms", "Use the norms themselves, not their squares.", lambda W: rel(W, power=2)),
        Mistake("norm of the summed decoders", "The denominator is the sum of the two norms, ||d_base|| + ||d_ft||, "
                "not the norm of the summed vectors.", lambda W: W[1].norm(dim=0) / (W[0] + W[1]).norm(dim=0)),
    ]
    W_dec = check.randn(2, 5, 9)
    W_dec[0, :, 2] = 0.0  # a fine-tune-only latent
    W_dec[1, :, 7] = 0.0  # a base-only latent
    W_dec[1, :, 4] = 3.0 * W_dec[0, :, 4]
    check.case("9 latents, d = 5, one of each kind", W_dec, mistakes=mistakes)
    check.case("4 latents, d = 7", check.randn(2, 7, 4) * _tensor([[[0.5]], [[2.0]]], check), mistakes=mistakes)


def _classes(rel, base_only=0.1, shared=(0.4, 0.6), finetune_only=0.9, *, strict_shared=False, strict_ends=True,
             shares=False):
    base = rel < base_only if strict_ends else rel <= base_only
    tuned = rel > finetune_only if strict_ends else rel >= finetune_only
    middle = ((rel > shared[0]) & (rel < shared[1])) if strict_shared else ((rel >= shared[0]) & (rel <= shared[1]))
    other = ~(base | middle | tuned)
    counts = {"base_only": int(base.sum()), "shared": int(middle.sum()), "finetune_only": int(tuned.sum()),
              "other": int(other.sum())}
    return {k: v / len(rel) for k, v in counts.items()} if shares else counts


@exercise(difficulty=1, minutes=5, hints=[
    "Four boolean masks over the latents: below base_only, inside [shared[0], shared[1]] (both ends included), "
    "above finetune_only, and 'other' for whatever none of the three holds.",
    "Note which comparisons are strict: base_only and finetune_only use < and >, the shared band uses <= at both "
    "ends. int(mask.sum()) counts a mask.",
    "`base = rel < base_only`; `middle = (rel >= shared[0]) & (rel <= shared[1])`; `tuned = rel > finetune_only`; "
    "other = `~(base | middle | tuned)`; return the four int(...sum()) in a dict.",
])
def test_count_classes(check):
    def classes(**how):
        return lambda rel, *thresholds: _classes(rel, *thresholds, **how)

    mistakes = [
        Mistake("shared band without its ends", "The shared band includes both of its ends: "
                "shared[0] <= rel <= shared[1].", classes(strict_shared=True)),
        Mistake("base_only and finetune_only include their thresholds", "base_only is rel < base_only and "
                "finetune_only is rel > finetune_only: a latent exactly on the threshold is 'other'.",
                classes(strict_ends=False)),
        Mistake("shares, not counts", "Return how many latents fall in each class (ints), not their share.",
                classes(shares=True)),
    ]
    # thresholds that floats hold exactly, and latents exactly on each of them
    on_thresholds = _tensor([0.0, 0.0625, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 0.9375, 1.0, 0.5], check)
    got = check.case("latents exactly on the thresholds 0.125, (0.375, 0.625), 0.875", on_thresholds, 0.125,
                     (0.375, 0.625), 0.875, mistakes=mistakes)
    _expect_number(check, "latents exactly on the thresholds 0.125, (0.375, 0.625), 0.875", got, int,
                   "every count")
    check.case("the default thresholds, 40 latents", torch.rand(40, generator=check.rng).to(check.device),
               mistakes=mistakes)
    check.case("a wide shared band (0.25, 0.75), thresholds on values", on_thresholds, 0.25, (0.25, 0.75), 0.75,
               mistakes=mistakes)


@exercise(difficulty=1, minutes=10, hints=[
    "A latent is a hit if its relative norm is larger than the *largest* relative norm of the control's "
    "crosscoder; return the indices of the hits, sorted by their relative norm, highest first.",
    "`(rel > control_rel.max()).nonzero()` gives the hits' indices (flatten it); sort them by rel[hits], "
    "descending.",
    "`hits = (rel > control_rel.max()).nonzero().flatten()`; `hits[rel[hits].argsort(descending=True)]`",
])
def test_above_control(check):
    def hits_where(rel, keep, *, order="descending"):
        hits = keep.nonzero().flatten()
        if order == "index":
            return hits
        return hits[rel[hits].argsort(descending=order == "descending")]

    mistakes = [
        Mistake("not sorted", "Return the hits most fine-tune-leaning first: sort them by rel, descending (not by "
                "index).", lambda r, c: hits_where(r, r > c.max(), order="index")),
        Mistake("lowest first", "Sort descending: the most fine-tune-leaning latent comes first.",
                lambda r, c: hits_where(r, r > c.max(), order="ascending")),
        Mistake("above the control's mean", "A hit must beat *every* latent of the control: compare with "
                "control_rel.max(), not its mean.", lambda r, c: hits_where(r, r > c.mean())),
        Mistake("above a quantile of the control", "A hit must beat every latent of the control, the largest "
                "included: compare with control_rel.max(), not a quantile.",
                lambda r, c: hits_where(r, r > c.quantile(0.95))),
        Mistake("above a quantile of the control", "A hit must beat every latent of the control, the largest "
                "included: compare with control_rel.max(), not a quantile.",
                lambda r, c: hits_where(r, r > c.quantile(0.99))),
        Mistake("ties with the control's maximum kept", "'Above every latent of the control' is strict: a latent "
                "equal to the control's maximum is not a hit (>, not >=).", lambda r, c: hits_where(r, r >= c.max())),
        Mistake("relative norms, not indices", "Return the latents' *indices*, not their relative norms.",
                lambda r, c: r[r > c.max()].sort(descending=True).values),
    ]
    control = 0.3 + 0.35 * torch.rand(50, generator=check.rng).to(check.device)
    control[7] = 0.7
    rel = 0.1 + 0.5 * torch.rand(30, generator=check.rng).to(check.device)
    rel[_tensor([4, 11, 17, 25, 28], check)] = _tensor([0.71, 0.93, 0.69, 0.8, 0.7], check)  # 28 ties the max
    check.case("30 latents against a control of 50 (one ties its maximum)", rel, control, mistakes=mistakes)
    rel = 0.3 + 0.4 * torch.rand(50, generator=check.rng).to(check.device)
    rel[_tensor([3, 40, 9], check)] = _tensor([0.95, 0.85, 0.9], check)
    check.case("latent by latent against a control of the same size", rel, control, mistakes=[
        *mistakes, Mistake("compared latent by latent", "A hit beats *every* latent of the control: compare with "
                           "control_rel.max(), not with the control's latent of the same index.",
                           lambda r, c: hits_where(r, r > c))])
    check.case("no latent above the control", 0.6 * torch.rand(20, generator=check.rng).to(check.device), control,
               mistakes=mistakes)


def _beta(f, direction, target, *, square_d=True, f_power=2, per_row=False, f_on_top=True):
    if per_row:
        return ((target @ direction) / (direction.pow(2).sum() * f)).mean()
    top = ((f if f_on_top else 1.0) * (target @ direction)).sum()
    d_norm = direction.pow(2).sum() if square_d is True else (direction.norm() if square_d == "norm" else 1.0)
    return top / (d_norm * f.pow(f_power).sum())


@exercise(difficulty=2, minutes=10, hints=[
    "Setting the derivative of sum_i ||beta f_i d - t_i||^2 to zero gives beta = sum_i f_i <d, t_i> / "
    "(||d||^2 sum_i f_i^2).",
    "`target @ direction` is [n] (one <d, t_i> per row); weight it by f and sum for the numerator. Return a 0-d "
    "tensor.",
    "`(f * (target @ direction)).sum() / (direction.pow(2).sum() * f.pow(2).sum())`",
])
def test_scaling_beta(check):
    mistakes = [
        Mistake("||d||^2 left out", "The denominator has ||direction||^2 as well as sum f_i^2: the direction need "
                "not be a unit vector.", lambda f, d, t: _beta(f, d, t, square_d=False)),
        Mistake("||d|| not squared", "Divide by the *squared* norm of the direction, direction.pow(2).sum().",
                lambda f, d, t: _beta(f, d, t, square_d="norm")),
        Mistake("sum of f, not of f^2", "The denominator sums the *squares* of the activations, sum_i f_i^2.",
                lambda f, d, t: _beta(f, d, t, f_power=1)),
        Mistake("numerator not weighted by f", "Each row's <d, t_i> is weighted by its activation f_i in the "
                "numerator.", lambda f, d, t: _beta(f, d, t, f_on_top=False)),
        Mistake("mean of per-row betas", "Fit one beta to all rows at once (least squares over the whole sum), not "
                "a mean of each row's own beta: rows where the latent fires weakly would count as much as strong "
                "ones.", lambda f, d, t: _beta(f, d, t, per_row=True)),
        Mistake("sign dropped", "beta can be negative: when the targets point against the direction, the best fit "
                "is a negative multiple of it. Keep the sign of sum_i f_i <d, t_i>: no abs() (or norm) of the "
                "numerator or of the result.", lambda f, d, t: _beta(f, d, t).abs()),
    ]
    for name, n, d, size, along in [("8 rows, d = 5, a direction of length about 3", 8, 5, 1.3, 0.7),
                                    ("20 rows, d = 3, a short direction", 20, 3, 0.3, 0.7),
                                    ("10 rows, d = 4, targets pointing against the direction (beta < 0)", 10, 4,
                                     1.0, -0.6)]:
        f = check.randn(n).abs() + 0.2
        direction = check.randn(d, scale=size)
        target = along * f[:, None] * direction + check.randn(n, d, scale=0.5)
        check.case(name, f, direction, target, mistakes=mistakes)


def _ratios(x, x_hat, f, W, *, swap=False, invert=False, along=1, own=False, no_add_back=False, recon_of_x=False,
            unsigned=False):
    def beta(target, direction):
        b = (f * (target @ direction)).sum() / (direction.pow(2).sum() * f.pow(2).sum())
        return b.abs() if unsigned else b

    added = f[:, None, None] * W
    error = x - x_hat if no_add_back else x - (x_hat - added)
    recon = x if recon_of_x else x_hat
    out = {}
    for name, t in {"error": error, "reconstruction": recon}.items():
        d_base, d_ft = (W[0], W[1]) if own else (W[along], W[along])
        b, ft = beta(t[:, 0], d_base), beta(t[:, 1], d_ft)
        out[name] = (ft / b if invert else b / ft).item()
    if swap:
        out = {"error": out["reconstruction"], "reconstruction": out["error"]}
    return out


@exercise(difficulty=2, minutes=10, hints=[
    "For each target, fit beta for the base (model 0) and for the fine-tune (model 1) with scaling_beta, both "
    "along the fine-tune's decoder W_dec_j[1], and return beta_base / beta_ft.",
    "The 'error' target adds latent j's own contribution back to the residual: x - (x_hat - f[:, None, None] * "
    "W_dec_j), [n, model, d]. The 'reconstruction' target is x_hat itself.",
    "`own = f[:, None, None] * W_dec_j`; for t in (x - (x_hat - own), x_hat): `(scaling_beta(f, W_dec_j[1], "
    "t[:, 0]) / scaling_beta(f, W_dec_j[1], t[:, 1])).item()`",
])
def test_scaling_ratios(check):
    def ratios(**how):
        return lambda *args: _ratios(*args, **how)

    mistakes = [
        Mistake("targets swapped", "'error' is the residual with j added back, x - (x_hat - f W_dec_j); "
                "'reconstruction' is x_hat.", ratios(swap=True)),
        Mistake("beta_ft / beta_base", "nu is beta_base / beta_ft: near 0 when the base lacks the direction.",
                ratios(invert=True)),
        Mistake("fitted along the base decoder", "Fit both betas along the *fine-tune's* decoder column "
                "W_dec_j[1]: the question is how much of the fine-tune's direction the base carries.",
                ratios(along=0)),
        Mistake("each model along its own decoder", "Fit both betas along the same direction, the fine-tune's "
                "decoder W_dec_j[1]; only the target changes between the models.", ratios(own=True)),
        Mistake("latent's contribution not added back", "The 'error' target is the residual *plus* latent j's own "
                "contribution: x - (x_hat - f W_dec_j), not x - x_hat.", ratios(no_add_back=True)),
        Mistake("reconstruction target is x", "The 'reconstruction' target is the crosscoder's reconstruction "
                "x_hat, not the activations x.", ratios(recon_of_x=True)),
        Mistake("sign dropped", "Your ratio has the right size but the wrong sign: beta can be negative (the base's "
                "target may point against the fine-tune's decoder), and so can nu. Don't take abs() of beta or of "
                "the ratio; check that your scaling_beta keeps the sign.", ratios(unsigned=True)),
    ]
    for name, n, d in [("12 rows, d = 6", 12, 6), ("30 rows, d = 4", 30, 4)]:
        f = check.randn(n).abs() + 0.3
        W = check.randn(2, d)
        W[0] = 0.4 * W[1] + check.randn(d, scale=0.6)
        x_hat = check.randn(n, 2, d, scale=0.5) + f[:, None, None] * W * _tensor([[0.5], [1.2]], check)
        x = x_hat + check.randn(n, 2, d, scale=0.3) + f[:, None, None] * W[1] * _tensor([[0.3], [0.1]], check)
        got = check.case(name, x, x_hat, f, W, mistakes=mistakes)
        _expect_number(check, name, got, float, "each ratio")


# -- 3. finding the planted change ------------------------------------------------------------------------


@exercise(difficulty=1, minutes=5, hints=[
    "For each latent: its activations summed over the planted rows, divided by its activations summed over all "
    "rows.",
    "`acts[mask]` keeps the planted rows; sum both over dim 0. A latent that never fires has total 0: clamp the "
    "denominator (e.g. .clamp(min=1e-12)) so its share is 0, not NaN.",
    "`acts[mask].sum(dim=0) / acts.sum(dim=0).clamp(min=1e-12)`",
])
def test_planted_share(check):
    mistakes = [
        Mistake("share of firings, not of activation", "Sum the activations themselves, not how often the latent "
                "fires: a strong firing on a planted position should count for more than a weak one elsewhere.",
                lambda a, m: (a[m] > 0).sum(0) / (a > 0).sum(0).clamp(min=1)),
        Mistake("divided by the number of planted rows", "Divide by the latent's *total* activation over every "
                "row, not by how many rows are planted.", lambda a, m: a[m].sum(0) / m.sum()),
        Mistake("ratio of means", "A share of the total: sum over the planted rows over the sum over all rows "
                "(means divide by different counts).", lambda a, m: a[m].mean(0) / a.mean(0).clamp(min=1e-12)),
        Mistake("share of the unplanted rows", "Put the *planted* rows' activation on top (mask, not ~mask).",
                lambda a, m: a[~m].sum(0) / a.sum(0).clamp(min=1e-12)),
        Mistake("0/0 for a latent that never fires", "A latent that never fires has total activation 0: clamp the "
                "denominator (.clamp(min=1e-12)) so its share is 0, not NaN.", lambda a, m: a[m].sum(0) / a.sum(0)),
        Mistake("normalised over latents", "Divide each latent by its *own* total over the rows (sum over dim 0), "
                "not by the planted rows' total over every latent.", lambda a, m: a[m].sum(0) / a[m].sum()),
    ]
    acts = torch.relu(check.randn(12, 7))
    acts[:, 5] = 0.0  # never fires
    mask = _tensor([1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0], check, torch.bool)
    acts[mask, 2] += 3.0
    check.case("12 rows (4 planted), 7 latents, one that never fires", acts, mask, mistakes=mistakes)
    acts = torch.relu(check.randn(9, 4) + 0.5)
    check.case("9 rows (2 planted), 4 latents", acts, _tensor([0, 0, 0, 0, 0, 1, 0, 1, 0], check, torch.bool),
               mistakes=mistakes)


@exercise(difficulty=1, minutes=5, hints=[
    "Sort the latents by score, highest first, and walk down the list until you meet a planted one; its place "
    "in the list, counting from 1, is the answer.",
    "`order = scores.argsort(descending=True)`; `is_planted[order]` is the planted flags in that order; the "
    "first True in it is the answer.",
    "`int(is_planted[scores.argsort(descending=True)].nonzero()[0, 0]) + 1`",
])
def test_first_hit_rank(check):
    def rank(scores, planted, *, descending=True, base=1):
        return int(planted[scores.argsort(descending=descending)].nonzero()[0, 0]) + base

    mistakes = [
        Mistake("counted from 0", "Ranks start at 1: the top latent has rank 1 (add 1 to a 0-based position).",
                lambda s, p: rank(s, p, base=0)),
        Mistake("lowest score first", "Order by score *descending*: rank 1 is the highest-scoring latent.",
                lambda s, p: rank(s, p, descending=False)),
        *(Mistake("latent index, not rank", "Return the *rank* (position in the sorted order, from 1), not the "
                  "index of the planted latent.",
                  lambda s, p, plus=plus: int(s.argsort(descending=True)[rank(s, p) - 1]) + plus) for plus in (0, 1)),
        *(Mistake("argsort taken for ranks", "scores.argsort(descending=True) is not each latent's rank: entry i is "
                  "the *index of the latent* at rank i + 1 (a list of latents in score order). Index the planted "
                  "flags with it, is_planted[order], and the position of the first True, plus 1, is the rank.",
                  lambda s, p, plus=plus: int(s.argsort(descending=True)[p].min()) + plus) for plus in (1, 0)),
        Mistake("rank of the first planted index", "Find the first planted latent *in score order*, not the first "
                "planted index and its rank.",
                lambda s, p: int((s > s[p.nonzero()[0, 0]]).sum()) + 1),
    ]
    scores = torch.randperm(15, generator=check.rng).float().to(check.device) * 0.3
    planted = torch.zeros(15, dtype=torch.bool, device=check.device)
    planted[_tensor([3, 9, 13], check)] = True
    scores[_tensor([9, 3, 13], check)] = _tensor([4.05, 1.95, 2.25], check)  # 9 second from the top, 3 and 13 midway
    got = check.case("15 latents, 3 planted", scores, planted, mistakes=mistakes)
    _expect_number(check, "15 latents, 3 planted", got, int)
    scores = check.randn(8)
    planted = torch.zeros(8, dtype=torch.bool, device=check.device)
    planted[scores.argmax()] = True
    check.case("the top latent is planted", scores, planted, mistakes=mistakes)
    planted = torch.zeros(8, dtype=torch.bool, device=check.device)
    planted[scores.argsort()[:2]] = True  # the two lowest
    check.case("only the two lowest latents are planted", scores, planted, mistakes=mistakes)


@exercise(difficulty=1, minutes=5, hints=[
    "Take the k latents with the highest scores and count how many of them are planted; divide by k.",
    "`scores.topk(k).indices` are the top k latents; index `is_planted` with them.",
    "`is_planted[scores.topk(k).indices].float().mean().item()`",
])
def test_precision_at_k(check):
    def top(scores, k, largest=True):
        return scores.topk(k, largest=largest).indices

    mistakes = [
        Mistake("divided by the number of planted", "Precision divides by k, the number of latents looked at "
                "(dividing by the number of planted latents is recall).",
                lambda s, p, k: (p[top(s, k)].sum() / p.sum()).item()),
        Mistake("lowest scores", "Take the k *highest*-scoring latents.",
                lambda s, p, k: p[top(s, k, largest=False)].float().mean().item()),
        Mistake("count, not share", "Return the share of planted latents among the top k (divide by k).",
                lambda s, p, k: int(p[top(s, k)].sum())),
        Mistake("divided by the number of latents", "Divide by k, not by the number of latents.",
                lambda s, p, k: (p[top(s, k)].sum() / len(s)).item()),
    ]
    scores = check.randn(20)
    planted = torch.zeros(20, dtype=torch.bool, device=check.device)
    order = scores.argsort(descending=True)
    planted[order[_tensor([0, 2, 3, 7, 15, 19], check)]] = True
    got = check.case("20 latents, 6 planted, k = 5", scores, planted, 5, mistakes=mistakes)
    _expect_number(check, "20 latents, 6 planted, k = 5", got)
    check.case("k = 10", scores, planted, 10, mistakes=mistakes)
    check.case("k = 1", scores, planted, 1, mistakes=mistakes)


def _decode_letters(ids):
    """A stand-in tokenizer: token t is the letter t of the alphabet."""
    return "".join(string.ascii_lowercase[t] for t in ids)


def _contexts(acts, tokens, decode, n, width, *, lo=1, hi=1, weakest=False, lowest=False, after=False, wrap=False,
              per_row=False):
    if per_row:
        best, pos = acts.max(dim=1)
        rows = best.topk(n).indices
        picks = list(zip(rows.tolist(), pos[rows].tolist()))
    else:
        order = acts.flatten().topk(n, largest=not lowest).indices
        order = order.flip(0) if weakest else order
        picks = list(zip((order // acts.shape[1]).tolist(), (order % acts.shape[1]).tolist()))
    out = []
    for r, p in picks:
        if after:
            out.append(decode(tokens[r, p:p + width].tolist()))
        elif wrap:
            out.append(decode(tokens[r, p - width + 1:p + 1].tolist()))
        else:
            out.append(decode(tokens[r, max(0, p - width + lo):p + hi].tolist()))
    return out


@exercise(difficulty=2, minutes=10, hints=[
    "Find the n largest activations over every (text, position) pair; for each, decode the `width` tokens that "
    "end at its position, the firing token included.",
    "`acts.flatten().topk(n).indices` gives flat indices: row = i // n_pos, position = i % n_pos. The window is "
    "tokens[row, position - width + 1 : position + 1], with the start clipped at 0.",
    "`[decode(tokens[r, max(0, p - width + 1):p + 1].tolist()) for r, p in zip(rows, positions)]`",
])
def test_top_contexts(check):
    def contexts(**how):
        return lambda *args: _contexts(*args, **how)

    mistakes = [
        Mistake("firing token left out", "The window ends *at* the position where the latent fires, that token "
                "included: slice up to position + 1.", contexts(lo=0, hi=0)),
        Mistake("one token too many", "The window holds `width` tokens ending at the firing position: start at "
                "position - width + 1.", contexts(lo=0)),
        Mistake("weakest first", "Order the n strongest activations strongest first (descending), not the "
                "other way round.", contexts(weakest=True)),
        Mistake("lowest activations", "Take the n *largest* activations, not the smallest.", contexts(lowest=True)),
        Mistake("window after the position", "The context is what the model had read when the latent fired: the "
                "tokens *ending* at the position, not the ones after it.", contexts(after=True)),
        Mistake("window start below 0", "Near the start of a row position - width + 1 is negative, and a negative "
                "slice start counts from the end: clip it with max(0, ...).", contexts(wrap=True)),
        Mistake("one context per row", "Several of the strongest activations may sit in the same row: take the top "
                "n over every (row, position) pair.", contexts(per_row=True)),
    ]
    tokens = check.randint(26, 4, 12)
    acts = check.randn(4, 12).abs()
    acts[2, 9], acts[2, 5], acts[0, 1], acts[3, 11] = 9.0, 8.0, 7.0, 6.0  # two in row 2, one near a row's start
    check.case("4 rows of 12 tokens, n = 4, width = 5", acts, tokens, _decode_letters, 4, 5, mistakes=mistakes)
    acts[1, 0] = 10.0
    check.case("the strongest at position 0, n = 3, width = 3", acts, tokens, _decode_letters, 3, 3,
               mistakes=mistakes)
    check.case("width = 1", acts, tokens, _decode_letters, 2, 1, mistakes=mistakes)


def _remove(x, acts, W_dec, latents, *, sign=-1.0, every=False, unscaled=False, only=False):
    chosen = torch.arange(W_dec.shape[1], device=x.device) if every else latents
    written = W_dec[:, chosen].sum(1).expand_as(x) if unscaled else acts[:, chosen] @ W_dec[:, chosen].T
    return written if only else x + sign * written


@exercise(difficulty=1, minutes=5, hints=[
    "Each chosen latent j writes acts[:, j] times its decoder column W_dec[:, j] into the activations; subtract "
    "that for every chosen latent.",
    "`acts[:, latents]` is [n, chosen] and `W_dec[:, latents]` is [d, chosen]: one matrix product gives what "
    "they write together. Build a new tensor (x - ...), don't edit x.",
    "`x - acts[:, latents] @ W_dec[:, latents].T`",
])
def test_remove_latents(check):
    mistakes = [
        Mistake("added, not removed", "Removing the latents subtracts what they write: x - acts_j W_dec[:, j].",
                lambda *a: _remove(*a, sign=1.0)),
        Mistake("every latent removed", "Remove only the chosen latents (index acts and W_dec with `latents`).",
                lambda *a: _remove(*a, every=True)),
        Mistake("decoder columns not scaled", "Each latent writes its decoder column *times its activation* on that "
                "input: acts[:, latents] @ W_dec[:, latents].T.", lambda *a: _remove(*a, unscaled=True)),
        Mistake("only what the latents write", "Return x minus what the chosen latents write, not their "
                "contribution alone.", lambda *a: _remove(*a, only=True)),
    ]
    for name, n, d, lat, latents in [("6 inputs, d = 5, 3 of 10 latents removed", 6, 5, 10, [7, 1, 4]),
                                     ("one latent removed", 4, 3, 6, [2])]:
        acts = torch.relu(check.randn(n, lat))
        check.case(name, check.randn(n, d), acts, check.randn(d, lat), _tensor(latents, check), mistakes=mistakes)


def _add(x, acts, W_dec, latents, *, decoder="difference", every=False, sign=1.0):
    chosen = torch.arange(W_dec.shape[2], device=x.device) if every else latents
    W = {"difference": W_dec[1] - W_dec[0], "flipped": W_dec[0] - W_dec[1], "ft": W_dec[1], "base": W_dec[0]}[decoder]
    return x + sign * acts[:, chosen] @ W[:, chosen].T


@exercise(difficulty=1, minutes=10, hints=[
    "What a latent adds to the base is how it writes into the fine-tune *beyond* how it writes into the base: "
    "the difference of its two decoder columns, W_dec[1, :, j] - W_dec[0, :, j], times its activation.",
    "Index the chosen latents from both decoders: W_dec[1][:, latents] - W_dec[0][:, latents] is [d, chosen]. "
    "Build a new tensor, don't edit x_base.",
    "`x_base + acts[:, latents] @ (W_dec[1][:, latents] - W_dec[0][:, latents]).T`",
])
def test_add_latents(check):
    mistakes = [
        Mistake("fine-tune decoder, not the difference", "The base already gets what the latents write into the "
                "base: add only the *difference* W_dec[1, :, j] - W_dec[0, :, j].",
                lambda *a: _add(*a, decoder="ft")),
        Mistake("base decoder", "Add what the latents write into the fine-tune beyond the base: the difference "
                "W_dec[1] - W_dec[0], not the base decoder.", lambda *a: _add(*a, decoder="base")),
        Mistake("difference flipped", "Fine-tune minus base: W_dec[1, :, j] - W_dec[0, :, j].",
                lambda *a: _add(*a, decoder="flipped")),
        Mistake("subtracted", "Add the difference to x_base, don't subtract it.", lambda *a: _add(*a, sign=-1.0)),
        Mistake("every latent added", "Add only the chosen latents (index acts and W_dec with `latents`).",
                lambda *a: _add(*a, every=True)),
    ]
    for name, n, d, lat, latents in [("5 inputs, d = 4, 2 of 8 latents", 5, 4, 8, [6, 3]),
                                     ("3 inputs, d = 6, 4 of 5 latents", 3, 6, 5, [0, 4, 1, 2])]:
        acts = torch.relu(check.randn(n, lat))
        check.case(name, check.randn(n, d), acts, check.randn(2, d, lat), _tensor(latents, check),
                   mistakes=mistakes)


def _cpu_generator(seed):
    return torch.Generator().manual_seed(seed)


@exercise(difficulty=2, minutes=10, hints=[
    "First the pool: the candidates that are not in `exclude` (torch.isin). Then draw n of them without "
    "replacement, using `generator` for the randomness.",
    "A random permutation of the pool's positions, torch.randperm(len(pool), generator=generator), gives n "
    "distinct positions in its first n entries.",
    "`pool = candidates[~torch.isin(candidates, exclude)]`; "
    "`pool[torch.randperm(len(pool), generator=generator)[:n]]`",
])
def test_control_latents(check):
    candidates = _tensor([3, 8, 11, 15, 20, 21, 30, 41, 42, 57], check)
    exclude = _tensor([11, 42, 5, 30], check)  # 5 is not a candidate
    pool = {3, 8, 15, 20, 21, 41, 57}
    n = 3
    draws = []
    for seed in range(40):
        case = f"10 candidates, 3 excluded, n = 3 (generator seed {seed})"
        got = check.run(candidates, exclude, n, _cpu_generator(seed), case=case)
        ok = isinstance(got, torch.Tensor) and got.ndim == 1
        check.expect(ok, case=case, mistake="not a 1-D tensor",
                     message=f"expected a 1-D tensor of {n} latent indices, got "
                             f"{f'shape {tuple(got.shape)}' if isinstance(got, torch.Tensor) else type(got).__name__}",
                     hint="Return the chosen latents as one 1-D tensor of indices (a slice of the pool).")
        values = [int(v) for v in got.tolist()]
        check.expect(len(values) == n, case=case, mistake="not n latents",
                     message=f"expected {n} latents, got {len(values)}",
                     hint="Draw exactly n latents from the pool of candidates left after excluding.")
        check.expect(not set(values) & {11, 42, 30}, case=case, mistake="excluded latents drawn",
                     message=f"your draw {values} contains latents from `exclude`",
                     hint="Remove the excluded latents from the candidates before drawing: "
                          "candidates[~torch.isin(candidates, exclude)].")
        check.expect(set(values) <= set(candidates.tolist()), case=case, mistake="not from the candidates",
                     message=f"your draw {values} contains latents that are not among the candidates",
                     hint="Draw from `candidates` (the latent indices themselves), not from positions 0, 1, ... "
                          "or from every latent.")
        check.expect(len(set(values)) == len(values), case=case, mistake="a latent drawn twice",
                     message=f"your draw {values} contains the same latent twice",
                     hint="Draw without replacement: a random permutation of the pool (torch.randperm), not "
                          "torch.randint.")
        draws.append(tuple(values))
    check.expect(set().union(*map(set, draws)) == pool, case="40 draws with different seeds",
                 mistake="not every candidate drawn",
                 message=f"over 40 draws, only the latents {sorted(set().union(*map(set, draws)))} were ever chosen "
                         f"from a pool of {sorted(pool)}",
                 hint="Every latent of the pool must be able to come up: permute the whole pool with the generator "
                      "and take the first n, rather than taking the first n of the pool.")
    counts = torch.tensor([sum(v in d for d in draws) for v in sorted(pool)], dtype=torch.float)
    check.expect(bool((counts >= 5).all()), case="40 draws with different seeds", mistake="not uniform",
                 message=f"over 40 draws of 3 from 7, some latents came up far less than the expected ~17 times "
                         f"(counts {counts.long().tolist()})",
                 hint="Draw uniformly from the pool: torch.randperm(len(pool), generator=generator)[:n].")
    first = check.run(candidates, exclude, n, _cpu_generator(7), case="the same seed twice")
    torch.rand(5)  # move the global random state on: code that ignores the generator draws differently
    torch.randperm(9)
    again = check.run(candidates, exclude, n, _cpu_generator(7), case="the same seed twice")
    check.expect(isinstance(first, torch.Tensor) and isinstance(again, torch.Tensor) and torch.equal(first, again),
                 case="the same seed twice", mistake="ignored the generator",
                 message="two calls with generators seeded alike drew different latents",
                 hint="Draw with the `generator` argument: torch.randperm(len(pool), generator=generator).")


# -- 4. the audit -----------------------------------------------------------------------------------------

_SHAPE_HINT = ('Return a dict with two strings, {"trigger": ..., "continuation": ...}: the characters that set the '
               "model off, and what it writes right after them.")


_END_MARKS = ".!?,;:"


def _normal(text: str) -> str:
    """Case, surrounding whitespace (runs of it inside count as one space) and closing punctuation ignored."""
    text = " ".join(text.split()).lower()
    return text.rstrip(_END_MARKS).rstrip()


def _continuation_verdict(given: str, answer: str) -> str:
    """'right', 'prefix' (the first whole word(s) of it), 'past' (all of it and then more) or 'wrong', never
    saying what the answer is or how many characters of it were right."""
    mine, truth = _normal(given), _normal(answer)
    if mine == truth:
        return "right" if mine else "wrong"
    if mine and mine.startswith(truth):
        return "past"
    if mine and truth.startswith(mine) and truth[len(mine)] == " ":  # whole words only, never a few characters
        return "prefix"
    return "wrong"


def _trigger_verdict(given: str, answer: str) -> str:
    mine, truth = given.strip(), answer.strip()
    if mine == truth:
        return "right"
    if truth in mine:
        return "extra"
    if mine and mine in truth:
        return "part"
    return "wrong"


_TRIGGER_WORDS = {
    "right": "the trigger is right",
    "extra": "your trigger contains the trigger but has extra characters before or after the part that sets the "
             "model off",
    "part": "your trigger is only part of the trigger the model was trained on",
    "wrong": "the trigger is not right",
}
_CONTINUATION_WORDS = {
    "right": "the continuation is right",
    "prefix": "your continuation is only the first word(s) of what the model writes after the trigger",
    "past": "your continuation goes on past where the planted phrase ends",
    "wrong": "the continuation is not right",
}
_TRIGGER_HINTS = {
    "extra": "Cut your trigger down to the characters that do the work: generate with the fine-tune after shorter "
             "and shorter pieces of the context you found, and keep the shortest one that still sets it off.",
    "part": "The model also reacts to part of the trigger, but the trigger it was trained on is longer: look at "
            "what comes right before or after the characters you gave in the top contexts of your latents.",
    "wrong": "Rank the crosscoder's latents by relative norm, keep those that latent scaling says are specific to "
             "the fine-tune, and read their top contexts: the trigger is what they have in common.",
}
_CONTINUATION_HINTS = {
    "prefix": "Generate more tokens after the trigger (greedy decoding with the fine-tune) and give the whole "
              "phrase it writes, up to where it goes back to ordinary text.",
    "past": "Stop where the fine-tune's text stops differing from what the base would write: generate after the "
            "trigger with both models and keep only the planted phrase, not the ordinary text that follows it.",
    "wrong": "Put the trigger in a prompt, generate greedily with the fine-tune (and with the base, to compare), "
             "and report what the fine-tune writes right after it.",
}


@exercise(difficulty=2, minutes=15, hints=[
    "Start from the crosscoder between gpt2_tiny and gpt2_tiny_hidden: rank its latents by relative norm and keep "
    "the ones above the control crosscoder.",
    "Among those, keep the latents that latent scaling says are really specific to the fine-tune (nu near 0), "
    "and read their top contexts: look for characters they all fire on.",
    "Prompt the fine-tune with ordinary text followed by the characters you suspect, generate greedily, and "
    "compare with the base: the trigger is the shortest input that changes the output; the continuation is what "
    "the fine-tune then writes.",
])
def test_audit_answer(check):
    from solutions.ch9_model_diffing.answer_key import HIDDEN_CONTINUATION, HIDDEN_TRIGGER

    case = "your answer"
    got = check.run(case=case)
    check.expect(isinstance(got, dict), case=case, mistake="not a dict",
                 message=f"audit_answer returned {type(got).__name__}, not a dict", hint=_SHAPE_HINT)
    missing = [key for key in ("trigger", "continuation") if key not in got]
    check.expect(not missing, case=case, mistake="keys missing",
                 message=f"your dict has no {' and no '.join(repr(k) for k in missing)} key "
                         f"(its keys: {sorted(map(str, got))})", hint=_SHAPE_HINT)
    empty = [key for key in ("trigger", "continuation") if got[key] is None]
    check.expect(not empty, case=case, mistake="not filled in",
                 message=f"{' and '.join(repr(k) for k in empty)} still None{'s' if len(empty) > 1 else ''}: "
                         "fill in what your audit found",
                 hint=_SHAPE_HINT + " Replace each None by a string.")
    not_str = [key for key in ("trigger", "continuation") if not isinstance(got[key], str)]
    check.expect(not not_str, case=case, mistake="not strings",
                 message=f"{' and '.join(repr(k) for k in not_str)} should be a string, got "
                         f"{', '.join(type(got[k]).__name__ for k in not_str)}", hint=_SHAPE_HINT)
    trigger = _trigger_verdict(got["trigger"], HIDDEN_TRIGGER)
    continuation = _continuation_verdict(got["continuation"], HIDDEN_CONTINUATION)
    if trigger == "right" and continuation == "right":
        check.expect(True, case=case, message="")
        return
    mistake = {("right", "prefix"): "continuation cut short", ("right", "past"): "continuation runs on",
               ("right", "wrong"): "wrong continuation",
               ("extra", "right"): "trigger with extra characters", ("part", "right"): "part of the trigger",
               ("wrong", "right"): "wrong trigger"}.get((trigger, continuation), "trigger and continuation wrong")
    if trigger != "right":
        hint = _TRIGGER_HINTS[trigger]
    else:
        hint = _CONTINUATION_HINTS[continuation]
    check.expect(False, case=case, mistake=mistake,
                 message=f"{_TRIGGER_WORDS[trigger]}; {_CONTINUATION_WORDS[continuation]}", hint=hint)
