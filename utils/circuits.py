"""A transformer as a graph of edges, and a forward pass that can corrupt any set of edges (Chapter 7).

The residual stream is a sum: every reader (a head's query, key or value input, an MLP's
input, the unembedding) reads the sum of what every earlier writer (the embedding, each
head's output, each MLP's output) wrote. Writing that sum out term by term turns the
model into a graph whose **edges** are (writer, reader) pairs, and patching an edge means
giving *one* reader *one* writer's output from another run while every other reader keeps
the current one.

`EdgeModel` re-runs one of the course's `TransformerBridge` models from its weights, with
each reader's input built as that explicit sum, so that any set of edges can be patched
in one forward pass (`tests/test_circuits.py` checks that it reproduces the bridge's
logits, and that patching all of a head's outgoing edges equals patching its output).

Names: senders are "embed", "a{layer}.{head}" and "m{layer}"; receivers are
"a{layer}.{head}.q" / ".k" / ".v", "m{layer}" and "logits".

`gpt2_bridge` rebuilds a course model as a Hugging Face `GPT2LMHeadModel` (same weights, built
offline) inside a `TransformerBridge`: TransformerLens 4's edge-level tools need the per-head
attention hooks that bridge provides and the natively built models' bridge does not.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import einops
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor


@dataclass
class Graph:
    """Senders, receivers and edges of a model, in the order a forward pass computes them."""

    n_layers: int
    n_heads: int
    mlps: bool
    senders: list[str] = field(default_factory=list)
    receivers: list[str] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        senders, receivers, edges = ["embed"], [], []
        for layer in range(self.n_layers):
            heads = [f"a{layer}.{h}" for h in range(self.n_heads)]
            for head in heads:
                for x in "qkv":
                    receivers.append(f"{head}.{x}")
                    edges += [(s, f"{head}.{x}") for s in senders]
            senders += heads
            if self.mlps:
                receivers.append(f"m{layer}")
                edges += [(s, f"m{layer}") for s in senders]
                senders.append(f"m{layer}")
        receivers.append("logits")
        edges += [(s, "logits") for s in senders]
        self.senders, self.receivers, self.edges = senders, receivers, edges

    @property
    def adjacency(self) -> Bool[Tensor, "sender receiver"]:
        """True where (sender, receiver) is an edge."""
        adj = torch.zeros(len(self.senders), len(self.receivers), dtype=torch.bool)
        for s, r in self.edges:
            adj[self.senders.index(s), self.receivers.index(r)] = True
        return adj

    def mask(self, edges) -> Bool[Tensor, "sender receiver"]:
        """A [sender, receiver] mask that is True on the given edges."""
        out = torch.zeros(len(self.senders), len(self.receivers), dtype=torch.bool)
        for s, r in edges:
            out[self.senders.index(s), self.receivers.index(r)] = True
        return out

    def edges_of(self, mask: Tensor) -> list[tuple[str, str]]:
        """The edges where `mask` ([sender, receiver]) is True, in graph order."""
        return [(s, r) for s, r in self.edges if mask[self.senders.index(s), self.receivers.index(r)]]


def node_of(name: str) -> str:
    """The node a sender or receiver belongs to: "a1.2.k" -> "a1.2"; every other name is its own node."""
    return name[:-2] if name.endswith((".q", ".k", ".v")) else name


def _layer_norm(x: Tensor, w: Tensor | None, b: Tensor | None, eps: float) -> Tensor:
    if w is None:
        return x
    x = x - x.mean(-1, keepdim=True)
    return x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt() * w + b


def _gelu_new(x: Tensor) -> Tensor:
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


class EdgeModel:
    """A course model, re-run from its weights with every reader's input written as a sum over edges.

    `run(tokens)` is the ordinary forward pass. `run(tokens, keep=mask, source=outputs)` corrupts
    every edge where `mask` is False: that reader gets the sender's output from `source` (the
    senders' outputs on another run, from `sender_outputs`) instead of the current run's.
    `receiver_delta` ([receiver, batch, pos, d_model], usually zeros with requires_grad) is added
    to every reader's input, so its gradient is the gradient of the metric at each receiver.
    `n_forward` and `n_backward` count the passes run so far."""

    def __init__(self, model) -> None:
        cfg = model.cfg
        sd = {k: v.detach() for k, v in model.state_dict().items()}
        self.cfg = cfg
        self.n_layers, self.n_heads, self.d_head = cfg.n_layers, cfg.n_heads, cfg.d_head
        self.mlps = not getattr(cfg, "attn_only", False)
        self.graph = Graph(self.n_layers, self.n_heads, self.mlps)
        self.eps = float(getattr(cfg, "eps", 1e-5))
        self.W_E, self.W_pos = sd["embed.weight"], sd["pos_embed.weight"]
        self.W_U, self.b_U = sd["unembed.weight"], sd["unembed.bias"]
        ln = cfg.normalization_type is not None
        self.ln_final = (sd["ln_final.weight"], sd["ln_final.bias"]) if ln else (None, None)
        self.layers = []
        for layer in range(self.n_layers):
            p = f"blocks.{layer}."

            def heads(name):
                return einops.rearrange(sd[p + f"attn.{name}.weight"], "(h e) d -> h d e", h=self.n_heads)

            entry = {
                "W_Q": heads("q"), "W_K": heads("k"), "W_V": heads("v"),
                "b_Q": sd[p + "attn.q.bias"].view(self.n_heads, -1), "b_K": sd[p + "attn.k.bias"].view(self.n_heads, -1),
                "b_V": sd[p + "attn.v.bias"].view(self.n_heads, -1),
                "W_O": einops.rearrange(sd[p + "attn.o.weight"], "d (h e) -> h e d", h=self.n_heads),
                "b_O": sd[p + "attn.o.bias"],
                "ln1": (sd[p + "ln1.weight"], sd[p + "ln1.bias"]) if ln else (None, None),
            }
            if self.mlps:
                entry.update(W_in=sd[p + "mlp.in.weight"], b_in=sd[p + "mlp.in.bias"], W_out=sd[p + "mlp.out.weight"],
                             b_out=sd[p + "mlp.out.bias"], ln2=(sd[p + "ln2.weight"], sd[p + "ln2.bias"]))
            self.layers.append(entry)
        self.n_forward = 0
        self.n_backward = 0
        self._bar = None

    @contextmanager
    def progress(self, total: int, desc: str):
        """A progress bar (tqdm.auto) that advances by one with every forward pass run inside the block:
        the notebook's long cells (ACDC, exact effects) run hundreds of passes and would otherwise print
        nothing for a minute."""
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, desc=desc, unit="pass", mininterval=1.0)
        try:
            yield self._bar
        finally:
            self._bar.close()
            self._bar = None

    def embed(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        """The embedding sender's output: token plus position embedding."""
        return self.W_E[tokens] + self.W_pos[: tokens.shape[1]]

    def run(self, tokens: Int[Tensor, "batch pos"], keep: Tensor | None = None, source: Tensor | None = None,
            receiver_delta: Tensor | None = None, embed: Tensor | None = None,
            patches: list[tuple[Tensor, Tensor]] | None = None, return_outputs: bool = False):
        """Logits (and, with return_outputs, the senders' outputs [sender, batch, pos, d_model]).

        keep: [sender, receiver] bool or float; 1 = the edge reads the current run, 0 = it reads `source`.
        patches: more (mask, source) pairs: the edges where a mask is True read that source instead
        (causal scrubbing gives different edges different sources).
        embed: replaces the embedding sender's output (EAP-IG interpolates it)."""
        self.n_forward += 1
        if self._bar is not None:
            self._bar.update()
        outs = [self.embed(tokens) if embed is None else embed]
        bias = torch.zeros_like(outs[0])
        if receiver_delta is not None and receiver_delta.requires_grad:
            receiver_delta.register_hook(self._count_backward)
        pairs = [(m.to(outs[0].dtype), src) for m, src in (patches or [])]
        if keep is not None:
            pairs.append((1 - keep.to(outs[0].dtype), source))
        r_index = 0

        def read(n_readers: int) -> Tensor:
            nonlocal r_index
            x = torch.stack(outs)  # [S so far, batch, pos, d]
            sl = slice(r_index, r_index + n_readers)
            if not pairs:
                inp = x.sum(0).expand(n_readers, *x.shape[1:])
            else:
                current = 1 - sum(m[: len(outs), sl] for m, _ in pairs)
                inp = einops.einsum(current, x, "s r, s b p d -> r b p d")
                for m, src in pairs:
                    inp = inp + einops.einsum(m[: len(outs), sl], src[: len(outs)], "s r, s b p d -> r b p d")
            inp = inp + bias
            if receiver_delta is not None:
                inp = inp + receiver_delta[sl]
            r_index += n_readers
            return inp

        n_pos = tokens.shape[1]
        causal = torch.triu(torch.ones(n_pos, n_pos, dtype=torch.bool, device=tokens.device), 1)
        for layer, w in enumerate(self.layers):
            x = read(3 * self.n_heads)
            x = _layer_norm(x, *w["ln1"], self.eps)
            x = einops.rearrange(x, "(h t) b p d -> t h b p d", t=3)
            q = einops.einsum(x[0], w["W_Q"], "h b p d, h d e -> b h p e") + w["b_Q"][None, :, None]
            k = einops.einsum(x[1], w["W_K"], "h b p d, h d e -> b h p e") + w["b_K"][None, :, None]
            v = einops.einsum(x[2], w["W_V"], "h b p d, h d e -> b h p e") + w["b_V"][None, :, None]
            scores = einops.einsum(q, k, "b h q e, b h k e -> b h q k") / math.sqrt(self.d_head)
            pattern = scores.masked_fill(causal, float("-inf")).softmax(-1)
            z = einops.einsum(pattern, v, "b h q k, b h k e -> b h q e")
            head_out = einops.einsum(z, w["W_O"], "b h p e, h e d -> h b p d")
            outs.extend(head_out.unbind(0))
            bias = bias + w["b_O"]
            if self.mlps:
                x = _layer_norm(read(1)[0], *w["ln2"], self.eps)
                hidden = _gelu_new(x @ w["W_in"].T + w["b_in"])
                outs.append(hidden @ w["W_out"].T + w["b_out"])
        resid = read(1)[0]
        logits = _layer_norm(resid, *self.ln_final, self.eps) @ self.W_U.T + self.b_U
        if return_outputs:
            return logits, torch.stack(outs)
        return logits

    def sender_outputs(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "sender batch pos d_model"]:
        """Every sender's output on `tokens` (one forward pass, no gradient)."""
        with torch.no_grad():
            return self.run(tokens, return_outputs=True)[1]

    def _count_backward(self, grad: Tensor) -> None:
        self.n_backward += 1

    def zero_delta(self, tokens: Tensor) -> Tensor:
        """Zeros shaped like every receiver's input, [receiver, batch, pos, d_model], requiring grad."""
        return torch.zeros(len(self.graph.receivers), *tokens.shape, self.W_E.shape[1], device=self.W_E.device,
                           dtype=self.W_E.dtype, requires_grad=True)

    def to(self, device) -> "EdgeModel":
        """Move every weight to `device`, or cast it to a dtype such as torch.float64 (in place); returns the model."""
        for name, value in list(vars(self).items()):
            if isinstance(value, Tensor):
                setattr(self, name, value.to(device))
            elif isinstance(value, tuple):
                setattr(self, name, tuple(None if v is None else v.to(device) for v in value))
        for entry in self.layers:
            for key, value in entry.items():
                entry[key] = tuple(None if v is None else v.to(device) for v in value) if isinstance(value, tuple) \
                    else value.to(device)
        return self


