"""Learner variants for the 1.1 "Build a transformer" graders."""

import torch
import torch.nn.functional as F

from tests.grading.variants import Right, Wrong


def _ln_unbiased(x, w, b, eps=1e-5):
    return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + eps) * w + b


def _ln_over_positions(x, w, b, eps=1e-5):
    mean, var = x.mean(1, keepdim=True), x.var(1, keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def _ln_eps_outside(x, w, b, eps=1e-5):
    centred = x - x.mean(-1, keepdim=True)
    return centred / (centred.pow(2).mean(-1, keepdim=True).sqrt() + eps) * w + b


def _ln_in_place(x, w, b, eps=1e-5):
    x -= x.mean(-1, keepdim=True)
    x /= torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return x * w + b


def _ln_no_affine(x, w, b, eps=1e-5):
    centred = x - x.mean(-1, keepdim=True)
    return centred / torch.sqrt(centred.pow(2).mean(-1, keepdim=True) + eps)


VARIANTS = {
    "ch1.layer_norm": [
        Wrong("unbiased variance (torch.var default)", _ln_unbiased, mistake="unbiased variance"),
        Wrong("normalised over positions", _ln_over_positions, mistake="wrong axis"),
        Wrong("eps added outside the sqrt", _ln_eps_outside, mistake="eps outside sqrt"),
        Wrong("edits x in place", _ln_in_place, mistake="in-place edit"),
        Wrong("forgot w and b", _ln_no_affine, mistake="forgot scale and shift"),
        Right("torch.nn.functional.layer_norm", lambda x, w, b, eps=1e-5: F.layer_norm(x, w.shape, w, b, eps)),
    ],
}
