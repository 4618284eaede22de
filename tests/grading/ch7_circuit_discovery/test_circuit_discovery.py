"""Learner variants for the 7.1 "Automated circuit discovery" graders."""

from functools import partial

import einops
import torch

from solutions.ch7_circuit_discovery import circuit_discovery as ref
from tests.grading.variants import Right, Wrong, test_variant_is_graded_as_expected  # noqa: F401 (runs VARIANTS)
from utils.circuits import node_of

# -- the graph and edge patching ------------------------------------------------------------------------


def _edges(n_layers, n_heads, mlps, *, heads_first=False, mlp_early=False, unsplit=False, embed=True):
    senders, edges = (["embed"] if embed else []), []
    for layer in range(n_layers):
        heads = [f"a{layer}.{h}" for h in range(n_heads)]
        if heads_first:
            senders = senders + heads
        for head in heads:
            readers = [head] if unsplit else [f"{head}.q", f"{head}.k", f"{head}.v"]
            for receiver in readers:
                for s in senders:
                    if s != head:
                        edges.append((s, receiver))
        if mlps and mlp_early:
            edges += [(s, f"m{layer}") for s in senders if s not in heads]
        if not heads_first:
            senders = senders + heads
        if mlps:
            if not mlp_early:
                edges += [(s, f"m{layer}") for s in senders]
            senders = senders + [f"m{layer}"]
    return edges + [(s, "logits") for s in senders]


def _edges_comprehension(n_layers, n_heads, mlps):
    def written_before(layer, with_own_heads):
        out = ["embed"]
        for l in range(layer + 1):
            if l < layer or with_own_heads:
                out += [f"a{l}.{h}" for h in range(n_heads)]
            if mlps and l < layer:
                out.append(f"m{l}")
        return out

    edges = []
    for layer in range(n_layers):
        edges += [(s, f"a{layer}.{h}.{x}") for h in range(n_heads) for x in "qkv" for s in written_before(layer, False)]
        if mlps:
            edges += [(s, f"m{layer}") for s in written_before(layer, True)]
    return edges + [(s, "logits") for s in written_before(n_layers, False)]


def _ri_loop(current, source, keep):
    total = torch.zeros_like(current[0])
    for i in range(len(keep)):
        total = total + (current[i] if keep[i] else source[i])
    return total


def _ri_subtract(current, source, keep):
    return current.sum(0) - (current - source)[~keep].sum(0)


def _ri_inverted(current, source, keep):
    return torch.where(keep[:, None, None, None], source, current).sum(0)


def _ri_mean(current, source, keep):
    return torch.where(keep[:, None, None, None], current, source).mean(0)


def _ri_added(current, source, keep):
    return current.sum(0) + (current - source)[~keep].sum(0)


def _kl(clean_logits, logits, positions, *, reverse=False, total=False, everywhere=False):
    if everywhere:
        positions = torch.arange(clean_logits.shape[1])
    p = torch.log_softmax(clean_logits[:, positions], dim=-1)
    q = torch.log_softmax(logits[:, positions], dim=-1)
    if reverse:
        p, q = q, p
    kl = (p.exp() * (p - q)).sum(-1)
    return kl.sum(-1).mean() if total else kl.mean()


def _kl_torch(clean_logits, logits, positions):
    p = clean_logits[:, positions].log_softmax(-1).flatten(0, 1)
    q = logits[:, positions].log_softmax(-1).flatten(0, 1)
    return torch.nn.functional.kl_div(q, p, reduction="batchmean", log_target=True)


def _kl_probs(clean_logits, logits, positions):
    p, q = clean_logits[:, positions].softmax(-1), logits[:, positions].softmax(-1)
    return (p * (p - q)).sum(-1).mean()


def _lp_loop(logits, tokens, seq_len):
    values = []
    for p in range(seq_len + 1, 2 * seq_len):
        log_probs = torch.log_softmax(logits[:, p], dim=-1)
        values.append(log_probs[torch.arange(len(tokens)), tokens[:, p + 1]])
    return torch.stack(values).mean()


def _lp_no_shift(logits, tokens, seq_len):
    lp = logits.log_softmax(-1)[:, seq_len + 2:]
    return lp.gather(-1, tokens[:, seq_len + 2:, None]).mean()


def _lp_whole_copy(logits, tokens, seq_len):
    lp = logits.log_softmax(-1)[:, seq_len:-1]
    return lp.gather(-1, tokens[:, seq_len + 1:, None]).mean()


def _lp_probs(logits, tokens, seq_len):
    probs = logits.softmax(-1)[:, seq_len + 1:-1]
    return probs.gather(-1, tokens[:, seq_len + 2:, None]).mean()


