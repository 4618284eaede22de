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


# -- blind test 1: mistakes that got only generic feedback, and more of their kind ----------------------------------


def _ri_kept_only(current, source, keep):
    return current[keep].sum(0)


def _ri_masked_product(current, source, keep):
    return (current * keep[:, None, None, None]).sum(0)


def _ri_source_only(current, source, keep):
    return source[~keep].sum(0)


def _ri_no_sum(current, source, keep):
    return torch.where(keep[:, None, None, None], current, source)


def _ri_sum_last(current, source, keep):
    return torch.where(keep.view(-1, 1, 1, 1), current, source).sum(-1)


def _ri_float_weights(current, source, keep):
    w = keep.float()[:, None, None, None]
    return (w * current + (1 - w) * source).sum(dim=0)


def _ri_einsum(current, source, keep):
    w = keep.to(current.dtype)
    return einops.einsum(w, current, "s, s b p d -> b p d") + einops.einsum(1 - w, source, "s, s b p d -> b p d")


def _kl_div_default(clean_logits, logits, positions):
    p = clean_logits[:, positions].log_softmax(-1)
    q = logits[:, positions].log_softmax(-1)
    return torch.nn.functional.kl_div(q, p, log_target=True)


def _kl_total(clean_logits, logits, positions):
    p = clean_logits[:, positions].log_softmax(-1)
    q = logits[:, positions].log_softmax(-1)
    return (p.exp() * (p - q)).sum()


def _kl_softmax_positions(clean_logits, logits, positions):
    p = clean_logits[:, positions].log_softmax(dim=1)
    q = logits[:, positions].log_softmax(dim=1)
    return (p.exp() * (p - q)).sum(-1).mean()


def _kl_index_select(clean_logits, logits, positions):
    p = clean_logits.index_select(1, positions).softmax(-1)
    log_p = clean_logits.index_select(1, positions).log_softmax(-1)
    log_q = logits.index_select(1, positions).log_softmax(-1)
    return (p * (log_p - log_q)).sum(-1).mean()


def _lp_loss(logits, tokens, seq_len):
    x = logits[:, seq_len + 1:2 * seq_len]
    y = tokens[:, seq_len + 2:2 * seq_len + 1]
    return torch.nn.functional.cross_entropy(x.reshape(-1, x.shape[-1]), y.reshape(-1))


def _lp_minus_loss(logits, tokens, seq_len):
    return -_lp_loss(logits, tokens, seq_len)


def _lp_stop_early(logits, tokens, seq_len):
    pos = torch.arange(seq_len + 1, 2 * seq_len - 1)
    lp = logits[:, pos].log_softmax(-1)
    return lp.gather(-1, tokens[:, pos + 1, None]).mean()


def _lp_start_late(logits, tokens, seq_len):
    lp = logits[:, seq_len + 2:-1].log_softmax(-1)
    return lp.gather(-1, tokens[:, seq_len + 3:, None]).mean()


def _lp_sum_positions(logits, tokens, seq_len):
    lp = logits[:, seq_len + 1:-1].log_softmax(-1)
    return lp.gather(-1, tokens[:, seq_len + 2:, None])[..., 0].sum(-1).mean()


def _lp_softmax_dim1(logits, tokens, seq_len):
    lp = logits.log_softmax(dim=1)[:, seq_len + 1:2 * seq_len]
    return lp.gather(-1, tokens[:, seq_len + 2:, None]).mean()


def _lp_negative_end(logits, tokens, seq_len):
    lp = torch.log_softmax(logits[:, seq_len + 1:-1], dim=-1)
    return torch.take_along_dim(lp, tokens[:, seq_len + 2:, None], dim=-1).mean()


def _acdc_recompute(edges, metric_without, threshold):
    removed = set()
    for edge in reversed(edges):
        if metric_without(removed | {edge}) - metric_without(removed) < threshold:
            removed.add(edge)
    return [e for e in edges if e not in removed]


def _acdc_try_and_undo(edges, metric_without, threshold):
    removed, current = set(), metric_without(set())
    for edge in edges[::-1]:
        removed.add(edge)
        value = metric_without(removed)
        if value - current >= threshold:
            removed.discard(edge)
        else:
            current = value
    return [e for e in edges if e not in removed]


