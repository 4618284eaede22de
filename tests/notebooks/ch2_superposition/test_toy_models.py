"""2.1 "Toy models of superposition": the solved notebook runs and shows what its prose claims.

The notebook is executed once (all its training included, with fixed seeds); each test then
checks one claim against the values the notebook computed. Thresholds are loose enough to hold
for any model that shows the published effect, not for one set of numbers.
"""

from __future__ import annotations

import pytest

from utils.notebooks import pipeline

pytestmark = pytest.mark.slow

PATH = pipeline.CHAPTERS / "ch2_superposition" / "toy_models.ipynb"

READ = {
    "p_2d": "P_2D.tolist()",
    "represented_2d": "represented_2d",
    "norms_2d": "norms_2d.tolist()",
    "angles_sparse": "angles_sparse",
    "phase_counts_2d": "phase_counts_2d",
    "least_important_phase": "least_important_phase",
    "slider": "type(slider).__name__",
    "n_hidden_big": "M_BIG",
    "dims_min": "dims_big.min().item()",
    "dims_max": "dims_big.max().item()",
    "dims_sum_big": "dims_sum_big",
    "dims_per_feature_big": "dims_per_feature_big",
    "sticky_by_instance": "sticky_by_instance",
    "sticky_represented": "[sticky_fraction(dims_big[k][represented_big[k]], STICKY, 0.05).item() "
                          "for k in range(N_SWEEP)]",
    "n_represented_big": "represented_big.sum(-1).tolist()",
    "corr_cos": "corr_cos.tolist()",
    "anti_cos": "anti_cos.tolist()",
    "anti_loss_antipodal": "anti_loss_antipodal",
    "anti_loss_other": "anti_loss_other",
    "n_features_neuron": "N_NF",
    "n_neurons": "N_NEURONS",
    "p_neuron": "P_NEURON.tolist()",
    "neuron_represented": "neuron_represented",
    "mono_mean": "mono_mean",
    "monosemantic_neurons": "monosemantic_neurons",
    "dense_features_read": "dense_features_read",
    "neuron_restart_losses": "losses_neuron.tolist()",
    "dense_zero_weights": "W_neuron[0, :, 5:].abs().max().item()",
    "p_abs": "P_ABS.tolist()",
    "abs_computed": "abs_computed",
    "abs_features": "N_AF",
    "abs_neurons": "N_AN",
    "features_per_neuron": "features_per_neuron",
    "abs_features_per_neuron": "abs_features_per_neuron",
    "abs_neurons_per_feature": "abs_neurons_per_feature",
    "abs_dense_errors": "errors_abs[0].tolist()",
    "abs_dense_signs": "[sorted(W_in[0, takes_part[0, :, i], i].sign().tolist()) "
                       "for i in range(N_AF) if computed_abs[0, i]]",
}


# -- 2-D geometry --------------------------------------------------------------------------------

def test_dense_model_keeps_the_two_most_important_features(values):
    assert values["p_2d"][0] == pytest.approx(1.0)
    assert values["represented_2d"][0] == 2
    dense = values["norms_2d"][0]
    assert min(dense[:2]) > 0.9 and max(dense[2:]) < 0.3, dense


def test_sparsest_model_represents_all_five_as_a_pentagon(values):
    assert values["p_2d"][-1] == pytest.approx(1 / 50, rel=1e-3)
    assert values["represented_2d"][-1] == 5
    angles = values["angles_sparse"]
    assert len(angles) == 5 and sum(angles) == pytest.approx(360, abs=1e-3)
    assert max(abs(a - 72) for a in angles) < 8, angles


def test_more_features_as_sparsity_grows(values):
    counts = values["represented_2d"]
    assert counts[0] == 2 and counts[-1] == 5
    assert max(counts[:2]) == 2 and min(counts[-3:]) == 5, counts
    # "first four, and from about p = 0.18 on all five"
    assert 4 in counts
    first_all = next(p for p, c in zip(values["p_2d"], counts) if c == 5)
    assert 0.1 < first_all < 0.3 and all(c == 5 for p, c in zip(values["p_2d"], counts) if p <= first_all)


def test_phase_table(values):
    dense, sparse = values["phase_counts_2d"][0], values["phase_counts_2d"][-1]
    assert dense == [3, 2, 0] and sparse == [0, 0, 5]
    phases = values["least_important_phase"]
    assert "own dimension" not in phases
    assert phases[0] == "not represented" and phases[-1] == "superposed"
    # the prose's local-minimum example: kept at p = 0.42, dropped again at p = 0.27
    p = [round(v, 2) for v in values["p_2d"]]
    assert phases[p.index(0.42)] == "superposed" and phases[p.index(0.27)] == "not represented"


def test_slider_widget_builds_headless(values):
    assert values["slider"] == "interactive"


# -- feature dimensionality -------------------------------------------------------------------------

def test_feature_dimensionalities_lie_in_unit_interval_and_share_the_dimensions(values):
    assert values["dims_min"] >= -1e-6 and values["dims_max"] <= 1 + 1e-4
    assert max(values["dims_sum_big"]) <= values["n_hidden_big"] + 0.05


def test_dimensions_per_feature_fall_and_stick_at_one_half(values):
    dpf = values["dims_per_feature_big"]
    assert dpf[0] > dpf[-1]
    assert sum(abs(d - 0.5) < 0.03 for d in dpf) >= 2, dpf


