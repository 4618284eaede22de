"""utils.circuits: the edge graph, and an edge-level forward pass that really is the shipped model's."""

import pytest
import torch
import transformer_lens.patching as tl_patching

from utils.circuits import EdgeModel, Graph, gpt2_bridge, node_of, tl_name
from utils.data import ioi
from utils.data.induction import repeated_random_tokens
from utils.models import load_model


@pytest.fixture(scope="module")
def ioi_run():
    model = load_model("ioi_3l")
    batch = ioi.ioi_batch(8, "test", "abc", generator=torch.Generator().manual_seed(0), layout=0)
    return model, EdgeModel(model), batch


def test_graph_sizes_and_order():
    assert len(Graph(2, 4, False).edges) == 81  # attn_only_2l
    graph = Graph(3, 4, True)
    assert len(graph.edges) == 262 and len(graph.senders) == 16 and len(graph.receivers) == 40
    assert graph.edges[0] == ("embed", "a0.0.q") and graph.edges[-1] == ("m2", "logits")
    assert ("a0.1", "a0.2.k") not in graph.edges and ("a1.3", "m1") in graph.edges
    assert int(graph.adjacency.sum()) == len(graph.edges)
    assert graph.edges_of(graph.mask(graph.edges[5:9])) == graph.edges[5:9]
    assert [node_of(n) for n in ("a1.2.k", "a1.2", "m0", "logits")] == ["a1.2", "a1.2", "m0", "logits"]


