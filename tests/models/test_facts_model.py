"""The shipped two-hop fact model (Chapter 8) knows every one-hop fact and composes them: it answers the
two-hop questions of people whose two-hop question it never trained on."""

import pytest
import torch

from utils.data import facts
from utils.models import load_model, manifest
from utils.models.train import RECIPES, facts_accuracy, names_only_baseline

NAME = "facts_4l"
HELDOUT_MIN = 0.8


@pytest.fixture(scope="module")
def model():
    return load_model(NAME)


def _sample(batch: facts.Facts, n: int, seed: int = 0) -> facts.Facts:
    return batch[torch.randperm(len(batch), generator=torch.Generator().manual_seed(seed))[:n]]


@pytest.mark.parametrize("kind", ["person_city", "city_country"])
def test_one_hop_facts_are_known(model, kind):
    accuracy = facts_accuracy(model, _sample(facts.facts(kind), 800)).float().mean().item()
    assert accuracy >= 0.99, accuracy


@pytest.fixture(scope="module")
def heldout(model):
    batch = facts.facts("person_country", "heldout")
    return batch, facts_accuracy(model, batch)


def test_held_out_two_hop_questions_are_composed(heldout):
    _, correct = heldout
    accuracy = correct.float().mean().item()
    assert accuracy >= HELDOUT_MIN, accuracy
    assert accuracy >= names_only_baseline() + 0.5 and accuracy >= 1 / facts.N_COUNTRIES + 0.5


def test_every_template_and_every_held_out_person_is_mostly_answered(heldout):
    """No template carries the result alone, and composition is not confined to a few people."""
    batch, correct = heldout
    for t in range(len(facts.TEMPLATES["person_country"])):
        assert correct[batch.template == t].float().mean() >= HELDOUT_MIN - 0.1
    per_person = torch.stack([correct[batch.subject == p].float().mean() for p in batch.subject.unique()])
    assert (per_person >= 0.5).float().mean() >= 0.8


def test_trained_two_hop_questions_are_answered(model):
    accuracy = facts_accuracy(model, _sample(facts.facts("person_country", "train"), 800)).float().mean().item()
    assert accuracy >= 0.99, accuracy


def test_manifest_records_the_held_out_results():
    recorded = manifest()[NAME]["accuracy"]
    assert recorded["person_country_heldout"] >= HELDOUT_MIN
    assert recorded["person_city_all"] >= 0.99 and recorded["city_country_all"] >= 0.99


def test_the_training_stream_never_asked_a_held_out_two_hop_question():
    """Replays the recipe's whole stream, seeded as `train` seeds it."""
    recipe, held_out = RECIPES[NAME], facts.world().held_out
    generator = torch.Generator().manual_seed(0)
    two_hop = facts.KINDS.index("person_country")
    asked, one_hop_of_held_out = 0, 0
    for _ in range(recipe.steps):
        batch = recipe.batch_fn(generator)
        asked += (held_out[batch.subject] & (batch.kind == two_hop)).sum().item()
        one_hop_of_held_out += (held_out[batch.subject] & (batch.kind == 0)).sum().item()
    assert asked == 0
    assert one_hop_of_held_out > 0


def test_the_hidden_city_is_read_out_at_the_word_after_the_name(model):
    """Where chapter 8 looks for the intermediate: after two blocks, the logit lens at the word after the
    surname ranks the held-out person's city first among the cities, though no city was named."""
    batch = _sample(facts.facts("person_country", "heldout"), 800)
    hook = "blocks.2.hook_resid_pre"
    with torch.no_grad():
        _, cache = model.run_with_cache(batch.tokens, names_filter=lambda name: name == hook)
        resid = cache[hook][torch.arange(len(batch)), batch.subject_pos + 1]
        logits = model.ln_final(resid[:, None])[:, 0] @ model.W_U
    city_ids = facts.FactTokenizer().city_ids
    assert (logits[:, city_ids].argmax(-1) == batch.city).float().mean() >= 0.85


def _swap(model, batch, positions, layer=1):
    """Each prompt's residual stream at `positions` (after `layer` blocks) replaced by that of a held-out
    person of another country: how often the answer becomes the donor's country."""
    n = len(batch)
    donor = torch.tensor([next(j % n for j in range(i + 1, i + n) if batch.country[j % n] != batch.country[i])
                          for i in range(n)])
    name = f"blocks.{layer}.hook_resid_pre"
    with torch.no_grad():
        _, cache = model.run_with_cache(batch.tokens[donor], names_filter=lambda n: n == name)

        def patch(x, hook):
            x = x.clone()
            x[:, positions] = cache[name][:, positions]
            return x

        top = model.run_with_hooks(batch.tokens, fwd_hooks=[(name, patch)])[:, -1].argmax(-1)
    return (top == facts.FactTokenizer().country_ids[batch.country[donor]]).float().mean().item()


def test_swapping_the_words_after_the_name_swaps_the_country(model):
    """The composed answer follows the city computed after the name: patching those positions from another
    person moves the answer to that person's country; patching the name tokens themselves does not."""
    after_name, names = [], []
    for template in range(len(facts.TEMPLATES["person_country"])):
        batch = facts.facts("person_country", "heldout", template=template, opening=0)
        s, end = int(batch.subject_pos[0]), int(batch.end[0])
        after_name.append(_swap(model, batch, list(range(s + 1, end))))
        names.append(_swap(model, batch, [s - 1, s]))
    assert sum(after_name) / len(after_name) >= 0.45, after_name
    assert max(names) <= 0.15, names
