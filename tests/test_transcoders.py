"""utils.transcoders on small tensors: TopK sparsity, the metrics' fixed points, training that recovers a
planted sparse map (per layer, and across layers for the cross-layer transcoder, whose decoder stays causal
and unit-norm), splicing each kind of transcoder (and an SAE) into a model, and the replacement metrics."""

import torch

from utils import transcoders as tc
from utils.models import build_model


def _params(n_layers=2, d=8, lat=16, seed=0):
    return tc.init_transcoders(n_layers, d, lat, torch.Generator().manual_seed(seed))


def test_topk_keeps_at_most_k_non_negative_latents():
    params = _params()
    acts = tc.encode(torch.randn(50, 2, 8), params, k=3)
    assert acts.shape == (50, 2, 16)
    assert ((acts > 0).sum(-1) <= 3).all() and (acts >= 0).all()
    assert tc.decode(acts, params).shape == (50, 2, 8)


def test_metrics_fixed_points():
    out = torch.randn(100, 2, 8)
    assert torch.allclose(tc.normalised_mse(out, out), torch.zeros(2))
    assert torch.allclose(tc.normalised_mse(out.mean(0, keepdim=True).expand_as(out), out), torch.ones(2))
    acts = torch.zeros(4, 2, 5)
    acts[0, 0, 1] = acts[1, 0, 1] = acts[2, 0, 3] = 1.0
    assert torch.allclose(tc.l0(acts), torch.tensor([0.75, 0.0]))
    assert torch.allclose(tc.dead_fraction(acts), torch.tensor([0.6, 1.0]))


def test_training_recovers_a_planted_sparse_map():
    """Inputs and outputs are two different linear images of the same 2-sparse codes, one map per layer."""
    g = torch.Generator().manual_seed(0)
    n, n_layers, n_feat, d = 4096, 2, 12, 10
    codes = torch.zeros(n, n_layers, n_feat)
    idx = torch.stack([torch.randperm(n_feat, generator=g)[:2] for _ in range(n * n_layers)]).view(n, n_layers, 2)
    codes.scatter_(-1, idx, torch.rand(n, n_layers, 2, generator=g) + 0.5)
    x_in = torch.einsum("nlf,lfd->nld", codes, torch.randn(n_layers, n_feat, d, generator=g))
    x_out = torch.einsum("nlf,lfd->nld", codes, torch.randn(n_layers, n_feat, d, generator=g))
    params = tc.init_transcoders(n_layers, d, 24, g, mean_out=x_out.mean(0))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: a second thread only waits
    try:
        tc.train_transcoders(params, x_in, x_out, k=2, steps=300, batch_size=256, lr=1e-2, generator=g)
    finally:
        torch.set_num_threads(threads)
    metrics = tc.evaluate(params, x_in, x_out, k=2)
    assert (metrics["normalised_mse"] < 0.1).all(), metrics
    assert (metrics["l0"] <= 2).all()
    norms = params["W_dec"].norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def _tiny_model():
    torch.manual_seed(0)
    return build_model(dict(d_model=16, d_head=4, n_heads=4, n_layers=2, d_mlp=32, n_ctx=8, d_vocab=20,
                            act_fn="gelu_new", normalization_type="LN", seed=0))


def test_collected_activations_are_the_mlps():
    model = _tiny_model()
    tokens = torch.randint(20, (3, 8), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(3, 8, dtype=torch.bool)
    mask[0, 5:] = False
    x_in, x_out = tc.collect_mlp_activations(model, tokens, mask, layers=[0, 1])
    assert x_in.shape == x_out.shape == (mask.sum(), 2, 16)
    _, cache = model.run_with_cache(tokens)
    assert torch.allclose(x_out[:, 1], cache["blocks.1.hook_mlp_out"][mask])
    assert torch.allclose(x_in[:, 0], cache["blocks.0.ln2.hook_out"][mask])


def test_replacement_with_silent_transcoders_is_mlp_zero_ablation():
    """A transcoder whose latents never fire and whose bias is 0 outputs zero: splicing it in equals
    zeroing the MLP's output."""
    model = _tiny_model()
    tokens = torch.randint(20, (3, 8), generator=torch.Generator().manual_seed(1))
    params = {"W_enc": torch.zeros(2, 16, 5), "b_enc": torch.full((2, 5), -1.0), "W_dec": torch.randn(2, 16, 5),
              "b_dec": torch.zeros(2, 16)}
    spliced = tc.spliced_logits(model, tokens, params, layers=[0, 1], k=2)
    zeroed = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{l}.hook_mlp_out", lambda x, hook: torch.zeros_like(x))
                                                      for l in (0, 1)])
    assert torch.allclose(spliced, zeroed, atol=1e-5)
    assert not torch.allclose(spliced, model(tokens), atol=1e-3)
    assert torch.allclose(tc.kl_divergence(zeroed, spliced), torch.zeros(3, 8), atol=1e-5)


