"""From learner notebooks and solutions to solved and nbgrader notebooks.

A learner notebook (chapters/<chapter>/<stem>.ipynb) holds prose, stubs and
`check(name)` cells. The reference solutions (solutions/<chapter>/<stem>.py)
hold the only copy of each answer. From the two:

- `sync`   keeps each learner notebook's title badge, Colab cell, exercise
           line, stubs (the reference's signature and docstring) and nbgrader
           metadata consistent with the registry and the solutions;
- `solved_notebook` swaps every stub for its reference source;
- `nbgrader_notebook` does the same with the body between nbgrader's
           `### BEGIN SOLUTION` / `### END SOLUTION` markers.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from collections.abc import Collection
from pathlib import Path

import nbformat

from utils.grading import registry
from utils.grading.registry import Exercise
from utils.notebooks.colab_cell import (COLAB_MARKER, colab_cell_source, colab_ref, course_release,  # noqa: F401
                                        course_settings, repository_url)

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = ROOT / "chapters"
STARS = "★★★"
EXERCISE_LINE = re.compile(r"^\*Exercise `[^`]+`.*\*$")
CHECK_CELL = re.compile(r"^check\((\w+)(?:,\s*['\"]([\w.]+)['\"])?\)\s*$")


def learner_notebooks() -> list[Path]:
    return sorted(p for p in CHAPTERS.glob("ch*/*.ipynb") if ".ipynb_checkpoints" not in p.parts)


# -- the generated cells --------------------------------------------------------------

COLAB_OPEN = "https://colab.research.google.com/github/"


def colab_badge(path: Path) -> str:
    """The notebook's "Open in Colab" link. A text link, not Colab's badge image: offline (a local
    JupyterLab, the browser test) that image cannot load, shows as broken and logs console errors."""
    url, ref = course_settings()
    slug = url.removeprefix("https://github.com/")
    rel = path.resolve().relative_to(ROOT).as_posix()
    return f"**[Open in Colab]({COLAB_OPEN}{slug}/blob/{ref}/{rel})**"


def exercise_line(ex: Exercise) -> str:
    stars = STARS[:ex.difficulty] + "☆" * (3 - ex.difficulty)
    return f"*Exercise `{ex.id}` · difficulty {stars} · about {ex.minutes} minutes*"


# -- finding exercise cells -----------------------------------------------------------

def defined_function(cell) -> str | None:
    """The name of the function a code cell defines (None if it defines none or several)."""
    if cell.cell_type != "code":
        return None
    try:
        tree = ast.parse(cell.source)
    except SyntaxError:
        return None
    defs = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    return defs[0] if len(defs) == 1 else None


def checked_exercise(cell, exercises: dict[str, Exercise]) -> Exercise | None:
    """The exercise a `check(name)` cell grades, if the cell is one."""
    if cell.cell_type != "code" or not (m := CHECK_CELL.match(cell.source.strip())):
        return None
    name, explicit = m.groups()
    if explicit:
        return exercises.get(explicit)
    return next((ex for ex in exercises.values() if ex.name == name), None)


def notebook_exercises(path: Path) -> dict[str, Exercise]:
    return {ex.id: ex for ex in registry.load_all().values()
            if ex.chapter_dir == path.parent.name and ex.notebook_stem == path.stem}


def exercise_cells(nb, exercises: dict[str, Exercise]) -> dict[str, tuple[int | None, int | None]]:
    """For each exercise id: (index of its stub cell, index of its check cell)."""
    by_name = {ex.name: ex for ex in exercises.values()}
    found: dict[str, list[int | None]] = {ex_id: [None, None] for ex_id in exercises}
    for i, cell in enumerate(nb.cells):
        if (name := defined_function(cell)) in by_name and found[by_name[name].id][0] is None:
            found[by_name[name].id][0] = i
        elif (ex := checked_exercise(cell, exercises)) is not None:
            found[ex.id][1] = i
    return {k: (v[0], v[1]) for k, v in found.items()}


# -- sync -----------------------------------------------------------------------------

def synced(path: Path) -> nbformat.NotebookNode:
    """The learner notebook as it should be committed: generated parts refreshed, outputs cleared."""
    nb = nbformat.read(path, as_version=4)
    exercises = notebook_exercises(path)
    title = nb.cells[0]
    lines = [line for line in title.source.splitlines() if COLAB_OPEN not in line]  # the link (or an older badge)
    title.source = "\n".join([lines[0], "", colab_badge(path), *lines[1:]]).replace("\n\n\n", "\n\n").rstrip()
    if len(nb.cells) < 2 or not nb.cells[1].source.startswith(COLAB_MARKER):
        raise ValueError(f"{path}: the second cell must be the Colab cell (start it with '{COLAB_MARKER}')")
    nb.cells[1].source = colab_cell_source()
    for ex_id, (stub, checker) in exercise_cells(nb, exercises).items():
        if stub is None or checker is None:
            raise ValueError(f"{path}: exercise {ex_id} needs a stub cell and a check({exercises[ex_id].name}) cell")
        ex = exercises[ex_id]
        intro = nb.cells[stub - 1]
        if intro.cell_type != "markdown":
            raise ValueError(f"{path}: the cell before {ex.name}'s stub must be markdown (the exercise's goal)")
        body = [line for line in intro.source.rstrip().splitlines() if not EXERCISE_LINE.match(line)]
        intro.source = "\n".join(body).rstrip() + "\n\n" + exercise_line(ex)
        nb.cells[stub].source = stub_source(ex)
        nb.cells[stub].metadata["nbgrader"] = _nbgrader_meta(f"{grade_id(ex_id)}-solution", solution=True)
        nb.cells[checker].metadata["nbgrader"] = _nbgrader_meta(grade_id(ex_id), grade=True, points=ex.points)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    return as_jupyterlab_saves(nb)


# What JupyterLab writes into a notebook it opens with the course kernel (ipykernel's
# `python3`): a notebook committed with anything else is marked modified as soon as
# its kernel starts, and closing it asks to save.
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def language_info(version: str | None = None) -> dict:
    """ipykernel's language_info; `version` is the Python version the kernel reports."""
    from ipykernel.ipkernel import IPythonKernel

    info = dict(IPythonKernel.language_info)
    if version is not None:
        info["version"] = version
    return info