# -- ACDC --------------------------------------------------------------------------------------------------


def _acdc(edges, metric_without, threshold, *, forward=False, vs_clean=False, alone=False, absolute=False,
          removed_out=False):
    removed = []
    clean = current = metric_without(set())
    order = list(edges) if forward else list(edges)[::-1]
    for edge in order:
        new = metric_without({edge}) if alone else metric_without(set(removed) | {edge})
        change = new - (clean if (vs_clean or alone) else current)
        if absolute:
            change = abs(change)
        if change < threshold:
            removed.append(edge)
            current = new
    if removed_out:
        return [e for e in edges if e in removed]
    return [e for e in edges if e not in removed]


def _acdc_while(edges, metric_without, threshold):
    removed, i = set(), len(edges) - 1
    score = metric_without(removed)
    while i >= 0:
        candidate = removed | {edges[i]}
        new_score = metric_without(candidate)
        if new_score < score + threshold:
            removed, score = candidate, new_score
        i -= 1
    return [e for e in edges if e not in removed]


def _prune(edges, *, only=None, raw_names=False, one_step=False):
    name = (lambda n: n) if raw_names else node_of
    reached_from_embed = {"embed"}
    reaches_logits = {"logits"}
    rounds = 1 if one_step else len(edges) + 1
    for _ in range(rounds):
        for s, r in edges:
            if s in reached_from_embed:
                reached_from_embed.add(name(r))
    for _ in range(rounds):
        for s, r in reversed(edges):
            if name(r) in reaches_logits:
                reaches_logits.add(s)
    out = []
    for s, r in edges:
        ok_in = s in reached_from_embed or only == "out"
        ok_out = name(r) in reaches_logits or only == "in"
        if ok_in and ok_out:
            out.append((s, r))
    return out


def _prune_neighbours(edges):
    fed = {"embed"} | {node_of(r) for s, r in edges if s == "embed"}
    heard = {"logits"} | {s for s, r in edges if r == "logits"}
    return [(s, r) for s, r in edges if s in fed and node_of(r) in heard]


def _prune_recursive(edges):
    def forward_reach(node, seen):
        for s, r in edges:
            if s == node and node_of(r) not in seen:
                seen.add(node_of(r))
                forward_reach(node_of(r), seen)
        return seen

    def backward_reach(node, seen):
        for s, r in edges:
            if node_of(r) == node and s not in seen:
                seen.add(s)
                backward_reach(s, seen)
        return seen

    fed, heard = forward_reach("embed", {"embed"}), backward_reach("logits", {"logits"})
    return [(s, r) for s, r in edges if s in fed and node_of(r) in heard]


# -- EAP -------------------------------------------------------------------------------------------------------


def _grads(em, tokens, metric, *, negate=False, return_delta=False, twice=False):
    delta = em.zero_delta(tokens)
    with torch.enable_grad():
        logits = em.run(tokens, receiver_delta=delta)
        value = -metric(logits) if negate else metric(logits)
        value.backward(retain_graph=twice)
        if twice:
            value.backward()
    return delta.detach() if return_delta else delta.grad.detach()


def _grads_no_enable_grad(em, tokens, metric):
    delta = em.zero_delta(tokens)
    metric(em.run(tokens, receiver_delta=delta)).backward()
    return delta.grad


def _eap_edges_no_enable_grad(em, clean_tokens, corrupted_tokens, metric):
    clean_outs = em.sender_outputs(clean_tokens)
    corrupted_outs = em.sender_outputs(corrupted_tokens)
    delta = em.zero_delta(clean_tokens)
    metric(em.run(clean_tokens, receiver_delta=delta)).backward()
    return ref.eap_scores(clean_outs, corrupted_outs, delta.grad, em.graph.adjacency)


def _acdc_kept_as_visited(edges, metric_without, threshold):
    removed, kept = set(), []
    current = metric_without(removed)
    for edge in reversed(edges):
        trial = metric_without(removed | {edge})
        if trial - current < threshold:
            removed.add(edge)
            current = trial
        else:
            kept.append(edge)
    return kept


def _grads_autograd(em, tokens, metric):
    delta = em.zero_delta(tokens)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(metric(em.run(tokens, receiver_delta=delta)), delta)
    return grad


def _eap(clean_outs, corrupted_outs, grads, adjacency, *, flip=False, activation=False, no_mask=False, mean=False):
    change = corrupted_outs if activation else (clean_outs - corrupted_outs if flip else corrupted_outs - clean_outs)
    scores = torch.einsum("sbpd,rbpd->sr", change, grads)
    if mean:
        scores = scores / (change.shape[1] * change.shape[2] * change.shape[3])
    return scores if no_mask else torch.where(adjacency, scores, torch.zeros_like(scores))


