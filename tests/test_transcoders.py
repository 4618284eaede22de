"""utils.transcoders on small tensors: TopK sparsity, the metrics' fixed points, training that recovers a
planted sparse map, and MLP replacement hooks."""

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
