"""The grading side of `python -m utils.grade`, run inside the notebook's kernel."""

from __future__ import annotations

from .checker import grade
from .devices import GRADING_DEVICE
from .feedback import ERROR, NOT_ATTEMPTED
from .guidance import reference_used
from .registry import get


def grade_by_name(exercise_id: str, namespace: dict, cell_error: str | None = None) -> dict:
    """Grade the function the notebook defined for `exercise_id`, as a JSON-ready dict."""
    ex = get(exercise_id)
    fn = namespace.get(ex.name)
    if cell_error is not None:
        return {"exercise": ex.id, "status": ERROR, "detail": f"{ex.name}: {cell_error}"}
    if fn is None:
        return {"exercise": ex.id, "status": NOT_ATTEMPTED, "detail": f"{ex.name} is not defined in the notebook"}
    if reference_used(fn):
        return {"exercise": ex.id, "status": NOT_ATTEMPTED, "detail": f"{ex.name} is the reference (use_reference)"}
    if not callable(fn):
        return {"exercise": ex.id, "status": ERROR, "detail": f"{ex.name} is a {type(fn).__name__}, not a function"}
    return grade(ex, fn, device=GRADING_DEVICE).as_dict()
