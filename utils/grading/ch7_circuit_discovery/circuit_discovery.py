"""Graders for 7.1 "Automated circuit discovery".

Tensor exercises run on small seeded tensors; the ones that run a model use a tiny randomly
initialised 2-layer, 2-head model with MLPs and LayerNorm (weights scaled up so that every edge
matters), wrapped in `utils.circuits.EdgeModel`, on the checker's device: each check takes well under a second.
"""

from __future__ import annotations

import functools
from functools import partial

import einops
import torch

from solutions.ch7_circuit_discovery import circuit_discovery as ref
from utils.circuits import EdgeModel, Graph, node_of
from utils.grading import Mistake, exercise
from utils.grading.feedback import CheckFailed, LearnerError

N_POS = 6
D_VOCAB = 12


# -- shared inputs -------------------------------------------------------------------------------

@functools.lru_cache(maxsize=2)
def _tiny_bridge(seed: int = 0, device: torch.device = torch.device("cpu")):
    from transformer_lens import TransformerBridge, TransformerBridgeConfig

    cfg = TransformerBridgeConfig(d_model=16, d_head=4, n_heads=2, n_layers=2, d_mlp=32, n_ctx=8, d_vocab=D_VOCAB,
                                  act_fn="gelu_new", normalization_type="LN",
                                  architecture="TransformerLensNative", seed=seed)
    model = TransformerBridge.boot_native(cfg)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.copy_(0.2 * torch.randn(param.shape, generator=generator))
            elif param.ndim >= 2:
                param.mul_(3.0)
    model.requires_grad_(False)
    model.eval()
    return model.to(device)


def _em(check) -> EdgeModel:
    return EdgeModel(_tiny_bridge(device=check.device))


def _tokens(check, batch: int = 3):
    """Clean tokens and a corrupted copy that differs at two positions (on the checker's device)."""
    clean = check.randint(D_VOCAB, batch, N_POS)
    corrupted = clean.clone()
    corrupted[:, 2] = (clean[:, 2] + 1 + check.randint(D_VOCAB - 1, batch)) % D_VOCAB
    corrupted[:, 4] = (clean[:, 4] + 1 + check.randint(D_VOCAB - 1, batch)) % D_VOCAB
    return clean, corrupted


def _metric(tokens):
    """A label metric: mean log-probability of the next token at the last three positions."""
    def metric(logits):
        log_probs = logits[:, 2:-1].log_softmax(-1)
        return log_probs.gather(-1, tokens[:, 3:, None])[..., 0].mean()
    return metric


def _case_with_gradients_off(check, name, *args, mistakes, **kwargs):
    """`check.case` as the notebook runs it: with gradients switched off globally (its set-up cell calls
    torch.set_grad_enabled(False)), so that a function that forgets torch.enable_grad() fails here too."""
    with torch.no_grad():
        try:
            return check.case(name, *args, mistakes=mistakes, **kwargs)
        except LearnerError as error:
            if "does not require grad" not in error.detail:
                raise
            raise LearnerError(error.detail, exercise=error.exercise, case=error.case, mistake="gradients off",
                               hint="The notebook switches gradients off (torch.set_grad_enabled(False)), so nothing "
                                    "records a graph to backpropagate through: run the forward pass and backward() "
                                    "inside `with torch.enable_grad():`.") from None


# -- 1. the graph and edge patching ---------------------------------------------------------------

def _edges_variant(n_layers, n_heads, mlps, *, same_layer=False, mlp_before_heads=False, split=True,
                   no_embed=False, one_by_one=False):
    senders, edges = ([] if no_embed else ["embed"]), []
    for layer in range(n_layers):
        heads = [f"a{layer}.{h}" for h in range(n_heads)]
        if same_layer:
            senders += heads
        for head in heads:
            for x in ("qkv" if split else [""]):
                receiver = f"{head}.{x}" if split else head
                edges += [(s, receiver) for s in senders if s != head]
            if one_by_one:  # each head added as soon as its receivers are listed: later heads of the layer read it
                senders.append(head)
        if one_by_one:
            senders = [s for s in senders if s not in heads]
        if mlps and mlp_before_heads:
            edges += [(s, f"m{layer}") for s in senders if s not in heads]
        if not same_layer:
            senders += heads
        if mlps:
            if not mlp_before_heads:
                edges += [(s, f"m{layer}") for s in senders]
            senders.append(f"m{layer}")
    edges += [(s, "logits") for s in senders]
    return edges


def _layer_of(name: str) -> tuple[int, int]:
    """(layer, 0 for attention / 1 for the MLP) of a sender or receiver; the embedding comes first, the logits last."""
    if name == "embed":
        return (-1, 1)
    if name == "logits":
        return (10**6, 0)
    return (int(name[1:].split(".")[0]), 1 if name.startswith("m") else 0)


def _why_not_an_edge(sender, receiver) -> str:
    """The rule an extra (sender, receiver) pair breaks, in words."""
    names = "not a (sender, receiver) pair of this model's names (senders 'embed', 'a0.1', 'm0'; receivers " \
            "'a0.1.q', 'a0.1.k', 'a0.1.v', 'm0', 'logits')"
    if not all(isinstance(n, str) for n in (sender, receiver)) or receiver == "embed" or sender == "logits" \
            or receiver.count(".") == 1 or sender.count(".") > 1:
        return names
    if node_of(receiver) == sender:
        return "a component reading its own output"
    try:
        (s_layer, s_mlp), (r_layer, r_mlp) = _layer_of(sender), _layer_of(receiver)
    except ValueError:
        return names
    if (s_layer, s_mlp) > (r_layer, r_mlp):
        return "a sender that comes after its receiver"
    if s_layer == r_layer and not s_mlp and not r_mlp:
        return "a head reading a head of its own layer (a layer's heads all read the residual stream before it)"
    return "not an edge of this model"


def _name_the_edges(check, name, args, error):
    """`error` again, naming the edges that differ, for a list that no known mistake explains."""
    got, expected = check.run(*args, case=name), ref.graph_edges(*args)
    if not isinstance(got, (list, tuple)):  # not a list: the checker's own message says what it got
        raise error from None
    try:
        got = [tuple(e) for e in got]
        got_set, expected_set = set(got), set(expected)
    except TypeError:
        raise error from None
    if not all(len(e) == 2 for e in got):  # not pairs: the checker's own message says what it got
        raise error from None
    extra = [e for e in got if e not in expected_set]
    missing = [e for e in expected if e not in got_set]
    repeated = sorted({e for e in got if got.count(e) > 1})

    def some(edges):
        return ", ".join(map(str, edges[:4])) + (f" and {len(edges) - 4} more" if len(edges) > 4 else "")

    lines, hints = [], []
    if extra:
        lines.append(f"{len(extra)} pair(s) that are not edges of this model: {some(extra)}")
        hints.append(f"{extra[0]} is {_why_not_an_edge(*extra[0])}.")
    if missing:
        lines.append(f"{len(missing)} edge(s) missing: {some(missing)}")
        hints.append(f"{missing[0]} is an edge: {missing[0][1]} reads everything written before it"
                     + (", its own layer's heads included." if missing[0][1].startswith("m") else "."))
    if repeated:
        lines.append(f"{len(repeated)} edge(s) listed more than once: {some(repeated)}")
        hints.append("List each edge once.")
    if not lines:
        if got == expected:  # the edges are right, the container or the types are not: the checker said how
            raise error from None
        first = next(i for i, (g, e) in enumerate(zip(got, expected)) if g != e)
        lines.append(f"the right edges in another order: at index {first} you have {got[first]}, the graph has "
                     f"{expected[first]}")
        hints.append("Receivers in forward order (for each layer: head 0's q, k, v, head 1's q, k, v, ..., then the "
                     "MLP; 'logits' last), and each receiver's senders in the order they were written.")
    mistake = ("edges out of order" if not (extra or missing or repeated) else "repeated edges" if repeated and not
               (extra or missing) else "extra and missing edges" if extra and missing else "extra edges" if extra
               else "missing edges")
    raise CheckFailed("\n".join([error.detail, *lines]), exercise=error.exercise, case=error.case,
                      hint=" ".join(hints), mistake=mistake) from None


def _edges_case(check, name, *args, mistakes):
    """`check.case` for graph_edges: a difference no known mistake explains names the edges that differ."""
    try:
        return check.case(name, *args, mistakes=mistakes)
    except CheckFailed as error:
        if type(error) is not CheckFailed or error.mistake is not None:
            raise
        _name_the_edges(check, name, args, error)


@exercise(difficulty=2, minutes=15, hints=[
    "Walk through the model in order, keeping a list of the senders that exist so far (start with 'embed').",
    "For each head of a layer, add three receivers (q, k, v), each reading every sender so far; only then add "
    "the layer's heads to the senders. The MLP reads everything so far, its own layer's heads included.",
    "At the end, 'logits' reads every sender. Edges are (sender, receiver) pairs in that order.",
])
def test_graph_edges(check):
    mistakes = [
        Mistake("heads read their own layer", "A head's q, k and v are computed from the residual stream *before* "
                "its layer's attention: add a layer's heads to the senders only after their receivers.",
                partial(_edges_variant, same_layer=True)),
        Mistake("heads read their own layer", "Every head of a layer reads the residual stream *before* that layer's "
                "attention, so a later head of the layer does not read an earlier one: add the layer's heads to the "
                "senders after all of its heads' receivers, not one by one.",
                partial(_edges_variant, one_by_one=True)),
        Mistake("MLP before the heads", "The MLP comes after attention in the same block: it reads its own layer's "
                "heads too.", partial(_edges_variant, mlp_before_heads=True)),
        Mistake("q, k and v as one receiver", "A head has three inputs, 'a0.1.q', 'a0.1.k' and 'a0.1.v', which can "
                "be patched separately: K-composition is an edge into .k only.", partial(_edges_variant, split=False)),
        Mistake("no embedding", "The embedding ('embed') is the first sender: every receiver reads it.",
                partial(_edges_variant, no_embed=True)),
    ]
    got = _edges_case(check, "attention only, 2 layers x 2 heads", 2, 2, False, mistakes=mistakes)
    check.expect(isinstance(got, list) and all(isinstance(e, tuple) for e in got),
                 case="attention only, 2 layers x 2 heads", mistake="edges not tuples",
                 message=f"expected a list of (sender, receiver) tuples, got a {type(got).__name__} of "
                         f"{type(got[0]).__name__ if len(got) else 'nothing'}s",
                 hint="Make each edge a tuple `(sender, receiver)` and return a list of them: a list [s, r] prints "
                      "like a tuple but compares unequal to one, and only tuples can go in the sets ACDC keeps.")
    _edges_case(check, "with MLPs, 2 layers x 3 heads", 2, 3, True, mistakes=mistakes)
    graph = Graph(3, 4, True)
    check.expect(check.run(3, 4, True, case="ioi_3l's shape") == graph.edges, case="ioi_3l's shape",
                 message="your edges differ from the graph `utils.circuits.Graph(3, 4, True)` builds",
                 hint="Compare your list with Graph(3, 4, True).edges element by element.")