def gpt2_bridge(model):
    """The same model as a Hugging Face `GPT2LMHeadModel` in a `TransformerBridge` (no download).

    A natively built course model runs its attention through the plain `AttentionBridge`, which has
    no per-head input and output hooks (`use_split_qkv_input`, `use_attn_result`), so TransformerLens
    4's edge-level tools (`attribution_patch` at edge granularity, `get_act_patch_direct_path`) raise
    NotImplementedError on it. GPT-2's bridge has them. This copies the weights into a GPT-2 of the
    same shape (q, k, v fused into `c_attn`, Conv1D weights transposed, an unembedding bias added to
    `lm_head`, which GPT-2 lacks) and wraps it with `build_bridge_from_module`. Only GPT-2-shaped
    models qualify: LayerNorm, an MLP in every block, gelu_new, learned positions."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformer_lens.model_bridge.sources import build_bridge_from_module

    cfg = model.cfg
    if (getattr(cfg, "attn_only", False) or cfg.normalization_type != "LN" or cfg.act_fn != "gelu_new"
            or getattr(cfg, "positional_embedding_type", "standard") != "standard"):
        raise ValueError(f"{cfg.n_layers}-layer model with attn_only={getattr(cfg, 'attn_only', False)}, "
                         f"normalization {cfg.normalization_type}, act_fn {cfg.act_fn}: not GPT-2-shaped")
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    config = GPT2Config(vocab_size=cfg.d_vocab, n_positions=cfg.n_ctx, n_embd=cfg.d_model, n_layer=cfg.n_layers,
                        n_head=cfg.n_heads, n_inner=cfg.d_mlp, activation_function="gelu_new",
                        layer_norm_epsilon=float(cfg.eps), resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        tie_word_embeddings=False)
    hf = GPT2LMHeadModel(config)
    hf.lm_head = torch.nn.Linear(cfg.d_model, cfg.d_vocab, bias=True)
    weights = {"transformer.wte.weight": sd["embed.weight"], "transformer.wpe.weight": sd["pos_embed.weight"],
               "transformer.ln_f.weight": sd["ln_final.weight"], "transformer.ln_f.bias": sd["ln_final.bias"],
               "lm_head.weight": sd["unembed.weight"], "lm_head.bias": sd["unembed.bias"]}
    for layer in range(cfg.n_layers):
        ours, theirs = f"blocks.{layer}.", f"transformer.h.{layer}."
        weights.update({
            theirs + "ln_1.weight": sd[ours + "ln1.weight"], theirs + "ln_1.bias": sd[ours + "ln1.bias"],
            theirs + "ln_2.weight": sd[ours + "ln2.weight"], theirs + "ln_2.bias": sd[ours + "ln2.bias"],
            # GPT-2's Conv1D stores [in, out], the transpose of a Linear's weight
            theirs + "attn.c_attn.weight": torch.cat([sd[ours + f"attn.{x}.weight"] for x in "qkv"]).T,
            theirs + "attn.c_attn.bias": torch.cat([sd[ours + f"attn.{x}.bias"] for x in "qkv"]),
            theirs + "attn.c_proj.weight": sd[ours + "attn.o.weight"].T, theirs + "attn.c_proj.bias": sd[ours + "attn.o.bias"],
            theirs + "mlp.c_fc.weight": sd[ours + "mlp.in.weight"].T, theirs + "mlp.c_fc.bias": sd[ours + "mlp.in.bias"],
            theirs + "mlp.c_proj.weight": sd[ours + "mlp.out.weight"].T, theirs + "mlp.c_proj.bias": sd[ours + "mlp.out.bias"],
        })
    hf.load_state_dict({k: v.contiguous() for k, v in weights.items()}, strict=True)
    hf.to(sd["embed.weight"].device).eval()  # parameters keep requires_grad: attribution_patch differentiates through them
    bridge = build_bridge_from_module(hf, architecture="GPT2LMHeadModel", hf_config=config)
    return bridge.eval()


def tl_name(node) -> str:
    """The course's name for a node of TransformerLens 4's attribution graph
    (`transformer_lens.tools.analysis.attribution_patching.Node`): "embed", "a1.2", "a1.2.k", "m0", "logits"."""
    kind = node.kind
    if kind in ("embed", "logits"):
        return kind
    if kind in ("mlp_out", "mlp_in"):
        return f"m{node.layer}"
    head = f"a{node.layer}.{node.head}"
    return head if kind == "attn_head_out" else f"{head}.{kind[0]}"