def _prune_local_once(edges):
    has_in = {node_of(r) for _, r in edges} | {"embed"}
    has_out = {s for s, _ in edges} | {"logits"}
    return [(s, r) for s, r in edges if s in has_in and node_of(r) in has_out]


def _prune_local_sides_once(edges):
    fed = {"embed"} | {node_of(r) for _, r in edges}
    edges = [(s, r) for s, r in edges if s in fed]
    heard = {"logits"} | {s for s, _ in edges}
    return [(s, r) for s, r in edges if node_of(r) in heard]


def _prune_local_twice(edges):
    return _prune_local_once(_prune_local_once(edges))


def _prune_local_fixed_point(edges):
    kept = list(edges)
    while True:
        new = _prune_local_once(kept)
        if new == kept:
            return kept
        kept = new


def _prune_one_sweep(edges):
    fed, heard = {"embed"}, {"logits"}
    for s, r in edges:  # one sweep in list order: misses a chain listed backwards
        if s in fed:
            fed.add(node_of(r))
    for s, r in reversed(edges):
        if node_of(r) in heard:
            heard.add(s)
    return [(s, r) for s, r in edges if s in fed and node_of(r) in heard]


def _prune_bfs(edges):
    from collections import deque

    def reach(start, step):
        seen, queue = {start}, deque([start])
        while queue:
            node = queue.popleft()
            for nxt in step(node):
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
        return seen

    fed = reach("embed", lambda n: [node_of(r) for s, r in edges if s == n])
    heard = reach("logits", lambda n: [s for s, r in edges if node_of(r) == n])
    return [(s, r) for s, r in edges if s in fed and node_of(r) in heard]


def _prune_sorted(edges):
    return sorted(_prune_bfs(edges))


def _prune_set(edges):
    return set(_prune_bfs(edges))


def _eap_abs(clean_outs, corrupted_outs, grads, adjacency):
    s = einops.einsum(corrupted_outs - clean_outs, grads, "s b p d, r b p d -> s r")
    return s.abs() * adjacency


def _eap_batch_mean(clean_outs, corrupted_outs, grads, adjacency):
    s = einops.einsum(corrupted_outs - clean_outs, grads, "s b p d, r b p d -> s r") / grads.shape[1]
    return s * adjacency


def _eap_mean_over_pos(clean_outs, corrupted_outs, grads, adjacency):
    s = einops.einsum(corrupted_outs - clean_outs, grads, "s b p d, r b p d -> s b p r").mean((1, 2))
    return torch.where(adjacency, s, 0.0)


def _eap_receiver_first(clean_outs, corrupted_outs, grads, adjacency):
    return einops.einsum(grads, corrupted_outs - clean_outs, "r b p d, s b p d -> r s") * adjacency.T


def _eap_loop(clean_outs, corrupted_outs, grads, adjacency):
    out = torch.zeros(adjacency.shape, dtype=grads.dtype)
    for s, r in adjacency.nonzero().tolist():
        out[s, r] = ((corrupted_outs[s] - clean_outs[s]) * grads[r]).sum()
    return out


def _eap_edges_unmasked(em, clean_tokens, corrupted_tokens, metric):
    clean_outs = em.sender_outputs(clean_tokens)
    corrupted_outs = em.sender_outputs(corrupted_tokens)
    grads = ref.receiver_gradients(em, clean_tokens, metric)
    return einops.einsum(corrupted_outs - clean_outs, grads, "s b p d, r b p d -> s r")


def _eap_edges_abs(em, clean_tokens, corrupted_tokens, metric):
    return _eap_edges(em, clean_tokens, corrupted_tokens, metric).abs()


def _eap_edges_mean(em, clean_tokens, corrupted_tokens, metric):
    clean_outs = em.sender_outputs(clean_tokens)
    corrupted_outs = em.sender_outputs(corrupted_tokens)
    grads = ref.receiver_gradients(em, clean_tokens, metric)
    return ref.eap_scores(clean_outs, corrupted_outs, grads, em.graph.adjacency) / len(clean_tokens)


