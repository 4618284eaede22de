"""The shipped grokking model and its checkpoint series (utils/models/grokking.py).

The claims of 5.1 about the final model and the three phases are checked here on the shipped
file with the reference solutions; tests/notebooks/ch5_grokking checks that the notebook's own
printed values say the same (with `assert_three_phases`, shared).
"""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from solutions.ch5_grokking import grokking as sol
from utils.data import modular
from utils.models import grokking

P = 113


@pytest.fixture(scope="module")
def series():
    with torch.no_grad():
        return grokking.load_series()


@pytest.fixture(scope="module")
def data():
    tokens = modular.all_pairs(P)
    labels = modular.labels(tokens, P)
    train_idx, test_idx = modular.train_test_split(P, 0.3, seed=0)
    return tokens, labels, train_idx, test_idx, sol.fourier_basis(P)


@pytest.fixture(scope="module")
def key_freqs(series, data):
    return sol.key_frequencies(sol.frequency_norms(sol.to_fourier(series[0].W_E[:P].detach(), data[4])))


@pytest.fixture(scope="module")
def measures(series, data, key_freqs):
    _, checkpoints, _ = series
    tokens, labels, train_idx, test_idx, basis = data
    steps = sorted(checkpoints)
    m = {k: [] for k in ("train", "test", "restricted", "excluded", "norm", "gini")}
    with torch.no_grad():
        for s in steps:
            model = checkpoints[s]
            logits = model(tokens)
            m["train"].append(F.cross_entropy(logits[train_idx].double(), labels[train_idx]).item())
            m["test"].append(F.cross_entropy(logits[test_idx].double(), labels[test_idx]).item())
            m["restricted"].append(F.cross_entropy(sol.restricted_logits(logits, P, key_freqs).double(), labels).item())
            m["excluded"].append(sol.excluded_loss(logits, labels, train_idx, P, key_freqs))
            m["norm"].append(sol.total_weight_norm(dict(model.named_parameters())))
            m["gini"].append(sol.embedding_gini(model.W_E[:P], basis))
    return steps, m


def assert_three_phases(steps: list[int], m: dict[str, list[float]]) -> None:
    """The issue's claims about the checkpoint series, in terms of grokking.phases."""
    phases = grokking.phases(steps, m)
    memorised, formed, cleaned = (phases[k][1] for k in ("memorisation", "circuit formation", "cleanup"))
    assert None not in (memorised, formed, cleaned), phases
    at = {s: i for i, s in enumerate(steps)}
    # the test loss falls long after the train loss
    assert cleaned >= 5 * memorised, phases
    # the excluded loss rises during circuit formation while the train loss stays low
    window = [at[s] for s in steps if memorised <= s <= formed]
    assert len(window) >= 3, phases
    assert max(m["train"][i] for i in window) < 0.01
    assert m["excluded"][at[formed]] > 10 * m["excluded"][at[memorised]], [m["excluded"][i] for i in window]
    # the restricted loss falls before the test loss does: at `formed` the test loss is still high
    test_low = grokking.first_below(steps, m["test"], 0.1)
    assert formed < test_low and m["test"][at[formed]] > 1.0, (phases, m["test"][at[formed]])
    # after cleanup the test loss settles near the restricted loss (within 10x, on a scale from 1e-8 to 30)
    assert m["test"][-1] < 1e-5 and m["test"][-1] < 10 * m["restricted"][-1], (m["test"][-1], m["restricted"][-1])
    # weight decay shrinks the weights, fastest during cleanup; the embedding concentrates on few
    # frequencies, mostly during cleanup and after
    norm, gini = m["norm"], m["gini"]
    assert norm[-1] < 0.7 * max(norm) and norm[at[formed]] < norm[at[memorised]]
    rate = lambda a, b: (norm[at[a]] - norm[at[b]]) / (b - a)  # noqa: E731
    assert rate(formed, cleaned) > rate(memorised, formed), (rate(formed, cleaned), rate(memorised, formed))
    assert gini[-1] - gini[at[formed]] > gini[at[formed]] - gini[at[memorised]]
    assert gini[-1] > gini[0] + 0.2


def test_split_is_30_percent_and_disjoint():
    train_idx, test_idx = modular.train_test_split(P, 0.3, seed=0)
    assert len(train_idx) == round(0.3 * P * P)
    assert set(train_idx.tolist()).isdisjoint(test_idx.tolist())
    assert len(train_idx) + len(test_idx) == P * P


def test_fast_and_straightforward_forwards_agree_with_gradients():
    model = grokking.GrokModel()
    tokens = torch.cat([modular.all_pairs(P)[:300], torch.randint(0, P + 1, (200, 3))])
    labels = modular.labels(tokens, P)
    fast, slow = model(tokens), model(tokens, straightforward=True)
    assert torch.allclose(fast, slow, atol=1e-5)
    params = list(model.parameters())
    g_fast = torch.autograd.grad(grokking.loss_fn(fast, labels), params)
    g_slow = torch.autograd.grad(grokking.loss_fn(slow, labels), params)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g_fast, g_slow))


