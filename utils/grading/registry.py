"""The registry of exercises: one id → reference, grader, hints, notebook.

Everything about an exercise is found from where its grader lives. The grader
`test_layer_norm` in `utils/grading/ch1_transformer_math/build_a_transformer.py`
is exercise `ch1.layer_norm`; its reference is `layer_norm` in
`solutions/ch1_transformer_math/build_a_transformer.py`; its notebook is
`chapters/ch1_transformer_math/build_a_transformer.ipynb`.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_EXERCISES: dict[str, "Exercise"] = {}


@dataclass(frozen=True)
class Mistake:
    """A mistake learners make, recognised by the wrong output it produces.

    `output` takes the same arguments as the exercise function and returns what
    a function with this mistake would return; a failing candidate whose output
    matches it gets `hint` instead of the generic one.
    """

    name: str
    hint: str
    output: Callable[..., Any]


@dataclass
class Exercise:
    id: str                      # "ch1.layer_norm"
    grader: Callable             # test_<name>(check)
    chapter_dir: str             # "ch1_transformer_math"
    notebook_stem: str           # "build_a_transformer"
    hints: tuple[str, ...] = ()
    difficulty: int = 1          # 1 easy … 3 hard
    minutes: int = 10
    timeout: float = 10.0        # seconds per call of the learner's function
    atol: float = 1e-5
    rtol: float = 1e-4
    points: int = 1
    timeout_hint: str = ""       # what to say when the learner's code runs out of time
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.id.split(".", 1)[1]

    @property
    def chapter(self) -> str:
        return self.id.split(".", 1)[0]

    @property
    def solution_module(self) -> str:
        return f"solutions.{self.chapter_dir}.{self.notebook_stem}"

    @property
    def grader_path(self) -> Path:
        return ROOT / "utils" / "grading" / self.chapter_dir / f"{self.notebook_stem}.py"

    @property
    def solution_path(self) -> Path:
        return ROOT / "solutions" / self.chapter_dir / f"{self.notebook_stem}.py"

    @property
    def notebook_path(self) -> Path:
        return ROOT / "chapters" / self.chapter_dir / f"{self.notebook_stem}.ipynb"

    @cached_property
    def reference(self) -> Callable:
        return getattr(importlib.import_module(self.solution_module), self.name)


def exercise(*, hints: list[str] | tuple[str, ...] = (), difficulty: int = 1, minutes: int = 10,
             timeout: float = 10.0, atol: float = 1e-5, rtol: float = 1e-4, points: int = 1,
             timeout_hint: str = "") -> Callable:
    """Register `test_<name>` in `utils/grading/<chapter_dir>/<notebook>.py` as an exercise."""

    def register(grader: Callable) -> Callable:
        parts = grader.__module__.split(".")
        if parts[:2] != ["utils", "grading"] or len(parts) != 4 or not grader.__name__.startswith("test_"):
            raise ValueError(f"graders live in utils/grading/<chapter>/<notebook>.py as test_<name>: "
                             f"{grader.__module__}.{grader.__name__}")
        chapter_dir, stem = parts[2], parts[3]
        ex = Exercise(id=f"{chapter_dir.split('_')[0]}.{grader.__name__.removeprefix('test_')}",
                      grader=grader, chapter_dir=chapter_dir, notebook_stem=stem, hints=tuple(hints),
                      difficulty=difficulty, minutes=minutes, timeout=timeout, atol=atol, rtol=rtol,
                      points=points, timeout_hint=timeout_hint)
        if ex.id in _EXERCISES and _EXERCISES[ex.id].grader.__module__ != grader.__module__:
            raise ValueError(f"exercise id {ex.id} is defined twice")
        if clash := next((other for other in _EXERCISES.values() if other.name == ex.name and other.id != ex.id), None):
            raise ValueError(f"exercise {ex.id} has the function name of {clash.id}: `check({ex.name})` finds an "
                             f"exercise by its function's name, so names must be unique across the course")
        _EXERCISES[ex.id] = ex
        grader.exercise = ex
        return grader

    return register


def load_all() -> dict[str, Exercise]:
    """Import every grader module so that all exercises are registered."""
    import utils.grading as package

    for info in pkgutil.walk_packages(package.__path__, prefix="utils.grading."):
        if info.name.count(".") == 3 and info.name.split(".")[2].startswith("ch"):
            importlib.import_module(info.name)
    return dict(sorted(_EXERCISES.items(), key=lambda kv: _order(kv[1])))


def for_chapter(chapter_dir: str) -> list[Exercise]:
    """One chapter's exercises in notebook order, importing only that chapter's graders."""
    _load_modules(_grader_modules(chapter_dir.split("_")[0]))
    return sorted((ex for ex in _EXERCISES.values() if ex.chapter_dir == chapter_dir), key=_order)


def _order(ex: Exercise) -> tuple:
    return ex.chapter_dir, ex.notebook_stem, ex.grader.__code__.co_firstlineno


def _load_modules(names: list[str]) -> None:
    for name in names:
        importlib.import_module(name)


def _grader_modules(chapter: str = "ch") -> list[str]:
    """Grader module names (utils.grading.<chapter_dir>.<notebook>) of chapters whose id starts so."""
    found = []
    for path in sorted((ROOT / "utils" / "grading").glob("ch*/*.py")):
        chapter_dir = path.parent.name
        if path.name != "__init__.py" and (chapter_dir.split("_")[0] == chapter or chapter == "ch"):
            found.append(f"utils.grading.{chapter_dir}.{path.stem}")
    return found


def get(exercise_id: str) -> Exercise:
    if exercise_id in _EXERCISES:
        return _EXERCISES[exercise_id]
    _load_modules(_grader_modules(exercise_id.split(".", 1)[0]))  # just the exercise's chapter: a fast first check
    if exercise_id in _EXERCISES:
        return _EXERCISES[exercise_id]
    exercises = load_all()
    if exercise_id in exercises:
        return exercises[exercise_id]
    close = difflib.get_close_matches(exercise_id, list(exercises), n=3)
    raise KeyError(f"no exercise {exercise_id!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))


def grader_modules_for(name: str) -> list[str]:
    """Grader modules that define `test_<name>`, found by reading their sources (nothing is imported)."""
    pattern = re.compile(rf"^def test_{re.escape(name)}\(", flags=re.MULTILINE)
    return [module for module in _grader_modules()
            if pattern.search((ROOT / (module.replace(".", "/") + ".py")).read_text())]


def for_function(name: str) -> Exercise:
    """The exercise whose function is called `name` (names are unique across the course).

    Only the grader module that defines `test_<name>` is imported (found by reading the sources),
    so a learner's first check does not wait for every chapter's graders."""
    if not any(ex.name == name for ex in _EXERCISES.values()):
        _load_modules(grader_modules_for(name))
    matches = [ex for ex in _EXERCISES.values() if ex.name == name]
    if len(matches) != 1:
        matches = [ex for ex in load_all().values() if ex.name == name]
    if len(matches) == 1:
        return matches[0]
    names = [ex.name for ex in load_all().values()]
    close = difflib.get_close_matches(name, names, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise KeyError(f"no exercise is called {name!r}.{hint} Pass the id explicitly: check(fn, 'ch1.name').")


def for_notebook(path: str | Path) -> list[Exercise]:
    path = Path(path)
    return [ex for ex in load_all().values()
            if ex.notebook_stem == path.stem and ex.chapter_dir == path.parent.name]