def as_jupyterlab_saves(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """nbformat 4.5 with a stable id on every cell, and the course kernel's metadata.

    Ids already present are kept; a cell without one gets an id derived from its type and
    source (and a counter for repeats), so syncing twice writes the same file. An existing
    language_info version is kept too (it is the committer's Python's: JupyterLab replaces
    it with the running kernel's, so a learner on another Python sees the notebook modified
    once the kernel starts); a notebook without one gets this interpreter's.
    """
    import hashlib

    seen = {cell.get("id") for cell in nb.cells} - {None}
    for cell in nb.cells:
        if cell.get("id"):
            continue
        digest = hashlib.sha1(f"{cell.cell_type}\n{cell.source}".encode()).hexdigest()
        n = 0
        while (new_id := digest[:8] if n == 0 else f"{digest[:8]}-{n}") in seen:
            n += 1
        cell["id"] = new_id
        seen.add(new_id)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = language_info(nb.metadata.get("language_info", {}).get("version"))
    nb.nbformat, nb.nbformat_minor = 4, 5
    return nb


def grade_id(exercise_id: str) -> str:
    """nbgrader ids allow only letters, digits, '_' and '-': `ch1.layer_norm` becomes `ch1-layer_norm`."""
    return exercise_id.replace(".", "-")


def _nbgrader_meta(grade_id: str, *, solution: bool = False, grade: bool = False, points: int = 0) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": grade, "schema_version": 3,
            "solution": solution, "task": False}
    if grade:
        meta["points"] = points
    return meta