@exercise(difficulty=1, minutes=10, hints=[
    "current and source are [sender, batch, pos, d_model]; keep is [sender], True where the edge reads the "
    "current run.",
    "Choose per sender between the two runs (torch.where with keep broadcast to 4 axes), then add the senders up.",
    "`torch.where(keep[:, None, None, None], current, source).sum(0)`.",
])
def test_receiver_input(check):
    def variant(current, source, keep, *, invert=False, reduce="sum", added=False, axis=0):
        if added:
            return current.sum(0) + (current - source)[~keep].sum(0)
        chosen = torch.where(keep[:, None, None, None] != invert, current, source)
        if reduce == "none":
            return chosen
        return chosen.sum(axis) if reduce == "sum" else chosen.mean(0)

    def minus_source(current, source, keep):
        return current.sum(0) - source[~keep].sum(0)

    def one_run(current, source, keep, *, run="current"):
        """Only one run's terms: the kept senders' current outputs (or the patched ones' source outputs)."""
        return current[keep].sum(0) if run == "current" else source[~keep].sum(0)

    mistakes = [
        Mistake("keep inverted", "keep is True where the edge reads the *current* run; False edges read the source.",
                partial(variant, invert=True)),
        Mistake("averaged", "The residual stream is the *sum* of what the senders wrote, not their mean.",
                partial(variant, reduce="mean")),
        Mistake("difference added", "To switch an edge to the source run, *subtract* (current - source) for it, "
                "or pick source directly.", partial(variant, added=True)),
        Mistake("source terms dropped", "A patched edge still carries something: where keep is False the receiver "
                "reads the *source* run's output of that sender. Sum current[s] for the kept senders *and* source[s] "
                "for the others (torch.where(keep[:, None, None, None], current, source).sum(0)).",
                partial(one_run, run="current")),
        Mistake("source subtracted", "A patched sender's current output goes *out* and its source output comes "
                "*in*: subtract (current - source) for it, not source alone.", minus_source),
        Mistake("current terms dropped", "The kept senders (keep True) still write their *current* output: sum "
                "current[s] where keep is True and source[s] where it is False.", partial(one_run, run="source")),
        Mistake("not summed over senders", "The receiver reads the residual stream, the *sum* over senders: "
                "reduce axis 0 (sender) to get [batch, pos, d_model].", partial(variant, reduce="none")),
        *(Mistake("summed over the wrong axis", f"Sum over axis 0, the senders (the residual stream is the sum of "
                  f"what they wrote), not axis {axis}: the result is [batch, pos, d_model].",
                  partial(variant, axis=axis)) for axis in (1, 2, 3)),
    ]
    keep = torch.tensor([True, False, True, False, True], device=check.device)
    check.case("five senders", check.randn(5, 2, 3, 4), check.randn(5, 2, 3, 4), keep, mistakes=mistakes,
               check_dtype=False)
    check.case("one patched edge", check.randn(3, 1, 4, 2), check.randn(3, 1, 4, 2),
               torch.tensor([True, True, False], device=check.device), mistakes=mistakes, check_dtype=False)


def _kl_variant(clean_logits, logits, positions, *, reverse=False, reduce="mean", every=False, dim=-1):
    if every:
        positions = torch.arange(clean_logits.shape[1], device=clean_logits.device)
    p, q = clean_logits[:, positions].log_softmax(dim), logits[:, positions].log_softmax(dim)
    if reverse:
        p, q = q, p
    if reduce == "elementwise":  # F.kl_div's default reduction="mean": a mean over the vocabulary too
        return (p.exp() * (p - q)).mean()
    kl = (p.exp() * (p - q)).sum(-1)
    return kl.mean() if reduce == "mean" else kl.sum(1).mean() if reduce == "sum" else kl.sum()


@exercise(difficulty=1, minutes=10, hints=[
    "Take log_softmax of both logit tensors at `positions` (axis 1), over the vocabulary.",
    "KL(clean || patched) = sum over the vocabulary of p_clean * (log p_clean - log p_patched).",
    "Average that over the batch and the chosen positions: a scalar.",
])
def test_kl_from_clean(check):
    mistakes = [
        Mistake("reversed KL", "Weight by the *clean* distribution: KL(clean || patched), as ACDC does.",
                partial(_kl_variant, reverse=True)),
        Mistake("summed over positions", "Average over positions as well as the batch, so the threshold does not "
                "depend on how many positions you score.", partial(_kl_variant, reduce="sum")),
        Mistake("all positions", "Score only the given `positions` (where the task is decided).",
                partial(_kl_variant, every=True)),
        Mistake("averaged over the vocabulary", "Sum over the vocabulary (that sum is the KL of one distribution "
                "pair), then average over the batch and positions. F.kl_div's default reduction='mean' also averages "
                "over the vocabulary: use reduction='batchmean' on [batch * positions, d_vocab], or sum(-1).mean().",
                partial(_kl_variant, reduce="elementwise")),
        Mistake("summed over everything", "Average over the batch and the positions (sum only over the vocabulary): "
                "a total grows with the batch size.", partial(_kl_variant, reduce="total")),
        Mistake("log_target missing", "F.kl_div(input, target) takes log-probabilities as input but *probabilities* "
                "as target unless you pass log_target=True: with log-probabilities as target, pass log_target=True "
                "(or give it clean.exp()).", lambda c, l, pos: torch.nn.functional.kl_div(
                    l[:, pos].log_softmax(-1).flatten(0, 1), c[:, pos].log_softmax(-1).flatten(0, 1),
                    reduction="batchmean")),
        Mistake("input not log-probabilities", "F.kl_div's first argument must be *log*-probabilities of the "
                "patched run (log_softmax), its second the clean probabilities (or log-probabilities with "
                "log_target=True).", lambda c, l, pos: torch.nn.functional.kl_div(
                    l[:, pos].softmax(-1).flatten(0, 1), c[:, pos].softmax(-1).flatten(0, 1), reduction="batchmean")),
        *(Mistake("softmax over the wrong axis", "Normalise over the vocabulary, the last axis (log_softmax(-1)), "
                  f"not axis {dim}: each position's next-token distribution sums to 1 over the vocabulary.",
                  partial(_kl_variant, dim=dim)) for dim in (0, 1)),
        Mistake("probabilities", "Use log-probabilities (log_softmax): KL compares log p_clean with log p_patched.",
                lambda c, l, pos: (c[:, pos].softmax(-1) * (c[:, pos].softmax(-1) - l[:, pos].softmax(-1))).sum(-1)
                .mean()),
    ]
    clean = check.randn(3, 5, 7, scale=2.0)
    check.case("two positions", clean, clean + check.randn(3, 5, 7), torch.tensor([2, 4], device=check.device),
               mistakes=mistakes, check_dtype=False)
    check.case("one position", clean, check.randn(3, 5, 7), torch.tensor([4], device=check.device), mistakes=mistakes,
               check_dtype=False)


def _lp_variant(logits, tokens, seq_len, *, start=1, stop=0, shift=1, probs=False, raw=False, sign=1.0,
                reduce="mean", dim=-1):
    lp = logits if raw else logits.softmax(dim) if probs else logits.log_softmax(dim)
    lo, end = seq_len + start, 2 * seq_len + stop
    preds = lp[:, lo:end] if shift else lp[:, lo + 1:end + 1]
    targets = tokens[:, lo + 1:end + 1]
    picked = sign * preds.gather(-1, targets[..., None])[..., 0]
    return picked.mean() if reduce == "mean" else picked.sum(1).mean() if reduce == "positions" else picked.sum()


def _lp_targets(logits, tokens, seq_len, *, offset):
    """The right logits (positions seq_len + 1 ... 2 * seq_len - 1) against the tokens `offset` later (right: 1)."""
    lp = logits.log_softmax(-1)[:, seq_len + 1:2 * seq_len]
    targets = tokens[:, seq_len + 1 + offset:2 * seq_len + offset]
    return lp.gather(-1, targets[..., None])[..., 0].mean()


@exercise(difficulty=1, minutes=10, hints=[
    "[BOS] + R + R has 2 * seq_len + 1 tokens; the second copy is at positions seq_len + 1 ... 2 * seq_len.",
    "The logits at position p predict the token at p + 1, and the first token of the second copy cannot be "
    "predicted by induction: use logits[:, seq_len + 1 : 2 * seq_len] and tokens[:, seq_len + 2 :].",
    "log_softmax, gather the correct tokens, mean over everything.",
])
def test_induction_log_prob(check):
    mistakes = [
        Mistake("no shift", "The logits at position p predict the token at p + 1: shift the targets by one.",
                partial(_lp_variant, shift=0)),
        Mistake("no shift", "The logits at position p predict the token at p + 1, not the token at p: with the "
                "logits at seq_len + 1 ... 2 * seq_len - 1, the targets are tokens[:, seq_len + 2 : 2 * seq_len + 1].",
                partial(_lp_targets, offset=0)),
        Mistake("shifted the wrong way", "The logits at position p predict the *next* token, p + 1, not the one "
                "before: the targets are tokens[:, seq_len + 2 : 2 * seq_len + 1].", partial(_lp_targets, offset=-1)),
        Mistake("first token of the second copy included", "The first token of the second copy follows the end of "
                "the first copy, so nothing in context predicts it: start at logits position seq_len + 1.",
                partial(_lp_variant, start=0)),
        Mistake("probabilities", "Use log-probabilities (log_softmax), not probabilities.",
                partial(_lp_variant, probs=True)),
        Mistake("no log_softmax", "Logits are not log-probabilities: apply log_softmax over the vocabulary (the last "
                "axis) before gathering the correct tokens.", partial(_lp_variant, raw=True)),
        Mistake("loss, not log-prob", "Return the mean log-probability itself (higher = better), not the loss: "
                "cross_entropy is its negative, so drop the minus sign (or negate cross_entropy).",
                partial(_lp_variant, sign=-1.0)),
        Mistake("stops one position early", "Include the last logits that predict a token: positions seq_len + 1 "
                "... 2 * seq_len - 1 *inclusive*, i.e. logits[:, seq_len + 1 : 2 * seq_len] (a slice's end is "
                "exclusive), against tokens[:, seq_len + 2 : 2 * seq_len + 1].", partial(_lp_variant, stop=-1)),
        Mistake("starts one position late", "Start at logits position seq_len + 1 (the first token of the second "
                "copy), which predicts the second token of the copy, tokens[:, seq_len + 2]: induction can "
                "already predict it.", partial(_lp_variant, start=2)),
        Mistake("summed over positions", "Average over the positions as well as the batch: a sum grows with "
                "seq_len.", partial(_lp_variant, reduce="positions")),
        Mistake("summed over positions", "Average over everything (batch and positions): a sum grows with the "
                "batch size and seq_len.", partial(_lp_variant, reduce="total")),
        Mistake("log of the mean probability", "Average the log-probabilities, not the probabilities: take "
                "log_softmax, gather, then .mean() (the log of a mean is not the mean of the logs).",
                lambda logits, tokens, n: logits[:, n + 1:2 * n].softmax(-1).gather(-1, tokens[:, n + 2:, None])
                .mean().log()),
        Mistake("all positions", "Score only where induction can predict: the logits at positions seq_len + 1 ... "
                "2 * seq_len - 1 (the second copy after its first token), not the whole sequence.",
                lambda logits, tokens, n: logits[:, :-1].log_softmax(-1).gather(-1, tokens[:, 1:, None]).mean()),
        *(Mistake("softmax over the wrong axis", f"log_softmax over the vocabulary, the last axis, not axis {dim}: "
                  "each position's next-token distribution sums to 1 over the vocabulary.",
                  partial(_lp_variant, dim=dim)) for dim in (0, 1)),
    ]
    seq_len = 4
    half = check.randint(9, 3, seq_len) + 1
    tokens = torch.cat([torch.zeros(3, 1, dtype=torch.long, device=check.device), half, half], dim=1)
    check.case("seq_len 4", check.randn(3, 2 * seq_len + 1, 10, scale=2.0), tokens, seq_len, mistakes=mistakes,
               check_dtype=False)


