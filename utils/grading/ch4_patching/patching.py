"""Graders for 4.1 "Patching".

Everything runs on small seeded tensors or on a tiny randomly initialised
3-layer, 2-head model with MLPs and LayerNorm (weights scaled up so every head
matters), never on the trained IOI model: each check takes well under a second.
"""

from __future__ import annotations

import functools
from functools import partial

import torch

from solutions.ch4_patching import patching as ref
from utils.grading import Mistake, exercise

N_POS = 6


# -- shared inputs -------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _tiny_model(device: str, seed: int = 0):
    """3 layers x 2 heads (so a [head, layer] answer has the wrong shape), MLPs and LayerNorm."""
    from transformer_lens import TransformerBridge, TransformerBridgeConfig

    cfg = TransformerBridgeConfig(d_model=24, d_head=8, n_heads=2, n_layers=3, d_mlp=48, n_ctx=8, d_vocab=12,
                                  act_fn="gelu_new", normalization_type="LN",
                                  architecture="TransformerLensNative", seed=seed)
    model = TransformerBridge.boot_native(cfg)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or name.endswith(".b"):
                param.copy_(0.2 * torch.randn(param.shape, generator=generator))
            elif param.ndim >= 2:
                param.mul_(3.0)
    model.requires_grad_(False)
    model.eval()
    if device != "cpu":
        model.to(device)
    return model


def _model(check):
    model = _tiny_model(str(check.device))
    model.reset_hooks()
    return model


def _prompts(check, batch: int = 3):
    """Clean and corrupted tokens differing at one position, and [correct, wrong] answers."""
    clean = check.randint(12, batch, N_POS)
    corrupted = clean.clone()
    corrupted[:, 2] = (clean[:, 2] + 1 + check.randint(10, batch)) % 12
    answers = torch.stack([clean[:, 1], (clean[:, 1] + 3) % 12], dim=1)
    return clean, corrupted, answers


def _runs(check):
    model = _model(check)
    clean, corrupted, answers = _prompts(check)
    with torch.no_grad():
        clean_logits, clean_cache = model.run_with_cache(clean)
        corrupted_logits, corrupted_cache = model.run_with_cache(corrupted)
    clean_ld = ref.logit_diff(clean_logits, answers).mean()
    corrupted_ld = ref.logit_diff(corrupted_logits, answers).mean()

    def metric(logits):
        return ref.normalised_metric(ref.logit_diff(logits, answers).mean(), clean_ld, corrupted_ld)

    return model, clean, corrupted, answers, clean_cache, corrupted_cache, metric


def _hook(name: str):
    from transformer_lens.hook_points import HookPoint
    hook = HookPoint()
    hook.name = name
    return hook


def _per_head_loop(model, run_one, *, transpose=False):
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            out[layer, head] = run_one(layer, head)
    return out.T if transpose else out


# -- 1. metrics ------------------------------------------------------------------------------

@exercise(difficulty=1, minutes=10, hints=[
    "Only the last position predicts the answer: use logits[:, -1], shape [batch, d_vocab].",
    "answers[:, 0] is the correct token and answers[:, 1] the wrong one; pick each with gather along the "
    "vocabulary axis.",
    "`last = logits[:, -1]; return last.gather(-1, answers[:, :1])[:, 0] - last.gather(-1, answers[:, 1:])[:, 0]`.",
])
def test_logit_diff(check):
    def at(logits, answers, position=-1, probs=False):
        last = logits[:, position]
        last = last.softmax(-1) if probs else last
        return last.gather(-1, answers[:, :1])[:, 0] - last.gather(-1, answers[:, 1:])[:, 0]

    mistakes = [
        Mistake("sign flipped", "Correct minus wrong: answers[:, 0] is the correct token.",
                lambda logits, answers: -at(logits, answers)),
        Mistake("probabilities", "Use logits, not probabilities: a probability difference saturates near 0 "
                "and 1 and depends on every other token's logit.", partial(at, probs=True)),
        Mistake("first position", "The answer is predicted at the *last* position, logits[:, -1].",
                partial(at, position=0)),
        Mistake("averaged", "Return one value per prompt, shape [batch]; average later.",
                lambda logits, answers: at(logits, answers).mean()),
    ]
    logits = check.randn(4, 5, 9, scale=2.0)
    answers = torch.stack([check.randint(9, 4), (check.randint(8, 4) + 1) % 9], dim=1)
    answers[:, 1] = torch.where(answers[:, 1] == answers[:, 0], (answers[:, 0] + 1) % 9, answers[:, 1])
    check.case("random logits", logits, answers, mistakes=mistakes, atol=1e-5)
    check.case("one prompt", check.randn(1, 3, 6), torch.tensor([[2, 5]], device=check.device),
               mistakes=mistakes, atol=1e-5)


@exercise(difficulty=1, minutes=5, hints=[
    "The metric is 0 for the corrupted run and 1 for the clean run, and linear in between.",
    "Subtract the corrupted value first, then divide by how far clean is from corrupted.",
    "`(value - corrupted_value) / (clean_value - corrupted_value)`.",
])
def test_normalised_metric(check):
    mistakes = [
        Mistake("inverted", "0 must mean 'as corrupted' and 1 'as clean': subtract the *corrupted* value.",
                lambda v, c, k: (v - c) / (k - c)),
        Mistake("no baseline", "Subtract the corrupted value before dividing: the corrupted run must score 0.",
                lambda v, c, k: v / c),
        Mistake("wrong denominator", "Divide by clean - corrupted, the whole range, not by the clean value.",
                lambda v, c, k: (v - k) / c),
        Mistake("clamped", "Don't clamp to [0, 1]: a value below 0 (worse than corrupted) or above 1 (better than "
                "clean) is information.", lambda v, c, k: ((v - k) / (c - k)).clamp(0, 1)),
    ]
    check.case("a tensor of values", check.randn(5) * 2, torch.tensor(3.0, device=check.device),
               torch.tensor(-0.5, device=check.device), mistakes=mistakes, atol=1e-5)
    check.case("floats", torch.tensor([0.0, 1.5, 4.0], device=check.device), 4.0, 1.0, mistakes=mistakes,
               atol=1e-5)


