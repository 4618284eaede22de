"""Reference solutions for 4.1 "Patching": metrics, ablations, activation, path and attribution patching.

Conventions. `metric(logits) -> scalar tensor` is what every patching function
calls on the patched run's logits. Caches are `ActivationCache`s (or dicts)
keyed by hook names such as "blocks.1.attn.hook_z". Per-head results are
[n_layers, n_heads]; per-position head results are [n_layers, pos, n_heads]
(the layout `transformer_lens.patching` uses).
"""

from __future__ import annotations

from functools import partial

import torch
from jaxtyping import Float, Int
from torch import Tensor

HEAD_ACTIVATIONS = ("z", "q", "k", "v", "pattern")


# -- 1. metrics ------------------------------------------------------------------------------

def logit_diff(logits: Float[Tensor, "batch pos d_vocab"], answers: Int[Tensor, "batch 2"]) -> Float[Tensor, " batch"]:
    """Logit of the correct answer minus logit of the wrong one, at the last position, per prompt."""
    last = logits[:, -1]
    return last.gather(-1, answers[:, :1])[:, 0] - last.gather(-1, answers[:, 1:])[:, 0]


def normalised_metric(value: Tensor, clean_value: float | Tensor, corrupted_value: float | Tensor) -> Tensor:
    """0 when `value` equals the corrupted run's, 1 when it equals the clean run's."""
    return (value - corrupted_value) / (clean_value - corrupted_value)


# -- 2. ablations ------------------------------------------------------------------------------

def resample_ablate_head_hook(z: Float[Tensor, "batch pos head d_head"], hook, head: int,
                              perm: Int[Tensor, " batch"]) -> Tensor:
    """Replace one head's z with the same head's z on *other* prompts (batch permuted by `perm`)."""
    z = z.clone()
    z[:, :, head] = z[perm, :, head]
    return z


def mean_ablate_from_reference_hook(act: Tensor, hook, reference: Tensor, head: int | None = None) -> Tensor:
    """Replace `act` (or only `act[:, :, head]`) by the mean of `reference` over its batch axis.

    `reference` is the same activation on a reference dataset, [ref_batch, pos, ...]; each position
    keeps its own mean. With `head`, only that head changes."""
    act = act.clone()
    mean = reference.mean(dim=0)
    if head is None:
        act[:] = mean
    else:
        act[:, :, head] = mean[:, head]
    return act


def head_ablation_logit_diffs(model, tokens: Tensor, answers: Tensor, make_hook) -> Float[Tensor, "n_layers n_heads"]:
    """Mean logit difference with each head ablated in turn: `make_hook(layer, head)` gives the hook for hook_z."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    out = torch.zeros(n_layers, n_heads)
    with torch.no_grad():
        for layer in range(n_layers):
            for head in range(n_heads):
                logits = model.run_with_hooks(
                    tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", make_hook(layer, head))])
                out[layer, head] = logit_diff(logits, answers).mean()
    return out


# -- 3. activation patching ------------------------------------------------------------------------

def patch_position_hook(act: Tensor, hook, pos: int, source_cache) -> Tensor:
    """Replace the activation at one position by the source run's (any [batch, pos, ...] activation)."""
    act = act.clone()
    act[:, pos] = source_cache[hook.name][:, pos]
    return act


def patch_resid_by_layer_and_pos(model, tokens: Tensor, source_cache, metric) -> Float[Tensor, "n_layers pos"]:
    """Metric after patching hook_resid_pre of each layer at each position from `source_cache`."""
    n_layers, n_pos = model.cfg.n_layers, tokens.shape[1]
    out = torch.zeros(n_layers, n_pos)
    with torch.no_grad():
        for layer in range(n_layers):
            for pos in range(n_pos):
                hook = partial(patch_position_hook, pos=pos, source_cache=source_cache)
                logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", hook)])
                out[layer, pos] = metric(logits)
    return out


def patch_head_hook(act: Tensor, hook, head: int, source_cache, pos: int | None = None) -> Tensor:
    """Replace one head's activation by the source run's, at every position or at one (query) position.

    z, q, k and v are [batch, pos, head, d]; the attention pattern is [batch, head, query, key], so its
    head axis is the second one."""
    act = act.clone()
    source = source_cache[hook.name]
    positions = slice(None) if pos is None else pos
    if hook.name.endswith("hook_pattern"):
        act[:, head, positions] = source[:, head, positions]
    else:
        act[:, positions, head] = source[:, positions, head]
    return act


