"""A simulated class: what a cohort hands in, good and bad, for the class test and the benchmark.

Every learner starts from the chapter's released notebook (stubs, check cells, nbgrader
metadata) and does something to it: answers it with the reference solutions, leaves it, answers
half, makes a mistake, misbehaves (loops forever, exits, eats memory, prints megabytes),
tampers with it, or attacks the grader. `expected` says what grading must report.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from utils.grading import registry
from utils.notebooks import pipeline

HOSTILE_MARK = "ATTEMPT"


@dataclass
class Learner:
    name: str
    kind: str
    notebooks: dict[str, bytes]            # stem → the file's bytes (a missing stem: not submitted)
    expected: dict = field(default_factory=dict)   # stem → {"status", "score" (or None: not fixed), ...}


def exercises(chapter: str, stem: str) -> list[registry.Exercise]:
    return [ex for ex in registry.for_chapter(chapter) if ex.notebook_stem == stem]


def exercises_by_notebook(chapter: str) -> dict[str, list[registry.Exercise]]:
    found: dict[str, list[registry.Exercise]] = {}
    for ex in registry.for_chapter(chapter):
        found.setdefault(ex.notebook_stem, []).append(ex)
    return found


def released(chapter: str, stem: str) -> nbformat.NotebookNode:
    return pipeline.synced(pipeline.CHAPTERS / chapter / f"{stem}.ipynb")


def answered(chapter: str, stem: str, answers: dict[str, str] | None = None, upto: int | None = None,
             ) -> nbformat.NotebookNode:
    """The released notebook with the first `upto` exercises (all by default) answered by the reference,
    except those in `answers` (exercise id → the cell's source instead)."""
    nb = released(chapter, stem)
    exs = {ex.id: ex for ex in exercises(chapter, stem)}
    for n, (ex_id, (stub, _)) in enumerate(pipeline.exercise_cells(nb, exs).items()):
        if answers and ex_id in answers:
            nb.cells[stub].source = answers[ex_id]
        elif upto is None or n < upto:
            nb.cells[stub].source = pipeline.reference_source(exs[ex_id])
    return nb


def with_statement(nb: nbformat.NotebookNode, code: str) -> nbformat.NotebookNode:
    """`code` appended, at top level, to the first answer cell (where a learner's stray code lands)."""
    cell = next(c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("solution"))
    cell.source = cell.source.rstrip() + "\n\n" + textwrap.dedent(code).strip() + "\n"
    return nb


def body_replaced(chapter: str, stem: str, index: int, body: str) -> tuple[str, nbformat.NotebookNode]:
    """All answered, but exercise number `index`'s function body is `body`."""
    ex = exercises(chapter, stem)[index]
    head = pipeline.stub_source(ex).rsplit("\n", 1)[0]
    source = head + "\n" + textwrap.indent(textwrap.dedent(body).strip(), "    ")
    return ex.id, answered(chapter, stem, answers={ex.id: source})


def to_bytes(nb: nbformat.NotebookNode) -> bytes:
    return nbformat.writes(nb, version=4).encode()


def hostile_code(attempt: str, target: Path) -> str:
    """Top-level code that tries `attempt` on `target` and prints what happened (the grader keeps output)."""
    actions = {
        "write-gradebook": f"open({str(target)!r}, 'ab').write(b'0')",
        "sqlite-gradebook": (f"import sqlite3; sqlite3.connect({str(target)!r}).execute("
                             "'UPDATE grade SET auto_score = 100').connection.commit()"),
        "read-other": f"print(open({str(target)!r}).read()[:80])",
        "alter-other": f"open({str(target)!r}, 'w').write('{{}}')",
        "list-others": f"print(__import__('os').listdir({str(target)!r}))",
        "read-solutions": f"print(open({str(target)!r}).read()[:200])",
        "import-solutions": f"import importlib; print(importlib.import_module({str(target)!r}))",
        "kill-grader": "import os, signal; os.kill(os.getppid(), signal.SIGKILL)",
        "patch-grader": ("import utils.grading.checker as _c, utils.grading.kernel as _k; "
                         "_k.grade = lambda ex, fn, **kw: _c.Result(ex.id, 'passed', 1, 0.0)"),
    }
    return (f"try:\n    {actions[attempt]}\n    print('{HOSTILE_MARK} {attempt}: succeeded')\n"
            f"except BaseException as _e:\n    print('{HOSTILE_MARK} {attempt}: ' + type(_e).__name__)\n")


def simulated_class(chapter: str, submissions: Path, course: Path, *, mistakes: dict[str, list[tuple[str, str]]]
                    | None = None, copies: int = 1) -> list[Learner]:
    """Write a whole class into `submissions` (nbgrader's layout, `<student>/<chapter>/`) and return it.

    `mistakes`: exercise id → [(label, wrong source)], one learner each (the test takes them from
    the graders' own variants); `copies`: how many learners of each ordinary kind (reference, stubs,
    partial), to make the class as large as wanted. `course` is where the gradebook will be: the
    hostile learners aim at it."""
    stems = sorted(exercises_by_notebook(chapter))
    stem = stems[0]   # misbehaviour is exercised on the first notebook; the others are answered
    exs = exercises(chapter, stem)
    full = {s: sum(ex.points for ex in exercises(chapter, s)) for s in stems}
    learners: list[Learner] = []

    def add(name: str, kind: str, first: nbformat.NotebookNode | bytes | None, status: str = "graded",
            score: int | None = None, **expect) -> None:
        notebooks = {s: to_bytes(answered(chapter, s)) for s in stems[1:]}
        if first is not None:
            notebooks[stem] = first if isinstance(first, bytes) else to_bytes(first)
        expected = {s: {"status": "graded", "score": full[s]} for s in stems[1:]}
        expected[stem] = {"status": status, "score": score, **expect}
        learners.append(Learner(name, kind, notebooks, expected))

    for i in range(copies):
        add(f"reference-{i}", "reference", answered(chapter, stem), score=full[stem])
        add(f"stubs-{i}", "stubs", released(chapter, stem), score=0)
        half = len(exs) // 2
        add(f"partial-{i}", "partial", answered(chapter, stem, upto=half),
            score=sum(ex.points for ex in exs[:half]))
    for n, (ex_id, variants) in enumerate(sorted((mistakes or {}).items())):
        for label, source in variants:
            ex = registry.get(ex_id)
            nb = answered(chapter, ex.notebook_stem, answers={ex_id: source})
            learners.append(Learner(f"mistake-{len(learners)}", f"mistake: {ex_id}: {label}",
                                    {**{s: to_bytes(answered(chapter, s)) for s in stems}, ex.notebook_stem: to_bytes(nb)},
                                    {**{s: {"status": "graded", "score": full[s]} for s in stems},
                                     ex.notebook_stem: {"status": "graded", "score": full[ex.notebook_stem] - ex.points,
                                                        "failed": ex_id}}))
    first_points = exs[0].points
    ex_id, nb = body_replaced(chapter, stem, 0, "while True:\n    pass")
    add("loop-in-function", "infinite loop in a function", nb, score=full[stem] - first_points, timeout=ex_id)
    add("loop-at-top-level", "infinite loop at top level", with_statement(answered(chapter, stem), "while True:\n    pass"),
        score=full[stem])
    add("sys-exit", "sys.exit() at top level", with_statement(answered(chapter, stem), "import sys\nsys.exit(1)"),
        score=full[stem])
    ex_id, nb = body_replaced(chapter, stem, 0, "import os\nos._exit(0)")
    add("os-exit-in-function", "os._exit() in a function", nb, score=full[stem] - first_points, error=ex_id)
    add("os-exit-at-top-level", "os._exit() at top level",
        with_statement(answered(chapter, stem), "import os\nos._exit(3)"), score=full[stem])
    ex_id, nb = body_replaced(chapter, stem, 0, "hog = []\nwhile True:\n    hog.append(b'x' * 2**28)")
    add("memory-hog", "allocates memory without end", nb, score=full[stem] - first_points, error=ex_id)
    add("ten-megabytes", "prints 10 MB", with_statement(answered(chapter, stem),
                                                         "for _ in range(200_000):\n    print('x' * 49)"),
        score=full[stem], output_size=10_000_000)
    nb = answered(chapter, stem)
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            cell.source = "print('all tests passed')"
    add("checks-edited", "check cells edited", nb, score=full[stem], tampered=len(exs))
    nb = answered(chapter, stem)
    nb.cells = [c for c in nb.cells if not c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    add("checks-deleted", "check cells deleted", nb, score=full[stem], tampered=len(exs))
    data = to_bytes(answered(chapter, stem))
    add("corrupted", "corrupted JSON", data[: len(data) // 2], status="unreadable", score=0)
    other = next(p for p in pipeline.learner_notebooks() if p.parent.name != chapter)
    add("other-chapter", "another chapter's notebook", pipeline.solved_notebook(other), status="wrong-notebook", score=0)
    add("missing", "submitted nothing", None, status="missing", score=0)

    victim = learners[0]
    victim_file = submissions / victim.name / chapter / f"{stem}.ipynb"
    attempts = {"write-gradebook": course / "gradebook.db", "sqlite-gradebook": course / "gradebook.db",
                "read-other": victim_file, "alter-other": victim_file, "list-others": submissions,
                "read-solutions": pipeline.ROOT / "solutions" / chapter / f"{stem}.py",
                "import-solutions": f"solutions.{chapter}.{stem}", "kill-grader": Path()}
    for attempt, target in attempts.items():
        add(f"hostile-{attempt}", f"hostile: {attempt}",
            with_statement(answered(chapter, stem), hostile_code(attempt, target)), score=full[stem], attempt=attempt)
    add("hostile-patch-grader", "hostile: patch-grader",   # stubs, and a grader rewritten to pass everything
        with_statement(released(chapter, stem), hostile_code("patch-grader", Path())), score=0, attempt="patch-grader")

    for learner in learners:
        for s, data in learner.notebooks.items():
            path = submissions / learner.name / chapter / f"{s}.ipynb"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        (submissions / learner.name / chapter).mkdir(parents=True, exist_ok=True)
    return learners


def ordinary_class(chapter: str, submissions: Path, copies: int = 1) -> list[str]:
    """Learners who answer every notebook of the chapter fully, half or not at all (nbgrader's layout)."""
    names = []
    for i in range(copies):
        for kind in ("reference", "partial", "stubs"):
            name = f"{kind}-{i}"
            for stem, exs in exercises_by_notebook(chapter).items():
                nb = {"reference": lambda: answered(chapter, stem), "stubs": lambda: released(chapter, stem),
                      "partial": lambda: answered(chapter, stem, upto=len(exs) // 2)}[kind]()
                path = submissions / name / chapter / f"{stem}.ipynb"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(to_bytes(nb))
            names.append(name)
    return names