# -- 2. ACDC ------------------------------------------------------------------------------------------------

ACDC_EDGES = [("embed", "a0.0.v"), ("embed", "a1.0.q"), ("a0.0", "a1.0.k"), ("embed", "a1.0.v"),
              ("embed", "logits"), ("a0.0", "logits"), ("a1.0", "logits")]
# cost of removing each edge, plus costs that appear only when two edges are both removed
ACDC_COST = {("embed", "a0.0.v"): 0.05, ("embed", "a1.0.q"): 0.6, ("a0.0", "a1.0.k"): 0.02,
             ("embed", "a1.0.v"): 0.3, ("embed", "logits"): 0.04, ("a0.0", "logits"): -0.08, ("a1.0", "logits"): 0.04}
ACDC_PAIRS = {(("embed", "a0.0.v"), ("a0.0", "a1.0.k")): 0.5, (("a1.0", "logits"), ("embed", "a1.0.v")): 0.1}
ACDC_EXACT_COST = dict(zip(ACDC_EDGES, [0.25, 0.5, 0.0, 0.25, 0.125, -0.125, 0.25]))


class _Metric:
    """metric_without(removed) for the ACDC grader: additive costs plus two interactions."""

    def __init__(self, cost, pairs):
        self.cost, self.pairs, self.calls = cost, pairs, 0

    def __call__(self, removed) -> float:
        self.calls += 1
        removed = set(removed)
        total = 1.0 + sum(self.cost[e] for e in removed)
        return total + sum(c for (a, b), c in self.pairs.items() if a in removed and b in removed)


def _acdc_variant(edges, metric_without, threshold, *, forward=False, baseline=False, alone=False,
                  absolute=False, return_removed=False, visit_order=False, inclusive=False):
    removed: set = set()
    current = metric_without(set())
    start = current
    for edge in (edges if forward else reversed(edges)):
        trial = metric_without({edge} if alone else removed | {edge})
        diff = trial - (start if baseline or alone else current)
        change = abs(diff) if absolute else diff
        if change < threshold or (inclusive and change == threshold):
            removed.add(edge)
            current = trial
    if visit_order:
        return [e for e in reversed(edges) if e not in removed]
    return [e for e in edges if (e in removed) == return_removed]


@exercise(difficulty=2, minutes=25, hints=[
    "Keep a set `removed` and the current metric value, metric_without(removed), starting from the empty set.",
    "Visit the edges in reverse (from the logits backwards); for each, try metric_without(removed | {edge}).",
    "If the metric rose by less than `threshold` compared with the *current* value (a fall counts too), add the "
    "edge to `removed` and update the current value. Return the edges not removed, in their original order.",
])
def test_acdc(check):
    mistakes = [
        Mistake("forward order", "ACDC starts at the output: visit reversed(edges), so that an edge is judged "
                "after the edges downstream of it.", partial(_acdc_variant, forward=True)),
        Mistake("compared with the clean model", "Compare with the *current* metric (after the removals so far), "
                "not with the clean model's: the removals add up.", partial(_acdc_variant, baseline=True)),
        Mistake("each edge alone", "Try each edge on top of everything already removed, metric_without(removed | "
                "{edge}), not on its own.", partial(_acdc_variant, alone=True)),
        Mistake("absolute change", "Remove an edge when the metric rises by less than the threshold; if removing it "
                "*lowers* the KL, that is no reason to keep it.", partial(_acdc_variant, absolute=True)),
        Mistake("returned the removed edges", "Return the edges ACDC *keeps* (the circuit).",
                partial(_acdc_variant, return_removed=True)),
        Mistake("order visited", "Return the kept edges in forward order, as `edges` lists them, not in the "
                "backward order ACDC visits them.", partial(_acdc_variant, visit_order=True)),
        Mistake("threshold inclusive", "Remove an edge only when the metric rises by *strictly* less than the "
                "threshold: a rise of exactly `threshold` keeps the edge (use <, not <=).",
                partial(_acdc_variant, inclusive=True)),
    ]
    metric = _Metric(ACDC_COST, ACDC_PAIRS)
    for threshold in (0.03, 0.1):
        check.case(f"seven edges, threshold {threshold}", ACDC_EDGES, metric, threshold, mistakes=mistakes)
    # costs that are exact binary fractions: three edges raise the metric by exactly the threshold, one by 0
    check.case("rises of exactly the threshold 0.25", ACDC_EDGES, _Metric(ACDC_EXACT_COST, {}), 0.25,
               mistakes=mistakes)
    # each call of metric_without is a forward pass: the notebook's progress bars and its cost count len(edges) + 1
    counted = _Metric(ACDC_COST, ACDC_PAIRS)
    check.run(ACDC_EDGES, counted, 0.1, case="counting forward passes")
    check.expect(counted.calls <= len(ACDC_EDGES) + 1, case="counting forward passes", mistake="extra passes",
                 message=f"your function called metric_without {counted.calls} times for {len(ACDC_EDGES)} edges; "
                         f"the docstring promises one call per edge plus one at the start ({len(ACDC_EDGES) + 1})",
                 hint="Each call of metric_without is a forward pass of the model (789 of them for the IOI cell). "
                      "Keep the current value in a variable: compute metric_without(set()) once at the start, and "
                      "when an edge is removed for good, the value you just computed for it becomes the current one; "
                      "don't call metric_without(removed) again.")


def _prune_variant(edges, *, sides=("in", "out"), nodes=True, closure=True):
    name = node_of if nodes else (lambda n: n)
    fed, heard = {"embed"}, {"logits"}
    for _ in range(len(edges) if closure else 1):
        fed = fed | {name(r) for s, r in edges if s in fed}
        heard = heard | {s for s, r in edges if name(r) in heard}
    return [(s, r) for s, r in edges if ("in" not in sides or s in fed) and ("out" not in sides or name(r) in heard)]


def _prune_local(edges, *, rounds=1, sequential=False, nodes=True):
    """Local pruning repeated `rounds` times: drop edges out of a node with no kept input and edges into a node
    with no kept output (both judged on the edges at the start of the round, or one side after the other)."""
    name = node_of if nodes else (lambda n: n)
    kept = list(edges)
    for _ in range(rounds):
        has_in = {name(r) for _, r in kept} | {"embed"}
        if sequential:
            kept = [(s, r) for s, r in kept if s in has_in]
        has_out = {s for s, _ in kept} | {"logits"}
        kept = [(s, r) for s, r in kept if s in has_in and name(r) in has_out]
    return kept


PRUNE_CASES = [
    [("embed", "a0.0.v"), ("embed", "a0.1.q"), ("a0.0", "a1.0.k"), ("a0.1", "a1.1.v"), ("embed", "a1.0.q"),
     ("a1.0", "logits"), ("a0.0", "logits")],
    [("embed", "a0.0.v"), ("a0.0", "m0"), ("m0", "a1.1.k"), ("a0.1", "a1.1.q"), ("a1.1", "m1"), ("m1", "logits"),
     ("a1.0", "logits"), ("embed", "m0")],
    # one path embed -> a0.0 -> m0 -> a1.0 -> logits; a chain that is fed but leads nowhere (four edges long, so
    # local pruning needs four rounds); a chain that reaches the logits but is never fed (three edges); edges
    # listed out of forward order, so that a single sweep in list order does not follow the chains either
    [("m1", "a2.0.k"), ("a1.0", "logits"), ("a1.2", "a2.1.q"), ("a1.1", "m1"), ("m0", "a1.0.k"),
     ("a0.2", "a1.2.v"), ("a0.1", "a1.1.q"), ("a0.0", "m0"), ("a2.1", "logits"), ("embed", "a0.1.v"),
     ("embed", "a0.0.q")],
]


def _explain_pruning(check, name, edges, error):
    """`error` again, named, for an output no known mistake explains: edges out of order, a container that is not
    a list, dangling edges left in, or edges on a path removed."""
    got = check.run(list(edges), case=name)
    expected = ref.prune_dangling(list(edges))
    try:
        got_list = [tuple(e) for e in got]
        got_set = set(got_list)
    except TypeError:
        raise error from None
    right = set(expected)
    if got_set == right and len(got_list) == len(expected):
        if not isinstance(got, list):
            raise CheckFailed(error.detail, exercise=error.exercise, case=error.case, mistake="not a list",
                              hint=f"The right edges, but as a {type(got).__name__}: return a list of the kept "
                                   "(sender, receiver) tuples in the order they come in `edges` "
                                   "(`[e for e in edges if ...]`).") from None
        if got_list != expected:
            raise CheckFailed(error.detail, exercise=error.exercise, case=error.case, mistake="edges out of order",
                              hint="The right edges in another order: return them in the order they come in "
                                   "`edges` (filter the list, `[e for e in edges if ...]`, rather than building a "
                                   "set or sorting).") from None
        raise error from None
    extra, missing = got_set - right, right - got_set
    if extra and not missing and got_set <= set(edges):
        edge = next(e for e in edges if e in extra)
        raise CheckFailed(error.detail + f"\n{len(extra)} edge(s) kept that lie on no path from embed to logits, "
                          f"e.g. {edge}", exercise=error.exercise, case=error.case, mistake="dangling edges left",
                          hint="Removing a dangling edge can leave the edge before it (or after it) dangling in "
                               "turn: one pass is not enough. Repeat until nothing changes, or compute the nodes "
                               "reachable from 'embed' and those that reach 'logits' to a fixed point (grow each set "
                               "until it stops growing) and keep (s, r) when s is in the first and node_of(r) in "
                               f"the second. Here {edge} is on no such path.") from None
    if missing and not extra:
        edge = next(e for e in expected if e in missing)
        raise CheckFailed(error.detail + f"\n{len(missing)} edge(s) removed that lie on a path from embed to "
                          f"logits, e.g. {edge}", exercise=error.exercise, case=error.case,
                          mistake="edges on a path removed",
                          hint=f"{edge} lies on a path from 'embed' to 'logits' through kept edges: keep every such "
                               "edge. Map receivers to nodes with node_of ('a1.0.k' is the node 'a1.0') when "
                               "following a path from an edge's receiver to the edges out of it.") from None
    raise error from None