def _eap_flatten(clean_outs, corrupted_outs, grads, adjacency):
    change = einops.rearrange(corrupted_outs - clean_outs, "s b p d -> s (b p d)")
    return (change @ einops.rearrange(grads, "r b p d -> (b p d) r")) * adjacency.float()


def _eap_edges(em, clean_tokens, corrupted_tokens, metric, *, corrupted_grad=False, denoise=False, flip=False):
    if denoise:
        clean_tokens, corrupted_tokens = corrupted_tokens, clean_tokens
    clean_outs = em.sender_outputs(clean_tokens)
    corrupted_outs = em.sender_outputs(corrupted_tokens)
    grads = ref.receiver_gradients(em, corrupted_tokens if corrupted_grad else clean_tokens, metric)
    scores = ref.eap_scores(clean_outs, corrupted_outs, grads, em.graph.adjacency)
    return -scores if flip else scores


def _eap_edges_inline(em, clean_tokens, corrupted_tokens, metric):
    _, clean_outs = em.run(clean_tokens, return_outputs=True)
    _, corrupted_outs = em.run(corrupted_tokens, return_outputs=True)
    delta = em.zero_delta(clean_tokens)
    with torch.enable_grad():
        metric(em.run(clean_tokens, receiver_delta=delta)).backward()
    scores = einops.einsum(corrupted_outs.detach() - clean_outs.detach(), delta.grad, "s b p d, r b p d -> s r")
    return scores * em.graph.adjacency


def _path(clean, corrupted, steps, *, zero_start=False, linspace=False, backwards=False):
    if linspace:
        alphas = torch.linspace(0, 1, steps)
    elif zero_start:
        alphas = torch.arange(steps) / steps
    else:
        alphas = torch.arange(1, steps + 1) / steps
    alphas = alphas.to(clean)
    if backwards:
        return torch.stack([clean + a * (corrupted - clean) for a in alphas])
    return torch.stack([corrupted + a * (clean - corrupted) for a in alphas])


def _path_lerp(clean, corrupted, steps):
    weights = (torch.arange(1, steps + 1, dtype=clean.dtype) / steps).view(-1, 1, 1, 1)
    return torch.lerp(corrupted.expand(steps, *corrupted.shape), clean.expand(steps, *clean.shape), weights)


def _ig(em, clean_tokens, corrupted_tokens, metric, steps=5, *, summed=False, from_zero=False, only_clean=False):
    clean_outs = em.sender_outputs(clean_tokens)
    corrupted_outs = em.sender_outputs(corrupted_tokens)
    total = None
    if only_clean:
        alphas = [1.0]
    elif from_zero:
        alphas = [k / steps for k in range(steps)]
    else:
        alphas = [k / steps for k in range(1, steps + 1)]
    for alpha in alphas:
        embed = corrupted_outs[0] + alpha * (clean_outs[0] - corrupted_outs[0])
        delta = em.zero_delta(clean_tokens)
        with torch.enable_grad():
            metric(em.run(clean_tokens, receiver_delta=delta, embed=embed)).backward()
        total = delta.grad if total is None else total + delta.grad
    grads = total if (summed or only_clean) else total / len(alphas)
    return ref.eap_scores(clean_outs, corrupted_outs, grads, em.graph.adjacency)


def _ig_with_path(em, clean_tokens, corrupted_tokens, metric, steps=5):
    clean_outs = em.sender_outputs(clean_tokens)
    corrupted_outs = em.sender_outputs(corrupted_tokens)
    grads = []
    for point in ref.ig_path(clean_outs[0], corrupted_outs[0], steps):
        delta = em.zero_delta(clean_tokens)
        with torch.enable_grad():
            metric(em.run(clean_tokens, receiver_delta=delta, embed=point)).backward()
        grads.append(delta.grad)
    return ref.eap_scores(clean_outs, corrupted_outs, torch.stack(grads).mean(0), em.graph.adjacency)


def _top(scores, adjacency, k, *, signed=False, smallest=False, unmasked=False):
    values = scores.clone() if signed else scores.abs()
    if not unmasked:
        values[~adjacency] = float("inf") if smallest else float("-inf")
    order = values.flatten().argsort(descending=not smallest)[:k]
    mask = torch.zeros(values.numel(), dtype=torch.bool)
    mask[order] = True
    return mask.reshape(adjacency.shape)


