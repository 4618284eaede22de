"""A character-level corpus and tokenizer built from what every Python install has.

The corpus is the docstrings of the standard library: English prose about code,
offline, with no download and no licence question beyond Python's own.
"""

from __future__ import annotations

import ast
import string
import sysconfig
from functools import lru_cache
from pathlib import Path

import torch
from jaxtyping import Int
from torch import Tensor

BOS = "\x02"
UNKNOWN = "?"


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


@lru_cache(maxsize=1)
def stdlib_docstrings(max_chars: int = 3_000_000) -> str:
    """Module, class and function docstrings of the standard library, in a fixed file order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    pieces, total = [], 0
    for path in sorted(root.glob("*.py")) + sorted(root.glob("*/*.py")):
        if any(part.startswith(("test", "idlelib")) for part in path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 40 and doc.isascii():
                    pieces.append(doc.strip() + "\n\n")
                    total += len(pieces[-1])
        if total >= max_chars:
            break
    return "".join(pieces)


def text_batch(
    data: Int[Tensor, "n_chars"], batch: int, n_ctx: int, generator: torch.Generator | None = None,
) -> Int[Tensor, "batch n_ctx"]:
    """Random windows of the encoded corpus, each starting with BOS."""
    starts = torch.randint(0, len(data) - n_ctx, (batch,), generator=generator)
    windows = torch.stack([data[s:s + n_ctx - 1] for s in starts.tolist()])
    return torch.cat([torch.zeros(batch, 1, dtype=torch.long), windows], dim=1)