def _eap_edges_same_run(em, clean_tokens, corrupted_tokens, metric):
    clean_outs = em.sender_outputs(clean_tokens)
    corrupted_outs = em.sender_outputs(clean_tokens)  # typo: the clean tokens twice
    grads = ref.receiver_gradients(em, clean_tokens, metric)
    return ref.eap_scores(clean_outs, corrupted_outs, grads, em.graph.adjacency)


def _path_steps_plus_one(clean, corrupted, steps):
    alpha = torch.linspace(0, 1, steps + 1)
    return corrupted + alpha[:, None, None, None] * (clean - corrupted)


def _path_over_steps_plus_one(clean, corrupted, steps):
    return torch.stack([corrupted + k / (steps + 1) * (clean - corrupted) for k in range(1, steps + 1)])


def _path_steps_last(clean, corrupted, steps):
    return torch.stack([corrupted + k / steps * (clean - corrupted) for k in range(1, steps + 1)], dim=-1)


def _path_linspace_drop_first(clean, corrupted, steps):
    alpha = torch.linspace(0, 1, steps + 1)[1:].to(clean)
    return corrupted + alpha.view(-1, 1, 1, 1) * (clean - corrupted)


def _path_einops(clean, corrupted, steps):
    alpha = torch.arange(1, steps + 1).to(clean) / steps
    return einops.rearrange(alpha, "k -> k 1 1 1") * clean + einops.rearrange(1 - alpha, "k -> k 1 1 1") * corrupted


def _ig_first_point(em, clean_tokens, corrupted_tokens, metric, steps=5):
    clean_outs = em.sender_outputs(clean_tokens)
    corrupted_outs = em.sender_outputs(corrupted_tokens)
    point = ref.ig_path(clean_outs[0], corrupted_outs[0], steps)[0]
    delta = em.zero_delta(clean_tokens)
    with torch.enable_grad():
        metric(em.run(clean_tokens, receiver_delta=delta, embed=point)).backward()
    return ref.eap_scores(clean_outs, corrupted_outs, delta.grad, em.graph.adjacency)


def _ig_points(em, clean_tokens, corrupted_tokens, metric, steps, alphas, *, divide_by=None, shared=False,
               post=None):
    clean_outs = em.sender_outputs(clean_tokens)
    corrupted_outs = em.sender_outputs(corrupted_tokens)
    total = 0
    delta = em.zero_delta(clean_tokens)
    for alpha in alphas:
        if not shared:
            delta = em.zero_delta(clean_tokens)
        embed = torch.lerp(corrupted_outs[0], clean_outs[0], float(alpha))
        with torch.enable_grad():
            metric(em.run(clean_tokens, receiver_delta=delta, embed=embed)).backward()
        total = total + delta.grad
    grads = total / (divide_by or len(alphas))
    if post == "unmasked":
        return einops.einsum(corrupted_outs - clean_outs, grads, "s b p d, r b p d -> s r")
    scores = ref.eap_scores(clean_outs, corrupted_outs, grads, em.graph.adjacency)
    return scores.abs() if post == "abs" else scores


def _ig_linspace_plus_one(em, clean_tokens, corrupted_tokens, metric, steps=5):
    return _ig_points(em, clean_tokens, corrupted_tokens, metric, steps, torch.linspace(0, 1, steps + 1))


def _ig_linspace(em, clean_tokens, corrupted_tokens, metric, steps=5):
    return _ig_points(em, clean_tokens, corrupted_tokens, metric, steps, torch.linspace(0, 1, steps))


def _ig_shared_delta(em, clean_tokens, corrupted_tokens, metric, steps=5):
    return _ig_points(em, clean_tokens, corrupted_tokens, metric, steps, [k / steps for k in range(1, steps + 1)],
                      shared=True)


def _ig_shared_delta_read_once(em, clean_tokens, corrupted_tokens, metric, steps=5):
    clean_outs = em.sender_outputs(clean_tokens)
    corrupted_outs = em.sender_outputs(corrupted_tokens)
    delta = em.zero_delta(clean_tokens)  # .grad accumulates over the runs: read it once at the end
    for point in ref.ig_path(clean_outs[0], corrupted_outs[0], steps):
        with torch.enable_grad():
            metric(em.run(clean_tokens, receiver_delta=delta, embed=point)).backward()
    return ref.eap_scores(clean_outs, corrupted_outs, delta.grad / steps, em.graph.adjacency)


