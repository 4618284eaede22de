"""Learner variants for the 4.1 "Patching" graders."""

from functools import partial

import einops
import torch

from solutions.ch4_patching import patching as ref
from tests.grading.variants import Right, Wrong, test_variant_is_graded_as_expected  # noqa: F401 (runs VARIANTS)

# -- logit_diff / normalised_metric ---------------------------------------------------------------


def _ld_indexing(logits, answers):
    rows = torch.arange(len(answers))
    return logits[rows, -1, answers[:, 0]] - logits[rows, -1, answers[:, 1]]


def _ld_flipped(logits, answers):
    rows = torch.arange(len(answers))
    return logits[rows, -1, answers[:, 1]] - logits[rows, -1, answers[:, 0]]


def _ld_probs(logits, answers):
    probs = logits[:, -1].softmax(-1)
    return probs.gather(1, answers[:, :1])[:, 0] - probs.gather(1, answers[:, 1:])[:, 0]


def _ld_first(logits, answers):
    return logits[:, 0].gather(1, answers[:, :1])[:, 0] - logits[:, 0].gather(1, answers[:, 1:])[:, 0]


def _ld_log_probs(logits, answers):
    lp = logits[:, -1].log_softmax(-1)
    return lp.gather(1, answers)[:, 0] - lp.gather(1, answers)[:, 1]


# -- ablation hooks --------------------------------------------------------------------------------------


def _resample_in_place(z, hook, head, perm):
    z[:, :, head] = z[perm, :, head].clone()
    return z


def _resample_cat(z, hook, head, perm):
    parts = [z[:, :, h:h + 1] if h != head else z[perm, :, h:h + 1] for h in range(z.shape[2])]
    return torch.cat(parts, dim=2)


def _mean_ref_where(act, hook, reference, head=None):
    mean = reference.mean(0, keepdim=True).expand_as(act)
    if head is None:
        return mean.clone()
    mask = torch.zeros(act.shape[2], dtype=torch.bool, device=act.device)
    mask[head] = True
    return torch.where(mask[:, None], mean, act)


def _mean_ref_self(act, hook, reference, head=None):
    act = act.clone()
    mean = act.mean(0)
    if head is None:
        return mean.expand_as(act).clone()
    act[:, :, head] = mean[:, head]
    return act


def _mean_ref_pos(act, hook, reference, head=None):
    act = act.clone()
    mean = reference.mean(dim=(0, 1))
    if head is None:
        act[:] = mean
    else:
        act[:, :, head] = mean[head]
    return act


def _mean_ref_all_heads(act, hook, reference, head=None):
    return reference.mean(0).expand_as(act).clone()


def _mean_ref_zero(act, hook, reference, head=None):
    act = act.clone()
    if head is None:
        return torch.zeros_like(act)
    act[:, :, head] = 0
    return act


def _ablation(model, tokens, answers, make_hook, *, transpose=False, accumulate=False, total=False):
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            name = f"blocks.{layer}.attn.hook_z"
            if accumulate:
                model.add_hook(name, make_hook(layer, head))
                logits = model(tokens)
            else:
                logits = model.run_with_hooks(tokens, fwd_hooks=[(name, make_hook(layer, head))])
            ld = ref.logit_diff(logits, answers)
            out[layer, head] = ld.sum() if total else ld.mean()
    model.reset_hooks()
    return out.T if transpose else out


# -- activation patching ----------------------------------------------------------------------------------


def _pos_hook_all(act, hook, pos, source_cache):
    return source_cache[hook.name].clone()


def _pos_hook_next(act, hook, pos, source_cache):
    act = act.clone()
    act[:, pos + 1] = source_cache[hook.name][:, pos + 1]
    return act


def _pos_hook_no_return(act, hook, pos, source_cache):
    act[:, pos] = source_cache[hook.name][:, pos]


def _pos_hook_cat(act, hook, pos, source_cache):
    source = source_cache[hook.name]
    return torch.cat([act[:, :pos], source[:, pos:pos + 1], act[:, pos + 1:]], dim=1)


