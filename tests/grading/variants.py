"""Learner-like implementations used to validate graders.

Each test module under tests/grading/<chapter>/ defines `VARIANTS`: for each
exercise id, wrong implementations (a mistake learners make) and right ones
(a natural alternative). Each such module imports `test_variant_is_graded_as_expected` below; conftest.py
parametrizes it with that module's VARIANTS, so every wrong one must fail *with
its targeted hint* and every right one pass, and `pytest tests/grading -k <id>`
runs one exercise's variants.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from collections import Counter
from dataclasses import dataclass

# Counts for the closing summary line (tests/conftest.py); "caught <chapter>" is per chapter.
SUMMARY: Counter = Counter()


@dataclass(frozen=True)
class Wrong:
    """A mistaken implementation; grading must fail and diagnose `mistake` (a Mistake name)
    or, for property checks, show a hint containing `hint_contains`."""

    label: str
    fn: Callable
    mistake: str | None = None
    hint_contains: str | None = None
    status: str = "failed"


@dataclass(frozen=True)
class Right:
    """A correct alternative implementation; grading must pass."""

    label: str
    fn: Callable


def all_variants() -> dict[str, list[Wrong | Right]]:
    import tests.grading as package

    found: dict[str, list[Wrong | Right]] = {}
    for info in pkgutil.walk_packages(package.__path__, prefix="tests.grading."):
        if info.name.rsplit(".", 1)[-1].startswith("test_") and info.name.count(".") == 3:
            module = importlib.import_module(info.name)
            for exercise_id, variants in getattr(module, "VARIANTS", {}).items():
                found.setdefault(exercise_id, []).extend(variants)
    return found


def test_variant_is_graded_as_expected(exercise_id, variant):
    from utils.grading import grade, registry

    result = grade(registry.get(exercise_id), variant.fn)
    if isinstance(variant, Right):
        SUMMARY["right"] += 1
        assert result.passed, f"a correct alternative was rejected:\n{result.summary()}"
        SUMMARY["accepted"] += 1
        return
    chapter = exercise_id.split(".")[0]
    SUMMARY["wrong"] += 1
    SUMMARY[f"wrong {chapter}"] += 1
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
    SUMMARY[f"caught {chapter}"] += 1
