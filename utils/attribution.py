"""Attribution graphs for one prompt (Chapter 8), after Ameisen et al. (2025), "Circuit Tracing".

The **local replacement model** of a prompt is the real model with three changes that make it
linear in its nodes:

- every attention pattern and every LayerNorm scale is frozen at its value in the real forward
  pass (so attention only moves values, and a LayerNorm only centres, scales and shifts);
- every MLP is replaced by its transcoder's decoder, driven by the transcoder's activations on
  the real MLP inputs;
- an **error node** per (layer, position) adds back what the transcoder missed there, so the
  replacement model's logits equal the real model's (to float rounding: `tests/test_attribution.py`).

Its nodes are the token embeddings (one per position), the active transcoder features, the error
nodes and the top output logits. Every node's input (a feature's pre-activation, a logit) is then
an affine function of the nodes before it: a sum of **direct effects**, one per source node, plus
constant biases. `build_graph` measures each effect with a backward pass from each target and stores
them in `adjacency[target, source]`; `prune` keeps the nodes and edges with the most influence on
the logits through the paper's (I - A)^-1 construction.

Node order everywhere: embeddings (by position), features (by layer, position, latent), error
nodes (by layer, position), logits (most likely first). Transcoders of either kind are handled
in the cross-layer layout (`utils.transcoders.as_cross_layer`: `W_dec [source_layer, target_layer,
d_model, latent]`); per-layer ones are its diagonal.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import einops
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from utils.circuits import EdgeModel
from utils.transcoders import as_cross_layer, collect_mlp_activations, decode, encode

KINDS = ("embed", "feature", "error", "logit")


def _frozen_ln(x: Tensor, scale: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """A LayerNorm whose scale is a constant: linear in x (centre, divide, then w and b)."""
    return (x - x.mean(-1, keepdim=True)) / scale * w + b


@dataclass
class ReplacementModel:
    """The local replacement model of one prompt (see the module docstring).

    Its feature nodes are the prompt's active transcoder latents, `features[i] = (pos, layer,
    latent)` in node order, with activations `feature_acts`. `forward(embed_scale, feature_values,
    error_scale)` is linear in its three inputs (plus constants): at their real values
    (`real_inputs()`) it returns the real model's logits and every feature's real pre-activation."""

    em: EdgeModel
    params: dict[str, Tensor]
    k: int
    tokens: Int[Tensor, " pos"]
    patterns: Float[Tensor, "layer head q k"]
    ln1_scale: Float[Tensor, "layer pos 1"]
    ln2_scale: Float[Tensor, "layer pos 1"]
    ln_final_scale: Float[Tensor, "pos 1"]
    acts: Float[Tensor, "pos layer lat"]
    errors: Float[Tensor, "pos layer d_model"]
    logits: Float[Tensor, "pos vocab"]
    features: Int[Tensor, "feature 3"] = None

    def __post_init__(self) -> None:
        if self.features is None:
            active = (self.acts > 0).nonzero()                                    # (pos, layer, lat), pos first
            order = torch.argsort(active[:, 1] * self.n_pos + active[:, 0], stable=True)
            self.features = active[order]                                         # layer, then position
        pos, layer, lat = self.features.unbind(-1)
        self.feature_acts = self.acts[pos, layer, lat]
        self.encoders = self.params["W_enc"][layer, :, lat]                       # [feature, d_model]
        self.enc_bias = self.params["b_enc"][layer, lat]
        self.decoders = self.params["W_dec"][layer, :, :, lat]                  # [feature, target layer, d_model]
        # one-hot [feature, pos]: gathers and scatters by position as matrix products, which batch well
        self.at_pos = torch.nn.functional.one_hot(pos, self.n_pos).to(self.acts.dtype)
        # per target layer: the features that write to it, and what each writes there per unit of activation
        self.writers, self.writes_per_unit = [], []
        for target in range(self.n_layers):
            writers = (self.decoders[:, target].abs().sum(-1) > 0).nonzero()[:, 0]
            self.writers.append(writers)
            self.writes_per_unit.append(einops.rearrange(self.at_pos[writers, :, None] * self.decoders[writers, None, target],
                                                         "f pos d -> f (pos d)"))

    @classmethod
    @torch.no_grad()
    def from_prompt(cls, model, params: dict[str, Tensor], k: int, tokens: Int[Tensor, " pos"],
                    em: EdgeModel | None = None) -> "ReplacementModel":
        """Run the real model once and freeze what the replacement model needs from it."""
        params = as_cross_layer(params)
        n_layers = model.cfg.n_layers
        device = next(model.parameters()).device
        logits, cache = model.run_with_cache(tokens[None].to(device))
        stack = lambda name: torch.stack([cache[name.format(layer)][0] for layer in range(n_layers)])  # noqa: E731
        mlp_in = einops.rearrange(stack("blocks.{}.mlp.hook_in"), "layer pos d -> pos layer d")
        mlp_out = einops.rearrange(stack("blocks.{}.hook_mlp_out"), "layer pos d -> pos layer d")
        acts = encode(mlp_in, params, k)
        return cls(em=em or EdgeModel(model), params=params, k=k, tokens=tokens.to(device),
                   patterns=stack("blocks.{}.attn.hook_pattern"), ln1_scale=stack("blocks.{}.ln1.hook_scale"),
                   ln2_scale=stack("blocks.{}.ln2.hook_scale"), ln_final_scale=cache["ln_final.hook_scale"][0],
                   acts=acts, errors=mlp_out - decode(acts, params), logits=logits[0])

    @property
    def n_layers(self) -> int:
        return self.patterns.shape[0]

    @property
    def n_pos(self) -> int:
        return len(self.tokens)

    def forward(self, embed_scale: Float[Tensor, "*batch pos"], feature_values: Float[Tensor, "*batch feature"],
                error_scale: Float[Tensor, "*batch pos layer"], up_to: int | None = None
                ) -> tuple[Float[Tensor, "*batch pos vocab"] | None, Float[Tensor, "*batch feature"]]:
        """Logits and every feature's pre-activation, with the nodes set to the given values (leading
        batch axes allowed: many settings of the nodes at once). Only the active latents exist here: an
        inactive one has no node, and its pre-activation is not needed. With `up_to`, stop after that
        layer's MLP input: no logits, and only the pre-activations of the features up to that layer."""
        em = self.em
        layer_of = self.features[:, 1]
        resid = embed_scale[..., None] * em.embed(self.tokens[None])[0]
        writes = self.params["b_dec"] + error_scale[..., None] * self.errors       # [*batch, pos, layer, d]
        pre = []
        for layer, w in enumerate(em.layers):
            if up_to is not None and layer > up_to:
                return None, torch.cat(pre, dim=-1)
            x = _frozen_ln(resid, self.ln1_scale[layer], *w["ln1"])
            v = einops.einsum(x, w["W_V"], "... pos d, head d e -> ... head pos e") + w["b_V"][:, None]
            z = einops.einsum(self.patterns[layer], v, "head q k, ... head k e -> ... head q e")
            resid = resid + einops.einsum(z, w["W_O"], "... head pos e, head e d -> ... pos d") + w["b_O"]
            x = _frozen_ln(resid, self.ln2_scale[layer], *w["ln2"])
            here = layer_of == layer
            x_at = einops.einsum(self.at_pos[here], x, "f pos, ... pos d -> ... f d")
            pre.append((x_at * self.encoders[here]).sum(-1) + self.enc_bias[here])
            from_features = feature_values[..., self.writers[layer]] @ self.writes_per_unit[layer]
            resid = resid + writes[..., layer, :] + from_features.view(*resid.shape)
        x = _frozen_ln(resid, self.ln_final_scale, *em.ln_final)
        return x @ em.W_U.T + em.b_U, torch.cat(pre, dim=-1)

    def real_inputs(self) -> tuple[Tensor, Tensor, Tensor]:
        ones = torch.ones(self.n_pos, device=self.acts.device)
        return ones, self.feature_acts, torch.ones(self.n_pos, self.n_layers, device=self.acts.device)


@dataclass
class AttributionGraph:
    """Nodes, direct effects and what the prompt's run gave each node (see the module docstring)."""

    tokens: list[str]
    n_layers: int
    kinds: list[str]                                 # per node: "embed", "feature", "error" or "logit"
    layers: Int[Tensor, " node"]                     # -1 for embeddings, n_layers for logits
    positions: Int[Tensor, " node"]
    indices: Int[Tensor, " node"]                    # the latent of a feature, the token of an embedding or a logit
    activations: Float[Tensor, " node"]              # a feature's activation; 1 for embeddings and errors; a logit's value
    adjacency: Float[Tensor, "node node"]            # [target, source]: direct effect of source on target's input
    bias: Float[Tensor, " node"]                     # the constant part of each input (biases), 0 for sources
    inputs: Float[Tensor, " node"]                   # each node's input on the real run (pre-activation, demeaned logit)
    logit_probs: Float[Tensor, " logit"]
    labels: list[str] = field(default_factory=list)

    def mask(self, kind: str) -> Bool[Tensor, " node"]:
        return torch.tensor([k == kind for k in self.kinds])

    @property
    def logit_weights(self) -> Float[Tensor, " node"]:
        """How much each node matters as an output: its probability for logits, 0 elsewhere."""
        weights = torch.zeros(len(self.kinds), dtype=self.adjacency.dtype)
        weights[self.mask("logit")] = self.logit_probs.to(weights.dtype)
        return weights

    def node_name(self, i: int) -> str:
        kind, layer, pos, index = self.kinds[i], int(self.layers[i]), int(self.positions[i]), int(self.indices[i])
        if kind == "embed":
            return f"emb@{pos}"
        if kind == "feature":
            return f"L{layer}.{index}@{pos}"
        if kind == "error":
            return f"err L{layer}@{pos}"
        return f"logit {index}"


def logit_nodes(logits: Float[Tensor, " vocab"], max_logits: int = 10, coverage: float = 0.95) -> Int[Tensor, " logit"]:
    """The most likely next tokens, until their probabilities add up to `coverage` (at most `max_logits`)."""
    probs = logits.softmax(-1)
    order = probs.argsort(descending=True)
    n = int((probs[order].cumsum(0) < coverage).sum()) + 1
    return order[: min(n, max_logits)]


def build_graph(rm: ReplacementModel, token_strs: list[str], max_logits: int = 10,
                coverage: float = 0.95) -> AttributionGraph:
    """The attribution graph of the prompt `rm` was built from.

    A backward pass from each target (each active feature's pre-activation, each chosen logit) through
    the replacement model gives the target's gradient with respect to every node; a source's direct
    effect is that gradient times the source's value (a feature's activation, 1 for the others). The
    replacement model is linear, so this is exact, not a first-order estimate."""
    n_pos, n_layers = rm.n_pos, rm.n_layers
    active = rm.features
    logit_tokens = logit_nodes(rm.logits[-1], max_logits, coverage)
    n_feat, n_err, n_logit = len(active), n_pos * n_layers, len(logit_tokens)
    n = n_pos + n_feat + n_err + n_logit
    feat = slice(n_pos, n_pos + n_feat)
    err = slice(n_pos + n_feat, n_pos + n_feat + n_err)

    # A backward pass per target, batched: the forward runs on one copy of the real inputs per target,
    # copy i feeding target i, so one backward gives every target's gradient in its own row. A feature's
    # copies stop at its own layer (nothing later can reach it).
    grads = []
    groups = [(layer, (active[:, 1] == layer).nonzero()[:, 0]) for layer in range(n_layers)] + [(None, None)]
    with torch.enable_grad():
        for layer, which in groups:
            n_copies = len(logit_tokens) if layer is None else len(which)
            if n_copies == 0:
                continue
            copies = [x.detach().expand(n_copies, *x.shape).clone().requires_grad_(True) for x in rm.real_inputs()]
            logits, pre = rm.forward(*copies, up_to=layer)
            if layer is None:   # softmax ignores a shift shared by all logits
                target = (logits[:, -1] - logits[:, -1].mean(dim=-1, keepdim=True))[:, logit_tokens]
            else:
                target = pre[:, which]
            found = torch.autograd.grad(target.diagonal().sum(), copies, allow_unused=True)
            grads.append([torch.zeros_like(c) if g is None else g for g, c in zip(found, copies)])
    grads = [torch.cat(parts) for parts in zip(*grads)]
    with torch.no_grad():
        real_logits, real_pre = rm.forward(*rm.real_inputs())
        targets = torch.cat([real_pre, (real_logits[-1] - real_logits[-1].mean())[logit_tokens]])
    g_embed, g_acts, g_err = (g.detach() for g in grads)
    adjacency = torch.zeros(n, n, dtype=targets.dtype, device=targets.device)
    rows = torch.cat([torch.arange(n_pos, n_pos + n_feat), torch.arange(n - n_logit, n)]).to(targets.device)
    feature_values = rm.feature_acts
    adjacency[rows] = torch.cat([g_embed, g_acts * feature_values,
                                 einops.rearrange(g_err, "t pos layer -> t (layer pos)"),
                                 g_embed.new_zeros(len(targets), n_logit)], dim=1)

    with torch.no_grad():
        zero_logits, zero_pre = rm.forward(*(torch.zeros_like(x) for x in rm.real_inputs()))
        zero_last = zero_logits[-1] - zero_logits[-1].mean()
    bias = torch.zeros(n, dtype=targets.dtype, device=targets.device)
    bias[rows] = torch.cat([zero_pre, zero_last[logit_tokens]])
    inputs = torch.zeros_like(bias)
    inputs[:n_pos] = 1.0
    inputs[feat] = feature_values
    inputs[err] = 1.0
    inputs[rows] = targets.detach()

    activations = inputs.clone()
    kinds = ["embed"] * n_pos + ["feature"] * n_feat + ["error"] * n_err + ["logit"] * n_logit
    arange = torch.arange(n_pos)
    layers = torch.cat([torch.full((n_pos,), -1), active[:, 1].cpu(), torch.arange(n_layers).repeat_interleave(n_pos),
                        torch.full((n_logit,), n_layers)])
    positions = torch.cat([arange, active[:, 0].cpu(), arange.repeat(n_layers), torch.full((n_logit,), n_pos - 1)])
    indices = torch.cat([rm.tokens.cpu(), active[:, 2].cpu(), torch.zeros(n_err, dtype=torch.long), logit_tokens.cpu()])
    probs = rm.logits[-1].softmax(-1)[logit_tokens]
    return AttributionGraph(tokens=token_strs, n_layers=n_layers, kinds=kinds, layers=layers, positions=positions,
                            indices=indices, activations=activations.cpu(), adjacency=adjacency.cpu(),
                            bias=bias.cpu(), inputs=inputs.cpu(), logit_probs=probs.cpu())


# -- pruning by influence on the logits ---------------------------------------------------------------


def normalised_adjacency(adjacency: Float[Tensor, "node node"]) -> Float[Tensor, "node node"]:
    """|A| with each target's incoming weights scaled to sum to 1 (rows of sources stay 0): the share
    of a node's input that each source provides, whatever its sign."""
    magnitude = adjacency.abs()
    return magnitude / magnitude.sum(dim=1, keepdim=True).clamp(min=1e-30)


def indirect_influence(normalised: Float[Tensor, "node node"]) -> Float[Tensor, "node node"]:
    """B = A + A^2 + A^3 + ... = (I - A)^-1 - I: every path's product of shares, summed over paths of
    every length. A graph has no cycles (A is nilpotent), so the series is finite and I - A invertible."""
    eye = torch.eye(len(normalised), dtype=normalised.dtype, device=normalised.device)
    return torch.linalg.inv(eye - normalised) - eye


def node_influence(graph: AttributionGraph) -> Float[Tensor, " node"]:
    """Each node's influence on the logits: the logit-probability-weighted sum of its indirect influence
    on each logit node."""
    return graph.logit_weights @ indirect_influence(normalised_adjacency(graph.adjacency.double())).to(graph.adjacency.dtype)


def cumulative_mask(scores: Float[Tensor, " n"], threshold: float) -> Bool[Tensor, " n"]:
    """The smallest set of the highest scores whose sum reaches `threshold` of the total."""
    order = scores.argsort(descending=True)
    cumulative = scores[order].cumsum(0) / scores.sum().clamp(min=1e-30)
    n_keep = int((cumulative < threshold).sum()) + 1
    keep = torch.zeros_like(scores, dtype=torch.bool)
    keep[order[: min(n_keep, len(scores))]] = True
    return keep


@dataclass
class PrunedGraph:
    graph: AttributionGraph
    node_mask: Bool[Tensor, " node"]
    edge_mask: Bool[Tensor, "node node"]
    influence: Float[Tensor, " node"]

    @property
    def nodes(self) -> Int[Tensor, " kept"]:
        return self.node_mask.nonzero()[:, 0]


def prune(graph: AttributionGraph, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> PrunedGraph:
    """Keep the features (and error nodes) that carry `node_threshold` of the influence on the logits,
    then the edges that carry `edge_threshold` of what is left; embeddings and logits always stay.

    An edge's score is its share of its target's input times the target's own influence (plus its
    logit weight): how much of the logits' dependence flows along that one edge."""
    A = graph.adjacency.double()
    weights = graph.logit_weights.double()
    influence = node_influence(graph).double()
    always = graph.mask("embed") | graph.mask("logit")
    node_mask = always.clone()
    prunable = ~always
    node_mask[prunable] = cumulative_mask(influence[prunable], node_threshold)
    kept = A * node_mask[:, None] * node_mask[None, :]
    normalised = normalised_adjacency(kept)
    kept_influence = weights @ indirect_influence(normalised)
    edge_scores = normalised * (kept_influence + weights)[:, None]
    edge_mask = torch.zeros_like(edge_scores, dtype=torch.bool)
    nonzero = edge_scores > 0
    edge_mask[nonzero] = cumulative_mask(edge_scores[nonzero], edge_threshold)
    for _ in range(len(node_mask)):  # drop nodes left without edges, until nothing changes
        before = node_mask.clone()
        has_out, has_in = edge_mask.any(dim=0), edge_mask.any(dim=1)
        node_mask &= always | (has_out & (has_in | graph.mask("error")))
        edge_mask &= node_mask[:, None] & node_mask[None, :]
        if torch.equal(before, node_mask):
            break
    return PrunedGraph(graph, node_mask, edge_mask, influence.to(graph.adjacency.dtype))


def graph_scores(graph: AttributionGraph) -> dict[str, float]:
    """The paper's two scores of how much of the computation the features explain.

    replacement: the share of the logits' (indirect) influence that starts at embeddings rather than
    error nodes (1: every path from the prompt to the output runs through features).
    completeness: the share of each node's input that comes from non-error nodes, averaged over the
    nodes weighted by their influence on the logits (direct error inputs count, longer paths do not)."""
    normalised = normalised_adjacency(graph.adjacency.double())
    weights = graph.logit_weights.double()
    influence = weights @ indirect_influence(normalised)
    embed, error = graph.mask("embed"), graph.mask("error")
    replacement = influence[embed].sum() / (influence[embed].sum() + influence[error].sum())
    targets = graph.mask("feature") | graph.mask("logit")
    non_error = 1 - normalised[:, error].sum(dim=1)
    weight = (influence + weights)[targets]
    completeness = (non_error[targets] * weight).sum() / weight.sum()
    return {"replacement": replacement.item(), "completeness": completeness.item()}


# -- checking the graph against the real model ----------------------------------------------------------


def edit_hooks(params: dict[str, Tensor], edits: list[tuple[int, int, int, float]]) -> list[tuple[str, object]]:
    """Forward hooks that change transcoder features inside the *real* model: each edit (position,
    layer, latent, delta) adds delta times the latent's decoder to every MLP output it writes to (its
    own layer's; every later one's too for a cross-layer transcoder). delta = -activation ablates the
    feature; everything downstream (attention, LayerNorm, the real MLPs) then recomputes."""
    params = as_cross_layer(params)
    per_layer: dict[int, list[tuple[int, Tensor]]] = {}
    for pos, layer, latent, delta in edits:
        for target in range(layer, params["W_dec"].shape[1]):
            per_layer.setdefault(target, []).append((pos, delta * params["W_dec"][layer, target, :, latent]))

    def adding(writes):
        def hook(x, hook):
            x = x.clone()
            for pos, vector in writes:
                x[:, pos] += vector.to(x.device, x.dtype)
            return x
        return hook

    return [(f"blocks.{layer}.hook_mlp_out", adding(writes)) for layer, writes in per_layer.items()]


def predicted_effect(graph: AttributionGraph, sources: Int[Tensor, " n"],
                     deltas: Float[Tensor, " n"]) -> Float[Tensor, " logit"]:
    """What the graph predicts for each logit node's input when the `sources` (feature nodes) change by
    `deltas`: the change flows along every path, each active feature following its input linearly
    (as an active TopK latent does) and the edited features held at their new values."""
    A = graph.adjacency.double()
    per_unit = A / torch.where(graph.mask("feature"), graph.activations.double(), torch.ones(1, dtype=A.dtype))
    per_unit[:, ~graph.mask("feature")] = 0
    per_unit[sources] = 0
    delta = torch.zeros(len(A), dtype=A.dtype)
    delta[sources] = deltas.double()
    change = torch.linalg.solve(torch.eye(len(A), dtype=A.dtype) - per_unit, delta)
    return change[graph.mask("logit")].to(graph.adjacency.dtype)


# -- reading features ------------------------------------------------------------------------------------


@torch.no_grad()
def top_examples(model, params: dict[str, Tensor], k: int, tokens: Int[Tensor, "n pos"], mask: Bool[Tensor, "n pos"],
                 n_top: int = 20, batch_size: int = 512, reads: str = "mlp_in"
                 ) -> tuple[Float[Tensor, "layer lat top"], Int[Tensor, "layer lat top 2"]]:
    """Each transcoder latent's `n_top` largest activations over the (prompt, position) pairs that
    `mask` keeps, with where they happen ([..., 0] the prompt, [..., 1] the position). An SAE on the
    MLP outputs reads them instead (`reads="mlp_out"`)."""
    params = as_cross_layer(params)
    n_layers = params["W_enc"].shape[0]
    best_values, best_where = None, None
    for start in range(0, len(tokens), batch_size):
        keep = mask[start:start + batch_size]
        x_in, x_out = collect_mlp_activations(model, tokens[start:start + batch_size], keep, range(n_layers),
                                              batch_size=batch_size)
        x_in = x_out if reads == "mlp_out" else x_in
        acts = einops.rearrange(encode(x_in.to(params["W_enc"].device), params, k).cpu(), "n layer lat -> layer lat n")
        where = keep.nonzero()
        where[:, 0] += start
        values = acts if best_values is None else torch.cat([best_values, acts], dim=-1)
        places = where.expand(*acts.shape, 2) if best_where is None else \
            torch.cat([best_where, where.expand(*acts.shape, 2)], dim=2)
        best_values, order = values.topk(min(n_top, values.shape[-1]), dim=-1)
        best_where = places.gather(2, order[..., None].expand(*order.shape, 2))
    return best_values, best_where


def majority_label(values: Float[Tensor, "... top"], truth: Int[Tensor, "... top"],
                   min_share: float = 0.8) -> Int[Tensor, "..."]:
    """The ground-truth value shared by at least `min_share` of a feature's (active) top examples, or
    -1: a feature is named after what its strongest activations have in common, when they agree."""
    active = values > 0
    n_active = active.sum(-1)
    n_values = int(truth.max()) + 2
    counts = torch.zeros(*truth.shape[:-1], n_values, dtype=torch.long)
    counts.scatter_add_(-1, (truth + 1).clamp(min=0), active.long())
    counts[..., 0] = 0  # -1 means "nothing known here"
    best, label = counts.max(dim=-1)
    ok = (n_active > 0) & (best >= min_share * n_active)
    return torch.where(ok, label - 1, torch.full_like(label, -1))


def view_data(pruned: PrunedGraph, labels: list[str] | None = None, cards: dict[int, str] | None = None,
              title: str = "") -> dict:
    """The kept part of a pruned graph in the form `utils.vis.graph_view` draws."""
    graph = pruned.graph
    keep = pruned.nodes.tolist()
    ids = {}
    nodes = []
    for i in keep:
        kind, layer, pos, index = graph.kinds[i], int(graph.layers[i]), int(graph.positions[i]), int(graph.indices[i])
        node_id = {"embed": f"e{pos}", "feature": f"f{layer}.{pos}.{index}", "error": f"x{layer}.{pos}",
                   "logit": f"l{index}"}[kind]
        ids[i] = node_id
        nodes.append({"id": node_id, "kind": kind, "layer": layer, "pos": pos,
                      "label": (labels[i] if labels else graph.node_name(i)),
                      "activation": round(float(graph.activations[i]), 4),
                      "influence": round(float(pruned.influence[i]), 4), "card": (cards or {}).get(i, "")})
    targets, sources = pruned.edge_mask.nonzero(as_tuple=True)
    edges = [{"source": ids[s], "target": ids[t], "weight": round(float(graph.adjacency[t, s]), 4)}
             for t, s in zip(targets.tolist(), sources.tolist()) if s in ids and t in ids]
    return {"tokens": graph.tokens, "n_layers": graph.n_layers, "title": title, "nodes": nodes, "edges": edges}


def feature_card(model, params: dict[str, Tensor], layer: int, latent: int, tokens: Int[Tensor, "n pos"],
                 values: Float[Tensor, " top"], where: Int[Tensor, "top 2"], tokenizer, title: str = "",
                 n_logits: int = 5) -> str:
    """A latent's card for the graph view (HTML): its top contexts, each word shaded by the activation
    there (chapter 3's highlighting), and the tokens its decoder promotes most through the unembedding
    (its own layer's decoder; the direct path only)."""
    from utils.sae import highlight_html

    params = as_cross_layer(params)
    direction = params["W_dec"][layer, layer, :, latent]
    promoted = (direction @ model.W_U.detach()).topk(n_logits)
    words = ", ".join(f"{html.escape(tokenizer.decode([int(t)]))} ({v:+.1f})"
                      for v, t in zip(promoted.values.tolist(), promoted.indices.tolist()))
    contexts = []
    for value, (prompt, pos) in zip(values.tolist(), where.tolist()):
        if value <= 0:
            continue
        row = [tokenizer.decode([int(t)]) + " " for t in tokens[prompt, 1: pos + 1].tolist()]
        shade = [0.0] * (len(row) - 1) + [value]
        contexts.append(f"{highlight_html(row, shade, len(row) - 1, max(values.max().item(), 1e-6))} "
                        f"<small>{value:.2f}</small>")
    return (f"<b>{html.escape(title or f'L{layer}.{latent}')}</b> <small>(layer {layer}, latent {latent})</small>"
            f"<p><small>promotes: {words}</small></p><p><small>top contexts:</small><br>" + "<br>".join(contexts) + "</p>")


def freeze_hooks(cache, layer_norm: bool = True, attention: bool = True) -> list[tuple[str, object]]:
    """Hooks that hold the LayerNorm scales and/or the attention patterns at their values in `cache`
    (a run of the same prompt): the real model with the replacement model's freezing, one part at a
    time, to tell which approximation a wrong prediction comes from."""
    kept = [name for name in cache.keys() if (layer_norm and name.endswith("hook_scale"))
            or (attention and name.endswith("hook_pattern"))]
    return [(name, lambda x, hook, value=cache[name]: value) for name in kept]
