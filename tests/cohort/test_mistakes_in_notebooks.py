"""Every chapter's common mistakes, handed in as notebook cells and graded the way `grade-class` does.

The class test (test_grade_class.py) runs one chapter through Dask and the sandbox; here each
chapter's learner mistakes (the graders' own `Wrong` variants) go through the part of that path
that depends on the notebook: the answered notebook with one answer replaced by a mistake, its
definitions run as `sandbox.run_definitions` runs them, then the exercise graded. Each mistake must
fail with its own diagnosis, as it does when the grader is called directly.
"""

from __future__ import annotations

import ast
import functools
import inspect
import json
import re
import types

import pytest

from utils.cohort import Limits, simulate
from utils.cohort.sandbox import run_definitions
from utils.grading.feedback import FAILED
from utils.grading.kernel import grade_by_name
from utils.notebooks import pipeline

pytestmark = pytest.mark.slow
NOTEBOOKS = [(p.parent.name, p.stem) for p in pipeline.learner_notebooks()]


def as_cell(variant, name: str) -> str | None:
    """The variant as a learner would write it in the notebook: its imports and the helpers it calls,
    then the function under the exercise's name. None when it leans on anything a learner's cell could
    not hold (the reference solutions, a partial, a library function)."""
    fn, bound = variant.fn, ""
    if isinstance(fn, functools.partial) and all(is_literal(v) for v in (*fn.args, *fn.keywords.values())):
        arguments = [repr(a) for a in fn.args] + [f"{k}={v!r}" for k, v in fn.keywords.items()]
        fn, bound = fn.func, f"\n{name} = functools.partial({fn.func.__name__}, {', '.join(arguments)})\n"
    if not isinstance(fn, types.FunctionType):
        return None
    imports, helpers, seen, todo = ["import functools"] if bound else [], [], {fn}, [fn]
    while todo:
        for alias, value in globals_used(todo.pop()).items():
            if isinstance(value, types.ModuleType) and not value.__name__.startswith(("tests", "solutions")):
                imports.append(f"import {value.__name__} as {alias}")
            elif isinstance(value, types.FunctionType) and value.__module__ == variant.fn.__module__:
                if value not in seen:   # a helper of the variants file: the learner would have written it too
                    seen.add(value)
                    todo.append(value)
                    helpers.append(inspect.getsource(value))
            elif getattr(value, "__module__", "").split(".")[0] in ("torch", "einops", "numpy", "math", "functools"):
                imports.append(f"from {value.__module__} import {value.__qualname__} as {alias}")
            else:
                return None
    source = inspect.getsource(fn)
    if not source.startswith("def "):
        return None
    main = source + bound if bound else re.sub(r"^def \w+\(", f"def {name}(", source, count=1)
    return "\n".join(sorted(set(imports))) + "\n\n" + "\n".join(helpers) + "\n" + main


def is_literal(value) -> bool:
    try:
        return ast.literal_eval(repr(value)) == value
    except (ValueError, SyntaxError):
        return False


def globals_used(fn: types.FunctionType) -> dict:
    """The module-level names a function reads, those of the functions and comprehensions inside it too."""
    names, codes = set(), [fn.__code__]
    while codes:
        code = codes.pop()
        names |= set(code.co_names)
        codes += [c for c in code.co_consts if isinstance(c, types.CodeType)]
    return {n: fn.__globals__[n] for n in sorted(names) if n in fn.__globals__}


@pytest.mark.parametrize("chapter, stem", NOTEBOOKS, ids=[f"{c}/{s}" for c, s in NOTEBOOKS])
def test_each_mistake_handed_in_as_a_notebook_cell_fails_with_its_diagnosis(chapter, stem):
    from tests.grading.variants import Wrong, all_variants

    variants = all_variants()
    cells = json.loads(simulate.to_bytes(simulate.answered(chapter, stem)))["cells"]
    exercises = simulate.exercises(chapter, stem)
    stubs = pipeline.exercise_cells(simulate.released(chapter, stem), {ex.id: ex for ex in exercises})
    tried, wrong = 0, []
    for ex in exercises:
        variant = next((v for v in variants.get(ex.id, []) if isinstance(v, Wrong) and v.status == FAILED
                        and (cell := as_cell(v, ex.name))), None)
        if variant is None:
            continue
        handed_in = [dict(c) for c in cells]
        handed_in[stubs[ex.id][0]] = {**cells[stubs[ex.id][0]], "source": as_cell(variant, ex.name)}
        namespace, failed = run_definitions(handed_in, exercises, Limits(), lambda message: None)
        result = grade_by_name(ex.id, namespace, cell_error=failed.get(ex.name))
        tried += 1
        diagnosed = (result.get("mistake") == variant.mistake if variant.mistake
                     else variant.hint_contains in (result.get("hint") or ""))
        if result["status"] != FAILED or not diagnosed:
            wrong.append(f"{ex.id} [{variant.label}]: {result['status']}, mistake {result.get('mistake')!r}, "
                         f"expected {variant.mistake or variant.hint_contains!r}")
    assert not wrong, "\n".join(wrong)
    assert tried >= min(5, len(exercises)), f"only {tried} of {len(exercises)} exercises had a usable mistake"
