"""1.1 "Build a transformer": the solved notebook runs and shows what its prose claims."""

from __future__ import annotations

import re
import string

import pytest

from utils.notebooks import pipeline

pytestmark = pytest.mark.slow

PATH = pipeline.CHAPTERS / "ch1_transformer_math" / "build_a_transformer.ipynb"

READ = {
    "embed_diff": "embed_diff",
    "resid_pre_diff": "resid_pre_diff",
    "ln_diff": "ln_diff",
    "pattern_diff": "pattern_diff",
    "rows_sum_to_one": "bool(torch.allclose(pattern.sum(-1), torch.ones_like(pattern[..., 0])))",
    "attn_out_diff": "attn_out_diff",
    "mlp_diff": "mlp_diff",
    "block_diff": "block_diff",
    "max_logit_diff": "max_logit_diff",
    "n_text_tokens": "text_tokens.shape[1]",
    "n_ctx": "cfg.n_ctx",
    "losses": "[my_loss, model_loss]",
    "scaled_std": "float((dots / math.sqrt(cfg.d_head)).std())",
    "raw_std": "float(dots.std())",
    "sqrt_d_head": "math.sqrt(cfg.d_head)",
    "gelu_gap": "float((gelu_new(grid) - F.gelu(grid)).abs().max())",
    "greedy_text": "greedy_text",
    "greedy_matches": "bool(greedy_matches)",
    "model_greedy_text": "tok.decode(generate(model, tokens, N_NEW)[0])",
    "prompt": "PROMPT",
    "n_new": "N_NEW",
    "samples": "samples",
    "temperature_top1": "[float((last_logits / T).softmax(-1).max()) for T in [0.5, 1.0, 2.0]]",
}


STUBS_READ = {"n_blocks": "len(params['blocks'])"}


def test_every_check_passes(executed):
    printed = executed.printed
    exercises = pipeline.notebook_exercises(PATH)
    assert len(exercises) >= 10
    for ex_id in exercises:
        assert re.search(rf"✓ {re.escape(ex_id)} passed", printed), f"{ex_id} did not pass in the solved notebook"


def test_each_piece_matches_the_models_cache(executed):
    values = executed.values
    assert values["embed_diff"] == 0.0 and values["resid_pre_diff"] == 0.0
    assert values["ln_diff"] < 1e-5
    assert values["pattern_diff"] < 1e-5 and values["rows_sum_to_one"]
    for name in ["attn_out_diff", "mlp_diff", "block_diff"]:
        assert values[name] < 1e-4, name


def test_full_forward_matches_the_model_to_1e_4(executed):
    values, printed = executed.values, executed.printed
    assert values["n_text_tokens"] <= values["n_ctx"]
    assert values["max_logit_diff"] < 1e-4
    assert f"max |your logits - model logits| = {values['max_logit_diff']:.2e}" in printed
    mine, model = values["losses"]
    assert abs(mine - model) < 1e-4


def test_the_scale_demo_shows_what_the_prose_says(executed):
    values = executed.values
    assert abs(values["raw_std"] - values["sqrt_d_head"]) < 0.2
    assert abs(values["scaled_std"] - 1.0) < 0.05


def test_gelu_new_differs_from_exact_gelu_enough_to_matter(executed):
    values = executed.values
    assert 1e-4 < values["gelu_gap"] < 1e-3


def test_lower_temperature_sharpens(executed):
    top1 = executed.values["temperature_top1"]
    assert top1[0] > top1[1] > top1[2]


def test_greedy_generation_equals_the_models_and_is_printed(executed):
    values, printed = executed.values, executed.printed
    assert values["greedy_matches"]
    assert values["greedy_text"] == values["model_greedy_text"]
    assert values["greedy_text"].startswith(values["prompt"])
    assert len(values["greedy_text"]) == len(values["prompt"]) + values["n_new"]
    assert repr(values["greedy_text"]) in printed


def _loops(text: str, length: int = 10, times: int = 3) -> bool:
    """Some stretch of `length` characters occurs at least `times` times (without overlapping)."""
    return any(text.count(text[i:i + length]) >= times for i in range(len(text) - length))


def _odd_share(text: str) -> float:
    """The share of characters that are not lowercase letters, spaces, or common punctuation."""
    return sum(c not in string.ascii_lowercase + " .,\n" for c in text) / len(text)


def test_greedy_loops_and_a_high_temperature_drifts_into_nonsense(executed):
    """The prose: greedy decoding soon walks into a loop; T = 1.5 drifts into nonsense."""
    values = executed.values
    new = {name: text[len(values["prompt"]):] for name, text in values["samples"].items()}
    assert _loops(values["greedy_text"][len(values["prompt"]):])
    assert not any(_loops(text) for text in new.values())
    assert _odd_share(new["T=1.5, top_k=None"]) > 2 * _odd_share(new["T=0.5, top_k=None"]) + 0.1


def test_sampled_texts_are_the_ones_printed(executed):
    values, printed = executed.values, executed.printed
    samples = values["samples"]
    assert len(samples) == 4 and len(set(samples.values())) > 1
    for setting, text in samples.items():
        assert text.startswith(values["prompt"])
        assert f"{setting:18} {text!r}" in printed


def test_learner_notebook_runs_up_to_the_first_check(chapter_run):
    """The stubs notebook runs cleanly until the first exercise's check (which is not attempted yet)."""
    stubs = chapter_run(PATH.parent.name).stubs[PATH.stem]
    first_check = min(check for _, check in pipeline.exercise_cells(stubs.nb, pipeline.notebook_exercises(PATH)).values())
    assert not [i for i, c in enumerate(stubs.nb.cells[:first_check]) if c.cell_type == "code"
                and any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert stubs.values["n_blocks"] == 2