def _top_threshold(scores, adjacency, k):
    values = torch.where(adjacency, scores.abs(), torch.full_like(scores, -1.0))
    cutoff = values.flatten().sort(descending=True).values[k - 1]
    return values >= cutoff


# -- comparing methods -----------------------------------------------------------------------------------------


def _roc(scores, labels, *, ascending=False, no_origin=False, over_n=False, per_item=False):
    fpr, tpr = [], []
    if per_item:
        order = scores.argsort(descending=True)
        for i in range(1, len(scores) + 1):
            chosen = torch.zeros_like(labels)
            chosen[order[:i]] = True
            tpr.append(((chosen & labels).sum() / labels.sum()).item())
            fpr.append(((chosen & ~labels).sum() / (~labels).sum()).item())
    else:
        thresholds = sorted(set(scores.tolist()), reverse=not ascending)
        for t in thresholds:
            chosen = scores >= t
            positives, negatives = (len(labels), len(labels)) if over_n else (labels.sum(), (~labels).sum())
            tpr.append(((chosen & labels).sum() / positives).item())
            fpr.append(((chosen & ~labels).sum() / negatives).item())
    if not no_origin:
        fpr, tpr = [0.0] + fpr, [0.0] + tpr
    return torch.tensor(fpr), torch.tensor(tpr)


def _auc(fpr, tpr, *, rule="trapezoid"):
    total = 0.0
    for i in range(1, len(fpr)):
        width = (fpr[i] - fpr[i - 1]).item()
        if rule == "left":
            total += width * tpr[i - 1].item()
        elif rule == "right":
            total += width * tpr[i].item()
        else:
            total += width * (tpr[i] + tpr[i - 1]).item() / 2
    return total


def _faith(em, tokens, corrupted_outs, keep, metric, *, raw=False, ratio=False, flipped=False):
    nothing_kept = torch.zeros_like(keep)
    if flipped:
        keep = em.graph.adjacency & ~keep
    with torch.no_grad():
        circuit = metric(em.run(tokens, keep=keep, source=corrupted_outs)).item()
        nothing = metric(em.run(tokens, keep=nothing_kept, source=corrupted_outs)).item()
        full = metric(em.run(tokens)).item()
    if raw:
        return circuit
    if ratio:
        return circuit / full
    return (circuit - nothing) / (full - nothing)


def _faith_all_kept(em, tokens, corrupted_outs, keep, metric):
    with torch.no_grad():
        circuit = metric(em.run(tokens, keep=keep, source=corrupted_outs))
        nothing = metric(em.run(tokens, keep=torch.zeros_like(keep), source=corrupted_outs))
        full = metric(em.run(tokens, keep=em.graph.adjacency, source=corrupted_outs))
    return ((circuit - nothing) / (full - nothing)).item()


# -- nodes, causal scrubbing ------------------------------------------------------------------------------------


def _senders(adjacency, senders, *, columns=False, inverted=False, ones=False):
    keep = torch.ones_like(adjacency) if ones else adjacency.clone()
    for s in senders:
        if columns:
            keep[:, s] = False
        else:
            keep[s, :] = False
    return adjacency & ~keep if inverted else keep


def _senders_where(adjacency, senders):
    rows = torch.zeros(adjacency.shape[0], dtype=torch.bool)
    rows[senders] = True
    return adjacency & ~rows[:, None]


def _resample(tokens, offset, d_vocab, generator=None, *, same_position=False, copy_all=False, no_bos=False,
              from_zero=False):
    batch, n_pos = tokens.shape
    out = torch.randint(0 if from_zero else 1, d_vocab, (n_pos, batch, n_pos), generator=generator)
    if copy_all:
        out = tokens[None].repeat(n_pos, 1, 1)
    if not no_bos:
        out[:, :, 0] = tokens[:, 0]
    for p in range(n_pos):
        q = p if same_position else p + offset
        if 1 <= q < n_pos:
            out[p, :, q] = tokens[:, q]
    return out


def _resample_loop(tokens, offset, d_vocab, generator=None):
    batch, n_pos = tokens.shape
    runs = []
    for p in range(n_pos):
        new = torch.randint(1, d_vocab, (batch, n_pos), generator=generator)
        new[:, 0] = tokens[:, 0]
        if 0 < p + offset < n_pos:
            new[:, p + offset] = tokens[:, p + offset]
        runs.append(new)
    return torch.stack(runs)


def _assemble_loop(outputs):
    return torch.stack([outputs[p, :, p] for p in range(outputs.shape[0])], dim=1)


def _assemble_index(outputs):
    n = outputs.shape[0]
    idx = torch.arange(n)
    return outputs[idx, :, idx].transpose(0, 1)