# -- cross-layer transcoders -------------------------------------------------------------------------

def _cross_layer(n_layers=3, d=8, lat=6, seed=0):
    params = tc.init_cross_layer(n_layers, d, lat, torch.Generator().manual_seed(seed))
    params = {name: value.detach() for name, value in params.items()}
    params["b_dec"] = torch.randn(n_layers, d, generator=torch.Generator().manual_seed(seed + 1))
    return params


def test_cross_layer_latent_never_writes_to_an_earlier_layer():
    """Even with W_dec filled below the mask, a latent read at layer s changes only layers s and after."""
    params = _cross_layer()
    params["W_dec"] = torch.randn_like(params["W_dec"])
    for src in range(3):
        acts = torch.zeros(1, 3, 6)
        acts[0, src, 2] = 5.0
        moved = (tc.decode_cross_layer(acts, params) - params["b_dec"])[0].norm(dim=-1)
        assert (moved[:src] == 0).all() and (moved[src:] > 0).all(), (src, moved)


def test_cross_layer_init_is_causal_with_unit_decoders():
    params = _cross_layer()
    assert (params["W_dec"][~tc.causal_mask(3)] == 0).all()
    assert torch.allclose(params["W_dec"].norm(dim=(1, 2)), torch.ones(3, 6), atol=1e-6)


def test_per_layer_params_decode_identically_in_the_cross_layer_layout():
    params = _params(n_layers=3)
    acts = tc.encode(torch.randn(20, 3, 8), params, k=4)
    clt = tc.as_cross_layer(params)
    assert clt["W_dec"].shape == (3, 3, 8, 16)
    assert torch.allclose(tc.decode_cross_layer(acts, clt), tc.decode(acts, params), atol=1e-6)
    assert torch.allclose(clt["W_dec"].norm(dim=(1, 2)), params["W_dec"].norm(dim=1))


