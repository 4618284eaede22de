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
    accuracy = facts_accuracy(model, _sample(facts.facts(kind), 1000)).float().mean().item()
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
    accuracy = facts_accuracy(model, _sample(facts.facts("person_country", "train"), 1000)).float().mean().item()
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
