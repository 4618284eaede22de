"""Grader validation: every grader passes its reference and has learner mistakes to fail.

The variants themselves run from their own files, tests/grading/<chapter>/test_<notebook>.py
(see variants.py), so `pytest` on one of those files runs just its variants."""

from __future__ import annotations

import pytest

from tests.grading.variants import SUMMARY, Wrong, all_variants
from utils.grading import grade, registry

EXERCISES = registry.load_all()
VARIANTS = all_variants()


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
