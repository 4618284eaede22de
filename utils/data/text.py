"""A character-level corpus and tokenizer for gpt2_tiny, shipped with the course.

The corpus is the docstrings of CPython's standard library: English prose about code, under the
Python Software Foundation licence, stored in `corpus/stdlib_docstrings.txt.gz` so that every machine
trains and evaluates on the same text, whatever Python it runs. `corpus(split)` loads it, after
checking its sha256 against `CORPUS_SHA256`.

The file holds one block per source file of the standard library, headed by a line
`### <path under Lib/>` and followed by that file's docstrings, each ending with a blank line. The
headers are stripped on loading; only the docstrings reach the model.

Held out ("test" split): whole top-level modules and packages (`email/` and everything under it
is one unit). The units are visited in the order of the sha256 of their name, and each is held out
if the held-out text stays within `HELD_OUT_SHARE` (10%) of the characters; everything else is the
"train" split. The model never trains on a held-out unit, so its loss there measures what
generalises beyond the modules it read.

Regenerating the file (a maintainer's job, not a learner's): `python -m utils.data.text build`
reads the running interpreter's standard library with `build_corpus` and rewrites the file; then
set `CORPUS_SHA256` and `CORPUS_SOURCE` to what it prints and retrain gpt2_tiny
(`python -m utils.models.train gpt2_tiny`). Different Python versions give different text.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import string
import sysconfig
from functools import lru_cache
from pathlib import Path

import torch
from jaxtyping import Int
from torch import Tensor

BOS = "\x02"
UNKNOWN = "?"

CORPUS_FILE = Path(__file__).resolve().parent / "corpus" / "stdlib_docstrings.txt.gz"
CORPUS_SHA256 = "48ee212651d76cf8f07fb120decf31d03b2d564a6d1dd5a6e006194b4c06833a"
CORPUS_SOURCE = "CPython 3.11.7 standard library (Lib/), docstrings only"
HEADER = "### "
HELD_OUT_SHARE = 0.10
SPLITS = ("train", "test", "all")


class CharTokenizer:
    """One token per character: BOS, newline and the 95 printable ASCII characters."""

    def __init__(self) -> None:
        self.chars = [BOS, "\n"] + [c for c in string.printable if c.isprintable()]
        self.index = {c: i for i, c in enumerate(self.chars)}
        self.bos_token_id = 0

    @property
    def d_vocab(self) -> int:
        return len(self.chars)

    def encode(self, text: str, prepend_bos: bool = True) -> list[int]:
        ids = [self.index.get(c, self.index[UNKNOWN]) for c in text]
        return [self.bos_token_id] + ids if prepend_bos else ids

    def decode(self, ids) -> str:
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        return "".join(self.chars[i] for i in ids if i != self.bos_token_id)

    def __call__(self, text: str, prepend_bos: bool = True) -> Int[Tensor, "1 pos"]:
        return torch.tensor([self.encode(text, prepend_bos)])


# -- the shipped corpus ----------------------------------------------------------------------------

def _unit(path: str) -> str:
    """The top-level module or package a file belongs to: 'email/mime/text.py' -> 'email'."""
    return path.split("/")[0].removesuffix(".py")


@lru_cache(maxsize=1)
def corpus_files() -> dict[str, str]:
    """{path under Lib/: that file's docstrings} from the shipped file, in file order, hash-checked."""
    if not CORPUS_FILE.exists():
        raise FileNotFoundError(f"{CORPUS_FILE} is missing; it ships with the course (restore it from git)")
    raw = gzip.decompress(CORPUS_FILE.read_bytes())
    digest = hashlib.sha256(raw).hexdigest()
    if digest != CORPUS_SHA256:
        raise ValueError(f"{CORPUS_FILE.name} does not match CORPUS_SHA256 in {Path(__file__).name} "
                         f"(expected {CORPUS_SHA256}, got {digest}): the file is corrupted or was rebuilt without "
                         f"updating the hash. Restore it from git, or see this module's docstring to rebuild it.")
    files: dict[str, list[str]] = {}
    for line in raw.decode("ascii").removesuffix("\n").split("\n"):
        if line.startswith(HEADER):
            files[line.removeprefix(HEADER)] = lines = []
        else:
            lines.append(line)
    return {path: "\n".join(lines) + "\n" for path, lines in files.items()}


@lru_cache(maxsize=1)
def held_out_units() -> tuple[str, ...]:
    """The top-level modules and packages of the test split (see the module docstring for the rule)."""
    sizes: dict[str, int] = {}
    for path, body in corpus_files().items():
        sizes[_unit(path)] = sizes.get(_unit(path), 0) + len(body)
    budget, chosen = HELD_OUT_SHARE * sum(sizes.values()), []
    for unit in sorted(sizes, key=lambda u: hashlib.sha256(u.encode()).hexdigest()):
        if sizes[unit] <= budget:
            chosen.append(unit)
            budget -= sizes[unit]
    return tuple(sorted(chosen))


@lru_cache(maxsize=3)
def corpus(split: str = "train") -> str:
    """The docstrings of the "train" split, the held-out "test" split, or "all" of them, in file order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    held_out = set(held_out_units())
    return "".join(body for path, body in corpus_files().items()
                   if split == "all" or (_unit(path) in held_out) == (split == "test"))


def text_batch(
    data: Int[Tensor, "n_chars"], batch: int, n_ctx: int, generator: torch.Generator | None = None,
) -> Int[Tensor, "batch n_ctx"]:
    """Random windows of the encoded corpus, each starting with BOS."""
    starts = torch.randint(0, len(data) - n_ctx, (batch,), generator=generator)
    windows = torch.stack([data[s:s + n_ctx - 1] for s in starts.tolist()])
    return torch.cat([torch.zeros(batch, 1, dtype=torch.long), windows], dim=1)


# -- held-out loss and its baselines -----------------------------------------------------------------

def _ids(text: str) -> Tensor:
    return torch.tensor(CharTokenizer().encode(text, prepend_bos=False))


def unigram_loss(train: str, test: str) -> float:
    """Nats per character on `test` of character frequencies counted on `train` (add-one smoothing)."""
    d_vocab = CharTokenizer().d_vocab
    counts = torch.bincount(_ids(train), minlength=d_vocab)[1:].double() + 1    # every character but BOS
    return -(counts / counts.sum()).log()[_ids(test) - 1].mean().item()


def bigram_loss(train: str, test: str) -> float:
    """Nats per character on `test` (every character after the first) of next-character frequencies
    given the previous character, counted on `train` (add-one smoothing)."""
    d_vocab = CharTokenizer().d_vocab
    train_ids, test_ids = _ids(train) - 1, _ids(test) - 1
    counts = torch.ones(d_vocab - 1, d_vocab - 1, dtype=torch.float64)
    counts.index_put_((train_ids[:-1], train_ids[1:]), torch.ones(len(train_ids) - 1, dtype=torch.float64),
                      accumulate=True)
    log_p = (counts / counts.sum(-1, keepdim=True)).log()
    return -log_p[test_ids[:-1], test_ids[1:]].mean().item()


@torch.no_grad()
def model_loss(model, text: str, n_ctx: int, batch: int = 256) -> float:
    """Nats per character of a character model on `text`, read in consecutive windows of n_ctx - 1
    characters, each behind a BOS: every character is predicted once, from at most n_ctx - 2
    characters before it in its window."""
    ids = _ids(text)
    device = next(model.parameters()).device
    total, count = 0.0, 0
    windows = [ids[s:s + n_ctx - 1] for s in range(0, len(ids), n_ctx - 1)]
    for size in sorted({len(w) for w in windows}):         # the last window may be shorter
        same = torch.stack([w for w in windows if len(w) == size])
        for chunk in same.split(batch):
            tokens = torch.cat([torch.zeros(len(chunk), 1, dtype=torch.long), chunk], dim=1).to(device)
            log_p = model(tokens)[:, :-1].log_softmax(-1).double()
            total -= log_p.gather(-1, tokens[:, 1:, None]).sum().item()
            count += chunk.numel()
    return total / count


# -- rebuilding it (provenance) --------------------------------------------------------------------

def build_corpus(root: Path | None = None) -> str:
    """The corpus file's text, built from a standard library (the running interpreter's by default).

    Every `.py` file under `root`, sorted by path, except tests (`test*` anywhere in the path),
    `idlelib` and any installed packages (`site-packages`, `dist-packages`). From each: the module,
    class and function docstrings (`ast.get_docstring`, so indentation is cleaned), keeping those
    longer than 40 characters, ASCII only, and each distinct docstring once (its first occurrence).
    """
    root = Path(root or sysconfig.get_paths()["stdlib"])
    seen: set[str] = set()
    blocks = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(part.startswith(("test", "idlelib", "site-packages", "dist-packages")) for part in rel.parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        docs = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                doc = doc.strip() if doc else ""
                if len(doc) > 40 and doc.isascii() and doc not in seen and \
                        not any(line.startswith(HEADER) for line in doc.split("\n")):
                    seen.add(doc)
                    docs.append(doc + "\n\n")
        if docs:
            blocks.append(f"{HEADER}{rel.as_posix()}\n" + "".join(docs))
    return "".join(blocks)


def write_corpus(text: str, path: Path = CORPUS_FILE) -> str:
    """Write the corpus gzip-compressed (byte-for-byte reproducible: no timestamp); return its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text.encode("ascii"), compresslevel=9, mtime=0))
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m utils.data.text", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build", "info"],
                        help="build: rewrite the corpus file from this interpreter's standard library; "
                             "info: sizes and held-out units of the shipped corpus")
    args = parser.parse_args(argv)
    if args.command == "build":
        text = build_corpus()
        digest = write_corpus(text)
        print(f"wrote {CORPUS_FILE} ({CORPUS_FILE.stat().st_size:,} bytes compressed, {len(text):,} characters)")
        print(f'CORPUS_SHA256 = "{digest}"')
        print(f"built from {sysconfig.get_paths()['stdlib']} (update CORPUS_SOURCE, then retrain gpt2_tiny)")
    else:
        print(f"{CORPUS_SOURCE}: {len(corpus_files())} files, sha256 {CORPUS_SHA256}")
        for split in SPLITS:
            print(f"{split:5}: {len(corpus(split)):,} characters")
        print("held out:", ", ".join(held_out_units()))


if __name__ == "__main__":
    main()