def _prune_case(check, name, edges, *, mistakes):
    """`check.case` for prune_dangling: a difference no known mistake explains is named by what differs."""
    try:
        return check.case(name, edges, mistakes=mistakes)
    except CheckFailed as error:
        if type(error) is not CheckFailed or error.mistake is not None:
            raise
        _explain_pruning(check, name, edges, error)


@exercise(difficulty=3, minutes=25, hints=[
    "Work with nodes: a receiver 'a1.0.k' belongs to the node 'a1.0' (`utils.circuits.node_of`).",
    "Nodes reachable *from* 'embed' along kept edges: start from {'embed'} and add node_of(r) for every edge "
    "(s, r) with s reached, until the set stops growing. Nodes that *reach* 'logits': the same backwards.",
    "Keep an edge (s, r) when s is reachable from 'embed' and node_of(r) reaches 'logits'.",
])
def test_prune_dangling(check):
    mistakes = [
        Mistake("output side only", "Also drop edges out of nodes that nothing kept feeds: such a node only sees "
                "corrupted inputs, so its output is the corrupted one.", partial(_prune_variant, sides=("out",))),
        Mistake("input side only", "Also drop edges into nodes whose output reaches the logits through no kept edge.",
                partial(_prune_variant, sides=("in",))),
        Mistake("one step only", "Follow paths all the way: repeat until the reachable sets stop growing (one "
                "sweep over the list only follows a path whose edges happen to come in order).",
                partial(_prune_variant, closure=False)),
        Mistake("receivers not mapped to nodes", "A receiver 'a1.0.k' and the sender 'a1.0' are the same head: map "
                "receivers to nodes with node_of before following paths.", partial(_prune_variant, nodes=False)),
        *(Mistake("one pass of local pruning", "Dropping the edges out of unfed nodes and into unheard nodes once is "
                  "not enough: each removal can leave the edge before it (or after it) dangling in turn. Repeat "
                  "the pass until the list stops changing (`while True: ...; if new == kept: return kept`).",
                  partial(_prune_local, rounds=1, sequential=sequential)) for sequential in (False, True)),
        Mistake("receivers not mapped to nodes", "A receiver 'a1.0.k' and the sender 'a1.0' are the same head: map "
                "receivers to nodes with node_of ('a1.0.k' -> 'a1.0') before asking whether a node has a kept "
                "input or output.", partial(_prune_local, rounds=len(PRUNE_CASES[2]), nodes=False)),
    ]
    for i, edges in enumerate(PRUNE_CASES):
        _prune_case(check, f"graph {i + 1}", edges, mistakes=mistakes)


# -- 3. edge attribution patching ----------------------------------------------------------------------

def _grads_variant(em, tokens, metric, *, sign=1.0, twice=False, delta_only=False):
    delta = em.zero_delta(tokens)
    with torch.enable_grad():
        value = sign * metric(em.run(tokens, receiver_delta=delta))
        value.backward(retain_graph=twice)
        if twice:
            value.backward()
    return delta.detach() if delta_only else delta.grad.detach()


@exercise(difficulty=2, minutes=15, atol=1e-4, hints=[
    "The notebook switched gradients off (torch.set_grad_enabled(False) in its set-up cell), so run both passes "
    "inside `with torch.enable_grad():`. `delta = em.zero_delta(tokens)` is zeros of shape [receiver, batch, pos, "
    "d_model] with requires_grad; `em.run(tokens, receiver_delta=delta)` adds it to every receiver's input.",
    "Inside `with torch.enable_grad():` compute metric(logits) and call .backward() on it once.",
    "Return delta.grad (detached): the gradient of the metric with respect to each receiver's input.",
])
def test_receiver_gradients(check):
    mistakes = [
        Mistake("negated", "Back-propagate the metric itself, not its negative (it is not a loss here).",
                partial(_grads_variant, sign=-1.0)),
        Mistake("returned delta", "Return delta.grad, the gradient, not delta (which is all zeros).",
                partial(_grads_variant, delta_only=True)),
        Mistake("backward twice", "Call backward once: gradients accumulate in .grad.",
                partial(_grads_variant, twice=True)),
    ]
    clean, _ = _tokens(check)
    got = _case_with_gradients_off(check, "tiny model", _em(check), clean, _metric(clean), mistakes=mistakes,
                                   check_dtype=False)
    check.expect(not (isinstance(got, torch.Tensor) and got.requires_grad), case="tiny model",
                 mistake="still requires grad", message="your gradients still require grad (they carry a graph)",
                 hint="Return plain numbers: `delta.grad.detach()`, or torch.autograd.grad without "
                      "create_graph=True (or .detach() its result). A result that requires grad keeps the whole "
                      "forward graph alive, and everything computed from it builds more graph.")
    _expect_passes(check, "counting passes", lambda em: check.run(em, clean, _metric(clean), case="counting passes"),
                   forward=1, backward=1, what="one forward pass and one backward pass")
    # grad mode: the notebook switched gradients off; a call must leave them off (torch.set_grad_enabled(True)
    # would leave every later cell recording graphs)
    with torch.no_grad():
        check.run(_em(check), clean, _metric(clean), case="gradients off before the call")
        left_on = torch.is_grad_enabled()
    check.expect(not left_on, case="gradients off before the call", mistake="grad mode left on",
                 message="gradients were off before your function ran and are on after it: it changed the global "
                         "grad mode for the rest of the notebook",
                 hint="Switch gradients on only for the two passes, `with torch.enable_grad():` around the forward "
                      "pass and backward(): the block restores the grad mode when it ends. "
                      "torch.set_grad_enabled(True) on its own line leaves them on, and every later cell then "
                      "records graphs.")
    # dtype: the notebook's EdgeModel is float64; the gradients must come back in the model's dtype
    em64 = _em(check).to(torch.float64)
    got = _case_with_gradients_off(check, "float64 model", em64, clean, _metric(clean), mistakes=mistakes,
                                   check_dtype=False)
    dtype = got.dtype if isinstance(got, torch.Tensor) else None
    check.expect(dtype == torch.float64, case="float64 model", mistake="delta not in the model's dtype",
                 message=f"on a float64 EdgeModel your gradients are {str(dtype).removeprefix('torch.')}, "
                         "not float64",
                 hint="Make the zeros you differentiate with respect to with `em.zero_delta(tokens)`: it has the "
                      "model's dtype and device. A torch.zeros(..., requires_grad=True) of your own is float32, and "
                      "its gradient comes back float32 even when the model (like the notebook's) is float64.")


def _expect_passes(check, case, call, *, forward, backward, what):
    """Run `call(em)` on a fresh EdgeModel with gradients off (as the notebook does) and require at most
    `forward` forward and exactly `backward` backward passes (EdgeModel counts them; the notebook prints them
    as each method's cost)."""
    em = _em(check)
    with torch.no_grad():
        call(em)
    check.expect(em.n_forward <= forward and em.n_backward == backward, case=case, mistake="extra passes",
                 message=f"your function ran {em.n_forward} forward and {em.n_backward} backward pass(es); "
                         f"the docstring promises {what}",
                 hint="The notebook counts em.run calls (sender_outputs is one) and backward passes as each method's "
                      "cost: compute each run once and reuse it, and call backward (or torch.autograd.grad) once.")


def _eap_variant(clean_outs, corrupted_outs, grads, adjacency, *, sign=1.0, act=False, mask=True, reduce="sum",
                 absolute=False, transpose=False, axes=()):
    delta = corrupted_outs if act else sign * (corrupted_outs - clean_outs)
    scores = einops.einsum(delta, grads, "s b p d, r b p d -> s r")
    if reduce == "mean":
        scores = scores / delta[0].numel()
    elif reduce == "axes":  # a mean over some of batch (1), pos (2), d_model (3)
        for axis in axes:
            scores = scores / delta.shape[axis]
    if absolute:
        scores = scores.abs()
    scores = scores * adjacency if mask else scores
    return scores.T if transpose else scores


# a mean over some of batch, position and d_model instead of a sum (all three: the "averaged" mistake)
_EAP_MEAN_AXES = [(1,), (2,), (3,), (1, 2), (1, 3), (2, 3)]


@exercise(difficulty=2, minutes=15, atol=1e-4, hints=[
    "Corrupting edge (s, r) changes receiver r's input by corrupted_outs[s] - clean_outs[s].",
    "To first order the metric changes by that difference dotted with the gradient at r: sum over batch, "
    "position and d_model, for every pair (s, r) at once (einsum 's b p d, r b p d -> s r').",
    "Multiply by `adjacency` so that pairs that are not edges score 0.",
])
def test_eap_scores(check):
    mistakes = [
        Mistake("wrong sign", "The edge goes from clean to corrupted: use corrupted - clean.",
                partial(_eap_variant, sign=-1.0)),
        Mistake("activation times gradient", "Multiply the gradient by the *change* in the sender's output, not by "
                "the output itself.", partial(_eap_variant, act=True)),
        Mistake("non-edges scored", "Mask with `adjacency`: a later sender does not reach an earlier receiver, so "
                "that pair has no edge to score.", partial(_eap_variant, mask=False)),
        Mistake("averaged", "Sum over batch, position and d_model: the metric's own mean already scales it.",
                partial(_eap_variant, reduce="mean")),
        *(Mistake("averaged", f"Sum over {' and '.join(['batch', 'position', 'd_model'][a - 1] for a in axes)} "
                  "too, don't average: the first-order change of the metric is the full dot product of the change "
                  "in the sender's output with the gradient (the metric's own mean over the batch is already in "
                  "the gradient).", partial(_eap_variant, reduce="axes", axes=axes)) for axes in _EAP_MEAN_AXES),
        Mistake("sign lost", "Keep the sign: a negative score means corrupting the edge *lowers* the metric, and "
                "later cells need to tell the two apart (top_k_edges takes |score| itself). Don't take .abs().",
                partial(_eap_variant, absolute=True)),
        Mistake("sign lost", "Keep the sign (no .abs()), and mask with `adjacency` so that pairs that are not edges "
                "score 0.", partial(_eap_variant, absolute=True, mask=False)),
        Mistake("[receiver, sender]", "Scores are [sender, receiver], like `adjacency`: rows are senders "
                "('s b p d, r b p d -> s r').", partial(_eap_variant, transpose=True, mask=False)),
        Mistake("[receiver, sender]", "Scores are [sender, receiver], like `adjacency`: rows are senders "
                "('s b p d, r b p d -> s r').", partial(_eap_variant, transpose=True)),
    ]
    graph = Graph(1, 2, False)
    s, r = len(graph.senders), len(graph.receivers)
    check.case("one layer, two heads", check.randn(s, 2, 3, 4), check.randn(s, 2, 3, 4), check.randn(r, 2, 3, 4),
               graph.adjacency.to(check.device), mistakes=mistakes, check_dtype=False)