def _ig_unmasked(em, clean_tokens, corrupted_tokens, metric, steps=5):
    return _ig_points(em, clean_tokens, corrupted_tokens, metric, steps, [k / steps for k in range(1, steps + 1)],
                      post="unmasked")


def _ig_abs(em, clean_tokens, corrupted_tokens, metric, steps=5):
    return _ig_points(em, clean_tokens, corrupted_tokens, metric, steps, [k / steps for k in range(1, steps + 1)],
                      post="abs")


def _top_abs_after_mask(scores, adjacency, k):
    flat = scores.masked_fill(~adjacency, float("-inf")).abs().flatten()
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[flat.topk(k).indices] = True
    return mask.view_as(adjacency)


def _roc_vectorised(scores, labels, *, strict=False, swap=False, origin=True, end=False):
    t = torch.unique(scores, sorted=True).flip(0)
    pred = scores[None, :] > t[:, None] if strict else scores[None, :] >= t[:, None]
    fpr = (pred & ~labels).sum(1).float() / (~labels).sum()
    tpr = (pred & labels).sum(1).float() / labels.sum()
    if origin:
        fpr, tpr = torch.cat([torch.zeros(1), fpr]), torch.cat([torch.zeros(1), tpr])
    if end:
        fpr, tpr = torch.cat([fpr, torch.ones(1)]), torch.cat([tpr, torch.ones(1)])
    return (tpr, fpr) if swap else (fpr, tpr)


def _roc_inf_first(scores, labels):
    thresholds = torch.cat([torch.tensor([float("inf")]), torch.unique(scores).flip(0)])
    called = scores[None] >= thresholds[:, None]
    return ((called & ~labels).sum(1) / (~labels).sum()).float(), ((called & labels).sum(1) / labels.sum()).float()


def _auc_zip(fpr, tpr):
    f, t = fpr.tolist(), tpr.tolist()
    return sum((x1 - x0) * (y0 + y1) / 2 for x0, x1, y0, y1 in zip(f, f[1:], t, t[1:]))


def _faith_runs(em, tokens, corrupted_outs, keep, metric):
    with torch.no_grad():
        clean = metric(em.run(tokens))
        nothing = metric(em.run(tokens, keep=torch.zeros_like(keep), source=corrupted_outs))
        circuit = metric(em.run(tokens, keep=keep, source=corrupted_outs))
    return clean, nothing, circuit


def _faith_lost(em, tokens, corrupted_outs, keep, metric):
    clean, nothing, circuit = _faith_runs(em, tokens, corrupted_outs, keep, metric)
    return ((clean - circuit) / (clean - nothing)).item()


def _faith_clean_source(em, tokens, corrupted_outs, keep, metric):
    clean = metric(em.run(tokens))
    nothing = metric(em.run(tokens, keep=torch.zeros_like(keep), source=em.sender_outputs(tokens)))
    circuit = metric(em.run(tokens, keep=keep, source=corrupted_outs))
    return ((circuit - nothing) / (clean - nothing + 1e-12)).item()


def _faith_complement(em, tokens, corrupted_outs, keep, metric):
    clean = metric(em.run(tokens))
    nothing = metric(em.run(tokens, keep=~keep, source=corrupted_outs))
    circuit = metric(em.run(tokens, keep=keep, source=corrupted_outs))
    return ((circuit - nothing) / (clean - nothing)).item()


def _faith_difference(em, tokens, corrupted_outs, keep, metric):
    clean, nothing, circuit = _faith_runs(em, tokens, corrupted_outs, keep, metric)
    return (circuit - nothing).item()


def _faith_over_missing(em, tokens, corrupted_outs, keep, metric):
    clean, nothing, circuit = _faith_runs(em, tokens, corrupted_outs, keep, metric)
    return ((circuit - nothing) / (clean - circuit)).item()