def _resid(model, tokens, source_cache, metric, *, transpose=False, post=False, every=False):
    out = torch.zeros(model.cfg.n_layers, tokens.shape[1])
    for layer in range(model.cfg.n_layers):
        name = f"blocks.{layer}.hook_resid_{'post' if post else 'pre'}"
        for pos in range(tokens.shape[1]):
            hook = _pos_hook_all if every else ref.patch_position_hook
            logits = model.run_with_hooks(tokens, fwd_hooks=[(name, partial(hook, pos=pos, source_cache=source_cache))])
            out[layer, pos] = metric(logits)
    return out.T if transpose else out


def _resid_tl(model, tokens, source_cache, metric):
    import transformer_lens.patching as tl_patching
    return tl_patching.get_act_patch_resid_pre(model, tokens, source_cache, metric)


def _head_hook_all(act, hook, head, source_cache, pos=None):
    act = act.clone()
    if pos is None:
        return source_cache[hook.name].clone()
    act[:, pos] = source_cache[hook.name][:, pos]
    return act


def _head_hook_axis2(act, hook, head, source_cache, pos=None):
    act = act.clone()
    where = slice(None) if pos is None else pos
    act[:, where, head] = source_cache[hook.name][:, where, head]
    return act


def _head_hook_ignore_pos(act, hook, head, source_cache, pos=None):
    return ref.patch_head_hook(act, hook, head, source_cache)


def _head_hook_pattern_key(act, hook, head, source_cache, pos=None):
    if not hook.name.endswith("hook_pattern") or pos is None:
        return ref.patch_head_hook(act, hook, head, source_cache, pos)
    act = act.clone()
    act[:, head, :, pos] = source_cache[hook.name][:, head, :, pos]
    return act


def _head_hook_pattern_no_pos(act, hook, head, source_cache, pos=None):
    if not hook.name.endswith("hook_pattern"):
        return ref.patch_head_hook(act, hook, head, source_cache, pos)
    act = act.clone()
    act[:, head] = source_cache[hook.name][:, head]
    return act


def _head_hook_mask(act, hook, head, source_cache, pos=None):
    source = source_cache[hook.name]
    if hook.name.endswith("hook_pattern"):
        mask = torch.zeros(act.shape[1], act.shape[2], 1, dtype=torch.bool, device=act.device)
        if pos is None:
            mask[head] = True
        else:
            mask[head, pos] = True
    else:
        mask = torch.zeros(act.shape[1], act.shape[2], 1, dtype=torch.bool, device=act.device)
        if pos is None:
            mask[:, head] = True
        else:
            mask[pos, head] = True
    return torch.where(mask, source, act)


def _heads(model, tokens, source_cache, metric, activation="z", *, transpose=False, always_z=False,
           accumulate=False):
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            name = f"blocks.{layer}.attn.hook_{'z' if always_z else activation}"
            hook = partial(ref.patch_head_hook, head=head, source_cache=source_cache)
            if accumulate:
                model.add_hook(name, hook)
                out[layer, head] = metric(model(tokens))
            else:
                out[layer, head] = metric(model.run_with_hooks(tokens, fwd_hooks=[(name, hook)]))
    model.reset_hooks()
    return out.T if transpose else out


def _heads_tl(model, tokens, source_cache, metric, activation="z"):
    import transformer_lens.patching as tl_patching
    fn = {"z": tl_patching.get_act_patch_attn_head_out_all_pos, "q": tl_patching.get_act_patch_attn_head_q_all_pos,
          "k": tl_patching.get_act_patch_attn_head_k_all_pos, "v": tl_patching.get_act_patch_attn_head_v_all_pos,
          "pattern": tl_patching.get_act_patch_attn_head_pattern_all_pos}[activation]
    return fn(model, tokens, source_cache, metric)