def write(nb: nbformat.NotebookNode, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = nbformat.writes(nb, version=4)
    path.write_text(text if text.endswith("\n") else text + "\n")


def is_synced(path: Path) -> bool:
    return nbformat.writes(synced(path), version=4).rstrip() == path.read_text().rstrip()


# -- solved and nbgrader notebooks ------------------------------------------------------

def _split_reference(ex: Exercise) -> tuple[list[str], list[str], str]:
    """The reference's lines up to its docstring (signature and docstring), its body, and the body's indent."""
    source = textwrap.dedent(inspect.getsource(ex.reference))
    lines = source.rstrip().splitlines()
    first = ast.parse(source).body[0].body[0]
    has_doc = isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
        and isinstance(first.value.value, str)
    start = first.end_lineno if has_doc else first.lineno - 1  # 0-based index of the first body line
    indent = re.match(r"\s*", lines[start]).group(0) or "    "
    return lines[:start], lines[start:], indent


def reference_source(ex: Exercise, *, nbgrader_markers: bool = False) -> str:
    """The reference's source; with markers, its body wrapped for nbgrader (docstring kept)."""
    head, body, indent = _split_reference(ex)
    if not nbgrader_markers:
        return "\n".join([*head, *body])
    return "\n".join([*head, f"{indent}### BEGIN SOLUTION", *body, f"{indent}### END SOLUTION"])


def stub_source(ex: Exercise) -> str:
    """The learner's stub: the reference's signature and docstring (the exercise's one docstring), no body."""
    head, _, indent = _split_reference(ex)
    return "\n".join([*head, f"{indent}raise NotImplementedError()"])


def solved_notebook(path: str | Path, *, nbgrader_markers: bool = False) -> nbformat.NotebookNode:
    """The learner notebook with every stub replaced by its reference solution."""
    path = Path(path)
    nb = synced(path)
    exercises = notebook_exercises(path)
    for ex_id, (stub, _) in exercise_cells(nb, exercises).items():
        nb.cells[stub].source = reference_source(exercises[ex_id], nbgrader_markers=nbgrader_markers)
    return nb


def nbgrader_notebook(path: str | Path) -> nbformat.NotebookNode:
    return solved_notebook(path, nbgrader_markers=True)


NBGRADER_CONFIG = """\
# Written by `python -m utils.notebooks build`; see README "Teaching with nbgrader".
c = get_config()  # noqa: F821
c.CourseDirectory.root = {root!r}
c.Exchange.root = {exchange!r}
c.ExecutePreprocessor.timeout = 600   # live-training cells take minutes on a CPU
c.ClearSolutions.code_stub = {{"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}}
"""


def build(out: Path = ROOT, chapters: Collection[str] | None = None) -> list[Path]:
    """Write solved/<chapter>/<stem>.ipynb and nbgrader/source/<chapter>/<stem>.ipynb, for every chapter
    or only those named (their folder names, e.g. "ch9_model_diffing")."""
    written = []
    for path in learner_notebooks():
        if chapters is not None and path.parent.name not in chapters:
            continue
        rel = path.relative_to(CHAPTERS)
        for target, nb in ((out / "solved" / rel, solved_notebook(path)),
                           (out / "nbgrader" / "source" / rel, nbgrader_notebook(path))):
            write(nb, target)
            written.append(target)
    config = out / "nbgrader" / "nbgrader_config.py"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(NBGRADER_CONFIG.format(root=str((out / "nbgrader").resolve()),
                                             exchange=str((out / "nbgrader" / "exchange").resolve())))
    return written


def synced_index() -> nbformat.NotebookNode:
    """chapters/index.ipynb with the metadata JupyterLab writes (its content is hand-written)."""
    return as_jupyterlab_saves(nbformat.read(CHAPTERS / "index.ipynb", as_version=4))


def sync_all() -> list[Path]:
    changed = []
    for path in learner_notebooks():
        if not is_synced(path):
            write(synced(path), path)
            changed.append(path)
    index = CHAPTERS / "index.ipynb"
    if nbformat.writes(synced_index(), version=4).rstrip() != index.read_text().rstrip():
        write(synced_index(), index)
        changed.append(index)
    return changed