def _assemble_first(outputs):
    return outputs[0]


def _assemble_mean(outputs):
    return outputs.mean(dim=0)


def _assemble_shifted(outputs):
    return torch.stack([outputs[p, :, p - 1 if p else 0] for p in range(outputs.shape[0])], dim=1)


# -- holes found by the blind audit ----------------------------------------------------------------------------


def _edges_as_lists(n_layers, n_heads, mlps):
    return [[s, r] for s, r in _edges(n_layers, n_heads, mlps)]


def _lp_raw_logits(logits, tokens, seq_len):
    lp = logits[:, seq_len + 1:-1]
    return lp.gather(-1, tokens[:, seq_len + 2:, None]).mean()


def _acdc_at_most(edges, metric_without, threshold):
    removed: set = set()
    current = metric_without(removed)
    for edge in reversed(edges):
        trial = metric_without(removed | {edge})
        if trial - current <= threshold:
            removed.add(edge)
            current = trial
    return [e for e in edges if e not in removed]


def _grads_create_graph(em, tokens, metric):
    delta = em.zero_delta(tokens)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(metric(em.run(tokens, receiver_delta=delta)), delta, create_graph=True)
    return grad


def _grads_extra_forward(em, tokens, metric):
    print("metric before:", metric(em.run(tokens)).item())
    return _grads(em, tokens, metric)


def _eap_edges_baseline_run(em, clean_tokens, corrupted_tokens, metric):
    baseline = metric(em.run(clean_tokens))  # an extra, unneeded forward pass
    assert torch.isfinite(baseline)
    return _eap_edges(em, clean_tokens, corrupted_tokens, metric)


def _eap_edges_two_forwards(em, clean_tokens, corrupted_tokens, metric):
    delta = em.zero_delta(clean_tokens)
    with torch.enable_grad():
        logits, clean_outs = em.run(clean_tokens, receiver_delta=delta, return_outputs=True)
        metric(logits).backward()
    corrupted_outs = em.sender_outputs(corrupted_tokens)
    return ref.eap_scores(clean_outs.detach(), corrupted_outs, delta.grad, em.graph.adjacency)


def _top_times_adjacency(scores, adjacency, k):
    s = (scores.abs() * adjacency).flatten()
    m = torch.zeros_like(s, dtype=torch.bool)
    m[s.topk(k).indices] = True
    return m.view_as(adjacency)


def _top_cutoff_masked_after(scores, adjacency, k):
    s = scores.abs() * adjacency
    thr = s.flatten().topk(k).values[-1]
    return (s >= thr) & adjacency


def _top_sorted_edges(scores, adjacency, k):
    edges = [(abs(scores[i, j].item()), i, j) for i, j in adjacency.nonzero().tolist()]
    mask = torch.zeros_like(adjacency)
    for _, i, j in sorted(edges, reverse=True)[:k]:
        mask[i, j] = True
    return mask


def _roc_every_score(scores, labels):
    fpr, tpr = [0.0], [0.0]
    for t in scores.sort(descending=True).values:
        chosen = scores >= t
        tpr.append(((chosen & labels).sum() / labels.sum()).item())
        fpr.append(((chosen & ~labels).sum() / (~labels).sum()).item())
    return torch.tensor(fpr), torch.tensor(tpr)


def _roc_float64(scores, labels):
    fpr, tpr = _roc(scores, labels)
    return fpr.double(), tpr.double()


def _senders_float(adjacency, senders):
    keep = adjacency.float()
    keep[senders] = 0.0
    return keep


def _resample_wrapped(tokens, offset, d_vocab, generator=None):
    batch, n_pos = tokens.shape
    new = torch.randint(1, d_vocab, (n_pos, batch, n_pos), generator=generator)
    new[:, :, 0] = tokens[:, 0]
    for p in range(n_pos):
        q = p + offset
        if q < n_pos:
            new[p, :, q] = tokens[:, q]
    return new


def _resample_global_rng(tokens, offset, d_vocab, generator=None):
    return _resample(tokens, offset, d_vocab)


# -- issue 22: mistakes that passed, and differences without a named diagnosis ------------------------------------


def _edges_one_head_at_a_time(n_layers, n_heads, mlps):
    senders, edges = ["embed"], []
    for layer in range(n_layers):
        for h in range(n_heads):
            head = f"a{layer}.{h}"
            edges += [(s, f"{head}.{x}") for x in "qkv" for s in senders]
            senders.append(head)
        if mlps:
            edges += [(s, f"m{layer}") for s in senders]
            senders.append(f"m{layer}")
    return edges + [(s, "logits") for s in senders]