# -- 2. ablations ------------------------------------------------------------------------------

@exercise(difficulty=1, minutes=10, hints=[
    "z is [batch, pos, head, d_head]; `perm` reorders the batch, so prompt i gets the head's z from prompt "
    "perm[i].",
    "Only the chosen head changes: index z[:, :, head], and take the permuted values from z[perm, :, head].",
    "`z = z.clone(); z[:, :, head] = z[perm, :, head]; return z`.",
])
def test_resample_ablate_head_hook(check):
    hook = _hook("blocks.0.attn.hook_z")
    mistakes = [
        Mistake("not permuted", "Resampling takes the head's activation from *other* prompts: index the batch "
                "with perm.", lambda z, hook, head, perm: z.clone()),
        Mistake("all heads", "Replace only the chosen head, z[:, :, head], not every head.",
                lambda z, hook, head, perm: z[perm].clone()),
        Mistake("forgot to return", "Return the edited tensor: the hook's return value replaces the activation.",
                lambda z, hook, head, perm: None),
    ]
    perm = torch.tensor([2, 0, 1], device=check.device)
    check.case("head 1", check.randn(3, 5, 3, 4), hook, 1, perm, mistakes=mistakes)
    check.case("head 0", check.randn(3, 6, 2, 2), hook, 0, torch.tensor([1, 2, 0], device=check.device),
               mistakes=mistakes)


@exercise(difficulty=2, minutes=10, hints=[
    "The mean is over the reference batch only (axis 0): each position keeps its own mean.",
    "Without a head, replace the whole activation; with a head, only act[:, :, head], using that head's "
    "slice of the mean.",
    "`act = act.clone(); mean = reference.mean(0); act[:] = mean` or `act[:, :, head] = mean[:, head]`.",
])
def test_mean_ablate_from_reference_hook(check):
    hook = _hook("blocks.0.attn.hook_z")

    def variant(act, hook, reference, head=None, *, source=None, dims=(0,), all_heads=False, zero=False):
        act = act.clone()
        mean = (act if source == "self" else reference).mean(dim=dims)
        if zero:
            mean = torch.zeros_like(mean)
        if head is None or all_heads:
            act[:] = mean
        else:
            act[:, :, head] = mean[..., head, :] if mean.ndim >= 2 else mean
        return act

    mistakes = [
        Mistake("mean over positions", "Average over the reference batch (axis 0) only: each position keeps its "
                "own mean.", partial(variant, dims=(0, 1))),
        Mistake("mean of the current batch", "Take the mean of `reference`, the reference run, not of the "
                "activation being ablated.", partial(variant, source="self")),
        Mistake("all heads", "With `head` given, replace only act[:, :, head].", partial(variant, all_heads=True)),
        Mistake("zeroed", "Mean ablation replaces by the reference mean, not by zero.", partial(variant, zero=True)),
    ]
    act, reference = check.randn(3, 5, 3, 4), check.randn(6, 5, 3, 4) + 1.0
    check.case("one head", act, hook, reference, 2, mistakes=mistakes)
    check.case("whole activation (MLP output)", check.randn(2, 4, 7), _hook("blocks.0.hook_mlp_out"),
               check.randn(5, 4, 7) - 0.5, mistakes=mistakes)


def _zero_hook_factory(layer, head):
    def hook(z, hook):
        z = z.clone()
        z[:, :, head] = 0.0
        return z
    return hook


def _half_hook_factory(layer, head):
    def hook(z, hook):
        z = z.clone()
        z[:, :, head] = 0.5 * z[:, :, head]
        return z
    return hook


def _ablation_variant(*, transpose=False, accumulate=False, reduce="mean"):
    def variant(model, tokens, answers, make_hook):
        hooks = []

        def one(layer, head):
            nonlocal hooks
            hook = (f"blocks.{layer}.attn.hook_z", make_hook(layer, head))
            hooks = [*hooks, hook] if accumulate else [hook]
            with torch.no_grad():
                ld = ref.logit_diff(model.run_with_hooks(tokens, fwd_hooks=hooks), answers)
            return ld.mean() if reduce == "mean" else ld.sum()
        return _per_head_loop(model, one, transpose=transpose)
    return variant


@exercise(difficulty=2, minutes=15, timeout=20.0, atol=1e-4, hints=[
    "Loop over layers and heads; run `model.run_with_hooks(tokens, fwd_hooks=[(name, make_hook(layer, head))])` "
    "with name = f'blocks.{layer}.attn.hook_z'.",
    "Score each run with your logit_diff, averaged over the batch.",
    "Fill a [n_layers, n_heads] tensor, one hook per run (run_with_hooks removes its hooks afterwards).",
])
def test_head_ablation_logit_diffs(check):
    mistakes = [
        Mistake("transposed", "Return [n_layers, n_heads]: row = layer, column = head.",
                _ablation_variant(transpose=True)),
        Mistake("hooks accumulate", "Ablate one head at a time: each run gets exactly one hook.",
                _ablation_variant(accumulate=True)),
        Mistake("summed", "Average the logit difference over the batch, don't sum it.",
                _ablation_variant(reduce="sum")),
    ]
    model = _model(check)
    clean, _, answers = _prompts(check)
    try:
        check.case("zero ablation", model, clean, answers, _zero_hook_factory, mistakes=mistakes)
        check.case("halving ablation (another make_hook)", model, clean, answers, _half_hook_factory, mistakes=[
            *mistakes, Mistake("ignored make_hook", "Use the hook that make_hook(layer, head) returns: the function "
                               "must work for any ablation it is given, not only zero ablation.",
                               lambda m, t, a, make_hook: _ablation_variant()(m, t, a, _zero_hook_factory))])
    finally:
        model.reset_hooks()


