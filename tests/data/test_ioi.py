"""The synthetic IOI prompts: varied layouts, honest splits, corruptions that change only S2."""

import pytest
import torch

from utils.data import ioi


def _batch(split="train", corruption="abc", n=300, seed=0, layout=None):
    return ioi.ioi_batch(n, split, corruption, generator=torch.Generator().manual_seed(seed), layout=layout)


def test_roles_sit_where_the_batch_says():
    tok = ioi.WordTokenizer()
    batch = _batch()
    rows = torch.arange(len(batch))
    assert torch.equal(batch.clean[rows, batch.io_pos], batch.io)
    assert torch.equal(batch.clean[rows, batch.s1_pos], batch.s)
    assert torch.equal(batch.clean[rows, batch.s2_pos], batch.s)
    assert (batch.clean[rows, batch.end] == tok.index["to"]).all()
    after_end = torch.arange(batch.clean.shape[1]) > batch.end[:, None]
    assert (batch.clean[after_end] == tok.pad_token_id).all() and (batch.clean[~after_end] != tok.pad_token_id).all()
    assert batch.clean.shape[1] <= ioi.MAX_LEN


def test_no_position_holds_a_role_in_a_mixed_batch():
    """The point of the varied layouts: position alone cannot say where the names, S2 or the end are."""
    batch = _batch(n=1000)
    for role in (batch.io_pos, batch.s1_pos, batch.s2_pos, batch.end):
        assert len(set(role.tolist())) >= 8
        assert torch.bincount(role).max() < 0.3 * len(batch)


def test_a_fixed_layout_lines_every_position_up():
    batch = _batch("test", layout=3)
    for role in (batch.io_pos, batch.s1_pos, batch.s2_pos, batch.end):
        assert len(set(role.tolist())) <= 2  # io and s1 swap with the name order
    assert set(batch.layouts.tolist()) == {3}
    assert batch.end[0] == batch.clean.shape[1] - 1
    labels = ioi.position_labels(ioi.layouts("test")[3])
    assert len(labels) == batch.clean.shape[1] and labels[batch.s2_pos[0]] == "S2" and labels[-1] == "to"


def test_answers_follow_the_name_order():
    batch = _batch()
    assert torch.equal(batch.io_pos < batch.s1_pos, batch.abba == 0)
    assert 0.3 < batch.abba.float().mean() < 0.7


@pytest.mark.parametrize("corruption", ["abc", "flip"])
def test_corruptions_change_only_s2(corruption):
    batch = _batch(corruption=corruption)
    differs = batch.clean != batch.corrupted
    rows = torch.arange(len(batch))
    assert differs[rows, batch.s2_pos].all() and differs.sum() == len(batch)
    s2 = batch.corrupted[rows, batch.s2_pos]
    if corruption == "flip":
        assert torch.equal(s2, batch.io)
    else:
        assert not ((s2 == batch.io) | (s2 == batch.s)).any()


def test_splits_share_no_layouts_and_no_name_pairs():
    train, test = _batch("train", n=500), _batch("test", n=500, seed=1)
    clause_sets = lambda split: (set(ioi.FIRST_CLAUSES[split]), set(ioi.SECOND_CLAUSES[split]))
    assert clause_sets("train")[0].isdisjoint(clause_sets("test")[0])
    assert clause_sets("train")[1].isdisjoint(clause_sets("test")[1])
    pairs = lambda b: {frozenset(p) for p in zip(b.io.tolist(), b.s.tolist())}
    assert pairs(train).isdisjoint(pairs(test))
    # every name and every word is trained on (an unseen token would have an untrained embedding)
    assert set(test.io.tolist()) | set(test.s.tolist()) <= set(train.io.tolist()) | set(train.s.tolist())
    assert set(test.clean.flatten().tolist()) - {ioi.WordTokenizer().pad_token_id} <= set(train.clean.flatten().tolist())


def test_held_out_layouts_are_new_sentences():
    assert set(ioi.layouts("test")).isdisjoint(ioi.layouts("train"))
    assert set(ioi.OPENINGS["test"]) - set(ioi.OPENINGS["train"])


def test_tokenizer_round_trips():
    tok = ioi.WordTokenizer()
    text = "When Mary and John went to the store, John gave a drink to"
    assert tok.decode(tok.encode(text)[1:]) == text
    assert len(set(tok.words)) == tok.d_vocab


@pytest.mark.parametrize("frame", list(ioi.FRAMES))
def test_a_frame_batch_puts_each_role_on_its_name(frame):
    batch = ioi.frame_batch(frame, 50, generator=torch.Generator().manual_seed(0))
    rows = torch.arange(len(batch))
    assert torch.equal(batch.tokens[rows, batch.roles["IO"]], batch.io)
    assert torch.equal(batch.tokens[rows, batch.roles["S1"]], batch.s)
    if "S2" in batch.roles:
        assert torch.equal(batch.tokens[rows, batch.roles["S2"]], batch.s)
        assert (batch.roles["S2"] > batch.roles["S1"]).all()
    group = ioi.FRAMES[frame][0]
    assert ("S2" in batch.roles) == (group != "S, IO") and ("X" in batch.roles) == (group == "new name after S2")
    last_name = torch.stack(list(batch.roles.values())).max(0).values
    assert torch.equal(last_name == batch.roles["IO"], torch.full((len(batch),), group in ("S, S, IO", "S, IO")))
    assert batch.tokens.shape[1] <= ioi.MAX_LEN and (batch.tokens[:, -1] == ioi.WordTokenizer().index["to"]).all()
