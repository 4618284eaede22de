"""8.1 "Attribution graphs": the solved notebook runs and shows what its prose claims.

The notebook is executed once (tests/notebooks/conftest.py) on the shipped `facts_4l`, its
transcoders and SAE, and `gpt2_tiny` with its transcoders; each test checks one claim against the
values it computed.
"""

from __future__ import annotations

import pytest

from utils.notebooks import pipeline

pytestmark = pytest.mark.slow

PATH = pipeline.CHAPTERS / "ch8_attribution_graphs" / "attribution_graphs.ipynb"

READ = {
    "accuracy": "accuracy",
    "lens": "lens",
    "transcoders": "rows",
    "attn_gap": "attn_gap",
    "error_gap": "error_gap",
    "exact_gap": "exact_gap",
    "row_gap": "row_gap",
    "input_gap": "input_gap",
    "influence_gap": "influence_gap",
    "kept_nodes": "kept_nodes",
    "scores": "scores",
    "label_counts": "label_counts",
    "sae_counts": "sae_counts",
    "ablation_size": "ablation_size",
    "frequent": "frequent.sum(-1).tolist()",
    "n_features": "len(rm.features)",
    "ablation_corr": "ablation_corr",
    "hop": "hop",
    "text_scores": "text_scores",
    "node_effect": "node_effect",
    "top_senders": "top_senders",
    "supernode_edges": "{f'{group_names[s]} -> {group_names[t]}': round(super_adj[t, s].item(), 3) "
                       "for t in range(len(group_names)) for s in range(len(group_names)) if super_adj[t, s] != 0}",
    "view_nodes": "len(at.view_data(pruned, labels, cards)['nodes'])",
}


def test_the_model_composes_two_hops(values):
    acc = values["accuracy"]
    assert acc["person -> city"] == acc["city -> country"] == 1.0
    assert acc["two hops, trained people"] > 0.99
    assert 0.9 < acc["two hops, held-out people"] < 0.97


def test_the_lens_finds_the_city_after_the_name_not_on_it(values):
    lens = values["lens"]
    assert max(lens["surname"]) < 0.4
    assert min(lens["next word"][1:]) > 0.9
    assert lens["last word"][2] > 0.85 and lens["last word"][0] < 0.4


def test_the_replacement_model_is_exact_and_the_learner_parts_match(values):
    assert values["exact_gap"] < 1e-4
    assert values["attn_gap"] < 1e-5 and values["error_gap"] < 1e-5
    assert values["row_gap"] < 1e-5 and values["input_gap"] < 1e-4 and values["influence_gap"] < 1e-6


def test_transcoders_beside_the_sae(values):
    rows = values["transcoders"]
    per_layer, clt, sae = rows["per-layer transcoder"], rows["cross-layer transcoder"], rows["SAE on MLP outputs"]
    for row in (per_layer, clt, sae):
        assert row["L0"] <= 16.01 and max(row["nMSE"]) < 0.1
    assert 0.85 < per_layer["two-hop held-out"] < 0.92 and 0.85 < clt["two-hop held-out"] < 0.92
    assert per_layer["KL"] < 0.1 and sae["KL"] < per_layer["KL"]
    assert all(c < p for c, p in zip(clt["nMSE"][1:], per_layer["nMSE"][1:]))
    assert sae["two-hop held-out"] > per_layer["two-hop held-out"]


def test_a_few_dozen_latents_per_layer_fire_often_and_16_per_position_are_active(values):
    assert all(25 <= n <= 45 for n in values["frequent"]), values["frequent"]
    assert 8 * 4 * 16 - 16 <= values["n_features"] <= 8 * 4 * 16


def test_the_graph_is_pruned_to_a_readable_size_and_scores_high(values):
    kept = values["kept_nodes"]
    assert kept["logit"] == 1 and kept["embed"] == 8 and 40 <= kept["feature"] <= 90
    assert values["scores"]["replacement"] > 0.85 and values["scores"]["completeness"] > 0.95


def test_features_are_named_after_cities_and_countries(values):
    counts, sae = values["label_counts"], values["sae_counts"]
    assert counts[0][0] <= 5 and all(c[1] >= 31 for c in counts[1:]), counts
    assert all(c[2] > 0 for c in counts) and sum(c[3] for c in counts) > 0, "country and person features exist"
    assert sum(c[0] for c in sae) > sum(c[0] for c in counts), "the prose says the SAE has more city latents"
    assert sum(c[3] for c in counts) > 2 * sum(c[3] for c in sae), "the prose says far fewer SAE person features"
    assert [c[2] for c in counts] == sorted(c[2] for c in counts), "the prose lists country features growing by layer"


def test_the_supernode_graph_runs_name_city_country_answer(values):
    edges = values["supernode_edges"]
    assert edges["embeddings -> city Westholm"] > 2
    assert edges["city Westholm -> country Dunmark"] > 1
    assert edges["country Dunmark -> answer logit"] > 3
    assert values["view_nodes"] == sum(values["kept_nodes"].values())


def test_ablations_match_the_graph_only_with_layer_norm_frozen(values):
    corr, size = values["ablation_corr"], values["ablation_size"]
    assert corr["LayerNorm frozen"] > 0.95 and corr["both frozen"] > 0.95
    assert abs(corr["real model"]) < 0.3 and abs(corr["attention frozen"]) < 0.3
    assert size["real model"] < 0.35 and 0.9 < size["LayerNorm frozen"] < 1.2


def test_the_hidden_city_is_in_the_graph_and_swapping_it_moves_the_answer(values):
    trained, heldout = values["hop"]["trained people"], values["hop"]["held-out people"]
    assert trained["city in graph"] >= 0.95 and heldout["city in graph"] == 1.0
    assert heldout["strongest city feature right"] >= 0.9 > trained["strongest city feature right"]
    assert heldout["swap"] >= 0.25 and heldout["swap"] >= heldout["control"] + 0.2
    assert trained["swap"] <= 0.15 and trained["control"] <= 0.05
    assert heldout["swap x2"] > heldout["control x2"] + 0.2 and trained["swap x2"] > trained["control x2"] + 0.2
    assert min(r["lowest replacement"] for r in (trained, heldout)) > 0.85


def test_error_mass_grows_on_text_unlike_the_training_text(values):
    scores = values["text_scores"]
    own = min(scores["held-out docstring"]["replacement"], scores["another one"]["replacement"])
    assert own > 0.85
    assert scores["random letters"]["replacement"] < 0.75 and scores["a repeated pattern"]["replacement"] < 0.85


def test_patching_ranks_the_embedding_and_mlps_then_a_layer_0_head(values):
    effect = values["node_effect"]
    assert values["top_senders"][:5] == ["embed", "m0", "m3", "m2", "m1"] or \
        set(values["top_senders"][:5]) == {"embed", "m0", "m1", "m2", "m3"}
    assert values["top_senders"][5] == "a0.1"
    assert effect["embed"] < -20 and effect["m0"] < -15
