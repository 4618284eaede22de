"""utils.attribution on a tiny random model with random transcoders: the local replacement model is exact,
every node's input is the sum of its edges, the edges are what removing a source does, pruning and the
scores behave at their fixed points, and the graph's predictions match the linearised model."""

import pytest
import torch

from utils import attribution as at
from utils.models import build_model
from utils.transcoders import as_cross_layer, init_transcoders
from utils.transcoders import encode as tc_encode

N_LAYERS, D_MODEL, D_LATENT, K = 2, 16, 24, 4


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model(dict(d_model=D_MODEL, d_head=4, n_heads=4, n_layers=N_LAYERS, d_mlp=32, n_ctx=8, d_vocab=20,
                         act_fn="gelu_new", normalization_type="LN", seed=0))
    return m.eval()


@pytest.fixture(scope="module", params=["per_layer", "cross_layer"])
def params(request):
    g = torch.Generator().manual_seed(1)
    p = init_transcoders(N_LAYERS, D_MODEL, D_LATENT, g)
    p["b_enc"] = p["b_enc"] + 0.5  # a few more latents clear the ReLU
    if request.param == "cross_layer":
        p = as_cross_layer(p)
        p["W_dec"][0, 1] = 0.3 * torch.randn(D_MODEL, D_LATENT, generator=g)
    return p


@pytest.fixture(scope="module")
def rm(model, params):
    tokens = torch.tensor([0, 5, 3, 9, 3, 5, 11])
    return at.ReplacementModel.from_prompt(model, params, K, tokens)


@pytest.fixture(scope="module")
def graph(rm):
    return at.build_graph(rm, [str(t) for t in rm.tokens.tolist()], max_logits=3, coverage=0.99)


def test_replacement_model_reproduces_the_real_logits_and_pre_activations(rm):
    logits, pre = rm.forward(*rm.real_inputs())
    assert torch.allclose(logits, rm.logits, atol=1e-5), (logits - rm.logits).abs().max()
    assert torch.allclose(pre, rm.feature_acts, atol=1e-5), "an active TopK latent's activation is its pre-activation"


def test_every_node_input_is_the_sum_of_its_edges_plus_biases(graph):
    targets = graph.mask("feature") | graph.mask("logit")
    assert graph.mask("feature").sum() > 0
    total = graph.adjacency.sum(dim=1) + graph.bias
    assert torch.allclose(total[targets], graph.inputs[targets], atol=1e-5)
    sources = graph.mask("embed") | graph.mask("error")
    assert (graph.adjacency[sources] == 0).all(), "embeddings and error nodes have no inputs"


def test_an_edge_is_what_zeroing_its_source_removes(rm, graph):
    feature = graph.mask("feature").nonzero()[0, 0]
    values = rm.feature_acts.clone()
    values[feature - rm.n_pos] = 0
    logits, pre = rm.forward(rm.real_inputs()[0], values, rm.real_inputs()[2])
    last = logits[-1] - logits[-1].mean()
    logit_rows = graph.mask("logit").nonzero()[:, 0]
    change = graph.inputs[logit_rows] - last[graph.indices[logit_rows]]
    assert torch.allclose(change, graph.adjacency[logit_rows, feature], atol=1e-5)


def test_edges_only_run_forward_in_layers_and_positions(graph):
    t, s = graph.adjacency.nonzero(as_tuple=True)
    assert (graph.layers[s] < graph.layers[t]).all()
    assert (graph.positions[s] <= graph.positions[t]).all()


def test_indirect_influence_sums_paths():
    A = torch.tensor([[0, 0, 0], [0.5, 0, 0], [0.25, 0.5, 0]], dtype=torch.float64)
    B = at.indirect_influence(A)
    assert torch.allclose(B, A + A @ A)
    assert torch.allclose(at.normalised_adjacency(torch.tensor([[0.0, 0.0], [-3.0, 1.0]])),
                          torch.tensor([[0.0, 0.0], [0.75, 0.25]]))


def test_cumulative_mask_keeps_the_smallest_set_reaching_the_threshold():
    scores = torch.tensor([0.1, 0.5, 0.3, 0.1])
    assert at.cumulative_mask(scores, 0.8).tolist() == [False, True, True, False]
    assert at.cumulative_mask(scores, 0.81).sum() == 3
    assert at.cumulative_mask(scores, 1.0).all()