# -- 3. activation patching ------------------------------------------------------------------------

@exercise(difficulty=1, minutes=10, hints=[
    "Activations are [batch, pos, ...]; the source run's value is source_cache[hook.name].",
    "Only position `pos` changes: act[:, pos] = source[:, pos].",
    "`act = act.clone(); act[:, pos] = source_cache[hook.name][:, pos]; return act`.",
])
def test_patch_position_hook(check):
    name = "blocks.1.hook_resid_pre"
    hook = _hook(name)

    def at(act, hook, pos, source_cache, shift=0, every=False):
        act = act.clone()
        source = source_cache[name]
        if every:
            return source.clone()
        act[:, pos + shift] = source[:, pos + shift]
        return act

    mistakes = [
        Mistake("all positions", "Patch only position `pos`; the other positions keep their own values.",
                partial(at, every=True)),
        Mistake("wrong position", "Index the position axis with `pos` itself (axis 1 of [batch, pos, d_model]).",
                partial(at, shift=1)),
        Mistake("forgot to return", "Return the edited tensor: the hook's return value replaces the activation.",
                lambda act, hook, pos, source_cache: None),
    ]
    check.case("pos 2", check.randn(2, 5, 4), hook, 2, {name: check.randn(2, 5, 4)}, mistakes=mistakes)
    check.case("pos 0", check.randn(3, 4, 6), hook, 0, {name: check.randn(3, 4, 6)}, mistakes=mistakes)


def _resid_variant(*, transpose=False, hook_name="hook_resid_pre", every=False):
    def variant(model, tokens, source_cache, metric):
        out = torch.zeros(model.cfg.n_layers, tokens.shape[1])
        for layer in range(model.cfg.n_layers):
            for pos in range(tokens.shape[1]):
                name = f"blocks.{layer}.{hook_name}"

                def hook(act, hook, pos=pos, name=name):
                    act = act.clone()
                    if every:
                        return source_cache[name].clone()
                    act[:, pos] = source_cache[name][:, pos]
                    return act
                with torch.no_grad():
                    out[layer, pos] = metric(model.run_with_hooks(tokens, fwd_hooks=[(name, hook)]))
        return out.T if transpose else out
    return variant


@exercise(difficulty=2, minutes=15, timeout=20.0, atol=1e-4, hints=[
    "Two loops, layer and position; patch f'blocks.{layer}.hook_resid_pre' with your patch_position_hook.",
    "Run the *tokens you are given* (the run that receives the patch) and score its logits with `metric`.",
    "Return [n_layers, pos]: out[layer, pos] = metric(model.run_with_hooks(tokens, fwd_hooks=[(name, hook)])).",
])
def test_patch_resid_by_layer_and_pos(check):
    mistakes = [
        Mistake("transposed", "Return [n_layers, pos]: row = layer, column = position.",
                _resid_variant(transpose=True)),
        Mistake("resid_post", "Patch the residual stream *entering* each layer, hook_resid_pre.",
                _resid_variant(hook_name="hook_resid_post")),
        Mistake("all positions", "Patch one position per run, not the whole residual stream.",
                _resid_variant(every=True)),
    ]
    model, clean, corrupted, answers, clean_cache, corrupted_cache, metric = _runs(check)
    check.case("denoising", model, corrupted, clean_cache, metric, mistakes=mistakes)


@exercise(difficulty=2, minutes=10, hints=[
    "z, q, k and v are [batch, pos, head, d]; the attention pattern is [batch, head, query_pos, key_pos].",
    "Check `hook.name.endswith('hook_pattern')` to choose the head axis; with `pos`, patch only that "
    "(query) position.",
    "`act[:, positions, head] = source[:, positions, head]` (or `act[:, head, positions] = ...` for the "
    "pattern), with positions = slice(None) when pos is None.",
])
def test_patch_head_hook(check):
    def variant(act, hook, head, source_cache, pos=None, *, pattern_axis=1, all_heads=False, ignore_pos=False,
                head_axis=2, key_pos=False):
        act = act.clone()
        source = source_cache[hook.name]
        positions = slice(None) if pos is None or ignore_pos else pos
        if all_heads:
            act[:, positions] = source[:, positions]
        elif hook.name.endswith("hook_pattern") and key_pos:
            act[:, head, :, positions] = source[:, head, :, positions]
        elif hook.name.endswith("hook_pattern"):
            if pattern_axis == 1:
                act[:, head, positions] = source[:, head, positions]
            else:
                act[:, positions, head] = source[:, positions, head]
        elif head_axis == 1:
            act[:, head] = source[:, head]
        else:
            act[:, positions, head] = source[:, positions, head]
        return act

    mistakes = [
        Mistake("all heads", "Patch only the chosen head; the other heads keep their values.",
                partial(variant, all_heads=True)),
        Mistake("pattern head axis", "The pattern is [batch, head, query, key]: its head axis is the second.",
                partial(variant, pattern_axis=2)),
        Mistake("position ignored", "With `pos` given, patch only that position.", partial(variant, ignore_pos=True)),
        Mistake("head on the position axis", "z is [batch, pos, head, d_head]: the head is the third axis.",
                partial(variant, head_axis=1)),
        Mistake("pattern key position", "`pos` is the *query* position: patch the pattern's row for that query, "
                "pattern[:, head, pos], not the column of a key.", partial(variant, key_pos=True)),
    ]
    z, p = "blocks.0.attn.hook_z", "blocks.1.attn.hook_pattern"
    check.case("z, all positions", check.randn(2, 5, 3, 4), _hook(z), 1, {z: check.randn(2, 5, 3, 4)},
               mistakes=mistakes)
    check.case("z at position 3", check.randn(2, 5, 3, 4), _hook(z), 2, {z: check.randn(2, 5, 3, 4)}, 3,
               mistakes=mistakes)
    check.case("pattern", check.randn(2, 3, 5, 5), _hook(p), 0, {p: check.randn(2, 3, 5, 5)}, mistakes=mistakes)
    check.case("pattern at query position 2", check.randn(2, 3, 5, 5), _hook(p), 1, {p: check.randn(2, 3, 5, 5)}, 2,
               mistakes=mistakes)


