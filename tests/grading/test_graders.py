"""Grader validation: every grader passes its reference, fails each learner
mistake with the targeted hint, and accepts the natural alternatives."""

from __future__ import annotations

import pytest

from tests.grading.variants import Right, Wrong, all_variants
from utils.grading import grade, registry

EXERCISES = registry.load_all()
VARIANTS = all_variants()
CASES = [(ex_id, v) for ex_id, vs in VARIANTS.items() for v in vs]
SUMMARY = {"exercises": 0, "wrong": 0, "caught": 0, "right": 0, "accepted": 0}


@pytest.mark.parametrize("exercise_id", list(EXERCISES))
def test_reference_passes_its_own_grader(exercise_id):
    result = grade(EXERCISES[exercise_id], EXERCISES[exercise_id].reference)
    assert result.passed, result.summary()
    assert result.cases >= 1, "a grader that checks nothing cannot fail"
    SUMMARY["exercises"] += 1


@pytest.mark.parametrize("exercise_id", list(EXERCISES))
def test_every_exercise_has_three_mistakes_and_hints(exercise_id):
    wrong = [v for v in VARIANTS.get(exercise_id, []) if isinstance(v, Wrong)]
    assert len(wrong) >= 3, f"{exercise_id}: only {len(wrong)} learner-mistake variants in tests/grading"
    assert EXERCISES[exercise_id].hints, f"{exercise_id} has no hints"


def test_every_variant_targets_a_registered_exercise():
    assert set(VARIANTS) <= set(EXERCISES), set(VARIANTS) - set(EXERCISES)


@pytest.mark.parametrize("exercise_id,variant", CASES, ids=[f"{e}:{v.label}" for e, v in CASES])
def test_variant_is_graded_as_expected(exercise_id, variant):
    result = grade(EXERCISES[exercise_id], variant.fn)
    if isinstance(variant, Right):
        SUMMARY["right"] += 1
        assert result.passed, f"a correct alternative was rejected:\n{result.summary()}"
        SUMMARY["accepted"] += 1
        return
    SUMMARY["wrong"] += 1
    assert not result.passed, f"the mistake '{variant.label}' passed the grader"
    assert result.status == variant.status, result.summary()
    failure = result.failure
    if variant.mistake is not None:
        assert failure.mistake == variant.mistake, (
            f"expected the '{variant.mistake}' diagnosis, got {failure.mistake!r}:\n{result.summary()}")
    if variant.hint_contains is not None:
        assert variant.hint_contains in failure.hint, result.summary()
    assert failure.hint or failure.status == "not attempted", "a failure without a hint"
    SUMMARY["caught"] += 1