def _faith_signs_flipped(em, tokens, corrupted_outs, keep, metric):
    clean, nothing, circuit = _faith_runs(em, tokens, corrupted_outs, keep, metric)
    return float((nothing - circuit) / (nothing - clean))


def _senders_isin(adjacency, senders):
    rows = torch.isin(torch.arange(adjacency.shape[0], device=adjacency.device),
                      torch.tensor(senders, device=adjacency.device))
    return adjacency & ~rows[:, None]


def _senders_last_only(adjacency, senders):
    for s in senders:
        keep = adjacency.clone()
        keep[s] = False
    return keep


def _senders_first_only(adjacency, senders):
    keep = adjacency.clone()
    keep[senders[0]] = False
    return keep


def _senders_ones_columns(adjacency, senders):
    keep = torch.ones_like(adjacency)
    keep[:, senders] = False
    return keep


def _assemble_reshape(outputs):
    p, b, _, d = outputs.shape
    return torch.diagonal(outputs, dim1=0, dim2=2).reshape(b, p, d)


def _assemble_stack_reshape(outputs):
    p, b, _, d = outputs.shape
    return torch.stack([outputs[i, :, i] for i in range(p)]).reshape(b, p, d)


def _assemble_stack_dim0(outputs):
    return torch.stack([outputs[i, :, i] for i in range(outputs.shape[0])])


def _assemble_diagonal_only(outputs):
    return outputs.diagonal(dim1=0, dim2=2)


def _assemble_permute(outputs):
    return torch.diagonal(outputs, dim1=0, dim2=2).permute(0, 2, 1)


def _assemble_gather(outputs):
    idx = torch.arange(outputs.shape[0])
    return einops.rearrange(outputs[idx, :, idx], "pos batch d -> batch pos d")


