"""The shipped IOI model (Chapter 4) solves the task by name, not by position, on prompts it never trained on."""

import pytest
import torch

from utils.data import ioi
from utils.models import load_model


@pytest.fixture(scope="module")
def model():
    return load_model("ioi_3l")


def _run(model, batch):
    with torch.no_grad():
        clean = ioi.logits_at_end(model(batch.clean), batch)
        corrupted = ioi.logits_at_end(model(batch.corrupted), batch)
    return clean, corrupted


def _logit_diff(logits, batch):
    return logits.gather(1, batch.io[:, None])[:, 0] - logits.gather(1, batch.s[:, None])[:, 0]


@pytest.fixture(scope="module")
def held_out(model):
    batch = ioi.ioi_batch(1000, "test", generator=torch.Generator().manual_seed(123))
    return (batch, *_run(model, batch))


def test_accuracy_on_held_out_layouts_and_name_pairs(held_out):
    batch, clean, _ = held_out
    accuracy = (clean.argmax(-1) == batch.io).float().mean().item()
    assert accuracy >= 0.97, accuracy


def test_every_held_out_layout_is_solved_unvaried(model):
    """Each held-out layout on its own, with no modifiers or fillers: position cannot carry the answer."""
    worst = 1.0
    for layout in range(len(ioi.layouts("test"))):
        batch = ioi.ioi_batch(40, "test", generator=torch.Generator().manual_seed(layout), layout=layout)
        clean, _ = _run(model, batch)
        worst = min(worst, (clean.argmax(-1) == batch.io).float().mean().item())
    assert worst >= 0.95, worst


@pytest.mark.parametrize("shift", ["drop 'the' before the place", "drop the opening 'When'", "three fillers in front"])
def test_layout_shifts_that_broke_the_fixed_position_model(model, shift):
    """The shifts that took the old fixed-layout model down to 12-56%: each moves every later position."""
    tok = ioi.WordTokenizer()
    base = ioi.ioi_batch(300, "test", generator=torch.Generator().manual_seed(7), layout=0)
    words = ["<bos>"] + ioi.layouts("test")[0].split()
    if shift.startswith("drop 'the'"):
        base = ioi.ioi_batch(300, "train", generator=torch.Generator().manual_seed(7), layout=0)
        words = ["<bos>"] + ioi.layouts("train")[0].split()
        keep = [i for i, w in enumerate(words) if not (w == "the" and words[i + 1] == "{P}")]
    elif shift.startswith("drop the opening"):
        keep = [i for i, w in enumerate(words) if w != "When"]
    else:
        keep = list(range(len(words)))
    assert len(keep) < len(words) or shift.startswith("three")
    clean = base.clean[:, keep]
    if shift.startswith("three"):
        fillers = torch.tensor([tok.index[w] for w in ("well", "so", "indeed")]).expand(len(base), 3)
        clean = torch.cat([clean[:, :1], fillers, clean[:, 1:]], dim=1)
    with torch.no_grad():
        logits = model(clean)[:, -1]
    accuracy = (logits.argmax(-1) == base.io).float().mean().item()
    assert accuracy >= 0.95, accuracy


def test_both_name_orders_are_solved(held_out):
    batch, clean, _ = held_out
    correct = clean.argmax(-1) == batch.io
    for order in (0, 1):
        assert correct[batch.abba == order].float().mean() >= 0.95


def test_the_abc_corruption_removes_the_information(held_out):
    batch, clean, corrupted = held_out
    assert _logit_diff(clean, batch).mean() > 3.0
    assert _logit_diff(corrupted, batch).mean().abs() < 0.25 * _logit_diff(clean, batch).mean()


def test_the_flip_corruption_reverses_the_answer(model):
    batch = ioi.ioi_batch(300, "test", "flip", generator=torch.Generator().manual_seed(9))
    _, flipped = _run(model, batch)
    assert (flipped.argmax(-1) == batch.s).float().mean() >= 0.95


def test_the_circuit_the_notebook_describes(model):
    """4.1 section 7: no duplicate-token, induction or name mover heads; heads 0.0 and 0.2 look from S2 at the
    other name; every layer-1 head attends from the end to S2, repeated or not (it finds the last name)."""
    batch = ioi.ioi_batch(64, "test", generator=torch.Generator().manual_seed(0), layout=0)
    rows = torch.arange(len(batch))
    with torch.no_grad():
        _, clean = model.run_with_cache(batch.clean)
        _, abc = model.run_with_cache(batch.corrupted)
    attention = lambda cache, layer, query, key: cache[f"blocks.{layer}.attn.hook_pattern"][rows, :, query, key].mean(0)
    for layer in range(model.cfg.n_layers):
        assert attention(clean, layer, batch.s2_pos, batch.s1_pos).max() < 0.3, "a duplicate-token head"
        assert attention(clean, layer, batch.s2_pos, batch.s1_pos + 1).max() < 0.3, "an induction head"
        to_io = attention(clean, layer, batch.end, batch.io_pos)
        to_s = attention(clean, layer, batch.end, batch.s1_pos) + attention(clean, layer, batch.end, batch.s2_pos)
        assert not ((to_io > 0.3) & (to_io > 2 * to_s)).any(), "a head that prefers IO at the end (name mover)"
    other_name = attention(clean, 0, batch.s2_pos, batch.io_pos) > 2 * attention(clean, 0, batch.s2_pos, batch.s1_pos)
    assert other_name[[0, 2]].all()
    assert (attention(clean, 1, batch.end, batch.s2_pos) > 0.95).all()
    assert (attention(abc, 1, batch.end, batch.s2_pos) > 0.9).all()