@pytest.mark.parametrize("name", ["attn_only_2l", "ioi_3l"])
def test_edge_model_reproduces_the_bridge(name):
    model = load_model(name)
    tokens = torch.randint(1, model.cfg.d_vocab, (3, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(EdgeModel(model).run(tokens), model(tokens), atol=1e-4)


def test_keeping_every_edge_or_none_gives_the_two_runs(ioi_run):
    _, em, batch = ioi_run
    adjacency = em.graph.adjacency
    with torch.no_grad():
        corrupted_outs = em.sender_outputs(batch.corrupted)
        assert torch.allclose(em.run(batch.clean, keep=adjacency, source=corrupted_outs), em.run(batch.clean), atol=1e-5)
        assert torch.allclose(em.run(batch.clean, keep=torch.zeros_like(adjacency), source=corrupted_outs),
                              em.run(batch.corrupted), atol=1e-4)


def test_patching_every_edge_out_of_a_head_is_activation_patching_its_output(ioi_run):
    model, em, batch = ioi_run
    answers = batch.answers

    def metric(logits):
        last = logits[:, -1]
        return (last.gather(-1, answers[:, :1]) - last.gather(-1, answers[:, 1:])).mean()

    with torch.no_grad():
        _, clean_cache = model.run_with_cache(batch.clean)
        expected = tl_patching.get_act_patch_attn_head_out_all_pos(model, batch.corrupted, clean_cache, metric)
        clean_outs = em.sender_outputs(batch.clean)
        for layer, head in [(0, 0), (1, 2), (2, 3)]:
            keep = em.graph.adjacency.clone()
            keep[em.graph.senders.index(f"a{layer}.{head}")] = False
            got = metric(em.run(batch.corrupted, keep=keep, source=clean_outs))
            assert abs(got.item() - expected[layer, head].item()) < 1e-4


def test_receiver_delta_gradients_and_pass_counts(ioi_run):
    _, em, batch = ioi_run
    before_f, before_b = em.n_forward, em.n_backward
    delta = em.zero_delta(batch.clean)
    with torch.enable_grad():
        em.run(batch.clean, receiver_delta=delta)[:, -1].logsumexp(-1).mean().backward()
    assert delta.grad is not None and delta.grad.abs().sum() > 0
    assert (em.n_forward - before_f, em.n_backward - before_b) == (1, 1)


def test_patches_split_over_two_masks_equal_one_keep_mask(ioi_run):
    _, em, batch = ioi_run
    g = em.graph
    with torch.no_grad():
        source = em.sender_outputs(batch.corrupted)
        keep = g.mask(g.edges[::2])
        patched = g.adjacency & ~keep
        first, second = patched & g.mask(g.edges[:100]), patched & ~g.mask(g.edges[:100])
        split = em.run(batch.clean, patches=[(first, source), (second, source)])
        assert torch.allclose(split, em.run(batch.clean, keep=keep, source=source), atol=1e-5)


def test_the_hand_found_ioi_circuit_is_the_one_chapter_7_compares_with():
    """7.1 compares its methods with 4.1's circuit: the fewest heads, by denoising effect, that keep 85%."""
    from solutions.ch4_patching import patching as p4

    model = load_model("ioi_3l")
    batch = ioi.ioi_batch(64, "test", "abc", generator=torch.Generator().manual_seed(0), layout=0)
    reference = ioi.ioi_batch(128, "test", "abc", generator=torch.Generator().manual_seed(5), layout=0)
    with torch.no_grad():
        clean_logits, clean_cache = model.run_with_cache(batch.clean)
        corrupted_logits = model(batch.corrupted)
        _, reference_cache = model.run_with_cache(reference.clean)
    clean_ld = p4.logit_diff(clean_logits, batch.answers).mean().item()
    corrupted_ld = p4.logit_diff(corrupted_logits, batch.answers).mean().item()

    def metric(logits):
        return p4.normalised_metric(p4.logit_diff(logits, batch.answers).mean(), clean_ld, corrupted_ld)

    effect = p4.patch_heads(model, batch.corrupted, clean_cache, metric, "z")
    ranked = sorted(((l, h) for l in range(3) for h in range(4)), key=lambda x: -abs(effect[x]))
    for k in range(1, 13):
        if p4.circuit_logit_diff(model, batch.clean, batch.answers, ranked[:k], reference_cache).item() / clean_ld >= 0.85:
            break
    assert sorted(ranked[:k]) == [(0, 0), (0, 2), (1, 0), (1, 1), (1, 2), (1, 3)]


def test_progress_advances_once_per_forward_pass(ioi_run):
    _, em, batch = ioi_run
    with torch.no_grad(), em.progress(5, "test") as bar:
        em.run(batch.clean)
        em.sender_outputs(batch.corrupted)
        assert bar.n == 2
    assert em._bar is None
    em.run(batch.clean[:1])  # outside the block nothing is counted, and nothing breaks


def test_float64_edge_model_has_float64_gradients(ioi_run):
    model, _, batch = ioi_run
    em64 = EdgeModel(model).to(torch.float64)
    delta = em64.zero_delta(batch.clean[:2])
    with torch.enable_grad():
        logits = em64.run(batch.clean[:2], receiver_delta=delta)
        logits[:, -1].logsumexp(-1).sum().backward()
    assert logits.dtype == delta.grad.dtype == torch.float64
    with torch.no_grad():
        assert torch.allclose(logits.float(), model(batch.clean[:2]), atol=1e-4)


def test_gpt2_bridge_is_the_same_model_and_runs_transformer_lens_edge_attribution(ioi_run):
    """The rebuilt model's logits are the course model's, and transformer_lens's edge-level EAP on it, summed
    over positions, equals (clean - corrupted) . gradient on the corrupted run computed with EdgeModel."""
    from transformer_lens.tools.analysis.attribution_patching import EdgeAttributionConfig, attribution_patch

    model, em, batch = ioi_run
    bridge = gpt2_bridge(model)
    assert type(bridge.blocks[0].attn).__name__ == "JointQKVAttentionBridge"
    with torch.no_grad():
        assert (bridge(batch.clean) - model(batch.clean)).abs().max() < 2e-5
    clean, corrupted, a = batch.clean[:1], batch.corrupted[:1], batch.answers[:1]

    def metric(logits):
        return logits[:, -1, a[0, 0]] - logits[:, -1, a[0, 1]]

    with torch.enable_grad():
        result = attribution_patch(bridge, clean, corrupted, lambda logits: metric(logits).sum(),
                                   EdgeAttributionConfig(granularity="edge"))
        delta = em.zero_delta(corrupted)
        metric(em.run(corrupted, receiver_delta=delta)).sum().backward()
    g = em.graph
    theirs = torch.zeros(len(g.senders), len(g.receivers))
    for (writer, reader), value in result.edge_scores.items():
        theirs[g.senders.index(tl_name(writer)), g.receivers.index(tl_name(reader))] += value
    change = em.sender_outputs(clean) - em.sender_outputs(corrupted)
    ours = torch.einsum("sbpd,rbpd->sr", change, delta.grad) * g.adjacency
    assert ours.abs().max() > 0.1 and (theirs - ours).abs().max() < 1e-4
    assert {tl_name(w) for w, _ in result.edge_scores} == set(g.senders)
    assert {tl_name(r) for _, r in result.edge_scores} == set(g.receivers)


def test_gpt2_bridge_refuses_a_model_gpt2_cannot_hold():
    with pytest.raises(ValueError, match="not GPT-2-shaped"):
        gpt2_bridge(load_model("attn_only_2l"))