def test_pruning_at_full_thresholds_keeps_every_influential_node(graph):
    full = at.prune(graph, node_threshold=1.0, edge_threshold=1.0)
    influential = full.influence > 0
    assert full.node_mask[graph.mask("embed") | graph.mask("logit")].all()
    assert (full.node_mask >= influential & (graph.mask("error") | graph.mask("feature"))).all() or \
        full.node_mask[influential].float().mean() > 0.9
    small = at.prune(graph, node_threshold=0.5, edge_threshold=0.9)
    assert small.node_mask.sum() <= full.node_mask.sum()
    assert (small.edge_mask <= (small.node_mask[:, None] & small.node_mask[None, :])).all()


def test_scores_are_one_without_error_and_fall_with_it(graph):
    scores = at.graph_scores(graph)
    assert 0 <= scores["replacement"] <= 1 and 0 <= scores["completeness"] <= 1
    clean = at.AttributionGraph(**{**vars(graph), "adjacency": graph.adjacency * ~graph.mask("error")[None, :]})
    assert at.graph_scores(clean) == pytest.approx({"replacement": 1.0, "completeness": 1.0})


def test_predicted_effect_matches_the_linearised_replacement_model(rm, graph):
    """Ablate a layer-0 feature; let every other active feature follow its pre-activation (the active set fixed)."""
    feature = (graph.mask("feature") & (graph.layers == 0)).nonzero()[0, 0]
    values = rm.feature_acts.clone()
    for _ in range(N_LAYERS):
        values[feature - rm.n_pos] = 0
        _, values = rm.forward(rm.real_inputs()[0], values, rm.real_inputs()[2])
    values[feature - rm.n_pos] = 0
    logits, _ = rm.forward(rm.real_inputs()[0], values, rm.real_inputs()[2])
    last = logits[-1] - logits[-1].mean()
    logit_rows = graph.mask("logit").nonzero()[:, 0]
    actual = last[graph.indices[logit_rows]] - graph.inputs[logit_rows]
    predicted = at.predicted_effect(graph, feature[None], -graph.activations[feature][None])
    assert torch.allclose(predicted, actual, atol=1e-4)


def test_edit_hooks_ablating_every_feature_of_a_layer_leaves_bias_and_error(model, params, rm):
    """Removing all of layer 0's active features from the real model's MLP output leaves exactly b_dec
    plus the error there (per-layer transcoders: nothing else writes to layer 0)."""
    params = as_cross_layer(params)
    edits = [(p, 0, j, -float(rm.acts[p, 0, j])) for p, j in (rm.acts[:, 0] > 0).nonzero().tolist()]
    _, cache = model.run_with_cache(rm.tokens[None], names_filter="blocks.0.hook_mlp_out")
    with model.hooks(fwd_hooks=at.edit_hooks(params, edits)):
        _, edited = model.run_with_cache(rm.tokens[None], names_filter="blocks.0.hook_mlp_out")
    expected = params["b_dec"][0] + rm.errors[:, 0]
    assert torch.allclose(edited["blocks.0.hook_mlp_out"][0], expected, atol=1e-5)
    assert not torch.allclose(cache["blocks.0.hook_mlp_out"][0], expected, atol=1e-3)


def test_majority_label_names_agreeing_top_examples_only():
    values = torch.tensor([[3.0, 2.0, 1.0, 0.5], [3.0, 2.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    truth = torch.tensor([[4, 4, 4, 2], [1, 1, 1, 7], [3, 3, 3, 3]])
    assert at.majority_label(values, truth, min_share=0.75).tolist() == [4, 1, -1]
    assert at.majority_label(values, truth, min_share=0.9).tolist() == [-1, 1, -1]
    assert at.majority_label(values, torch.full_like(truth, -1)).tolist() == [-1, -1, -1]


def test_top_examples_are_the_largest_activations(model, params):
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(20, (9, 6), generator=g)
    mask = torch.ones(9, 6, dtype=torch.bool)
    mask[:, 0] = False
    values, where = at.top_examples(model, params, K, tokens, mask, n_top=5, batch_size=4)
    from utils.transcoders import collect_mlp_activations
    x_in, _ = collect_mlp_activations(model, tokens, mask, range(N_LAYERS))
    acts = tc_encode(x_in, as_cross_layer(params), K)                      # [n, layer, lat]
    expected = acts.permute(1, 2, 0).topk(5, dim=-1).values
    assert torch.allclose(values, expected.detach(), atol=1e-5)
    flat = mask.nonzero()
    layer, latent = 1, int(acts[:, 1].sum(0).argmax())
    prompt, pos = where[layer, latent, 0].tolist()
    row = ((flat[:, 0] == prompt) & (flat[:, 1] == pos)).nonzero()[0, 0]
    assert torch.isclose(acts[row, layer, latent], values[layer, latent, 0])