def _eap_edge_variant(em, clean_tokens, corrupted_tokens, metric, *, grad_on="clean", swap=False, sign=1.0,
                      **scoring):
    """EAP with a mistake in the runs (`grad_on`, `swap`, `sign`) or in the scoring (`scoring`: _eap_variant's)."""
    if swap:
        clean_tokens, corrupted_tokens = corrupted_tokens, clean_tokens
    clean_outs, corrupted_outs = em.sender_outputs(clean_tokens), em.sender_outputs(corrupted_tokens)
    grads = ref.receiver_gradients(em, clean_tokens if grad_on == "clean" else corrupted_tokens, metric)
    adjacency = em.graph.adjacency.to(grads.device)
    if scoring:
        return _eap_variant(clean_outs, corrupted_outs, grads, adjacency, **scoring)
    return sign * ref.eap_scores(clean_outs, corrupted_outs, grads, adjacency)


@exercise(difficulty=2, minutes=15, atol=1e-4, hints=[
    "You need both runs' sender outputs (em.sender_outputs) and the receiver gradients.",
    "The edges are corrupted *in the clean run*, so take the gradient on the clean tokens.",
    "`eap_scores(clean_outs, corrupted_outs, receiver_gradients(em, clean_tokens, metric), em.graph.adjacency)`.",
])
def test_eap_edge_scores(check):
    mistakes = [
        Mistake("gradient on the corrupted run", "Take the gradient where the change happens: on the clean run, "
                "whose edges are being corrupted.", partial(_eap_edge_variant, grad_on="corrupted")),
        Mistake("denoising", "This chapter noises, like ACDC: start from the clean run and corrupt edges. "
                "Swapping the runs gives the denoising scores (what transformer_lens computes).",
                partial(_eap_edge_variant, swap=True)),
        Mistake("wrong sign", "Score corrupted - clean: a negative score means corrupting the edge lowers the "
                "metric.", partial(_eap_edge_variant, sign=-1.0)),
        Mistake("non-edges scored", "Mask the scores with `em.graph.adjacency` (as eap_scores does): a pair "
                "(sender, receiver) that is not an edge (a later sender and an earlier receiver) must score 0. "
                "Calling your eap_scores(clean_outs, corrupted_outs, grads, em.graph.adjacency) does it.",
                partial(_eap_edge_variant, mask=False)),
        Mistake("sign lost", "Keep the sign (no .abs()): a negative score means corrupting the edge lowers the "
                "metric; top_k_edges takes |score| itself.", partial(_eap_edge_variant, absolute=True)),
        Mistake("averaged", "Sum over batch, position and d_model (as eap_scores does), don't average: the "
                "metric's own mean over the batch is already in the gradient.",
                partial(_eap_edge_variant, reduce="mean")),
        *(Mistake("averaged", "Sum over batch, position and d_model (as eap_scores does), don't average over any "
                  "of them: the metric's own mean over the batch is already in the gradient.",
                  partial(_eap_edge_variant, reduce="axes", axes=axes)) for axes in _EAP_MEAN_AXES),
        Mistake("all zero", "Your scores are all 0: either the two sets of sender outputs come from the same "
                "tokens (take clean_outs from clean_tokens and corrupted_outs from corrupted_tokens) or the "
                "gradients are zeros (use delta.grad, not delta).",
                lambda em, clean, corrupted, metric: torch.zeros(em.graph.adjacency.shape, device=clean.device)),
    ]
    clean, corrupted = _tokens(check)
    _case_with_gradients_off(check, "tiny model", _em(check), clean, corrupted, _metric(clean), mistakes=mistakes,
                             check_dtype=False)
    _expect_passes(check, "counting passes",
                   lambda em: check.run(em, clean, corrupted, _metric(clean), case="counting passes"),
                   forward=3, backward=1, what="at most three forward passes and one backward pass")


def _path_variant(clean, corrupted, steps, *, start=1, reverse=False, both_ends=False, extra_point=False,
                  denominator=0, steps_last=False):
    if both_ends:
        alphas = torch.linspace(0, 1, steps + extra_point, dtype=clean.dtype, device=clean.device)
    else:
        alphas = (torch.arange(steps, dtype=clean.dtype, device=clean.device) + start) / (steps + denominator)
    a, b = (clean, corrupted) if reverse else (corrupted, clean)
    path = a + alphas[:, None, None, None] * (b - a)
    return einops.rearrange(path, "k b p d -> b p d k") if steps_last else path


@exercise(difficulty=1, minutes=10, hints=[
    "The path goes from the corrupted embedding to the clean one: corrupted + alpha * (clean - corrupted).",
    "alpha takes the values 1/steps, 2/steps, ..., 1 (the clean end is included, the corrupted end is not).",
    "`alphas = torch.arange(1, steps + 1) / steps`, broadcast to [steps, 1, 1, 1].",
])
def test_ig_path(check):
    mistakes = [
        Mistake("starts at the corrupted end", "Use alpha = k / steps for k = 1 ... steps: the last point is the "
                "clean input, so that steps = 1 gives EAP.", partial(_path_variant, start=0)),
        Mistake("both ends", "torch.linspace(0, 1, steps) includes alpha = 0; use k / steps for k = 1 ... steps.",
                partial(_path_variant, both_ends=True)),
        Mistake("reversed", "Move from corrupted towards clean: corrupted + alpha * (clean - corrupted).",
                partial(_path_variant, reverse=True)),
        Mistake("steps + 1 points", "Return exactly `steps` points: alpha = k / steps for k = 1 ... steps. "
                "torch.linspace(0, 1, steps + 1) also includes alpha = 0, the corrupted input itself; drop it "
                "(linspace(0, 1, steps + 1)[1:]) or use torch.arange(1, steps + 1) / steps.",
                partial(_path_variant, both_ends=True, extra_point=True)),
        Mistake("divided by steps + 1", "alpha = k / steps, not k / (steps + 1): the last point must be the clean "
                "input itself (alpha = 1).", partial(_path_variant, denominator=1)),
        Mistake("steps axis last", "Put the steps first: the output is [steps, batch, pos, d_model], so that "
                "`for point in ig_path(...)` visits the points.", partial(_path_variant, steps_last=True)),
    ]
    check.case("4 steps", check.randn(2, 3, 5), check.randn(2, 3, 5), 4, mistakes=mistakes, check_dtype=False)
    check.case("2 steps", check.randn(1, 4, 3), check.randn(1, 4, 3), 2, mistakes=mistakes, check_dtype=False)


def _ig_variant(em, clean_tokens, corrupted_tokens, metric, steps=5, *, average=True, start=1, eap=False,
                alphas=None, one_delta=False, divisor=None, **scoring):
    """EAP-IG with a mistake: the points (`start`, `eap`, or `alphas(steps)`), the average (`average`, `divisor`),
    one delta reused across the runs (its .grad accumulates), or the scoring (`scoring`: _eap_variant's)."""
    clean_outs, corrupted_outs = em.sender_outputs(clean_tokens), em.sender_outputs(corrupted_tokens)
    grads = torch.zeros_like(em.zero_delta(clean_tokens))
    alphas = [1.0] if eap else alphas(steps) if alphas else [(k + start) / steps for k in range(steps)]
    shared = em.zero_delta(clean_tokens)
    for a in alphas:
        embed = corrupted_outs[0] + a * (clean_outs[0] - corrupted_outs[0])
        delta = shared if one_delta else em.zero_delta(clean_tokens)
        with torch.enable_grad():
            metric(em.run(clean_tokens, receiver_delta=delta, embed=embed)).backward()
        grads += delta.grad
    if average:
        grads = grads / (divisor(steps) if divisor else len(alphas))
    adjacency = em.graph.adjacency.to(grads.device)
    if scoring:
        return _eap_variant(clean_outs, corrupted_outs, grads, adjacency, **scoring)
    return ref.eap_scores(clean_outs, corrupted_outs, grads, adjacency)


@exercise(difficulty=3, minutes=25, timeout=20.0, atol=1e-4, hints=[
    "Like eap_edge_scores, but the gradients come from `steps` runs of the clean tokens whose embedding is "
    "replaced by the points of ig_path(clean_outs[0], corrupted_outs[0], steps) (sender 0 is 'embed').",
    "`em.run(clean_tokens, receiver_delta=delta, embed=point)` runs with that embedding; everything after it "
    "recomputes. Use a fresh em.zero_delta for each run and add up delta.grad.",
    "Divide the summed gradients by `steps` (an average), then score with eap_scores as before.",
])
def test_eap_ig_edge_scores(check):
    mistakes = [
        Mistake("summed, not averaged", "Integrated gradients *average* the gradient along the path: divide by "
                "the number of steps.", partial(_ig_variant, average=False)),
        Mistake("starts at the corrupted end", "Use the points of ig_path: alpha = k / steps for k = 1 ... steps.",
                partial(_ig_variant, start=0)),
        Mistake("gradient at the clean point only", "That is EAP: average the gradients over every point of the "
                "path.", partial(_ig_variant, eap=True)),
        Mistake("one point only", "You used the gradient at one point of the path (its first, alpha = 1 / steps). "
                "Integrated gradients run the model at *every* point of ig_path, one run per point, and average "
                "the `steps` gradients: loop over the points.", partial(_ig_variant, alphas=lambda n: [1 / n])),
        Mistake("one point only", "You used the gradient at the corrupted input only (alpha = 0). Integrated "
                "gradients run the model at every point of ig_path (alpha = 1 / steps ... 1) and average the "
                "`steps` gradients.", partial(_ig_variant, alphas=lambda n: [0.0])),
        Mistake("steps + 1 points", "Use the `steps` points of ig_path (alpha = k / steps for k = 1 ... steps), "
                "not steps + 1 points from alpha = 0: the corrupted end is not on the path.",
                partial(_ig_variant, alphas=lambda n: [k / n for k in range(n + 1)])),
        Mistake("steps + 1 points", "Use the `steps` points of ig_path (alpha = k / steps for k = 1 ... steps) and "
                "divide by `steps`.", partial(_ig_variant, alphas=lambda n: [k / n for k in range(n + 1)],
                                               divisor=lambda n: n)),
        Mistake("both ends", "torch.linspace(0, 1, steps) includes alpha = 0 (the corrupted input) and spaces the "
                "points 1 / (steps - 1) apart: use the points of ig_path, alpha = k / steps for k = 1 ... steps.",
                partial(_ig_variant, alphas=lambda n: torch.linspace(0, 1, n).tolist())),
        Mistake("one delta reused", "Use a fresh em.zero_delta for each run: .grad accumulates across backward "
                "passes, so adding delta.grad after each run of a shared delta counts the early points many times. "
                "(Or keep one delta and read its .grad once, after the loop.)",
                partial(_ig_variant, one_delta=True)),
        Mistake("non-edges scored", "Mask the scores with `em.graph.adjacency` (as eap_scores does): a pair that is "
                "not an edge must score 0.", partial(_ig_variant, mask=False)),
        Mistake("sign lost", "Keep the sign of the scores (no .abs()).", partial(_ig_variant, absolute=True)),
    ]
    clean, corrupted = _tokens(check)
    _case_with_gradients_off(check, "tiny model, 3 steps", _em(check), clean, corrupted, _metric(clean), 3,
                             mistakes=mistakes, check_dtype=False)


