"""Token sequences that reward in-context copying, for the induction-head models.

A model trained on a *fixed* repeat period can predict the second half from
position alone (attend `period` tokens back), which teaches a positional
shortcut. Copying one segment of random length from a random place to another
random place makes the only reliable strategy the real one: find the earlier
occurrence of the current token and predict what followed it.
"""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor

BOS = 0


def repeated_random_tokens(
    batch: int, seq_len: int, d_vocab: int, generator: torch.Generator | None = None,
) -> Int[Tensor, "batch 2*seq_len+1"]:
    """[BOS] + R + R with R uniform over the non-BOS tokens: the standard induction test sequence."""
    half = torch.randint(1, d_vocab, (batch, seq_len), generator=generator)
    bos = torch.full((batch, 1), BOS, dtype=torch.long)
    return torch.cat([bos, half, half], dim=1)


def copied_segment_batch(
    batch: int, n_ctx: int, d_vocab: int, min_len: int = 4, max_len: int = 19,
    generator: torch.Generator | None = None,
) -> Int[Tensor, "batch n_ctx"]:
    """[BOS] + random tokens, with one segment of random length copied to a later random place."""
    tokens = torch.randint(1, d_vocab, (batch, n_ctx), generator=generator)
    tokens[:, 0] = BOS
    for row in tokens:
        length = int(torch.randint(min_len, max_len + 1, (), generator=generator))
        src = int(torch.randint(1, n_ctx - 2 * length + 1, (), generator=generator))
        dst = int(torch.randint(src + length, n_ctx - length + 1, (), generator=generator))
        row[dst:dst + length] = row[src:src + length].clone()
    return tokens