VARIANTS_BLIND_1 = {
    "ch7.receiver_input": [
        Wrong("only the kept senders summed", _ri_kept_only, mistake="source terms dropped"),
        Wrong("current times keep, summed", _ri_masked_product, mistake="source terms dropped"),
        Wrong("only the patched senders' source outputs", _ri_source_only, mistake="current terms dropped"),
        Wrong("no sum over senders", _ri_no_sum, mistake="not summed over senders"),
        Wrong("summed over d_model", _ri_sum_last, mistake="summed over the wrong axis"),
        Right("float weights", _ri_float_weights),
        Right("einsum with weights", _ri_einsum),
    ],
    "ch7.kl_from_clean": [
        Wrong("F.kl_div, default reduction", _kl_div_default, mistake="averaged over the vocabulary"),
        Wrong("summed over everything", _kl_total, mistake="summed over everything"),
        Wrong("log_softmax over positions", _kl_softmax_positions, mistake="softmax over the wrong axis"),
        Right("index_select", _kl_index_select),
    ],
    "ch7.induction_log_prob": [
        Wrong("cross_entropy returned", _lp_loss, mistake="loss, not log-prob"),
        Wrong("range stops one early", _lp_stop_early, mistake="stops one position early"),
        Wrong("starts one late", _lp_start_late, mistake="starts one position late"),
        Wrong("sum over positions", _lp_sum_positions, mistake="summed over positions"),
        Wrong("log_softmax over positions", _lp_softmax_dim1, mistake="softmax over the wrong axis"),
        Right("minus cross_entropy", _lp_minus_loss),
        Right("negative slice end, take_along_dim", _lp_negative_end),
    ],
    "ch7.acdc": [
        Wrong("recomputes the current metric for every edge", _acdc_recompute, mistake="extra passes"),
        Right("add, test, undo", _acdc_try_and_undo),
    ],
    "ch7.prune_dangling": [
        Wrong("one pass of local pruning", _prune_local_once, mistake="one pass of local pruning"),
        Wrong("one pass, one side after the other", _prune_local_sides_once, mistake="one pass of local pruning"),
        Wrong("two passes of local pruning", _prune_local_twice, mistake="dangling edges left"),
        Wrong("one sweep in list order", _prune_one_sweep, mistake="one step only"),
        Wrong("sorted", _prune_sorted, mistake="edges out of order"),
        Wrong("a set", _prune_set, mistake="not a list"),
        Right("local pruning until nothing changes", _prune_local_fixed_point),
        Right("breadth-first search", _prune_bfs),
    ],
    "ch7.eap_scores": [
        Wrong("abs of the scores", _eap_abs, mistake="sign lost"),
        Wrong("divided by the batch size", _eap_batch_mean, mistake="averaged"),
        Wrong("mean over batch and position", _eap_mean_over_pos, mistake="averaged"),
        Wrong("[receiver, sender]", _eap_receiver_first, mistake="[receiver, sender]"),
        Right("loop over edges", _eap_loop),
    ],
    "ch7.eap_edge_scores": [
        Wrong("adjacency mask forgotten", _eap_edges_unmasked, mistake="non-edges scored"),
        Wrong("abs of the scores", _eap_edges_abs, mistake="sign lost"),
        Wrong("divided by the batch size", _eap_edges_mean, mistake="averaged"),
        Wrong("clean tokens twice", _eap_edges_same_run, mistake="all zero"),
    ],
    "ch7.ig_path": [
        Wrong("linspace(0, 1, steps + 1)", _path_steps_plus_one, mistake="steps + 1 points"),
        Wrong("k / (steps + 1)", _path_over_steps_plus_one, mistake="divided by steps + 1"),
        Wrong("stacked on the last axis", _path_steps_last, mistake="steps axis last"),
        Right("linspace(0, 1, steps + 1)[1:]", _path_linspace_drop_first),
        Right("einops weights", _path_einops),
    ],
    "ch7.eap_ig_edge_scores": [
        Wrong("one gradient, at the first point", _ig_first_point, mistake="one point only"),
        Wrong("linspace(0, 1, steps + 1)", _ig_linspace_plus_one, mistake="steps + 1 points"),
        Wrong("linspace(0, 1, steps)", _ig_linspace, mistake="both ends"),
        Wrong("one delta, .grad added after every run", _ig_shared_delta, mistake="one delta reused"),
        Wrong("adjacency mask forgotten", _ig_unmasked, mistake="non-edges scored"),
        Wrong("abs of the scores", _ig_abs, mistake="sign lost"),
        Right("one delta, .grad read once at the end", _ig_shared_delta_read_once),
    ],
    "ch7.top_k_edges": [
        Wrong("masked with -inf, then abs", _top_abs_after_mask, mistake="masked before abs"),
    ],
    "ch7.roc_points": [
        Wrong("(tpr, fpr)", partial(_roc_vectorised, swap=True), mistake="(tpr, fpr) swapped"),
        Wrong("> instead of >=", partial(_roc_vectorised, strict=True), mistake="strict threshold"),
        Wrong("> with no origin", partial(_roc_vectorised, strict=True, origin=False), mistake="strict threshold"),
        Right("> from the highest score down, (1, 1) appended", partial(_roc_vectorised, strict=True, origin=False,
                                                                        end=True)),
        Wrong("(1, 1) appended", partial(_roc_vectorised, end=True), mistake="(1, 1) appended"),
        Right("vectorised", _roc_vectorised),
        Right("threshold +inf first", _roc_inf_first),
    ],
    "ch7.roc_auc": [
        Wrong("torch.trapezoid(fpr, tpr)", lambda fpr, tpr: torch.trapezoid(fpr, tpr).item(),
              mistake="x and y swapped"),
        Wrong("torch.trapezoid(tpr)", lambda fpr, tpr: torch.trapezoid(tpr).item(), mistake="no x: unit spacing"),
        Wrong("dx = 1 / (n - 1)", lambda fpr, tpr: torch.trapezoid(tpr, dx=1 / (len(tpr) - 1)).item(),
              mistake="evenly spaced points"),
        Wrong("no / 2", lambda f, t: ((f[1:] - f[:-1]) * (t[1:] + t[:-1])).sum().item(), mistake="no / 2"),
        Right("zip of neighbours", _auc_zip),
    ],
    "ch7.edge_faithfulness": [
        Wrong("fraction lost", _faith_lost, mistake="fraction lost"),
        Wrong("'corrupted' run sourced from the clean outputs", _faith_clean_source, mistake="baseline not corrupted"),
        Wrong("baseline from ~keep", _faith_complement, mistake="baseline from the complement"),
        Wrong("not divided by the gap", _faith_difference, mistake="not normalised"),
        Wrong("divided by clean - circuit", _faith_over_missing, mistake="divided by the wrong gap"),
        Right("both signs flipped", _faith_signs_flipped),
    ],
    "ch7.corrupt_senders_mask": [
        Wrong("a fresh copy per sender", _senders_last_only, mistake="only the last sender"),
        Wrong("only senders[0]", _senders_first_only, mistake="only the first sender"),
        Wrong("ones, columns switched off", _senders_ones_columns, mistake="non-edges kept"),
        Right("torch.isin row mask", _senders_isin),
    ],
    "ch7.assemble_by_position": [
        Wrong("diagonal, reshape", _assemble_reshape, mistake="reshape instead of permute"),
        Wrong("stack on axis 0, reshape", _assemble_stack_reshape, mistake="reshape instead of permute"),
        Wrong("stack on axis 0", _assemble_stack_dim0, mistake="[pos, batch, d_model]"),
        Wrong("diagonal, not moved", _assemble_diagonal_only, mistake="[batch, d_model, pos]"),
        Right("diagonal, permute", _assemble_permute),
        Right("advanced indexing, rearrange", _assemble_gather),
    ],
}
for _exercise, _variants in VARIANTS_BLIND_1.items():
    VARIANTS.setdefault(_exercise, []).extend(_variants)