def _top_variant(scores, adjacency, k, *, signed=False, smallest=False, unmasked=False, abs_after=False):
    values = scores if signed else scores.abs()
    if abs_after:  # non-edges masked to -inf, then abs: they become +inf and are chosen first
        values = scores.masked_fill(~adjacency, -float("inf")).abs()
    elif not unmasked:
        values = values.masked_fill(~adjacency, float("inf") if smallest else -float("inf"))
    flat = values.flatten()
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[flat.topk(k, largest=not smallest).indices] = True
    return mask.view_as(adjacency)


@exercise(difficulty=1, minutes=10, hints=[
    "Rank by the absolute score: an edge that strongly *lowers* the metric is as important as one that raises it.",
    "Only real edges compete: set the non-edges (adjacency False) to -inf (or -1) before ranking.",
    "`flat.topk(k).indices` on the flattened scores, then a flat bool mask reshaped to [sender, receiver] (exactly "
    "k edges, even when some tie).",
])
def test_top_k_edges(check):
    mistakes = [
        Mistake("signed scores", "Rank by |score|: large negative effects count too.", partial(_top_variant, signed=True)),
        Mistake("smallest", "Take the k *largest* |scores|.", partial(_top_variant, smallest=True)),
        Mistake("non-edges counted", "Pairs that are not edges must never be chosen: mask them with `adjacency`.",
                partial(_top_variant, unmasked=True)),
        *(Mistake("wrong number of edges", f"Choose exactly k edges, not k {extra:+d}: topk(k) gives k indices.",
                  lambda scores, adjacency, k, extra=extra: _top_variant(scores, adjacency, k + extra))
          for extra in (1, -1)),
        Mistake("masked before abs", "Take |score| first, then mask: .abs() turns the -inf (or -1) you gave the "
                "non-edges into +inf (or 1), so they are chosen first. `scores.abs().masked_fill(~adjacency, -1.0)`.",
                partial(_top_variant, abs_after=True)),
    ]
    adjacency = Graph(1, 2, False).adjacency.to(check.device)
    scores = check.randn(*adjacency.shape) * torch.linspace(0.5, 2.0, adjacency.shape[1], device=check.device)
    got = check.run(scores.clone(), adjacency.clone(), 3, case="k = 3")
    check.expect(not isinstance(got, torch.Tensor) or got.dtype == torch.bool, case="k = 3",
                 mistake="not a bool mask",
                 message=f"expected a bool mask, got dtype {str(got.dtype).removeprefix('torch.')}"
                 if isinstance(got, torch.Tensor) else "",
                 hint="Return a bool mask [sender, receiver] (torch.zeros(..., dtype=torch.bool), or `mask.bool()`): "
                      "True on the chosen edges. The notebook uses it as EdgeModel.run's keep and with ~ and &.")
    check.case("k = 3", scores, adjacency, 3, mistakes=mistakes)
    check.case("k = 6", scores, adjacency, 6, mistakes=mistakes)
    # scores of exactly 0 on edges, as eap_scores gives non-edges (and EAP with the KL gives edges, nearly): k = every
    # edge, so that the edges scoring 0 must all be chosen
    zeros = torch.zeros(adjacency.shape, device=check.device)
    zeros[0, :5] = torch.tensor([1.5, -0.7, 0.3, 2.0, -0.1], device=check.device)
    _expect_top_k(check, "edges scoring exactly 0", zeros, adjacency, int(adjacency.sum()))
    # ties at the cut-off: five edges score |1|, and k = 3 cuts through them
    tied = torch.zeros(adjacency.shape, device=check.device)
    tied[0] = torch.tensor([2.0, -1.0, 1.0, 0.5, -1.0, 1.0, 0.25], device=check.device)
    tied[1, -1], tied[2, -1] = -1.0, 0.5
    _expect_top_k(check, "ties at the cut-off", tied, adjacency, 3)


def _expect_top_k(check, case, scores, adjacency, k):
    """Where several answers are right (ties), require the properties: a bool mask of exactly k real edges,
    each scoring at least as high (in |score|) as every edge left out."""
    out = check.run(scores.clone(), adjacency.clone(), k, case=case)
    check.expect(isinstance(out, torch.Tensor) and out.shape == adjacency.shape and out.dtype == torch.bool, case=case,
                 message=f"expected a bool tensor of shape {tuple(adjacency.shape)}", mistake="not a bool mask",
                 hint="Return a bool mask [sender, receiver], True on the chosen edges.")
    out, scores, adjacency = out.cpu(), scores.cpu(), adjacency.cpu()
    check.expect(not bool((out & ~adjacency).any()), case=case, mistake="non-edges tied at 0",
                 message=f"{int((out & ~adjacency).sum())} chosen pair(s) are not edges (scores: {scores.tolist()})",
                 hint="Multiplying by `adjacency` gives a non-edge the score 0, which ties with a real edge scoring "
                      "exactly 0 (EAP scores can be 0 or ~1e-8): give non-edges a score below every edge "
                      "(`masked_fill(~adjacency, -1.0)`, or -inf) so that they are never chosen.")
    check.expect(int(out.sum()) == k, case=case, mistake="ties kept" if int(out.sum()) > k else "too few edges",
                 message=f"{int(out.sum())} edges chosen for k = {k} (scores: {scores.tolist()})",
                 hint="Return exactly k edges. When edges tie with the k-th largest |score|, a cut-off `>= value` "
                      "keeps them all: choose k indices instead (`flat.topk(k).indices`; ties are broken "
                      "arbitrarily).")
    size, left_out = scores.abs(), adjacency & ~out
    check.expect(not left_out.any() or float(size[out].min()) >= float(size[left_out].max()), case=case,
                 mistake="not the top k",
                 message="an edge left out has a larger |score| than one you chose",
                 hint="Rank the edges by |score| and keep the k largest.")


# -- 4. comparing methods -----------------------------------------------------------------------------------

def _roc_variant(scores, labels, *, ascending=False, origin=True, denominator="class", per_item=False,
                 repeated=False, strict=False, swapped=False, end=False):
    if per_item:
        order = scores.argsort(descending=True)
        called = torch.zeros(len(scores) + 1, len(scores), dtype=torch.bool, device=scores.device)
        for i in range(len(scores)):
            called[i + 1] = called[i]
            called[i + 1, order[i]] = True
        called = called[1:]
    else:
        thresholds = scores.sort().values if repeated else torch.unique(scores)
        thresholds = thresholds if ascending else thresholds.flip(0)
        called = (scores[None, :] > thresholds[:, None]) if strict else (scores[None, :] >= thresholds[:, None])
    pos, neg = (labels.sum(), (~labels).sum()) if denominator == "class" else (len(labels), len(labels))
    tpr = ((called & labels).sum(-1) / pos).float().cpu()
    fpr = ((called & ~labels).sum(-1) / neg).float().cpu()
    if origin:
        zero = torch.zeros(1)
        fpr, tpr = torch.cat([zero, fpr]), torch.cat([zero, tpr])
    if end:
        one = torch.ones(1)
        fpr, tpr = torch.cat([fpr, one]), torch.cat([tpr, one])
    return (tpr, fpr) if swapped else (fpr, tpr)


@exercise(difficulty=2, minutes=15, hints=[
    "For a threshold t, everything scoring >= t is called positive: tpr = true positives / positives, "
    "fpr = false positives / negatives.",
    "Use every distinct score as a threshold, from the highest down (torch.unique(scores).flip(0)), so tied "
    "scores enter together.",
    "Prepend the point (0, 0) (a threshold above every score) and return (fpr, tpr) as two 1-D tensors.",
])
def test_roc_points(check):
    mistakes = [
        Mistake("ascending thresholds", "Go from the highest threshold down, so fpr and tpr grow along the curve.",
                partial(_roc_variant, ascending=True)),
        Mistake("no origin", "Start the curve at (0, 0): a threshold above every score calls nothing positive.",
                partial(_roc_variant, origin=False)),
        Mistake("rates over all items", "Divide true positives by the number of positives and false positives by "
                "the number of negatives, not both by the number of items.",
                partial(_roc_variant, denominator="all")),
        Mistake("ties split", "Tied scores get one threshold: an item cannot be called positive while another with "
                "the same score is not.", partial(_roc_variant, per_item=True)),
        Mistake("repeated thresholds", "One point per distinct score: tied scores give the same threshold, so "
                "use each score once (torch.unique) rather than every item's score, which repeats points.",
                partial(_roc_variant, repeated=True)),
        Mistake("(tpr, fpr) swapped", "Return (fpr, tpr): false-positive rates first (the x axis of a ROC curve), "
                "then true-positive rates.", partial(_roc_variant, swapped=True)),
        *(Mistake("strict threshold", "Call positive everything scoring >= t, not > t: with >, the highest score "
                  "is never called positive at its own threshold, and every point moves one threshold late.",
                  partial(_roc_variant, strict=True, origin=origin, end=end))
          for origin, end in ((True, False), (False, False), (True, True))),  # no origin, (1, 1) appended: right
        Mistake("lists, not tensors", "Return two 1-D tensors (torch.tensor(fpr), torch.tensor(tpr)), not "
                "lists: roc_auc and the plots index and subtract them as tensors.",
                lambda s, l: tuple(x.tolist() for x in ref.roc_points(s, l))),
        Mistake("(1, 1) appended", "The lowest threshold already calls everything positive, so the curve ends at "
                "(1, 1) by itself: don't append it again.", partial(_roc_variant, end=True)),
        Mistake("(tpr, fpr) swapped", "Return (fpr, tpr), false-positive rates first; and call positive "
                "everything scoring >= t.", partial(_roc_variant, swapped=True, strict=True)),
    ]
    scores = torch.tensor([0.9, 0.1, 0.5, 0.5, 0.3, 0.8, 0.5, 0.05], device=check.device)
    labels = torch.tensor([True, False, True, False, False, True, True, False], device=check.device)
    check.case("eight items with ties", scores, labels, mistakes=mistakes, check_dtype=False)
    check.case("random scores", check.randn(10), torch.tensor([True, False] * 5, device=check.device),
               mistakes=mistakes, check_dtype=False)


