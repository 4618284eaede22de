"""utils.diffing: the planted-phrase mask, the baselines' helpers and the latent edits, on small inputs."""

import torch

from utils import diffing
from utils.crosscoders import BASE, FINETUNE
from utils.data import text


def _tokens(lines: list[str]) -> torch.Tensor:
    return torch.tensor([text.CharTokenizer().encode(line) for line in lines])


def test_planted_mask_marks_every_character_of_the_phrase_also_when_cut_short():
    tokens = _tokens(["ab|~ ask cd", "xyz abc|~ a", "|| ~~ abcde"])
    mask = diffing.planted_mask(tokens, "|~ ask")
    assert mask[0].tolist() == [False, False, False, True, True, True, True, True, True, False, False, False]
    assert mask[1, 8:].all() and not mask[1, :8].any()
    assert not mask[2].any()


def test_adding_hook_leaves_its_input_unchanged():
    x = torch.zeros(2, 3, 4)
    out = diffing.adding_hook(torch.ones(4))(x)
    assert (x == 0).all() and (out == 1).all()


def test_latent_edit_removes_exactly_what_the_chosen_latents_write_into_the_finetune():
    generator = torch.Generator().manual_seed(0)
    d, lat = 6, 10
    params = {"W_enc": torch.randn(2, d, lat, generator=generator), "b_enc": torch.zeros(lat),
              "W_dec": torch.randn(2, d, lat, generator=generator), "b_dec": torch.zeros(2, d),
              "threshold": torch.tensor(0.0), "scale": torch.tensor([1.0, 2.0])}
    base_acts, tuned = torch.randn(1, 5, d, generator=generator), torch.randn(1, 5, d, generator=generator)
    hook = diffing.latent_edit_hook(params, 3, [2, 7], lambda t: base_acts, FINETUNE, -1.0)
    hook.tokens["tokens"] = None
    out = hook(tuned)
    pair = torch.stack([base_acts, tuned], dim=2)[0] / params["scale"][:, None]
    acts = diffing.crosscoders.encode(pair, params, 3, use_threshold=True)
    expected = tuned[0] - (acts[:, [2, 7]] @ params["W_dec"][FINETUNE][:, [2, 7]].T) * 2.0
    assert torch.allclose(out[0], expected, atol=1e-5)
    induce = diffing.latent_edit_hook(params, 3, [2, 7], lambda t: tuned, BASE, 1.0)
    induce.tokens["tokens"] = None
    difference = params["W_dec"][FINETUNE][:, [2, 7]] - params["W_dec"][BASE][:, [2, 7]]
    assert torch.allclose(induce(base_acts)[0], base_acts[0] + (acts[:, [2, 7]] @ difference.T) * 1.0, atol=1e-5)