def patch_heads(model, tokens: Tensor, source_cache, metric, activation: str = "z") -> Float[Tensor, "n_layers n_heads"]:
    """Metric after patching one head's `activation` (z, q, k, v or pattern) at all positions, head by head."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    out = torch.zeros(n_layers, n_heads)
    with torch.no_grad():
        for layer in range(n_layers):
            for head in range(n_heads):
                hook = partial(patch_head_hook, head=head, source_cache=source_cache)
                logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_{activation}", hook)])
                out[layer, head] = metric(logits)
    return out


def patch_heads_by_pos(model, tokens: Tensor, source_cache, metric) -> Float[Tensor, "n_layers pos n_heads"]:
    """Metric after patching one head's z at one position, for every layer, position and head."""
    n_layers, n_heads, n_pos = model.cfg.n_layers, model.cfg.n_heads, tokens.shape[1]
    out = torch.zeros(n_layers, n_pos, n_heads)
    with torch.no_grad():
        for layer in range(n_layers):
            for pos in range(n_pos):
                for head in range(n_heads):
                    hook = partial(patch_head_hook, head=head, source_cache=source_cache, pos=pos)
                    logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", hook)])
                    out[layer, pos, head] = metric(logits)
    return out


def denoise_and_noise(model, clean_tokens: Tensor, corrupted_tokens: Tensor, metric) -> dict[str, Tensor]:
    """Per-head patching both ways: 'denoise' runs the corrupted prompt with one clean head (is it
    sufficient?); 'noise' runs the clean prompt with one corrupted head (is it necessary?)."""
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean_tokens)
        _, corrupted_cache = model.run_with_cache(corrupted_tokens)
    return {"denoise": patch_heads(model, corrupted_tokens, clean_cache, metric),
            "noise": patch_heads(model, clean_tokens, corrupted_cache, metric)}


# -- 4. path patching -------------------------------------------------------------------------------

def path_patch(model, corrupted_tokens: Tensor, clean_cache, corrupted_cache, sender: tuple[int, int],
               receivers: list[tuple[int, int]], receiver_input: str, metric) -> Tensor:
    """Metric when the sender head's clean output reaches only the receivers' `receiver_input` (q, k or v).

    Run 1: the corrupted prompt with every head's z frozen at its corrupted value except the sender's,
    which is clean; MLPs and LayerNorms recompute. Record the receivers' inputs. Run 2: the corrupted
    prompt with only those receiver inputs patched in."""
    s_layer, s_head = sender

    def freeze(z, hook, layer):
        name = f"blocks.{layer}.attn.hook_z"
        z = corrupted_cache[name].clone()
        if layer == s_layer:
            z[:, :, s_head] = clean_cache[name][:, :, s_head]
        return z

    recorded = {}

    def record(act, hook, name):
        recorded[name] = act.detach().clone()

    n_layers = model.cfg.n_layers
    hooks = [(f"blocks.{layer}.attn.hook_z", partial(freeze, layer=layer)) for layer in range(n_layers)]
    # hook.name can be a longer canonical name than the one we hooked, so each hook is told its name
    names = sorted({f"blocks.{layer}.attn.hook_{receiver_input}" for layer, _ in receivers})
    hooks += [(name, partial(record, name=name)) for name in names]
    with torch.no_grad():
        model.run_with_hooks(corrupted_tokens, fwd_hooks=hooks)

        def patch_receivers(act, hook, name):
            act = act.clone()
            for layer, head in receivers:
                if name == f"blocks.{layer}.attn.hook_{receiver_input}":
                    act[:, :, head] = recorded[name][:, :, head]
            return act

        logits = model.run_with_hooks(corrupted_tokens,
                                      fwd_hooks=[(name, partial(patch_receivers, name=name)) for name in names])
    return metric(logits)


