"""Learner-like implementations used to validate graders.

Each test module under tests/grading/<chapter>/ defines `VARIANTS`: for each
exercise id, wrong implementations (a mistake learners make) and right ones
(a natural alternative). The harness in test_graders.py checks that every
wrong one fails *with its targeted hint* and every right one passes.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass


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
