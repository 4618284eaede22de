"""The character tokenizer and the shipped text corpus behind gpt2_tiny: fixed, hash-checked, split."""

import gzip
import hashlib
import platform

import pytest
import torch

from utils.data import text
from utils.data.text import CharTokenizer, corpus, text_batch

# The split is part of the experiment: the held-out numbers in the README and the manifest were
# measured on exactly these modules. Changing it means retraining gpt2_tiny and remeasuring.
HELD_OUT = ("_threading_local", "cgitb", "cmd", "collections", "dataclasses", "dis", "imaplib", "imghdr",
            "importlib", "json", "logging", "modulefinder", "nturl2path", "operator", "profile", "pydoc", "queue",
            "secrets", "shlex", "sqlite3", "warnings")


def test_tokenizer_round_trips_printable_text_and_prepends_bos():
    tok = CharTokenizer()
    sample = "Return the sum of a and b.\n\tIndented {x: 1}!"
    ids = tok.encode(sample)
    assert ids[0] == tok.bos_token_id and tok.decode(ids) == sample.replace("\t", "?")
    assert tok(sample).shape == (1, len(sample) + 1)
    assert max(ids) < tok.d_vocab


def test_unknown_characters_become_a_question_mark():
    tok = CharTokenizer()
    assert tok.decode(tok.encode("café")) == "caf?"


def test_shipped_corpus_is_the_hashed_file_and_small():
    raw = gzip.decompress(text.CORPUS_FILE.read_bytes())
    assert hashlib.sha256(raw).hexdigest() == text.CORPUS_SHA256
    assert text.CORPUS_FILE.stat().st_size < 1_000_000
    assert 1_500_000 <= len(corpus("all")) <= 3_000_000


def test_corpus_is_english_docstrings_without_headers_or_installed_packages():
    files = text.corpus_files()
    assert not [p for p in files if any(part.startswith(("test", "idlelib", "site-packages", "dist-packages"))
                                        for part in p.split("/"))]
    assert {"json/decoder.py", "email/utils.py", "functools.py"} <= files.keys()
    everything = corpus("all")
    assert everything.isascii() and "Return" in everything and "def " not in everything[:2000]
    assert text.HEADER + "functools.py" not in everything and everything.endswith("\n\n")
    assert all(c in CharTokenizer().index for c in set(everything))


def test_a_corrupted_corpus_is_refused(tmp_path, monkeypatch):
    raw = bytearray(gzip.decompress(text.CORPUS_FILE.read_bytes()))
    raw[1000] ^= 0x01
    bad = tmp_path / "stdlib_docstrings.txt.gz"
    bad.write_bytes(gzip.compress(bytes(raw)))
    monkeypatch.setattr(text, "CORPUS_FILE", bad)
    text.corpus_files.cache_clear()
    try:
        with pytest.raises(ValueError, match="does not match CORPUS_SHA256"):
            text.corpus_files()
    finally:
        text.corpus_files.cache_clear()


def test_held_out_split_is_whole_modules_about_a_tenth_of_the_text():
    assert text.held_out_units() == HELD_OUT
    train, test = corpus("train"), corpus("test")
    assert 0.09 <= len(test) / len(corpus("all")) <= text.HELD_OUT_SHARE
    assert len(train) + len(test) == len(corpus("all"))
    held_out = [p for p in text.corpus_files() if p.split("/")[0].removesuffix(".py") in HELD_OUT]
    assert "json/decoder.py" in held_out and "email/utils.py" not in held_out
    for path, body in text.corpus_files().items():           # each file's text is in exactly one split
        inside = path in held_out
        assert (body in test) == inside or len(body) < 200, path
        assert (body in train) != inside or len(body) < 200, path
    with pytest.raises(ValueError, match="split"):
        corpus("validation")


def test_baselines_rank_as_they_should_on_held_out_text():
    train, test = corpus("train"), corpus("test")
    unigram, bigram = text.unigram_loss(train, test), text.bigram_loss(train, test)
    assert 2.0 < bigram < unigram < 4.0                       # a previous character helps; both beat uniform
    assert unigram < torch.log(torch.tensor(CharTokenizer().d_vocab - 1.0)).item()


def test_build_corpus_keeps_only_distinct_ascii_stdlib_docstrings(tmp_path):
    doc = '"""Return the thing this function computes, with enough words to count."""'
    (tmp_path / "alpha.py").write_text(f'{doc}\n\ndef f():\n    {doc}\n\ndef g():\n    """Too short."""\n')
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "beta.py").write_text('"""Compute a café total for every customer in the list."""\n'
                                              'class C:\n    """A class whose docstring is long enough to keep."""\n')
    for skipped in ("test", "idlelib", "site-packages", "dist-packages"):
        (tmp_path / skipped).mkdir()
        (tmp_path / skipped / "gamma.py").write_text('"""A docstring that must never reach the corpus at all."""\n')
    built = text.build_corpus(tmp_path)
    assert built == ("### alpha.py\nReturn the thing this function computes, with enough words to count.\n\n"
                     "### pkg/beta.py\nA class whose docstring is long enough to keep.\n\n")


@pytest.mark.skipif(platform.python_version() != "3.11.7",
                    reason="the shipped corpus was built from CPython 3.11.7's standard library")
def test_the_builder_reproduces_the_shipped_file_on_the_python_it_came_from():
    assert "3.11.7" in text.CORPUS_SOURCE
    built = text.build_corpus()
    assert hashlib.sha256(built.encode("ascii")).hexdigest() == text.CORPUS_SHA256


def test_text_batch_windows_start_with_bos():
    data = torch.arange(1, 1000)
    batch = text_batch(data, 4, 16, torch.Generator().manual_seed(0))
    assert batch.shape == (4, 16) and (batch[:, 0] == 0).all()
    assert (batch[:, 2:] - batch[:, 1:-1] == 1).all()