@exercise(difficulty=1, minutes=10, hints=[
    "The area under a curve through points (x_i, y_i) is a sum of trapezoids.",
    "Each trapezoid: (x_{i+1} - x_i) * (y_{i+1} + y_i) / 2.",
    "`float(((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2).sum())`.",
])
def test_roc_auc(check):
    mistakes = [
        Mistake("left Riemann sum", "Use trapezoids, the average of the two ends of each step, not the left end.",
                lambda f, t: float(((f[1:] - f[:-1]) * t[:-1]).sum())),
        Mistake("right Riemann sum", "Use trapezoids, the average of the two ends of each step, not the right end.",
                lambda f, t: float(((f[1:] - f[:-1]) * t[1:]).sum())),
        Mistake("mean tpr", "The area weighs each tpr by the width of its fpr step; a plain mean ignores the widths.",
                lambda f, t: float(t.mean())),
        Mistake("x and y swapped", "torch.trapezoid(y, x) takes the heights first: torch.trapezoid(tpr, fpr). The "
                "other way round integrates fpr over tpr, the area to the *left* of the curve.",
                lambda f, t: float(torch.trapezoid(f, t))),
        Mistake("no x: unit spacing", "Pass the x values: torch.trapezoid(tpr, fpr). Without them trapezoid "
                "spaces the points 1 apart, not by their fpr steps.", lambda f, t: float(torch.trapezoid(t))),
        Mistake("no x: unit spacing", "Pass the x values: torch.trapezoid(tpr, fpr). Without them trapezoid "
                "spaces the points 1 apart, not by their fpr steps.", lambda f, t: float(torch.trapezoid(f))),
        Mistake("evenly spaced points", "The points are not evenly spaced in fpr: weigh each trapezoid by its own "
                "width fpr[i+1] - fpr[i] (torch.trapezoid(tpr, fpr)), not 1 / (n - 1).",
                lambda f, t: float(torch.trapezoid(t, dx=1 / (len(t) - 1)))),
        Mistake("no / 2", "A trapezoid's area is width * (sum of the two heights) / 2: divide by 2.",
                lambda f, t: float(((f[1:] - f[:-1]) * (t[1:] + t[:-1])).sum())),
    ]
    fpr = torch.tensor([0.0, 0.0, 0.25, 0.5, 1.0], device=check.device)
    tpr = torch.tensor([0.0, 0.5, 0.5, 1.0, 1.0], device=check.device)
    got = check.case("five points", fpr, tpr, mistakes=mistakes)
    _expect_float(check, "five points", got)
    check.case("a diagonal with a bump", torch.tensor([0.0, 0.2, 0.6, 1.0], device=check.device),
               torch.tensor([0.0, 0.6, 0.7, 1.0], device=check.device), mistakes=mistakes)


def _expect_float(check, case, got):
    """The docstring promises a float; a one-element tensor compares equal to it, so check the type."""
    check.expect(isinstance(got, float), case=case, mistake="tensor, not float",
                 message=f"expected a Python float, got {type(got).__name__}"
                         + (f" of shape {tuple(got.shape)}" if isinstance(got, torch.Tensor) else ""),
                 hint="Return a Python float (.item() or float(...)): the notebook formats, rounds and compares "
                      "these numbers, and a tensor would also keep its device and any graph.")


def _faith_variant(em, tokens, corrupted_outs, keep, metric, *, normalise=True, invert=False, over_clean=False,
                   lost=False, baseline="nothing", form="ratio"):
    with torch.no_grad():
        adjacency = em.graph.adjacency.to(keep.device)
        circuit_keep = ~keep & adjacency if invert else keep
        circuit = metric(em.run(tokens, keep=circuit_keep, source=corrupted_outs))
        base_keep = {"nothing": torch.zeros_like(keep), "complement": ~keep, "circuit": keep}[baseline]
        nothing = metric(em.run(tokens, keep=base_keep, source=corrupted_outs))
        clean = metric(em.run(tokens))
    if not normalise:
        return float(circuit)
    if over_clean:
        return float(circuit / clean)
    if form == "difference":
        return float(circuit - nothing)
    if form == "from clean":
        return float(circuit - clean)
    if form == "over nothing":
        return float(circuit / nothing)
    if form == "inverted":
        return float((clean - nothing) / (circuit - nothing))
    if form == "over circuit":
        return float((circuit - nothing) / (clean - circuit))
    if lost:
        return float((clean - circuit) / (clean - nothing))
    return float((circuit - nothing) / (clean - nothing))


@exercise(difficulty=2, minutes=15, atol=1e-4, hints=[
    "Three runs of `tokens`: with keep (edges outside the circuit read corrupted_outs), with every edge "
    "corrupted (keep all False), and plain (em.run(tokens)).",
    "Normalise: 0 = every edge corrupted, 1 = the clean model.",
    "`(circuit - nothing) / (clean - nothing)` as a float.",
])
def test_edge_faithfulness(check):
    mistakes = [
        Mistake("not normalised", "Return the fraction of the clean-to-corrupted gap the circuit recovers, not "
                "the raw metric.", partial(_faith_variant, normalise=False)),
        Mistake("ratio to clean", "Measure from the fully corrupted run: (circuit - nothing) / (clean - nothing); "
                "a log-probability metric is not 0 when nothing is left.", partial(_faith_variant, over_clean=True)),
        Mistake("circuit corrupted", "`keep` is True on the circuit's edges, which stay clean; the others read "
                "corrupted_outs.", partial(_faith_variant, invert=True)),
        Mistake("fraction lost", "Return the fraction the circuit *keeps*, (circuit - corrupted) / (clean - "
                "corrupted): 1 when the circuit behaves like the clean model, 0 when it does no better than every "
                "edge corrupted. (clean - circuit) / (clean - corrupted) is 1 minus that, the fraction lost.",
                partial(_faith_variant, lost=True)),
        Mistake("baseline from the complement", "The 0 of the scale is the run with *every* edge corrupted, "
                "keep = torch.zeros_like(keep) (all False), not ~keep (the circuit corrupted and the rest clean).",
                partial(_faith_variant, baseline="complement")),
        Mistake("baseline from the complement", "The 0 of the scale is the run with *every* edge corrupted "
                "(keep all False); and the fraction kept is (circuit - corrupted) / (clean - corrupted).",
                partial(_faith_variant, baseline="complement", lost=True)),
        Mistake("not normalised", "Divide by the gap between the clean model and every edge corrupted: "
                "(circuit - corrupted) / (clean - corrupted), a fraction.", partial(_faith_variant, form="difference")),
        Mistake("not normalised", "Measure from the run with every edge corrupted and divide by the whole gap: "
                "(circuit - corrupted) / (clean - corrupted).", partial(_faith_variant, form="from clean")),
        Mistake("ratio to corrupted", "Measure differences, not ratios: (circuit - corrupted) / (clean - "
                "corrupted), where corrupted is the metric with every edge corrupted.",
                partial(_faith_variant, form="over nothing")),
        Mistake("ratio upside down", "The circuit's gain goes on top: (circuit - corrupted) / (clean - "
                "corrupted), not the other way round.", partial(_faith_variant, form="inverted")),
        Mistake("divided by the wrong gap", "Divide by the whole gap, clean - corrupted (every edge corrupted), not "
                "by what the circuit leaves out (clean - circuit).", partial(_faith_variant, form="over circuit")),
    ]
    em = _em(check)
    clean, corrupted = _tokens(check)
    corrupted_outs = em.sender_outputs(corrupted)
    keep = em.graph.mask(em.graph.edges[::3])
    try:
        got = check.case("every third edge", em, clean, corrupted_outs, keep, _metric(clean), mistakes=mistakes)
    except CheckFailed as error:
        if type(error) is not CheckFailed or error.mistake is not None:
            raise
        got = check.run(em, clean, corrupted_outs, keep, _metric(clean), case="every third edge")
        try:
            value = float(got)
        except (TypeError, ValueError, RuntimeError):
            raise error from None
        if not abs(value) < 1e3:  # the gap clean - corrupted is ~0: the "corrupted" run was the clean one
            raise CheckFailed(error.detail, exercise=error.exercise, case=error.case, mistake="baseline not corrupted",
                              hint="Your denominator is (nearly) 0, so the run with 'every edge corrupted' gave "
                                   "the clean metric: in that run every edge must read `corrupted_outs`, "
                                   "em.run(tokens, keep=torch.zeros_like(keep), source=corrupted_outs). Outputs of "
                                   "the clean tokens as the source (em.sender_outputs(tokens)) change "
                                   "nothing.") from None
        raise error from None
    _expect_float(check, "every third edge", got)


# -- 5. nodes from edges -----------------------------------------------------------------------------------

