"""The character tokenizer and the offline text corpus behind gpt2_tiny."""

import torch

from utils.data.text import CharTokenizer, stdlib_docstrings, text_batch


def test_tokenizer_round_trips_printable_text_and_prepends_bos():
    tok = CharTokenizer()
    text = "Return the sum of a and b.\n\tIndented {x: 1}!"
    ids = tok.encode(text)
    assert ids[0] == tok.bos_token_id and tok.decode(ids) == text.replace("\t", "?")
    assert tok(text).shape == (1, len(text) + 1)
    assert max(ids) < tok.d_vocab


def test_unknown_characters_become_a_question_mark():
    tok = CharTokenizer()
    assert tok.decode(tok.encode("café")) == "caf?"


def test_corpus_is_english_docstrings_and_needs_no_download():
    text = stdlib_docstrings()
    assert len(text) > 500_000 and text.isascii()
    assert "Return" in text and "def " not in text[:2000]


def test_text_batch_windows_start_with_bos():
    data = torch.arange(1, 1000)
    batch = text_batch(data, 4, 16, torch.Generator().manual_seed(0))
    assert batch.shape == (4, 16) and (batch[:, 0] == 0).all()
    assert (batch[:, 2:] - batch[:, 1:-1] == 1).all()