def _planted_cross_layer(n=4096, n_layers=3, n_feat=6, d=10, seed=0):
    """Each layer's input carries that layer's 1-sparse code; each layer's output is written by the codes of
    that layer and of every earlier one, so no input alone predicts a later output."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.zeros(n, n_layers, n_feat)
    which, size = torch.randint(n_feat, (n, n_layers, 1), generator=g), torch.rand(n, n_layers, 1, generator=g) + 0.5
    codes.scatter_(-1, which, size)
    x_in = torch.einsum("nlf,lfd->nld", codes, torch.randn(n_layers, n_feat, d, generator=g))
    writes = torch.randn(n_layers, n_layers, n_feat, d, generator=g) * tc.causal_mask(n_layers)[:, :, None, None]
    x_out = torch.einsum("nsf,stfd->ntd", codes, writes)
    return x_in, x_out, g


def test_cross_layer_training_fits_what_per_layer_cannot_and_stays_causal_and_unit_norm():
    x_in, x_out, g = _planted_cross_layer()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        clt = tc.init_cross_layer(3, 10, 12, g, mean_out=x_out.mean(0))
        tc.train_cross_layer(clt, x_in, x_out, k=1, steps=300, batch_size=256, lr=1e-2, generator=g)
        per_layer = tc.init_transcoders(3, 10, 12, g, mean_out=x_out.mean(0))
        tc.train_transcoders(per_layer, x_in, x_out, k=1, steps=300, batch_size=256, lr=1e-2, generator=g)
    finally:
        torch.set_num_threads(threads)
    assert not any(value.requires_grad for value in clt.values())
    assert (clt["W_dec"][~tc.causal_mask(3)] == 0).all()
    assert torch.allclose(clt["W_dec"].norm(dim=(1, 2)), torch.ones(3, 12), atol=1e-5)
    fit_clt = tc.evaluate(clt, x_in, x_out, k=1)["normalised_mse"]
    fit_per_layer = tc.evaluate(per_layer, x_in, x_out, k=1)["normalised_mse"]
    assert (fit_clt < 0.1).all(), fit_clt
    assert fit_per_layer[0] < 0.2 and (fit_per_layer[1:] > 0.3).all(), fit_per_layer


# -- splicing and its metrics ----------------------------------------------------------------------------

def test_splicing_the_last_layer_writes_each_kind_of_transcoders_prediction():
    """Per-layer, cross-layer and SAE: with only the last MLP replaced, every MLP input is the real one, so the
    spliced logits are the model's with the prediction from the real activations written into that MLP."""
    model = _tiny_model()
    tokens = torch.randint(20, (3, 8), generator=torch.Generator().manual_seed(1))
    names = [*tc.mlp_hooks(0), *tc.mlp_hooks(1)]
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    real_in, real_out = (torch.stack([cache[tc.mlp_hooks(layer)[i]].reshape(-1, 16) for layer in (0, 1)], dim=1)
                         for i in (0, 1))
    last = lambda params: {name: value[1:] for name, value in params.items()}
    per_layer, sae = last(_params(d=16, lat=10, seed=1)), last(_params(d=16, lat=10, seed=3))
    clt = _cross_layer(2, 16, 10, seed=2)
    cases = {
        "per-layer": (per_layer, "mlp_in", tc.decode(tc.encode(real_in[:, 1:], per_layer, 3), per_layer)),
        "cross-layer": (clt, "mlp_in", tc.decode_cross_layer(tc.encode(real_in, clt, 3), clt)[:, 1:]),
        "sae": (sae, "mlp_out", tc.decode(tc.encode(real_out[:, 1:], sae, 3), sae)),
    }
    for kind, (params, reads, predicted) in cases.items():
        spliced = tc.spliced_logits(model, tokens, params, layers=[1], k=3, reads=reads)
        written = predicted.reshape(3, 8, 16)
        by_hand = model.run_with_hooks(tokens, fwd_hooks=[(tc.mlp_hooks(1)[1], lambda x, hook: written)])
        assert torch.allclose(spliced, by_hand, atol=1e-5), kind


def test_per_layer_and_diagonal_cross_layer_splice_identically():
    model = _tiny_model()
    tokens = torch.randint(20, (3, 8), generator=torch.Generator().manual_seed(1))
    params = _params(d=16, lat=10)
    assert torch.allclose(tc.spliced_logits(model, tokens, params, [0, 1], k=3),
                          tc.spliced_logits(model, tokens, tc.as_cross_layer(params), [0, 1], k=3), atol=1e-5)


def _identity_sae(d):
    """x = ReLU(x) - ReLU(-x): with every latent active (k = 2d) this SAE reconstructs exactly."""
    eye = torch.eye(d)
    W = torch.cat([eye, -eye], dim=1)[None]
    return {"W_enc": W, "b_enc": torch.zeros(1, 2 * d), "W_dec": W.clone(), "b_dec": torch.zeros(1, d)}


def test_replacement_metrics_of_an_exact_replacement():
    """Splicing in an exact reconstruction costs nothing: equal losses and accuracies, zero KL; the loss is
    the cross-entropy of the kept predictions."""
    model = _tiny_model()
    tokens = torch.randint(20, (4, 8), generator=torch.Generator().manual_seed(2))
    targets, mask = tc.next_token_targets(tokens)
    params = {name: torch.cat([value, value]) for name, value in _identity_sae(16).items()}
    metrics = tc.replacement_metrics(model, tokens, targets, mask, params, k=32, reads="mlp_out", batch_size=3)
    assert abs(metrics["kl"]) < 1e-5
    assert abs(metrics["loss"] - metrics["replacement_loss"]) < 1e-5
    assert metrics["accuracy"] == metrics["replacement_accuracy"]
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(model(tokens)[:, :-1].reshape(-1, 20), tokens[:, 1:].reshape(-1))
    assert abs(metrics["loss"] - expected.item()) < 1e-5


def test_answer_targets_keep_only_the_last_word():
    from utils.data import facts

    batch = facts.facts("person_country", "heldout")[torch.arange(5)]
    targets, mask = tc.answer_targets(batch)
    assert (mask.sum(-1) == 1).all() and (mask.float().argmax(-1) == batch.end).all()
    assert (targets[mask] == batch.answer).all()
