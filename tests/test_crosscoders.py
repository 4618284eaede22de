"""utils.crosscoders: BatchTopK and its threshold, recovery of a planted fine-tune-only feature, latent
scaling's closed form and the relative-norm buckets. CPU only, a few seconds."""

import pytest
import torch

from utils import crosscoders as cc

D, N_SHARED, K = 24, 10, 1


def test_batch_top_k_keeps_k_per_input_on_average():
    pre = torch.relu(torch.randn(16, 64, generator=torch.Generator().manual_seed(0))) + 1e-3
    acts = cc.batch_top_k(pre, K)
    assert int((acts > 0).sum()) == K * 16
    kept = acts > 0
    assert torch.equal(acts[kept], pre[kept])
    assert pre[~kept].max() <= acts[kept].min()  # the kept ones are the largest of the batch
    assert not torch.equal((acts > 0).sum(-1), torch.full((16,), K))  # not TopK per row
    # the smallest kept value as threshold reproduces the batch's code exactly
    assert torch.equal(cc.threshold_encode(pre, cc.smallest_kept(acts)), acts)


def planted(n: int, seed: int = 0):
    """Two "models" sharing N_SHARED features (same direction and size in both); feature N_SHARED exists
    only in the fine-tune, feature N_SHARED + 1 only in the base. Each input carries one feature, so a
    latent that mixed two could not reconstruct either."""
    g = torch.Generator().manual_seed(seed)
    directions = torch.linalg.qr(torch.randn(D, D, generator=g))[0][:, :N_SHARED + 2].T  # orthonormal
    which = torch.randint(N_SHARED + 2, (n,), generator=g)
    size = torch.nn.functional.one_hot(which, N_SHARED + 2) * (0.5 + torch.rand(n, 1, generator=g))
    base, ft = size.clone(), size.clone()
    base[:, N_SHARED] = 0
    ft[:, N_SHARED + 1] = 0
    x = torch.stack([base @ directions, ft @ directions], dim=1)
    return x, directions


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    x, directions = planted(20_000)
    g = torch.Generator().manual_seed(1)
    params = cc.init_crosscoder(D, 32, g, mean=x.mean(0))
    log = cc.train_crosscoder(params, x, K, steps=1000, batch_size=256, lr=3e-3, generator=g)
    return params, x, directions, log


def matching_latent(params, direction, model):
    """The latent whose decoder in `model` points most along `direction`."""
    W = params["W_dec"][model]
    cos = (direction @ W) / W.norm(dim=0).clamp(min=1e-12)
    return int(cos.argmax()), float(cos.max())


def test_planted_features_are_recovered(trained):
    params, x, directions, log = trained
    metrics = cc.evaluate(params, x, K)
    assert (metrics["fve"] > 0.8).all(), metrics
    assert 0.5 * K < metrics["l0"] < 2 * K  # the threshold encodes like BatchTopK on average
    rel = cc.relative_norm(params)
    ft_only, cos = matching_latent(params, directions[N_SHARED], cc.FINETUNE)
    assert cos > 0.9 and rel[ft_only] > 0.9
    base_only, cos = matching_latent(params, directions[N_SHARED + 1], cc.BASE)
    assert cos > 0.9 and rel[base_only] < 0.1
    shared = [matching_latent(params, directions[i], cc.FINETUNE) for i in range(N_SHARED)]
    assert all(cos > 0.9 for _, cos in shared)
    assert all(0.4 < rel[j] < 0.6 for j, _ in shared)
    groups = cc.classify_latents(rel)
    assert groups["finetune_only"][ft_only] and groups["base_only"][base_only]
    # latent scaling: the fine-tune-only latent is really absent from the base model
    ratios = cc.scaling_ratios(params, x, ft_only, K)
    assert abs(ratios["nu_error"]) < 0.1 and abs(ratios["nu_reconstruction"]) < 0.1
    assert ratios["beta_error"][cc.FINETUNE] > 0.5
    # fake complete shrinkage: zero a shared latent's base decoder. It now looks fine-tune-only, but
    # the base model's error still holds its direction, and the error ratio says so.
    shrunk = {name: value.clone() for name, value in params.items()}
    j = shared[0][0]
    shrunk["W_dec"][cc.BASE, :, j] = 0
    assert cc.relative_norm(shrunk)[j] == 1
    ratios = cc.scaling_ratios(shrunk, x, j, K)
    assert ratios["nu_error"] == pytest.approx(1, abs=0.05)
    assert abs(ratios["nu_reconstruction"]) < 0.1


def test_latent_scaling_closed_form():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(8, generator=g)
    f = torch.rand(50, generator=g)
    noise = torch.randn(50, 8, generator=g)
    noise = noise - torch.outer(noise @ d, d) / d.dot(d)  # orthogonal to d: it cannot change beta
    y = 2.5 * f[:, None] * d + noise
    assert cc.latent_scaling(f, d, y).item() == pytest.approx(2.5, rel=1e-5)
    # any target: the same as a generic least-squares solve of (f_i d) beta = y_i
    y = torch.randn(50, 8, generator=g)
    lstsq = torch.linalg.lstsq(torch.outer(f, d).reshape(-1, 1), y.reshape(-1, 1)).solution
    assert cc.latent_scaling(f, d, y).item() == pytest.approx(lstsq.item(), rel=1e-4)


def test_classification_thresholds():
    rel = torch.tensor([0.05, 0.1, 0.3, 0.4, 0.5, 0.6, 0.7, 0.9, 0.95])
    groups = cc.classify_latents(rel)
    assert groups["base_only"].tolist() == [True] + [False] * 8
    assert groups["shared"].tolist() == [False] * 3 + [True] * 3 + [False] * 3
    assert groups["finetune_only"].tolist() == [False] * 8 + [True]
    assert groups["other"].tolist() == [False, True, True, False, False, False, True, True, False]
    assert (sum(g.long() for g in groups.values()) == 1).all()
    wide = cc.classify_latents(rel, base_only=0.2, shared=(0.3, 0.7), finetune_only=0.85)
    assert wide["shared"].sum() == 5 and wide["finetune_only"].sum() == 2


def test_relative_norm_and_single_input_encoding():
    params = cc.init_crosscoder(D, 4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        params["W_dec"][cc.BASE, :, 0] = 0
        params["W_dec"][cc.BASE, :, 1] *= 3
        params["threshold"].fill_(0.0)
    rel = cc.relative_norm(params)
    assert rel[0] == 1 and rel[1] == pytest.approx(0.25) and rel[2] == pytest.approx(0.5)
    one = torch.randn(1, 2, D)
    assert cc.encode(one, params, K, use_threshold=True).shape == (1, 4)