def _edges_logits_read_last_layer(n_layers, n_heads, mlps):
    edges = _edges(n_layers, n_heads, mlps)
    last = n_layers - 1
    return [(s, r) for s, r in edges if r != "logits" or s == "embed" or _layer(s) == last]


def _layer(name):
    return int(name[1:].split(".")[0])


def _edges_kqv(n_layers, n_heads, mlps):
    senders, edges = ["embed"], []
    for layer in range(n_layers):
        heads = [f"a{layer}.{h}" for h in range(n_heads)]
        edges += [(s, f"{head}.{x}") for head in heads for x in "kqv" for s in senders]
        senders += heads
        if mlps:
            edges += [(s, f"m{layer}") for s in senders]
            senders.append(f"m{layer}")
    return edges + [(s, "logits") for s in senders]


def _edges_mlp_reads_itself(n_layers, n_heads, mlps):
    senders, edges = ["embed"], []
    for layer in range(n_layers):
        heads = [f"a{layer}.{h}" for h in range(n_heads)]
        edges += [(s, f"{head}.{x}") for head in heads for x in "qkv" for s in senders]
        senders += heads
        if mlps:
            senders.append(f"m{layer}")
            edges += [(s, f"m{layer}") for s in senders]
    return edges + [(s, "logits") for s in senders]


def _lp_same_positions(logits, tokens, seq_len):
    log_probs = logits[:, seq_len + 1:2 * seq_len].log_softmax(-1)
    targets = tokens[:, seq_len + 1:2 * seq_len]
    return log_probs.gather(-1, targets.unsqueeze(-1)).mean()


def _lp_previous_token(logits, tokens, seq_len):
    log_probs = logits[:, seq_len + 1:2 * seq_len].log_softmax(-1)
    return log_probs.gather(-1, tokens[:, seq_len:2 * seq_len - 1, None]).mean()


def _resample_high_exclusive(tokens, offset, d_vocab, generator=None):
    batch, n_pos = tokens.shape
    out = torch.randint(1, d_vocab - 1, (n_pos, batch, n_pos), generator=generator)
    out[:, :, 0] = tokens[:, 0]
    for p in range(n_pos):
        if 1 <= p + offset < n_pos:
            out[p, :, p + offset] = tokens[:, p + offset]
    return out