def _kl_div_no_log_target(clean_logits, logits, positions):
    p = clean_logits[:, positions].log_softmax(-1).flatten(0, 1)
    q = logits[:, positions].log_softmax(-1).flatten(0, 1)
    return torch.nn.functional.kl_div(q, p, reduction="batchmean")


def _kl_div_probs(clean_logits, logits, positions):
    p = clean_logits[:, positions].softmax(-1).flatten(0, 1)
    q = logits[:, positions].softmax(-1).flatten(0, 1)
    return torch.nn.functional.kl_div(q, p, reduction="batchmean")


def _kl_div_target_probs(clean_logits, logits, positions):
    p = clean_logits[:, positions].softmax(-1).flatten(0, 1)
    q = logits[:, positions].log_softmax(-1).flatten(0, 1)
    return torch.nn.functional.kl_div(q, p, reduction="batchmean")


def _lp_log_mean_prob(logits, tokens, seq_len):
    p = logits[:, seq_len + 1:2 * seq_len].softmax(-1).gather(-1, tokens[:, seq_len + 2:, None])
    return p.mean().log()


def _lp_every_position(logits, tokens, seq_len):
    return -torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())


def _roc_lists(scores, labels):
    fpr, tpr = _roc(scores, labels)
    return fpr.tolist(), tpr.tolist()


def _faith_over_nothing(em, tokens, corrupted_outs, keep, metric):
    clean, nothing, circuit = _faith_runs(em, tokens, corrupted_outs, keep, metric)
    return (circuit / nothing).item()


def _faith_upside_down(em, tokens, corrupted_outs, keep, metric):
    clean, nothing, circuit = _faith_runs(em, tokens, corrupted_outs, keep, metric)
    return ((clean - nothing) / (circuit - nothing)).item()


def _ri_minus_source(current, source, keep):
    return current.sum(0) - source[~keep].sum(0)


def _top_float_mask(scores, adjacency, k):
    return _top(scores, adjacency, k).float()


def _top_k_plus_one(scores, adjacency, k):
    return _top(scores, adjacency, k + 1)


