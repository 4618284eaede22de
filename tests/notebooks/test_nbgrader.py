"""Teaching with nbgrader: release each chapter, autograde two submissions.

The reference solutions must get full marks and the released stubs zero.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from utils.notebooks import pipeline

pytestmark = pytest.mark.slow
CHAPTERS = sorted({p.parent.name for p in pipeline.learner_notebooks()})


def nbgrader(*args: str, cwd: Path) -> None:
    # nbgrader runs `alembic` from PATH: put this interpreter's scripts first (venv not activated in CI)
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "PYTHONPATH": str(pipeline.ROOT), "COURSE_DEVICE": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def fill_in(released: nbformat.NotebookNode, solved: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A student's submission: the released notebook with each solution cell answered."""
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in solved.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    for cell in released.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = answers[grade_id]
    return released


def skip_live_training(nb: nbformat.NotebookNode) -> None:
    """Turn off optional live-training runs (`LIVE_TRAINING = True` cells): they are not graded, and
    the notebook tests run them already, so autograding them twice more would only cost minutes."""
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith("LIVE_TRAINING = True"):
            cell.source = cell.source.replace("LIVE_TRAINING = True", "LIVE_TRAINING = False", 1)


@pytest.fixture(scope="module", params=CHAPTERS)
def graded(request, tmp_path_factory):
    chapter = request.param
    out = tmp_path_factory.mktemp("course")
    pipeline.build(out=out)
    course = out / "nbgrader"
    nbgrader("generate_assignment", chapter, "--create", "--force", cwd=course)
    release = course / "release" / chapter
    notebooks = sorted(release.glob("*.ipynb"))
    assert notebooks, "generate_assignment released nothing"
    for student, answer in (("reference", True), ("stubs", False)):
        for path in notebooks:
            nb = nbformat.read(path, as_version=4)
            if answer:
                nb = fill_in(nb, pipeline.solved_notebook(pipeline.CHAPTERS / chapter / path.name))
            skip_live_training(nb)
            target = course / "submitted" / student / chapter / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, target)
    nbgrader("autograde", chapter, "--create", "--force", cwd=course)
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        return {s: (gb.find_submission(chapter, s).score, gb.find_submission(chapter, s).max_score)
                for s in ("reference", "stubs")}, release


def test_release_replaces_every_solution_with_a_stub(graded):
    _, release = graded
    for path in release.glob("*.ipynb"):
        text = path.read_text()
        assert "BEGIN SOLUTION" not in text and "raise NotImplementedError()" in text


def test_reference_solutions_get_full_marks(graded):
    scores, _ = graded
    score, max_score = scores["reference"]
    assert max_score > 0 and score == max_score


def test_released_stubs_get_zero(graded):
    scores, _ = graded
    assert scores["stubs"][0] == 0
