"""The synthetic IOI prompts: aligned positions, honest splits, corruptions that change only S2."""

import torch

from utils.data import ioi


def _batch(split="train", corruption="abc", n=200, seed=0):
    return ioi.ioi_batch(n, split, corruption, generator=torch.Generator().manual_seed(seed))


def test_every_prompt_has_the_same_layout():
    tok = ioi.WordTokenizer()
    for template in ioi.TEMPLATES:
        words = template.split()
        assert len(words) + 1 == ioi.SEQ_LEN
        assert [words[p - 1] for p in (*ioi.POS_IO_OR_S1, ioi.POS_S2)] == ["{A}", "{B}", "{S}"]
        assert words[ioi.POS_END - 1] == "to"
    batch = _batch()
    assert batch.clean.shape == batch.corrupted.shape == (200, ioi.SEQ_LEN)
    names = set(tok.name_ids.tolist())
    for p in (*ioi.POS_IO_OR_S1, ioi.POS_S2):
        assert set(batch.clean[:, p].tolist()) <= names


def test_answers_follow_the_name_order():
    batch = _batch()
    a, b = batch.clean[:, 2], batch.clean[:, 4]
    assert torch.equal(torch.where(batch.abba.bool(), b, a), batch.io)
    assert torch.equal(torch.where(batch.abba.bool(), a, b), batch.s)
    assert torch.equal(batch.clean[:, ioi.POS_S2], batch.s)
    assert 0.3 < batch.abba.float().mean() < 0.7


def test_corruptions_change_only_s2():
    for corruption in ("abc", "flip"):
        batch = _batch(corruption=corruption)
        differs = batch.clean != batch.corrupted
        assert differs[:, ioi.POS_S2].all() and differs.sum() == len(batch)
    flipped = _batch(corruption="flip")
    assert torch.equal(flipped.corrupted[:, ioi.POS_S2], flipped.io)
    abc = _batch(corruption="abc")
    s2 = abc.corrupted[:, ioi.POS_S2]
    assert not ((s2 == abc.io) | (s2 == abc.s)).any()


def test_splits_share_no_templates_and_no_name_pairs():
    train, test = _batch("train", n=500), _batch("test", n=500, seed=1)
    assert set(train.templates.tolist()).isdisjoint(test.templates.tolist())
    pairs = lambda b: {frozenset(p) for p in zip(b.io.tolist(), b.s.tolist())}
    assert pairs(train).isdisjoint(pairs(test))
    # every name is trained on (an unseen name would have an untrained embedding)
    assert set(test.io.tolist()) | set(test.s.tolist()) <= set(train.io.tolist()) | set(train.s.tolist())


def test_tokenizer_round_trips():
    tok = ioi.WordTokenizer()
    text = "When Mary and John went to the store , John gave a drink to"
    assert tok.decode(tok.encode(text)[1:]) == text.replace(" ,", ",")
    assert len(set(tok.words)) == tok.d_vocab
