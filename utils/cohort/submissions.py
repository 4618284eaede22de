"""A class's submissions: where they are, and what each notebook turns out to be.

Two layouts are read, never written:

- nbgrader's: `<course>/submitted/<student>/<chapter>/<notebook>.ipynb` (after `nbgrader collect`);
- a plain folder: `<folder>/<student>/<notebook>.ipynb`, or `<folder>/<student>.ipynb` for a
  one-notebook chapter.

A file is matched to the chapter's notebook by its name, else by its content (the exercise
ids in its check cells). Before any code runs, `inspect` reads the JSON and tells a corrupted
file, another chapter's notebook and edited or deleted check cells apart from a normal one.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GRADED, UNREADABLE, WRONG_NOTEBOOK, MISSING = "graded", "unreadable", "wrong-notebook", "missing"
WORKER_DIED, NOT_GRADED = "worker-died", "not-graded"


@dataclass(frozen=True)
class Submission:
    student: str
    notebook: str                 # the chapter notebook's stem it is graded as
    path: Path | None             # None: the student has no file for this notebook
    timestamp: str | None = None  # nbgrader's timestamp.txt, when there is one

    @property
    def key(self) -> str:
        return f"{self.student}/{self.notebook}"

    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest() if self.path else ""


@dataclass
class Found:
    submissions: list[Submission]
    nbgrader_layout: bool
    ignored: list[Path] = field(default_factory=list)   # notebooks that fit no notebook of the chapter


@functools.cache
def course_checks() -> dict[str, tuple[str, str, str]]:
    """Every check cell of the course's notebooks: grade_id → (chapter, notebook, source). Read from
    the notebooks' JSON, so that telling notebooks apart imports nothing."""
    found = {}
    for path in sorted((ROOT / "chapters").glob("ch*/*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("grade"):
                found[meta["grade_id"]] = (path.parent.name, path.stem, _source(cell).strip())
    return found


def chapter_notebooks(chapter: str) -> list[str]:
    return sorted({stem for c, stem, _ in course_checks().values() if c == chapter})


def find(chapter: str, folder: Path) -> Found:
    """Every (student, notebook) of the chapter under `folder`, in either layout."""
    stems = chapter_notebooks(chapter)
    students = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    nbgrader_layout = any((s / chapter).is_dir() for s in students)
    found = Found([], nbgrader_layout)
    per_student: dict[str, list[Path]] = {}
    for student in students:
        where = student / chapter if nbgrader_layout else student
        per_student[student.name] = sorted(where.glob("*.ipynb")) if where.is_dir() else []
    if not nbgrader_layout:
        for path in sorted(folder.glob("*.ipynb")):
            if not path.name.startswith("."):
                per_student.setdefault(path.stem, []).append(path)
    for student, files in sorted(per_student.items()):
        timestamp = _timestamp(folder / student / chapter) if nbgrader_layout else None
        matched = _match(files, stems)
        found.ignored += [f for f in files if f not in matched.values()]
        found.submissions += [Submission(student, stem, matched.get(stem), timestamp) for stem in stems]
    return found


def _match(files: list[Path], stems: list[str]) -> dict[str, Path]:
    """Each chapter notebook's file: the one of that name, else one whose check cells say so,
    else (one notebook left, one file left) that file, whatever it holds."""
    matched = {f.stem: f for f in files if f.stem in stems}
    for f in files:
        if f in matched.values():
            continue
        guess = identify(f.read_bytes())
        if guess in stems and guess not in matched:
            matched[guess] = f
    left = [f for f in files if f not in matched.values()]
    missing = [s for s in stems if s not in matched]
    if len(left) == 1 and len(missing) == 1:
        matched[missing[0]] = left[0]
    return matched


def _timestamp(folder: Path) -> str | None:
    path = folder / "timestamp.txt"
    return path.read_text().strip() if path.is_file() else None


# -- what a notebook is -------------------------------------------------------------------

def _cells(data: bytes) -> list[dict] | None:
    try:
        nb = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list) or not all(isinstance(c, dict) for c in cells):
        return None
    return cells


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _grade_id(cell: dict) -> str | None:
    meta = cell.get("metadata")
    nbgrader = meta.get("nbgrader") if isinstance(meta, dict) else None
    return nbgrader.get("grade_id") if isinstance(nbgrader, dict) else None


def identify(data: bytes) -> str | None:
    """The stem of the course notebook these cells come from (None: no sign of any)."""
    cells = _cells(data)
    votes = _votes(cells) if cells is not None else Counter()
    return votes.most_common(1)[0][0].split("/")[1] if votes else None


def _votes(cells: list[dict]) -> Counter:
    """`<chapter>/<notebook>` → how many of its check cells these cells hold."""
    checks = course_checks()
    return Counter(f"{checks[gid][0]}/{checks[gid][1]}" for c in cells if (gid := _grade_id(c)) in checks)


@dataclass
class Inspection:
    status: str                   # GRADED (go ahead), UNREADABLE or WRONG_NOTEBOOK
    notes: list[str]
    tampered: list[str]           # exercise ids whose check cell was edited or deleted


def inspect(data: bytes, chapter: str, stem: str) -> Inspection:
    """Read a submitted notebook as data (nothing runs): can it be graded, and was it tampered with?"""
    cells = _cells(data)
    if cells is None:
        return Inspection(UNREADABLE, ["the file is not a readable Jupyter notebook (its JSON is damaged); "
                                       "open it in JupyterLab, or submit it again from your own copy"], [])
    votes = _votes(cells)
    expected = f"{chapter}/{stem}"
    if votes and votes[expected] == 0:
        other = votes.most_common(1)[0][0]
        return Inspection(WRONG_NOTEBOOK, [f"this is the notebook {other}.ipynb, not {expected}.ipynb: "
                                           "submit the notebook of this assignment"], [])
    submitted = {_grade_id(c): _source(c).strip() for c in cells if c.get("cell_type") == "code" and _grade_id(c)}
    notes, tampered = [], []
    for gid, (c, s, source) in course_checks().items():
        if (c, s) != (chapter, stem) or submitted.get(gid) == source:
            continue
        exercise = gid.replace("-", ".", 1)
        tampered.append(exercise)
        what = "deleted" if gid not in submitted else "edited"
        notes.append(f"the check cell of {exercise} was {what} (graded all the same, by the course's own grader)")
    return Inspection(GRADED, notes, tampered)
