"""The shipped induction model really contains the circuit Chapter 1.2 teaches.

If a retrain lands on a positional shortcut or spreads induction thinly over
heads, these fail before a notebook makes a claim the model doesn't support.
"""

import pytest
import torch

from solutions.ch1_transformer_math import circuits_and_induction as ref
from utils.data.induction import repeated_random_tokens
from utils.models import load_model

SEQ_LEN = 20


@pytest.fixture(scope="module")
def run():
    model = load_model("attn_only_2l")
    tokens = repeated_random_tokens(50, SEQ_LEN, model.cfg.d_vocab, torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
    return model, tokens, logits, cache


def _loss_on_second_copy(model, tokens, hooks=()):
    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=list(hooks))
    return ref.repeated_sequence_losses(ref.correct_token_log_probs(logits, tokens), SEQ_LEN)[1].item()


def _zero_heads(layer, heads):
    def hook(z, hook):
        z = z.clone()
        z[:, :, heads] = 0.0
        return z
    return (f"blocks.{layer}.attn.hook_z", hook)


def test_layer0_has_a_previous_token_head(run):
    _, _, _, cache = run
    assert ref.previous_token_scores(cache["blocks.0.attn.hook_pattern"]).max() >= 0.8


def test_layer1_has_an_induction_head(run):
    _, _, _, cache = run
    assert ref.induction_scores(cache["blocks.1.attn.hook_pattern"], SEQ_LEN).max() >= 0.7


def test_model_copies_in_context(run):
    _, tokens, logits, _ = run
    first, second = ref.repeated_sequence_losses(ref.correct_token_log_probs(logits, tokens), SEQ_LEN)
    assert first > 3.5 and second < 1.0, (first, second)


def test_ablating_induction_heads_destroys_copying_and_other_heads_barely_matter(run):
    model, tokens, _, cache = run
    clean = _loss_on_second_copy(model, tokens)
    induction = ref.induction_scores(cache["blocks.1.attn.hook_pattern"], SEQ_LEN)
    inductive = [h for h in range(model.cfg.n_heads) if induction[h] > 0.3]
    prev = ref.previous_token_scores(cache["blocks.0.attn.hook_pattern"])
    others = [h for h in range(model.cfg.n_heads) if prev[h] < 0.5]
    assert inductive and others
    without_induction = _loss_on_second_copy(model, tokens, [_zero_heads(1, inductive)])
    assert without_induction > clean + 2.5, (clean, without_induction)
    for head in others:
        assert _loss_on_second_copy(model, tokens, [_zero_heads(0, [head])]) < clean + 0.3, head


def test_k_composition_of_prev_token_and_induction_heads_stands_above_random(run):
    model, _, _, cache = run
    prev = ref.previous_token_scores(cache["blocks.0.attn.hook_pattern"]).argmax().item()
    induction = ref.induction_scores(cache["blocks.1.attn.hook_pattern"], SEQ_LEN).argmax().item()
    with torch.no_grad():
        score = ref.k_composition_scores(model)[prev, induction].item()
        torch.manual_seed(0)
        baseline = ref.random_composition_scores(model.OV[0, prev], model.QK[1, induction].T)
    assert score > baseline.mean().item() + 5 * baseline.std().item(), (score, baseline.mean(), baseline.std())


def _best_layer1_induction(model, repeat_len, prefix_len, batch=64):
    """The best layer-1 induction score on [BOS] + prefix_len random tokens + R + R."""
    g = torch.Generator().manual_seed(5)
    prefix = torch.randint(1, model.cfg.d_vocab, (batch, prefix_len), generator=g)
    repeat = torch.randint(1, model.cfg.d_vocab, (batch, repeat_len), generator=g)
    tokens = torch.cat([torch.zeros(batch, 1, dtype=torch.long), prefix, repeat, repeat], dim=1)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter="blocks.1.attn.hook_pattern")
    pattern = cache["blocks.1.attn.hook_pattern"][:, :, prefix_len:, prefix_len:]
    return ref.induction_scores(pattern, repeat_len).max().item()


def test_induction_reaches_short_repeats_only_some_way_into_the_context(run):
    """What 1.2's sweep teaches: the circuit's reach, not only its existence on long repeats."""
    model = run[0]
    assert _best_layer1_induction(model, 5, 0) < 0.3
    assert _best_layer1_induction(model, 5, 30) > 0.6
    assert _best_layer1_induction(model, 8, 0) < _best_layer1_induction(model, 12, 0) < _best_layer1_induction(model, 20, 0)
    assert _best_layer1_induction(model, 20, 0) > 0.9