def _heads_variant(*, transpose=False, ignore_activation=False, accumulate=False):
    def variant(model, tokens, source_cache, metric, activation="z"):
        hooks = []

        def one(layer, head):
            nonlocal hooks
            name = f"blocks.{layer}.attn.hook_{'z' if ignore_activation else activation}"
            hook = (name, partial(ref.patch_head_hook, head=head, source_cache=source_cache))
            hooks = [*hooks, hook] if accumulate else [hook]
            with torch.no_grad():
                return metric(model.run_with_hooks(tokens, fwd_hooks=hooks))
        return _per_head_loop(model, one, transpose=transpose)
    return variant


@exercise(difficulty=2, minutes=15, timeout=20.0, atol=1e-4, hints=[
    "The hook name is f'blocks.{layer}.attn.hook_{activation}'; your patch_head_hook handles every activation.",
    "One run per (layer, head), one hook per run, scored with `metric`.",
    "`out[layer, head] = metric(model.run_with_hooks(tokens, fwd_hooks=[(name, partial(patch_head_hook, "
    "head=head, source_cache=source_cache))]))`.",
])
def test_patch_heads(check):
    mistakes = [
        Mistake("transposed", "Return [n_layers, n_heads].", _heads_variant(transpose=True)),
        Mistake("always z", "Patch the activation you are asked for: hook_{activation}.",
                _heads_variant(ignore_activation=True)),
        Mistake("hooks accumulate", "Patch one head per run.", _heads_variant(accumulate=True)),
    ]
    model, clean, corrupted, answers, clean_cache, corrupted_cache, metric = _runs(check)
    check.case("z", model, corrupted, clean_cache, metric, mistakes=mistakes, check_dtype=False)
    check.case("values", model, corrupted, clean_cache, metric, "v", mistakes=mistakes, check_dtype=False)
    check.case("pattern", model, corrupted, clean_cache, metric, "pattern", mistakes=mistakes, check_dtype=False)


