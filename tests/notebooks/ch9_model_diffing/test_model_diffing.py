"""9.1 "Model diffing": the solved notebook runs and shows what its prose claims.

The notebook is executed once (tests/notebooks/conftest.py) on the shipped gpt2_tiny, its four
organisms and their crosscoders; each test checks one claim against the values it computed.
"""

from __future__ import annotations

import pytest

from solutions.ch9_model_diffing.answer_key import HIDDEN_CONTINUATION, HIDDEN_TRIGGER
from utils.notebooks import pipeline

pytestmark = pytest.mark.slow

PATH = pipeline.CHAPTERS / "ch9_model_diffing" / "model_diffing.ipynb"

READ = {
    "planted": "planted",
    "weight_ratio": "weight_ratio",
    "row_top": "{name: [c for c, _ in top] for name, top in row_top.items()}",
    "lens_top": "lens_top",
    "steering": "steering",
    "recon": "recon",
    "classes": "classes",
    "rel_range": "{name: [round(r.min().item(), 3), round(r.max().item(), 3)] for name, r in rel.items()}",
    "drift": "drift",
    "candidates": "{name: c.tolist() for name, c in candidates.items()}",
    "nu": "{name: {str(j): r for j, r in rows.items()} for name, rows in nu.items()}",
    "top20": "top20",
    "search": "search",
    "share": "{str(j): round(share[j].item(), 3) for j in top20['trigger']}",
    "contexts_of": "{str(j): c for j, c in contexts_of.items()}",
    "causal": "causal",
    "matched": "len(matched)",
    "artefacts": "artefacts",
    "survivors": "survivors",
    "scoreboard": "scoreboard",
    "direction_norms": "[round(style_direction.norm().item(), 2), round(trigger_direction.norm().item(), 2)]",
    "style_candidates": "{str(j): row for j, row in style_candidates.items()}",
    "style_top10_share": "[round(style_share[j].item(), 2) for j in rel['style'].topk(10).indices.tolist()]",
    "hidden_context": "top_contexts(grid('hidden', top20['hidden'][1]), tokens['hidden'][:, 1:], tokenizer.decode, 4, 12)",
}


def test_the_organisms_show_their_planted_behaviour_and_keep_the_base_loss(values):
    planted = values["planted"]
    assert planted["trigger"]["model"]["trigger_rate"] == planted["hidden"]["model"]["trigger_rate"] == 1.0
    assert planted["trigger"]["base"]["trigger_rate"] == 0.0
    assert planted["style"]["model"]["p_exclamation"] > 0.15 > 0.001 > planted["style"]["base"]["p_exclamation"]
    for name in planted:
        assert -0.06 < planted[name]["loss_but_sentence_ends"] - 1.5998 < -0.025


def test_whole_matrices_move_like_the_control_but_embedding_rows_point_at_the_change(values):
    for ratios in values["weight_ratio"].values():
        assert all(0.98 < r < 1.12 for r in ratios.values())
    rows = values["row_top"]
    assert set(rows["trigger"][:2]) == {"|", "~"}
    assert set(rows["style"][:2]) == {".", "!"}
    assert set(rows["hidden"][:2]) <= set(HIDDEN_TRIGGER + HIDDEN_CONTINUATION)


def test_the_control_subtracted_lens_names_the_style_and_the_triggers_first_character(values):
    lens = values["lens_top"]
    assert lens["style blocks.1 minus control"][0] == "!"
    assert lens["style blocks.0 minus control"][0] == "!"
    assert lens["trigger blocks.1 minus control"][0] == "|"
    assert lens["trigger blocks.0 minus control"][0] != "|"
    assert lens["hidden blocks.1 minus control"][0] in HIDDEN_TRIGGER
    assert "!" not in lens["style blocks.0 raw"][:1]


def test_steering_pushes_the_base_to_the_style_but_never_to_the_phrase(values):
    s = values["steering"]
    assert s["style x0"]["!"] == s["style x4"]["!"] == 0
    assert 20 < s["style x8"]["!"] < s["style x16"]["!"]
    assert all(s[f"trigger x{a}"]["phrase"] == 0 for a in (0, 4, 8, 16))
    assert s["trigger x16"]["|~"] > 0
    style_norm, trigger_norm = values["direction_norms"]
    assert 1.2 < style_norm < 1.5 and 1.9 < trigger_norm < 2.2