def test_dimensionalities_cluster_on_sticky_fractions(values):
    # at suitable sparsity almost every feature sits within 0.05 of a sticky fraction (incl. 0)
    assert sum(f > 0.95 for f in values["sticky_by_instance"]) >= 3, values["sticky_by_instance"]
    represented = [f for f, n in zip(values["sticky_represented"], values["n_represented_big"]) if n >= 10]
    assert sum(f > 0.9 for f in represented) >= 3, values["sticky_represented"]


# -- correlated features ---------------------------------------------------------------------------

def test_anticorrelated_pairs_are_antipodal(values):
    for row in values["anti_cos"]:
        assert max(row) < -0.9, values["anti_cos"]


def test_antipodal_arrangement_has_the_lower_loss(values):
    other = values["anti_loss_other"]
    assert other != other or values["anti_loss_antipodal"] < other  # NaN when every restart found it


def test_correlated_pairs_are_orthogonal_when_sparse_and_merge_when_dense(values):
    dense, *sparse = values["corr_cos"]
    for row in sparse:
        assert max(abs(c) for c in row) < 0.1, values["corr_cos"]
    assert min(dense) > 0.9, values["corr_cos"]


# -- neurons -------------------------------------------------------------------------------------

def test_neuron_model_dense_keeps_five_features_sparse_keeps_all(values):
    counts = values["neuron_represented"]
    assert values["p_neuron"][0] == pytest.approx(1.0) and values["p_neuron"][-1] == pytest.approx(0.01)
    assert counts[0] == values["n_neurons"]
    assert values["dense_zero_weights"] < 0.05
    assert counts[-1] == values["n_features_neuron"]


def test_dense_neurons_are_monosemantic_on_the_five_most_important_features(values):
    # "every one of the 5 neurons is monosemantic ... features 0 to 4 ... the next probability looks the same"
    mono = values["monosemantic_neurons"]
    assert mono[0] == mono[1] == values["n_neurons"], mono
    assert values["dense_features_read"] == [0, 1, 2, 3, 4]
    assert values["mono_mean"][0] > 0.95 and values["mono_mean"][1] > 0.95, values["mono_mean"]


def test_sparse_neurons_are_polysemantic_and_both_kinds_coexist_in_between(values):
    mono, share, p = values["monosemantic_neurons"], values["mono_mean"], values["p_neuron"]
    # "from p = 0.1 on at most one neuron of the five is monosemantic, mean share about a half"
    sparse = [k for k in range(len(p)) if p[k] <= 0.1 + 1e-6]
    assert len(sparse) >= 3 and all(mono[k] <= 1 for k in sparse), mono
    assert all(0.3 < share[k] < 0.65 for k in sparse), share
    # "in between (p ~ 0.2) monosemantic and polysemantic neurons coexist"
    middle = min(range(len(p)), key=lambda k: abs(p[k] - 0.2))
    assert 1 <= mono[middle] <= values["n_neurons"] - 1, mono


def test_restarts_are_separate_models(values):
    # the best-of-restarts selection only means something if restarts end up in different places
    losses = values["neuron_restart_losses"]
    assert len(losses) == 4 * len(values["p_neuron"])
    assert len({round(v, 6) for v in losses}) == len(losses)


# -- computing |x| ----------------------------------------------------------------------------------

def test_abs_model_dense_computes_exactly_half_as_many_features_as_neurons(values):
    # "Dense, the model computes exactly m / 2 = 5 features, each with two neurons of its own"
    assert values["p_abs"][0] == pytest.approx(1.0) and values["p_abs"][-1] == pytest.approx(0.01)
    assert values["abs_computed"][0] == values["abs_neurons"] // 2
    assert values["abs_features_per_neuron"][0] == [1] * values["abs_neurons"]
    assert values["abs_neurons_per_feature"][0] == [2] * (values["abs_neurons"] // 2)
    # "one reads +x, the other -x"
    assert values["abs_dense_signs"] == [[-1.0, 1.0]] * (values["abs_neurons"] // 2), values["abs_dense_signs"]
    # the dropped features are really dropped, not half computed
    assert sum(e > 0.4 for e in values["abs_dense_errors"]) == values["abs_features"] - values["abs_neurons"] // 2


def test_abs_model_computes_more_features_than_neurons_allow_when_sparse(values):
    computed, p, bound = values["abs_computed"], values["p_abs"], values["abs_neurons"] // 2
    # "more than 5 from p = 0.1 on, and at p = 0.01 well over 1 feature per neuron, three times the bound"
    assert all(c > bound for c, q in zip(computed, p) if q <= 0.1 + 1e-6), computed
    assert computed[-1] >= 3 * bound, computed
    assert values["features_per_neuron"][-1] > 1.0, values["features_per_neuron"]
    assert computed[-1] > computed[0]


def test_sparse_abs_neurons_are_shared(values):
    # "every neuron takes part in computing several features and most features use three or more neurons"
    per_neuron, per_feature = values["abs_features_per_neuron"][-1], values["abs_neurons_per_feature"][-1]
    assert min(per_neuron) >= 2, per_neuron
    assert sum(n >= 3 for n in per_feature) > len(per_feature) / 2, per_feature