def test_training_recipe_is_the_papers():
    """Nanda et al. (2023): lr 1e-3, weight decay 1.0, betas (0.9, 0.98), 30% of the pairs."""
    r = grokking.RECIPE
    assert (r["lr"], r["weight_decay"], r["betas"], r["train_frac"]) == (1e-3, 1.0, (0.9, 0.98), 0.3)
    cfg = grokking.GrokConfig()
    assert (cfg.p, cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp) == (113, 128, 4, 32, 512)


def test_final_model_accuracy(series, data):
    model, _, _ = series
    tokens, labels, train_idx, test_idx, _ = data
    with torch.no_grad():
        logits = model(tokens)
    assert sol.accuracy(logits[train_idx], labels[train_idx]) >= 0.999
    assert sol.accuracy(logits[test_idx], labels[test_idx]) >= 0.999


def test_key_frequencies_consistent_across_embedding_neurons_and_unembedding(series, data, key_freqs):
    model, _, _ = series
    tokens, _, _, _, basis = data
    assert 3 <= len(key_freqs) <= 7, key_freqs
    with torch.no_grad():
        assert sol.key_frequencies(sol.frequency_norms(sol.to_fourier(model.W_U.T, basis))) == key_freqs
        neurons = model.neuron_acts(tokens).reshape(P, P, -1)
    freq, frac = sol.neuron_frequencies(sol.fourier_2d(neurons, basis))
    assert set(freq[frac > 0.85].tolist()) == set(key_freqs)


def test_cos_a_plus_b_minus_c_explains_most_of_the_logits(series, data, key_freqs):
    model, _, _ = series
    with torch.no_grad():
        logits = model(data[0])
    assert sol.variance_explained(logits, sol.cos_predictors(P, key_freqs)) > 0.8


def test_ablating_key_frequencies_gives_chance_and_the_rest_changes_nothing(series, data, key_freqs):
    model, _, _ = series
    tokens, labels, _, test_idx, basis = data
    others = [k for k in range(1, P // 2 + 1) if k not in key_freqs]
    accs = {}
    with torch.no_grad():
        for name, freqs in (("key", key_freqs), ("others", others)):
            ablated = copy.deepcopy(model)
            ablated.W_E[:P] = sol.ablate_frequencies(model.W_E[:P], basis, freqs)
            accs[name] = sol.accuracy(ablated(tokens)[test_idx], labels[test_idx])
    assert accs["key"] < 0.05 and accs["others"] > 0.99, accs


def test_history_and_checkpoints_agree(series, data):
    """The stored history is what the checkpoints compute (guards against a mismatched file)."""
    _, checkpoints, history = series
    tokens, labels, train_idx, _, _ = data
    both = sorted(set(checkpoints) & set(history["step"].tolist()))
    step = both[len(both) // 2]
    i = (history["step"] == step).nonzero()[0, 0]
    with torch.no_grad():
        loss = F.cross_entropy(checkpoints[step](tokens)[train_idx].double(), labels[train_idx]).item()
    # checkpoints are float16, so compare on a log scale
    assert abs(torch.tensor(loss).log() - history["train_loss"][i].log()) < 0.5, (loss, history["train_loss"][i])


def test_checkpoints_span_training(series):
    _, checkpoints, history = series
    steps = sorted(checkpoints)
    assert steps[0] == 0 and steps[-1] == history["step"][-1].item() and len(steps) >= 30


def test_checkpoint_series_shows_the_three_phases(measures):
    assert_three_phases(*measures)


def test_training_loop_logs_before_each_update_and_returns_the_last_state():
    with torch.no_grad():  # as in the notebook, which analyses with gradients off: training turns them back on
        model, history, checkpoints = grokking.train_grokking(steps=30, eval_every=10, checkpoint_at=[0, 30],
                                                              progress=False)
    assert history["step"] == [0, 10, 20, 30]
    assert history["train_loss"][0] == pytest.approx(math.log(P), abs=0.1)  # chance at initialisation
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert all(torch.equal(v, checkpoints[30][k]) for k, v in model.state_dict().items())


def test_training_flushes_denormal_floats_and_then_stops():
    """Weight decay drives unused weights into denormal floats, which made the live run 2.2x slower."""
    supported = torch.set_flush_denormal(False)   # whether this CPU can flush at all (it stays off)
    tiny = torch.tensor([1e-40])
    with grokking.denormals_flushed():
        flushed = (tiny * 1.0).item()
    assert (tiny * 1.0).item() > 0, "the setting leaked out of training"
    assert flushed == 0.0 or not supported, "denormals survived inside training"
