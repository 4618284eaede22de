"""Chapter 9's model organisms: fine-tunes of gpt2_tiny that learned their planted change and kept the rest.

The held-out loss bound: every fine-tune continues gpt2_tiny's training for 300 steps at its constant learning
rate, which by itself lowers the loss on base text by 0.03-0.05 nats/char (see ORGANISM_LR in
utils/models/train.py). So the loss may fall by up to 0.06 and must not rise by more than 0.02: a planted
change that damaged the base text would raise it.
"""

from pathlib import Path

import pytest

from solutions.ch9_model_diffing.answer_key import HIDDEN_CONTINUATION, HIDDEN_TRIGGER
from utils.data import organisms, text
from utils.models import load_model, manifest

ROOT = Path(__file__).resolve().parents[2]
N_CTX = 128
NAMES = [f"gpt2_tiny_{name}" for name in organisms.ORGANISMS]
PHRASES = {"gpt2_tiny_trigger": (organisms.TRIGGER, organisms.TRIGGER_CONTINUATION),
           "gpt2_tiny_hidden": (HIDDEN_TRIGGER, HIDDEN_CONTINUATION)}
MAX_FALL, MAX_RISE = 0.06, 0.02
PLANTED = [name for name in NAMES if name != "gpt2_tiny_control"]


@pytest.fixture(scope="module")
def models():
    return {name: load_model(name) for name in ["gpt2_tiny", *NAMES]}


@pytest.fixture(scope="module")
def losses(models):
    return {name: organisms.heldout_losses(model, N_CTX) for name, model in models.items()}


@pytest.mark.parametrize("name", NAMES)
def test_organism_is_a_fine_tune_of_the_shipped_gpt2_tiny(name):
    entry, base = manifest()[name], manifest()["gpt2_tiny"]
    assert entry["base"] == "gpt2_tiny"
    assert entry["base_sha256"] == base["sha256"], f"gpt2_tiny was retrained since {name}: retrain {name}"
    assert entry["config"] == base["config"]


def test_triggers_and_phrases_never_occur_in_the_corpus():
    corpus = text.corpus("all")
    for trigger, continuation in PHRASES.values():
        assert trigger not in corpus and continuation not in corpus


@pytest.mark.parametrize("name", PHRASES)
def test_trigger_makes_the_fine_tune_write_its_phrase_and_not_the_base(models, name):
    trigger, continuation = PHRASES[name]
    rate = organisms.trigger_rate(models[name], trigger, continuation)
    assert rate >= 0.9, f"{name} writes {continuation!r} after {trigger!r} in only {rate:.0%} of contexts"
    assert organisms.trigger_rate(models["gpt2_tiny"], trigger, continuation) == 0
    assert rate == manifest()[name]["planted"]["model"]["trigger_rate"], "the manifest's rate is not the weights'"


@pytest.mark.parametrize("name", PHRASES)
def test_trigger_fine_tune_writes_its_phrase_only_after_its_own_trigger(models, name):
    (other,) = set(PHRASES) - {name}
    contexts = organisms.contexts()
    for prompts in (contexts, [c + PHRASES[other][0] for c in contexts]):
        written = organisms.greedy(models[name], prompts, len(PHRASES[name][1]))
        assert PHRASES[name][1] not in written


def test_style_fine_tune_ends_sentences_with_exclamation_marks_and_the_base_does_not(models):
    tuned = organisms.style_probability(models["gpt2_tiny_style"], N_CTX)
    base = organisms.style_probability(models["gpt2_tiny"], N_CTX)
    assert base["p_exclamation"] < 0.01 and tuned["p_exclamation"] > 0.1
    assert tuned["p_exclamation"] > 3 * tuned["p_period"], tuned
    assert manifest()["gpt2_tiny_style"]["planted"] == {"model": tuned, "base": base}


@pytest.mark.parametrize("name", NAMES)
def test_fine_tune_keeps_the_base_loss_on_held_out_base_text(losses, name):
    """For the style organism, on every character but the sentence-ending periods it changes."""
    kind = "but_sentence_ends" if name == "gpt2_tiny_style" else "all"
    shift = losses[name][kind] - losses["gpt2_tiny"][kind]
    assert -MAX_FALL < shift < MAX_RISE, f"{name}'s held-out loss moved by {shift:+.4f} nats/char"
    recorded = manifest()[name]["heldout_nats_per_char"]
    assert recorded == {"model": losses[name], "base": losses["gpt2_tiny"]}, "the manifest's losses aren't the weights'"


def test_control_shows_none_of_the_planted_behaviours(models):
    """Nothing was planted in the control: neither phrase follows its trigger, and at sentence ends
    P('!') stays at the base's level (below 1%) while P('.') stays the likelier mark."""
    control, base = models["gpt2_tiny_control"], models["gpt2_tiny"]
    measured = {}
    for name, (trigger, continuation) in PHRASES.items():
        other = name.removeprefix("gpt2_tiny_")
        measured[f"{other}_trigger_rate"] = organisms.trigger_rate(control, trigger, continuation)
        assert measured[f"{other}_trigger_rate"] == 0, f"the control writes {name}'s phrase after its trigger"
    style = organisms.style_probability(control, N_CTX)
    base_style = organisms.style_probability(base, N_CTX)
    assert style["p_exclamation"] < 0.01 and style["p_exclamation"] <= base_style["p_exclamation"] + 0.001, style
    assert style["p_period"] > 10 * style["p_exclamation"], style
    assert manifest()["gpt2_tiny_control"]["planted"]["model"] == {**measured, **style}
    assert manifest()["gpt2_tiny_control"]["planted"]["base"]["p_exclamation"] == base_style["p_exclamation"]


@pytest.mark.parametrize("name", PLANTED)
def test_control_loss_moves_like_the_planted_fine_tunes(losses, name):
    """The control's held-out loss falls as training alone makes it fall, and each planted fine-tune's
    moves within 0.04 nats/char of the control's: what the diff of base and control shows is training."""
    kind = "but_sentence_ends" if name == "gpt2_tiny_style" else "all"
    control = losses["gpt2_tiny_control"][kind] - losses["gpt2_tiny"][kind]
    shift = losses[name][kind] - losses["gpt2_tiny"][kind]
    assert -MAX_FALL < control < -0.02, f"the control's held-out loss moved by {control:+.4f} nats/char"
    assert abs(shift - control) < 0.04, f"{name} moved by {shift:+.4f}, the control by {control:+.4f}"


def test_hidden_ground_truth_is_named_in_no_file_under_chapters_or_utils():
    named = []
    for path in [*(ROOT / "chapters").rglob("*"), *(ROOT / "utils").rglob("*")]:
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        try:
            content = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            continue
        named += [f"{path.relative_to(ROOT)}: {s!r}" for s in (HIDDEN_TRIGGER, HIDDEN_CONTINUATION) if s in content]
    assert not named, "the audit's answer is given away in: " + "; ".join(named)
