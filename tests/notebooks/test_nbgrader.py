"""Teaching with nbgrader: release each chapter, autograde two submissions.

The reference solutions must get full marks and the released stubs zero. The run
itself is the chapter's one execution, shared with the notebook results tests
(tests/notebooks/conftest.py).
"""

from __future__ import annotations

import pytest

from utils.notebooks import pipeline

CHAPTERS = sorted({p.parent.name for p in pipeline.learner_notebooks()})

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=CHAPTERS)
def chapter(request):
    return request.param


@pytest.fixture(scope="module")
def graded(chapter, chapter_run):
    return chapter_run(chapter)


def test_release_replaces_every_solution_with_a_stub(graded):
    for path in graded.release.glob("*.ipynb"):
        text = path.read_text()
        assert "BEGIN SOLUTION" not in text and "raise NotImplementedError()" in text


def test_reference_solutions_get_full_marks(graded):
    score, max_score = graded.scores["reference"]
    assert max_score > 0 and score == max_score


def test_released_stubs_get_zero(graded):
    assert graded.scores["stubs"][0] == 0


def test_released_stubs_run_cleanly_up_to_their_first_exercise(graded):
    """A learner opening the released notebook can run everything before the first exercise."""
    for stem, run in graded.stubs.items():
        cells = run.nb.cells
        first = next(i for i, c in enumerate(cells) if c.get("metadata", {}).get("nbgrader", {}).get("solution"))
        errors = [i for i, c in enumerate(cells[:first]) if c.cell_type == "code"
                  and any(o.get("output_type") == "error" for o in c.get("outputs", []))]
        assert not errors, f"{stem}: cells {errors} fail before the first exercise"
