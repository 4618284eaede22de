"""The grading engine: `check(fn)` in a notebook, graders as pytest tests.

    from utils.grading import check
    check(layer_norm)                     # id inferred from the function's name
    check(my_norm, "ch1.layer_norm")      # or given explicitly
"""

from __future__ import annotations

import os
from collections.abc import Callable

from . import hints as _hints
from . import registry
from .checker import Checker, grade
from .devices import GRADING_DEVICE, gpu_note
from .feedback import CheckFailed, NotAttempted, Result
from .guidance import reference_used, use_reference
from .registry import Exercise, Mistake, exercise


def check(fn: Callable, exercise_id: str | None = None) -> None:
    """Grade `fn` against its exercise's reference; raise a short CheckFailed if it fails."""
    if not callable(fn):
        raise CheckFailed(f"check() needs the function itself, got {type(fn).__name__}",
                          hint="Pass the function without calling it: check(layer_norm), not check(layer_norm(x)).")
    ex = registry.get(exercise_id) if exercise_id else registry.for_function(getattr(fn, "__name__", ""))
    if reference_used(fn):
        failure = NotAttempted(f"{ex.name} is the reference implementation (use_reference)", exercise=ex.id,
                               hint="Write your own and run this check again.")
        if os.environ.get("NBGRADER_EXECUTION"):  # a grader run: never worth marks
            raise failure
        print(f"⚠ {failure.render()}")  # a learner's run continues past it
        return
    result = grade(ex, fn, device=GRADING_DEVICE)
    if result.passed:
        _hints.retire(ex.id)
        print(result.summary() + _where_graded())
        if note := gpu_note(ex, fn):
            print(note)
        return
    _hints.show_hints(ex, already_shown=result.failure.hint)
    raise result.failure.with_traceback(None)


def _where_graded() -> str:
    """Said only where it could surprise: the notebook computes on a GPU, the check on the CPU."""
    from utils.notebook import device

    notebook = device()
    return "" if notebook == GRADING_DEVICE.type else f" [graded on the CPU; your notebook computes on {notebook}]"


def hint(exercise_id: str) -> None:
    """Print the next hint for an exercise."""
    print(_hints.hint(registry.get(exercise_id)))


def hints(exercise_id: str) -> None:
    """Show the hint button for an exercise."""
    _hints.show_hints(registry.get(exercise_id))


__all__ = ["check", "hint", "hints", "use_reference", "exercise", "Mistake", "Checker", "CheckFailed", "Exercise", "Result",
           "grade", "registry"]
