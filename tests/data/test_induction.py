"""The induction data: a wrong generator would teach a positional shortcut instead of induction."""

import torch

from utils.data.induction import BOS, copied_segment_batch, repeated_random_tokens


def test_repeated_random_tokens_is_bos_then_the_same_half_twice():
    tokens = repeated_random_tokens(8, 10, 30, torch.Generator().manual_seed(0))
    assert tokens.shape == (8, 21)
    assert (tokens[:, 0] == BOS).all() and (tokens[:, 1:] != BOS).all()
    assert torch.equal(tokens[:, 1:11], tokens[:, 11:])


def _copied_segment(row: torch.Tensor, min_len: int) -> tuple[int, int, int] | None:
    """(src, dst, length) of the longest repeated run of at least min_len tokens."""
    n = len(row)
    best = None
    for src in range(1, n):
        for dst in range(src + 1, n):
            length = 0
            while dst + length < n and src + length < dst and row[src + length] == row[dst + length]:
                length += 1
            if length >= min_len and (best is None or length > best[2]):
                best = (src, dst, length)
    return best


def test_copied_segments_vary_in_length_and_place():
    tokens = copied_segment_batch(64, 48, 64, generator=torch.Generator().manual_seed(0))
    assert tokens.shape == (64, 48) and (tokens[:, 0] == BOS).all()
    found = [_copied_segment(row.tolist(), 4) for row in tokens]
    assert all(found), "every sequence holds a copied segment of at least 4 tokens"
    lengths = {f[2] for f in found}
    offsets = {f[1] - f[0] for f in found}
    assert len(lengths) >= 8, "segment lengths must vary, or the model can learn them by heart"
    assert len(offsets) >= 15, "the copy distance must vary, or a fixed-offset head solves the task"


def test_copied_segment_batch_is_reproducible_from_its_generator():
    a = copied_segment_batch(4, 48, 64, generator=torch.Generator().manual_seed(3))
    b = copied_segment_batch(4, 48, 64, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
