"""The shipped IOI model (Chapter 4) solves the task on prompts it never trained on."""

import pytest
import torch

from utils.data import ioi
from utils.models import load_model


@pytest.fixture(scope="module")
def held_out():
    model = load_model("ioi_3l")
    batch = ioi.ioi_batch(500, "test", generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        clean = model(batch.clean)[:, -1]
        corrupted = model(batch.corrupted)[:, -1]
    return batch, clean, corrupted


def _logit_diff(logits, batch):
    return logits.gather(1, batch.io[:, None])[:, 0] - logits.gather(1, batch.s[:, None])[:, 0]


def test_accuracy_on_held_out_templates_and_name_pairs(held_out):
    batch, clean, _ = held_out
    assert set(batch.templates.tolist()) <= set(ioi.HELD_OUT_TEMPLATES)
    accuracy = (clean.argmax(-1) == batch.io).float().mean().item()
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