for _exercise, _variants in {
    "ch7.kl_from_clean": [
        Wrong("F.kl_div without log_target", _kl_div_no_log_target, mistake="log_target missing"),
        Wrong("F.kl_div on probabilities", _kl_div_probs, mistake="input not log-probabilities"),
        Right("F.kl_div, probabilities as target", _kl_div_target_probs),
    ],
    "ch7.induction_log_prob": [
        Wrong("log of the mean probability", _lp_log_mean_prob, mistake="log of the mean probability"),
        Wrong("every position of the sequence", _lp_every_position, mistake="all positions"),
    ],
    "ch7.roc_points": [Wrong("lists", _roc_lists, mistake="lists, not tensors")],
    "ch7.edge_faithfulness": [
        Wrong("circuit / corrupted", _faith_over_nothing, mistake="ratio to corrupted"),
        Wrong("(clean - corrupted) / (circuit - corrupted)", _faith_upside_down, mistake="ratio upside down"),
    ],
    "ch7.receiver_input": [Wrong("subtracted the source outputs", _ri_minus_source, mistake="source subtracted")],
    "ch7.top_k_edges": [
        Wrong("float mask", _top_float_mask, mistake="not a bool mask"),
        Wrong("k + 1 edges", _top_k_plus_one, mistake="wrong number of edges"),
    ],
}.items():
    VARIANTS.setdefault(_exercise, []).extend(_variants)


# -- blind test 2: wrong answers that passed ---------------------------------------------------------------------


def _grads_set_grad_enabled(em, tokens, metric):
    torch.set_grad_enabled(True)  # never switched back: gradients stay on for the rest of the notebook
    delta = em.zero_delta(tokens)
    metric(em.run(tokens, receiver_delta=delta)).backward()
    return delta.grad.detach()


def _grads_set_grad_enabled_restored(em, tokens, metric):
    previous = torch.is_grad_enabled()
    torch.set_grad_enabled(True)
    try:
        delta = em.zero_delta(tokens)
        metric(em.run(tokens, receiver_delta=delta)).backward()
    finally:
        torch.set_grad_enabled(previous)
    return delta.grad.detach()


def _grads_own_zeros(em, tokens, metric):
    n_receivers = em.graph.adjacency.shape[1]
    delta = torch.zeros(n_receivers, *tokens.shape, em.W_E.shape[1], device=tokens.device, requires_grad=True)
    with torch.enable_grad():
        metric(em.run(tokens, receiver_delta=delta)).backward()
    return delta.grad.detach()


def _grads_own_zeros_like_weights(em, tokens, metric):
    n_receivers = em.graph.adjacency.shape[1]
    delta = torch.zeros(n_receivers, *tokens.shape, em.W_E.shape[1], device=em.W_E.device, dtype=em.W_E.dtype,
                        requires_grad=True)
    with torch.enable_grad():
        metric(em.run(tokens, receiver_delta=delta)).backward()
    return delta.grad.detach()


def _senders_tensor_index(adjacency, senders):
    keep = adjacency.clone()
    keep[torch.tensor(senders)] = False
    return keep


def _senders_long_tensor_index(adjacency, senders):
    keep = adjacency.clone()
    keep[torch.tensor(senders, dtype=torch.long, device=adjacency.device)] = False
    return keep


def _resample_no_upper_bound(tokens, offset, d_vocab, generator=None):
    batch, n_pos = tokens.shape
    out = torch.randint(1, d_vocab, (n_pos, batch, n_pos), generator=generator)
    out[:, :, 0] = tokens[:, 0]
    for p in range(n_pos):
        if p + offset >= 1:
            out[p, :, p + offset] = tokens[:, p + offset]
    return out


for _exercise, _variants in {
    "ch7.receiver_gradients": [
        Wrong("torch.set_grad_enabled(True), never switched back", _grads_set_grad_enabled,
              mistake="grad mode left on"),
        Right("torch.set_grad_enabled(True), then the previous mode restored", _grads_set_grad_enabled_restored),
        Wrong("own float32 torch.zeros(..., requires_grad=True)", _grads_own_zeros,
              mistake="delta not in the model's dtype"),
        Right("own zeros in the weights' dtype", _grads_own_zeros_like_weights),
    ],
    "ch7.corrupt_senders_mask": [
        Wrong("keep[torch.tensor(senders)] = False", _senders_tensor_index, mistake="empty senders", status="error"),
        Right("keep[torch.tensor(senders, dtype=torch.long)] = False", _senders_long_tensor_index),
    ],
    "ch7.agreeing_resample": [
        Wrong("no upper bound on p + offset", _resample_no_upper_bound, mistake="index past the end",
              status="error"),
    ],
}.items():
    VARIANTS.setdefault(_exercise, []).extend(_variants)