def _by_pos(model, tokens, source_cache, metric, *, head_first=False, every=False, activation="z"):
    n_layers, n_heads, n_pos = model.cfg.n_layers, model.cfg.n_heads, tokens.shape[1]
    out = torch.zeros(n_layers, n_heads, n_pos) if head_first else torch.zeros(n_layers, n_pos, n_heads)
    for layer in range(n_layers):
        for head in range(n_heads):
            for pos in range(n_pos):
                hook = partial(ref.patch_head_hook, head=head, source_cache=source_cache, pos=None if every else pos)
                value = metric(model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_{activation}", hook)]))
                if head_first:
                    out[layer, head, pos] = value
                else:
                    out[layer, pos, head] = value
    return out


def _by_pos_tl(model, tokens, source_cache, metric):
    import transformer_lens.patching as tl_patching
    return tl_patching.get_act_patch_attn_head_out_by_pos(model, tokens, source_cache, metric)


def _dn(model, clean_tokens, corrupted_tokens, metric, *, swap=False, one_cache=False, mixed=False):
    _, cc = model.run_with_cache(clean_tokens)
    _, kc = model.run_with_cache(corrupted_tokens)
    if mixed:
        result = {"denoise": ref.patch_heads(model, clean_tokens, kc, metric),
                  "noise": ref.patch_heads(model, corrupted_tokens, cc, metric)}
    else:
        result = {"denoise": ref.patch_heads(model, corrupted_tokens, cc, metric),
                  "noise": ref.patch_heads(model, clean_tokens, cc if one_cache else kc, metric)}
    if swap:
        result = {"denoise": result["noise"], "noise": result["denoise"]}
    return result


# -- path patching -------------------------------------------------------------------------------------


def _path(model, corrupted_tokens, clean_cache, corrupted_cache, sender, receivers, receiver_input, metric, *,
          freeze=True, keep_sender_clean=True, only_receiver_heads=True, match_hook_name=False):
    store = {}
    hooks = []
    for layer in range(model.cfg.n_layers):
        zname = f"blocks.{layer}.attn.hook_z"

        def z_hook(z, hook, layer=layer, zname=zname):
            new = corrupted_cache[zname].clone() if freeze else z.clone()
            if layer == sender[0] and keep_sender_clean:
                new[:, :, sender[1]] = clean_cache[zname][:, :, sender[1]]
            return new
        hooks.append((zname, z_hook))
    layers = {layer for layer, _ in receivers}
    for layer in layers:
        rname = f"blocks.{layer}.attn.hook_{receiver_input}"
        hooks.append((rname, lambda act, hook, rname=rname: store.__setitem__(rname, act.clone())))
    model.run_with_hooks(corrupted_tokens, fwd_hooks=hooks)
    patch_hooks = []
    for layer in layers:
        rname = f"blocks.{layer}.attn.hook_{receiver_input}"
        heads = [h for l, h in receivers if l == layer]

        def r_hook(act, hook, rname=rname, heads=heads):
            if match_hook_name and hook.name != rname:  # the bridge's hook.name is the canonical one
                return act
            if not only_receiver_heads:
                return store[rname]
            act = act.clone()
            act[:, :, heads] = store[rname][:, :, heads]
            return act
        patch_hooks.append((rname, r_hook))
    return metric(model.run_with_hooks(corrupted_tokens, fwd_hooks=patch_hooks))


def _direct(model, corrupted_tokens, clean_cache, corrupted_cache, metric, *, flip=False, full=False, clean_only=False):
    last = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        name = f"blocks.{layer}.attn.hook_z"
        clean_out = einops.einsum(clean_cache[name], model.W_O[layer], "b p h d, h d m -> b p h m")
        corrupted_out = einops.einsum(corrupted_cache[name], model.W_O[layer], "b p h d, h d m -> b p h m")
        for head in range(model.cfg.n_heads):
            if full:
                hook = partial(ref.patch_head_hook, head=head, source_cache=clean_cache)
                out[layer, head] = metric(model.run_with_hooks(corrupted_tokens, fwd_hooks=[(name, hook)]))
                continue
            delta = clean_out[:, :, head] - (0 if clean_only else corrupted_out[:, :, head])
            if flip:
                delta = -delta
            out[layer, head] = metric(model.run_with_hooks(corrupted_tokens,
                                                           fwd_hooks=[(last, lambda r, hook, d=delta: r + d)]))
    return out


# -- attribution -----------------------------------------------------------------------------------------


def _attr_einsum(clean_act, corrupted_act, corrupted_grad):
    return einops.einsum(clean_act - corrupted_act, corrupted_grad, "b p h d, b p h d -> h")


def _fb(model, tokens, metric, names, *, negate=False, swap=False, drop_value=False):
    acts, grads = {}, {}
    fwd = [(n, lambda a, hook, n=n: acts.__setitem__(n, a.detach())) for n in names]
    bwd = [(n, lambda g, hook, n=n: grads.__setitem__(n, g.detach())) for n in names]
    with torch.enable_grad(), model.hooks(fwd_hooks=fwd, bwd_hooks=bwd):
        value = metric(model(tokens))
        (-value if negate else value).backward()
    model.zero_grad(set_to_none=True)
    if swap:
        acts, grads = grads, acts
    return (acts, grads) if drop_value else (value.detach(), acts, grads)


def _fb_cache_then_grad(model, tokens, metric, names):
    _, cache = model.run_with_cache(tokens)
    acts = {n: cache[n] for n in names}
    grads = {}
    bwd = [(n, lambda g, hook, n=n: grads.__setitem__(n, g.detach())) for n in names]
    with torch.enable_grad(), model.hooks(bwd_hooks=bwd):
        value = metric(model(tokens))
        value.backward()
    model.zero_grad(set_to_none=True)
    return value.detach(), acts, grads


def _attr(model, clean_tokens, corrupted_tokens, metric, *, clean_grad=False, flip=False, transpose=False):
    names = [f"blocks.{layer}.attn.hook_z" for layer in range(model.cfg.n_layers)]
    _, ca, cg = ref.forward_backward_cache(model, clean_tokens, metric, names)
    _, ka, kg = ref.forward_backward_cache(model, corrupted_tokens, metric, names)
    rows = []
    for n in names:
        diff = (ka[n] - ca[n]) if flip else (ca[n] - ka[n])
        rows.append((diff * (cg[n] if clean_grad else kg[n])).sum((0, 1, 3)))
    out = torch.stack(rows)
    return out.T if transpose else out


# -- direct effects ------------------------------------------------------------------------------------


def _de(model, cache, answers, *, no_scale=False, flip=False, every_pos=False, total=False):
    w = model.W_U[:, answers[:, 0]] - model.W_U[:, answers[:, 1]]
    if flip:
        w = -w
    rows = []
    for layer in range(model.cfg.n_layers):
        z = cache[f"blocks.{layer}.attn.hook_z"]
        scale = cache["ln_final.hook_scale"]
        if not every_pos:
            z, scale = z[:, -1:], scale[:, -1:]
        head_out = einops.einsum(z, model.W_O[layer], "b p h d, h d m -> b p h m")
        if not no_scale:
            head_out = head_out / scale[..., None]
        effect = einops.einsum(head_out, w, "b p h m, m b -> b p h").mean(1)
        rows.append(effect.sum(0) if total else effect.mean(0))
    return torch.stack(rows)


# -- circuits ---------------------------------------------------------------------------------------------


def _circuit(model, tokens, answers, circuit, reference_cache, *, invert=False, zero=False, pos_mean=False):
    hooks = []
    for layer in range(model.cfg.n_layers):
        name = f"blocks.{layer}.attn.hook_z"
        mean = reference_cache[name].mean((0, 1) if pos_mean else 0)
        ablate = [h for h in range(model.cfg.n_heads) if ((layer, h) in circuit) == invert]

        def hook(z, hook, mean=mean, ablate=ablate):
            z = z.clone()
            for h in ablate:
                z[:, :, h] = 0.0 if zero else mean[..., h, :]
            return z
        hooks.append((name, hook))
    return ref.logit_diff(model.run_with_hooks(tokens, fwd_hooks=hooks), answers).mean()


def _minimal(model, tokens, answers, circuit, reference_cache, *, kept=False, vs_model=False, from_full=False):
    base = (ref.logit_diff(model(tokens), answers).mean() if vs_model
            else ref.circuit_logit_diff(model, tokens, answers, circuit, reference_cache))
    everything = [(l, h) for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
    result = {}
    for head in circuit:
        rest = [x for x in (everything if from_full else circuit) if x != head]
        frac = (ref.circuit_logit_diff(model, tokens, answers, rest, reference_cache) / base).item()
        result[head] = frac if kept else 1 - frac
    return result


VARIANTS = {
    "ch4.logit_diff": [
        Wrong("wrong minus correct", _ld_flipped, mistake="sign flipped"),
        Wrong("probability difference", _ld_probs, mistake="probabilities"),
        Wrong("first position", _ld_first, mistake="first position"),
        Wrong("mean over the batch", lambda logits, answers: ref.logit_diff(logits, answers).mean(), mistake="averaged"),
        Right("advanced indexing", _ld_indexing),
        Right("log-prob difference (the normaliser cancels)", _ld_log_probs),
    ],
    "ch4.normalised_metric": [
        Wrong("1 = corrupted", lambda v, c, k: (v - c) / (k - c), mistake="inverted"),
        Wrong("divided by clean only", lambda v, c, k: v / c, mistake="no baseline"),
        Wrong("(v - corrupted) / clean", lambda v, c, k: (v - k) / c, mistake="wrong denominator"),
        Right("1 - distance from clean", lambda v, c, k: 1 - (c - v) / (c - k)),
    ],
    "ch4.resample_ablate_head_hook": [
        Wrong("returned z unchanged", lambda z, hook, head, perm: z.clone(), mistake="not permuted"),
        Wrong("z[perm] for every head", lambda z, hook, head, perm: z[perm], mistake="all heads"),
        Wrong("no return", lambda z, hook, head, perm: None, mistake="forgot to return"),
        Wrong("edits in place", _resample_in_place, mistake="in-place edit"),
        Right("torch.cat over heads", _resample_cat),
    ],
    "ch4.mean_ablate_from_reference_hook": [
        Wrong("mean over batch and positions", _mean_ref_pos, mistake="mean over positions"),
        Wrong("mean of the ablated batch", _mean_ref_self, mistake="mean of the current batch"),
        Wrong("replaced every head", _mean_ref_all_heads, mistake="all heads"),
        Wrong("zeros", _mean_ref_zero, mistake="zeroed"),
        Right("torch.where with a head mask", _mean_ref_where),
    ],
    "ch4.head_ablation_logit_diffs": [
        Wrong("[head, layer]", partial(_ablation, transpose=True), mistake="transposed"),
        Wrong("add_hook without reset", partial(_ablation, accumulate=True), mistake="hooks accumulate"),
        Wrong("summed logit diff", partial(_ablation, total=True), mistake="summed"),
        Right("plain loops", _ablation),
    ],
    "ch4.patch_position_hook": [
        Wrong("patched every position", _pos_hook_all, mistake="all positions"),
        Wrong("patched pos + 1", _pos_hook_next, mistake="wrong position"),
        Wrong("no return", _pos_hook_no_return, mistake="in-place edit"),
        Right("torch.cat", _pos_hook_cat),
    ],
    "ch4.patch_resid_by_layer_and_pos": [
        Wrong("[pos, layer]", partial(_resid, transpose=True), mistake="transposed"),
        Wrong("hook_resid_post", partial(_resid, post=True), mistake="resid_post"),
        Wrong("whole residual stream", partial(_resid, every=True), mistake="all positions"),
        Right("loops", _resid),
        Right("transformer_lens.patching", _resid_tl),
    ],
    "ch4.patch_head_hook": [
        Wrong("every head", _head_hook_all, mistake="all heads"),
        Wrong("pattern on axis 2", _head_hook_axis2, mistake="pattern head axis"),
        Wrong("pos ignored", _head_hook_ignore_pos, mistake="position ignored"),
        Wrong("pattern patched at the key position", _head_hook_pattern_key, mistake="pattern key position"),
        Wrong("pos ignored for the pattern only", _head_hook_pattern_no_pos, mistake="position ignored"),
        Right("torch.where with a mask", _head_hook_mask),
    ],
    "ch4.patch_heads": [
        Wrong("[head, layer]", partial(_heads, transpose=True), mistake="transposed"),
        Wrong("always hook_z", partial(_heads, always_z=True), mistake="always z"),
        Wrong("add_hook without reset", partial(_heads, accumulate=True), mistake="hooks accumulate"),
        Right("loops", _heads),
        Right("transformer_lens.patching", _heads_tl),
    ],
    "ch4.patch_heads_by_pos": [
        Wrong("[layer, head, pos]", partial(_by_pos, head_first=True), mistake="[layer, head, pos]"),
        Wrong("all positions each run", partial(_by_pos, every=True), mistake="all positions"),
        Wrong("patched values", lambda model, tokens, source_cache, metric: torch.stack(
            [_heads(model, tokens, source_cache, metric, "v")] * tokens.shape[1], dim=1), mistake="wrong activation"),
        Right("transformer_lens.patching", _by_pos_tl),
    ],
    "ch4.denoise_and_noise": [
        Wrong("labels swapped", partial(_dn, swap=True), mistake="swapped"),
        Wrong("noising from the clean cache", partial(_dn, one_cache=True), mistake="one cache"),
        Wrong("ran the wrong prompts", partial(_dn, mixed=True), mistake="swapped"),
        Right("two calls", _dn),
    ],
    "ch4.path_patch": [
        Wrong("nothing frozen", partial(_path, freeze=False), mistake="other heads not frozen"),
        Wrong("sender frozen as well", partial(_path, keep_sender_clean=False), mistake="patched nothing"),
        Wrong("receivers matched by hook.name (an alias)", partial(_path, match_hook_name=True),
              mistake="patched nothing"),
        Wrong("patched whole receiver layer", partial(_path, only_receiver_heads=False),
              mistake="whole receiver layer"),
        Right("closures", _path),
    ],
    "ch4.direct_path_patch": [
        Wrong("corrupted - clean", partial(_direct, flip=True), mistake="sign of the difference"),
        Wrong("patched hook_z", partial(_direct, full=True), mistake="full activation patching"),
        Wrong("added the clean output", partial(_direct, clean_only=True), mistake="added the clean output"),
        Right("einops outputs", _direct),
    ],
    "ch4.attribution_scores": [
        Wrong("corrupted - clean", lambda c, k, g: ((k - c) * g).sum((0, 1, 3)), mistake="wrong sign"),
        Wrong("activation x gradient", lambda c, k, g: (c * g).sum((0, 1, 3)), mistake="activation times gradient"),
        Wrong("mean", lambda c, k, g: ((c - k) * g).mean((0, 1, 3)), mistake="averaged"),
        Right("einops", _attr_einsum),
    ],
    "ch4.forward_backward_cache": [
        Wrong("backward of -metric", partial(_fb, negate=True), mistake="negated gradient"),
        Wrong("returned (value, grads, acts)", partial(_fb, swap=True), mistake="acts and grads swapped"),
        Wrong("returned (acts, grads)", partial(_fb, drop_value=True), mistake="no value"),
        Right("lambdas", _fb),
        Right("run_with_cache, then backward hooks", _fb_cache_then_grad),
    ],
    "ch4.attribution_patch_heads": [
        Wrong("gradient on the clean run", partial(_attr, clean_grad=True), mistake="clean gradient"),
        Wrong("corrupted - clean", partial(_attr, flip=True), mistake="wrong sign"),
        Wrong("[head, layer]", partial(_attr, transpose=True), mistake="transposed"),
        Right("loops", _attr),
    ],
    "ch4.head_direct_effects": [
        Wrong("ignores the LayerNorm scale", partial(_de, no_scale=True), mistake="no LayerNorm scale"),
        Wrong("wrong - correct", partial(_de, flip=True), mistake="sign flipped"),
        Wrong("every position", partial(_de, every_pos=True), mistake="all positions"),
        Wrong("summed over prompts", partial(_de, total=True), mistake="summed over the batch"),
        Right("einops", _de),
    ],
    "ch4.circuit_logit_diff": [
        Wrong("ablated the circuit's heads", partial(_circuit, invert=True), mistake="ablated the circuit"),
        Wrong("zeros", partial(_circuit, zero=True), mistake="zero ablation"),
        Wrong("mean over positions too", partial(_circuit, pos_mean=True), mistake="mean over positions"),
        Right("one closure per layer", _circuit),
    ],
    "ch4.minimality_scores": [
        Wrong("fraction kept", partial(_minimal, kept=True), mistake="fraction kept"),
        Wrong("against the unablated model", partial(_minimal, vs_model=True), mistake="compared with the full model"),
        Wrong("removed from the full model", partial(_minimal, from_full=True),
              mistake="ablated one head from the full model"),
        Right("item()s", _minimal),
    ],
}


# -- mistakes found by an audit with new learner attempts -------------------------------------------------


def _fb_hooks_left_on(model, tokens, metric, names):
    acts, grads = {}, {}
    for n in names:
        model.add_hook(n, lambda a, hook, n=n: acts.__setitem__(n, a.detach()))
        model.add_hook(n, lambda g, hook, n=n: grads.__setitem__(n, g.detach()), dir="bwd")
    with torch.enable_grad():
        value = metric(model(tokens))
        value.backward()
    model.zero_grad(set_to_none=True)
    return value.detach(), acts, grads


def _ablation_ignoring_make_hook(model, tokens, answers, make_hook):
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            def zero(z, hook, head=head):
                z = z.clone()
                z[:, :, head] = 0.0
                return z
            with torch.no_grad():
                logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", zero)])
            out[layer, head] = ref.logit_diff(logits, answers).mean()
    return out


def _attribution_abs(clean_act, corrupted_act, corrupted_grad):
    return ((clean_act - corrupted_act) * corrupted_grad).sum(dim=(0, 1, 3)).abs()


def _patch_heads_float64(model, tokens, source_cache, metric, activation="z"):
    return ref.patch_heads(model, tokens, source_cache, metric, activation).double()


AUDIT_VARIANTS = {
    "ch4.forward_backward_cache": [Wrong("add_hook, never removed", _fb_hooks_left_on,
                                         mistake="hooks left on the model")],
    "ch4.head_ablation_logit_diffs": [Wrong("zeroes heads itself, ignores make_hook", _ablation_ignoring_make_hook,
                                            mistake="ignored make_hook")],
    "ch4.attribution_scores": [Wrong("absolute value of the score", _attribution_abs, mistake="absolute value")],
    "ch4.patch_heads": [Right("float64 result", _patch_heads_float64)],
}
for _id, _variants in AUDIT_VARIANTS.items():
    VARIANTS[_id] = VARIANTS[_id] + _variants


def _nm_clamped(value, clean_value, corrupted_value):
    return ((value - corrupted_value) / (clean_value - corrupted_value)).clamp(0.0, 1.0)


def _de_with_bias(model, cache, answers):
    direction = model.W_U[:, answers[:, 0]] - model.W_U[:, answers[:, 1]]
    scale = cache["ln_final.hook_scale"][:, -1]
    out = []
    for layer in range(model.cfg.n_layers):
        z = cache[f"blocks.{layer}.attn.hook_z"][:, -1]
        head_out = einops.einsum(z, model.W_O[layer], "b h d, h d m -> b h m") + model.b_O[layer]
        out.append(einops.einsum(head_out / scale[:, :, None], direction, "b h m, m b -> b h").mean(0))
    return torch.stack(out)


def _min_absolute(model, tokens, answers, circuit, reference_cache):
    full = ref.circuit_logit_diff(model, tokens, answers, circuit, reference_cache)
    return {h: float(full - ref.circuit_logit_diff(model, tokens, answers, [c for c in circuit if c != h],
                                                   reference_cache)) for h in circuit}


MORE_AUDIT_VARIANTS = {
    "ch4.normalised_metric": [Wrong("clamped to [0, 1]", _nm_clamped, mistake="clamped")],
    "ch4.head_direct_effects": [Wrong("b_O added to every head", _de_with_bias, mistake="b_O included")],
    "ch4.minimality_scores": [Wrong("logit difference lost, not the fraction", _min_absolute, mistake="absolute drop")],
}
for _id, _variants in MORE_AUDIT_VARIANTS.items():
    VARIANTS[_id] = VARIANTS[_id] + _variants


# -- frame_scores ---------------------------------------------------------------------------------------


def _fs(model, tokens, answers, roles, heads, *, broadcast=False, top1=False, swapped=False, sum_heads=False):
    logits, cache = model.run_with_cache(tokens)
    last = logits[:, -1]
    if top1:
        accuracy = (last.argmax(-1) == answers[:, 0]).float().mean().item()
    else:
        accuracy = (ref.logit_diff(logits, answers) > 0).float().mean().item()
    out = {"accuracy": accuracy}
    for role, pos in roles.items():
        values = []
        for layer, head in heads:
            pattern = cache[f"blocks.{layer}.attn.hook_pattern"]
            if broadcast:
                values.append(pattern[:, head, -1, pos].mean())
            elif swapped:
                values.append(pattern[torch.arange(len(tokens)), head, pos, -1].mean())
            else:
                values.append(pattern[torch.arange(len(tokens)), head, -1, pos].mean())
        out[role] = float(sum(values)) if sum_heads else float(sum(values) / len(values))
    return out


def _fs_gather(model, tokens, answers, roles, heads):
    logits, cache = model.run_with_cache(tokens)
    last = logits[:, -1]
    correct, wrong = last.gather(1, answers[:, :1]), last.gather(1, answers[:, 1:])
    out = {"accuracy": (correct > wrong).float().mean().item()}
    # [batch, heads, key]
    patterns = torch.stack([cache[f"blocks.{l}.attn.hook_pattern"][:, h, -1] for l, h in heads], dim=1)
    for role, pos in roles.items():
        index = pos[:, None, None].expand(-1, len(heads), 1)
        out[role] = patterns.gather(2, index).mean().item()
    return out


def _fs_loop(model, tokens, answers, roles, heads):
    logits, cache = model.run_with_cache(tokens)
    diffs = ref.logit_diff(logits, answers)
    out = {"accuracy": sum(float(d) > 0 for d in diffs) / len(diffs)}
    for role, pos in roles.items():
        total = 0.0
        for layer, head in heads:
            for b in range(len(tokens)):
                total += cache[f"blocks.{layer}.attn.hook_pattern"][b, head, -1, pos[b]].item()
        out[role] = total / (len(heads) * len(tokens))
    return out


VARIANTS["ch4.frame_scores"] = [
    Wrong("pattern[:, head, -1, pos]", partial(_fs, broadcast=True), mistake="every prompt with every position"),
    Wrong("top-1 accuracy", partial(_fs, top1=True), mistake="top-1 over the vocabulary"),
    Wrong("attention from the name to the end", partial(_fs, swapped=True), mistake="query and key swapped"),
    Wrong("heads summed", partial(_fs, sum_heads=True), mistake="summed over heads"),
    Right("gather", _fs_gather),
    Right("loops over prompts", _fs_loop),
]