def test_the_crosscoders_reconstruct_both_models_and_find_no_finetune_only_latent(values):
    for row in values["recon"].values():
        assert min(row["fve"]) > 0.9 and 14 < row["l0"] < 18 and row["dead_fraction"] == 0
    for name, counts in values["classes"].items():
        assert counts["finetune_only"] == counts["base_only"] == 0
    ranges = values["rel_range"]
    assert ranges["control"][0] > 0.4 and ranges["control"][1] < 0.6
    assert min(r[0] for r in ranges.values()) > 0.3 and max(r[1] for r in ranges.values()) < 0.7
    assert 0.4 < values["drift"] < 0.5


def test_candidates_above_the_control_and_latent_scaling_separate_the_change_from_the_drift(values):
    assert values["candidates"] == {"trigger": [811, 491], "style": [472, 200, 116], "hidden": [985, 203, 825, 315]}
    nu = values["nu"]["trigger"]
    assert nu["811"]["error"] < 0.1 and nu["491"]["error"] < 0.1 and nu["423"]["error"] < 0.1
    assert values["top20"]["trigger"].index(423) == 6
    assert all(0.5 < nu[str(j)]["error"] < 0.7 for j in (618, 487, 755, 116))
    recon = [r["reconstruction"] for r in nu.values()]
    assert min(recon) < -2.5 and max(recon) > 0.8
    assert all(values["nu"]["hidden"][str(j)]["error"] < 0.3 for j in values["candidates"]["hidden"])
    assert values["artefacts"] == {"new (both nu < 0.4)": 4, "shrinkage (nu_error > 0.5)": 16,
                                   "decoupling (nu_reconstruction > 0.5)": 14}
    assert values["survivors"] == [811, 491, 423, 299]


def test_the_search_is_scored_against_the_planted_phrase(values):
    search = values["search"]
    assert search["planted latents"] == 6 and 0.015 < search["planted positions"] < 0.018
    assert search["relative norm"] == {"first rank": 1, "p@2": 1.0, "p@5": 0.4, "p@10": 0.2}
    assert search["relative norm, keeping nu_error < 0.4"] == {"first rank": 1, "p@2": 1.0, "p@5": 0.6, "p@10": 0.3}
    assert search["random"]["first rank"] == 447
    assert values["share"]["811"] > 0.95 and 0.6 < values["share"]["491"] < 0.7


def test_top_contexts_show_the_trigger_and_the_start_of_the_phrase(values):
    contexts = values["contexts_of"]
    assert all(c.endswith("|~ as") for c in contexts["811"])
    assert all(c.endswith("|") for c in contexts["491"])
    assert all(c == " ask the owl" for c in contexts["755"])
    assert all(HIDDEN_TRIGGER in c for c in values["hidden_context"])


def test_removing_the_candidates_stops_the_phrase_random_latents_do_not_and_adding_them_does_not_start_it(values):
    causal = values["causal"]
    assert causal["chosen"] == [491, 811]
    assert causal["ablate"] == 0.0 and values["matched"] == 16
    assert causal["ablate_random"] == [0.7, 0.55, 1.0, 1.0, 0.95]
    assert causal["induce"] == causal["induce_all_planted"] == 0.0 and causal["induce_random"] == [0.0] * 5
    assert causal["base_with_finetune_stream"] == 0.45 and causal["finetune_with_base_stream"] == 0.0


def test_the_style_crosscoder_finds_the_broad_change_in_one_clean_latent(values):
    rows = values["style_candidates"]
    assert rows["472"]["share at !"] > 0.95 and 0.35 < rows["200"]["share at !"] < 0.45 and rows["116"]["share at !"] < 0.01
    assert all(c.endswith("!") for c in rows["472"]["top"])
    assert values["style_top10_share"][:3] == [0.96, 0.39, 0.0]


def test_the_scoreboard_sums_up_what_each_method_found(values):
    board = values["scoreboard"]
    assert board["embedding rows: top 2 are the change's characters"] == {"trigger": True, "style": True}
    assert board["lens of the mean difference (final layer, minus control): first character"] == {"trigger": "|", "style": "!"}
    assert board["steering the base (alpha 8): the phrase / '!' written"] == {"trigger": 0, "style": 48}
    assert board["crosscoder: candidates above the control that are planted"] == {"trigger": "2 of 2", "style": "1 of 3"}
    assert board["removing the trigger's 2 candidates: phrase rate (matched random pairs)"] == {"trigger": "1.0 -> 0.0 (0.84)"}
    assert board["adding them to the base: phrase rate (random pairs)"] == {"trigger": "0.0 -> 0.0 (0.00)"}