def _by_pos_variant(*, order="lph", every=False):
    def variant(model, tokens, source_cache, metric):
        n_layers, n_heads, n_pos = model.cfg.n_layers, model.cfg.n_heads, tokens.shape[1]
        out = torch.zeros(n_layers, n_pos, n_heads)
        for layer in range(n_layers):
            for pos in range(n_pos):
                for head in range(n_heads):
                    hook = partial(ref.patch_head_hook, head=head, source_cache=source_cache,
                                   pos=None if every else pos)
                    with torch.no_grad():
                        out[layer, pos, head] = metric(
                            model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", hook)]))
        return out.permute(0, 2, 1) if order == "lhp" else out
    return variant


@exercise(difficulty=2, minutes=15, timeout=30.0, atol=1e-4, hints=[
    "Three loops (layer, position, head); patch_head_hook with pos=pos patches one head at one position.",
    "Store the metric at out[layer, pos, head]: the layout transformer_lens.patching uses.",
    "Patch hook_z: f'blocks.{layer}.attn.hook_z'.",
])
def test_patch_heads_by_pos(check):
    mistakes = [
        Mistake("[layer, head, pos]", "Return [n_layers, pos, n_heads], as transformer_lens.patching does.",
                _by_pos_variant(order="lhp")),
        Mistake("all positions", "Patch the head at one position per run (pos=pos).", _by_pos_variant(every=True)),
        Mistake("wrong activation", "Patch the head output z (hook_z).",
                lambda model, tokens, source_cache, metric: torch.stack([
                    ref.patch_heads(model, tokens, source_cache, metric, "v")] * tokens.shape[1], dim=1)),
    ]
    model, clean, corrupted, answers, clean_cache, corrupted_cache, metric = _runs(check)
    check.case("denoising", model, corrupted, clean_cache, metric, mistakes=mistakes)


@exercise(difficulty=2, minutes=10, timeout=20.0, atol=1e-4, hints=[
    "Cache both runs first: `_, clean_cache = model.run_with_cache(clean_tokens)` and the same for corrupted.",
    "Denoising runs the *corrupted* tokens with clean activations patched in; noising runs the *clean* "
    "tokens with corrupted activations patched in.",
    "`{'denoise': patch_heads(model, corrupted_tokens, clean_cache, metric), "
    "'noise': patch_heads(model, clean_tokens, corrupted_cache, metric)}`.",
])
def test_denoise_and_noise(check):
    def both(model, clean_tokens, corrupted_tokens, metric, *, swap=False, same=False):
        with torch.no_grad():
            _, cc = model.run_with_cache(clean_tokens)
            _, kc = model.run_with_cache(corrupted_tokens)
        d = ref.patch_heads(model, corrupted_tokens, cc, metric)
        n = ref.patch_heads(model, clean_tokens, cc if same else kc, metric)
        return {"denoise": n, "noise": d} if swap else {"denoise": d, "noise": n}

    mistakes = [
        Mistake("swapped", "Denoising = corrupted run + clean patch (is the head sufficient?); noising = clean "
                "run + corrupted patch (is it necessary?).", partial(both, swap=True)),
        Mistake("one cache", "Noising patches *corrupted* activations into the clean run; patching the clean "
                "run with its own activations changes nothing.", partial(both, same=True)),
        Mistake("tokens mixed up", "Each direction runs one prompt and patches from the *other* one.",
                lambda model, clean_tokens, corrupted_tokens, metric: both(model, corrupted_tokens, clean_tokens,
                                                                           metric)),
    ]
    model, clean, corrupted, answers, clean_cache, corrupted_cache, metric = _runs(check)
    check.case("both directions", model, clean, corrupted, metric, mistakes=mistakes)


# -- 4. path patching -------------------------------------------------------------------------------

def _path_variant(*, freeze_others=True, freeze_sender=False, whole_layer=False):
    def variant(model, corrupted_tokens, clean_cache, corrupted_cache, sender, receivers, receiver_input, metric):
        s_layer, s_head = sender
        recorded = {}

        def freeze(z, hook, layer):
            name = f"blocks.{layer}.attn.hook_z"
            if not freeze_others:
                z = z.clone()
            else:
                z = corrupted_cache[name].clone()
            if layer == s_layer and not freeze_sender:
                z[:, :, s_head] = clean_cache[name][:, :, s_head]
            return z

        names = sorted({f"blocks.{layer}.attn.hook_{receiver_input}" for layer, _ in receivers})

        def record(act, hook, name):
            recorded[name] = act.detach().clone()

        hooks = [(f"blocks.{layer}.attn.hook_z", partial(freeze, layer=layer)) for layer in range(model.cfg.n_layers)]
        hooks += [(n, partial(record, name=n)) for n in names]
        with torch.no_grad():
            model.run_with_hooks(corrupted_tokens, fwd_hooks=hooks)

            def patch(act, hook, name):
                act = act.clone()
                for layer, head in receivers:
                    if name == f"blocks.{layer}.attn.hook_{receiver_input}":
                        if whole_layer:
                            act = recorded[name].clone()
                        else:
                            act[:, :, head] = recorded[name][:, :, head]
                return act
            logits = model.run_with_hooks(corrupted_tokens, fwd_hooks=[(n, partial(patch, name=n)) for n in names])
        return metric(logits)
    return variant


@exercise(difficulty=3, minutes=30, timeout=20.0, atol=1e-4, hints=[
    "Two runs of the corrupted prompt. Run 1: a hook on every layer's hook_z returns the *corrupted* z for "
    "every head except the sender, which gets its clean z; record the receivers' hook_q (or k, v).",
    "Run 2: patch only the recorded receiver inputs (only the receiver heads' slices) into a fresh corrupted "
    "run, and return metric(logits).",
    "Freezing the other heads is what makes it a *path*: without it, the sender's effect also flows through "
    "every head between sender and receiver.",
])
def test_path_patch(check):
    mistakes = [
        Mistake("other heads not frozen", "Freeze every other head's z at its corrupted value in run 1: "
                "otherwise the sender's effect reaches the receiver through intermediate heads too.",
                _path_variant(freeze_others=False)),
        Mistake("patched nothing", "Your result is the plain corrupted run's: nothing reached the receivers. "
                "Most often run 2's hook never matched: the bridge passes hooks their *canonical* name (e.g. "
                "`blocks.2.attn.q.hook_out`, not `blocks.2.attn.hook_q`), so comparing `hook.name` with a name you "
                "built fails silently; give each hook function the name you registered it under "
                "(functools.partial). Otherwise check that run 1 gives the sender its *clean* z.",
                lambda model, corrupted_tokens, *args: args[-1](_plain_logits(model, corrupted_tokens))),
        Mistake("whole receiver layer", "Patch only the receiver heads' slice of q/k/v in run 2, not every head "
                "in their layer.", _path_variant(whole_layer=True)),
    ]
    model, clean, corrupted, answers, clean_cache, corrupted_cache, metric = _runs(check)
    check.case("sender 0.1 -> receiver 2.0 queries", model, corrupted, clean_cache, corrupted_cache, (0, 1),
               [(2, 0)], "q", metric, mistakes=mistakes)
    check.case("sender 0.0 -> receivers 2.1 values", model, corrupted, clean_cache, corrupted_cache, (0, 0),
               [(2, 1)], "v", metric, mistakes=mistakes)


def _plain_logits(model, tokens):
    with torch.no_grad():
        return model(tokens)


def _direct_variant(*, sign=1.0, full=False, clean_only=False):
    def variant(model, corrupted_tokens, clean_cache, corrupted_cache, metric):
        last = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"

        def one(layer, head):
            name = f"blocks.{layer}.attn.hook_z"
            if full:
                hook = partial(ref.patch_head_hook, head=head, source_cache=clean_cache)
                with torch.no_grad():
                    return metric(model.run_with_hooks(corrupted_tokens, fwd_hooks=[(name, hook)]))
            z = clean_cache[name][:, :, head] - (0 if clean_only else corrupted_cache[name][:, :, head])
            delta = sign * (z @ model.W_O[layer, head])
            with torch.no_grad():
                return metric(model.run_with_hooks(corrupted_tokens, fwd_hooks=[(last, lambda r, hook: r + delta)]))
        return _per_head_loop(model, one)
    return variant


@exercise(difficulty=2, minutes=20, timeout=20.0, atol=1e-4, hints=[
    "A head's output is z @ W_O[layer, head] ([batch, pos, d_model]); its direct path is the residual stream "
    "the unembedding reads, blocks.{last}.hook_resid_post.",
    "Add (clean output - corrupted output) of one head to the corrupted run's final residual stream, so no "
    "later component sees the change.",
    "`delta = (clean_cache[name][:, :, h] - corrupted_cache[name][:, :, h]) @ model.W_O[layer, h]`, then a hook "
    "on the last hook_resid_post returning `resid + delta`.",
])
def test_direct_path_patch(check):
    mistakes = [
        Mistake("sign of the difference", "Add clean minus corrupted: the patch moves the head from its corrupted "
                "value to its clean one.", _direct_variant(sign=-1.0)),
        Mistake("full activation patching", "Add the difference only at the end: patching hook_z lets later "
                "layers see the change (that is the total effect, not the direct one).", _direct_variant(full=True)),
        Mistake("added the clean output", "Add the *difference* between clean and corrupted outputs; the "
                "corrupted output is already in the residual stream.", _direct_variant(clean_only=True)),
    ]
    model, clean, corrupted, answers, clean_cache, corrupted_cache, metric = _runs(check)
    check.case("all heads", model, corrupted, clean_cache, corrupted_cache, metric, mistakes=mistakes)


# -- 5. attribution patching ---------------------------------------------------------------------------

@exercise(difficulty=1, minutes=10, atol=1e-4, hints=[
    "Patching moves the activation from corrupted to clean: the change is clean - corrupted.",
    "To first order the metric changes by (clean - corrupted) . gradient, with the gradient taken on the "
    "corrupted run (where the patch lands).",
    "`((clean_act - corrupted_act) * corrupted_grad).sum(dim=(0, 1, 3))`: keep only the head axis.",
])
def test_attribution_scores(check):
    mistakes = [
        Mistake("wrong sign", "The patch goes corrupted -> clean: use clean - corrupted.",
                lambda c, k, g: ((k - c) * g).sum(dim=(0, 1, 3))),
        Mistake("activation times gradient", "Multiply the gradient by the *change* (clean - corrupted), not by "
                "the activation itself.", lambda c, k, g: (c * g).sum(dim=(0, 1, 3))),
        Mistake("averaged", "Sum over batch, position and d_head: the gradient of a batch-mean metric already "
                "carries the 1/batch.", lambda c, k, g: ((c - k) * g).mean(dim=(0, 1, 3))),
    ]
    check.case("random", check.randn(3, 4, 2, 5), check.randn(3, 4, 2, 5), check.randn(3, 4, 2, 5),
               mistakes=mistakes)
    clean, corrupted = check.randn(2, 3, 6, 4), check.randn(2, 3, 6, 4)
    grad = (clean - corrupted) * torch.tensor([1.0, -1.0, 0.5, -0.5, 2.0, -2.0]).to(clean)[:, None]
    check.case("some heads would lower the metric", clean, corrupted, grad, mistakes=[*mistakes, Mistake(
        "absolute value", "Keep the sign: a negative score means patching that head would *lower* the metric.",
        lambda c, k, g: ((c - k) * g).sum(dim=(0, 1, 3)).abs())])


def _fb_variant(*, negate=False, swap=False):
    def variant(model, tokens, metric, names):
        value, acts, grads = ref.forward_backward_cache(model, tokens, metric, names)
        if negate:
            grads = {k: -v for k, v in grads.items()}
        if swap:
            acts, grads = grads, acts
        return value, acts, grads
    return variant


@exercise(difficulty=2, minutes=15, timeout=20.0, atol=1e-4, hints=[
    "`model.hooks(fwd_hooks=..., bwd_hooks=...)` is a context manager: a forward hook sees each activation, a "
    "backward hook sees the gradient of whatever you call .backward() on with respect to it.",
    "Store tensors under the names you were given (hook.name may be a longer canonical name); detach them.",
    "Inside `with torch.enable_grad(), model.hooks(...)`: `value = metric(model(tokens)); value.backward()`; "
    "return (value.detach(), acts, grads).",
])
def test_forward_backward_cache(check):
    mistakes = [
        Mistake("negated gradient", "Back-propagate the metric itself (value.backward()), not its negative.",
                _fb_variant(negate=True)),
        Mistake("acts and grads swapped", "Return (value, activations, gradients) in that order.",
                _fb_variant(swap=True)),
        Mistake("no value", "Return the metric's value first.",
                lambda model, tokens, metric, names: _fb_variant()(model, tokens, metric, names)[1:]),
    ]
    model, clean, corrupted, answers, clean_cache, corrupted_cache, metric = _runs(check)
    model.requires_grad_(True)
    try:
        check.case("hook_z of two layers", model, corrupted, metric,
                   ["blocks.0.attn.hook_z", "blocks.2.attn.hook_z"], mistakes=mistakes)
        check.case("residual stream", model, clean, metric, ["blocks.1.hook_resid_pre"], mistakes=mistakes)
        check.expect(not any(h.fwd_hooks or h.bwd_hooks for h in model.hook_dict.values()), case="residual stream",
                     mistake="hooks left on the model", message="your hooks are still attached to the model after "
                     "the call, so every later forward pass runs them too",
                     hint="Add the hooks with the `model.hooks(fwd_hooks=..., bwd_hooks=...)` context manager (or "
                          "call model.reset_hooks() before returning), not with model.add_hook alone.")
    finally:
        model.requires_grad_(False)
        model.zero_grad(set_to_none=True)
        model.reset_hooks()


def _attr_variant(*, grad_from="corrupted", sign=1.0, transpose=False):
    def variant(model, clean_tokens, corrupted_tokens, metric):
        names = [f"blocks.{layer}.attn.hook_z" for layer in range(model.cfg.n_layers)]
        _, ca, cg = ref.forward_backward_cache(model, clean_tokens, metric, names)
        _, ka, kg = ref.forward_backward_cache(model, corrupted_tokens, metric, names)
        grads = cg if grad_from == "clean" else kg
        out = torch.stack([sign * ((ca[n] - ka[n]) * grads[n]).sum(dim=(0, 1, 3)) for n in names])
        return out.T if transpose else out
    return variant


@exercise(difficulty=2, minutes=15, timeout=20.0, atol=1e-4, hints=[
    "Use forward_backward_cache on the clean tokens (for the clean activations) and on the corrupted tokens "
    "(activations and gradients), over every layer's hook_z.",
    "Denoising patches land on the corrupted run, so the linear approximation is taken there: use the "
    "corrupted run's gradients.",
    "Stack attribution_scores(clean_z, corrupted_z, corrupted_grad) over layers: [n_layers, n_heads].",
])
def test_attribution_patch_heads(check):
    mistakes = [
        Mistake("clean gradient", "Take the gradient on the corrupted run: that is where the patch is applied.",
                _attr_variant(grad_from="clean")),
        Mistake("wrong sign", "The patch goes corrupted -> clean: multiply the gradient by clean - corrupted.",
                _attr_variant(sign=-1.0)),
        Mistake("transposed", "Return [n_layers, n_heads].", _attr_variant(transpose=True)),
    ]
    model, clean, corrupted, answers, clean_cache, corrupted_cache, metric = _runs(check)
    model.requires_grad_(True)
    try:
        check.case("every head", model, clean, corrupted, metric, mistakes=mistakes)
    finally:
        model.requires_grad_(False)
        model.zero_grad(set_to_none=True)
        model.reset_hooks()


# -- 6. backup behaviour ------------------------------------------------------------------------------

def _de_variant(*, scale=True, sign=1.0, all_pos=False, reduce="mean", bias=False):
    def variant(model, cache, answers):
        direction = sign * (model.W_U[:, answers[:, 0]] - model.W_U[:, answers[:, 1]])
        rows = []
        for layer in range(model.cfg.n_layers):
            z = cache[f"blocks.{layer}.attn.hook_z"]
            s = cache["ln_final.hook_scale"]
            if not all_pos:
                z, s = z[:, -1:], s[:, -1:]
            out = torch.einsum("bphd,hdm->bphm", z, model.W_O[layer])
            if bias:
                out = out + model.b_O[layer]
            if scale:
                out = out / s[:, :, :, None]
            effect = torch.einsum("bphm,mb->bph", out, direction).mean(1)
            rows.append(effect.mean(0) if reduce == "mean" else effect.sum(0))
        return torch.stack(rows)
    return variant


@exercise(difficulty=2, minutes=15, atol=1e-4, hints=[
    "Each head writes z @ W_O[layer] into the residual stream; at the last position, that is "
    "[batch, head, d_model].",
    "The final LayerNorm divides the residual stream by cache['ln_final.hook_scale'] (shape [batch, pos, 1]) "
    "before the unembedding: divide by it too (its centring is linear and the answer direction ignores it).",
    "Project on W_U[:, correct] - W_U[:, wrong] for each prompt and average over the batch: [n_layers, n_heads].",
])
def test_head_direct_effects(check):
    mistakes = [
        Mistake("no LayerNorm scale", "Divide each head's output by the final LayerNorm scale at the last "
                "position: the unembedding reads the normalised stream.", _de_variant(scale=False)),
        Mistake("sign flipped", "Project on W_U[:, correct] - W_U[:, wrong].", _de_variant(sign=-1.0)),
        Mistake("all positions", "Only the last position predicts the answer.", _de_variant(all_pos=True)),
        Mistake("summed over the batch", "Average over the batch.", _de_variant(reduce="sum")),
        Mistake("b_O included", "Leave the attention output bias b_O out: it belongs to the layer, not to any "
                "head (each head's output is z @ W_O alone).", _de_variant(bias=True)),
    ]
    model, clean, corrupted, answers, clean_cache, corrupted_cache, metric = _runs(check)
    check.case("clean run", model, clean_cache, answers, mistakes=mistakes)


# -- where the model breaks (section 7) -----------------------------------------------------------------

def _frame_variant(*, top1=False, count=False, every_pair=False, key_query=False, every_query=False,
                   head_sum=False):
    """frame_scores with one learner mistake switched on."""
    def variant(model, tokens, answers, roles, heads):
        with torch.no_grad():
            logits, cache = model.run_with_cache(tokens)
        if top1:
            right = logits[:, -1].argmax(-1) == answers[:, 0]
        else:
            right = ref.logit_diff(logits, answers) > 0
        out = {"accuracy": (right.float().sum() if count else right.float().mean()).item()}
        rows = torch.arange(tokens.shape[0], device=tokens.device)
        for role, pos in roles.items():
            per_head = []
            for layer, head in heads:
                pattern = cache[f"blocks.{layer}.attn.hook_pattern"][:, head]
                if every_pair:
                    per_head.append(pattern[:, -1, pos])  # [batch, batch]: every prompt with every position
                elif key_query:
                    per_head.append(pattern[rows, pos, -1])
                elif every_query:
                    per_head.append(pattern[rows, :, pos])
                else:
                    per_head.append(pattern[rows, -1, pos])
            stacked = torch.stack(per_head)
            out[role] = (stacked.mean(tuple(range(1, stacked.ndim))).sum() if head_sum else stacked.mean()).item()
        return out
    return variant


def _frame_inputs(check, batch: int = 6):
    """Prompts with the roles at different positions in different prompts (as both name orders give)."""
    tokens = check.randint(12, batch, N_POS + 1)
    answers = torch.stack([tokens[:, 1], (tokens[:, 1] + 1 + check.randint(10, batch)) % 12], dim=1)
    order = torch.stack([torch.randperm(N_POS - 1, generator=check.rng)[:3] + 1 for _ in range(batch)])
    roles = {"IO": order[:, 0], "S1": order[:, 1], "S2": order[:, 2]}
    return tokens, answers, roles


@exercise(difficulty=2, minutes=15, atol=1e-5, hints=[
    "One run_with_cache; accuracy is (logit_diff(logits, answers) > 0), averaged over prompts.",
    "For one head, `cache[f'blocks.{layer}.attn.hook_pattern'][:, head]` is [batch, query, key]: take the "
    "query at -1 and, in row b, the key at `positions[b]`.",
    "Pair each prompt with its own position: `rows = torch.arange(batch)`, then `pattern[rows, head, -1, "
    "positions]` is [batch]. Stack one of those per head and take .mean().item().",
])
def test_frame_scores(check):
    mistakes = [
        Mistake("every prompt with every position", "`pattern[:, head, -1, positions]` pairs every prompt with "
                "every prompt's position ([batch, batch]); pair prompt b with positions[b] only: index the batch "
                "axis with torch.arange(batch) as well.", _frame_variant(every_pair=True)),
        Mistake("top-1 over the vocabulary", "Accuracy here is the two-way choice the logit difference makes: "
                "does the correct name out-score the wrong one (logit_diff > 0)? Whether it is the top token "
                "of the whole vocabulary is a different question.", _frame_variant(top1=True)),
        Mistake("query and key swapped", "The pattern is [batch, head, query, key]: attention *from* the last "
                "position is the query index -1, *to* the name the key index. From a name to the end it is 0 "
                "(the model is causal).", _frame_variant(key_query=True)),
        Mistake("every query position", "Only the last position's attention matters (that is where the answer "
                "is read): query index -1, not an average over all queries.", _frame_variant(every_query=True)),
        Mistake("summed over heads", "Average over the heads as well as the prompts, so the value stays a "
                "fraction of one head's attention.", _frame_variant(head_sum=True)),
        Mistake("count, not fraction", "Accuracy is a fraction of the prompts: .mean(), not .sum().",
                _frame_variant(count=True)),
    ]
    model = _model(check)
    tokens, answers, roles = _frame_inputs(check)
    check.case("three roles, two heads", model, tokens, answers, roles, [(1, 0), (2, 1)], mistakes=mistakes)
    tokens, answers, roles = _frame_inputs(check, batch=4)
    check.case("one role, three heads", model, tokens, answers, {"X": roles["S2"]}, [(0, 1), (1, 1), (2, 0)],
               mistakes=mistakes)


# -- 7. is the circuit right? -------------------------------------------------------------------------

def _circuit_variant(*, inverted=False, zero=False, dims=(0,)):
    def variant(model, tokens, answers, circuit, reference_cache):
        def ablate(z, hook, layer):
            z = z.clone()
            mean = reference_cache[f"blocks.{layer}.attn.hook_z"].mean(dim=dims)
            if zero:
                mean = torch.zeros_like(mean)
            for head in range(model.cfg.n_heads):
                if ((layer, head) in circuit) == inverted:
                    z[:, :, head] = mean[..., head, :]
            return z
        hooks = [(f"blocks.{layer}.attn.hook_z", partial(ablate, layer=layer)) for layer in range(model.cfg.n_layers)]
        with torch.no_grad():
            return ref.logit_diff(model.run_with_hooks(tokens, fwd_hooks=hooks), answers).mean()
    return variant


@exercise(difficulty=2, minutes=20, timeout=20.0, atol=1e-4, hints=[
    "One hook per layer on hook_z: replace every head *not* in `circuit` by its mean over the reference "
    "run's batch (position by position).",
    "`reference_cache[name].mean(0)` is [pos, head, d_head]; assign z[:, :, head] = mean[:, head].",
    "Run all the hooks together, then return logit_diff(logits, answers).mean().",
])
def test_circuit_logit_diff(check):
    mistakes = [
        Mistake("ablated the circuit", "Mean-ablate the heads *outside* the circuit; the circuit's heads run "
                "normally.", _circuit_variant(inverted=True)),
        Mistake("zero ablation", "Replace the other heads by their reference *mean*, not zero: zero is far "
                "off the distribution the model saw.", _circuit_variant(zero=True)),
        Mistake("mean over positions", "Average over the reference batch only, keeping each position's mean.",
                _circuit_variant(dims=(0, 1))),
    ]
    model, clean, corrupted, answers, clean_cache, corrupted_cache, metric = _runs(check)
    check.case("two heads", model, clean, answers, [(0, 1), (2, 0)], corrupted_cache, mistakes=mistakes)
    check.case("one head per layer", model, clean, answers, [(0, 0), (1, 1), (2, 1)], corrupted_cache,
               mistakes=mistakes)


def _minimal_variant(*, remaining=False, against_model=False, single=False, absolute=False):
    def variant(model, tokens, answers, circuit, reference_cache):
        full = ref.circuit_logit_diff(model, tokens, answers, circuit, reference_cache)
        if against_model:
            with torch.no_grad():
                full = ref.logit_diff(model(tokens), answers).mean()
        scores = {}
        for head in circuit:
            if single:
                everything = [(l, h) for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
                rest = [h for h in everything if h != head]
            else:
                rest = [h for h in circuit if h != head]
            without = ref.circuit_logit_diff(model, tokens, answers, rest, reference_cache)
            ratio = without / full
            scores[head] = float(full - without) if absolute else float(ratio if remaining else 1 - ratio)
        return scores
    return variant


@exercise(difficulty=2, minutes=15, timeout=20.0, atol=1e-4, hints=[
    "For each head in the circuit, run circuit_logit_diff with the circuit minus that head.",
    "Compare with the whole circuit's logit difference: score = 1 - without_head / with_head.",
    "Return a dict {head: float}; a head whose removal costs nothing (score near 0) is not needed.",
])
def test_minimality_scores(check):
    mistakes = [
        Mistake("fraction kept", "Report the fraction *lost*, 1 - without / with.", _minimal_variant(remaining=True)),
        Mistake("compared with the full model", "Compare with the circuit's own logit difference (the circuit "
                "with every head in it), not the unablated model's.", _minimal_variant(against_model=True)),
        Mistake("ablated one head from the full model", "Remove the head from the *circuit* (everything outside "
                "stays mean-ablated), not from the full model.", _minimal_variant(single=True)),
        Mistake("absolute drop", "Report the *fraction* of the circuit's logit difference lost, 1 - without / with, "
                "not the difference in logits.", _minimal_variant(absolute=True)),
    ]
    model, clean, corrupted, answers, clean_cache, corrupted_cache, metric = _runs(check)
    check.case("three heads", model, clean, answers, [(0, 1), (1, 0), (2, 0)], corrupted_cache,
               mistakes=mistakes)