VARIANTS = {
    "ch7.graph_edges": [
        Wrong("heads added before their receivers", partial(_edges, heads_first=True),
              mistake="heads read their own layer"),
        Wrong("MLP reads only earlier layers", partial(_edges, mlp_early=True), mistake="MLP before the heads"),
        Wrong("one receiver per head", partial(_edges, unsplit=True), mistake="q, k and v as one receiver"),
        Wrong("forgot the embedding", partial(_edges, embed=False), mistake="no embedding"),
        Right("loops", _edges),
        Right("comprehensions over upstream senders", _edges_comprehension),
        Wrong("edges as lists", _edges_as_lists, mistake="edges not tuples"),
        Wrong("each head added to the senders right after its receivers", _edges_one_head_at_a_time,
              mistake="heads read their own layer"),
        Wrong("logits read only the embedding and the last layer", _edges_logits_read_last_layer,
              mistake="missing edges", hint_contains="('a0.0', 'logits')"),
        Wrong("k before q", _edges_kqv, mistake="edges out of order"),
        Wrong("an MLP added to the senders before its own edges", _edges_mlp_reads_itself, mistake="extra edges",
              hint_contains="its own output"),
    ],
    "ch7.receiver_input": [
        Wrong("keep read the wrong way", _ri_inverted, mistake="keep inverted"),
        Wrong("mean of the senders", _ri_mean, mistake="averaged"),
        Wrong("added the difference", _ri_added, mistake="difference added"),
        Right("a loop over senders", _ri_loop),
        Right("clean sum minus the patched differences", _ri_subtract),
    ],
    "ch7.kl_from_clean": [
        Wrong("KL(patched || clean)", partial(_kl, reverse=True), mistake="reversed KL"),
        Wrong("sum over positions", partial(_kl, total=True), mistake="summed over positions"),
        Wrong("every position", partial(_kl, everywhere=True), mistake="all positions"),
        Wrong("softmax instead of log_softmax", _kl_probs, mistake="probabilities"),
        Right("by hand", _kl),
        Right("torch.nn.functional.kl_div", _kl_torch),
    ],
    "ch7.induction_log_prob": [
        Wrong("targets not shifted", _lp_no_shift, mistake="no shift"),
        Wrong("from the start of the second copy", _lp_whole_copy, mistake="first token of the second copy included"),
        Wrong("softmax", _lp_probs, mistake="probabilities"),
        Right("a loop over positions", _lp_loop),
        Wrong("raw logits, no log_softmax", _lp_raw_logits, mistake="no log_softmax"),
        Wrong("targets at the logits' own positions", _lp_same_positions, mistake="no shift"),
        Wrong("targets one position earlier", _lp_previous_token, mistake="shifted the wrong way"),
    ],
    "ch7.acdc": [
        Wrong("edges in forward order", partial(_acdc, forward=True), mistake="forward order"),
        Wrong("compared with the unablated model", partial(_acdc, vs_clean=True),
              mistake="compared with the clean model"),
        Wrong("each edge tested alone", partial(_acdc, alone=True), mistake="each edge alone"),
        Wrong("abs of the change", partial(_acdc, absolute=True), mistake="absolute change"),
        Wrong("returned what was removed", partial(_acdc, removed_out=True), mistake="returned the removed edges"),
        Wrong("kept edges in the order visited", _acdc_kept_as_visited, mistake="order visited"),
        Right("for loop", _acdc),
        Right("while loop over indices", _acdc_while),
        Wrong("<= threshold", _acdc_at_most, mistake="threshold inclusive"),
    ],
    "ch7.prune_dangling": [
        Wrong("pruned only dead ends", partial(_prune, only="out"), mistake="output side only"),
        Wrong("pruned only unfed nodes", partial(_prune, only="in"), mistake="input side only"),
        Wrong("receiver names used as nodes", partial(_prune, raw_names=True),
              mistake="receivers not mapped to nodes"),
        Wrong("direct neighbours only", _prune_neighbours, mistake="one step only"),
        Right("repeated sweeps", _prune),
        Right("recursive search", _prune_recursive),
    ],
    "ch7.receiver_gradients": [
        Wrong("backward of -metric", partial(_grads, negate=True), mistake="negated"),
        Wrong("returned delta", partial(_grads, return_delta=True), mistake="returned delta"),
        Wrong("backward called twice", partial(_grads, twice=True), mistake="backward twice"),
        Wrong("no torch.enable_grad()", _grads_no_enable_grad, mistake="gradients off", status="error"),
        Right("backward", _grads),
        Right("torch.autograd.grad", _grads_autograd),
        Wrong("autograd.grad with create_graph=True", _grads_create_graph, mistake="still requires grad"),
        Wrong("an extra forward pass to print the metric", _grads_extra_forward, mistake="extra passes"),
        Right("float64 gradients", lambda em, tokens, metric: _grads(em, tokens, metric).double()),
    ],
    "ch7.eap_scores": [
        Wrong("clean - corrupted", partial(_eap, flip=True), mistake="wrong sign"),
        Wrong("output x gradient", partial(_eap, activation=True), mistake="activation times gradient"),
        Wrong("no adjacency mask", partial(_eap, no_mask=True), mistake="non-edges scored"),
        Wrong("mean over batch, pos, d", partial(_eap, mean=True), mistake="averaged"),
        Right("torch.einsum", _eap),
        Right("flattened matmul", _eap_flatten),
        Right("float64", lambda *args: _eap(*args).double()),
    ],
    "ch7.eap_edge_scores": [
        Wrong("gradient on the corrupted tokens", partial(_eap_edges, corrupted_grad=True),
              mistake="gradient on the corrupted run"),
        Wrong("runs swapped (denoising)", partial(_eap_edges, denoise=True), mistake="denoising"),
        Wrong("negated", partial(_eap_edges, flip=True), mistake="wrong sign"),
        Wrong("no torch.enable_grad()", _eap_edges_no_enable_grad, mistake="gradients off", status="error"),
        Right("with the earlier exercises", _eap_edges),
        Right("inline", _eap_edges_inline),
        Right("clean outputs from the gradient run (two forward passes)", _eap_edges_two_forwards),
        Wrong("an extra clean run for a baseline", _eap_edges_baseline_run, mistake="extra passes"),
    ],
    "ch7.ig_path": [
        Wrong("alpha from 0", partial(_path, zero_start=True), mistake="starts at the corrupted end"),
        Wrong("linspace(0, 1, steps)", partial(_path, linspace=True), mistake="both ends"),
        Wrong("from clean towards corrupted", partial(_path, backwards=True), mistake="reversed"),
        Right("stack of points", _path),
        Right("torch.lerp", _path_lerp),
    ],
    "ch7.eap_ig_edge_scores": [
        Wrong("gradients summed", partial(_ig, summed=True), mistake="summed, not averaged"),
        Wrong("alpha = 0 ... (steps - 1) / steps", partial(_ig, from_zero=True), mistake="starts at the corrupted end"),
        Wrong("only the clean point", partial(_ig, only_clean=True), mistake="gradient at the clean point only"),
        Right("loop over alphas", _ig),
        Right("using ig_path and a mean", _ig_with_path),
    ],
    "ch7.top_k_edges": [
        Wrong("signed scores", partial(_top, signed=True), mistake="signed scores"),
        Wrong("argsort ascending", partial(_top, smallest=True), mistake="smallest"),
        Wrong("adjacency ignored", partial(_top, unmasked=True), mistake="non-edges counted"),
        Right("argsort", _top),
        Right("sorted list of edges", _top_sorted_edges),
        Wrong("scores times adjacency", _top_times_adjacency, mistake="non-edges tied at 0"),
        Wrong("cut-off value (>= the k-th)", _top_threshold, mistake="ties kept"),
        Wrong("cut-off value, masked after", _top_cutoff_masked_after, mistake="ties kept"),
    ],
    "ch7.roc_points": [
        Wrong("thresholds from low to high", partial(_roc, ascending=True), mistake="ascending thresholds"),
        Wrong("no (0, 0)", partial(_roc, no_origin=True), mistake="no origin"),
        Wrong("divided by n", partial(_roc, over_n=True), mistake="rates over all items"),
        Wrong("one item at a time", partial(_roc, per_item=True), mistake="ties split"),
        Right("python loop over thresholds", _roc),
        Wrong("every item's score as a threshold", _roc_every_score, mistake="repeated thresholds"),
        Right("float64 rates", _roc_float64),
    ],
    "ch7.roc_auc": [
        Wrong("left rectangles", partial(_auc, rule="left"), mistake="left Riemann sum"),
        Wrong("right rectangles", partial(_auc, rule="right"), mistake="right Riemann sum"),
        Wrong("mean of tpr", lambda fpr, tpr: tpr.mean().item(), mistake="mean tpr"),
        Right("loop", _auc),
        Right("torch.trapezoid", lambda fpr, tpr: torch.trapezoid(tpr, fpr).item()),
        Wrong("0-d tensor", lambda fpr, tpr: torch.trapezoid(tpr, fpr), mistake="tensor, not float"),
    ],
    "ch7.edge_faithfulness": [
        Wrong("raw metric", partial(_faith, raw=True), mistake="not normalised"),
        Wrong("circuit / clean", partial(_faith, ratio=True), mistake="ratio to clean"),
        Wrong("kept the complement", partial(_faith, flipped=True), mistake="circuit corrupted"),
        Right("item()s", _faith),
        Right("clean run as every edge kept", _faith_all_kept),
        Wrong("0-d tensor", lambda *args: torch.tensor(_faith(*args)), mistake="tensor, not float"),
    ],
    "ch7.corrupt_senders_mask": [
        Wrong("columns switched off", partial(_senders, columns=True), mistake="receivers switched off"),
        Wrong("returned the corrupted edges", partial(_senders, inverted=True), mistake="inverted"),
        Wrong("started from ones", partial(_senders, ones=True), mistake="non-edges kept"),
        Right("loop over rows", _senders),
        Right("broadcast row mask", _senders_where),
        Wrong("float mask", _senders_float, mistake="not a bool mask"),
    ],
    "ch7.agreeing_resample": [
        Wrong("agrees at p, not p + offset", partial(_resample, same_position=True), mistake="wrong position kept"),
        Wrong("started from a copy of tokens", partial(_resample, copy_all=True), mistake="other tokens kept"),
        Wrong("BOS resampled too", partial(_resample, no_bos=True), mistake="BOS replaced"),
        Wrong("randint from 0", partial(_resample, from_zero=True), mistake="vocabulary"),
        Right("vectorised", _resample),
        Right("one run at a time", _resample_loop),
        Wrong("no lower bound on p + offset", _resample_wrapped, mistake="index wrapped"),
        Wrong("generator not passed to randint", _resample_global_rng, mistake="generator not used"),
        Wrong("randint(1, d_vocab - 1): the last token never drawn", _resample_high_exclusive,
              mistake="last token never drawn"),
    ],
    "ch7.assemble_by_position": [
        Wrong("run 0 only", _assemble_first, mistake="one run for everything"),
        Wrong("mean over runs", _assemble_mean, mistake="averaged over runs"),
        Wrong("off by one position", _assemble_shifted, mistake="shifted"),
        Right("loop", _assemble_loop),
        Right("advanced indexing", _assemble_index),
    ],
}