@exercise(difficulty=1, minutes=5, hints=[
    "Rows of the mask are senders, columns receivers.",
    "Start from a copy of `adjacency` (every edge kept) and switch off the rows of the given senders.",
    "`keep = adjacency.clone(); keep[senders] = False; return keep`.",
])
def test_corrupt_senders_mask(check):
    def variant(adjacency, senders, *, columns=False, inverted=False, dense=False):
        keep = torch.ones_like(adjacency) if dense else adjacency.clone()
        if columns:
            keep[:, senders] = False
        else:
            keep[senders] = False
        return (~keep & adjacency) if inverted else keep

    mistakes = [
        Mistake("receivers switched off", "Rows are senders: corrupt keep[senders], the edges *out of* the nodes.",
                partial(variant, columns=True)),
        Mistake("inverted", "Return the edges that stay *clean* (True), with the given senders' edges False.",
                partial(variant, inverted=True)),
        Mistake("non-edges kept", "Start from `adjacency`, not from all ones: a pair that is not an edge is never "
                "kept (the docstring: True exactly on the edges that stay clean).", partial(variant, dense=True)),
        Mistake("non-edges kept", "Start from `adjacency`, not from all ones, and switch off the *rows* of the "
                "senders (rows are senders): a pair that is not an edge is never kept.",
                partial(variant, dense=True, columns=True)),
        Mistake("only the last sender", "Switch off the rows of *every* sender in `senders`: start from one copy "
                "of adjacency and clear each row in it (or keep[senders] = False at once), rather than a fresh copy "
                "per sender.", lambda adjacency, senders: variant(adjacency, senders[-1:])),
        Mistake("only the first sender", "Switch off the rows of *every* sender in `senders` "
                "(keep[senders] = False), not just the first.", lambda adjacency, senders: variant(adjacency,
                                                                                                  senders[:1])),
    ]
    adjacency = Graph(2, 2, True).adjacency.to(check.device)
    got = check.run(adjacency.clone(), [1, 3], case="two heads")
    check.expect(not isinstance(got, torch.Tensor) or got.dtype == torch.bool, case="two heads",
                 mistake="not a bool mask",
                 message=f"expected a bool mask, got dtype {str(got.dtype).removeprefix('torch.')}"
                 if isinstance(got, torch.Tensor) else "",
                 hint="Return a bool mask (e.g. `mask.bool()` or a comparison): True = the edge stays clean. "
                      "EdgeModel.run and the notebook's `~mask`, `&` and indexing need bools.")
    check.case("two heads", adjacency, [1, 3], mistakes=mistakes)
    check.case("the embedding", adjacency, [0], mistakes=mistakes)
    try:
        check.case("no senders", adjacency, [], mistakes=mistakes)
    except CheckFailed as error:
        if type(error) not in (CheckFailed, LearnerError) or error.mistake is not None:
            raise
        raise type(error)(error.detail, exercise=error.exercise, case=error.case, mistake="empty senders",
                          hint="With no senders, nothing is corrupted: return `adjacency` unchanged (a copy). "
                               "torch.tensor([]) is a *float* tensor, which cannot index; index with the list "
                               "itself (keep[senders] = False) or build the index with "
                               "torch.tensor(senders, dtype=torch.long).") from None


# -- 6. causal scrubbing ---------------------------------------------------------------------------------------

@exercise(difficulty=2, minutes=15, hints=[
    "Draw torch.randint(1, d_vocab, (pos, batch, pos), generator=generator): one new batch of sequences per "
    "position p.",
    "Copy the BOS column: out[:, :, 0] = tokens[:, 0].",
    "For each p with 1 <= p + offset < pos, set out[p, :, p + offset] = tokens[:, p + offset]; nothing else "
    "agrees with `tokens`.",
])
def test_agreeing_resample(check):
    batch, n_pos, d_vocab = 64, 7, 50
    tokens = torch.randint(1, d_vocab, (batch, n_pos), generator=torch.Generator().manual_seed(3))
    tokens[:, 0] = 0
    for offset in (-1, 0, 2):
        case = f"offset {offset}"
        try:
            out = check.run(tokens.clone(), offset, d_vocab, torch.Generator().manual_seed(0), case=case)
        except LearnerError as error:
            if offset <= 0 or "IndexError" not in error.detail:
                raise
            raise LearnerError(error.detail, exercise=error.exercise, case=error.case, mistake="index past the end",
                               hint=f"With offset {offset}, p + offset runs past the last position for the last "
                                    f"{offset} values of p: there is nothing to copy there. Copy only when "
                                    f"1 <= p + offset < pos (the docstring: where that is a position after BOS)."
                               ) from None
        check.expect(isinstance(out, torch.Tensor) and tuple(out.shape) == (n_pos, batch, n_pos), case=case,
                     message=f"expected a tensor of shape {(n_pos, batch, n_pos)} [pos, batch, pos], got "
                             f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}",
                     hint="One batch of new sequences per position p: out[p] is [batch, pos].", mistake="shape")
        out = out.cpu()
        check.expect(bool((out[:, :, 0] == tokens[:, 0]).all()), case=case, mistake="BOS replaced",
                     message="position 0 of the new sequences is not the BOS token",
                     hint="Keep position 0 (BOS) as it is in `tokens`: out[:, :, 0] = tokens[:, 0].")
        agree = torch.stack([(out[p, :, p + offset] == tokens[:, p + offset]).float().mean()
                             for p in range(n_pos) if 1 <= p + offset < n_pos])
        check.expect(bool((agree == 1).all()), case=case, mistake="wrong position kept",
                     message=f"out[p] does not agree with tokens at position p + offset = p{offset:+d} for every p",
                     hint="Run p keeps the token at p + offset (offset -1: the previous token), and only that.")
        others = torch.ones(n_pos, n_pos, dtype=torch.bool)
        others[:, 0] = False
        for p in range(n_pos):
            if 1 <= p + offset < n_pos:
                others[p, p + offset] = False
        same = (out == tokens[None])[others[:, None, :].expand(-1, batch, -1)].float().mean().item()
        check.expect(same < 0.2, case=case, mistake="other tokens kept",
                     message=f"{same:.0%} of the other tokens equal the original ones",
                     hint="Every other position is a fresh random token: the hypothesis says it does not matter, so "
                          "it must be resampled.")
        # per (p, position): random tokens agree with `tokens` ~2% of the time, a copied position always
        rate = (out == tokens[None]).float().mean(1)  # [p, position]
        bad = (others & (rate > 0.5)).nonzero().tolist()
        wrapped = [(p, j) for p, j in bad if not 1 <= p + offset < n_pos and j == (p + offset) % n_pos]
        p, j = (wrapped or bad or [(0, 0)])[0]
        check.expect(not bad, case=case, mistake="index wrapped" if wrapped else "other tokens kept",
                     message=f"out[{p}] copies `tokens` at position {j}, where it should be random",
                     hint=f"For p = {p}, p + offset = {p + offset} is not a position after BOS, so nothing is copied: "
                          f"a negative index wraps round to the end in Python. Copy only when 1 <= p + offset < pos."
                     if wrapped else "Copy `tokens` only at position p + offset in out[p]; every other position "
                                     "(except BOS) is a fresh random token.")
        check.expect(bool(((out[:, :, 1:] >= 1) & (out[:, :, 1:] < d_vocab)).all()), case=case, mistake="vocabulary",
                     message="some new tokens are outside 1 ... d_vocab - 1",
                     hint="Draw with torch.randint(1, d_vocab, ...): token 0 is BOS.")
        drawn = out[others[:, None, :].expand(-1, batch, -1)]  # the resampled tokens, ~2,700 of them
        check.expect(bool((drawn == d_vocab - 1).any()), case=case, mistake="last token never drawn",
                     message=f"the last token of the vocabulary, {d_vocab - 1}, never appears among {drawn.numel()} "
                             f"random tokens (each should be it about once in {d_vocab - 1} draws)",
                     hint="torch.randint's upper bound is exclusive: torch.randint(1, d_vocab, ...) draws 1 ... "
                          "d_vocab - 1, while randint(1, d_vocab - 1, ...) never draws the last token.")
    # the generator: one seed, one result; another seed, another
    first, again, other = (check.run(tokens.clone(), -1, d_vocab, torch.Generator().manual_seed(seed),
                                     case="the generator") for seed in (5, 5, 6))
    check.expect(torch.equal(first.cpu(), again.cpu()) and not torch.equal(first.cpu(), other.cpu()),
                 case="the generator", mistake="generator not used",
                 message="two calls with generators seeded alike gave different sequences"
                 if not torch.equal(first.cpu(), again.cpu()) else "generators seeded differently gave the same "
                                                                  "sequences",
                 hint="Draw every random token from the given generator, `torch.randint(1, d_vocab, shape, "
                      "generator=generator)` (and not torch.manual_seed): the notebook seeds it so that its "
                      "causal-scrubbing numbers are reproducible.")


@exercise(difficulty=1, minutes=10, hints=[
    "outputs[p] is a whole run's activation [batch, pos, d_model]; from run p you need only position p.",
    "That is the diagonal of outputs over its first and third axes.",
    "`torch.stack([outputs[p, :, p] for p in range(outputs.shape[0])], dim=1)`, or outputs.diagonal(dim1=0, "
    "dim2=2) moved to [batch, pos, d_model].",
])
def test_assemble_by_position(check):
    def shifted(outputs):
        n = outputs.shape[0]
        return torch.stack([outputs[p, :, max(p - 1, 0)] for p in range(n)], dim=1)

    mistakes = [
        Mistake("one run for everything", "Each position comes from its own run: position p from outputs[p].",
                lambda o: o[0].clone()),
        Mistake("averaged over runs", "Take position p from run p only, don't average the runs.",
                lambda o: o.mean(0)),
        Mistake("wrong axes", "outputs is [source_pos, batch, pos, d_model]: the diagonal is over axes 0 and 2, "
                "not 0 and 1.", lambda o: einops.rearrange(o.diagonal(dim1=0, dim2=1)[:, :, :],
                                                           "pos d b -> b pos d") if o.shape[1] == o.shape[2] else None),
        Mistake("shifted", "Run p supplies position p itself.", shifted),
        Mistake("reshape instead of permute", "outputs.diagonal(dim1=0, dim2=2) is [batch, d_model, pos]; reshape "
                "(or view) keeps the values in memory order and only relabels them, so it scrambles positions and "
                "d_model. Move the axes instead: .permute(0, 2, 1), .transpose(1, 2) or einops.rearrange(..., "
                "'batch d pos -> batch pos d').",
                lambda o: o.diagonal(dim1=0, dim2=2).reshape(o.shape[1], o.shape[0], o.shape[3])),
        Mistake("reshape instead of permute", "Stacking the runs' slices outputs[p, :, p] along axis 0 gives [pos, "
                "batch, d_model]; reshape only relabels the values and scrambles them. Stack along axis 1 "
                "(torch.stack(..., dim=1)) or swap the axes with .transpose(0, 1).",
                lambda o: torch.stack([o[p, :, p] for p in range(o.shape[0])]).reshape(o.shape[1], o.shape[0],
                                                                                       o.shape[3])),
        Mistake("[pos, batch, d_model]", "Return [batch, pos, d_model]: stacking outputs[p, :, p] along axis 0 puts "
                "the positions first; stack along dim=1 (or .transpose(0, 1)).",
                lambda o: torch.stack([o[p, :, p] for p in range(o.shape[0])])),
        Mistake("[batch, d_model, pos]", "outputs.diagonal(dim1=0, dim2=2) puts the diagonal axis (pos) *last*: "
                "move it to [batch, pos, d_model] (.permute(0, 2, 1), or .transpose(1, 2)).",
                lambda o: o.diagonal(dim1=0, dim2=2)),
    ]
    check.case("5 positions", check.randn(5, 3, 5, 4), mistakes=mistakes, check_dtype=False)
    check.case("square batch", check.randn(4, 4, 4, 2), mistakes=mistakes, check_dtype=False)