def direct_path_patch(model, corrupted_tokens: Tensor, clean_cache, corrupted_cache, metric) -> Float[Tensor, "n_layers n_heads"]:
    """Metric when each head's clean output reaches only the logits (the final residual stream) directly.

    Adds (clean - corrupted) head output, z @ W_O, to the corrupted final residual stream; nothing in
    between sees the change (the final LayerNorm recomputes)."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    last = f"blocks.{n_layers - 1}.hook_resid_post"
    out = torch.zeros(n_layers, n_heads)
    with torch.no_grad():
        for layer in range(n_layers):
            name = f"blocks.{layer}.attn.hook_z"
            delta_z = clean_cache[name] - corrupted_cache[name]
            for head in range(n_heads):
                delta = delta_z[:, :, head] @ model.W_O[layer, head]

                def add(resid, hook, delta=delta):
                    return resid + delta

                out[layer, head] = metric(model.run_with_hooks(corrupted_tokens, fwd_hooks=[(last, add)]))
    return out


# -- 5. attribution patching ---------------------------------------------------------------------------

def attribution_scores(clean_act: Float[Tensor, "batch pos head d"], corrupted_act: Tensor,
                       corrupted_grad: Tensor) -> Float[Tensor, " head"]:
    """First-order estimate of the metric change from patching each head clean -> corrupted run:
    (clean - corrupted) . d metric / d act, summed over batch, position and d_head."""
    return ((clean_act - corrupted_act) * corrupted_grad).sum(dim=(0, 1, 3))


def forward_backward_cache(model, tokens: Tensor, metric, names: list[str]) -> tuple[Tensor, dict, dict]:
    """One forward and one backward pass: the metric, and the activations and gradients at `names`."""
    acts, grads = {}, {}

    def save_act(act, hook, name):
        acts[name] = act.detach()

    def save_grad(grad, hook, name):
        grads[name] = grad.detach()

    with torch.enable_grad():
        with model.hooks(fwd_hooks=[(n, partial(save_act, name=n)) for n in names],
                         bwd_hooks=[(n, partial(save_grad, name=n)) for n in names]):
            value = metric(model(tokens))
            value.backward()
    model.zero_grad(set_to_none=True)
    return value.detach(), acts, grads


def attribution_patch_heads(model, clean_tokens: Tensor, corrupted_tokens: Tensor, metric) -> Float[Tensor, "n_layers n_heads"]:
    """Attribution patching of every head's z: one forward pass on the clean prompt, one forward and
    backward on the corrupted prompt (where the patch would land)."""
    names = [f"blocks.{layer}.attn.hook_z" for layer in range(model.cfg.n_layers)]
    _, clean_acts, _ = forward_backward_cache(model, clean_tokens, metric, names)
    _, corrupted_acts, corrupted_grads = forward_backward_cache(model, corrupted_tokens, metric, names)
    return torch.stack([attribution_scores(clean_acts[n], corrupted_acts[n], corrupted_grads[n]) for n in names])


# -- 6. backup behaviour ------------------------------------------------------------------------------

def head_direct_effects(model, cache, answers: Tensor) -> Float[Tensor, "n_layers n_heads"]:
    """Each head's direct contribution to the logit difference at the last position, averaged over the
    batch: its output z @ W_O, divided by the final LayerNorm scale, projected on W_U[correct] - W_U[wrong]."""
    direction = model.W_U[:, answers[:, 0]] - model.W_U[:, answers[:, 1]]  # [d_model, batch]
    scale = cache["ln_final.hook_scale"][:, -1]  # [batch, 1]
    rows = []
    for layer in range(model.cfg.n_layers):
        z = cache[f"blocks.{layer}.attn.hook_z"][:, -1]  # [batch, head, d_head]
        out = torch.einsum("bhd,hdm->bhm", z, model.W_O[layer]) / scale[:, :, None]
        rows.append(torch.einsum("bhm,mb->bh", out, direction).mean(0))
    return torch.stack(rows)


# -- where the model breaks (section 7) ----------------------------------------------------------------

def frame_scores(model, tokens: Int[Tensor, "batch pos"], answers: Int[Tensor, "batch 2"],
                 roles: dict[str, Int[Tensor, " batch"]], heads: list[tuple[int, int]]) -> dict[str, float]:
    """How well the model does on one sentence frame, and where `heads` look from the last position.

    'accuracy': the fraction of prompts whose correct name out-scores the wrong one at the last
    position (the two-way choice the logit difference measures, so 0.5 is chance). Then one entry per
    role (`roles[role][b]` is where that name sits in prompt b): the attention from the last position to
    it, averaged over prompts and over `heads` (each a (layer, head))."""
    logits, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("attn.hook_pattern"))
    scores = {"accuracy": (logit_diff(logits, answers) > 0).float().mean().item()}
    rows = torch.arange(tokens.shape[0], device=tokens.device)  # pairs prompt b with its own position
    for role, positions in roles.items():
        attention = [cache[f"blocks.{layer}.attn.hook_pattern"][rows, head, -1, positions] for layer, head in heads]
        scores[role] = torch.stack(attention).mean().item()
    return scores


# -- 7. is the circuit right? ---------------------------------------------------------------------------

def circuit_logit_diff(model, tokens: Tensor, answers: Tensor, circuit: list[tuple[int, int]],
                       reference_cache) -> Tensor:
    """Mean logit difference with every head *outside* `circuit` mean-ablated (means over the reference
    run's batch, position by position); heads in the circuit run normally."""
    def ablate_others(z, hook, layer):
        z = z.clone()
        mean = reference_cache[hook.name].mean(dim=0)
        for head in range(model.cfg.n_heads):
            if (layer, head) not in circuit:
                z[:, :, head] = mean[:, head]
        return z

    hooks = [(f"blocks.{layer}.attn.hook_z", partial(ablate_others, layer=layer))
             for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        return logit_diff(model.run_with_hooks(tokens, fwd_hooks=hooks), answers).mean()


def minimality_scores(model, tokens: Tensor, answers: Tensor, circuit: list[tuple[int, int]],
                      reference_cache) -> dict[tuple[int, int], float]:
    """For each head in the circuit: the fraction of the circuit's logit difference lost when that head
    is removed from the circuit too (mean-ablated along with everything outside)."""
    full = circuit_logit_diff(model, tokens, answers, circuit, reference_cache)
    scores = {}
    for head in circuit:
        rest = [h for h in circuit if h != head]
        scores[head] = float(1 - circuit_logit_diff(model, tokens, answers, rest, reference_cache) / full)
    return scores
